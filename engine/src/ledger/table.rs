//! The shard's accounts: an open-addressing table of 64-byte slots, one cache line each.
//!
//! At a million accounts apply is bound by memory: a transfer touches two accounts that are
//! rarely in cache. A slot holds the address and the account together in one aligned cache
//! line, so a lookup that finds its key in the slot it hashes to costs one miss (a hash map with
//! a separate control array costs two), and that line's address is known from the hash alone:
//! apply prefetches the accounts of transfers some distance ahead (`ShardState::apply_batch`)
//! so that their misses overlap, where a lookup would block. Each key is hashed once per
//! transfer (the hash travels from the prefetch to the lookup).
//!
//! Linear probing; an empty slot has the all-zero address, and the account of the all-zero
//! address (which anyone may credit) lives outside the slots. Accounts are never removed, so
//! there are no tombstones. The table grows by doubling when more than three quarters of its
//! slots are full. Its layout and iteration order depend on the per-process hash seed; nothing
//! that replicas compare depends on them (the state hash is a sum over accounts, snapshots sort).

use super::Account;
use crate::record::Address;
use std::hash::BuildHasher;

/// Accounts `insert_all` prefetches together.
const INSERT_CHUNK: usize = 16;
/// The smallest table (slots).
const SLOTS_MIN: usize = 16;
/// The table grows once more than this share of its slots is full (numerator over 4).
const LOAD_QUARTERS_MAX: usize = 3;
const ZERO: Address = Address([0; 32]);

/// Starts loading the cache line that holds `*at` into L1, without waiting for it (a no-op
/// where the target has no prefetch instruction in stable Rust).
#[inline(always)]
pub(super) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it neither faults (whatever the address) nor changes
    // memory or registers. SSE is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[derive(Clone, Debug, Default)]
#[repr(C, align(64))]
struct Slot {
    /// All zero: the slot is empty.
    address: Address,
    account: Account,
}

const _: () = assert!(
    std::mem::size_of::<Slot>() == 64,
    "a slot is one cache line"
);

pub(super) struct AccountTable {
    /// `mask + 1` slots, a power of two.
    slots: Vec<Slot>,
    mask: usize,
    /// Accounts in `slots` (the all-zero address's not counted).
    used: usize,
    /// The all-zero address's account, if it exists.
    zero: Option<Account>,
    hasher: foldhash::fast::RandomState,
}

impl Default for AccountTable {
    fn default() -> Self {
        AccountTable::with_slots(SLOTS_MIN)
    }
}

impl AccountTable {
    fn with_slots(slots_count: usize) -> AccountTable {
        assert!(slots_count.is_power_of_two() && slots_count >= SLOTS_MIN);
        let layout = std::alloc::Layout::array::<Slot>(slots_count).expect("table fits in memory");
        // Zeroed memory, not `resize_with(Slot::default)`: large allocations come from the OS as
        // zero pages, so a new table (of a snapshot load, or a growth) is not written twice.
        // SAFETY: the layout is non-zero (SLOTS_MIN) and is that of a `Vec<Slot>` of capacity
        // `slots_count` from the global allocator, as `from_raw_parts` requires; all-zero bytes
        // are a valid `Slot` (the empty one, equal to `Slot::default()`: a zero address, zero
        // integers, and `None` for the `Option<Box<_>>`, which is guaranteed to be null).
        let slots = unsafe {
            let at = std::alloc::alloc_zeroed(layout).cast::<Slot>();
            if at.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Vec::from_raw_parts(at, slots_count, slots_count)
        };
        debug_assert!(slots
            .iter()
            .take(SLOTS_MIN)
            .all(|s| s.address == ZERO && s.account == Account::default()));
        AccountTable {
            slots,
            mask: slots_count - 1,
            used: 0,
            zero: None,
            hasher: Default::default(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.used + usize::from(self.zero.is_some())
    }

    /// The hash that `prefetch`, `get_hashed` and `entry_hashed` take.
    #[inline]
    pub(super) fn hash(&self, address: &Address) -> u64 {
        self.hasher.hash_one(address)
    }

    /// Starts loading the cache line where `hash`'s account is likely to be, without waiting
    /// for it. A hint: any hash is fine, and a table that grows meanwhile only wastes it.
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: u64) {
        prefetch(&self.slots[hash as usize & self.mask]);
    }

    /// Slots needed so that `accounts` fill at most the load bound.
    fn slots_for(accounts: usize) -> usize {
        let slots = accounts
            .checked_mul(4)
            .expect("accounts fit in memory")
            .div_ceil(LOAD_QUARTERS_MAX);
        slots.next_power_of_two().max(SLOTS_MIN)
    }

    /// Room for `additional` more accounts without growing.
    pub(super) fn reserve(&mut self, additional: usize) {
        let wanted = Self::slots_for(self.used + additional);
        if wanted > self.slots.len() {
            self.grow_to(wanted);
        }
    }

    #[cold]
    fn grow_to(&mut self, slots_count: usize) {
        let mut grown = AccountTable::with_slots(slots_count);
        grown.zero = self.zero.take();
        grown.hasher = self.hasher;
        for slot in std::mem::take(&mut self.slots) {
            if slot.address != ZERO {
                let i = grown.probe(grown.hash(&slot.address), &slot.address);
                debug_assert!(grown.slots[i].address == ZERO, "addresses are unique");
                grown.slots[i] = slot;
                grown.used += 1;
            }
        }
        assert_eq!(grown.used, self.used);
        *self = grown;
    }

    /// The slot that holds `address`, or the empty slot where it would go.
    #[inline(always)]
    fn probe(&self, hash: u64, address: &Address) -> usize {
        debug_assert!(*address != ZERO);
        // Terminates: the load bound keeps a quarter of the slots empty.
        let mut i = hash as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot.address == *address || slot.address == ZERO {
                return i;
            }
            i = (i + 1) & self.mask;
        }
    }

    pub(super) fn get(&self, address: &Address) -> Option<&Account> {
        self.get_hashed(self.hash(address), address)
    }

    #[inline]
    pub(super) fn get_hashed(&self, hash: u64, address: &Address) -> Option<&Account> {
        debug_assert_eq!(hash, self.hash(address));
        if *address == ZERO {
            return self.zero.as_ref();
        }
        let slot = &self.slots[self.probe(hash, address)];
        (slot.address != ZERO).then_some(&slot.account)
    }

    /// The account of `address` (`hash` its hash), created empty if it does not exist; and
    /// whether it existed.
    #[inline]
    pub(super) fn entry_hashed(&mut self, hash: u64, address: &Address) -> (&mut Account, bool) {
        debug_assert_eq!(hash, self.hash(address));
        if *address == ZERO {
            let existed = self.zero.is_some();
            return (self.zero.get_or_insert_with(Account::default), existed);
        }
        let mut i = self.probe(hash, address);
        if self.slots[i].address == ZERO {
            if (self.used + 1) * 4 > self.slots.len() * LOAD_QUARTERS_MAX {
                self.grow_to(self.slots.len() * 2);
                i = self.probe(hash, address);
            }
            self.used += 1;
            // Probes end at an empty slot: the bound keeps a quarter of them empty.
            assert!(self.used * 4 <= self.slots.len() * LOAD_QUARTERS_MAX);
            let slot = &mut self.slots[i];
            slot.address = *address;
            debug_assert!(slot.account == Account::default());
            return (&mut slot.account, false);
        }
        (&mut self.slots[i].account, true)
    }

    /// Puts `account` at `address`, replacing the account there if any (`insert_all`'s model).
    #[cfg(test)]
    fn insert(&mut self, address: Address, account: Account) {
        let (slot, _) = self.entry_hashed(self.hash(&address), &address);
        *slot = account;
    }

    /// Inserts `accounts` as `insert` would (replacing an account at the same address), a chunk at a time: the chunk's slots are prefetched
    /// before it is inserted. A snapshot's accounts come sorted by address, so their slots are
    /// random, and one insert after another would take their misses one at a time.
    pub(super) fn insert_all(
        &mut self,
        accounts: impl ExactSizeIterator<Item = (Address, Account)>,
    ) {
        self.reserve(accounts.len());
        let mut accounts = accounts;
        let mut chunk: Vec<(u64, Address, Account)> = Vec::with_capacity(INSERT_CHUNK);
        loop {
            let hasher = self.hasher;
            chunk.extend(
                accounts
                    .by_ref()
                    .take(INSERT_CHUNK)
                    .map(|(address, account)| (hasher.hash_one(address), address, account)),
            );
            if chunk.is_empty() {
                return;
            }
            for (hash, _, _) in &chunk {
                self.prefetch(*hash);
            }
            for (hash, address, account) in chunk.drain(..) {
                let (slot, _) = self.entry_hashed(hash, &address);
                *slot = account;
            }
        }
    }

    /// Every account, in no particular order (it depends on the hash seed).
    pub(super) fn iter(&self) -> Iter<'_> {
        Iter {
            zero: self.zero.as_ref(),
            slots: self.slots.iter(),
            remaining: self.len(),
        }
    }
}

pub(super) struct Iter<'a> {
    zero: Option<&'a Account>,
    slots: std::slice::Iter<'a, Slot>,
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Address, &'a Account);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(account) = self.zero.take() {
            self.remaining -= 1;
            return Some((&ZERO, account));
        }
        let slot = self.slots.find(|slot| slot.address != ZERO)?;
        self.remaining -= 1;
        Some((&slot.address, &slot.account))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn address(i: u64) -> Address {
        let mut a = [0u8; 32];
        a[..8].copy_from_slice(&i.to_le_bytes());
        a[31] = (i % 251) as u8;
        Address(a)
    }

    #[test]
    fn behaves_as_a_map_across_growth_and_the_zero_address() {
        let mut table = AccountTable::default();
        let mut model: HashMap<Address, u64> = HashMap::new();
        for round in 0..3u64 {
            for i in 0..5_000u64 {
                let a = if i == 17 {
                    ZERO
                } else {
                    address(i * 7 + round)
                };
                let (account, existed) = table.entry_hashed(table.hash(&a), &a);
                assert_eq!(existed, model.contains_key(&a));
                account.native += i + 1;
                *model.entry(a).or_default() += i + 1;
            }
            assert_eq!(table.len(), model.len());
            assert!(table.used * 4 <= table.slots.len() * LOAD_QUARTERS_MAX);
        }
        for (a, native) in &model {
            assert_eq!(table.get(a).map(|x| x.native), Some(*native));
        }
        assert!(table.get(&address(1 << 40)).is_none());
        let iter = table.iter();
        assert_eq!(iter.len(), model.len());
        let seen: HashMap<Address, u64> = iter.map(|(a, x)| (*a, x.native)).collect();
        assert_eq!(seen, model);
    }

    #[test]
    fn insert_all_equals_inserts_one_by_one() {
        let accounts: Vec<(Address, Account)> = (0..1_000u64)
            .map(|i| {
                (
                    if i == 3 { ZERO } else { address(i % 900) },
                    Account {
                        native: i,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut one_by_one = AccountTable::default();
        for (a, x) in accounts.clone() {
            one_by_one.insert(a, x);
        }
        let mut all = AccountTable::default();
        all.insert_all(accounts.into_iter());
        assert_eq!(all.len(), one_by_one.len());
        for (a, x) in one_by_one.iter() {
            assert_eq!(all.get(a), Some(x));
        }
    }

    #[test]
    fn reserve_sizes_for_the_load_bound_and_insert_replaces() {
        let mut table = AccountTable::default();
        // 100,000 accounts need 133,334 slots at the load bound: 2^18.
        table.reserve(100_000);
        assert_eq!(table.slots.len(), 1 << 18);
        table.reserve(10);
        assert_eq!(
            table.slots.len(),
            1 << 18,
            "no growth within the reservation"
        );
        let a = address(5);
        table.insert(
            a,
            Account {
                native: 3,
                ..Default::default()
            },
        );
        table.insert(
            a,
            Account {
                native: 4,
                ..Default::default()
            },
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&a).map(|x| x.native), Some(4));
    }
}

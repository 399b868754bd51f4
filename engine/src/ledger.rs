//! One shard's ledger: a deterministic state machine without I/O.
//!
//! Every replica applies the same log entries in the same order and reaches byte-identical
//! state. Nothing here reads a clock, a random number or the iteration order of a hash map.
//!
//! # State hash
//! Each account contributes `xxh3_128(canonical account bytes)`; the shard keeps the sum of the
//! contributions modulo 2^128 (a multiset hash), so an update costs O(1): subtract the account's
//! old contribution, add its new one. Canonical account bytes: address (32) ‖ nonce high (u64 LE)
//! ‖ nonce window (u64 LE) ‖ for each asset with a non-zero balance, ascending: asset (u32 LE) ‖
//! balance (u64 LE). The shard's state hash is `xxh3_128(shard u32 ‖ applied index u64 ‖
//! account sum u128 ‖ last block hash (32 bytes) ‖ inbound watermark u64 per source shard)`, all little-endian. Replicas at
//! the same applied index compare it.
//!
//! # Replay protection
//! Per account, a sliding window over nonces (RFC 4303's anti-replay window): the highest
//! accepted nonce `H` and a 64-bit bitmap whose bit `i` says whether `H - i` was accepted. A nonce
//! above `H` slides the window; one within 64 below `H` is accepted once; older ones are
//! `NONCE_TOO_OLD`. A nonce is consumed by every decision at apply that depends on state: the
//! transfer applies (`OK`) or is refused for funds (`INSUFFICIENT_FUNDS`). A signed transfer is
//! thus decided by state at most once; a refusal for funds cannot be replayed once the sender
//! has the funds (the sender signs a new transfer with a new nonce). Refusals that depend on the
//! record alone (`precheck`, a sender of another shard) and nonce refusals consume nothing.
//!
//! A transfer from an address that has no account is refused for funds and creates the account
//! with no balance and its nonce spent: otherwise the refused transfer would apply once the
//! address is funded. The cost: anyone can add an account (a 64-byte slot of the account
//! table, 85 to 171 bytes of memory with the table's spare room, and 64 in a snapshot) per
//! transfer they sign with a fresh key, without holding anything, at the rate
//! the log admits transfers; the account is kept like any other (there is no expiry).

use crate::genesis::Genesis;
use crate::record::{Address, Record};
use crate::result::ResultCode;
use crate::shard::{shard_of, ShardId};
use account_hash::AddressMix;
use chunked::ChunkedQueue;
use std::collections::BTreeMap;
use table::AccountTable;
use xxhash_rust::xxh3::xxh3_128;

mod account_hash;
/// The peer address book and the removed node ids (membership, not ledger).
pub mod chunked;
mod peer_book;
mod recent;
mod table;

pub(crate) use recent::touch_capacity;
use recent::RecentWindows;

pub const NATIVE_ASSET: u32 = 0;
/// Nonces older than this below the highest accepted one are rejected as too old.
pub const NONCE_WINDOW: u64 = 64;
/// Upper bound on assets per chain (bounds per-account balance lists).
pub const ASSETS_MAX: usize = 1024;
/// Node ids a shard's group remembers — with a peer address, or removed (never to come back):
/// membership, not ledger. A group sees at most this many distinct validators in its life.
pub const PEER_ADDRESSES_MAX: usize = 1024;
/// Bytes of one remembered peer address (as a membership change's context carries it).
pub const PEER_ADDRESS_BYTES_MAX: usize = 256;
/// Most transfer decisions a shard may remember for lookups (validator settings and snapshots
/// are checked against it).
pub const RECENT_TRANSACTIONS_LIMIT: usize = 1 << 22;
/// Most block headers a shard may remember for lookups.
pub const RECENT_BLOCKS_LIMIT: usize = 1 << 16;
/// How many transfers ahead of the one applying `apply_batch` prefetches accounts: enough
/// misses in flight to hide memory latency (a transfer applies in about a miss's time), few
/// enough not to run out of the core's fill buffers. Measured at 1M accounts (2026-11-28, 2-core
/// VM): 1 ahead 4.3M transfers/s, 2 ahead 7.1M, 8 and 16 ahead 9–10M, 32 ahead slower again.
const PREFETCH_AHEAD: usize = 16;
/// How many transfers ahead `apply_batch` prefetches records: `PREFETCH_AHEAD` beyond the key
/// stage, which reads its record's addresses and would otherwise block on that miss (a
/// batch's records are cold after the raft log; the hardware prefetcher did not keep ahead).
const RECORD_PREFETCH_AHEAD: usize = 2 * PREFETCH_AHEAD;
// The ring of keys ahead is indexed `i % PREFETCH_AHEAD`: a mask, not a division.
const _: () = assert!(PREFETCH_AHEAD.is_power_of_two());

/// One account. 32 bytes: most accounts hold only the native asset, kept inline; other assets
/// live in a small sorted side list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub nonce_high: u64,
    pub nonce_window: u64,
    pub native: u64,
    pub others: Option<Box<Vec<(u32, u64)>>>,
}

impl Account {
    pub fn balance(&self, asset: u32) -> u64 {
        if asset == NATIVE_ASSET {
            return self.native;
        }
        match &self.others {
            Some(list) => match list.binary_search_by_key(&asset, |e| e.0) {
                Ok(i) => list[i].1,
                Err(_) => 0,
            },
            None => 0,
        }
    }

    fn balance_mut(&mut self, asset: u32) -> &mut u64 {
        if asset == NATIVE_ASSET {
            return &mut self.native;
        }
        let list = self.others.get_or_insert_with(Default::default);
        let i = match list.binary_search_by_key(&asset, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                list.insert(i, (asset, 0));
                i
            }
        };
        &mut list[i].1
    }

    /// Non-zero balances in ascending asset order.
    pub fn balances(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let native = (self.native != 0).then_some((NATIVE_ASSET, self.native));
        native.into_iter().chain(
            self.others
                .iter()
                .flat_map(|l| l.iter().copied())
                .filter(|e| e.1 != 0),
        )
    }

    /// Whether `nonce` would be accepted now; does not consume it.
    pub fn check_nonce(&self, nonce: u64) -> Result<(), ResultCode> {
        if nonce > self.nonce_high {
            return Ok(());
        }
        let distance = self.nonce_high - nonce;
        if distance >= NONCE_WINDOW {
            return Err(ResultCode::NonceTooOld);
        }
        if self.nonce_window & (1u64 << distance) != 0 {
            return Err(ResultCode::NonceReplayed);
        }
        Ok(())
    }

    fn consume_nonce(&mut self, nonce: u64) {
        debug_assert!(self.check_nonce(nonce).is_ok());
        if nonce > self.nonce_high {
            let shift = nonce - self.nonce_high;
            self.nonce_window = if shift >= NONCE_WINDOW {
                0
            } else {
                self.nonce_window << shift
            };
            self.nonce_window |= 1;
            self.nonce_high = nonce;
        } else {
            self.nonce_window |= 1u64 << (self.nonce_high - nonce);
        }
    }

    /// The account's contribution to the state hash (see the module docs).
    fn hash(&self, address: &Address) -> u128 {
        self.hash_mixed(address, &AddressMix::new(address))
    }

    /// `hash` with the address's part computed (`mix`, of `address`).
    #[inline]
    fn hash_mixed(&self, address: &Address, mix: &AddressMix) -> u128 {
        if self.others.is_none() {
            // The common case, from registers (`account_hash` says why).
            return account_hash::native_only(mix, self.nonce_high, self.nonce_window, self.native);
        }
        let mut long = address.0.to_vec();
        long.extend_from_slice(&self.nonce_high.to_le_bytes());
        long.extend_from_slice(&self.nonce_window.to_le_bytes());
        for (asset, amount) in self.balances() {
            long.extend_from_slice(&asset.to_le_bytes());
            long.extend_from_slice(&amount.to_le_bytes());
        }
        xxh3_128(&long)
    }
}

/// A credit owed by a source shard to an account of another shard, produced when the source
/// applies a cross-shard transfer (debit side) and credited when the destination's own log says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Log index of the source shard's entry that produced it.
    pub source_index: u64,
    pub to: Address,
    pub asset: u32,
    pub amount: u64,
}

/// Checks that need no state; done at admission (before consensus) and again at apply.
pub fn precheck(record: &Record, chain_id: u32, assets: &[u32]) -> Result<(), ResultCode> {
    if !record.has_domain_tag() {
        return Err(ResultCode::Malformed);
    }
    if record.chain_id() != chain_id {
        return Err(ResultCode::WrongChain);
    }
    if record.amount() == 0 {
        return Err(ResultCode::ZeroAmount);
    }
    if record.from_bytes() == &record.0[52..84] {
        return Err(ResultCode::SelfTransfer);
    }
    if assets.binary_search(&record.asset()).is_err() {
        return Err(ResultCode::UnknownAsset);
    }
    Ok(())
}

/// Starts loading the part of `record` that apply reads (its message: the signature was
/// verified before the log).
#[inline(always)]
fn prefetch_record(record: &Record) {
    let message = record.0[..crate::record::MESSAGE_BYTES].as_ptr_range();
    table::prefetch(message.start);
    table::prefetch(message.start.wrapping_add(64));
    table::prefetch(message.end.wrapping_sub(1));
}

/// What apply needs to know of a transfer's two accounts before it looks them up: their hashes
/// in the account table (computed once, at the prefetch) and their shards.
#[derive(Clone, Copy, Debug, Default)]
struct TransferKeys {
    from_hash: u64,
    to_hash: u64,
    from_shard: ShardId,
    to_shard: ShardId,
}

/// What the log decided for one transfer: its result code and the log index (block) of the
/// entry that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub result: ResultCode,
    pub block: u64,
}

/// A block: one applied log entry that carries a payload (transfers or markers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    pub shard: ShardId,
    /// The entry's log index.
    pub height: u64,
    pub hash: [u8; 32],
    pub prev_hash: [u8; 32],
    pub tx_count: u32,
    pub term: u64,
    /// The shard's state hash right after this block applied.
    pub state_hash: u128,
    /// Wall-clock time the block was applied by this validator, or (for a block older than a
    /// snapshot this validator loaded) by the validator that made the snapshot. Local: part of
    /// no hash, the one field validators may answer differently.
    pub timestamp_ms: u64,
}

/// The state of one shard.
pub struct ShardState {
    shard: ShardId,
    shard_count: u32,
    chain_id: u32,
    /// Sorted list of assets that exist (from genesis).
    assets: Vec<u32>,
    accounts: AccountTable,
    account_hash_sum: u128,
    applied_index: u64,
    /// Per source shard: highest source log index whose receipts have been credited here.
    inbound_watermark: Vec<u64>,
    /// Per destination shard: receipts produced here and not yet known to be durably credited
    /// there (kept so that the destination can replay them after a restart).
    outbox: Vec<ChunkedQueue<Receipt>>,
    /// Per destination shard: receipts up to this source index were pruned from the outbox
    /// (every member of this shard's group reported them durably credited there). Local
    /// bookkeeping, not ledger: carried in snapshots, not part of the state hash. Every
    /// delivery carries it, so that a destination replica that never saw them (its validator
    /// was not in this group when they were pruned) never credits across them.
    outbox_pruned_through: Vec<u64>,
    /// Hash of the last block (log entry with a payload) applied: chains the shard's blocks.
    block_hash: [u8; 32],
    /// Validator node id -> its peer address bytes (from membership changes); an empty address
    /// marks a node id removed from the group, which is never added again (see
    /// [`ShardState::node_removed`]). Membership, not ledger: carried in snapshots, not part of
    /// the state hash. At most `PEER_ADDRESSES_MAX` entries of at most
    /// `PEER_ADDRESS_BYTES_MAX` bytes each.
    peer_addresses: BTreeMap<u64, Vec<u8>>,
    recent: RecentWindows,
}

impl std::fmt::Debug for ShardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardState")
            .field("shard", &self.shard)
            .field("accounts", &self.accounts.len())
            .field("applied_index", &self.applied_index)
            .finish()
    }
}

impl ShardState {
    /// An empty shard (no accounts).
    pub fn empty(shard: ShardId, shard_count: u32, chain_id: u32, assets: Vec<u32>) -> ShardState {
        assert!(shard < shard_count);
        assert!(!assets.is_empty() && assets.len() <= ASSETS_MAX);
        assert!(assets.windows(2).all(|w| w[0] < w[1]), "assets sorted");
        ShardState {
            shard,
            shard_count,
            chain_id,
            assets,
            accounts: AccountTable::default(),
            account_hash_sum: 0,
            applied_index: 0,
            inbound_watermark: vec![0; shard_count as usize],
            outbox: (0..shard_count).map(|_| ChunkedQueue::new()).collect(),
            outbox_pruned_through: vec![0; shard_count as usize],
            block_hash: [0; 32],
            peer_addresses: BTreeMap::new(),
            recent: RecentWindows::default(),
        }
    }

    /// The shard as genesis creates it: the allocations whose address it owns.
    pub fn from_genesis(genesis: &Genesis, shard: ShardId, shard_count: u32) -> ShardState {
        let mut state = ShardState::empty(shard, shard_count, genesis.chain_id, genesis.assets());
        let mine = genesis
            .allocations
            .iter()
            .filter(|a| shard_of(&a.address, shard_count) == shard);
        state.accounts.reserve(mine.clone().count());
        for a in mine {
            state.credit(a.address, a.asset, a.amount);
        }
        state
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }
    pub fn assets(&self) -> &[u32] {
        &self.assets
    }
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }
    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.accounts.get(address)
    }
    pub fn inbound_watermark(&self, source: ShardId) -> u64 {
        self.inbound_watermark[source as usize]
    }
    /// Receipts to `destination` up to this source index were pruned (see the field).
    pub fn outbox_pruned_through(&self, destination: ShardId) -> u64 {
        self.outbox_pruned_through[destination as usize]
    }

    /// Restores the pruning points (snapshot load): one per shard.
    pub fn set_outbox_pruned_through(&mut self, pruned_through: Vec<u64>) {
        assert_eq!(pruned_through.len(), self.shard_count as usize);
        self.outbox_pruned_through = pruned_through;
    }

    pub fn outbox(&self, destination: ShardId) -> &ChunkedQueue<Receipt> {
        &self.outbox[destination as usize]
    }

    /// Reserve room for `additional` accounts, so that apply does not resize on the hot path.
    pub fn reserve_accounts(&mut self, additional: usize) {
        self.accounts.reserve(additional);
    }

    /// Sum of balances of `asset` held by this shard's accounts (for conservation checks).
    pub fn supply_held(&self, asset: u32) -> u128 {
        self.accounts
            .iter()
            .map(|(_, a)| a.balance(asset) as u128)
            .sum()
    }

    /// Sum of `asset` in receipts that left this shard but are not yet credited at the
    /// destination according to `credited_through(destination)`.
    pub fn supply_in_flight(&self, asset: u32, credited_through: impl Fn(ShardId) -> u64) -> u128 {
        let mut total = 0u128;
        for (d, queue) in self.outbox.iter().enumerate() {
            let mark = credited_through(d as ShardId);
            total += queue
                .iter()
                .filter(|r| r.asset == asset && r.source_index > mark)
                .map(|r| r.amount as u128)
                .sum::<u128>();
        }
        total
    }

    pub fn block_hash(&self) -> [u8; 32] {
        self.block_hash
    }

    /// Chains a block: `hash = SHA-256(previous hash ‖ shard u32 ‖ height u64 ‖ term u64 ‖
    /// payload)`, integers little-endian; the payload of a block of transfers is their
    /// `txHash`es in log order (each commits to its whole record, and hashing 32 bytes per
    /// transfer instead of its 168 takes a third of the work), of any other block its entry's
    /// data. Returns (previous, new).
    pub fn chain_block<'a>(
        &mut self,
        height: u64,
        term: u64,
        payload: impl IntoIterator<Item = &'a [u8]>,
    ) -> ([u8; 32], [u8; 32]) {
        use sha2::{Digest, Sha256};
        let previous = self.block_hash;
        let mut h = Sha256::new();
        h.update(previous);
        h.update(self.shard.to_le_bytes());
        h.update(height.to_le_bytes());
        h.update(term.to_le_bytes());
        for part in payload {
            h.update(part);
        }
        self.block_hash = h.finalize().into();
        (previous, self.block_hash)
    }

    /// Chains the block of log entry `height` (see [`ShardState::chain_block`]) and, when the
    /// blocks window is not off, remembers its header (the state hash taken now: call it once
    /// the entry applied). The oldest header beyond the bound is forgotten.
    pub fn record_block<'a>(
        &mut self,
        height: u64,
        term: u64,
        payload: impl IntoIterator<Item = &'a [u8]>,
        tx_count: u32,
        timestamp_ms: u64,
    ) -> BlockHeader {
        assert_eq!(
            height, self.applied_index,
            "a block is recorded once it applied"
        );
        let (prev_hash, hash) = self.chain_block(height, term, payload);
        let header = BlockHeader {
            shard: self.shard,
            height,
            hash,
            prev_hash,
            tx_count,
            term,
            state_hash: self.state_hash(),
            timestamp_ms,
        };
        if self.recent.blocks_max > 0 {
            self.push_recent_block(header);
        }
        header
    }

    /// The multiset hash of the accounts alone (independent of the applied index).
    pub fn accounts_hash(&self) -> u128 {
        self.account_hash_sum
    }

    pub fn state_hash(&self) -> u128 {
        let mut bytes = Vec::with_capacity(4 + 8 + 16 + 8 * self.inbound_watermark.len());
        bytes.extend_from_slice(&self.shard.to_le_bytes());
        bytes.extend_from_slice(&self.applied_index.to_le_bytes());
        bytes.extend_from_slice(&self.account_hash_sum.to_le_bytes());
        bytes.extend_from_slice(&self.block_hash);
        for w in &self.inbound_watermark {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        xxh3_128(&bytes)
    }

    /// Marks log index `index` as applied (for entries that carry no transfers, too).
    pub fn set_applied_index(&mut self, index: u64) {
        assert!(index >= self.applied_index, "apply goes forward");
        self.applied_index = index;
    }

    /// Applies one transfer from log entry `index`. The signature was verified before the
    /// transfer entered the log; everything else is checked here. Cross-shard transfers debit
    /// here and push a receipt to the outbox (and to `receipts_out` for delivery).
    pub fn apply_transfer(&mut self, index: u64, record: &Record) -> ResultCode {
        let keys = self.transfer_keys(record);
        self.apply_keyed(index, record, &keys)
    }

    #[inline]
    fn transfer_keys(&self, record: &Record) -> TransferKeys {
        let (from, to) = (record.from_bytes_as_address(), record.to_bytes_as_address());
        let to_shard = shard_of(to, self.shard_count);
        TransferKeys {
            from_hash: self.accounts.hash(from),
            // A receiver of another shard is credited there, never looked up here.
            to_hash: if to_shard == self.shard {
                self.accounts.hash(to)
            } else {
                0
            },
            from_shard: shard_of(from, self.shard_count),
            to_shard,
        }
    }

    /// Starts loading the accounts a transfer will touch here (see `AccountTable::prefetch`).
    #[inline(always)]
    fn prefetch(&self, keys: &TransferKeys) {
        self.accounts.prefetch(keys.from_hash);
        if keys.to_shard == self.shard {
            self.accounts.prefetch(keys.to_hash);
        }
    }

    /// `apply_transfer` with the record's keys computed (`transfer_keys`).
    #[inline]
    fn apply_keyed(&mut self, index: u64, record: &Record, keys: &TransferKeys) -> ResultCode {
        assert!(index >= self.applied_index, "apply goes forward");
        if let Err(code) = precheck(record, self.chain_id, &self.assets) {
            return code;
        }
        if keys.from_shard != self.shard {
            // The router never sends this; a bad proposal must still apply deterministically.
            return ResultCode::Malformed;
        }
        let from = record.from_bytes_as_address();
        let asset = record.asset();
        let amount = record.amount();
        let nonce = record.nonce();
        // The sender's nonce is spent by every decision that depends on state (applied, or
        // refused for funds), so a signed transfer is decided by state at most once: a refusal
        // cannot be replayed later when the sender has the funds. A sender that does not exist
        // is created with no balance and the nonce spent (see the module docs for the cost).
        let mix = AddressMix::new(from);
        let (account, existed) = self.accounts.entry_hashed(keys.from_hash, from);
        let old_hash = if existed {
            if let Err(code) = account.check_nonce(nonce) {
                return code;
            }
            account.hash_mixed(from, &mix)
        } else {
            // A new account contributes nothing before it exists (as in `credit`).
            0
        };
        debug_assert!(account.check_nonce(nonce).is_ok());
        let funded = account.balance(asset) >= amount;
        if funded {
            *account.balance_mut(asset) -= amount;
        }
        account.consume_nonce(nonce);
        let new_hash = account.hash_mixed(from, &mix);
        self.account_hash_sum = self
            .account_hash_sum
            .wrapping_sub(old_hash)
            .wrapping_add(new_hash);
        if !funded {
            return ResultCode::InsufficientFunds;
        }

        if keys.to_shard == self.shard {
            self.credit_hashed(keys.to_hash, record.to_bytes_as_address(), asset, amount);
        } else {
            self.outbox[keys.to_shard as usize].push_back(Receipt {
                source_index: index,
                to: record.to(),
                asset,
                amount,
            });
        }
        ResultCode::Ok
    }

    /// Applies a batch of verified records from entry `index`, writing one code per record.
    ///
    /// A software pipeline, because apply at 1M accounts waits on memory: before transfer `i`
    /// applies, transfer `i + PREFETCH_AHEAD`'s keys are computed (each address hashed once,
    /// kept in a ring until used) and its accounts prefetched, and transfer
    /// `i + RECORD_PREFETCH_AHEAD`'s record is prefetched for that key stage. The misses of the
    /// transfers ahead overlap each other and the apply of those before them; nothing blocks
    /// on them until the line is needed.
    pub fn apply_batch(&mut self, index: u64, records: &[Record], results: &mut Vec<ResultCode>) {
        results.clear();
        results.reserve(records.len());
        for record in records.iter().take(RECORD_PREFETCH_AHEAD) {
            prefetch_record(record);
        }
        let mut ahead = [TransferKeys::default(); PREFETCH_AHEAD];
        for (slot, record) in ahead.iter_mut().zip(records) {
            *slot = self.transfer_keys(record);
            self.prefetch(slot);
        }
        for (i, record) in records.iter().enumerate() {
            if let Some(later) = records.get(i + RECORD_PREFETCH_AHEAD) {
                prefetch_record(later);
            }
            let keys = ahead[i % PREFETCH_AHEAD];
            if let Some(later) = records.get(i + PREFETCH_AHEAD) {
                let later = self.transfer_keys(later);
                self.prefetch(&later);
                ahead[i % PREFETCH_AHEAD] = later;
            }
            results.push(self.apply_keyed(index, record, &keys));
        }
        self.set_applied_index(index);
    }

    /// Credits the receipts of `source` up to source log index `up_to` (the marker's payload).
    /// `receipts` are the source's receipts in order; those at or below the watermark were
    /// credited before and are skipped, so each credits exactly once.
    pub fn apply_marker<'a>(
        &mut self,
        source: ShardId,
        up_to: u64,
        receipts: impl IntoIterator<Item = &'a Receipt>,
    ) -> usize {
        assert!(source != self.shard && source < self.shard_count);
        let watermark = self.inbound_watermark[source as usize];
        if up_to <= watermark {
            return 0;
        }
        let mut credited = 0;
        let mut previous_index = 0;
        for receipt in receipts {
            assert!(
                receipt.source_index >= previous_index,
                "receipts in log order"
            );
            previous_index = receipt.source_index;
            if receipt.source_index <= watermark {
                continue;
            }
            if receipt.source_index > up_to {
                break;
            }
            assert_eq!(shard_of(&receipt.to, self.shard_count), self.shard);
            self.credit(receipt.to, receipt.asset, receipt.amount);
            credited += 1;
        }
        self.inbound_watermark[source as usize] = up_to;
        credited
    }

    /// Forgets receipts to `destination` up to `source_index`: the destination has credited them
    /// durably (its snapshot covers them).
    pub fn prune_outbox(&mut self, destination: ShardId, source_index: u64) {
        // Other validators may report credits beyond what this replica applied (it lags, or
        // was just restored): receipts it has not produced yet are not forgotten in advance —
        // they are pruned when they exist and a report covers them.
        let source_index = source_index.min(self.applied_index);
        let pruned = &mut self.outbox_pruned_through[destination as usize];
        *pruned = (*pruned).max(source_index);
        let queue = &mut self.outbox[destination as usize];
        while queue
            .front()
            .is_some_and(|r| r.source_index <= source_index)
        {
            queue.pop_front();
        }
    }

    fn credit(&mut self, to: Address, asset: u32, amount: u64) {
        self.credit_hashed(self.accounts.hash(&to), &to, asset, amount);
    }

    /// `credit` with the account table's hash of `to` (`to_hash`) computed.
    #[inline]
    fn credit_hashed(&mut self, to_hash: u64, to: &Address, asset: u32, amount: u64) {
        // A new account contributes nothing before it exists (snapshot loads sum the same way).
        let mix = AddressMix::new(to);
        let (account, existed) = self.accounts.entry_hashed(to_hash, to);
        let old_hash = if existed {
            account.hash_mixed(to, &mix)
        } else {
            0
        };
        let balance = account.balance_mut(asset);
        // Total supply per asset fits in u64 (checked at genesis), so a credit cannot overflow.
        *balance = balance
            .checked_add(amount)
            .expect("invariant: supply per asset fits in u64");
        let new_hash = account.hash_mixed(to, &mix);
        self.account_hash_sum = self
            .account_hash_sum
            .wrapping_sub(old_hash)
            .wrapping_add(new_hash);
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl ExactSizeIterator<Item = (&Address, &Account)> + '_ {
        self.accounts.iter()
    }

    /// Every account's balance of every asset it holds or has held (zeros included: a sink
    /// resyncing from the state must overwrite a balance that went to zero), in no particular
    /// order.
    pub fn account_balances(&self) -> impl Iterator<Item = (Address, u32, u64)> + '_ {
        self.accounts.iter().flat_map(|(address, account)| {
            let others = account.others.iter().flat_map(|list| list.iter());
            std::iter::once((*address, NATIVE_ASSET, account.native))
                .chain(others.map(|&(asset, balance)| (*address, asset, balance)))
        })
    }

    /// Rebuilds a shard from its parts (snapshot load). Recomputes the hash sum.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        shard: ShardId,
        shard_count: u32,
        chain_id: u32,
        assets: Vec<u32>,
        applied_index: u64,
        accounts: impl ExactSizeIterator<Item = (Address, Account)>,
        inbound_watermark: Vec<u64>,
        outbox: Vec<ChunkedQueue<Receipt>>,
        block_hash: [u8; 32],
    ) -> ShardState {
        let mut state = ShardState::empty(shard, shard_count, chain_id, assets);
        assert_eq!(inbound_watermark.len(), shard_count as usize);
        assert_eq!(outbox.len(), shard_count as usize);
        state.applied_index = applied_index;
        state.inbound_watermark = inbound_watermark;
        state.outbox = outbox;
        state.block_hash = block_hash;
        let mut sum = 0u128;
        state
            .accounts
            .insert_all(accounts.map(|(address, account)| {
                sum = sum.wrapping_add(account.hash(&address));
                (address, account)
            }));
        state.account_hash_sum = sum;
        state
    }
}

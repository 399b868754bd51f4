//! Property tests of the ledger state machine: determinism, conservation, no overdraft, replay
//! protection, and exactly-once cross-shard credits under arbitrary marker schedules.

use aurigraph_engine::genesis::{Allocation, Genesis};
use aurigraph_engine::ledger::{Receipt, ShardState, NONCE_WINDOW};
use aurigraph_engine::record::{Address, Record, Transfer};
use aurigraph_engine::result::ResultCode;
use aurigraph_engine::shard::shard_of;
use aurigraph_engine::state_snapshot::{decode_state, encode_state};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};

const CHAIN: u32 = 7;
const SHARDS: u32 = 3;
const ACCOUNTS: usize = 6;

fn address(i: usize) -> Address {
    let mut a = [0u8; 32];
    a[0] = i as u8 + 1;
    a[31] = 0xaa;
    Address(a)
}

fn genesis() -> Genesis {
    let mut allocations = Vec::new();
    for i in 0..ACCOUNTS {
        allocations.push(Allocation {
            address: address(i),
            asset: 0,
            amount: 1_000,
        });
        if i % 2 == 0 {
            allocations.push(Allocation {
                address: address(i),
                asset: 5,
                amount: 50,
            });
        }
    }
    allocations.sort_by_key(|a| (a.address, a.asset));
    Genesis {
        chain_id: CHAIN,
        controllers: Default::default(),
        shards: Some(SHARDS),
        allocations,
    }
}

fn record(from: usize, to: usize, asset: u32, amount: u64, nonce: u64) -> Record {
    Transfer {
        chain_id: CHAIN,
        from: address(from),
        to: address(to),
        asset,
        amount,
        nonce,
    }
    .with_signature(&[0; 64])
}

/// All shards of one replica, with a deterministic receipt exchange: markers credit the
/// destination from the source's outbox (the same data the runtime ships between cores).
struct Replica {
    shards: Vec<ShardState>,
    next_index: Vec<u64>,
}

impl Replica {
    fn new(g: &Genesis) -> Replica {
        Replica {
            shards: (0..SHARDS)
                .map(|s| ShardState::from_genesis(g, s, SHARDS))
                .collect(),
            next_index: vec![1; SHARDS as usize],
        }
    }

    /// One log entry of transfers on the shard that owns their senders.
    fn apply_entry(&mut self, shard: u32, records: &[Record]) -> Vec<ResultCode> {
        let index = self.next_index[shard as usize];
        self.next_index[shard as usize] += 1;
        let mut results = Vec::new();
        self.shards[shard as usize].apply_batch(index, records, &mut results);
        results
    }

    /// A marker entry on `destination` for everything `source` has applied so far.
    fn apply_marker(&mut self, source: u32, destination: u32) -> usize {
        let up_to = self.shards[source as usize].applied_index();
        let index = self.next_index[destination as usize];
        self.next_index[destination as usize] += 1;
        let receipts: Vec<Receipt> = self.shards[source as usize]
            .outbox(destination)
            .iter()
            .copied()
            .collect();
        let d = &mut self.shards[destination as usize];
        let credited = d.apply_marker(source, up_to, receipts.iter());
        d.set_applied_index(index);
        credited
    }

    fn hashes(&self) -> Vec<u128> {
        self.shards.iter().map(|s| s.state_hash()).collect()
    }

    fn supply(&self, asset: u32) -> u128 {
        let mut total = 0;
        for s in &self.shards {
            total += s.supply_held(asset);
            total += s.supply_in_flight(asset, |d| {
                self.shards[d as usize].inbound_watermark(s.shard())
            });
        }
        total
    }
}

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        asset_five: bool,
        amount: u64,
        nonce: u64,
    },
    Marker {
        source: u32,
        destination: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..ACCOUNTS, 0..ACCOUNTS, any::<bool>(), 0u64..400, 0u64..80).prop_map(
            |(from, to, asset_five, amount, nonce)| Op::Transfer { from, to, asset_five, amount, nonce }),
        1 => (0..SHARDS, 0..SHARDS).prop_map(|(source, destination)| Op::Marker { source, destination }),
    ]
}

fn run(replica: &mut Replica, ops: &[Op]) -> Vec<(Record, ResultCode)> {
    let mut outcomes = Vec::new();
    for op in ops {
        match *op {
            Op::Transfer {
                from,
                to,
                asset_five,
                amount,
                nonce,
            } => {
                let r = record(from, to, if asset_five { 5 } else { 0 }, amount, nonce);
                let shard = shard_of(&address(from), SHARDS);
                let results = replica.apply_entry(shard, &[r]);
                outcomes.push((r, results[0]));
            }
            Op::Marker {
                source,
                destination,
            } if source != destination => {
                replica.apply_marker(source, destination);
            }
            Op::Marker { .. } => {}
        }
    }
    outcomes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replicas_fed_the_same_entries_agree(ops in proptest::collection::vec(op(), 1..200)) {
        let g = genesis();
        let mut a = Replica::new(&g);
        let mut b = Replica::new(&g);
        let out_a = run(&mut a, &ops);
        let out_b = run(&mut b, &ops);
        prop_assert_eq!(out_a, out_b);
        prop_assert_eq!(a.hashes(), b.hashes());
        // A snapshot round trip keeps the state hash and archives to identical bytes.
        for s in &a.shards {
            let bytes = encode_state(s);
            let restored = decode_state(&bytes).unwrap();
            prop_assert_eq!(restored.state_hash(), s.state_hash());
            prop_assert_eq!(encode_state(&restored), bytes);
        }
    }

    #[test]
    fn supply_is_conserved_and_nobody_overdraws(ops in proptest::collection::vec(op(), 1..300)) {
        let g = genesis();
        let mut r = Replica::new(&g);
        let before: BTreeMap<u32, u64> = g.supply();
        let outcomes = run(&mut r, &ops);
        for (asset, amount) in &before {
            prop_assert_eq!(r.supply(*asset), *amount as u128);
        }
        // A transfer succeeds only when the sender held the amount (no negative balance): replay
        // the OK outcomes against a plain model of balances.
        let mut model: BTreeMap<(Address, u32), i128> = BTreeMap::new();
        for a in &g.allocations {
            model.insert((a.address, a.asset), a.amount as i128);
        }
        for (rec, code) in &outcomes {
            if code.is_ok() {
                let from = model.entry((rec.from(), rec.asset())).or_insert(0);
                *from -= rec.amount() as i128;
                prop_assert!(*from >= 0, "overdraft");
                *model.entry((rec.to(), rec.asset())).or_insert(0) += rec.amount() as i128;
            }
        }
    }

    #[test]
    fn each_signed_transfer_applies_at_most_once(
        nonces in proptest::collection::vec(0u64..200, 1..150),
    ) {
        // One sender, arbitrary delivery order with duplicates: a reference model of the window.
        let g = genesis();
        let mut r = Replica::new(&g);
        let shard = shard_of(&address(0), SHARDS);
        let mut applied: HashSet<u64> = HashSet::new();
        let mut high: Option<u64> = None;
        for n in nonces {
            let rec = record(0, 1, 0, 1, n);
            let code = r.apply_entry(shard, &[rec])[0];
            let expected = match high {
                Some(h) if n + NONCE_WINDOW <= h => ResultCode::NonceTooOld,
                _ if applied.contains(&n) => ResultCode::NonceReplayed,
                _ => ResultCode::Ok,
            };
            prop_assert_eq!(code, expected, "nonce {}", n);
            if code.is_ok() {
                applied.insert(n);
                high = Some(high.map_or(n, |h| h.max(n)));
            }
        }
    }

    #[test]
    fn each_signed_transfer_is_decided_by_state_at_most_once(
        transfers in proptest::collection::vec((0u64..100, 1u64..400), 1..150),
    ) {
        // One sender, amounts that sometimes exceed its balance, nonces repeating: a refusal
        // for funds spends its nonce exactly as an applied transfer does.
        let g = genesis();
        let mut r = Replica::new(&g);
        let shard = shard_of(&address(0), SHARDS);
        let mut spent: HashSet<u64> = HashSet::new();
        let mut high: Option<u64> = None;
        let mut balance = 1_000u64;
        for (n, amount) in transfers {
            let rec = record(0, 1, 0, amount, n);
            let code = r.apply_entry(shard, &[rec])[0];
            let expected = match high {
                Some(h) if n + NONCE_WINDOW <= h => ResultCode::NonceTooOld,
                _ if spent.contains(&n) => ResultCode::NonceReplayed,
                _ if amount > balance => ResultCode::InsufficientFunds,
                _ => ResultCode::Ok,
            };
            prop_assert_eq!(code, expected, "nonce {} amount {}", n, amount);
            if matches!(code, ResultCode::Ok | ResultCode::InsufficientFunds) {
                spent.insert(n);
                high = Some(high.map_or(n, |h| h.max(n)));
            }
            if code.is_ok() {
                balance -= amount;
            }
            let account = r.shards[shard as usize].account(&address(0)).unwrap();
            prop_assert_eq!(account.balance(0), balance);
            prop_assert_eq!(Some(account.nonce_high), high.or(Some(0)));
        }
    }

    #[test]
    fn cross_shard_receipts_credit_exactly_once(
        ops in proptest::collection::vec(op(), 1..200),
        repeats in proptest::collection::vec((0..SHARDS, 0..SHARDS), 0..30),
    ) {
        let g = genesis();
        let mut r = Replica::new(&g);
        let outcomes = run(&mut r, &ops);
        // Deliver every marker (again and again: duplicates and stale markers must be no-ops).
        for (s, d) in repeats {
            if s != d {
                r.apply_marker(s, d);
            }
        }
        for s in 0..SHARDS {
            for d in 0..SHARDS {
                if s != d {
                    r.apply_marker(s, d);
                    prop_assert_eq!(r.apply_marker(s, d), 0);
                }
            }
        }
        // Now every OK transfer is fully credited: balances equal the model exactly.
        let mut model: BTreeMap<(Address, u32), u64> = BTreeMap::new();
        for a in &g.allocations {
            model.insert((a.address, a.asset), a.amount);
        }
        for (rec, code) in &outcomes {
            if code.is_ok() {
                *model.get_mut(&(rec.from(), rec.asset())).unwrap() -= rec.amount();
                *model.entry((rec.to(), rec.asset())).or_insert(0) += rec.amount();
            }
        }
        for ((addr, asset), amount) in model {
            let shard = &r.shards[shard_of(&addr, SHARDS) as usize];
            let held = shard.account(&addr).map_or(0, |a| a.balance(asset));
            prop_assert_eq!(held, amount);
        }
    }
}

#[test]
fn stateless_checks_give_their_result_codes() {
    let g = genesis();
    let mut r = Replica::new(&g);
    let from = 0;
    let shard = shard_of(&address(from), SHARDS);
    let mut wrong_chain = record(from, 1, 0, 5, 1);
    wrong_chain.0[16..20].copy_from_slice(&9u32.to_le_bytes());
    let mut no_tag = record(from, 1, 0, 5, 2);
    no_tag.0[0] = b'X';
    let cases = [
        (wrong_chain, ResultCode::WrongChain),
        (record(from, 1, 0, 0, 1), ResultCode::ZeroAmount),
        (record(from, from, 0, 5, 1), ResultCode::SelfTransfer),
        (record(from, 1, 4, 5, 1), ResultCode::UnknownAsset),
        (no_tag, ResultCode::Malformed),
        (record(from, 1, 0, 5_000, 1), ResultCode::InsufficientFunds),
        // The funds refusal spent nonce 1.
        (record(from, 1, 0, 5, 1), ResultCode::NonceReplayed),
        (record(from, 1, 0, 5, 3), ResultCode::Ok),
        (record(from, 1, 0, 5, 3), ResultCode::NonceReplayed),
        (record(from, 1, 0, 5, 100), ResultCode::Ok),
        (record(from, 1, 0, 5, 2), ResultCode::NonceTooOld),
    ];
    for (rec, expected) in cases {
        assert_eq!(r.apply_entry(shard, &[rec])[0], expected, "{rec:?}");
    }
    // A sender on another shard is refused deterministically (never routed here).
    let other = (0..ACCOUNTS)
        .find(|&i| shard_of(&address(i), SHARDS) != shard)
        .unwrap();
    assert_eq!(
        r.apply_entry(shard, &[record(other, (other + 1) % ACCOUNTS, 0, 1, 1)])[0],
        ResultCode::Malformed
    );
}

/// Gives `to` `amount` of the native asset from genesis account `from` (through a marker when
/// `to` lives on another shard).
fn fund(r: &mut Replica, from: usize, to: Address, nonce: u64, amount: u64) {
    let rec = Transfer {
        chain_id: CHAIN,
        from: address(from),
        to,
        asset: 0,
        amount,
        nonce,
    }
    .with_signature(&[0; 64]);
    let source = shard_of(&address(from), SHARDS);
    assert_eq!(r.apply_entry(source, &[rec])[0], ResultCode::Ok);
    let destination = shard_of(&to, SHARDS);
    if destination != source {
        assert_eq!(r.apply_marker(source, destination), 1);
    }
}

#[test]
fn a_transfer_refused_for_funds_cannot_be_replayed_once_funded() {
    let g = genesis();
    let mut r = Replica::new(&g);
    let shard = shard_of(&address(0), SHARDS);
    let hash_before = r.shards[shard as usize].accounts_hash();
    // Signed for more than the sender holds: refused, and its nonce is spent.
    let rec = record(0, 1, 0, 1_500, 7);
    assert_eq!(
        r.apply_entry(shard, &[rec])[0],
        ResultCode::InsufficientFunds
    );
    let account = r.shards[shard as usize].account(&address(0)).unwrap();
    assert_eq!(account.nonce_high, 7);
    assert_eq!(account.balance(0), 1_000);
    assert_ne!(
        r.shards[shard as usize].accounts_hash(),
        hash_before,
        "the spent nonce is state"
    );
    // The sender is funded later; whoever saw the refused transfer replays it.
    fund(&mut r, 2, address(0), 1, 900);
    assert_eq!(
        r.shards[shard as usize]
            .account(&address(0))
            .unwrap()
            .balance(0),
        1_900
    );
    assert_eq!(r.apply_entry(shard, &[rec])[0], ResultCode::NonceReplayed);
    let account = r.shards[shard as usize].account(&address(0)).unwrap();
    assert_eq!(account.balance(0), 1_900, "the replay moved nothing");
    // A funds refusal of an asset the sender never held spends the nonce as well.
    let other_asset = record(1, 0, 5, 1, 3);
    let shard_1 = shard_of(&address(1), SHARDS);
    assert_eq!(
        r.apply_entry(shard_1, &[other_asset])[0],
        ResultCode::InsufficientFunds
    );
    assert_eq!(
        r.apply_entry(shard_1, &[other_asset])[0],
        ResultCode::NonceReplayed
    );
}

#[test]
fn a_transfer_from_an_unknown_sender_cannot_be_replayed_once_funded() {
    let g = genesis();
    let mut r = Replica::new(&g);
    let stranger = Address([0x77; 32]);
    let shard = shard_of(&stranger, SHARDS);
    let rec = Transfer {
        chain_id: CHAIN,
        from: stranger,
        to: address(0),
        asset: 0,
        amount: 1,
        nonce: 0,
    }
    .with_signature(&[0; 64]);
    let before = r.shards[shard as usize].account_count();
    let hash_before = r.shards[shard as usize].accounts_hash();
    assert_eq!(
        r.apply_entry(shard, &[rec])[0],
        ResultCode::InsufficientFunds
    );
    // The refusal creates the sender with no balance and the nonce spent.
    assert_eq!(r.shards[shard as usize].account_count(), before + 1);
    let created = r.shards[shard as usize].account(&stranger).unwrap();
    assert_eq!(created.balances().count(), 0);
    assert_eq!(created.check_nonce(0), Err(ResultCode::NonceReplayed));
    assert_ne!(r.shards[shard as usize].accounts_hash(), hash_before);
    // A snapshot keeps the nonce-only account (and the same hash).
    let restored = decode_state(&encode_state(&r.shards[shard as usize])).unwrap();
    assert_eq!(restored.state_hash(), r.shards[shard as usize].state_hash());
    assert_eq!(
        restored.account(&stranger),
        r.shards[shard as usize].account(&stranger)
    );
    fund(&mut r, 0, stranger, 1, 10);
    assert_eq!(r.apply_entry(shard, &[rec])[0], ResultCode::NonceReplayed);
    let account = r.shards[shard as usize].account(&stranger).unwrap();
    assert_eq!(account.balance(0), 10, "the replay moved nothing");
    // The funded sender's next nonce applies.
    let mut next = rec;
    next.0[96..104].copy_from_slice(&1u64.to_le_bytes());
    assert_eq!(r.apply_entry(shard, &[next])[0], ResultCode::Ok);
}

#[test]
fn corrupt_state_archives_are_rejected() {
    let g = genesis();
    let r = Replica::new(&g);
    let bytes = encode_state(&r.shards[0]);
    assert!(decode_state(&bytes[..bytes.len() - 3]).is_err());
    assert!(decode_state(&[]).is_err());
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 2] ^= 0x40;
    // Either rejected, or (if the flip hit plain data) a different but valid state: never a panic.
    let _ = decode_state(&flipped);
}

/// The recent-transfers window as the contract describes it: the last `max` distinct transfers
/// recorded, the first decision of each kept while it stays.
#[derive(Default)]
struct WindowModel {
    order: std::collections::VecDeque<u8>,
    decisions: BTreeMap<u8, u64>,
}

impl WindowModel {
    fn record(&mut self, key: u8, block: u64, max: usize) {
        if self.decisions.contains_key(&key) {
            return;
        }
        self.decisions.insert(key, block);
        self.order.push_back(key);
        while self.order.len() > max {
            let old = self.order.pop_front().unwrap();
            self.decisions.remove(&old);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The window (a ring in log order and an open-addressing index over it, deletion by
    /// backward shift) must answer what an exact window answers, through repeats, re-entries
    /// after leaving, a snapshot round trip and a smaller bound.
    #[test]
    fn the_recent_window_answers_like_an_exact_window(
        keys in proptest::collection::vec(0u8..40, 1..400),
        max in 1usize..24,
    ) {
        use aurigraph_engine::record::TxHash;
        let mut state = ShardState::from_genesis(&genesis(), 0, 1);
        state.set_recent_bounds(max, 4);
        let mut model = WindowModel::default();
        for (i, key) in keys.iter().enumerate() {
            let block = i as u64 + 1;
            state.set_applied_index(block);
            state.record_decision(TxHash([*key; 32]), ResultCode::Ok, block);
            model.record(*key, block, max);
            for k in 0u8..40 {
                let got = state.recent_decision(&TxHash([k; 32])).map(|d| d.block);
                prop_assert_eq!(got, model.decisions.get(&k).copied(), "key {} after {}", k, i);
            }
        }
        let order: Vec<u8> = state.recent_decisions().map(|(h, _)| h.0[0]).collect();
        prop_assert_eq!(&order, &model.order.iter().copied().collect::<Vec<_>>());
        let restored = decode_state(&encode_state(&state)).unwrap();
        let again: Vec<u8> = restored.recent_decisions().map(|(h, _)| h.0[0]).collect();
        prop_assert_eq!(&again, &order);
        // A smaller bound forgets the oldest at once.
        let smaller = max / 2;
        state.set_recent_bounds(smaller, 4);
        while model.order.len() > smaller {
            let old = model.order.pop_front().unwrap();
            model.decisions.remove(&old);
        }
        for k in 0u8..40 {
            let got = state.recent_decision(&TxHash([k; 32])).map(|d| d.block);
            prop_assert_eq!(got, model.decisions.get(&k).copied());
        }
    }
}

//! The thread-per-core runtime end to end: executors, raft, the WAL, apply, cross-shard receipts,
//! restart from the log and from snapshots.

use aurigraph_engine::genesis::{Allocation, Genesis};
use aurigraph_engine::record::{address_of, Address, Record, Transfer};
use aurigraph_engine::result::ResultCode;
use aurigraph_engine::runtime::{Engine, EngineConfig};
use aurigraph_engine::shard::shard_of;
use ed25519_dalek::SigningKey;
use futures::executor::block_on;

const CHAIN: u32 = 7;
const SHARDS: u32 = 2;

fn keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect()
}

fn genesis(keys: &[SigningKey]) -> Genesis {
    let mut allocations: Vec<Allocation> = keys
        .iter()
        .map(|k| Allocation {
            address: address_of(k),
            asset: 0,
            amount: 1_000_000,
        })
        .collect();
    allocations.sort_by_key(|a| a.address);
    Genesis {
        chain_id: CHAIN,
        controllers: Default::default(),
        shards: Some(SHARDS),
        allocations,
    }
}

fn transfer(key: &SigningKey, to: Address, amount: u64, nonce: u64) -> Record {
    Transfer {
        chain_id: CHAIN,
        from: address_of(key),
        to,
        asset: 0,
        amount,
        nonce,
    }
    .sign(key)
}

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir, 2);
    c.raft_tick = std::time::Duration::from_millis(20);
    c
}

fn balance(engine: &Engine, a: Address) -> u64 {
    block_on(engine.account(a))
        .unwrap()
        .map_or(0, |acc| acc.balance(0))
}

/// Waits until every cross-shard receipt has been credited (markers are proposed asynchronously).
fn settle(engine: &Engine, expect: &[(Address, u64)]) {
    for _ in 0..500 {
        if expect.iter().all(|&(a, b)| balance(engine, a) == b) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let got: Vec<u64> = expect.iter().map(|&(a, _)| balance(engine, a)).collect();
    let status = block_on(engine.status()).unwrap();
    panic!("balances did not settle: expected {expect:?}, got {got:?}; {status:#?}");
}

#[test]
fn transfers_commit_apply_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(6);
    let g = genesis(&keys);
    let (same, cross) = {
        let a = &keys[0];
        let s = shard_of(&address_of(a), SHARDS);
        let same = keys[1..]
            .iter()
            .find(|k| shard_of(&address_of(k), SHARDS) == s)
            .unwrap();
        let cross = keys[1..]
            .iter()
            .find(|k| shard_of(&address_of(k), SHARDS) != s)
            .unwrap();
        (address_of(same), address_of(cross))
    };
    let sender = &keys[0];
    let engine = Engine::start(config(dir.path()), Some(&g)).unwrap();
    assert_eq!(engine.shard_count(), SHARDS);

    let records = vec![
        transfer(sender, same, 10, 1),
        transfer(sender, cross, 20, 2),
        transfer(sender, cross, 20, 2), // replay of the same signed transfer
        transfer(sender, cross, 5_000_000, 3), // too much
        transfer(sender, address_of(sender), 1, 4), // self
    ];
    let mut bad_sig = transfer(sender, same, 1, 5);
    bad_sig.0[150] ^= 1;
    let mut all = records.clone();
    all.push(bad_sig);
    let outcomes = block_on(engine.submit(&all)).unwrap();
    let codes: Vec<ResultCode> = outcomes.iter().map(|o| o.result).collect();
    assert_eq!(
        codes,
        vec![
            ResultCode::Ok,
            ResultCode::Ok,
            ResultCode::NonceReplayed,
            ResultCode::InsufficientFunds,
            ResultCode::SelfTransfer,
            ResultCode::BadSignature
        ]
    );
    for (o, r) in outcomes.iter().zip(&all) {
        assert_eq!(o.tx_hash, r.tx_hash());
    }
    assert!(outcomes[0].block > 0 && outcomes[4].block == 0);

    let expect = [
        (address_of(sender), 1_000_000 - 30),
        (same, 1_000_010),
        (cross, 1_000_020),
    ];
    settle(&engine, &expect);
    let hashes: Vec<u128> = block_on(engine.status())
        .unwrap()
        .iter()
        .map(|s| s.accounts_hash)
        .collect();
    let status = block_on(engine.status()).unwrap();
    assert!(status
        .iter()
        .all(|s| s.role == "LEADER" && s.leader_id == Some(1)));
    assert!(engine.shutdown().is_none());

    // Restart from the log: same balances, same state hashes.
    let engine = Engine::start(config(dir.path()), None).unwrap();
    settle(&engine, &expect);
    let again: Vec<u128> = block_on(engine.status())
        .unwrap()
        .iter()
        .map(|s| s.accounts_hash)
        .collect();
    assert_eq!(hashes, again);
    // The replay window survived: the same transfer again is a replay.
    let o = block_on(engine.submit(&[records[0]])).unwrap();
    assert_eq!(o[0].result, ResultCode::NonceReplayed);
    assert!(engine.shutdown().is_none());
}

#[test]
fn many_cross_shard_transfers_conserve_supply_across_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(8);
    let g = genesis(&keys);
    let mut c = config(dir.path());
    c.snapshot_interval_entries = 5; // snapshot and truncate often
    let engine = Engine::start(c.clone(), Some(&g)).unwrap();
    let mut nonce = vec![0u64; keys.len()];
    let mut expected: Vec<u64> = vec![1_000_000; keys.len()];
    for round in 0..30 {
        let mut batch = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let j = (i + round + 1) % keys.len();
            if j == i {
                continue;
            }
            nonce[i] += 1;
            batch.push((
                i,
                j,
                transfer(k, address_of(&keys[j]), 7 + i as u64, nonce[i]),
            ));
        }
        let outcomes =
            block_on(engine.submit(&batch.iter().map(|b| b.2).collect::<Vec<_>>())).unwrap();
        for ((i, j, _), o) in batch.iter().zip(outcomes) {
            assert_eq!(o.result, ResultCode::Ok);
            expected[*i] -= 7 + *i as u64;
            expected[*j] += 7 + *i as u64;
        }
    }
    let expect: Vec<(Address, u64)> = keys
        .iter()
        .map(address_of)
        .zip(expected.iter().copied())
        .collect();
    settle(&engine, &expect);
    eprintln!("phase 1 settled");
    // Snapshots are archived off the core while turns go on, then saved at a later turn: more
    // than one of them completed.
    let saved: u64 = engine
        .shard_counters()
        .iter()
        .map(|c| c.snapshots.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert!(saved >= 2, "{saved} snapshots saved");
    assert!(engine.shutdown().is_none());
    let snaps = std::fs::read_dir(dir.path().join("shards/0000/snap"))
        .unwrap()
        .count();
    assert!(snaps >= 1, "snapshots were taken");

    let engine = Engine::start(c, None).unwrap();
    settle(&engine, &expect);
    let total: u64 = expect.iter().map(|&(a, _)| balance(&engine, a)).sum();
    assert_eq!(total, 1_000_000 * keys.len() as u64);
    assert!(engine.shutdown().is_none());
}

#[test]
fn refuses_a_different_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let engine = Engine::start(config(dir.path()), Some(&genesis(&keys))).unwrap();
    assert!(engine.shutdown().is_none());
    let mut other = genesis(&keys);
    other.chain_id = 8;
    let err = Engine::start(config(dir.path()), Some(&other))
        .err()
        .unwrap();
    assert!(err.to_string().contains("differs"), "{err}");
}

#[test]
fn a_resubmitted_transfer_is_replayed_and_its_status_stays_ok() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let engine = Engine::start(config(dir.path()), Some(&genesis(&keys))).unwrap();
    let record = transfer(&keys[0], address_of(&keys[1]), 5, 1);
    let first = block_on(engine.submit(&[record])).unwrap();
    assert_eq!(first[0].result, ResultCode::Ok);
    // Resubmitting the same signed transfer (a client retrying) is harmless: it is not applied
    // again, and the transfer's status remains the outcome of the first submission.
    let again = block_on(engine.submit(&[record])).unwrap();
    assert_eq!(again[0].result, ResultCode::NonceReplayed);
    let status = block_on(engine.transaction(record.tx_hash())).unwrap();
    match status {
        Some(aurigraph_engine::TxStatus::Decided(outcome)) => {
            assert_eq!(outcome.result, ResultCode::Ok);
            assert_eq!(outcome.block, first[0].block);
        }
        other => panic!("expected the first outcome, got {other:?}"),
    }
    assert_eq!(balance(&engine, address_of(&keys[1])), 1_000_005);
    assert!(engine.shutdown().is_none());
}

#[test]
fn pinned_executors_run_each_on_one_cpu_of_the_process() {
    use aurigraph_engine::runtime::CoreService;
    use std::sync::{Arc, Mutex};
    let keys = keys(2);
    let dir = tempfile::tempdir().unwrap();
    let mut allowed: Vec<usize> = core_affinity::get_core_ids()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    allowed.sort_unstable();
    let mut c = config(dir.path());
    c.cores = allowed.len().min(2);
    c.pin_cores = true;
    // Each executor reports the CPUs its own thread may run on (sched_getaffinity of the
    // calling thread), from a service task running on it.
    type Seen = Arc<Mutex<Vec<(usize, Vec<usize>)>>>;
    let seen: Seen = Arc::default();
    let service: CoreService = {
        let seen = seen.clone();
        Arc::new(move |core, _engine| {
            let seen = seen.clone();
            Box::pin(async move {
                let cpus = core_affinity::get_core_ids()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
                seen.lock().unwrap().push((core, cpus));
            })
        })
    };
    let engine =
        Engine::start_with_services(c.clone(), Some(&genesis(&keys)), Some(service)).unwrap();
    let start = std::time::Instant::now();
    while seen.lock().unwrap().len() < c.cores && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let expected: Vec<(usize, Vec<usize>)> = (0..c.cores).map(|i| (i, vec![allowed[i]])).collect();
    assert_eq!(seen, expected);
    assert!(engine.shutdown().is_none());
    // More executors than the CPUs it may run on: refused with the reason.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.cores = allowed.len() + 1;
    c.pin_cores = true;
    let error = match Engine::start(c, Some(&genesis(&keys))) {
        Ok(_) => panic!("pinned more executors than CPUs"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("cannot pin"), "{error}");
}

#[test]
fn the_watchdog_names_a_core_whose_executor_makes_no_progress() {
    use aurigraph_engine::runtime::watchdog::StallAction;
    use aurigraph_engine::runtime::CoreService;
    use std::time::{Duration, Instant};
    let keys = keys(2);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.stall_timeout = Some(Duration::from_millis(1500));
    c.stall_action = StallAction::Record;
    // A service that holds core 1's executor thread for 4 s without yielding (as a reactor
    // asleep on an operation that never completes would hold it).
    let service: CoreService = std::sync::Arc::new(|core, _engine| {
        Box::pin(async move {
            if core == 1 {
                std::thread::sleep(Duration::from_secs(4));
            }
        })
    });
    let engine = Engine::start_with_services(c, Some(&genesis(&keys)), Some(service)).unwrap();
    let start = Instant::now();
    while engine.stalled_core().is_none() && start.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (core, still) = engine
        .stalled_core()
        .expect("the watchdog saw core 1 stall");
    assert_eq!(core, 1);
    assert!(still >= Duration::from_millis(1500), "{still:?}");
    assert!(engine.shutdown().is_none());
}

#[test]
fn a_gateway_moves_the_accounts_it_controls_without_signatures_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let mut g = genesis(&keys);
    // keys[0] and keys[1] are custodial: acme controls the first, other the second.
    g.controllers
        .insert(address_of(&keys[0]), "acme".to_string());
    g.controllers
        .insert(address_of(&keys[1]), "other".to_string());
    let engine = Engine::start(config(dir.path()), Some(&g)).unwrap();
    let acme = engine.gateway("acme").expect("the genesis names acme");
    assert!(engine.gateway("nobody").is_none());
    let unsigned = |from: &SigningKey, nonce: u64| {
        Transfer {
            chain_id: CHAIN,
            from: address_of(from),
            to: address_of(&keys[3]),
            asset: 0,
            amount: 10,
            nonce,
        }
        .with_signature(&[0; 64])
    };
    let batch = vec![
        unsigned(&keys[0], 1),                           // acme's: no signature needed
        unsigned(&keys[1], 1),                           // other's: acme may not move it
        unsigned(&keys[2], 1),                           // nobody's: needs its signature
        transfer(&keys[2], address_of(&keys[3]), 10, 2), // signed: fine from anyone
        unsigned(&keys[0], 1),                           // the nonce window holds as ever
    ];
    let codes = |outcomes: Vec<aurigraph_engine::replica::Outcome>| -> Vec<ResultCode> {
        outcomes.iter().map(|o| o.result).collect()
    };
    let got = codes(block_on(engine.submit_as(&batch, Some(acme))).unwrap());
    assert_eq!(
        got,
        vec![
            ResultCode::Ok,
            ResultCode::BadSignature,
            ResultCode::BadSignature,
            ResultCode::Ok,
            ResultCode::NonceReplayed
        ]
    );
    // Without the gateway, the custodial account needs its signature like any other.
    let anonymous = codes(block_on(engine.submit(&[unsigned(&keys[0], 2)])).unwrap());
    assert_eq!(anonymous, vec![ResultCode::BadSignature]);
    settle(&engine, &[(address_of(&keys[3]), 1_000_020)]);
    let counters = engine.shard_counters();
    let custodial: u64 = counters
        .iter()
        .map(|c| {
            c.transfers_custodial
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert_eq!(custodial, 2, "two records moved acme's account");
    assert!(engine.shutdown().is_none());
}

#[test]
fn executors_reach_each_others_shards_over_their_rings_not_a_shared_channel() {
    use aurigraph_engine::runtime::CoreService;
    use std::sync::atomic::Ordering::Relaxed;
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(6);
    let g = genesis(&keys);
    let shards: std::collections::BTreeSet<u32> = keys
        .iter()
        .map(|k| shard_of(&address_of(k), SHARDS))
        .collect();
    assert_eq!(shards.len(), 2, "the senders span both shards");
    let sink = address_of(&SigningKey::from_bytes(&[99; 32]));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Vec<ResultCode>)>();
    // On every core: one transfer from every key (both shards, so one of them on the other
    // core), each core with its own nonce.
    let signed: Vec<Vec<Record>> = (0..2)
        .map(|core| {
            keys.iter()
                .map(|k| transfer(k, sink, 1, 1 + core as u64))
                .collect()
        })
        .collect();
    let service: CoreService = std::sync::Arc::new(move |core, engine: Engine| {
        let records = signed[core].clone();
        let done = done_tx.clone();
        Box::pin(async move {
            let outcomes = engine.submit(&records).await.unwrap();
            let codes = outcomes.iter().map(|o| o.result).collect();
            done.send((core, codes)).unwrap();
        })
    });
    let engine = Engine::start_with_services(config(dir.path()), Some(&g), Some(service)).unwrap();
    for _ in 0..2 {
        let (core, codes) = done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("both cores answered");
        assert_eq!(codes, vec![ResultCode::Ok; 6], "core {core}");
    }
    let counters = engine.shard_counters();
    let total = |field: fn(&aurigraph_engine::runtime::ShardCounters) -> u64| -> u64 {
        counters.iter().map(field).sum()
    };
    // Before this thread asks anything: only the executors have sent commands.
    assert_eq!(total(|c| c.commands_from_threads.load(Relaxed)), 0);
    // Each core submitted to the other core's shard at least once, plus receipts between
    // the shards.
    assert!(total(|c| c.commands_from_cores.load(Relaxed)) >= 2);
    // What one core lent the other (records, outcomes) came back to be freed where it was
    // allocated (the last of them may still be on its way).
    let cores = engine.core_counters();
    let home = || -> u64 { cores.iter().map(|c| c.buffers_home.load(Relaxed)).sum() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while home() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        home() >= 4,
        "records and outcomes of two cross-core submissions"
    );
    let away: u64 = cores
        .iter()
        .map(|c| c.buffers_freed_away.load(Relaxed))
        .sum();
    assert_eq!(away, 0);
    settle(&engine, &[(sink, 12)]);
    assert!(total(|c| c.commands_from_threads.load(Relaxed)) > 0);
    assert!(engine.shutdown().is_none());
}

/// Submits `batches` batches of one transfer each from `keys` (round robin, nonces from 1),
/// all at once from one thread, and waits for every outcome.
fn submit_concurrently(engine: &Engine, keys: &[SigningKey], sink: Address, batches: u64) {
    let submissions: Vec<_> = (0..batches)
        .map(|i| {
            let key = &keys[(i % keys.len() as u64) as usize];
            let nonce = 1 + i / keys.len() as u64;
            vec![transfer(key, sink, 1, nonce)]
        })
        .collect();
    let outcomes = block_on(futures::future::join_all(
        submissions.iter().map(|records| engine.submit(records)),
    ));
    for outcome in outcomes {
        assert_eq!(outcome.unwrap()[0].result, ResultCode::Ok);
    }
}

#[test]
fn a_shard_proposes_the_next_group_while_its_write_is_in_flight_and_not_when_told_not_to() {
    use std::sync::atomic::Ordering::Relaxed;
    // 10 transfers per account: their nonces stay inside the anti-replay window in any order.
    let keys = keys(60);
    let g = genesis(&keys);
    let sink = address_of(&SigningKey::from_bytes(&[98; 32]));
    let overlapped = |engine: &Engine| -> (u64, u64) {
        let counters = engine.shard_counters();
        (
            counters
                .iter()
                .map(|c| c.write_cycles_overlapped.load(Relaxed))
                .sum(),
            counters
                .iter()
                .map(|c| c.write_cycles_alone.load(Relaxed))
                .sum(),
        )
    };
    for (in_flight_max, expect_overlap) in [(8, true), (1, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.ready_cycles_in_flight_max = in_flight_max;
        let engine = Engine::start(config, Some(&g)).unwrap();
        submit_concurrently(&engine, &keys, sink, 600);
        let (with, without) = overlapped(&engine);
        assert!(with + without > 0);
        if expect_overlap {
            assert!(with > 0, "no cycle overlapped a write ({without} alone)");
        } else {
            assert_eq!(with, 0, "one cycle in flight at most");
        }
        // Every acknowledged transfer is durable: a restart finds them all.
        assert!(engine.shutdown().is_none());
        let engine = Engine::start(config_with(dir.path(), in_flight_max), Some(&g)).unwrap();
        settle(&engine, &[(sink, 600)]);
        assert!(engine.shutdown().is_none());
    }
}

fn config_with(dir: &std::path::Path, ready_cycles_in_flight_max: usize) -> EngineConfig {
    let mut c = config(dir);
    c.ready_cycles_in_flight_max = ready_cycles_in_flight_max;
    c
}

// Verification shared between cores: a large signed submission's chunks verified by the
// engine's other core give the same verdicts as its own core's.

/// Senders of shard 0: one submission of all of them is shared between the two cores.
const HELP_SENDERS: usize = 300;

/// `HELP_SENDERS` keys whose accounts live on shard 0.
fn shard_zero_keys() -> Vec<SigningKey> {
    (0u32..)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            SigningKey::from_bytes(&seed)
        })
        .filter(|k| shard_of(&address_of(k), SHARDS) == 0)
        .take(HELP_SENDERS)
        .collect()
}

/// Round `round`'s transfers (nonce `round + 1`), every 97th with a broken signature: in the
/// chunks the shard's core takes and in those the other core takes alike.
fn round_of(keys: &[SigningKey], round: u64) -> (Vec<Record>, Vec<ResultCode>) {
    let to = Address([3; 32]);
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let mut record = Transfer {
                chain_id: CHAIN,
                from: address_of(key),
                to,
                asset: 0,
                amount: 1,
                nonce: round + 1,
            }
            .sign(key);
            if i % 97 == 5 {
                record.0[150] ^= 1;
                (record, ResultCode::BadSignature)
            } else {
                (record, ResultCode::Ok)
            }
        })
        .unzip()
}

/// Runs `rounds` submissions one after the other (nothing waits behind any of them) on an
/// engine of two cores; the core counters' (offered, joined, signatures verified for others),
/// summed over the cores.
fn run_shared_verification(help_signatures_min: usize, rounds: u64) -> [u64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let keys = shard_zero_keys();
    let mut config = config(dir.path());
    config.verify_help_signatures_min = help_signatures_min;
    let engine = Engine::start(config, Some(&genesis(&keys))).unwrap();
    for round in 0..rounds {
        let (records, expected) = round_of(&keys, round);
        let outcomes = block_on(engine.submit(&records)).unwrap();
        let codes: Vec<ResultCode> = outcomes.iter().map(|o| o.result).collect();
        assert_eq!(codes, expected, "round {round}");
    }
    let sum = |field: fn(&aurigraph_engine::runtime::CoreCounters) -> u64| -> u64 {
        engine.core_counters().iter().map(field).sum()
    };
    let counts = [
        sum(|c| {
            c.verify_help_offered
                .load(std::sync::atomic::Ordering::Relaxed)
        }),
        sum(|c| {
            c.verify_help_joined
                .load(std::sync::atomic::Ordering::Relaxed)
        }),
        sum(|c| {
            c.signatures_verified_for_others
                .load(std::sync::atomic::Ordering::Relaxed)
        }),
    ];
    assert!(engine.shutdown().is_none());
    counts
}

#[test]
fn large_submissions_are_verified_with_the_other_cores_help_and_the_same_verdicts() {
    let rounds = 6;
    let [offered, joined, signatures] = run_shared_verification(128, rounds);
    assert_eq!(offered, rounds, "one offer per submission (two cores)");
    // The other core is idle: it takes chunks long before the shard's core has taken all of
    // them (five chunks of 64).
    assert!(joined >= 1, "joined {joined} of {offered}");
    assert!(
        signatures >= joined * 44,
        "{signatures} signatures in {joined} offers"
    );
    assert!(signatures <= rounds * (HELP_SENDERS as u64 - 64));
}

#[test]
fn with_help_off_every_signature_is_verified_on_its_shards_core() {
    assert_eq!(run_shared_verification(0, 2), [0; 3]);
}

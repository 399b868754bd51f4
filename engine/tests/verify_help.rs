//! Verification shared between cores: a large signed submission's parts verified by the
//! engine's other cores give the same verdicts as its own core's.

use aurigraph_engine::genesis::{Allocation, Genesis};
use aurigraph_engine::record::{address_of, Address, Record, Transfer};
use aurigraph_engine::result::ResultCode;
use aurigraph_engine::runtime::{Engine, EngineConfig};
use aurigraph_engine::shard::shard_of;
use ed25519_dalek::SigningKey;
use futures::executor::block_on;
use std::sync::atomic::Ordering::Relaxed;

const CHAIN: u32 = 7;
const SHARDS: u32 = 2;
/// Senders of shard 0: one submission of all of them is split in two parts on two cores.
const SENDERS: usize = 300;

/// `SENDERS` keys whose accounts live on shard 0.
fn shard_zero_keys() -> Vec<SigningKey> {
    (0u32..)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            SigningKey::from_bytes(&seed)
        })
        .filter(|k| shard_of(&address_of(k), SHARDS) == 0)
        .take(SENDERS)
        .collect()
}

fn genesis(keys: &[SigningKey]) -> Genesis {
    let mut allocations: Vec<Allocation> = keys
        .iter()
        .map(|k| Allocation {
            address: address_of(k),
            asset: 0,
            amount: 1_000,
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

/// Round `round`'s transfers (nonce `round + 1`), every 97th with a broken signature: in the
/// shard's own part and in the part lent to the other core alike.
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
fn run(help_signatures_min: usize, rounds: u64) -> [u64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let keys = shard_zero_keys();
    let mut config = EngineConfig::new(dir.path(), 2);
    config.raft_tick = std::time::Duration::from_millis(20);
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
        sum(|c| c.verify_help_offered.load(Relaxed)),
        sum(|c| c.verify_help_joined.load(Relaxed)),
        sum(|c| c.signatures_verified_for_others.load(Relaxed)),
    ];
    assert!(engine.shutdown().is_none());
    counts
}

#[test]
fn large_submissions_are_verified_with_the_other_cores_help_and_the_same_verdicts() {
    let rounds = 6;
    let [offered, joined, signatures] = run(128, rounds);
    assert_eq!(offered, rounds, "one offer per submission (two cores)");
    // The other core is idle: it takes chunks long before the shard's core has taken all of
    // them (five chunks of 64).
    assert!(joined >= 1, "joined {joined} of {offered}");
    assert!(
        signatures >= joined * 44,
        "{signatures} signatures in {joined} offers"
    );
    assert!(signatures <= rounds * (SENDERS as u64 - 64));
}

#[test]
fn with_help_off_every_signature_is_verified_on_its_shards_core() {
    assert_eq!(run(0, 2), [0; 3]);
}

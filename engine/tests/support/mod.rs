//! What the replica-level suites share: a one-account genesis, and the ready cycles the runtime
//! would run, against an in-memory raft storage.

use aurigraph_engine::genesis::{Allocation, Genesis};
use aurigraph_engine::record::address_of;
use aurigraph_engine::replica::ShardReplica;
use ed25519_dalek::SigningKey;
use raft::eraftpb::Entry;
use raft::storage::MemStorage;

/// The suites' chain id.
pub const CHAIN: u32 = 7;

/// A one-shard genesis of chain [`CHAIN`] giving `amount` of asset 0 to `key`'s account.
pub fn genesis_funding(key: &SigningKey, amount: u64) -> Genesis {
    Genesis {
        chain_id: CHAIN,
        controllers: Default::default(),
        shards: Some(1),
        allocations: vec![Allocation {
            address: address_of(key),
            asset: 0,
            amount,
        }],
    }
}

/// Ready cycles as the runtime runs them, writing into `storage` (what `ShardLog::stage` does),
/// until none is left (at most 8); returns the entries written that carry data.
pub fn ready_cycles(replica: &mut ShardReplica, storage: &MemStorage, now_ms: u64) -> Vec<Entry> {
    let mut written = Vec::new();
    for _ in 0..8 {
        let Some(work) = replica.ready(now_ms).expect("ready") else {
            break;
        };
        if let Some(snapshot) = &work.snapshot {
            storage.wl().apply_snapshot(snapshot.clone()).unwrap();
        }
        storage.wl().append(&work.entries).unwrap();
        written.extend(work.entries.iter().filter(|e| !e.data.is_empty()).cloned());
        if let Some(hs) = &work.hard_state {
            storage.wl().set_hardstate(hs.clone());
        }
        replica.staged(work.number);
        replica.persisted(work.number);
    }
    written
}

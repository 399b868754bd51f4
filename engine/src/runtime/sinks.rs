//! What the engine hands its downstream sinks: one queue of applied entries per sink, and how
//! far each sink has written (a shard reads it before saving a local snapshot).

use crate::replica::AppliedEntry;
use crate::shard::ShardId;
use std::sync::Arc;

/// Downstream sinks a node can feed at once (the PostgreSQL archive, the Redis cache and the
/// gRPC event hub).
pub const SINKS_MAX: usize = 3;

/// One downstream sink's queue of applied entries (shared by every shard: each entry is
/// reference-counted, its bytes shared with the log), and how far the sink has written.
#[derive(Clone, Debug)]
pub struct AppliedTap {
    /// The sink's name, for metrics (`postgres`, `redis`, `events`).
    pub sink: &'static str,
    pub sender: crossbeam_channel::Sender<(ShardId, Arc<AppliedEntry>)>,
    pub written: Arc<SinkWritten>,
    /// Whether the sink reads `AppliedEntry::balances`. Computing them costs the shard a sort
    /// and a state lookup per account an entry changed, on its core: they are computed only
    /// when some tap reads them (the event hub, always fed, does not).
    pub balances: bool,
}

/// Per shard, the last log index a sink has written downstream: the sink's thread moves it
/// forward after each write; a shard reads it before saving a local snapshot, so that the log
/// keeps what the sink has not written yet (up to `EngineConfig::sink_retain_bytes_max`).
#[derive(Debug)]
pub struct SinkWritten {
    indexes: Box<[std::sync::atomic::AtomicU64]>,
}

impl Default for SinkWritten {
    fn default() -> SinkWritten {
        SinkWritten {
            indexes: (0..crate::shard::SHARDS_MAX)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }
}

impl SinkWritten {
    pub fn set(&self, shard: ShardId, index: u64) {
        self.indexes[shard as usize].fetch_max(index, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self, shard: ShardId) -> u64 {
        self.indexes[shard as usize].load(std::sync::atomic::Ordering::Relaxed)
    }
}

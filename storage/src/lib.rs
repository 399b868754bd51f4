//! Aurigraph storage: the per-shard write-ahead log that is the Raft log (O_DIRECT through
//! glommio's io_uring `DmaFile`, group-committed), snapshot files, and crash recovery that
//! truncates a torn tail but refuses to start on corruption.
//!
//! - [`wal`]: the segmented log and its recovery.
//! - [`record`]: the on-disk record format.
//! - [`snapshot`]: snapshot files.
//! - [`shard_log`]: raft's `MemStorage` + the WAL + snapshots, for one shard.
//! - [`background`]: background jobs on the blocking pool, below the shards' priority.
//!
//! See README.md for the formats and the recovery rule.

pub mod background;
mod error;
mod fs_util;
pub mod record;
pub mod shard_log;
pub mod snapshot;
pub mod wal;

pub use error::{StorageError, STORAGE_FAILURE_EXIT_CODE};
pub use shard_log::ShardLog;
pub use snapshot::{read_latest_snapshot, write_snapshot, write_snapshot_paced};
pub use wal::{CommitStats, Recovered, TornTail, Wal, WalConfig, WalStats};

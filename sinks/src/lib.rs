//! Downstream sinks of committed transfers. The engine never waits for them: a sink takes
//! what the log committed, in batches, on a thread of its own.
//!
//! [`postgres_archive`]: the PostgreSQL archive. Transfers are written with binary `COPY`, and
//! each shard's cursor (the last log index archived) is updated in the same transaction as
//! the rows, so a batch lands exactly once whatever crashes when.
//!
//! [`redis_cache`]: the Redis cache: transfer statuses with a TTL, accounts' latest balances
//! and a stream of committed transfers, each shard's cursor moved in the same `MULTI`/`EXEC`.
//!
//! [`runner`]: the thread that feeds either one, batching, retrying and reporting gaps.

pub mod archive_query;
pub mod entry;
mod migrations;
mod numeric;
pub mod postgres_archive;
pub mod redis_cache;
pub mod runner;

pub use archive_query::{
    ArchiveReader, ArchiveReaderPool, ArchivedRow, HistoryCursor, HistoryPage, ReadError,
    ReaderOptions,
};
pub use entry::{ArchivedTransfer, EntryBatch, Gap};
pub use postgres_archive::{Appended, ArchiveError, PgArchive};
pub use redis_cache::{RedisCache, RedisError, RedisOptions};
pub use runner::{SinkCounters, SinkHealth, SinkThread};

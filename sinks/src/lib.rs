//! Downstream sinks of committed transfers. The engine never waits for them: a sink takes
//! what the log committed, in batches, on a thread of its own.
//!
//! [`postgres_archive`]: the PostgreSQL archive. Transfers are written with binary `COPY`, and
//! each shard's cursor (the last log index archived) is updated in the same transaction as
//! the rows, so a batch lands exactly once whatever crashes when.

pub mod archive_query;
mod migrations;
mod numeric;
pub mod postgres_archive;
pub mod runner;

pub use archive_query::{
    ArchiveReader, ArchiveReaderPool, ArchivedRow, HistoryCursor, HistoryPage, ReadError,
    ReaderOptions,
};
pub use postgres_archive::{ArchiveError, ArchivedTransfer, EntryBatch, PgArchive};
pub use runner::{ArchiveSink, SinkCounters};

//! Reads of the PostgreSQL archive (with `archive_url`): the answers of
//! `GET /api/v11/transactions/{txHash}` past the recent window and of
//! `GET /api/v11/accounts/{address}/transactions`.
//!
//! The queries run on the node's archive reader threads (`aurigraph_sinks::archive_query`),
//! never on a core: a handler queues its read (a full queue is 503 at once) and awaits the
//! answer for at most the reader's timeout (then 503), so a PostgreSQL that is away or slow
//! costs the request a bounded wait and the core nothing.

use super::response::Hex32;
use crate::http::error::ApiError;
use crate::http::HttpSettings;
use aurigraph_sinks::archive_query::Reply;
use aurigraph_sinks::{ArchiveReader, ArchivedRow, HistoryCursor, HistoryPage, ReadError};
use futures::future::{select, Either};
use serde::Serialize;
use std::pin::pin;

/// The `source` of an answer read from the archive.
pub const SOURCE_ARCHIVE: &str = "archive";

/// The node's archive reader, or 404 `NO_ARCHIVE` naming `what` needed it.
pub fn reader<'a>(settings: &'a HttpSettings, what: &str) -> Result<&'a ArchiveReader, ApiError> {
    settings
        .archive_reader
        .as_ref()
        .ok_or_else(|| ApiError::no_archive(what))
}

/// Awaits a queued read for at most the reader's timeout; counts its outcome.
async fn answer<T>(
    reader: &ArchiveReader,
    queued: Result<Reply<T>, ReadError>,
) -> Result<T, ApiError> {
    let result = match queued {
        Err(e) => Err(e),
        Ok(reply) => {
            let timer = pin!(glommio::timer::sleep(reader.timeout()));
            match select(reply, timer).await {
                Either::Left((answer, _)) => answer,
                Either::Right(_) => Err(ReadError::TimedOut(reader.timeout())),
            }
        }
    };
    reader.counters().record(&result);
    result.map_err(|e| ApiError::archive_unavailable(&e))
}

/// The archived transfer with this hash, if the archive holds it.
pub async fn transfer(
    reader: &ArchiveReader,
    hash: [u8; 32],
) -> Result<Option<ArchivedRow>, ApiError> {
    answer(reader, reader.transfer(hash)).await
}

/// A page of an account's history.
pub async fn history(
    reader: &ArchiveReader,
    address: [u8; 32],
    before: Option<HistoryCursor>,
    limit: u32,
) -> Result<HistoryPage, ApiError> {
    answer(reader, reader.history(address, before, limit)).await
}

/// `CONFIRMED` iff the result is `OK` (as for a transfer in the recent window).
fn status_of(result: &str) -> &'static str {
    if result == aurigraph_engine::ResultCode::Ok.as_str() {
        "CONFIRMED"
    } else {
        "REJECTED"
    }
}

/// A transfer found in the archive by `GET /api/v11/transactions/{txHash}`: the fields of an
/// outcome from the recent window, and `source: "archive"`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedOutcomeOut<'a> {
    pub tx_hash: Hex32<'a>,
    pub status: &'static str,
    pub result: &'a str,
    pub shard: u32,
    pub block_number: u64,
    pub source: &'static str,
}

impl<'a> From<&'a ArchivedRow> for ArchivedOutcomeOut<'a> {
    fn from(row: &'a ArchivedRow) -> ArchivedOutcomeOut<'a> {
        ArchivedOutcomeOut {
            tx_hash: Hex32(&row.tx_hash),
            status: status_of(&row.result),
            result: &row.result,
            shard: row.shard,
            block_number: row.block,
            source: SOURCE_ARCHIVE,
        }
    }
}

/// One transfer of an account's history.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItemOut<'a> {
    pub tx_hash: Hex32<'a>,
    pub status: &'static str,
    pub result: &'a str,
    pub shard: u32,
    pub block_number: u64,
    /// Its position in the block (the log entry).
    pub position: u32,
    pub from_address: Hex32<'a>,
    pub to_address: Hex32<'a>,
    pub asset: u32,
    /// u64 as a decimal string (as balances are).
    pub amount: String,
    pub nonce: String,
}

impl<'a> From<&'a ArchivedRow> for HistoryItemOut<'a> {
    fn from(row: &'a ArchivedRow) -> HistoryItemOut<'a> {
        HistoryItemOut {
            tx_hash: Hex32(&row.tx_hash),
            status: status_of(&row.result),
            result: &row.result,
            shard: row.shard,
            block_number: row.block,
            position: row.position,
            from_address: Hex32(&row.from),
            to_address: Hex32(&row.to),
            asset: row.asset,
            amount: row.amount.to_string(),
            nonce: row.nonce.to_string(),
        }
    }
}

/// `GET /api/v11/accounts/{address}/transactions`'s answer.
#[derive(Serialize)]
pub struct HistoryOut<'a> {
    pub address: Hex32<'a>,
    pub transactions: Vec<HistoryItemOut<'a>>,
    /// The `before` of the next page; `null` on the last page.
    pub next: Option<String>,
}

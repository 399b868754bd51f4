//! The Redis cache of committed transfers: each transfer's status (a key with a TTL), each
//! account's latest balances (a hash per account: asset → balance), and a stream of committed
//! transfers (`XADD ... MAXLEN ~ N`) that clients follow with `XREAD`.
//!
//! Exactly once: a shard's cursor (the last log index written) is a key of its own. A write
//! watches it, reads it, skips the entries at or below it, and sends the rest with the cursor
//! moved, as one `MULTI`/`EXEC` transaction: Redis applies all of it or none, and a second
//! writer that moved the cursor in between makes `EXEC` fail and the write start over. After a
//! restart of the node or of Redis the entries sent again add nothing.

use crate::entry::{fresh_after, latest_balances, ArchivedTransfer, EntryBatch};
use crate::postgres_archive::Appended;
use aurigraph_engine::replica::AccountBalance;
use std::time::Duration;

/// How the cache is laid out and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Prefix of every key: `{prefix}:tx:{txHash}`, `{prefix}:balance:{address}`,
    /// `{prefix}:transfers` (the stream), `{prefix}:cursor:{shard}`.
    pub prefix: String,
    /// The stream's length, roughly (`MAXLEN ~`): older entries are trimmed.
    pub stream_len_max: u64,
    /// How long a transfer's status key lives.
    pub status_ttl_s: u64,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            prefix: "aurigraph".into(),
            stream_len_max: 1_000_000,
            status_ttl_s: 86_400,
        }
    }
}

/// A Redis reply or connection failure.
#[derive(Debug, thiserror::Error)]
#[error("Redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

/// How long connecting, and each reply, may take before the write fails (and is retried).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the cache.
pub struct RedisCache {
    connection: redis::Connection,
    options: RedisOptions,
}

impl RedisCache {
    /// Connects (`redis://host:port/db`).
    pub fn connect(url: &str, options: RedisOptions) -> Result<RedisCache, RedisError> {
        let client = redis::Client::open(url)?;
        let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(RedisCache {
            connection,
            options,
        })
    }

    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    fn cursor_key(&self, shard: u32) -> String {
        format!("{}:cursor:{shard}", self.options.prefix)
    }

    /// The last log index of `shard` written to the cache (0: none).
    pub fn cursor(&mut self, shard: u32) -> Result<u64, RedisError> {
        let cursor: Option<u64> = redis::cmd("GET")
            .arg(self.cursor_key(shard))
            .query(&mut self.connection)?;
        Ok(cursor.unwrap_or(0))
    }

    /// Writes consecutive entries of `shard` (increasing log indexes): each transfer's status
    /// and stream entry, the latest balances, and the shard's cursor, in one transaction.
    /// Entries at or below the cursor are skipped.
    pub fn append(&mut self, shard: u32, entries: &[EntryBatch]) -> Result<Appended, RedisError> {
        if entries.is_empty() {
            return Ok(Appended::default());
        }
        let cursor_key = self.cursor_key(shard);
        let options = self.options.clone();
        let mut appended = Appended::default();
        redis::transaction(&mut self.connection, &[&cursor_key], |connection, pipe| {
            let cursor: Option<u64> = redis::cmd("GET").arg(&cursor_key).query(connection)?;
            let (fresh, gaps) = fresh_after(shard, cursor.unwrap_or(0), entries);
            let Some(last) = fresh.last().map(|e| e.index) else {
                appended = Appended::default();
                // Nothing to write: end the watch.
                redis::cmd("UNWATCH").query::<()>(connection)?;
                return Ok(Some(()));
            };
            let mut rows = 0;
            for entry in &fresh {
                for (position, t) in entry.transfers.iter().enumerate() {
                    for command in transfer_commands(&options, shard, entry.index, position, t) {
                        pipe.add_command(command).ignore();
                    }
                    rows += 1;
                }
            }
            for (b, _) in latest_balances(fresh.iter().copied()) {
                pipe.cmd("HSET")
                    .arg(format!(
                        "{}:balance:{}",
                        options.prefix,
                        hex_of(&b.address.0)
                    ))
                    .arg(b.asset)
                    .arg(b.balance)
                    .ignore();
            }
            pipe.cmd("SET").arg(&cursor_key).arg(last).ignore();
            let done: Option<()> = pipe.query(connection)?;
            if done.is_some() {
                appended = Appended {
                    rows,
                    gaps,
                    first: cursor.is_none(),
                };
            }
            Ok(done)
        })?;
        Ok(appended)
    }
}

impl RedisCache {
    /// Writes `balances` (a resync from a shard's state after a gap), in pipelines of at most
    /// `RESYNC_PIPELINE_MAX` commands; the shard's cursor does not move.
    pub fn write_balances(&mut self, balances: &[AccountBalance]) -> Result<(), RedisError> {
        for chunk in balances.chunks(RESYNC_PIPELINE_MAX) {
            let mut pipe = redis::pipe();
            for b in chunk {
                pipe.cmd("HSET")
                    .arg(format!(
                        "{}:balance:{}",
                        self.options.prefix,
                        hex_of(&b.address.0)
                    ))
                    .arg(b.asset)
                    .arg(b.balance)
                    .ignore();
            }
            pipe.query::<()>(&mut self.connection)?;
        }
        Ok(())
    }
}

/// The two commands that write one committed transfer: its status (`SET ... EX`) and its
/// stream entry (`XADD ... MAXLEN ~`).
pub fn transfer_commands(
    options: &RedisOptions,
    shard: u32,
    block: u64,
    position: usize,
    t: &ArchivedTransfer,
) -> [redis::Cmd; 2] {
    let hex = hex_of(&t.tx_hash);
    let mut status = redis::cmd("SET");
    status
        .arg(format!("{}:tx:{hex}", options.prefix))
        .arg(status_json(&hex, t.result, shard, block, position))
        .arg("EX")
        .arg(options.status_ttl_s);
    let mut stream = redis::cmd("XADD");
    stream
        .arg(format!("{}:transfers", options.prefix))
        .arg("MAXLEN")
        .arg("~")
        .arg(options.stream_len_max)
        .arg("*")
        .arg("txHash")
        .arg(&hex)
        .arg("from")
        .arg(hex_of(&t.from))
        .arg("to")
        .arg(hex_of(&t.to))
        .arg("asset")
        .arg(t.asset)
        .arg("amount")
        .arg(t.amount)
        .arg("nonce")
        .arg(t.nonce)
        .arg("result")
        .arg(t.result)
        .arg("shard")
        .arg(shard)
        .arg("block")
        .arg(block)
        .arg("position")
        .arg(position);
    [status, stream]
}

/// Commands per pipeline of a resync.
const RESYNC_PIPELINE_MAX: usize = 10_000;

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A transfer's status as the cache keeps it: the names of the API's transaction JSON.
fn status_json(tx_hash: &str, result: &str, shard: u32, block: u64, position: usize) -> String {
    format!(
        "{{\"txHash\":\"{tx_hash}\",\"status\":\"{}\",\"result\":\"{result}\",\
         \"shard\":{shard},\"blockNumber\":{block},\"position\":{position}}}",
        if result == "OK" {
            "CONFIRMED"
        } else {
            "REJECTED"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_json_with_the_api_names() {
        let json = status_json("ab", "INSUFFICIENT_FUNDS", 2, 17, 3);
        assert_eq!(
            json,
            r#"{"txHash":"ab","status":"REJECTED","result":"INSUFFICIENT_FUNDS","shard":2,"blockNumber":17,"position":3}"#
        );
        assert!(status_json("ab", "OK", 0, 1, 0).contains(r#""status":"CONFIRMED""#));
        assert_eq!(hex_of(&[0, 255, 16]), "00ff10");
    }
}

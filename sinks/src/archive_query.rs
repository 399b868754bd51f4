//! Reads of the PostgreSQL archive, for the node's HTTP API: one transfer by its hash, and an
//! account's transfers (as sender or receiver), newest first, a page at a time.
//!
//! The executors never wait on PostgreSQL. [`ArchiveReaderPool`] owns a few threads (each with
//! its own connection, opened when first needed and again after a failure) fed by one bounded
//! channel; a request is queued without waiting ([`ArchiveReader::transfer`],
//! [`ArchiveReader::history`]: a full queue is [`ReadError::QueueFull`] at once) and its answer
//! comes back through a oneshot channel the caller awaits ([`Reply`]). Every request carries a
//! deadline: a reader skips the ones whose deadline passed, or whose caller went away, before
//! it runs them. PostgreSQL cancels a statement past `statement_timeout`; connecting gives up
//! after `connect_timeout`; the caller bounds its wait with its own timer (the HTTP layer).
//!
//! **The order of an account's transfers.** Each shard has its own log, so log indexes of two
//! shards say nothing about which transfer came first; the archive has no time of its own.
//! The order is by `(block, shard, position)` descending: within a shard exactly the log's
//! order, newest first; across shards by block height (shards that advance at similar rates
//! interleave roughly by time), ties broken by the higher shard id. It is a total order (the
//! triple is unique), stable across pages, and new transfers never shift pages already read
//! below a cursor (a transfer archived later that sorts below a cursor — its shard was behind —
//! is found by the next walk from the top, not by the pages already handed out).
//!
//! **The cursor** ([`HistoryCursor`]) is the position of the last transfer of a page,
//! `BLOCK.SHARD.POSITION` in decimal (e.g. `1042.1.7`); the next page holds the transfers
//! strictly below it. Clients treat it as opaque and pass back what the previous page gave.

use postgres::error::SqlState;
use postgres::{Client, NoTls, Row};
use std::time::Duration;

mod reader;

pub use reader::{ArchiveReader, ArchiveReaderPool, ReadCounters, ReadError, Reply};

/// Transfers per page when the client does not say.
pub const HISTORY_LIMIT_DEFAULT: u32 = 50;
/// The most transfers one page holds.
pub const HISTORY_LIMIT_MAX: u32 = 500;

/// How the reader pool runs.
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    /// Reader threads, each with its own connection.
    pub threads: usize,
    /// Requests waiting for a reader; past it a request is refused at once.
    pub queue: usize,
    /// How long a caller waits for an answer (the request's deadline).
    pub timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` on the readers' connections.
    pub statement_timeout: Duration,
    /// After a failed connection, requests are answered unavailable for this long before a
    /// reader tries again (PostgreSQL away is not asked once per request).
    pub reconnect_pause: Duration,
    /// How long stopping the pool waits for a reader in a query or a connection; one still
    /// held past it (a server that accepted and never answers) is left behind.
    pub stop_wait: Duration,
}

impl Default for ReaderOptions {
    fn default() -> ReaderOptions {
        ReaderOptions {
            threads: 2,
            queue: 64,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(4),
            reconnect_pause: Duration::from_millis(250),
            stop_wait: Duration::from_secs(5),
        }
    }
}

/// One archived transfer, with its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedRow {
    pub tx_hash: [u8; 32],
    pub shard: u32,
    /// The log index (block height) of the entry that decided it.
    pub block: u64,
    /// Its position in that entry.
    pub position: u32,
    pub from: [u8; 32],
    pub to: [u8; 32],
    pub asset: u32,
    pub amount: u64,
    pub nonce: u64,
    /// The contract's result code name (`OK`, `INSUFFICIENT_FUNDS`, ...).
    pub result: String,
}

impl ArchivedRow {
    /// This transfer's place in an account's history: the cursor of a page it ends.
    pub fn cursor(&self) -> HistoryCursor {
        HistoryCursor {
            block: self.block,
            shard: self.shard,
            position: self.position,
        }
    }
}

/// A position in an account's history (see the module's documentation): a page holds the
/// transfers strictly below it in `(block, shard, position)` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryCursor {
    pub block: u64,
    pub shard: u32,
    pub position: u32,
}

/// The largest values a cursor's parts take (the archive's column types: `BIGINT`, `INTEGER`).
pub const CURSOR_BLOCK_MAX: u64 = i64::MAX as u64;
pub const CURSOR_SHARD_MAX: u32 = i32::MAX as u32;
pub const CURSOR_POSITION_MAX: u32 = i32::MAX as u32;

/// Why a cursor does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cursor {text:?}: {reason} (expected BLOCK.SHARD.POSITION, as a page's \"next\" gives it)")]
pub struct CursorError {
    pub text: String,
    pub reason: String,
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.block, self.shard, self.position)
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = CursorError;

    /// `BLOCK.SHARD.POSITION`: three decimal integers (digits only; leading zeros are taken)
    /// within the archive's column ranges.
    fn from_str(text: &str) -> Result<HistoryCursor, CursorError> {
        let error = |reason: String| CursorError {
            text: text.chars().take(64).collect(),
            reason,
        };
        let parts: Vec<&str> = text.split('.').collect();
        let [block, shard, position] = parts[..] else {
            return Err(error(format!("{} parts", parts.len())));
        };
        let number = |name: &str, part: &str, max: u64| -> Result<u64, CursorError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error(format!("{name} {part:?} is not a decimal integer")));
            }
            let digits = part.trim_start_matches('0');
            match digits.parse::<u64>() {
                _ if digits.is_empty() => Ok(0),
                Ok(n) if n <= max => Ok(n),
                _ => Err(error(format!("{name} {part} is over {max}"))),
            }
        };
        Ok(HistoryCursor {
            block: number("block", block, CURSOR_BLOCK_MAX)?,
            shard: number("shard", shard, CURSOR_SHARD_MAX.into())? as u32,
            position: number("position", position, CURSOR_POSITION_MAX.into())? as u32,
        })
    }
}

/// One page of an account's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// Newest first.
    pub transfers: Vec<ArchivedRow>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<HistoryCursor>,
}

/// The columns every read returns, in the order [`row_of`] takes them.
const COLUMNS: &str = "tx_hash, shard, block, position, from_address, to_address, asset, \
     amount::text, nonce::text, result";

/// Each branch walks its own index (`transfers_from_order`, `transfers_to_order`) from the
/// cursor down and stops after `$5` rows; a transfer to oneself is taken by the first only.
const HISTORY: &str = "SELECT tx_hash, shard, block, position, from_address, to_address, asset, \
     amount::text, nonce::text, result FROM ( \
       (SELECT * FROM transfers WHERE from_address = $1 AND (block, shard, position) < ($2, $3, $4) \
        ORDER BY block DESC, shard DESC, position DESC LIMIT $5) \
       UNION ALL \
       (SELECT * FROM transfers WHERE to_address = $1 AND from_address <> $1 \
        AND (block, shard, position) < ($2, $3, $4) \
        ORDER BY block DESC, shard DESC, position DESC LIMIT $5) \
     ) AS t ORDER BY block DESC, shard DESC, position DESC LIMIT $5";

/// Blocking queries of the archive on one connection (the reader threads hold one each).
pub struct ArchiveQueries {
    client: Client,
}

/// Connection settings for `url` with the reader's bounds: connect and statement timeouts,
/// TCP keepalives and a user timeout (a peer that vanished is noticed), read-only sessions.
pub fn reader_config(
    url: &str,
    options: &ReaderOptions,
) -> Result<postgres::Config, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    let server_options = format!(
        "{} -c statement_timeout={} -c default_transaction_read_only=on",
        config.get_options().unwrap_or_default(),
        options.statement_timeout.as_millis().max(1)
    );
    config
        .options(server_options.trim_start())
        .application_name("aurigraph-archive-reader")
        .connect_timeout(options.connect_timeout)
        .tcp_user_timeout(options.timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    Ok(config)
}

impl ArchiveQueries {
    /// Connects with [`reader_config`]'s bounds. It does not migrate: the sink owns the schema.
    pub fn connect(url: &str, options: &ReaderOptions) -> Result<ArchiveQueries, postgres::Error> {
        let client = reader_config(url, options)?.connect(NoTls)?;
        Ok(ArchiveQueries { client })
    }

    /// The archived transfer with this hash. No archive table yet (the sink has not written
    /// anything): none.
    pub fn transfer(&mut self, tx_hash: &[u8; 32]) -> Result<Option<ArchivedRow>, postgres::Error> {
        let sql = format!("SELECT {COLUMNS} FROM transfers WHERE tx_hash = $1");
        match self.client.query_opt(&sql, &[&&tx_hash[..]]) {
            Ok(row) => row.as_ref().map(row_of).transpose(),
            Err(e) if no_table(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` (1 ..= [`HISTORY_LIMIT_MAX`]) transfers from or to `address`, newest
    /// first, strictly below `before` (`None`: from the newest).
    pub fn history(
        &mut self,
        address: &[u8; 32],
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPage, postgres::Error> {
        let limit = limit.clamp(1, HISTORY_LIMIT_MAX);
        // No cursor: above every transfer (no log entry has i64::MAX transfers).
        let before = before.unwrap_or(HistoryCursor {
            block: CURSOR_BLOCK_MAX,
            shard: CURSOR_SHARD_MAX,
            position: CURSOR_POSITION_MAX,
        });
        let block = before.block.min(CURSOR_BLOCK_MAX) as i64;
        let shard = before.shard.min(CURSOR_SHARD_MAX) as i32;
        let position = before.position.min(CURSOR_POSITION_MAX) as i32;
        // One more than the page: whether there is a next page, without asking again.
        let fetch = i64::from(limit) + 1;
        let rows = match self
            .client
            .query(HISTORY, &[&&address[..], &block, &shard, &position, &fetch])
        {
            Ok(rows) => rows,
            Err(e) if no_table(&e) => return Ok(HistoryPage::default()),
            Err(e) => return Err(e),
        };
        let mut transfers = rows.iter().map(row_of).collect::<Result<Vec<_>, _>>()?;
        let next = if transfers.len() > limit as usize {
            transfers.truncate(limit as usize);
            transfers.last().map(ArchivedRow::cursor)
        } else {
            None
        };
        Ok(HistoryPage { transfers, next })
    }

    /// Whether the connection is closed (a reader then opens another).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The `transfers` table does not exist yet.
fn no_table(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNDEFINED_TABLE)
}

/// A row of [`COLUMNS`].
fn row_of(row: &Row) -> Result<ArchivedRow, postgres::Error> {
    let bytes32 = |i: usize| -> Result<[u8; 32], postgres::Error> {
        let v: &[u8] = row.try_get(i)?;
        // The schema's CHECK keeps these at 32 bytes.
        let mut out = [0u8; 32];
        out.copy_from_slice(&v[..32.min(v.len())]);
        Ok(out)
    };
    let numeric = |i: usize| -> Result<u64, postgres::Error> {
        let v: &str = row.try_get(i)?;
        // NUMERIC(20, 0) of a u64: always an integer in range.
        Ok(v.parse().unwrap_or(u64::MAX))
    };
    Ok(ArchivedRow {
        tx_hash: bytes32(0)?,
        shard: row.try_get::<_, i32>(1)? as u32,
        block: row.try_get::<_, i64>(2)? as u64,
        position: row.try_get::<_, i32>(3)? as u32,
        from: bytes32(4)?,
        to: bytes32(5)?,
        asset: row.try_get::<_, i64>(6)? as u32,
        amount: numeric(7)?,
        nonce: numeric(8)?,
        result: row.try_get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(block: u64, shard: u32, position: u32) -> HistoryCursor {
        HistoryCursor {
            block,
            shard,
            position,
        }
    }

    #[test]
    fn a_cursor_round_trips_through_its_text() {
        for c in [
            cursor(0, 0, 0),
            cursor(1042, 1, 7),
            cursor(CURSOR_BLOCK_MAX, CURSOR_SHARD_MAX, CURSOR_POSITION_MAX),
        ] {
            let text = c.to_string();
            assert_eq!(text.parse::<HistoryCursor>(), Ok(c), "{text}");
        }
        assert_eq!(cursor(1042, 1, 7).to_string(), "1042.1.7");
        // Leading zeros are taken (as the API description's pattern allows them).
        assert_eq!("001042.01.007".parse(), Ok(cursor(1042, 1, 7)));
        assert_eq!("0.00.0".parse(), Ok(cursor(0, 0, 0)));
    }

    #[test]
    fn a_malformed_or_out_of_range_cursor_is_refused() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1..3",
            ".1.2",
            "1.2.",
            "a.1.2",
            "+1.2.3",
            "-1.2.3",
            "1.2.3 ",
            " 1.2.3",
            "1,2,3",
            "1.2.0x3",
            "9223372036854775808.0.0",
            "99999999999999999999999.0.0",
            "1.2147483648.0",
            "1.0.2147483648",
            "1.0.٣",
        ] {
            let e = bad.parse::<HistoryCursor>().expect_err(bad);
            assert!(e.to_string().contains("BLOCK.SHARD.POSITION"), "{bad}: {e}");
        }
        assert_eq!(
            "9223372036854775807.2147483647.2147483647".parse(),
            Ok(cursor(
                CURSOR_BLOCK_MAX,
                CURSOR_SHARD_MAX,
                CURSOR_POSITION_MAX
            ))
        );
    }

    #[test]
    fn cursors_order_as_the_history_does() {
        // Newest first is descending in (block, shard, position).
        let mut cs = vec![
            cursor(5, 0, 1),
            cursor(5, 1, 0),
            cursor(4, 1, 9),
            cursor(5, 0, 0),
        ];
        cs.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            cs,
            [
                cursor(5, 1, 0),
                cursor(5, 0, 1),
                cursor(5, 0, 0),
                cursor(4, 1, 9)
            ]
        );
    }

    #[test]
    fn the_readers_settings_bound_every_wait() {
        let options = ReaderOptions::default();
        let config = reader_config(
            "host=127.0.0.1 port=5 user=u dbname=d options='-c x=1'",
            &options,
        )
        .unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&options.connect_timeout));
        assert_eq!(config.get_tcp_user_timeout(), Some(&options.timeout));
        assert!(config.get_keepalives());
        let server = config.get_options().unwrap();
        assert!(server.starts_with("-c x=1 "), "{server}");
        assert!(server.contains("statement_timeout=4000"), "{server}");
        assert!(
            server.contains("default_transaction_read_only=on"),
            "{server}"
        );
        assert!(options.statement_timeout < options.timeout);
    }
}

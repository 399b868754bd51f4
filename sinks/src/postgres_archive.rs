//! The PostgreSQL archive of committed transfers.
//!
//! Exactly once: a batch is the transfers of consecutive log entries of one shard. It is
//! written in one transaction that reads the shard's cursor (locking its row), skips the
//! entries at or below it, copies the rest with `COPY ... FROM STDIN (FORMAT binary)` and moves
//! the cursor to the batch's last index. A crash of the sink, of the node or of PostgreSQL
//! either commits all of it or none; a batch sent again after a restart adds nothing.
//!
//! The balances the entries changed go to `balances` in the same transaction (the latest per
//! account and asset). Where the entries' chain shows log indexes the sink never received, the
//! write reports them as gaps (it still moves the cursor past them: the rows are lost here,
//! and the node says so rather than stall).

use crate::entry::{fresh_after, latest_balances, EntryBatch, Gap};
use crate::numeric::Numeric;
use aurigraph_engine::replica::AccountBalance;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("shard {shard}: entries must be in increasing log order ({index} after {previous})")]
    OutOfOrder {
        shard: u32,
        index: u64,
        previous: u64,
    },
    #[error("{what} {value} does not fit the archive's column")]
    TooLarge { what: &'static str, value: u64 },
}

/// A connection to the archive.
pub struct PgArchive {
    client: Client,
}

const COPY_TRANSFERS: &str = "COPY transfers (tx_hash, shard, block, position, from_address, \
     to_address, asset, amount, nonce, result) FROM STDIN (FORMAT binary)";

const COPY_BALANCES: &str =
    "COPY balances_in (address, asset, balance, shard, block) FROM STDIN (FORMAT binary)";

const BALANCE_TYPES: &[Type] = &[
    Type::BYTEA,
    Type::INT8,
    Type::NUMERIC,
    Type::INT4,
    Type::INT8,
];

/// What one write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Transfer rows added (entries sent again add none).
    pub rows: u64,
    /// Log indexes the entries' chain skipped: lost on the way to the sink.
    pub gaps: Vec<Gap>,
    /// The store held nothing of the shard before (its balances are to be seeded from the
    /// state: genesis allocations are no transfers).
    pub first: bool,
}

const COLUMN_TYPES: &[Type] = &[
    Type::BYTEA,
    Type::INT4,
    Type::INT8,
    Type::INT4,
    Type::BYTEA,
    Type::BYTEA,
    Type::INT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TEXT,
];

impl PgArchive {
    /// Connects (`postgres://user@host:port/db`, or key=value form) and applies the schema's
    /// migrations that are missing.
    pub fn connect(url: &str) -> Result<PgArchive, ArchiveError> {
        let mut client = Client::connect(url, NoTls)?;
        let applied = crate::migrations::migrate(&mut client)?;
        if applied > 0 {
            tracing::info!(applied, "archive schema migrated");
        }
        // The session's staging table for balances (emptied by every commit).
        client.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS balances_in \
             (LIKE balances INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )?;
        Ok(PgArchive { client })
    }

    /// The last log index of `shard` whose transfers are archived (0: none).
    pub fn cursor(&mut self, shard: u32) -> Result<u64, ArchiveError> {
        let row = self.client.query_opt(
            "SELECT archived_index FROM shard_cursors WHERE shard = $1",
            &[&(shard as i32)],
        )?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    /// Archives consecutive entries of `shard` (increasing log indexes) with binary COPY: their
    /// transfers, the latest balances they set, and the shard's cursor moved to the last one,
    /// in one transaction. Entries at or below the cursor are skipped (sent again after a
    /// restart).
    pub fn append(&mut self, shard: u32, entries: &[EntryBatch]) -> Result<Appended, ArchiveError> {
        for pair in entries.windows(2) {
            if pair[1].index <= pair[0].index {
                return Err(ArchiveError::OutOfOrder {
                    shard,
                    index: pair[1].index,
                    previous: pair[0].index,
                });
            }
        }
        let Some(last) = entries.last() else {
            return Ok(Appended::default());
        };
        let last_index = i64::try_from(last.index).map_err(|_| ArchiveError::TooLarge {
            what: "log index",
            value: last.index,
        })?;
        let shard_sql = shard as i32;
        let mut tx = self.client.transaction()?;
        tx.execute(
            "INSERT INTO shard_cursors (shard, archived_index) VALUES ($1, 0) \
             ON CONFLICT (shard) DO NOTHING",
            &[&shard_sql],
        )?;
        let cursor: i64 = tx
            .query_one(
                "SELECT archived_index FROM shard_cursors WHERE shard = $1 FOR UPDATE",
                &[&shard_sql],
            )?
            .get(0);
        let (fresh, gaps) = fresh_after(shard, cursor as u64, entries);
        if fresh.is_empty() {
            tx.commit()?;
            return Ok(Appended::default());
        }
        let mut rows = 0u64;
        let sink = tx.copy_in(COPY_TRANSFERS)?;
        let mut writer = BinaryCopyInWriter::new(sink, COLUMN_TYPES);
        for entry in &fresh {
            let block = entry.index as i64;
            for (position, t) in entry.transfers.iter().enumerate() {
                let position = position as i32;
                let asset = i64::from(t.asset);
                writer.write(&[
                    &&t.tx_hash[..],
                    &shard_sql,
                    &block,
                    &position,
                    &&t.from[..],
                    &&t.to[..],
                    &asset,
                    &Numeric(t.amount),
                    &Numeric(t.nonce),
                    &t.result,
                ])?;
                rows += 1;
            }
        }
        writer.finish()?;
        upsert_balances(&mut tx, shard, latest_balances(fresh.iter().copied()))?;
        tx.execute(
            "UPDATE shard_cursors SET archived_index = $2 WHERE shard = $1",
            &[&shard_sql, &last_index],
        )?;
        tx.commit()?;
        Ok(Appended {
            rows,
            gaps,
            first: cursor == 0,
        })
    }

    /// Writes `balances` of `shard` as of log index `index` (a resync from the shard's state
    /// after a gap), in one transaction; the shard's cursor does not move.
    pub fn write_balances(
        &mut self,
        shard: u32,
        index: u64,
        balances: &[AccountBalance],
    ) -> Result<(), ArchiveError> {
        let mut tx = self.client.transaction()?;
        upsert_balances(&mut tx, shard, balances.iter().map(|b| (*b, index)))?;
        tx.commit()?;
        Ok(())
    }

    /// The latest archived balance of an account's asset (none: never changed since the
    /// archive began).
    pub fn balance(&mut self, address: &[u8; 32], asset: u32) -> Result<Option<u64>, ArchiveError> {
        let row = self.client.query_opt(
            "SELECT balance::TEXT FROM balances WHERE address = $1 AND asset = $2",
            &[&&address[..], &i64::from(asset)],
        )?;
        Ok(row.map(|r| {
            r.get::<_, String>(0)
                .parse()
                .expect("NUMERIC(20, 0) is a u64")
        }))
    }

    /// The archive's row count (for checks and tests).
    pub fn transfer_count(&mut self) -> Result<u64, ArchiveError> {
        let count: i64 = self
            .client
            .query_one("SELECT count(*) FROM transfers", &[])?
            .get(0);
        Ok(count as u64)
    }

    /// The underlying connection, for queries of the archive.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Copies (balance, log index that set it) rows into the session's staging table and upserts
/// them into `balances`. A row never replaces one set at a later index of the account's shard
/// (the only shard whose log changes the account): a resync from the state at index S may
/// reach PostgreSQL before entries older than S are written, and those must not undo it.
fn upsert_balances(
    tx: &mut postgres::Transaction<'_>,
    shard: u32,
    balances: impl IntoIterator<Item = (AccountBalance, u64)>,
) -> Result<(), ArchiveError> {
    let mut balances = balances.into_iter().peekable();
    if balances.peek().is_none() {
        return Ok(());
    }
    let shard_sql = shard as i32;
    let sink = tx.copy_in(COPY_BALANCES)?;
    let mut writer = BinaryCopyInWriter::new(sink, BALANCE_TYPES);
    for (b, index) in balances {
        let block = i64::try_from(index).map_err(|_| ArchiveError::TooLarge {
            what: "log index",
            value: index,
        })?;
        writer.write(&[
            &&b.address.0[..],
            &i64::from(b.asset),
            &Numeric(b.balance),
            &shard_sql,
            &block,
        ])?;
    }
    writer.finish()?;
    tx.batch_execute(
        "INSERT INTO balances SELECT * FROM balances_in \
         ON CONFLICT (address, asset) DO UPDATE \
         SET balance = EXCLUDED.balance, shard = EXCLUDED.shard, block = EXCLUDED.block \
         WHERE balances.block <= EXCLUDED.block",
    )?;
    Ok(())
}

//! Reads of the archive against a real PostgreSQL server (started by the test): a transfer by
//! its hash, an account's history page by page (newest first across shards, every transfer
//! once, the cursor's order), the indexes the pages walk, an archive with no table yet, and
//! the reader threads across a server crash and restart.

use aurigraph_sinks::archive_query::{ArchiveQueries, HISTORY_LIMIT_MAX};
use aurigraph_sinks::{
    ArchiveReaderPool, ArchivedRow, HistoryCursor, PgArchive, ReadError, ReaderOptions,
};
use aurigraph_testkit::postgres::PgServer;
use futures::executor::block_on;
use std::time::{Duration, Instant};

const A: [u8; 32] = [0xa1; 32];
const B: [u8; 32] = [0xb2; 32];
const C: [u8; 32] = [0xc3; 32];

/// Two shards, 40 blocks each, 3 transfers per block among A, B and C (a few to oneself),
/// amounts up to u64::MAX.
fn rows() -> Vec<ArchivedRow> {
    let people = [A, B, C];
    let mut rows = Vec::new();
    for shard in 0..2u32 {
        for block in 1..=40u64 {
            for position in 0..3u32 {
                let n = (u64::from(shard) * 1000 + block) * 10 + u64::from(position);
                let mut tx_hash = [0u8; 32];
                tx_hash[..8].copy_from_slice(&n.to_le_bytes());
                let from = people[(n % 3) as usize];
                let to = people[((n / 3) % 3) as usize];
                rows.push(ArchivedRow {
                    tx_hash,
                    shard,
                    block,
                    position,
                    from,
                    to,
                    asset: (n % 2) as u32,
                    amount: if n % 7 == 0 { u64::MAX } else { n },
                    nonce: n + 1,
                    result: if from == to { "SELF_TRANSFER" } else { "OK" }.into(),
                });
            }
        }
    }
    rows
}

fn insert(archive: &mut PgArchive, rows: &[ArchivedRow]) {
    let mut tx = archive.client().transaction().unwrap();
    let statement = tx
        .prepare(
            "INSERT INTO transfers (tx_hash, shard, block, position, from_address, to_address, \
             asset, amount, nonce, result) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, CAST($8 AS TEXT)::numeric, \
             CAST($9 AS TEXT)::numeric, $10)",
        )
        .unwrap();
    for r in rows {
        tx.execute(
            &statement,
            &[
                &&r.tx_hash[..],
                &(r.shard as i32),
                &(r.block as i64),
                &(r.position as i32),
                &&r.from[..],
                &&r.to[..],
                &i64::from(r.asset),
                &r.amount.to_string(),
                &r.nonce.to_string(),
                &r.result,
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// `address`'s transfers as the history lists them: from or to it, newest first.
fn expected(rows: &[ArchivedRow], address: [u8; 32]) -> Vec<ArchivedRow> {
    let mut mine: Vec<ArchivedRow> = rows
        .iter()
        .filter(|r| r.from == address || r.to == address)
        .cloned()
        .collect();
    mine.sort_by_key(|r| std::cmp::Reverse(r.cursor()));
    mine
}

/// Every page of `address`'s history with `limit` per page.
fn walk(queries: &mut ArchiveQueries, address: [u8; 32], limit: u32) -> Vec<ArchivedRow> {
    let mut all = Vec::new();
    let mut before: Option<HistoryCursor> = None;
    loop {
        let page = queries.history(&address, before, limit).unwrap();
        assert!(page.transfers.len() <= limit as usize);
        match page.next {
            Some(next) => {
                // A page with a next one is full, and its cursor is its last transfer's.
                assert_eq!(page.transfers.len(), limit as usize);
                assert_eq!(Some(next), page.transfers.last().map(ArchivedRow::cursor));
                // The cursor travels as text.
                before = Some(next.to_string().parse().unwrap());
                all.extend(page.transfers);
            }
            None => {
                all.extend(page.transfers);
                return all;
            }
        }
    }
}

#[test]
fn reads_find_transfers_and_page_an_account_newest_first() {
    let server = PgServer::start();
    let options = ReaderOptions::default();

    // Before the sink created anything: nothing found, no error.
    let mut queries = ArchiveQueries::connect(&server.url(), &options).unwrap();
    assert_eq!(queries.transfer(&[9; 32]).unwrap(), None);
    assert_eq!(queries.history(&A, None, 10).unwrap().transfers, []);

    let mut archive = PgArchive::connect(&server.url()).unwrap();
    // The indexes the pages walk (migration 2), in place of the per-shard ones.
    let indexes: Vec<String> = archive
        .client()
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'transfers' ORDER BY indexname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes.contains(&"transfers_from_order".to_string())
            && indexes.contains(&"transfers_to_order".to_string())
            && !indexes.contains(&"transfers_from".to_string())
            && !indexes.contains(&"transfers_to".to_string()),
        "{indexes:?}"
    );
    let rows = rows();
    insert(&mut archive, &rows);

    // By hash: every field as written, u64::MAX amounts included.
    for r in [&rows[0], &rows[7 * 3], &rows[rows.len() - 1]] {
        assert_eq!(queries.transfer(&r.tx_hash).unwrap().as_ref(), Some(r));
    }
    assert_eq!(queries.transfer(&[9; 32]).unwrap(), None);

    // Pages of every size give every transfer of the account once, newest first.
    for address in [A, B, C] {
        let want = expected(&rows, address);
        assert!(want.len() > 40);
        for limit in [1, 7, 50, HISTORY_LIMIT_MAX] {
            let got = walk(&mut queries, address, limit);
            assert_eq!(got.len(), want.len(), "limit {limit}");
            assert!(
                got == want,
                "limit {limit}: not the expected transfers in order"
            );
        }
    }
    // Newest first across shards: block, then shard, then position, descending.
    let first = queries.history(&A, None, 4).unwrap();
    let order: Vec<(u64, u32, u32)> = first
        .transfers
        .iter()
        .map(|r| (r.block, r.shard, r.position))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted);
    assert_eq!(order[0].0, 40);
    // A transfer to oneself is listed once.
    let selfish = expected(&rows, A)
        .into_iter()
        .filter(|r| r.from == r.to)
        .count();
    assert!(selfish > 0);
    // A cursor below everything: an empty last page.
    let end = queries
        .history(
            &A,
            Some(HistoryCursor {
                block: 1,
                shard: 0,
                position: 0,
            }),
            10,
        )
        .unwrap();
    assert_eq!((end.transfers.len(), end.next), (0, None));

    // The pages are index walks (the planner told to avoid a scan of the table, which it
    // prefers for a table this small).
    let client = archive.client();
    client.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT * FROM ( \
               (SELECT * FROM transfers WHERE from_address = $1 AND (block, shard, position) < ($2, $3, $4) \
                ORDER BY block DESC, shard DESC, position DESC LIMIT $5) \
               UNION ALL \
               (SELECT * FROM transfers WHERE to_address = $1 AND from_address <> $1 \
                AND (block, shard, position) < ($2, $3, $4) \
                ORDER BY block DESC, shard DESC, position DESC LIMIT $5) \
             ) AS t ORDER BY block DESC, shard DESC, position DESC LIMIT $5",
            &[&&A[..], &20i64, &1i32, &2i32, &11i64],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let plan = plan.join("\n");
    // Index scans in the history's order (not bitmap scans, which would sort all of the
    // account's transfers for each page).
    assert!(
        plan.contains("Index Scan using transfers_from_order")
            && plan.contains("Index Scan using transfers_to_order"),
        "{plan}"
    );
    println!("{plan}");
}

#[test]
fn the_readers_answer_unavailable_while_the_server_is_down_and_recover() {
    let server = PgServer::start();
    let mut archive = PgArchive::connect(&server.url()).unwrap();
    let rows = rows();
    insert(&mut archive, &rows[..30]);
    drop(archive);
    let pool = ArchiveReaderPool::spawn(
        &server.url(),
        ReaderOptions {
            reconnect_pause: Duration::from_millis(50),
            ..ReaderOptions::default()
        },
    );
    let reader = pool.reader();
    let found = block_on(reader.transfer(rows[3].tx_hash).unwrap()).unwrap();
    assert_eq!(found.as_ref(), Some(&rows[3]));
    let page = block_on(reader.history(A, None, 5).unwrap()).unwrap();
    assert_eq!(page.transfers, expected(&rows[..30], A)[..5]);

    // Down: every read answers unavailable, at once, whether its reader's connection broke
    // or it connects anew.
    server.crash();
    for _ in 0..6 {
        let started = Instant::now();
        let answer = block_on(reader.transfer(rows[3].tx_hash).unwrap());
        assert!(
            matches!(answer, Err(ReadError::Unavailable(_))),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(30));
    }

    // Back: the readers connect again.
    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match block_on(reader.transfer(rows[3].tx_hash).unwrap()) {
            Ok(found) => {
                assert_eq!(found.as_ref(), Some(&rows[3]));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not back: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pool.stop();
}

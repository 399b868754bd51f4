//! The PostgreSQL archive's batch write: binary `COPY` (what the sink does) against
//! row-by-row `INSERT` of the same rows in one transaction (the obvious alternative), on a
//! real PostgreSQL started for the run (Debian's server binaries, a temporary directory, a
//! free loopback port; fsync off in both). Alternating rounds, medians, and their ratio.
//!
//! `cargo bench -p aurigraph-benches --bench sink` (`AURIGRAPH_BENCH_SINK_ROWS`, default 50000
//! rows per round; `AURIGRAPH_BENCH_SINK_ROUNDS`, default 5).

use aurigraph_sinks::{ArchivedTransfer, EntryBatch, PgArchive};
use aurigraph_testkit::postgres::PgServer;
use std::time::Instant;

/// Transfers per log entry (a gateway batch's share of a shard, as the bench sends it).
const PER_ENTRY: u64 = 500;

fn batch(round: u64, rows: u64, first_index: u64) -> Vec<EntryBatch> {
    (0..rows.div_ceil(PER_ENTRY))
        .map(|e| {
            EntryBatch::transfers(
                first_index + e,
                (0..PER_ENTRY.min(rows - e * PER_ENTRY))
                    .map(|p| {
                        let mut tx_hash = [0u8; 32];
                        tx_hash[..8].copy_from_slice(&round.to_le_bytes());
                        tx_hash[8..16].copy_from_slice(&e.to_le_bytes());
                        tx_hash[16..24].copy_from_slice(&p.to_le_bytes());
                        ArchivedTransfer {
                            tx_hash,
                            from: [1; 32],
                            to: [2; 32],
                            asset: 0,
                            amount: 1 + p,
                            nonce: p,
                            result: "OK",
                        }
                    })
                    .collect(),
            )
        })
        .collect()
}

fn insert_row_by_row(archive: &mut PgArchive, shard: i32, entries: &[EntryBatch]) {
    let mut tx = archive.client().transaction().unwrap();
    let insert = tx
        .prepare(
            "INSERT INTO transfers (tx_hash, shard, block, position, from_address, to_address, \
             asset, amount, nonce, result) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::numeric, $9::text::numeric, $10)",
        )
        .unwrap();
    for e in entries {
        for (position, t) in e.transfers.iter().enumerate() {
            tx.execute(
                &insert,
                &[
                    &&t.tx_hash[..],
                    &shard,
                    &(e.index as i64),
                    &(position as i32),
                    &&t.from[..],
                    &&t.to[..],
                    &i64::from(t.asset),
                    &t.amount.to_string(),
                    &t.nonce.to_string(),
                    &t.result,
                ],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if aurigraph_testkit::postgres::server_bin_dir().is_none() {
        eprintln!("sink: skipped (no PostgreSQL server binaries: apt-get install postgresql)");
        return;
    }
    let rows = env("AURIGRAPH_BENCH_SINK_ROWS", 50_000);
    let rounds = env("AURIGRAPH_BENCH_SINK_ROUNDS", 5);
    let server = PgServer::start();
    let mut archive = PgArchive::connect(&server.url()).unwrap();
    let (mut copy, mut insert) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Shard 2r by COPY, shard 2r+1 row by row; alternating which goes first.
        let copy_rows = batch(2 * round, rows, 1);
        let insert_rows = batch(2 * round + 1, rows, 1);
        let mut timed = |copying: bool| {
            let start = Instant::now();
            if copying {
                let written = archive.append(2 * round as u32, &copy_rows).unwrap().rows;
                assert_eq!(written, rows);
            } else {
                insert_row_by_row(&mut archive, 2 * round as i32 + 1, &insert_rows);
            }
            rows as f64 / start.elapsed().as_secs_f64()
        };
        let (c, i) = if round % 2 == 0 {
            let c = timed(true);
            (c, timed(false))
        } else {
            let i = timed(false);
            (timed(true), i)
        };
        println!("round {round}: copy {c:.0} rows/s, insert {i:.0} rows/s");
        copy.push(c);
        insert.push(i);
    }
    let (c, i) = (median(copy), median(insert));
    println!(
        "sink: binary COPY {c:.0} rows/s, row-by-row INSERT {i:.0} rows/s (medians of {rounds} \
         rounds of {rows} rows): ratio {:.2}",
        c / i
    );
}

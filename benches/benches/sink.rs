//! The sinks' batch writes against the obvious alternative, each on a real server started for
//! the run, in alternating rounds; medians and their ratio.
//!
//! - PostgreSQL archive: binary `COPY` (what the sink does) against row-by-row `INSERT` of the
//!   same rows in one transaction (Debian's server binaries, a temporary directory, a free
//!   loopback port; fsync off in both).
//! - Redis: `RedisCache::append` (what the sink does: per batch one `WATCH`, a `GET` of the
//!   shard's cursor and one `MULTI`/`EXEC` pipeline of every transfer's `SET ... EX` and `XADD
//!   ... MAXLEN ~` with the cursor moved) against the same `SET ... EX` and `XADD` commands sent
//!   one at a time, each waiting for its reply (Debian's `redis-server`, a temporary directory,
//!   a free loopback port, the append-only file on with `appendfsync everysec`, as the node's
//!   benchmark script runs it; `AURIGRAPH_BENCH_SINK_REDIS_FSYNC=always` for fsync per write).
//!
//! `cargo bench -p aurigraph-benches --bench sink` (`AURIGRAPH_BENCH_SINK_ROWS`, default 50000
//! rows per round; `AURIGRAPH_BENCH_SINK_ROUNDS`, default 5; `AURIGRAPH_BENCH_SINK_ONLY`,
//! `postgres` or `redis`, runs one part). `cargo test --benches` runs each part once on 1,000
//! rows.

use aurigraph_benches::sized;
use aurigraph_sinks::redis_cache::transfer_commands;
use aurigraph_sinks::{ArchivedTransfer, EntryBatch, PgArchive, RedisCache, RedisOptions};
use aurigraph_testkit::postgres::PgServer;
use aurigraph_testkit::redis::RedisServer;
use std::time::Instant;

/// Transfers per log entry (a gateway batch's share of a shard, as the bench sends it).
const PER_ENTRY: u64 = 500;

/// Rows the node's sink thread gathers before it writes a batch (its `BATCH_ROWS_MAX`): the
/// Redis part writes a round in batches of this many rows, as the sink would.
const SINK_BATCH_ROWS: u64 = 20_000;

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

/// The Redis alternative: the commands `RedisCache::append` pipelines (each transfer's status
/// `SET ... EX` and its `XADD ... MAXLEN ~`, then the shard's cursor), sent one at a time, each
/// waiting for its reply; no transaction.
fn redis_one_at_a_time(
    connection: &mut redis::Connection,
    options: &RedisOptions,
    shard: u32,
    entries: &[EntryBatch],
) {
    for entry in entries {
        for (position, t) in entry.transfers.iter().enumerate() {
            for command in transfer_commands(options, shard, entry.index, position, t) {
                command.query::<()>(connection).unwrap();
            }
        }
    }
    if let Some(last) = entries.last() {
        redis::cmd("SET")
            .arg(format!("{}:cursor:{shard}", options.prefix))
            .arg(last.index)
            .query::<()>(connection)
            .unwrap();
    }
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

/// Runs `rounds` rounds of `ours` and `theirs` (each given the round, returning rows/s),
/// alternating which goes first; prints each round and returns the medians.
fn alternate(
    rounds: u64,
    names: (&str, &str),
    mut ours: impl FnMut(u64) -> f64,
    mut theirs: impl FnMut(u64) -> f64,
) -> (f64, f64) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = ours(round);
            (x, theirs(round))
        } else {
            let y = theirs(round);
            (ours(round), y)
        };
        println!(
            "round {round}: {} {x:.0} rows/s, {} {y:.0} rows/s",
            names.0, names.1
        );
        a.push(x);
        b.push(y);
    }
    (median(a), median(b))
}

fn postgres(rows: u64, rounds: u64) {
    if aurigraph_testkit::postgres::server_bin_dir().is_none() {
        eprintln!(
            "sink: postgres skipped (no PostgreSQL server binaries: apt-get install postgresql)"
        );
        return;
    }
    let server = PgServer::start();
    let archive = std::cell::RefCell::new(PgArchive::connect(&server.url()).unwrap());
    // Shard 2r by COPY, shard 2r+1 row by row.
    let (c, i) = alternate(
        rounds,
        ("copy", "insert"),
        |round| {
            let entries = batch(2 * round, rows, 1);
            let start = Instant::now();
            let written = archive
                .borrow_mut()
                .append(2 * round as u32, &entries)
                .unwrap()
                .rows;
            assert_eq!(written, rows);
            rows as f64 / start.elapsed().as_secs_f64()
        },
        |round| {
            let entries = batch(2 * round + 1, rows, 1);
            let start = Instant::now();
            insert_row_by_row(&mut archive.borrow_mut(), 2 * round as i32 + 1, &entries);
            rows as f64 / start.elapsed().as_secs_f64()
        },
    );
    println!(
        "sink: binary COPY {c:.0} rows/s, row-by-row INSERT {i:.0} rows/s (medians of {rounds} \
         rounds of {rows} rows): ratio {:.2}",
        c / i
    );
}

fn redis_part(rows: u64, rounds: u64) {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("sink: redis skipped (no redis-server: apt-get install redis-server)");
        return;
    }
    let fsync = std::env::var("AURIGRAPH_BENCH_SINK_REDIS_FSYNC").unwrap_or("everysec".into());
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut control = client.get_connection().unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg(&fsync)
        .query::<()>(&mut control)
        .unwrap();
    // Each side its own keys and stream (MAXLEN ~ 1,000,000 is not reached: 5 rounds of 50,000
    // per side).
    let pipelined = RedisOptions {
        prefix: "pipelined".into(),
        ..RedisOptions::default()
    };
    let single = RedisOptions {
        prefix: "single".into(),
        ..RedisOptions::default()
    };
    let mut cache = RedisCache::connect(&server.url(), pipelined.clone()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let per_batch = (SINK_BATCH_ROWS / PER_ENTRY) as usize;
    // Shard r on each side; the tx hashes differ per side and round.
    let (p, s) = alternate(
        rounds,
        ("pipelined", "one-at-a-time"),
        |round| {
            let entries = batch(2 * round, rows, 1);
            let start = Instant::now();
            let mut written = 0;
            for chunk in entries.chunks(per_batch) {
                written += cache.append(round as u32, chunk).unwrap().rows;
            }
            assert_eq!(written, rows);
            rows as f64 / start.elapsed().as_secs_f64()
        },
        |round| {
            let entries = batch(2 * round + 1, rows, 1);
            let start = Instant::now();
            for chunk in entries.chunks(per_batch) {
                redis_one_at_a_time(&mut connection, &single, round as u32, chunk);
            }
            rows as f64 / start.elapsed().as_secs_f64()
        },
    );
    for options in [&pipelined, &single] {
        let len: u64 = redis::cmd("XLEN")
            .arg(format!("{}:transfers", options.prefix))
            .query(&mut control)
            .unwrap();
        assert_eq!(len, rows * rounds, "{}: stream length", options.prefix);
    }
    println!(
        "sink: Redis MULTI/EXEC pipeline {p:.0} rows/s, one command per round trip {s:.0} rows/s \
         (medians of {rounds} rounds of {rows} transfers, batches of {SINK_BATCH_ROWS}, \
         appendfsync {fsync}): ratio {:.2}",
        p / s
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env("AURIGRAPH_BENCH_SINK_ROWS", sized(50_000, 1_000) as u64);
    let rounds = env("AURIGRAPH_BENCH_SINK_ROUNDS", sized(5, 2) as u64);
    let only = std::env::var("AURIGRAPH_BENCH_SINK_ONLY").unwrap_or_default();
    if only.is_empty() || only == "postgres" {
        postgres(rows, rounds);
    }
    if only.is_empty() || only == "redis" {
        redis_part(rows, rounds);
    }
}

//! `aurigraph bench`: the end-to-end throughput benchmark (DESIGN.md sections 7 and 9).
//!
//! What it does, in order:
//! 1. Accounts: `--accounts` deterministic keys (see [`bench_key`]), each funded with
//!    [`BENCH_BALANCE`] of asset 0 in a genesis with chain id `--chain-id` (7).
//! 2. Nodes: without `--addresses`, a node is started in a fresh temporary directory with that
//!    genesis (through the caller's `start_node`) and stopped at the end. With `--addresses`, the
//!    node(s) must already run that genesis: `aurigraph bench --print-genesis FILE` (with the
//!    same `--accounts`, `--genesis-seed`, `--chain-id`) writes it; the benchmark checks the
//!    chain id, the balances, and starts each account's nonces above what the node has seen, so
//!    that it can be run repeatedly against the same chain.
//! 3. Pre-signing, before the clock starts: transfer `k` goes from account `k % accounts` to a
//!    pseudo-random other account, amount 1, with the sender's next nonce; transfers are packed
//!    in order into binary batches of `--batch-size` (all valid: every result should be `OK`).
//! 4. Load: `--concurrency` requests in flight over keep-alive HTTP/1.1 connections, spread over
//!    the addresses round-robin, each `POST /api/v11/transactions/batch` with the binary batch,
//!    asking for the compact reply. Closed loop by default; with `--rate` an open loop that
//!    schedules batch `b` at `b * batch_size / rate` seconds after the start.
//!
//! How the figures are defined (nothing is estimated or extrapolated):
//! - `elapsed`: from the first request sent to the last reply received.
//! - `load accepted`: results received (any code) / elapsed, truncated to an integer (as
//!   TigerBeetle's benchmark does). `ok per second`: `OK` results / elapsed.
//! - `batch latency pN`: from sending a batch's request to receiving its whole reply, per batch,
//!   recorded in microseconds in an HDR histogram (3 significant digits) and printed in whole
//!   milliseconds, truncated (again as TigerBeetle prints them); p100 is the exact maximum.
//!   Microsecond figures are printed on a separate line and in the JSON.
//! - Only transfers whose result came back are counted; batches that failed (HTTP error,
//!   transport error, timeout) are reported separately and never counted as throughput.
//! - With `--rate`, a batch whose scheduled time passes while all connections are busy is sent
//!   late; the latency is still measured from the actual send, and the late count and the
//!   largest lag are reported, so a run whose open loop did not hold is visible as such.

use crate::client::{Client, ClientError, ErrorKind};
use crate::transfer_cmd::json_u64;
use aurigraph_engine::batch::{BatchBuilder, BATCH_RECORDS_MAX};
use aurigraph_engine::genesis::{Genesis, GENESIS_ALLOCATIONS_MAX};
use aurigraph_engine::record::{address_of, Address, Transfer};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Chain id of the benchmark's genesis (default of `--chain-id`).
pub const BENCH_CHAIN_ID: u32 = 7;
/// Genesis balance of every benchmark account, asset 0. 10,000,000 accounts (the genesis limit)
/// times this stays below `u64::MAX`.
pub const BENCH_BALANCE: u64 = 1_000_000_000_000;
/// First 16 bytes of every benchmark seed.
pub const BENCH_KEY_TAG: [u8; 16] = *b"aurigraph-bench\0";
/// Nonces a sender may run ahead of its oldest in-flight transfer before the node's anti-replay
/// window (64 below the highest nonce seen) rejects the older one as `NONCE_TOO_OLD`.
const NONCE_WINDOW: usize = 64;
const PATH_BATCH: &str = "/api/v11/transactions/batch";

/// The end-to-end throughput benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Nodes to load, comma-separated (e.g. http://10.0.0.1:9003,http://10.0.0.2:9003). They
    /// must run the genesis of `--print-genesis`. Without it, a node is started in a temporary
    /// directory.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// Without --addresses: validators of the local cluster to start and load (1 to 9; more
    /// than one replicates every shard across them, each on its own loopback ports).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodes: usize,
    /// Transfers to submit.
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub transfers: usize,
    /// Sending accounts (funded in the genesis; at least 2).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub accounts: usize,
    /// Transfers per batch (one HTTP request).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch_size: usize,
    /// Requests in flight (one keep-alive connection each), spread over the addresses.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Target load in transfers per second (open loop, paced per batch); default: unlimited.
    #[arg(long, value_name = "TX_PER_SEC")]
    pub rate: Option<u64>,
    /// How long to wait for every node to report healthy before starting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub wait_ms: u64,
    /// Per-request timeout, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub timeout_ms: u64,
    /// Seed of the deterministic account keys and receivers (see `--print-genesis`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub genesis_seed: u64,
    /// Chain id of the benchmark genesis.
    #[arg(long, value_name = "ID", default_value_t = BENCH_CHAIN_ID)]
    pub chain_id: u32,
    /// Shard count written into the genesis [default: the node's core count].
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Write the genesis that a node must be started with for `--addresses` runs (for these
    /// `--accounts`, `--genesis-seed`, `--chain-id`, `--shards`) to FILE, and exit.
    #[arg(long, value_name = "FILE")]
    pub print_genesis: Option<PathBuf>,
    /// Threads of the client's runtime (sending and receiving).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub client_threads: usize,
    /// Threads that pre-sign the transfers [default: all cores].
    #[arg(long, value_name = "N")]
    pub sign_threads: Option<usize>,
    /// Ask for JSON batch replies instead of the compact binary reply.
    #[arg(long)]
    pub json_replies: bool,
    /// Keep the temporary data directory of the started node.
    #[arg(long)]
    pub keep_data: bool,
}

/// What `start_node` returns: the node's base URLs (e.g. `http://127.0.0.1:40123`) and a function
/// that stops it, blocking until it has stopped.
pub type StartedNode = (Vec<String>, Box<dyn FnOnce()>);

/// The key of benchmark account `index`: Ed25519 seed = `BENCH_KEY_TAG` ‖ `seed` (u64 LE) ‖
/// `index` (u64 LE). Public and reproducible on purpose: these keys only hold benchmark funds.
pub fn bench_key(seed: u64, index: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&BENCH_KEY_TAG);
    bytes[16..24].copy_from_slice(&seed.to_le_bytes());
    bytes[24..].copy_from_slice(&index.to_le_bytes());
    SigningKey::from_bytes(&bytes)
}

/// The keys of accounts `0..accounts`, derived on `threads` threads.
pub fn bench_keys(seed: u64, accounts: usize, threads: usize) -> Vec<SigningKey> {
    let threads = threads.clamp(1, accounts.max(1));
    let chunk = accounts.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let start = (t * chunk).min(accounts);
                    let end = ((t + 1) * chunk).min(accounts);
                    (start..end)
                        .map(|i| bench_key(seed, i as u64))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("key thread"))
            .collect()
    })
}

/// The benchmark genesis as JSON (the contract's shape; `shards` only when given).
pub fn genesis_json(addresses: &[Address], chain_id: u32, shards: Option<u32>) -> String {
    let allocations: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| serde_json::json!({"address": a.to_hex(), "asset": 0, "amount": BENCH_BALANCE.to_string()}))
        .collect();
    let mut genesis = serde_json::json!({"chainId": chain_id});
    if let Some(shards) = shards {
        genesis["shards"] = serde_json::json!(shards);
    }
    genesis["allocations"] = serde_json::Value::Array(allocations);
    let mut text = serde_json::to_string_pretty(&genesis).expect("JSON prints");
    text.push('\n');
    text
}

/// Which transfers exist: transfer `k` is sent by account `k % accounts` with that sender's
/// `k / accounts + 1`-th nonce (above its base) to a pseudo-random other account.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub transfers: usize,
    pub accounts: usize,
    pub batch_size: usize,
    pub seed: u64,
}

impl Plan {
    pub fn batches(&self) -> usize {
        self.transfers.div_ceil(self.batch_size)
    }

    /// Transfers `[start, end)` of batch `b`.
    pub fn batch_range(&self, b: usize) -> std::ops::Range<usize> {
        let start = b * self.batch_size;
        start..(start + self.batch_size).min(self.transfers)
    }

    pub fn sender(&self, k: usize) -> usize {
        k % self.accounts
    }

    /// Nonce offset of transfer `k` above its sender's base (1 for the sender's first).
    pub fn nonce_offset(&self, k: usize) -> u64 {
        (k / self.accounts) as u64 + 1
    }

    /// A receiver other than the sender, chosen by a hash of (seed, k).
    pub fn receiver(&self, k: usize) -> usize {
        let sender = self.sender(k);
        let h = splitmix64(self.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (sender + 1 + (h % (self.accounts as u64 - 1)) as usize) % self.accounts
    }

    /// Transfers sent by account `a`.
    pub fn sends_of(&self, a: usize) -> u64 {
        (self.transfers / self.accounts + usize::from(a < self.transfers % self.accounts)) as u64
    }

    /// How far (in nonces) one sender's in-flight transfers may spread with `in_flight` batches
    /// outstanding; above [`NONCE_WINDOW`], late arrivals may be rejected as `NONCE_TOO_OLD`.
    pub fn nonce_spread(&self, in_flight: usize) -> usize {
        (in_flight * self.batch_size).div_ceil(self.accounts)
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Signs every transfer of `plan` and packs them into batches, on `threads` threads.
/// `nonce_bases[a]` is account `a`'s highest nonce already used on the chain.
pub fn sign_batches(
    plan: &Plan,
    keys: &[SigningKey],
    chain_id: u32,
    nonce_bases: &[u64],
    threads: usize,
    progress: &ProgressBar,
) -> Vec<Bytes> {
    let addresses: Vec<Address> = keys.iter().map(address_of).collect();
    let batches = plan.batches();
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, batches.max(1));
    let mut signed: Vec<(usize, Bytes)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    let mut builder = BatchBuilder::with_capacity(plan.batch_size);
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches {
                            break out;
                        }
                        let range = plan.batch_range(b);
                        let len = range.len() as u64;
                        for k in range {
                            let s = plan.sender(k);
                            let transfer = Transfer {
                                chain_id,
                                from: addresses[s],
                                to: addresses[plan.receiver(k)],
                                asset: 0,
                                amount: 1,
                                nonce: nonce_bases[s] + plan.nonce_offset(k),
                            };
                            builder.push(&transfer.sign(&keys[s]));
                        }
                        out.push((b, Bytes::from(builder.finish())));
                        progress.inc(len);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    });
    signed.sort_unstable_by_key(|(b, _)| *b);
    signed.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Figures of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub addresses: Vec<String>,
    pub accounts: usize,
    pub batch_size: usize,
    pub concurrency: usize,
    pub rate: Option<u64>,
    pub transfers_planned: usize,
    pub transfers_sent: u64,
    pub batches_sent: u64,
    pub results_received: u64,
    pub ok: u64,
    /// Non-OK result codes and their counts.
    pub other_codes: BTreeMap<String, u64>,
    pub failed_batches: u64,
    pub failed_transfers: u64,
    /// Failure kind → (count, first full message).
    pub errors: BTreeMap<String, (u64, String)>,
    pub aborted: Option<String>,
    pub elapsed: Duration,
    pub signing: Duration,
    pub latency_us: Histogram<u64>,
    pub latency_max_us: u64,
    pub late_batches: u64,
    pub lag_max: Duration,
    /// Raw Ed25519 batch verification measured in this run (see [`measure_verify_ceiling`]).
    pub ceiling: Option<VerifyCeiling>,
}

/// The machine's signature-verification ceiling, measured in the same run as the load: raw
/// ed25519-dalek batch verification (keys and signatures parsed from bytes, chunks of the
/// engine's size) of the benchmark's own signed transfers, on one thread, times the cores the
/// node runs on. A node that verifies every signature cannot accept more than this.
#[derive(Clone, Copy, Debug)]
pub struct VerifyCeiling {
    pub per_core_per_sec: f64,
    pub cores: usize,
}

impl VerifyCeiling {
    pub fn tx_per_sec(&self) -> f64 {
        self.per_core_per_sec * self.cores as f64
    }
}

/// Measures raw batch verification of `batches`' records on this thread for about `duration`.
pub fn measure_verify_ceiling(
    batches: &[Bytes],
    cores: usize,
    duration: Duration,
) -> Option<VerifyCeiling> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let chunk = aurigraph_engine::verify::VERIFY_CHUNK_DEFAULT;
    let mut records = Vec::new();
    for b in batches.iter().take(8) {
        records.extend_from_slice(aurigraph_engine::batch::decode_batch(b).ok()?.records());
    }
    if records.is_empty() {
        return None;
    }
    let start = Instant::now();
    let mut verified = 0u64;
    while start.elapsed() < duration {
        for group in records.chunks(chunk) {
            let keys: Vec<VerifyingKey> = group
                .iter()
                .map(|r| VerifyingKey::from_bytes(r.from_bytes()).expect("bench keys are valid"))
                .collect();
            let signatures: Vec<Signature> = group
                .iter()
                .map(|r| Signature::from_bytes(r.signature()))
                .collect();
            let messages: Vec<&[u8]> = group.iter().map(|r| &r.message()[..]).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).ok()?;
            verified += group.len() as u64;
        }
    }
    Some(VerifyCeiling {
        per_core_per_sec: verified as f64 / start.elapsed().as_secs_f64(),
        cores,
    })
}

fn per_second(count: u64, elapsed: Duration) -> u64 {
    (u128::from(count) * 1_000_000_000)
        .checked_div(elapsed.as_nanos())
        .map_or(0, |n| n as u64)
}

impl Report {
    pub fn load_accepted(&self) -> u64 {
        per_second(self.results_received, self.elapsed)
    }

    pub fn ok_per_second(&self) -> u64 {
        per_second(self.ok, self.elapsed)
    }

    /// Latency at `quantile` in microseconds (3 significant digits); the exact maximum for 1.0;
    /// 0 when nothing was measured.
    pub fn latency_at_us(&self, quantile: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else if quantile >= 1.0 {
            self.latency_max_us
        } else {
            // The middle of the histogram bucket (within 0.05% of the true value), never above
            // the exact maximum.
            let h = &self.latency_us;
            h.median_equivalent(h.value_at_quantile(quantile))
                .min(self.latency_max_us)
        }
    }

    /// The summary as printed.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("addresses = {}", self.addresses.join(",")),
            format!("accounts = {}", self.accounts),
            format!("batch size = {}", self.batch_size),
            format!("concurrency = {}", self.concurrency),
            format!(
                "signing = {:.2} s (before the clock)",
                self.signing.as_secs_f64()
            ),
            format!(
                "transfers sent = {} (of {} planned, {} batches)",
                self.transfers_sent, self.transfers_planned, self.batches_sent
            ),
            format!("results received = {}", self.results_received),
            format!("ok = {}", self.ok),
        ];
        if self.other_codes.is_empty() {
            lines.push("other codes = none".into());
        } else {
            let codes: Vec<String> = self
                .other_codes
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            lines.push(format!("other codes = {}", codes.join(" ")));
        }
        lines.push(format!(
            "failed batches = {} ({} transfers without a result)",
            self.failed_batches, self.failed_transfers
        ));
        for (kind, (count, first)) in &self.errors {
            lines.push(format!("  {count} x {kind}; first: {first}"));
        }
        if let Some(reason) = &self.aborted {
            lines.push(format!("aborted: {reason}"));
        }
        lines.push(format!("elapsed = {:.3} s", self.elapsed.as_secs_f64()));
        if let Some(rate) = self.rate {
            lines.push(format!("load offered = {rate} tx/s"));
            lines.push(format!(
                "late batches = {} (largest lag {:.1} ms)",
                self.late_batches,
                self.lag_max.as_secs_f64() * 1000.0
            ));
        }
        lines.push(format!("load accepted = {} tx/s", self.load_accepted()));
        lines.push(format!("ok per second = {} tx/s", self.ok_per_second()));
        if let Some(c) = &self.ceiling {
            lines.push(format!(
                "verify ceiling = {:.0} tx/s (raw ed25519-dalek batch verify measured in this run: \
                 {:.0}/s per core x {} cores)",
                c.tx_per_sec(),
                c.per_core_per_sec,
                c.cores
            ));
            lines.push(format!(
                "load accepted / verify ceiling = {:.3}",
                self.load_accepted() as f64 / c.tx_per_sec()
            ));
        }
        for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p100", 1.0)] {
            lines.push(format!(
                "batch latency {label} = {} ms",
                self.latency_at_us(q) / 1000
            ));
        }
        lines.push(format!(
            "batch latency us: p50 = {} p90 = {} p99 = {} p99.9 = {} p100 = {} mean = {:.0} (n = {})",
            self.latency_at_us(0.5),
            self.latency_at_us(0.9),
            self.latency_at_us(0.99),
            self.latency_at_us(0.999),
            self.latency_at_us(1.0),
            if self.latency_us.is_empty() { 0.0 } else { self.latency_us.mean() },
            self.latency_us.len()
        ));
        lines
    }

    /// The same figures as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let errors: BTreeMap<&String, serde_json::Value> = self
            .errors
            .iter()
            .map(|(k, (n, first))| (k, serde_json::json!({"count": n, "first": first})))
            .collect();
        serde_json::json!({
            "loadAcceptedTxPerSec": self.load_accepted(),
            "verifyCeilingTxPerSec": self.ceiling.map(|c| c.tx_per_sec()),
            "verifyCeilingPerCorePerSec": self.ceiling.map(|c| c.per_core_per_sec),
            "verifyCeilingCores": self.ceiling.map(|c| c.cores),
            "loadAcceptedOverCeiling": self.ceiling.map(|c| self.load_accepted() as f64 / c.tx_per_sec()),
            "okPerSec": self.ok_per_second(),
            "loadOfferedTxPerSec": self.rate,
            "batchLatencyP50Ms": self.latency_at_us(0.5) / 1000,
            "batchLatencyP99Ms": self.latency_at_us(0.99) / 1000,
            "batchLatencyP100Ms": self.latency_at_us(1.0) / 1000,
            "batchLatencyP50Us": self.latency_at_us(0.5),
            "batchLatencyP90Us": self.latency_at_us(0.9),
            "batchLatencyP99Us": self.latency_at_us(0.99),
            "batchLatencyP999Us": self.latency_at_us(0.999),
            "batchLatencyP100Us": self.latency_at_us(1.0),
            "batchLatencyMeanUs": if self.latency_us.is_empty() { 0.0 } else { self.latency_us.mean() },
            "transfersPlanned": self.transfers_planned,
            "transfersSent": self.transfers_sent,
            "batchesSent": self.batches_sent,
            "resultsReceived": self.results_received,
            "okCount": self.ok,
            "otherCodes": self.other_codes,
            "failedBatches": self.failed_batches,
            "failedTransfers": self.failed_transfers,
            "errors": errors,
            "aborted": self.aborted,
            "elapsedSeconds": self.elapsed.as_secs_f64(),
            "signingSeconds": self.signing.as_secs_f64(),
            "batchSize": self.batch_size,
            "concurrency": self.concurrency,
            "accounts": self.accounts,
            "addresses": self.addresses,
            "lateBatches": self.late_batches,
            "scheduleLagMaxMs": self.lag_max.as_secs_f64() * 1000.0,
        })
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// Counts of one load worker, merged at the end.
struct WorkerStats {
    latency_us: Histogram<u64>,
    latency_max_us: u64,
    transfers_sent: u64,
    batches_sent: u64,
    results: u64,
    ok: u64,
    codes: BTreeMap<String, u64>,
    failed_batches: u64,
    failed_transfers: u64,
    errors: BTreeMap<String, (u64, String)>,
    aborted: Option<String>,
    first_send: Option<Instant>,
    last_reply: Option<Instant>,
    late_batches: u64,
    lag_max: Duration,
}

impl WorkerStats {
    fn new() -> WorkerStats {
        WorkerStats {
            latency_us: new_histogram(),
            latency_max_us: 0,
            transfers_sent: 0,
            batches_sent: 0,
            results: 0,
            ok: 0,
            codes: BTreeMap::new(),
            failed_batches: 0,
            failed_transfers: 0,
            errors: BTreeMap::new(),
            aborted: None,
            first_send: None,
            last_reply: None,
            late_batches: 0,
            lag_max: Duration::ZERO,
        }
    }

    fn merge(&mut self, o: WorkerStats) {
        self.latency_us.add(&o.latency_us).expect("same bounds");
        self.latency_max_us = self.latency_max_us.max(o.latency_max_us);
        self.transfers_sent += o.transfers_sent;
        self.batches_sent += o.batches_sent;
        self.results += o.results;
        self.ok += o.ok;
        for (c, n) in o.codes {
            *self.codes.entry(c).or_insert(0) += n;
        }
        self.failed_batches += o.failed_batches;
        self.failed_transfers += o.failed_transfers;
        for (k, (n, first)) in o.errors {
            self.errors.entry(k).or_insert((0, first)).0 += n;
        }
        self.aborted = self.aborted.take().or(o.aborted);
        self.first_send = min_opt(self.first_send, o.first_send);
        self.last_reply = match (self.last_reply, o.last_reply) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.late_batches += o.late_batches;
        self.lag_max = self.lag_max.max(o.lag_max);
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Load {
    batches: Vec<Bytes>,
    plan: Plan,
    next: AtomicUsize,
    stop: AtomicBool,
    rate: Option<u64>,
    compact: bool,
    progress: ProgressBar,
}

async fn load_worker(load: Arc<Load>, client: Client, start: Instant) -> WorkerStats {
    let mut stats = WorkerStats::new();
    loop {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let b = load.next.fetch_add(1, Ordering::Relaxed);
        if b >= load.batches.len() {
            break;
        }
        let range = load.plan.batch_range(b);
        let records = range.len();
        if let Some(rate) = load.rate {
            let due = start + Duration::from_secs_f64(range.start as f64 / rate as f64);
            let now = Instant::now();
            if now < due {
                tokio::time::sleep_until(due.into()).await;
            } else {
                let lag = now - due;
                if lag > Duration::from_millis(1) {
                    stats.late_batches += 1;
                }
                stats.lag_max = stats.lag_max.max(lag);
            }
        }
        let sent = Instant::now();
        stats.first_send = min_opt(stats.first_send, Some(sent));
        stats.transfers_sent += records as u64;
        stats.batches_sent += 1;
        let reply = client
            .post_batch(PATH_BATCH, load.batches[b].clone(), records, load.compact)
            .await;
        let received = Instant::now();
        stats.last_reply = Some(received);
        match reply {
            Ok(results) => {
                let us = (received - sent).as_micros().max(1) as u64;
                stats.latency_us.saturating_record(us);
                stats.latency_max_us = stats.latency_max_us.max(us);
                stats.results += results.len() as u64;
                for r in &results {
                    if r.code.is_ok() {
                        stats.ok += 1;
                    } else {
                        *stats.codes.entry(r.code.name().to_string()).or_insert(0) += 1;
                    }
                }
            }
            Err(e) => {
                stats.failed_batches += 1;
                stats.failed_transfers += records as u64;
                let fatal = matches!(e.kind, ErrorKind::Transport(_) | ErrorKind::Timeout(_));
                stats
                    .errors
                    .entry(e.short())
                    .or_insert((0, e.to_string()))
                    .0 += 1;
                if fatal {
                    // A node that cannot be reached makes the rest of the figures meaningless.
                    load.stop.store(true, Ordering::Relaxed);
                    stats.aborted = Some(e.to_string());
                }
            }
        }
        load.progress.inc(records as u64);
    }
    stats
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:>8} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    )
    .expect("progress template");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Waits until `GET /api/v11/health` answers `"status":"UP"`, up to `deadline`.
async fn wait_healthy(client: &Client, deadline: Instant) -> Result<(), String> {
    loop {
        let last = match client.get_json("/api/v11/health").await {
            Ok(v) if v.get("status").and_then(|s| s.as_str()) == Some("UP") => return Ok(()),
            Ok(v) => format!("health is {v}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "node {} is not healthy (last: {last}); see --wait-ms",
                client.base_url()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For `--addresses` runs: checks the chain id and balances, returns each account's highest used
/// nonce.
async fn remote_nonce_bases(
    client: &Client,
    plan: &Plan,
    addresses: &[Address],
    chain_id: u32,
    concurrency: usize,
) -> Result<Vec<u64>, String> {
    let node_chain = crate::transfer_cmd::fetch_chain_id(client).await?;
    if node_chain != chain_id {
        return Err(format!(
            "node {} runs chain {node_chain}, the benchmark signs for chain {chain_id} (--chain-id)",
            client.base_url()
        ));
    }
    let hint =
        "start the node(s) with the genesis written by `aurigraph bench --print-genesis FILE` \
                with the same --accounts, --genesis-seed and --chain-id";
    let fetches = addresses.iter().enumerate().map(|(i, address)| {
        let client = client.clone();
        let path = format!("/api/v11/accounts/{}", address.to_hex());
        async move { (i, client.get_json(&path).await) }
    });
    let mut stream = futures::stream::iter(fetches).buffer_unordered(concurrency.max(1));
    let mut bases = vec![0u64; addresses.len()];
    while let Some((i, reply)) = stream.next().await {
        let account = reply.map_err(|e: ClientError| match e.kind {
            ErrorKind::Status { status: 404, .. } => {
                format!(
                    "benchmark account {i} ({}) is unknown to the node: {hint}",
                    addresses[i]
                )
            }
            _ => e.to_string(),
        })?;
        let balance = account
            .get("balances")
            .and_then(|b| b.get("0"))
            .and_then(json_u64)
            .unwrap_or(0);
        let needed = plan.sends_of(i);
        if balance < needed {
            return Err(format!(
                "benchmark account {i} ({}) holds {balance} of asset 0 and must send {needed}: {hint}",
                addresses[i]
            ));
        }
        bases[i] = account
            .get("nonce")
            .and_then(json_u64)
            .ok_or_else(|| format!("account {}: the reply has no \"nonce\"", addresses[i]))?;
    }
    Ok(bases)
}

/// Stops the started node and removes its directory when dropped (also on errors).
struct NodeGuard {
    stop: Option<Box<dyn FnOnce()>>,
    dir: Option<PathBuf>,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            eprintln!("bench: stopping the node");
            stop();
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("bench: cannot remove {}: {e}", dir.display());
            }
        }
    }
}

fn validate(args: &BenchArgs) -> Result<(), String> {
    if args.accounts < 2 {
        return Err("--accounts must be at least 2 (transfers go to another account)".into());
    }
    if args.accounts > GENESIS_ALLOCATIONS_MAX {
        return Err(format!(
            "--accounts must be at most {GENESIS_ALLOCATIONS_MAX} (the genesis limit)"
        ));
    }
    if args.transfers == 0 {
        return Err("--transfers must be at least 1".into());
    }
    if args.batch_size == 0 || args.batch_size > BATCH_RECORDS_MAX {
        return Err(format!(
            "--batch-size must be between 1 and {BATCH_RECORDS_MAX}"
        ));
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if args.rate == Some(0) {
        return Err("--rate must be at least 1 transfer per second".into());
    }
    if args.client_threads == 0 {
        return Err("--client-threads must be at least 1".into());
    }
    if !(1..=crate::local_node::LOCAL_NODES_MAX).contains(&args.nodes) {
        return Err(format!(
            "--nodes must be between 1 and {}",
            crate::local_node::LOCAL_NODES_MAX
        ));
    }
    if args.nodes > 1 && !args.addresses.is_empty() {
        return Err(
            "--nodes starts a local cluster; it cannot be combined with --addresses".into(),
        );
    }
    Ok(())
}

/// Runs the benchmark (or, with `--print-genesis`, writes the genesis and returns). Builds its
/// own tokio runtime: call it outside any runtime.
///
/// `start_node(genesis, dir)` is called at most once, only without `--addresses`, on the calling
/// thread, before any tokio runtime exists and before signing. `dir` is a fresh, empty, existing
/// directory that the node may use for its data and logs. It returns the node's base URLs and a
/// stop function; it need not wait for readiness: the benchmark polls `GET /api/v11/health`
/// on every URL until `"status":"UP"` (up to `--wait-ms`). The stop function is called exactly
/// once when the benchmark ends (also on errors after a successful start) and must block until
/// the node has stopped; `dir` is removed afterwards unless `--keep-data`.
pub fn run(
    args: BenchArgs,
    start_node: impl FnOnce(&Genesis, &Path) -> Result<StartedNode, String>,
) -> Result<(), String> {
    validate(&args)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sign_threads = args.sign_threads.unwrap_or(cores).max(1);
    let plan = Plan {
        transfers: args.transfers,
        accounts: args.accounts,
        batch_size: args.batch_size,
        seed: args.genesis_seed,
    };

    let keys = bench_keys(args.genesis_seed, args.accounts, sign_threads);
    let addresses: Vec<Address> = keys.iter().map(address_of).collect();
    let genesis_text = genesis_json(&addresses, args.chain_id, args.shards);

    if let Some(path) = &args.print_genesis {
        std::fs::write(path, &genesis_text)
            .map_err(|e| format!("cannot write the genesis to {}: {e}", path.display()))?;
        eprintln!(
            "bench: wrote the genesis of {} accounts (seed {}, chain {}) to {}",
            args.accounts,
            args.genesis_seed,
            args.chain_id,
            path.display()
        );
        return Ok(());
    }
    let genesis = Genesis::from_json(&genesis_text).map_err(|e| e.to_string())?;

    let spread = plan.nonce_spread(args.concurrency);
    if spread > NONCE_WINDOW {
        eprintln!(
            "bench: warning: {} batches of {} in flight over {} accounts let one sender's nonces \
             spread over up to {spread} (> the node's window of {NONCE_WINDOW}): some transfers may \
             be rejected as NONCE_TOO_OLD; use more --accounts or less --concurrency",
            args.concurrency, args.batch_size, args.accounts
        );
    }

    // The node, when the benchmark owns it.
    let mut guard = NodeGuard {
        stop: None,
        dir: None,
    };
    let urls: Vec<String> = if args.addresses.is_empty() {
        let dir = temp_dir()?;
        eprintln!(
            "bench: starting a node in {} ({} funded accounts, chain {})",
            dir.display(),
            args.accounts,
            args.chain_id
        );
        if !args.keep_data {
            guard.dir = Some(dir.clone());
        }
        let (urls, stop) = start_node(&genesis, &dir)?;
        guard.stop = Some(stop);
        if urls.is_empty() {
            return Err("the started node reported no URL".into());
        }
        urls
    } else {
        args.addresses.clone()
    };
    let urls: Vec<String> = urls
        .iter()
        .map(|u| crate::client::normalize_base_url(u))
        .collect::<Result<_, _>>()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let per_address = args.concurrency.div_ceil(urls.len());
    let clients: Vec<Client> = runtime.block_on(async {
        urls.iter()
            .map(|u| Client::with_options(u, timeout, per_address))
            .collect::<Result<Vec<_>, _>>()
    })?;

    let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
    let nonce_bases = runtime.block_on(async {
        for c in &clients {
            wait_healthy(c, deadline).await?;
        }
        if args.addresses.is_empty() {
            Ok::<_, String>(vec![0u64; args.accounts])
        } else {
            eprintln!(
                "bench: checking {} accounts on {}",
                args.accounts,
                clients[0].base_url()
            );
            remote_nonce_bases(
                &clients[0],
                &plan,
                &addresses,
                args.chain_id,
                args.concurrency,
            )
            .await
        }
    })?;

    // Pre-sign, before the clock.
    let signing_bar = progress_bar(args.transfers as u64, "signing");
    let signing_start = Instant::now();
    let batches = sign_batches(
        &plan,
        &keys,
        args.chain_id,
        &nonce_bases,
        sign_threads,
        &signing_bar,
    );
    let signing = signing_start.elapsed();
    signing_bar.finish_and_clear();
    eprintln!(
        "bench: signed {} transfers into {} batches in {:.2} s on {sign_threads} threads",
        args.transfers,
        batches.len(),
        signing.as_secs_f64()
    );
    drop(keys);

    // The ceiling, measured now on this machine (only meaningful for a node on this host).
    let ceiling = if args.addresses.is_empty() {
        let c = measure_verify_ceiling(&batches, cores, Duration::from_millis(1500));
        if let Some(c) = &c {
            eprintln!(
                "bench: raw batch verification here: {:.0} signatures/s per core",
                c.per_core_per_sec
            );
        }
        c
    } else {
        None
    };

    // Load.
    let load_bar = progress_bar(args.transfers as u64, "sending");
    let load = Arc::new(Load {
        batches,
        plan,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        rate: args.rate,
        compact: !args.json_replies,
        progress: load_bar.clone(),
    });
    let stats = runtime.block_on(async {
        let start = Instant::now();
        let workers: Vec<_> = (0..args.concurrency)
            .map(|w| {
                let client = clients[w % clients.len()].clone();
                tokio::spawn(load_worker(load.clone(), client, start))
            })
            .collect();
        let mut total = WorkerStats::new();
        for w in workers {
            total.merge(w.await.map_err(|e| format!("load worker failed: {e}"))?);
        }
        Ok::<_, String>(total)
    })?;
    load_bar.finish_and_clear();
    drop(clients);
    drop(runtime);

    let elapsed = match (stats.first_send, stats.last_reply) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    let report = Report {
        addresses: urls,
        accounts: args.accounts,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        rate: args.rate,
        transfers_planned: args.transfers,
        transfers_sent: stats.transfers_sent,
        batches_sent: stats.batches_sent,
        results_received: stats.results,
        ok: stats.ok,
        other_codes: stats.codes,
        failed_batches: stats.failed_batches,
        failed_transfers: stats.failed_transfers,
        errors: stats.errors,
        aborted: stats.aborted,
        elapsed,
        signing,
        latency_us: stats.latency_us,
        latency_max_us: stats.latency_max_us,
        late_batches: stats.late_batches,
        lag_max: stats.lag_max,
        ceiling,
    };
    for line in report.summary_lines() {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).expect("JSON prints");
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    drop(guard);
    if let Some(reason) = report.aborted {
        return Err(format!("benchmark aborted: {reason}"));
    }
    if report.results_received == 0 {
        return Err("no results were received".into());
    }
    Ok(())
}

/// A fresh directory under the system's temporary directory.
fn temp_dir() -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("aurigraph-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_engine::batch::decode_batch;
    use ed25519_dalek::{Signature, Verifier};

    fn report(latencies_us: &[u64]) -> Report {
        let mut h = new_histogram();
        for &l in latencies_us {
            h.saturating_record(l);
        }
        Report {
            addresses: vec!["http://127.0.0.1:9003".into()],
            accounts: 10,
            batch_size: 100,
            concurrency: 4,
            rate: None,
            transfers_planned: 1000,
            transfers_sent: 1000,
            batches_sent: 10,
            results_received: 1000,
            ok: 998,
            other_codes: BTreeMap::from([("NONCE_TOO_OLD".to_string(), 2)]),
            failed_batches: 0,
            failed_transfers: 0,
            errors: BTreeMap::new(),
            aborted: None,
            elapsed: Duration::from_millis(400),
            signing: Duration::from_millis(10),
            latency_us: h,
            latency_max_us: latencies_us.iter().copied().max().unwrap_or(0),
            late_batches: 0,
            lag_max: Duration::ZERO,
            ceiling: None,
        }
    }

    #[test]
    fn summary_prints_the_tigerbeetle_lines() {
        // 100 batches of 1.5 .. 99.5 ms and one of 100.4 ms: p50 = 50 ms, p99 = 99 ms, and
        // p100 = the exact maximum, truncated.
        let mut lat: Vec<u64> = (1..=99).map(|i| i * 1000 + 500).collect();
        lat.push(100_400);
        let r = report(&lat);
        let lines = r.summary_lines();
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(has("load accepted = 2500 tx/s"), "{lines:#?}");
        assert!(has("ok per second = 2495 tx/s"), "{lines:#?}");
        assert!(has("batch latency p50 = 50 ms"), "{lines:#?}");
        assert!(has("batch latency p99 = 99 ms"), "{lines:#?}");
        assert!(has("batch latency p100 = 100 ms"), "{lines:#?}");
        assert!(has("other codes = NONCE_TOO_OLD=2"), "{lines:#?}");
        assert!(
            has("batch size = 100") && has("concurrency = 4"),
            "{lines:#?}"
        );
        let json = r.to_json();
        assert_eq!(json["loadAcceptedTxPerSec"], 2500);
        assert_eq!(json["batchLatencyP50Ms"], 50);
        assert_eq!(json["batchLatencyP99Ms"], 99);
        assert_eq!(json["batchLatencyP100Ms"], 100);
        assert_eq!(json["batchLatencyP100Us"], 100_400);
        assert_eq!(json["okCount"], 998);
        assert_eq!(json["otherCodes"]["NONCE_TOO_OLD"], 2);
        assert_eq!(json["elapsedSeconds"], 0.4);
    }

    #[test]
    fn empty_runs_print_zeros() {
        let mut r = report(&[]);
        r.elapsed = Duration::ZERO;
        r.results_received = 0;
        let lines = r.summary_lines();
        assert!(lines.contains(&"load accepted = 0 tx/s".to_string()));
        assert!(lines.contains(&"batch latency p100 = 0 ms".to_string()));
        assert_eq!(r.to_json()["batchLatencyMeanUs"], 0.0);
    }

    #[test]
    fn sub_millisecond_latencies_truncate_like_tigerbeetle() {
        let r = report(&[400, 900, 999]);
        assert_eq!(r.latency_at_us(1.0), 999);
        assert!(r
            .summary_lines()
            .contains(&"batch latency p100 = 0 ms".to_string()));
    }

    #[test]
    fn plan_covers_every_transfer_once_with_increasing_nonces() {
        let plan = Plan {
            transfers: 1005,
            accounts: 7,
            batch_size: 100,
            seed: 3,
        };
        assert_eq!(plan.batches(), 11);
        assert_eq!(plan.batch_range(10), 1000..1005);
        let mut last_nonce = [0u64; 7];
        let mut covered = 0;
        for b in 0..plan.batches() {
            for k in plan.batch_range(b) {
                assert_eq!(k, covered);
                covered += 1;
                let s = plan.sender(k);
                let r = plan.receiver(k);
                assert_ne!(s, r);
                assert!(r < 7);
                assert_eq!(plan.nonce_offset(k), last_nonce[s] + 1);
                last_nonce[s] += 1;
            }
        }
        assert_eq!(covered, 1005);
        for (a, sent) in last_nonce.iter().enumerate() {
            assert_eq!(plan.sends_of(a), *sent);
        }
        assert_eq!(plan.nonce_spread(16), 229);
    }

    #[test]
    fn receivers_are_spread_and_deterministic() {
        let plan = Plan {
            transfers: 10_000,
            accounts: 10,
            batch_size: 10,
            seed: 0,
        };
        let mut hits = [0u32; 10];
        for k in 0..10_000 {
            hits[plan.receiver(k)] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        let again = Plan { seed: 0, ..plan };
        assert_eq!(plan.receiver(1234), again.receiver(1234));
        let two = Plan {
            accounts: 2,
            ..plan
        };
        assert!((0..100).all(|k| two.receiver(k) == 1 - two.sender(k)));
    }

    #[test]
    fn keys_are_deterministic_and_the_genesis_funds_them() {
        let keys = bench_keys(5, 9, 4);
        assert_eq!(keys.len(), 9);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.to_bytes(), bench_key(5, i as u64).to_bytes());
        }
        assert_ne!(bench_key(5, 0).to_bytes(), bench_key(6, 0).to_bytes());
        assert_eq!(&bench_key(1, 2).to_bytes()[..16], b"aurigraph-bench\0");
        let addresses: Vec<Address> = keys.iter().map(address_of).collect();
        let g = Genesis::from_json(&genesis_json(&addresses, 7, None)).unwrap();
        assert_eq!(g.chain_id, 7);
        assert_eq!(g.shards, None);
        assert_eq!(g.allocations.len(), 9);
        assert!(g
            .allocations
            .iter()
            .all(|a| a.amount == BENCH_BALANCE && a.asset == 0 && addresses.contains(&a.address)));
        let g = Genesis::from_json(&genesis_json(&addresses, 9, Some(4))).unwrap();
        assert_eq!((g.chain_id, g.shards), (9, Some(4)));
    }

    #[test]
    fn signed_batches_decode_verify_and_follow_the_plan() {
        let plan = Plan {
            transfers: 25,
            accounts: 4,
            batch_size: 10,
            seed: 1,
        };
        let keys = bench_keys(1, 4, 2);
        let bases = [0, 5, 0, 100];
        let batches = sign_batches(&plan, &keys, 7, &bases, 3, &ProgressBar::hidden());
        assert_eq!(batches.len(), 3);
        let mut k = 0;
        for (b, bytes) in batches.iter().enumerate() {
            let view = decode_batch(bytes).unwrap();
            assert_eq!(view.len(), plan.batch_range(b).len());
            for record in view.records() {
                let s = plan.sender(k);
                assert_eq!(record.from(), address_of(&keys[s]));
                assert_eq!(record.to(), address_of(&keys[plan.receiver(k)]));
                assert_eq!(record.nonce(), bases[s] + plan.nonce_offset(k));
                assert_eq!(
                    (record.amount(), record.asset(), record.chain_id()),
                    (1, 0, 7)
                );
                keys[s]
                    .verifying_key()
                    .verify(record.message(), &Signature::from_bytes(record.signature()))
                    .unwrap();
                k += 1;
            }
        }
        assert_eq!(k, 25);
    }

    #[test]
    fn arguments_are_validated() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: BenchArgs,
        }
        use clap::Parser;
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert!(cli.args.addresses.is_empty());
        assert_eq!(
            (
                cli.args.transfers,
                cli.args.accounts,
                cli.args.batch_size,
                cli.args.concurrency
            ),
            (200_000, 10_000, 1000, 16)
        );
        assert!(validate(&cli.args).is_ok());
        let cli = Cli::try_parse_from(["x", "--addresses", "http://a:1,http://b:2"]).unwrap();
        assert_eq!(cli.args.addresses, vec!["http://a:1", "http://b:2"]);
        for bad in [
            ["x", "--accounts", "1"],
            ["x", "--batch-size", "0"],
            ["x", "--batch-size", "65537"],
            ["x", "--concurrency", "0"],
            ["x", "--transfers", "0"],
            ["x", "--rate", "0"],
        ] {
            let cli = Cli::try_parse_from(bad).unwrap();
            assert!(validate(&cli.args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn print_genesis_writes_the_file_without_starting_a_node() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: BenchArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        let cli = Cli::try_parse_from([
            "x",
            "--accounts",
            "3",
            "--genesis-seed",
            "9",
            "--print-genesis",
            path.to_str().unwrap(),
        ])
        .unwrap();
        run(cli.args, |_, _| panic!("must not start a node")).unwrap();
        let g = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(g.chain_id, BENCH_CHAIN_ID);
        assert_eq!(g.allocations.len(), 3);
        assert!(g
            .allocations
            .iter()
            .any(|a| a.address == address_of(&bench_key(9, 2))));
    }
}

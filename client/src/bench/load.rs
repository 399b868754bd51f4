//! The load: workers that send the pre-signed batches and count what comes back, and the checks
//! before it starts (health, chain id, balances and nonces of an existing chain).

use super::report::new_histogram;
use super::workload::Plan;
use super::BenchError;
use crate::http::{Client, ClientError, ErrorKind, TxResult};
use crate::ops::{fetch_chain_id, json_u64};
use aurigraph_wire::record::Address;
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The batch endpoint of signed transfers.
pub(crate) const PATH_BATCH: &str = "/api/v11/transactions/batch";
/// The batch endpoint of a gateway (gateway mode: bearer token, custodial accounts).
pub(crate) const PATH_GATEWAY_BATCH: &str = "/api/v11/gateway/transactions/batch";

/// Counts of one load worker, merged at the end.
pub(crate) struct WorkerStats {
    pub latency_us: Histogram<u64>,
    pub latency_max_us: u64,
    pub transfers_sent: u64,
    pub batches_sent: u64,
    pub results: u64,
    pub ok: u64,
    pub codes: BTreeMap<String, u64>,
    pub failed_batches: u64,
    pub failed_transfers: u64,
    pub errors: BTreeMap<String, (u64, String)>,
    pub aborted: Option<String>,
    pub first_send: Option<Instant>,
    pub last_reply: Option<Instant>,
    pub late_batches: u64,
    pub lag_max: Duration,
    /// The slowest batch of each window of the run, by when it was sent.
    pub timeline: Timeline,
}

impl WorkerStats {
    /// Counts of a run whose clock started at `start` (the timeline's zero).
    pub fn new(start: Instant) -> WorkerStats {
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
            timeline: Timeline::new(start),
        }
    }

    /// A batch sent at `sent` whose results all came back at `received`.
    pub fn record_results(&mut self, sent: Instant, received: Instant, results: &[TxResult]) {
        let us = (received - sent).as_micros().max(1) as u64;
        self.latency_us.saturating_record(us);
        self.latency_max_us = self.latency_max_us.max(us);
        self.timeline.record(sent, us);
        self.results += results.len() as u64;
        for r in results {
            if r.code.is_ok() {
                self.ok += 1;
            } else {
                *self.codes.entry(r.code.name().to_string()).or_insert(0) += 1;
            }
        }
    }

    /// A batch of `records` transfers that got no results: counted under the error's `short`
    /// key, with the first full message kept.
    pub fn record_failure(
        &mut self,
        records: usize,
        short: String,
        message: impl FnOnce() -> String,
    ) {
        self.failed_batches += 1;
        self.failed_transfers += records as u64;
        self.errors.entry(short).or_insert_with(|| (0, message())).0 += 1;
    }

    /// Waits until batch `range_start`'s time under `rate` (open loop), or notes how late it is.
    pub async fn pace(&mut self, rate: Option<u64>, start: Instant, range_start: usize) {
        let Some(rate) = rate else {
            return;
        };
        let due = start + Duration::from_secs_f64(range_start as f64 / rate as f64);
        let now = Instant::now();
        if now < due {
            tokio::time::sleep_until(due.into()).await;
        } else {
            let lag = now - due;
            if lag > Duration::from_millis(1) {
                self.late_batches += 1;
            }
            self.lag_max = self.lag_max.max(lag);
        }
    }

    pub fn merge(&mut self, o: WorkerStats) {
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
        self.timeline.merge(&o.timeline);
    }
}

/// The slowest batch latency of each [`Timeline::WINDOW_MS`] window of a run, by when the batch
/// was sent: a stall that hits the node every few seconds shows as a few slow windows among
/// fast ones, where the percentiles only say that the tail is long. Bounded: windows past
/// [`Timeline::WINDOWS_MAX`] (an hour) are not kept.
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    start: Instant,
    /// Per window: (batches sent, slowest latency in µs).
    windows: Vec<(u32, u32)>,
}

impl Timeline {
    pub const WINDOW_MS: u64 = 100;
    pub const WINDOWS_MAX: usize = 36_000;

    pub fn new(start: Instant) -> Timeline {
        Timeline {
            start,
            windows: Vec::new(),
        }
    }

    pub fn record(&mut self, sent: Instant, latency_us: u64) {
        let at_ms = sent.saturating_duration_since(self.start).as_millis() as u64;
        let window = (at_ms / Self::WINDOW_MS) as usize;
        if window >= Self::WINDOWS_MAX {
            return;
        }
        if self.windows.len() <= window {
            self.windows.resize(window + 1, (0, 0));
        }
        let (batches, slowest_us) = &mut self.windows[window];
        *batches = batches.saturating_add(1);
        *slowest_us = (*slowest_us).max(latency_us.min(u32::MAX as u64) as u32);
    }

    pub fn merge(&mut self, other: &Timeline) {
        assert_eq!(self.start, other.start, "timelines of one run");
        if self.windows.len() < other.windows.len() {
            self.windows.resize(other.windows.len(), (0, 0));
        }
        for (mine, theirs) in self.windows.iter_mut().zip(&other.windows) {
            mine.0 = mine.0.saturating_add(theirs.0);
            mine.1 = mine.1.max(theirs.1);
        }
    }

    /// Per window, oldest first: (batches sent, slowest latency in µs).
    pub fn windows(&self) -> &[(u32, u32)] {
        &self.windows
    }
}

pub(crate) fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub(crate) struct Load {
    pub batches: Vec<Bytes>,
    pub plan: Plan,
    pub next: AtomicUsize,
    pub stop: AtomicBool,
    pub rate: Option<u64>,
    pub compact: bool,
    /// [`PATH_BATCH`], or [`PATH_GATEWAY_BATCH`] in gateway mode.
    pub path: &'static str,
    pub progress: ProgressBar,
}

/// Sends batches until none is left. Steered plans: batch `b` goes through the client of its
/// lane (`clients[lane]`); otherwise every batch through `clients[own]`.
pub(crate) async fn load_worker(
    load: Arc<Load>,
    clients: Arc<[Client]>,
    own: usize,
    start: Instant,
) -> WorkerStats {
    let mut stats = WorkerStats::new(start);
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
        stats.pace(load.rate, start, range.start).await;
        let sent = Instant::now();
        stats.first_send = min_opt(stats.first_send, Some(sent));
        stats.transfers_sent += records as u64;
        stats.batches_sent += 1;
        let client = match load.plan.lanes {
            Some(_) => &clients[load.plan.lane_of_batch(b)],
            None => &clients[own],
        };
        let reply = client
            .post_batch(load.path, load.batches[b].clone(), records, load.compact)
            .await;
        let received = Instant::now();
        stats.last_reply = Some(received);
        match reply {
            Ok(results) => stats.record_results(sent, received, &results),
            Err(e) => {
                stats.record_failure(records, e.short(), || e.to_string());
                let fatal = matches!(e.kind, ErrorKind::Transport(_) | ErrorKind::Timeout(_));
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

pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
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
pub(crate) async fn wait_healthy(client: &Client, deadline: Instant) -> Result<(), BenchError> {
    loop {
        let last = match client.get_json("/api/v11/health").await {
            Ok(v) if v.get("status").and_then(|s| s.as_str()) == Some("UP") => return Ok(()),
            Ok(v) => format!("health is {v}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(BenchError::NotHealthy {
                url: client.base_url().to_string(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every shard in a `/api/v11/consensus/status` answer is led by its preferred
/// validator: shard `s` prefers the `(s mod n)`-th of its `n` voters by id, and its leader
/// hands leadership over to that voter shortly after an election.
pub fn leaders_settled(status: &serde_json::Value) -> bool {
    let Some(shards) = status["shards"].as_array() else {
        return false;
    };
    !shards.is_empty()
        && shards.iter().all(|s| {
            let (Some(shard), Some(leader), Some(voters)) = (
                s["shard"].as_u64(),
                s["leader"].as_u64(),
                s["voters"].as_array(),
            ) else {
                return false;
            };
            let mut voters: Vec<u64> = voters.iter().filter_map(|v| v.as_u64()).collect();
            voters.sort_unstable();
            !voters.is_empty() && voters[(shard % voters.len() as u64) as usize] == leader
        })
}

/// For a cluster the bench started: waits until every shard's leadership has moved to its
/// preferred validator, so that no hand-over interrupts the run (a hand-over loses the
/// proposals in flight: their clients are told to resubmit). Returns whether it settled before
/// `deadline`.
pub(crate) async fn wait_leaders_settled(client: &Client, deadline: Instant) -> bool {
    loop {
        if let Ok(status) = client.get_json("/api/v11/consensus/status").await {
            if leaders_settled(&status) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For `--addresses` runs: checks the chain id and balances, returns each account's highest used
/// nonce.
pub(crate) async fn remote_nonce_bases(
    client: &Client,
    plan: &Plan,
    addresses: &[Address],
    chain_id: u32,
    concurrency: usize,
) -> Result<Vec<u64>, BenchError> {
    let node_chain = fetch_chain_id(client).await?;
    if node_chain != chain_id {
        return Err(BenchError::ChainMismatch {
            url: client.base_url().to_string(),
            node_chain,
            chain_id,
        });
    }
    let fetches = addresses.iter().enumerate().map(|(i, address)| {
        let client = client.clone();
        let path = format!("/api/v11/accounts/{}", address.to_hex());
        async move { (i, client.get_json(&path).await) }
    });
    let mut stream = futures::stream::iter(fetches).buffer_unordered(concurrency.max(1));
    let mut bases = vec![0u64; addresses.len()];
    while let Some((i, reply)) = stream.next().await {
        let account = reply.map_err(|e: ClientError| match e.kind {
            ErrorKind::Status { status: 404, .. } => BenchError::UnknownAccount {
                index: i,
                address: addresses[i],
            },
            _ => BenchError::Client(e),
        })?;
        let balance = account
            .get("balances")
            .and_then(|b| b.get("0"))
            .and_then(json_u64)
            .unwrap_or(0);
        let needed = plan.sends_of(i);
        if balance < needed {
            return Err(BenchError::Underfunded {
                index: i,
                address: addresses[i],
                balance,
                needed,
            });
        }
        bases[i] = account
            .get("nonce")
            .and_then(json_u64)
            .ok_or(BenchError::NoNonce(addresses[i]))?;
    }
    Ok(bases)
}

#[cfg(test)]
mod settled_tests {
    use super::leaders_settled;
    use serde_json::json;

    #[test]
    fn leadership_is_settled_when_each_shard_has_its_preferred_voter() {
        let status = |leaders: [u64; 2]| {
            json!({"shards": [
                {"shard": 0, "leader": leaders[0], "voters": [3, 1, 2]},
                {"shard": 1, "leader": leaders[1], "voters": [2, 3, 1]},
            ]})
        };
        assert!(leaders_settled(&status([1, 2])));
        assert!(!leaders_settled(&status([2, 2])));
        assert!(!leaders_settled(&status([1, 3])));
        assert!(!leaders_settled(&json!({"shards": []})));
        assert!(!leaders_settled(
            &json!({"shards": [{"shard": 0, "leader": null, "voters": [1]}]})
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_keeps_each_windows_slowest_batch_and_merges_by_window() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut one = Timeline::new(start);
        one.record(at(10), 900);
        one.record(at(99), 4_000);
        one.record(at(250), 700);
        assert_eq!(one.windows(), &[(2, 4_000), (0, 0), (1, 700)]);
        let mut other = Timeline::new(start);
        other.record(at(120), 30_000);
        other.record(at(260), 800);
        other.record(at(420), 1_000);
        one.merge(&other);
        assert_eq!(
            one.windows(),
            &[(2, 4_000), (1, 30_000), (2, 800), (0, 0), (1, 1_000)]
        );
        // Past the bound nothing is kept (an hour of windows).
        one.record(at(Timeline::WINDOW_MS * Timeline::WINDOWS_MAX as u64), 5);
        assert_eq!(one.windows().len(), 5);
    }
}

//! The figures of a benchmark run, as printed and as JSON, and the verification ceiling measured
//! beside them.

use super::load::Timeline;
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Figures of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The URLs the load went to (the gRPC listeners with `--protocol grpc`).
    pub addresses: Vec<String>,
    /// `http` or `grpc`.
    pub protocol: &'static str,
    /// With gRPC: batches in flight per stream.
    pub stream_depth: Option<usize>,
    /// Gateway mode (unsigned transfers of custodial accounts) rather than signed transfers.
    pub gateway: bool,
    /// Steered runs: the lanes (a node's core each) the batches were sent to.
    pub lanes: Option<usize>,
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
    /// With `--node-cpus`: the node's CPUs and the benchmark's, in the list format.
    pub node_cpus: Option<(String, String)>,
    /// Per window of the run, by send time: (batches sent, slowest latency in µs).
    pub timeline: Vec<(u32, u32)>,
}

/// The machine's signature-verification ceiling, measured in the same run as the load: raw
/// ed25519-dalek batch verification (keys and signatures parsed from bytes, chunks of the
/// engine's size) of the benchmark's own signed transfers, on one thread, times the cores the
/// node runs on. A node that verifies every signature cannot accept more than this.
#[derive(Clone, Copy, Debug)]
pub struct VerifyCeiling {
    pub per_core_per_sec: f64,
    pub cores: usize,
    /// The arithmetic the verification ran on (`avx512ifma`, `avx2`, `serial`).
    pub backend: &'static str,
}

impl VerifyCeiling {
    pub fn tx_per_sec(&self) -> f64 {
        self.per_core_per_sec * self.cores as f64
    }
}

/// Measures raw batch verification of `batches`' records on `cores` threads at once for about
/// `duration`, in groups of `chunk` signatures (the engine's verification chunk): the most a
/// node verifying every signature on those cores can accept. All threads run together, as the
/// node's do (one thread's rate times the cores would ignore what they share: memory
/// bandwidth, caches, turbo clocks, a noisy neighbour).
pub fn measure_verify_ceiling(
    batches: &[Bytes],
    cores: usize,
    chunk: usize,
    duration: Duration,
) -> Option<VerifyCeiling> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let chunk = chunk.max(1);
    let cores = cores.max(1);
    let mut records = Vec::new();
    for b in batches.iter().take(8) {
        records.extend_from_slice(aurigraph_wire::batch::decode_batch(b).ok()?.records());
    }
    if records.is_empty() {
        return None;
    }
    let verify_for = |records: &[aurigraph_wire::record::Record]| -> Option<(u64, Duration)> {
        let start = Instant::now();
        let mut verified = 0u64;
        while start.elapsed() < duration {
            for group in records.chunks(chunk) {
                let keys: Vec<VerifyingKey> = group
                    .iter()
                    .map(|r| {
                        VerifyingKey::from_bytes(r.from_bytes()).expect("bench keys are valid")
                    })
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
        Some((verified, start.elapsed()))
    };
    let per_thread: Vec<Option<(u64, Duration)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| scope.spawn(|| verify_for(&records)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("verification thread"))
            .collect()
    });
    let mut rate = 0.0;
    for result in per_thread {
        let (verified, elapsed) = result?;
        rate += verified as f64 / elapsed.as_secs_f64();
    }
    Some(VerifyCeiling {
        per_core_per_sec: rate / cores as f64,
        cores,
        backend: aurigraph_wire::signature_backend::Ed25519Backend::detect().name(),
    })
}

fn per_second(count: u64, elapsed: Duration) -> u64 {
    (u128::from(count) * 1_000_000_000)
        .checked_div(elapsed.as_nanos())
        .map_or(0, |n| n as u64)
}

impl Report {
    /// `OK` results per second: a transfer answered with any other code was not accepted (and
    /// a run with any makes `aurigraph bench` fail: [`Report::not_all_ok`]).
    pub fn load_accepted(&self) -> u64 {
        per_second(self.ok, self.elapsed)
    }

    /// Results of any code per second.
    pub fn results_per_second(&self) -> u64 {
        per_second(self.results_received, self.elapsed)
    }

    /// Why this run's figures do not stand, if they do not: every planned transfer must come
    /// back `OK` (the workload is all valid), or the figures would count rejections.
    pub fn not_all_ok(&self) -> Option<String> {
        let other: u64 = self.other_codes.values().sum();
        if other == 0 && self.failed_batches == 0 && self.ok == self.transfers_planned as u64 {
            return None;
        }
        let codes: Vec<String> = self
            .other_codes
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        Some(format!(
            "{} of {} transfers came back OK ({other} with other codes{}{}, {} batches failed)",
            self.ok,
            self.transfers_planned,
            if codes.is_empty() { "" } else { ": " },
            codes.join(" "),
            self.failed_batches
        ))
    }

    /// Latency at `quantile` in microseconds (3 significant digits); the exact maximum for 1.0;
    /// 0 when nothing was measured.
    pub fn latency_at_us(&self, quantile: f64) -> u64 {
        latency_at_us(&self.latency_us, self.latency_max_us, quantile)
    }

    /// The summary as printed.
    /// `signed`, or `gateway` (custodial accounts, no signatures).
    pub fn mode(&self) -> &'static str {
        if self.gateway {
            "gateway"
        } else {
            "signed"
        }
    }

    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("addresses = {}", self.addresses.join(",")),
            format!("mode = {}", self.mode()),
            match self.stream_depth {
                Some(depth) => format!(
                    "protocol = {} (SubmitStream, {depth} batch{} in flight per stream)",
                    self.protocol,
                    if depth == 1 { "" } else { "es" }
                ),
                None => format!("protocol = {}", self.protocol),
            },
            match self.lanes {
                Some(lanes) => format!(
                    "steering = on ({lanes} lanes: each batch to the core owning its senders)"
                ),
                None => "steering = off".to_string(),
            },
            match &self.node_cpus {
                Some((node, client)) => format!("cpus = node {node}, benchmark {client}"),
                None => "cpus = shared".to_string(),
            },
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
        lines.push(format!(
            "results per second = {} tx/s (any code)",
            self.results_per_second()
        ));
        if let Some(c) = &self.ceiling {
            lines.push(format!(
                "verify ceiling = {:.0} tx/s (raw ed25519-dalek batch verify measured in this run \
                 on {2} threads at once: {1:.0}/s per thread; {3})",
                c.tx_per_sec(),
                c.per_core_per_sec,
                c.cores,
                c.backend
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
        let timeline = serde_json::json!({
            "windowMs": Timeline::WINDOW_MS,
            "batches": self.timeline.iter().map(|w| w.0).collect::<Vec<_>>(),
            "slowestUs": self.timeline.iter().map(|w| w.1).collect::<Vec<_>>(),
        });
        // Built in two steps: one `json!` of every field exceeds the macro's recursion limit.
        let mut value = serde_json::json!({
            "mode": self.mode(),
            "protocol": self.protocol,
            "streamDepth": self.stream_depth,
            "steeringLanes": self.lanes,
            "nodeCpus": self.node_cpus.as_ref().map(|(node, _)| node),
            "benchmarkCpus": self.node_cpus.as_ref().map(|(_, client)| client),
            "loadAcceptedTxPerSec": self.load_accepted(),
            "verifyCeilingTxPerSec": self.ceiling.map(|c| c.tx_per_sec()),
            "verifyCeilingPerCorePerSec": self.ceiling.map(|c| c.per_core_per_sec),
            "verifyCeilingCores": self.ceiling.map(|c| c.cores),
            "loadAcceptedOverCeiling": self.ceiling.map(|c| self.load_accepted() as f64 / c.tx_per_sec()),
            "resultsPerSec": self.results_per_second(),
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
            "timeline": timeline,
        });
        value["verifyBackend"] = serde_json::json!(self.ceiling.map(|c| c.backend));
        value
    }
}

/// Latency at `quantile` of `h` in microseconds (3 significant digits); `max_us`, the exact
/// maximum, for 1.0; 0 when nothing was measured.
pub(crate) fn latency_at_us(h: &Histogram<u64>, max_us: u64, quantile: f64) -> u64 {
    if h.is_empty() {
        0
    } else if quantile >= 1.0 {
        max_us
    } else {
        // The middle of the histogram bucket (within 0.05% of the true value), never above
        // the exact maximum.
        h.median_equivalent(h.value_at_quantile(quantile))
            .min(max_us)
    }
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(latencies_us: &[u64]) -> Report {
        let mut h = new_histogram();
        for &l in latencies_us {
            h.saturating_record(l);
        }
        Report {
            gateway: false,
            lanes: None,
            addresses: vec!["http://127.0.0.1:9003".into()],
            protocol: "http",
            stream_depth: None,
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
            node_cpus: None,
            timeline: vec![(4, 2_000), (6, 100_400)],
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
        // Only OK results count as accepted.
        assert!(has("load accepted = 2495 tx/s"), "{lines:#?}");
        assert!(
            has("results per second = 2500 tx/s (any code)"),
            "{lines:#?}"
        );
        let why = r.not_all_ok().expect("two transfers were not OK");
        assert!(
            why.contains("998 of 1000") && why.contains("NONCE_TOO_OLD=2"),
            "{why}"
        );
        let mut clean = report(&lat);
        clean.ok = 1000;
        clean.other_codes.clear();
        assert_eq!(clean.not_all_ok(), None);
        clean.failed_batches = 1;
        assert!(clean.not_all_ok().is_some());
        assert!(has("batch latency p50 = 50 ms"), "{lines:#?}");
        assert!(has("batch latency p99 = 99 ms"), "{lines:#?}");
        assert!(has("batch latency p100 = 100 ms"), "{lines:#?}");
        assert!(has("other codes = NONCE_TOO_OLD=2"), "{lines:#?}");
        assert!(has("protocol = http"), "{lines:#?}");
        assert!(has("steering = off"), "{lines:#?}");
        let steered = Report {
            lanes: Some(4),
            ..r.clone()
        };
        assert!(steered.summary_lines().contains(
            &"steering = on (4 lanes: each batch to the core owning its senders)".into()
        ));
        assert_eq!(steered.to_json()["steeringLanes"], 4);
        assert!(has("cpus = shared"), "{lines:#?}");
        let placed = Report {
            node_cpus: Some(("0-3".into(), "4-15".into())),
            ..r.clone()
        };
        assert!(placed
            .summary_lines()
            .contains(&"cpus = node 0-3, benchmark 4-15".into()));
        assert_eq!(placed.to_json()["nodeCpus"], "0-3");
        assert_eq!(placed.to_json()["benchmarkCpus"], "4-15");
        assert!(
            has("batch size = 100") && has("concurrency = 4"),
            "{lines:#?}"
        );
        let json = r.to_json();
        assert_eq!(json["loadAcceptedTxPerSec"], 2495);
        assert_eq!(json["resultsPerSec"], 2500);
        assert_eq!(json["batchLatencyP50Ms"], 50);
        assert_eq!(json["batchLatencyP99Ms"], 99);
        assert_eq!(json["batchLatencyP100Ms"], 100);
        assert_eq!(json["batchLatencyP100Us"], 100_400);
        assert_eq!(json["okCount"], 998);
        assert_eq!(json["otherCodes"]["NONCE_TOO_OLD"], 2);
        assert_eq!(json["elapsedSeconds"], 0.4);
        assert_eq!(json["timeline"]["windowMs"], 100);
        assert_eq!(json["timeline"]["batches"], serde_json::json!([4, 6]));
        assert_eq!(
            json["timeline"]["slowestUs"],
            serde_json::json!([2_000, 100_400])
        );
    }

    #[test]
    fn grpc_runs_print_the_same_lines_and_their_protocol() {
        let http = report(&[1500, 2500]);
        let grpc = Report {
            protocol: "grpc",
            stream_depth: Some(1),
            ..http.clone()
        };
        let (h, g) = (http.summary_lines(), grpc.summary_lines());
        assert_eq!(h.len(), g.len());
        let differ: Vec<_> = h.iter().zip(&g).filter(|(a, b)| a != b).collect();
        assert_eq!(
            differ,
            [(
                &"protocol = http".to_string(),
                &"protocol = grpc (SubmitStream, 1 batch in flight per stream)".to_string()
            )]
        );
        let deeper = Report {
            stream_depth: Some(4),
            ..grpc
        };
        assert!(deeper
            .summary_lines()
            .contains(&"protocol = grpc (SubmitStream, 4 batches in flight per stream)".into()));
        assert_eq!(deeper.to_json()["protocol"], "grpc");
        assert_eq!(deeper.to_json()["streamDepth"], 4);
        assert!(http.to_json()["streamDepth"].is_null());
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
}

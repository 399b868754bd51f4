//! The figures of a run: one [`Interval`] per report interval (client and server side), the
//! run's totals, the latency distribution, and the check of the client's counts against the
//! nodes' own counters. Written as `report.json`; read back by `aurigraph loadtest compare`.

use super::recorder::{Latency, Percentile, Tally};
use super::schedule::per_second;
use super::scrape::NodeInterval;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` of `report.json`.
pub const REPORT_FORMAT: &str = "aurigraph-loadtest/1";

/// How the run was shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// The command line as given.
    pub command: String,
    /// `concurrency` (closed loop) or `rate` (open loop, requests/s).
    pub ramp: String,
    pub start: u64,
    pub end: u64,
    pub step: u64,
    pub step_interval_seconds: f64,
    pub report_interval_seconds: f64,
    pub duration_seconds: f64,
    pub time_factor: f64,
    pub preset: Option<String>,
    /// `transfers`, `reads` or `path`.
    pub target: String,
    pub path: Option<String>,
    pub gateway: bool,
    pub batch_size: usize,
    pub accounts: usize,
    pub addresses: Vec<String>,
    /// Seconds since the Unix epoch when the load started.
    pub started_unix_seconds: u64,
}

/// The nodes' side of one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInterval {
    /// CPU of all nodes together (cores busy), when every node was read.
    pub cpu_cores: Option<f64>,
    /// Resident memory of all nodes together, when every node was read.
    pub rss_bytes: Option<u64>,
    /// Increase of `aurigraph_transactions_total` by result, over every node.
    pub transactions: BTreeMap<String, u64>,
    /// Increase of `aurigraph_api_requests_total` (not `/metrics`), over every node.
    pub api_requests: u64,
    pub nodes: Vec<NodeInterval>,
}

impl ServerInterval {
    pub fn of(nodes: Vec<NodeInterval>) -> ServerInterval {
        let all = |f: &dyn Fn(&NodeInterval) -> bool| nodes.iter().all(f);
        let cpu_cores =
            all(&|n| n.cpu_cores.is_some()).then(|| nodes.iter().filter_map(|n| n.cpu_cores).sum());
        let rss_bytes =
            all(&|n| n.rss_bytes.is_some()).then(|| nodes.iter().filter_map(|n| n.rss_bytes).sum());
        let mut transactions = BTreeMap::new();
        for n in &nodes {
            for (k, v) in &n.transactions {
                *transactions.entry(k.clone()).or_insert(0) += v;
            }
        }
        ServerInterval {
            cpu_cores,
            rss_bytes,
            transactions,
            api_requests: nodes.iter().map(|n| n.api_requests).sum(),
            nodes,
        }
    }

    /// `OK` transfers the nodes counted.
    pub fn transactions_ok(&self) -> u64 {
        self.transactions.get("OK").copied().unwrap_or(0)
    }

    /// Transfers the nodes counted, any result.
    pub fn transactions_all(&self) -> u64 {
        self.transactions.values().sum()
    }
}

/// One report interval. A request counts in the interval in which it completed; the last
/// interval also holds the requests still in flight at the end (it ends with the last reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    pub index: usize,
    pub start_seconds: f64,
    pub end_seconds: f64,
    /// The ramp's level at the interval's end (requests in flight, or requests/s).
    pub level: u64,
    pub requests: u64,
    pub replied: u64,
    pub ok_requests: u64,
    /// `ok_requests / requests` (1 when there were none).
    pub success_rate: f64,
    pub requests_per_second: f64,
    pub transfers: u64,
    pub transfers_ok: u64,
    /// `OK` transfers per second.
    pub transfers_per_second: f64,
    pub latency: Latency,
    pub errors: BTreeMap<String, u64>,
    pub late_requests: u64,
    pub lag_max_ms: f64,
    pub server: ServerInterval,
}

impl Interval {
    pub(crate) fn new(
        index: usize,
        (start_seconds, end_seconds): (f64, f64),
        level: u64,
        t: &Tally,
        server: ServerInterval,
    ) -> Interval {
        let seconds = end_seconds - start_seconds;
        Interval {
            index,
            start_seconds,
            end_seconds,
            level,
            requests: t.requests,
            replied: t.replied,
            ok_requests: t.ok_requests,
            success_rate: success_rate(t.ok_requests, t.requests),
            requests_per_second: per_second(t.requests, seconds),
            transfers: t.transfers,
            transfers_ok: t.transfers_ok,
            transfers_per_second: per_second(t.transfers_ok, seconds),
            latency: t.summary(),
            errors: t.errors.clone(),
            late_requests: t.late,
            lag_max_ms: t.lag_max.as_secs_f64() * 1000.0,
            server,
        }
    }

    pub fn seconds(&self) -> f64 {
        self.end_seconds - self.start_seconds
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn success_rate(ok: u64, all: u64) -> f64 {
    if all == 0 {
        1.0
    } else {
        ok as f64 / all as f64
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub elapsed_seconds: f64,
    pub requests: u64,
    pub replied: u64,
    pub ok_requests: u64,
    pub success_rate: f64,
    pub requests_per_second: f64,
    pub transfers: u64,
    pub transfers_ok: u64,
    pub transfers_per_second: f64,
    pub latency: Latency,
    pub errors: BTreeMap<String, u64>,
    pub late_requests: u64,
    /// The nodes' counters over the whole run (first scrape to last).
    pub server_transactions: BTreeMap<String, u64>,
    pub server_api_requests: u64,
}

/// The client's counts against the nodes' counters over the whole run. They agree exactly
/// when the nodes served only this run and every request was answered (no timeout, no broken
/// connection: a transfer the node decided but whose reply was lost is counted by the node
/// alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub client_transfers_ok: u64,
    pub node_transfers_ok: u64,
    pub client_transfers: u64,
    pub node_transfers: u64,
    pub client_requests: u64,
    pub node_api_requests: u64,
    /// Every node was read at the start and at the end.
    pub complete: bool,
    pub agree: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub format: String,
    pub run: RunInfo,
    pub intervals: Vec<Interval>,
    pub totals: Totals,
    /// Latency of every replied request at the quantiles of the percentile curve.
    pub latency_percentiles: Vec<Percentile>,
    pub check: Check,
    /// Why the run ended before its duration (interrupted, --max-requests), if it did.
    pub stopped_early: Option<String>,
}

impl Report {
    pub(crate) fn new(
        run: RunInfo,
        intervals: Vec<Interval>,
        total: &Tally,
        whole: ServerInterval,
        complete: bool,
        stopped_early: Option<String>,
    ) -> Report {
        let elapsed = intervals.last().map_or(0.0, |i| i.end_seconds);
        let totals = Totals {
            elapsed_seconds: elapsed,
            requests: total.requests,
            replied: total.replied,
            ok_requests: total.ok_requests,
            success_rate: success_rate(total.ok_requests, total.requests),
            requests_per_second: per_second(total.requests, elapsed),
            transfers: total.transfers,
            transfers_ok: total.transfers_ok,
            transfers_per_second: per_second(total.transfers_ok, elapsed),
            latency: total.summary(),
            errors: total.errors.clone(),
            late_requests: total.late,
            server_transactions: whole.transactions.clone(),
            server_api_requests: whole.api_requests,
        };
        let check = Check {
            client_transfers_ok: total.transfers_ok,
            node_transfers_ok: whole.transactions_ok(),
            client_transfers: total.transfers,
            node_transfers: whole.transactions_all(),
            client_requests: total.requests,
            node_api_requests: whole.api_requests,
            complete,
            agree: complete
                && total.transfers_ok == whole.transactions_ok()
                && total.transfers == whole.transactions_all()
                && total.requests == whole.api_requests,
        };
        Report {
            format: REPORT_FORMAT.to_string(),
            run,
            intervals,
            totals,
            latency_percentiles: total.curve(),
            check,
            stopped_early,
        }
    }

    /// `report.json`'s text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the report serializes");
        text.push('\n');
        text
    }

    /// A report read back from `report.json`.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let report: Report = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if report.format != REPORT_FORMAT {
            return Err(format!(
                "format {:?}, expected {REPORT_FORMAT:?}",
                report.format
            ));
        }
        Ok(report)
    }

    /// The level's unit for lines and tables.
    pub fn level_name(&self) -> &'static str {
        if self.run.ramp == "rate" {
            "rate"
        } else {
            "concurrency"
        }
    }

    /// The summary printed at the end.
    pub fn summary_lines(&self) -> Vec<String> {
        let t = &self.totals;
        let c = &self.check;
        let l = &t.latency;
        let mut lines = vec![
            format!("addresses = {}", self.run.addresses.join(",")),
            format!(
                "ramp = {} {} -> {} step {} every {:.1} s, report every {:.1} s, duration {:.1} s",
                self.run.ramp,
                self.run.start,
                self.run.end,
                self.run.step,
                self.run.step_interval_seconds,
                self.run.report_interval_seconds,
                self.run.duration_seconds
            ),
            format!("intervals = {}", self.intervals.len()),
            format!("elapsed = {:.3} s", t.elapsed_seconds),
            format!(
                "requests = {} ({} replied, {} ok; success rate {:.4})",
                t.requests, t.replied, t.ok_requests, t.success_rate
            ),
            format!(
                "throughput = {:.1} requests/s, {:.1} transfers/s (OK)",
                t.requests_per_second, t.transfers_per_second
            ),
            format!(
                "latency us: min = {} mean = {:.0} p50 = {} p90 = {} p99 = {} p99.9 = {} max = {} (n = {})",
                l.min_us, l.mean_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count
            ),
        ];
        if t.errors.is_empty() {
            lines.push("errors = none".into());
        } else {
            let e: Vec<String> = t.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
            lines.push(format!("errors = {}", e.join(", ")));
        }
        lines.push(format!(
            "nodes counted: OK transfers {} (client {}), all results {} (client {}), API requests {} (client {}){}",
            c.node_transfers_ok,
            c.client_transfers_ok,
            c.node_transfers,
            c.client_transfers,
            c.node_api_requests,
            c.client_requests,
            if c.agree {
                ": agree"
            } else if c.complete {
                ": DIFFER"
            } else {
                ": incomplete (a scrape failed)"
            }
        ));
        if let Some(why) = &self.stopped_early {
            lines.push(format!("stopped early: {why}"));
        }
        lines
    }
}

/// The line printed as each interval ends.
pub fn interval_line(i: &Interval, level_name: &str) -> String {
    let server = match (i.server.cpu_cores, i.server.rss_bytes) {
        (Some(cpu), Some(rss)) => format!(
            " | nodes: cpu {cpu:.2} cores, rss {:.0} MiB, OK {}",
            rss as f64 / (1 << 20) as f64,
            i.server.transactions_ok()
        ),
        _ => " | nodes: scrape failed".to_string(),
    };
    format!(
        "[{:>7.1}s-{:>7.1}s] {level_name} {:>5} | {:>8.1} req/s {:>9.1} tx/s | ok {:.4} | \
         p50 {:.1} p99 {:.1} max {:.1} ms | errors {}{server}",
        i.start_seconds,
        i.end_seconds,
        i.level,
        i.requests_per_second,
        i.transfers_per_second,
        i.success_rate,
        i.latency.p50_us as f64 / 1000.0,
        i.latency.p99_us as f64 / 1000.0,
        i.latency.max_us as f64 / 1000.0,
        i.error_count(),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loadtest::scrape::ShardIndex;
    use std::time::Duration;

    fn node(url: &str, ok: u64, cpu: f64, rss: u64, applied: u64) -> NodeInterval {
        NodeInterval {
            url: url.into(),
            cpu_seconds: Some(cpu * 2.0),
            cpu_cores: Some(cpu),
            rss_bytes: Some(rss),
            transactions: BTreeMap::from([("OK".to_string(), ok)]),
            api_requests: ok / 2,
            shards: vec![
                ShardIndex {
                    shard: 0,
                    commit_index: applied + 1,
                    applied_index: applied,
                },
                ShardIndex {
                    shard: 1,
                    commit_index: applied,
                    applied_index: applied,
                },
            ],
            error: None,
        }
    }

    /// A report of three 2-second intervals, concurrency 1, 2, 3.
    pub(crate) fn sample() -> Report {
        let mut total = Tally::new();
        let mut whole = Vec::new();
        let intervals: Vec<Interval> = (0..3u64)
            .map(|i| {
                let mut t = Tally::new();
                for k in 0..(10 * (i + 1)) {
                    let results = [(true, "OK"), (k != 3, "NONCE_TOO_OLD")];
                    t.replied(Duration::from_micros(1000 + 100 * k + 1000 * i), &results);
                }
                if i == 0 {
                    t.failed("timeout".into());
                }
                total.merge(&t);
                let nodes = vec![
                    node("http://a:1", t.transfers_ok / 2, 0.5, 50 << 20, 10 * i),
                    node(
                        "http://b:1",
                        t.transfers_ok - t.transfers_ok / 2,
                        0.25,
                        40 << 20,
                        10 * i,
                    ),
                ];
                whole.extend(nodes.clone());
                let s = (2 * i) as f64;
                Interval::new(
                    i as usize,
                    (s, s + 2.0),
                    i + 1,
                    &t,
                    ServerInterval::of(nodes),
                )
            })
            .collect();
        let run = RunInfo {
            command: "aurigraph loadtest".into(),
            ramp: "concurrency".into(),
            start: 1,
            end: 3,
            step: 1,
            step_interval_seconds: 2.0,
            report_interval_seconds: 2.0,
            duration_seconds: 6.0,
            time_factor: 1.0,
            preset: None,
            target: "transfers".into(),
            path: None,
            gateway: false,
            batch_size: 2,
            accounts: 100,
            addresses: vec!["http://a:1".into(), "http://b:1".into()],
            started_unix_seconds: 1_800_000_000,
        };
        Report::new(
            run,
            intervals,
            &total,
            ServerInterval::of(whole),
            true,
            None,
        )
    }

    #[test]
    fn intervals_and_totals_add_up() {
        let r = sample();
        assert_eq!(r.intervals.len(), 3);
        let i = &r.intervals[0];
        assert_eq!((i.requests, i.replied, i.ok_requests), (11, 10, 9));
        assert_eq!((i.transfers, i.transfers_ok), (20, 19));
        assert_eq!(i.requests_per_second, 5.5);
        assert_eq!(i.transfers_per_second, 9.5);
        assert_eq!(i.server.cpu_cores, Some(0.75));
        assert_eq!(i.server.rss_bytes, Some(90 << 20));
        assert_eq!(i.server.transactions_ok(), 19);
        let t = &r.totals;
        assert_eq!(
            t.requests,
            r.intervals.iter().map(|i| i.requests).sum::<u64>()
        );
        assert_eq!(
            t.latency.count,
            r.intervals.iter().map(|i| i.latency.count).sum::<u64>()
        );
        assert_eq!(t.latency.count, t.replied);
        assert_eq!(t.elapsed_seconds, 6.0);
        assert_eq!(r.check.client_transfers_ok, r.check.node_transfers_ok);
        assert!(!r.check.agree, "the sample's API request counts differ");
        let lines = r.summary_lines();
        assert!(lines.iter().any(|l| l.contains("DIFFER")), "{lines:#?}");
        assert!(interval_line(i, "concurrency").contains("concurrency     1"));
    }

    #[test]
    fn the_json_has_its_shape_and_reads_back() {
        let r = sample();
        let text = r.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["format"], REPORT_FORMAT);
        for key in [
            "run",
            "intervals",
            "totals",
            "latencyPercentiles",
            "check",
            "stoppedEarly",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let i = &v["intervals"][1];
        for key in [
            "startSeconds",
            "endSeconds",
            "level",
            "requestsPerSecond",
            "transfersPerSecond",
            "successRate",
            "errors",
            "server",
        ] {
            assert!(i.get(key).is_some(), "{key}");
        }
        for key in [
            "minUs", "meanUs", "maxUs", "p50Us", "p90Us", "p99Us", "p999Us", "count",
        ] {
            assert!(i["latency"].get(key).is_some(), "{key}");
        }
        assert_eq!(i["server"]["nodes"][0]["shards"][0]["appliedIndex"], 10);
        // Read back (floats within serde_json's parsing precision).
        let back = Report::from_json(&text).unwrap();
        assert_eq!(
            (back.run, back.check, back.intervals.len()),
            (r.run, r.check, 3)
        );
        assert_eq!(back.latency_percentiles, r.latency_percentiles);
        assert_eq!(back.totals.latency.count, r.totals.latency.count);
        let other = text.replace(REPORT_FORMAT, "x/9");
        assert!(Report::from_json(&other).unwrap_err().contains("format"));
        assert!(Report::from_json("{}").is_err());
    }
}

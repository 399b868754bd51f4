//! `report.csv`: one row per interval, the client's figures then the nodes'. Columns after the
//! fixed ones: each shard's highest commit index and lowest applied index over the nodes.

use super::report::{Interval, Report};
use std::collections::BTreeSet;

/// The fixed columns, in order.
pub const COLUMNS: &[&str] = &[
    "index",
    "start_s",
    "end_s",
    "level",
    "requests",
    "replied",
    "ok_requests",
    "success_rate",
    "requests_per_s",
    "transfers",
    "transfers_ok",
    "transfers_per_s",
    "latency_count",
    "latency_min_us",
    "latency_mean_us",
    "latency_p50_us",
    "latency_p90_us",
    "latency_p99_us",
    "latency_p999_us",
    "latency_max_us",
    "errors",
    "errors_by_kind",
    "late_requests",
    "lag_max_ms",
    "server_cpu_cores",
    "server_rss_bytes",
    "server_transactions_ok",
    "server_transactions_all",
    "server_api_requests",
];

/// A field quoted when it needs to be (RFC 4180).
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn shards_of(report: &Report) -> BTreeSet<u32> {
    report
        .intervals
        .iter()
        .flat_map(|i| i.server.nodes.iter())
        .flat_map(|n| n.shards.iter().map(|s| s.shard))
        .collect()
}

fn row(i: &Interval, shards: &BTreeSet<u32>) -> Vec<String> {
    let l = &i.latency;
    let errors: Vec<String> = i.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
    let mut cells = vec![
        i.index.to_string(),
        format!("{:.3}", i.start_seconds),
        format!("{:.3}", i.end_seconds),
        i.level.to_string(),
        i.requests.to_string(),
        i.replied.to_string(),
        i.ok_requests.to_string(),
        format!("{:.6}", i.success_rate),
        format!("{:.3}", i.requests_per_second),
        i.transfers.to_string(),
        i.transfers_ok.to_string(),
        format!("{:.3}", i.transfers_per_second),
        l.count.to_string(),
        l.min_us.to_string(),
        format!("{:.1}", l.mean_us),
        l.p50_us.to_string(),
        l.p90_us.to_string(),
        l.p99_us.to_string(),
        l.p999_us.to_string(),
        l.max_us.to_string(),
        i.error_count().to_string(),
        field(&errors.join(";")),
        i.late_requests.to_string(),
        format!("{:.3}", i.lag_max_ms),
        opt(i.server.cpu_cores.map(|c| format!("{c:.4}"))),
        opt(i.server.rss_bytes),
        i.server.transactions_ok().to_string(),
        i.server.transactions_all().to_string(),
        i.server.api_requests.to_string(),
    ];
    for shard in shards {
        let of_shard = || {
            i.server
                .nodes
                .iter()
                .flat_map(|n| n.shards.iter())
                .filter(move |s| s.shard == *shard)
        };
        cells.push(opt(of_shard().map(|s| s.commit_index).max()));
        cells.push(opt(of_shard().map(|s| s.applied_index).min()));
    }
    cells
}

/// `report.csv`'s text.
pub fn to_csv(report: &Report) -> String {
    let shards = shards_of(report);
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    for s in &shards {
        header.push(format!("shard{s}_commit_index_max"));
        header.push(format!("shard{s}_applied_index_min"));
    }
    let mut out = header.join(",");
    out.push('\n');
    for i in &report.intervals {
        out.push_str(&row(i, &shards).join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::report::tests::sample;

    #[test]
    fn one_row_per_interval_with_every_column() {
        let r = sample();
        let text = to_csv(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + r.intervals.len());
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(&header[..COLUMNS.len()], COLUMNS);
        assert_eq!(
            &header[COLUMNS.len()..],
            [
                "shard0_commit_index_max",
                "shard0_applied_index_min",
                "shard1_commit_index_max",
                "shard1_applied_index_min"
            ]
        );
        // The error kinds hold a comma-free list; every row has the header's width.
        for line in &lines[1..] {
            assert_eq!(line.split(',').count(), header.len(), "{line}");
        }
        let first: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(first[0], "0");
        assert_eq!(first[3], "1");
        assert_eq!(first[21], "result NONCE_TOO_OLD=1;timeout=1");
        assert_eq!(field("a,b\"c"), "\"a,b\"\"c\"");
    }
}

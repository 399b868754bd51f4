//! The server side of a run: each node's `GET /metrics` read at every interval boundary, and
//! what changed between two reads (docs/monitoring.md describes the families).

use crate::http::Client;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Largest exposition read (a node's is a few hundred KiB at most).
const METRICS_BYTES_MAX: usize = 16 << 20;
/// `Accept` of the scrape (what Prometheus negotiates).
const ACCEPT_METRICS: &str = "application/openmetrics-text; version=1.0.0";

/// One read of one node's metrics, the figures a run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// When the reply arrived (`None` for a failed read).
    pub at: Option<Instant>,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<u64>,
    /// `aurigraph_transactions_total` by result.
    pub transactions: BTreeMap<String, u64>,
    /// `aurigraph_api_requests_total` summed over every series but route `/metrics` (the reads
    /// of this scrape and of any other scraper).
    pub api_requests: u64,
    /// Shard → (commit index, applied index).
    pub shards: BTreeMap<u32, (u64, u64)>,
    pub error: Option<String>,
}

/// A sample's labels: (name, value) pairs.
type Labels<'a> = Vec<(&'a str, String)>;

/// One sample line: name, labels, value.
fn parse_line(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        while let Some(&(i, c)) = chars.peek() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' || c == ' ' {
                chars.next();
                continue;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = &body[key_start..key_end];
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    (true, 'n') => {
                        value.push('\n');
                        escaped = false
                    }
                    (_, c) => {
                        value.push(c);
                        escaped = false
                    }
                }
            }
            labels.push((key.trim(), value));
        }
        &body[end? + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

fn label<'a>(labels: &'a [(&str, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

/// The figures of an exposition's text.
pub fn parse_metrics(text: &str) -> Scrape {
    let mut s = Scrape::default();
    let mut commit: BTreeMap<u32, u64> = BTreeMap::new();
    let mut applied: BTreeMap<u32, u64> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let shard = || label(&labels, "shard").and_then(|v| v.parse::<u32>().ok());
        match name {
            "process_cpu_seconds_total" => s.cpu_seconds = Some(value),
            "process_resident_memory_bytes" => s.rss_bytes = Some(value as u64),
            "aurigraph_transactions_total" => {
                if let Some(result) = label(&labels, "result") {
                    *s.transactions.entry(result.to_string()).or_insert(0) += value as u64;
                }
            }
            "aurigraph_api_requests_total" if label(&labels, "route") != Some("/metrics") => {
                s.api_requests += value as u64;
            }
            "aurigraph_consensus_commit_index" => {
                if let Some(shard) = shard() {
                    commit.insert(shard, value as u64);
                }
            }
            "aurigraph_consensus_applied_index" => {
                if let Some(shard) = shard() {
                    applied.insert(shard, value as u64);
                }
            }
            _ => {}
        }
    }
    for (shard, c) in commit {
        let a = applied.get(&shard).copied().unwrap_or(0);
        s.shards.insert(shard, (c, a));
    }
    s
}

/// Reads `client`'s node's metrics (never fails: a failed read says why in `error`).
pub(crate) async fn scrape(client: &Client) -> Scrape {
    match client
        .get_bytes("/metrics", ACCEPT_METRICS, METRICS_BYTES_MAX)
        .await
    {
        Ok(body) => {
            let mut s = parse_metrics(&String::from_utf8_lossy(&body));
            s.at = Some(Instant::now());
            if s.cpu_seconds.is_none() {
                s.error = Some("no process_cpu_seconds_total in the reply".into());
            }
            s
        }
        Err(e) => Scrape {
            error: Some(e.to_string()),
            ..Scrape::default()
        },
    }
}

/// Reads every node's metrics at once.
pub(crate) async fn scrape_all(clients: &[Client]) -> Vec<Scrape> {
    futures::future::join_all(clients.iter().map(scrape)).await
}

/// What one node did over an interval (between two scrapes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInterval {
    pub url: String,
    /// Process CPU seconds over the interval, and per second of it (1.0 = one core busy).
    pub cpu_seconds: Option<f64>,
    pub cpu_cores: Option<f64>,
    /// Resident memory at the interval's end.
    pub rss_bytes: Option<u64>,
    /// Increase of `aurigraph_transactions_total` by result.
    pub transactions: BTreeMap<String, u64>,
    /// Increase of `aurigraph_api_requests_total` (route `/metrics` left out).
    pub api_requests: u64,
    /// Commit and applied index of each shard at the interval's end.
    pub shards: Vec<ShardIndex>,
    /// Why a figure is missing (a failed scrape).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardIndex {
    pub shard: u32,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// What changed on one node from `before` to `after`. Counter increases need both reads; a
/// counter that went down (a restarted node) counts from zero.
pub fn node_interval(url: &str, before: &Scrape, after: &Scrape) -> NodeInterval {
    let elapsed = match (before.at, after.at) {
        (Some(a), Some(b)) => Some(b.saturating_duration_since(a).as_secs_f64()),
        _ => None,
    };
    let both = before.error.is_none() && after.error.is_none();
    let cpu_seconds = match (before.cpu_seconds, after.cpu_seconds) {
        (Some(a), Some(b)) if both => Some(if b >= a { b - a } else { b }),
        _ => None,
    };
    let cpu_cores = match (cpu_seconds, elapsed) {
        (Some(c), Some(e)) if e > 0.0 => Some(c / e),
        _ => None,
    };
    let increase = |a: u64, b: u64| if b >= a { b - a } else { b };
    let transactions = if both {
        after
            .transactions
            .iter()
            .map(|(k, &b)| {
                let a = before.transactions.get(k).copied().unwrap_or(0);
                (k.clone(), increase(a, b))
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    } else {
        BTreeMap::new()
    };
    NodeInterval {
        url: url.to_string(),
        cpu_seconds,
        cpu_cores,
        rss_bytes: after.rss_bytes,
        transactions,
        api_requests: if both {
            increase(before.api_requests, after.api_requests)
        } else {
            0
        },
        shards: after
            .shards
            .iter()
            .map(|(&shard, &(commit_index, applied_index))| ShardIndex {
                shard,
                commit_index,
                applied_index,
            })
            .collect(),
        error: after.error.clone().or_else(|| before.error.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TEXT: &str = r#"# HELP process_cpu_seconds_total Total user and system CPU time.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 4.2e7
aurigraph_transactions_total{result="OK"} 900
aurigraph_transactions_total{result="NONCE_TOO_OLD"} 3
aurigraph_api_requests_total{method="POST",route="/api/v11/transactions/batch",status="200"} 40
aurigraph_api_requests_total{method="GET",route="/metrics",status="200"} 7
aurigraph_api_requests_total{method="GET",route="/api/v11/accounts/{address}",status="404"} 2
aurigraph_consensus_commit_index{shard="0"} 120
aurigraph_consensus_applied_index{shard="0"} 119
aurigraph_consensus_commit_index{shard="1"} 80
aurigraph_consensus_applied_index{shard="1"} 80
aurigraph_build_info{version="0.1.0",profile="a \"quoted\", {odd} one"} 1
# EOF
"#;

    #[test]
    fn the_exposition_parses_into_the_run_figures() {
        let s = parse_metrics(TEXT);
        assert_eq!(s.cpu_seconds, Some(12.5));
        assert_eq!(s.rss_bytes, Some(42_000_000));
        assert_eq!(s.transactions["OK"], 900);
        assert_eq!(s.transactions["NONCE_TOO_OLD"], 3);
        assert_eq!(s.api_requests, 42, "the /metrics route is left out");
        assert_eq!(s.shards[&0], (120, 119));
        assert_eq!(s.shards[&1], (80, 80));
        let (name, labels, value) = parse_line(r#"x{a="1\"}",b="2"} 3.5 1700000000"#).unwrap();
        assert_eq!((name, value), ("x", 3.5));
        assert_eq!(labels, [("a", "1\"}".to_string()), ("b", "2".to_string())]);
        assert!(parse_line("# TYPE x counter").is_none());
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn an_interval_is_the_difference_of_two_scrapes() {
        let t0 = Instant::now();
        let mut before = parse_metrics(TEXT);
        before.at = Some(t0);
        let mut after = parse_metrics(
            &TEXT
                .replace("12.5", "14.5")
                .replace("} 900", "} 1500")
                .replace("} 40", "} 100"),
        );
        after.at = Some(t0 + Duration::from_secs(4));
        let i = node_interval("http://n:1", &before, &after);
        assert_eq!(i.cpu_seconds, Some(2.0));
        assert_eq!(i.cpu_cores, Some(0.5));
        assert_eq!(i.transactions.get("OK"), Some(&600));
        assert_eq!(i.transactions.get("NONCE_TOO_OLD"), None, "no increase");
        assert_eq!(i.api_requests, 60);
        assert_eq!(i.shards.len(), 2);
        assert_eq!(i.error, None);
        let failed = Scrape {
            error: Some("refused".into()),
            ..Scrape::default()
        };
        let i = node_interval("http://n:1", &before, &failed);
        assert_eq!((i.cpu_cores, i.api_requests), (None, 0));
        assert_eq!(i.error.as_deref(), Some("refused"));
    }
}

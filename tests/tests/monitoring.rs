//! Monitoring that tells the truth: the dashboards and alert rules shipped in `deploy/` use only
//! metrics a running node exports, the files pass `promtool`, and a real Prometheus scraping a
//! real node under load computes rates and evaluates every alert rule.
//!
//! Needs `promtool` and `prometheus` on the PATH (Debian: `apt-get install prometheus`, which
//! `.ci/run` does); without them these tests fail and say so.

use aurigraph_testkit::*;
use aurigraph_wire::batch::encode_batch;
use aurigraph_wire::record::{address_of, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: &str = BATCH_MEDIA_TYPE;

/// The tests that run a node take turns: with two nodes starting while another is under load,
/// a shard of the starting node was seen not to finish recovery (one test run in about six on a
/// 2-core machine; see the report of this change), which is outside what these tests check.
static ONE_NODE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_node_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_NODE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

/// A tool from the Debian `prometheus` package, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    if let Some(path) = on_path(name) {
        return path;
    }
    panic!(
        "`{name}` is not installed: these tests need Prometheus's `{name}` on the PATH \
         (Debian/Ubuntu: `apt-get install -y prometheus`; .ci/run installs it)"
    );
}

// ---------------------------------------------------------------------------------------------
// The exposition format, parsed strictly enough to catch mistakes

#[derive(Debug, Default)]
struct Exposition {
    /// Family name -> type.
    types: BTreeMap<String, String>,
    /// Sample name with its labels (as written) -> value.
    samples: BTreeMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        assert!(
            text.ends_with("\n# EOF\n"),
            "an OpenMetrics exposition ends with # EOF"
        );
        let mut e = Exposition::default();
        let mut helped = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                // OpenMetrics: counter family `x` has the samples `x_total`, by which rules,
                // dashboards and the issue name it.
                let name = if kind == "counter" {
                    assert!(
                        !name.ends_with("_total"),
                        "OpenMetrics counter family {line}"
                    );
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                let old = e.types.insert(name.clone(), kind.to_string());
                assert!(old.is_none(), "TYPE twice for {name}");
            } else if line == "# EOF" {
                break;
            } else if line.starts_with('#') || line.is_empty() {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').expect("sample: series value");
                let value: f64 = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
                };
                let name = series.split('{').next().unwrap();
                assert!(
                    e.family_of(name).is_some(),
                    "sample of an undeclared family: {line}"
                );
                assert!(
                    e.samples.insert(series.to_string(), value).is_none(),
                    "duplicate series: {line}"
                );
            }
        }
        e
    }

    /// The family a sample or series name belongs to (`x_bucket` of histogram `x` is `x`).
    fn family_of(&self, name: &str) -> Option<&str> {
        if let Some((family, _)) = self.types.get_key_value(name) {
            return Some(family);
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some((family, kind)) = self.types.get_key_value(base) {
                    if kind == "histogram" || (kind == "summary" && suffix != "_bucket") {
                        return Some(family);
                    }
                }
            }
        }
        None
    }

    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    }
}

/// Metric names (`aurigraph_*`, `process_*`) used in a file of rules or dashboards.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while i < bytes.len() {
        if is_name(bytes[i]) && (i == 0 || !is_name(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && is_name(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            if word.starts_with("aurigraph_") || word.starts_with("process_") {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// Load

fn post_batch(node_port: u16, records: &[Record]) -> Response {
    http_request(
        node_port,
        "POST",
        "/api/v11/transactions/batch",
        Some(encode_batch(records)),
        &[("Content-Type", BATCH)],
    )
    .expect("batch request")
}

/// Submits batches of transfers (waiting for each) until `stop`; returns transfers answered OK.
fn load(
    port: u16,
    keys: Vec<ed25519_dalek::SigningKey>,
    batch: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let senders = keys.len() - 1;
        let to = address_of(&keys[senders]);
        let mut nonces = vec![0u64; senders];
        while !stop.load(Ordering::Relaxed) {
            let records: Vec<Record> = (0..batch)
                .map(|i| {
                    let k = i % senders;
                    nonces[k] += 1;
                    transfer(&keys[k], to, 1, nonces[k])
                })
                .collect();
            let reply = post_batch(port, &records);
            assert_eq!(
                reply.status,
                200,
                "{}",
                String::from_utf8_lossy(&reply.body)
            );
            let accepted = reply.json()["accepted"].as_u64().unwrap();
            ok.fetch_add(accepted, Ordering::Relaxed);
        }
    })
}

// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_cover_every_family_used_by_dashboards_and_alerts() {
    let _turn = one_node_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(9);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));

    // A short load: batches of 64, then one replayed transfer and one with a bad signature.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let worker = load(node.port, keys.clone(), 64, stop.clone(), ok.clone());
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let to = address_of(&keys[8]);
    let first = transfer(&keys[0], to, 1, 1_000_000_000);
    assert_eq!(
        node.post_json("/api/v11/transactions", &transfer_json(&first))
            .json()["result"],
        "OK"
    );
    assert_eq!(
        node.post_json("/api/v11/transactions", &transfer_json(&first))
            .json()["result"],
        "NONCE_REPLAYED"
    );
    let mut forged = transfer_json(&transfer(&keys[1], to, 5, 9_999_999));
    forged["signature"] = transfer_json(&first)["signature"].clone();
    assert_eq!(
        node.post_json("/api/v11/transactions", &forged).json()["result"],
        "BAD_SIGNATURE"
    );
    // Let the sampler see a quiet second so that /stats and /metrics read the same totals.
    std::thread::sleep(Duration::from_millis(1100));

    let reply = node.get("/metrics");
    assert_eq!(reply.status, 200);
    let content_type = reply
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = String::from_utf8(reply.body.clone()).unwrap();
    let m = Exposition::parse(&text);

    // Every family the dashboards and alert rules use is exported.
    for file in [
        "prometheus/alerts.yml",
        "grafana/dashboards/aurigraph-overview.json",
    ] {
        let body = std::fs::read_to_string(deploy(file)).unwrap();
        let used = referenced_metrics(&body);
        assert!(used.len() > 5, "{file}: found only {used:?}");
        let missing: Vec<&String> = used.iter().filter(|n| m.family_of(n).is_none()).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the node does not export: {missing:?}\n--- /metrics:\n{text}"
        );
    }
    // And every family the issue names.
    for family in [
        "aurigraph_transactions_total",
        "aurigraph_transaction_duration_seconds",
        "aurigraph_transaction_queue_size",
        "aurigraph_batches_total",
        "aurigraph_batch_size",
        "aurigraph_signature_verifications_total",
        "aurigraph_verify_key_cache_lookups_total",
        "aurigraph_consensus_term",
        "aurigraph_consensus_commit_index",
        "aurigraph_consensus_applied_index",
        "aurigraph_consensus_is_leader",
        "aurigraph_consensus_leader_changes_total",
        "aurigraph_consensus_cluster_size",
        "aurigraph_consensus_peer_lag_entries",
        "aurigraph_wal_fsync_duration_seconds",
        "aurigraph_wal_bytes_written_total",
        "aurigraph_shard_write_cycles_total",
        "aurigraph_sink_entries_total",
        "aurigraph_snapshots_total",
        "aurigraph_api_requests_total",
        "aurigraph_api_request_duration_seconds",
        "aurigraph_beacon_pulses_verified_total",
        "aurigraph_beacon_fallback_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "aurigraph_build_info",
    ] {
        assert!(m.types.contains_key(family), "{family} missing:\n{text}");
    }

    // The figures are the measured ones.
    // Each core's executor thread has used CPU, and no more than the whole process.
    let process_cpu = m.value("process_cpu_seconds_total");
    let mut cores_cpu = 0.0;
    for core in 0..2 {
        let v = m.value(&format!(
            "aurigraph_core_cpu_seconds_total{{core=\"{core}\"}}"
        ));
        assert!(v > 0.0, "core {core} used no CPU");
        cores_cpu += v;
    }
    assert!(
        cores_cpu <= process_cpu + 0.05,
        "{cores_cpu} > {process_cpu}"
    );
    let loaded = ok.load(Ordering::Relaxed) as f64;
    assert!(loaded >= 64.0, "the load confirmed {loaded}");
    let batches = loaded / 64.0;
    let confirmed = loaded + 1.0;
    assert_eq!(
        m.value("aurigraph_transactions_total{result=\"OK\"}"),
        confirmed
    );
    assert_eq!(
        m.value("aurigraph_transactions_total{result=\"NONCE_REPLAYED\"}"),
        1.0
    );
    assert_eq!(
        m.value("aurigraph_transactions_total{result=\"BAD_SIGNATURE\"}"),
        1.0
    );
    assert_eq!(
        m.value("aurigraph_transaction_duration_seconds_count"),
        confirmed + 2.0
    );
    assert_eq!(
        m.value("aurigraph_transaction_duration_seconds_bucket{le=\"+Inf\"}"),
        confirmed + 2.0
    );
    assert_eq!(m.value("aurigraph_batches_total"), batches + 3.0);
    // The replayed transfer's signature is valid (replay is decided by the ledger).
    assert_eq!(
        m.value("aurigraph_signature_verifications_total{outcome=\"valid\"}"),
        confirmed + 1.0
    );
    assert_eq!(
        m.value("aurigraph_signature_verifications_total{outcome=\"invalid\"}"),
        1.0
    );
    for shard in 0..2 {
        let commit = m.value(&format!(
            "aurigraph_consensus_commit_index{{shard=\"{shard}\"}}"
        ));
        let applied = m.value(&format!(
            "aurigraph_consensus_applied_index{{shard=\"{shard}\"}}"
        ));
        assert!(
            commit >= 1.0 && applied == commit,
            "shard {shard}: {commit} {applied}"
        );
        assert_eq!(
            m.value(&format!(
                "aurigraph_consensus_is_leader{{shard=\"{shard}\"}}"
            )),
            1.0
        );
        assert_eq!(
            m.value(&format!(
                "aurigraph_consensus_peer_lag_entries{{shard=\"{shard}\",peer=\"1\"}}"
            )),
            0.0
        );
    }
    assert_eq!(m.value("aurigraph_consensus_cluster_size"), 1.0);
    assert!(m.value("aurigraph_wal_fsync_duration_seconds_count") >= 2.0);
    assert!(m.value("aurigraph_wal_fsync_duration_seconds_sum") > 0.0);
    assert!(m.value("aurigraph_wal_bytes_written_total") >= 4096.0);
    assert!(
        m.value(
            "aurigraph_api_requests_total{protocol=\"http\",method=\"POST\",route=\"/api/v11/transactions/batch\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(m.value("process_resident_memory_bytes") > 1e6);
    assert!(m.value("process_cpu_seconds_total") > 0.0);
    assert!(m.value("aurigraph_data_dir_available_bytes") > 0.0);

    // /api/v11/stats reads the same counters (tolerance: none for totals).
    let stats = node.get("/api/v11/stats").json();
    assert_eq!(
        stats["performance"]["totalTransactions"].as_f64().unwrap(),
        confirmed
    );
    assert_eq!(
        stats["performance"]["rejectedTransactions"]
            .as_f64()
            .unwrap(),
        2.0
    );
    // (JSON floats are parsed to within an ulp.)
    let peak = stats["performance"]["peakTps"].as_f64().unwrap();
    assert!(
        (peak - m.value("aurigraph_peak_tps")).abs() <= 1e-9 * peak.max(1.0),
        "{peak}"
    );

    // (`promtool check metrics` lints the classic text format only; the OpenMetrics
    // exposition is checked by the parse above and by a real Prometheus scraping it, in
    // a_real_prometheus_scrapes_a_node_under_load_and_evaluates_every_rule.)
}

#[test]
fn promtool_accepts_the_shipped_rules_and_config_and_every_alert_has_a_runbook() {
    let promtool = tool("promtool");
    for args in [
        vec!["check", "rules", "prometheus/alerts.yml"],
        vec!["check", "config", "prometheus/prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(repo_root().join("deploy"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Each alert: a summary, a description, a runbook link to its paragraph of the docs.
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let runbook = std::fs::read_to_string(repo_root().join("docs/monitoring.md")).unwrap();
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 10, "{} alerts", blocks.len());
    for block in blocks {
        let name = block.lines().next().unwrap().trim();
        for key in ["summary:", "description:", "severity:"] {
            assert!(block.contains(key), "alert {name} has no {key}");
        }
        let anchor = format!(
            "runbook_url: \"docs/monitoring.md#{}\"",
            name.to_lowercase()
        );
        assert!(block.contains(&anchor), "alert {name}: expected `{anchor}`");
        assert!(
            runbook.contains(&format!("\n### {name}\n")),
            "docs/monitoring.md has no `### {name}` runbook paragraph"
        );
    }
    // The list of alerts is covered.
    for name in [
        "AurigraphNodeDown",
        "AurigraphShardNoLeader",
        "AurigraphLeaderFlapping",
        "AurigraphFollowerLag",
        "AurigraphCommitStall",
        "AurigraphHighP99Latency",
        "AurigraphApiErrorRatio",
        "AurigraphSlowFsync",
        "AurigraphBeaconFallback",
        "AurigraphDiskAlmostFull",
        "AurigraphPeerLinkDown",
        "AurigraphPeerAuthenticationFailures",
    ] {
        assert!(
            rules.contains(&format!("- alert: {name}\n")),
            "no alert {name}"
        );
    }

    // The dashboard is valid JSON with panels that all have queries.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/dashboards/aurigraph-overview.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() > 10);
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
            "panel {} has no query",
            p["title"]
        );
    }
}

/// A Prometheus server on a free loopback port with its data in a temporary directory; killed
/// when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, node_port: u16) -> Prometheus {
        let binary = tool("prometheus");
        let port = free_port();
        let rules = deploy("prometheus/alerts.yml");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: aurigraph\n    static_configs:\n      - targets: [\"127.0.0.1:{node_port}\"]\n",
                rules.display()
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log_text());
            }
            if http_request(port, "GET", "/-/ready", None, &[]).is_ok_and(|r| r.status == 200) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn api(&mut self, path: &str) -> serde_json::Value {
        let reply = http_request(self.port, "GET", path, None, &[]).expect("prometheus API");
        let v = reply.json();
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    fn query(&mut self, expr: &str) -> Vec<serde_json::Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)));
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sample_value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_real_prometheus_scrapes_a_node_under_load_and_evaluates_every_rule() {
    let _turn = one_node_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(9);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let worker = load(node.port, keys.clone(), 32, stop.clone(), ok.clone());
    let mut prometheus = Prometheus::start(dir.path(), node.port);

    // Prometheus scraped the OpenMetrics exposition without error, and sees the counters under
    // their `_total` names and the histograms' buckets.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets = prometheus.api("/api/v1/targets");
        let target = &targets["activeTargets"][0];
        if target["health"] == "up" {
            assert_eq!(target["lastError"], "", "{target}");
            break;
        }
        assert!(Instant::now() < deadline, "target not up: {targets}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for expr in [
        "aurigraph_beacon_fallback_total",
        "aurigraph_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}",
        "process_cpu_seconds_total",
    ] {
        assert!(!prometheus.query(expr).is_empty(), "{expr} not scraped");
    }

    // The load's rate as Prometheus computes it from the scraped counters.
    let expr = "sum(rate(aurigraph_transactions_total{result=\"OK\"}[30s]))";
    let deadline = Instant::now() + Duration::from_secs(30);
    let rate = loop {
        let result = prometheus.query(expr);
        if let Some(v) = result.first().map(sample_value).filter(|&v| v > 0.0) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "{expr} stayed empty or 0: {result:?}\n{}",
            prometheus.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(rate > 0.0);
    let per_result = prometheus.query("rate(aurigraph_transactions_total[30s])");
    assert_eq!(per_result.len(), 10, "{per_result:?}");
    let up = prometheus.query("up{job=\"aurigraph\"}");
    assert_eq!(up.len(), 1);
    assert_eq!(sample_value(&up[0]), 1.0);

    // An alert expression, as shipped: it evaluates, and does not fire on a healthy node.
    let no_leader = "max by (shard) (aurigraph_consensus_is_leader{job=\"aurigraph\"}) == 0";
    assert!(prometheus.query(no_leader).is_empty());
    let leaders =
        prometheus.query("max by (shard) (aurigraph_consensus_is_leader{job=\"aurigraph\"})");
    assert_eq!(leaders.len(), 2, "{leaders:?}");
    let p99 = prometheus.query(
        "histogram_quantile(0.99, sum by (instance, le) (rate(aurigraph_transaction_duration_seconds_bucket[30s])))",
    );
    assert_eq!(p99.len(), 1, "{p99:?}");
    assert!(sample_value(&p99[0]) > 0.0);

    // Every shipped rule was evaluated by Prometheus without error.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let data = prometheus.api("/api/v1/rules");
        let rules: Vec<serde_json::Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        assert!(rules.len() >= 10, "{data}");
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001-"))
        });
        if evaluated {
            for r in &rules {
                assert_eq!(
                    r["health"], "ok",
                    "rule {} failed: {}",
                    r["name"], r["lastError"]
                );
                for key in ["summary", "description", "runbook_url"] {
                    assert!(
                        r["annotations"][key]
                            .as_str()
                            .is_some_and(|s| !s.is_empty()),
                        "rule {} has no {key}",
                        r["name"]
                    );
                }
            }
            // Firing alerts on a healthy single validator under light load: none.
            let firing: Vec<&serde_json::Value> =
                rules.iter().filter(|r| r["state"] == "firing").collect();
            assert!(firing.is_empty(), "alerts firing: {firing:?}");
            break;
        }
        assert!(Instant::now() < deadline, "rules not evaluated: {data}");
        std::thread::sleep(Duration::from_millis(250));
    }

    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    drop(prometheus);
}

// ---------------------------------------------------------------------------------------------
// /stats and /metrics agree with what the benchmark client measured

/// Transfers decided so far, summed over every `result` series of `aurigraph_transactions_total`,
/// and those with result OK.
fn transactions_total(node: &Node) -> (f64, f64) {
    let metrics = Exposition::parse(&String::from_utf8_lossy(&node.get("/metrics").body));
    let all = metrics
        .samples
        .iter()
        .filter(|(series, _)| series.starts_with("aurigraph_transactions_total{"))
        .map(|(_, v)| v)
        .sum();
    let ok = metrics
        .samples
        .get("aurigraph_transactions_total{result=\"OK\"}")
        .copied()
        .unwrap_or(0.0);
    (all, ok)
}

/// Runs the real benchmark client (`aurigraph bench --addresses`) against a node started with
/// the benchmark's genesis and checks `/api/v11/stats` and `/metrics` against the benchmark's
/// own figures.
///
/// Counts are compared exactly: the node served only this load (the figures read before the
/// benchmark are subtracted), and every result the benchmark received was counted by the node
/// before the reply left it.
///
/// Rates cannot be compared exactly because the windows differ: the benchmark's
/// `loadAcceptedTxPerSec` is its results over its own elapsed time E (first send to last
/// reply), the node's `peakTps` is the largest count over one sampler window (each at least
/// `SAMPLE_PERIOD` = 1 s long, as the sampler sleeps 1 s between samples; here assumed at most
/// 1.5 s, i.e. the sampler is never delayed by more than 0.5 s), and `avgTps` is the count over
/// the node's whole uptime. Every transfer the node counted falls inside the benchmark's
/// interval, which at most ceil(E / 1 s) + 1 windows overlap, so with N results:
///   N / (E + 2 * 1.5 s)  <=  peakTps  <=  N / 1 s,
/// and, as the uptime is longer than E, avgTps <= N / E (+1 for the benchmark's integer
/// rounding). These are the tolerances stated in docs/monitoring.md.
#[test]
fn stats_and_metrics_agree_with_the_benchmark_client() {
    let _turn = one_node_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    const ACCOUNTS: &str = "500";
    const TRANSFERS: u64 = 40_000;
    let genesis_path = dir.path().join("bench-genesis.json");
    let status = Command::new(aurigraph_bin())
        .args([
            "bench",
            "--accounts",
            ACCOUNTS,
            "--shards",
            "2",
            "--print-genesis",
        ])
        .arg(&genesis_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run aurigraph bench --print-genesis");
    assert!(status.success(), "bench --print-genesis failed: {status}");
    let genesis = aurigraph_wire::genesis::Genesis::from_json(
        &std::fs::read_to_string(&genesis_path).unwrap(),
    )
    .expect("the bench genesis parses");
    let node = Node::start(dir.path(), Some(&genesis));

    let before = node.get("/api/v11/stats").json();
    let before_total = before["performance"]["totalTransactions"].as_u64().unwrap();
    let (before_metric_all, before_metric_ok) = transactions_total(&node);

    let report_path = dir.path().join("bench.json");
    let output = Command::new(aurigraph_bin())
        .arg("bench")
        .arg("--addresses")
        .arg(format!("http://127.0.0.1:{}", node.port))
        .args(["--accounts", ACCOUNTS, "--shards", "2"])
        .args(["--transfers", &TRANSFERS.to_string()])
        .args(["--batch-size", "250", "--concurrency", "4"])
        .args(["--sign-threads", "2", "--client-threads", "1"])
        .arg("--json")
        .arg(&report_path)
        .stdin(Stdio::null())
        .output()
        .expect("run aurigraph bench");
    assert!(
        output.status.success(),
        "bench failed ({}):\n{}\n{}\nnode log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        node.log_text()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let results = report["resultsReceived"].as_u64().unwrap();
    let ok = report["okCount"].as_u64().unwrap();
    let elapsed = report["elapsedSeconds"].as_f64().unwrap();
    let load_accepted = report["loadAcceptedTxPerSec"].as_u64().unwrap() as f64;
    assert_eq!(results, TRANSFERS, "{report:#}");
    assert_eq!(ok, TRANSFERS, "{report:#}");

    // Let the sampler close the window that holds the last replies.
    std::thread::sleep(Duration::from_millis(2_000));
    let stats = node.get("/api/v11/stats").json();
    let perf = &stats["performance"];
    let total = perf["totalTransactions"].as_u64().unwrap();
    assert_eq!(
        total - before_total,
        ok,
        "/stats totalTransactions: {perf:#}"
    );
    let (metric_all, metric_ok) = transactions_total(&node);
    assert_eq!(
        (metric_all - before_metric_all) as u64,
        results,
        "sum of aurigraph_transactions_total"
    );
    assert_eq!(
        (metric_ok - before_metric_ok) as u64,
        ok,
        "aurigraph_transactions_total{{result=\"OK\"}}"
    );
    assert_eq!(perf["rejectedTransactions"].as_u64(), Some(0), "{perf:#}");

    let n = ok as f64;
    let peak = perf["peakTps"].as_f64().unwrap();
    let (low, high) = (n / (elapsed + 3.0), n / 1.0);
    assert!(
        (low..=high).contains(&peak),
        "peakTps {peak} outside [{low:.0}, {high:.0}] (bench: {n} in {elapsed:.3} s, \
         loadAccepted {load_accepted})"
    );
    let avg = perf["avgTps"].as_f64().unwrap();
    assert!(
        avg <= load_accepted + 1.0,
        "avgTps {avg} above the benchmark's rate {load_accepted}"
    );
    eprintln!(
        "bench: {n} in {elapsed:.3} s = {load_accepted} tx/s; node: peakTps {peak:.0}, \
         avgTps {avg:.0}"
    );

    // At the default level (info) the node writes no line per transfer, nor per request.
    let log = node.log_text();
    assert!(
        log.lines().count() < 100,
        "{} log lines for {TRANSFERS} transfers:\n{log}",
        log.lines().count()
    );
}

// ---------------------------------------------------------------------------------------------
// Structured logs

/// `aurigraph node --log-format json` writes one JSON object per line to stderr, with the
/// tracing-subscriber fields (timestamp, level, fields.message, target).
#[test]
fn log_format_json_writes_json_lines() {
    let _turn = one_node_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let mut node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys, 2)),
        free_port(),
        &["--log-format", "json"],
    );
    assert_eq!(node.terminate(), Some(0), "{}", node.log_text());
    let log = node.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines:\n{log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{log}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "no {key} in {line}");
        }
        assert!(v["fields"].is_object(), "no fields in {line}");
    }
    // The default level is info: the per-request and per-shard debug spans do not show, and no
    // line is written per transfer.
    assert!(
        lines.iter().all(|l| !l.contains("\"level\":\"DEBUG\"")),
        "{log}"
    );
}

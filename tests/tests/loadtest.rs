//! `aurigraph loadtest` against a real cluster of three validators (testkit's `Cluster`), and
//! its bad arguments.
//!
//! The ramp test runs a closed-loop ramp of 1 to 6 requests in flight (one more every 3 s,
//! batches of 10 signed transfers, 18 s, a report every 2 s), then a short ramp of account
//! reads, and checks the reports against the nodes' own counters, read by the test itself
//! before and after each run:
//! - OK transfers, and transfers of any result, in the report equal the increase of
//!   `aurigraph_transactions_total{result="OK"}` and of its sum over every result, summed over
//!   the three nodes: exactly, because the nodes serve only this load, every node counts a
//!   transfer before its reply leaves, and no request may time out or lose its connection (a
//!   transfer decided but whose reply was lost would be counted by the node alone);
//! - the report's own check agrees: its first and last reads of the nodes saw the same
//!   transfers, and as many API requests as the client completed (reads included);
//! - requests add up: the intervals' requests sum to the total, every replied request is in
//!   the latency histograms (their counts sum to the replies), and no request failed;
//! - the intervals cover the run: contiguous from 0, each ending at its boundary (within
//!   0.75 s: the tally is taken when the boundary's timer fires), the last one at the
//!   duration or after it (it waits for the requests in flight), the ramp's level in each as
//!   scheduled;
//! - the server side is there: CPU, memory and every shard's indexes of every node in every
//!   interval, applied indexes never going back;
//! - report.csv has a row per interval with the header's width, report.html the six plots as
//!   inline SVG and nothing fetched from elsewhere; `loadtest compare` plots both runs.

use aurigraph_client::bench::load::leaders_settled;
use aurigraph_client::loadtest::csv::COLUMNS;
use aurigraph_client::loadtest::scrape::{parse_metrics, Scrape};
use aurigraph_client::loadtest::Report;
use aurigraph_testkit::cluster::Cluster;
use aurigraph_testkit::{aurigraph_bin, aurigraph_ok};
use aurigraph_wire::genesis::Genesis;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const VALIDATORS: usize = 3;
const ACCOUNTS: &str = "200";

/// Every node's metrics, read by the test.
fn scrape(cluster: &Cluster) -> Vec<Scrape> {
    (0..cluster.len())
        .map(|i| {
            let r = cluster
                .request(i, "GET", "/metrics", None, Duration::from_secs(5))
                .unwrap_or_else(|e| cluster.fail(&format!("node {i}: GET /metrics: {e}")));
            assert_eq!(r.status, 200);
            parse_metrics(&String::from_utf8_lossy(&r.body))
        })
        .collect()
}

/// (OK transfers, transfers of any result) the nodes counted from `before` to `after`.
fn counted(before: &[Scrape], after: &[Scrape]) -> (u64, u64) {
    let ok = |s: &Scrape| s.transactions.get("OK").copied().unwrap_or(0);
    let all = |s: &Scrape| s.transactions.values().sum::<u64>();
    before.iter().zip(after).fold((0, 0), |(o, a), (b, e)| {
        (o + ok(e) - ok(b), a + all(e) - all(b))
    })
}

/// Runs `aurigraph loadtest ARGS`; the test fails with its output unless it succeeds.
fn loadtest(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(aurigraph_bin())
        .arg("loadtest")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        cluster.fail(&format!("aurigraph loadtest {args:?} failed:\n{text}"));
    }
    text
}

fn read_report(dir: &Path) -> Report {
    Report::from_json(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Until every shard is led by its preferred validator (a hand-over during the run would fail
/// the requests in flight).
fn wait_settled(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leaders_settled(&cluster.status(0)) {
        if Instant::now() > deadline {
            cluster.fail("the shards' leadership did not settle on the preferred validators");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The figures every run's report must satisfy: intervals, sums, server side, the check.
fn check_report(r: &Report, intervals: usize, every: f64, duration: f64) {
    assert_eq!(r.intervals.len(), intervals, "{:#?}", r.totals);
    assert_eq!(r.intervals[0].start_seconds, 0.0);
    for (k, i) in r.intervals.iter().enumerate() {
        if k > 0 {
            assert_eq!(
                i.start_seconds,
                r.intervals[k - 1].end_seconds,
                "contiguous"
            );
        }
        let boundary = every * (k + 1) as f64;
        if k + 1 < intervals {
            assert!(
                i.end_seconds >= boundary && i.end_seconds < boundary + 0.75,
                "interval {k} ends at {} (boundary {boundary})",
                i.end_seconds
            );
        } else {
            assert!(
                i.end_seconds >= duration,
                "the last interval ends at {}",
                i.end_seconds
            );
        }
        assert_eq!(i.server.nodes.len(), VALIDATORS);
        for n in &i.server.nodes {
            assert_eq!(n.error, None, "{}", n.url);
            let cpu = n.cpu_cores.expect("CPU of every node");
            assert!((0.0..=8.0).contains(&cpu), "{cpu}");
            assert!(n.rss_bytes.expect("memory of every node") > 1 << 20);
            assert_eq!(n.shards.len(), 2, "both shards' indexes");
            for s in &n.shards {
                assert!(s.applied_index <= s.commit_index, "{s:?}");
            }
        }
        if k > 0 {
            let before = &r.intervals[k - 1].server.nodes;
            for (b, a) in before.iter().zip(&i.server.nodes) {
                for (sb, sa) in b.shards.iter().zip(&a.shards) {
                    assert!(sa.applied_index >= sb.applied_index, "{sb:?} -> {sa:?}");
                }
            }
        }
    }
    let t = &r.totals;
    let sum = |f: fn(&aurigraph_client::loadtest::report::Interval) -> u64| -> u64 {
        r.intervals.iter().map(f).sum()
    };
    assert_eq!(sum(|i| i.requests), t.requests);
    assert_eq!(sum(|i| i.replied), t.replied);
    assert_eq!(sum(|i| i.transfers_ok), t.transfers_ok);
    assert_eq!(
        sum(|i| i.latency.count),
        t.replied,
        "every reply in a histogram"
    );
    assert_eq!(t.latency.count, t.replied);
    assert!(t.errors.is_empty(), "no request failed: {:?}", t.errors);
    assert_eq!((t.replied, t.ok_requests), (t.requests, t.requests));
    assert!(t.requests > 0);
    assert_eq!(
        sum(|i| i.server.transactions_ok()),
        r.check.node_transfers_ok,
        "the intervals' server figures add up to the run's"
    );
    assert!(r.check.complete && r.check.agree, "{:?}", r.check);
    assert_eq!(r.stopped_early, None);
}

/// report.csv and report.html of the run in `dir`.
fn check_files(dir: &Path, r: &Report) {
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + r.intervals.len());
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&header[..COLUMNS.len()], COLUMNS);
    let requests = header.iter().position(|c| *c == "requests").unwrap();
    for (line, i) in lines[1..].iter().zip(&r.intervals) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        assert_eq!(cells[requests], i.requests.to_string());
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6, "six plots");
    for external in [
        "<script",
        "<link",
        "<img",
        "src=",
        "url(",
        "@import",
        "@font-face",
    ] {
        assert!(!html.contains(external), "report.html contains {external}");
    }
    assert!(html.contains(">agree<"));
}

#[test]
fn a_ramp_against_three_validators_agrees_with_their_counters() {
    let dir = tempfile::tempdir().unwrap();
    let genesis_path = dir.path().join("genesis.json");
    let genesis_arg = genesis_path.display().to_string();
    aurigraph_ok(&[
        "loadtest",
        "--print-genesis",
        &genesis_arg,
        "--accounts",
        ACCOUNTS,
        "--shards",
        "2",
    ]);
    let genesis = Genesis::from_json(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
    let cluster_dir = dir.path().join("cluster");
    std::fs::create_dir_all(&cluster_dir).unwrap();
    let cluster = Cluster::start(&cluster_dir, VALIDATORS, &genesis);
    wait_settled(&cluster);
    let urls = cluster.urls(&[0, 1, 2]);

    // Transfers: concurrency 1 -> 6.
    let out = dir.path().join("ramp");
    let out_arg = out.display().to_string();
    let before = scrape(&cluster);
    let started = Instant::now();
    let printed = loadtest(
        &cluster,
        &[
            "--addresses",
            &urls,
            "--accounts",
            ACCOUNTS,
            "--batch-size",
            "10",
            "--start-concurrency",
            "1",
            "--end-concurrency",
            "6",
            "--step",
            "1",
            "--step-interval",
            "3s",
            "--report-interval",
            "2s",
            "--duration",
            "18s",
            "--out",
            &out_arg,
        ],
    );
    let took = started.elapsed();
    let after = scrape(&cluster);
    let r = read_report(&out);
    check_report(&r, 9, 2.0, 18.0);
    let levels: Vec<u64> = r.intervals.iter().map(|i| i.level).collect();
    assert_eq!(
        levels,
        [1, 2, 2, 3, 4, 4, 5, 6, 6],
        "the level at each interval's end"
    );
    let (ok, all) = counted(&before, &after);
    assert_eq!(
        ok, r.totals.transfers_ok,
        "OK transfers: the nodes' counters vs the report"
    );
    assert_eq!(all, r.totals.transfers, "transfers of any result");
    assert_eq!(r.totals.transfers, 10 * r.totals.requests, "batches of 10");
    assert!(printed.contains(": agree"), "{printed}");
    assert!(took < Duration::from_secs(60), "the run took {took:?}");
    check_files(&out, &r);
    eprintln!(
        "ramp: {} requests, {} OK transfers ({:.0}/s), p99 {} us, nodes counted {ok}, took {took:?}",
        r.totals.requests, r.totals.transfers_ok, r.totals.transfers_per_second, r.totals.latency.p99_us
    );

    // Reads: 2 -> 3 requests in flight for 4 s; the nodes counted every one of them.
    let reads = dir.path().join("reads");
    let reads_arg = reads.display().to_string();
    let before = scrape(&cluster);
    loadtest(
        &cluster,
        &[
            "--addresses",
            &urls,
            "--accounts",
            ACCOUNTS,
            "--target",
            "reads",
            "--start-concurrency",
            "2",
            "--end-concurrency",
            "3",
            "--step-interval",
            "2s",
            "--report-interval",
            "2s",
            "--duration",
            "4s",
            "--out",
            &reads_arg,
        ],
    );
    let after = scrape(&cluster);
    let rr = read_report(&reads);
    check_report(&rr, 2, 2.0, 4.0);
    assert_eq!(counted(&before, &after), (0, 0), "reads make no transfer");
    assert_eq!(rr.check.node_api_requests, rr.totals.requests);
    assert_eq!(rr.totals.transfers, 0);
    check_files(&reads, &rr);

    // The two runs compared.
    let cmp = dir.path().join("cmp");
    aurigraph_ok(&[
        "loadtest".as_ref(),
        "compare".as_ref(),
        out.join("report.json").as_os_str(),
        reads.join("report.json").as_os_str(),
        "--out".as_ref(),
        cmp.as_os_str(),
    ]);
    let html = std::fs::read_to_string(cmp.join("compare.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6);
}

#[test]
fn bad_arguments_are_refused_with_the_flag_named() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--start-concurrency", "0"],
            "--start-concurrency must be between 1 and 4096",
        ),
        (
            &["--end-concurrency", "5000"],
            "--end-concurrency must be between 1 and 4096",
        ),
        (
            &["--report-interval", "10ms"],
            "--report-interval must be at least 100 ms",
        ),
        (
            &["--duration", "1s"],
            "--duration (1.000 s) must be at least --report-interval",
        ),
        (&["--duration", "30d"], "unknown unit"),
        (&["--time-factor", "0"], "--time-factor must be between"),
        (
            &["--start-rate", "5", "--start-concurrency", "2"],
            "exclude each other",
        ),
        (
            &["--batch-size", "0"],
            "--batch-size must be between 1 and 1000",
        ),
        (
            &["--path", "api/v11/health"],
            "--path must start with one /",
        ),
        (&["--preset", "v12"], "unknown preset"),
        (
            &["--max-in-flight", "4"],
            "--max-in-flight goes with --start-rate",
        ),
        (
            &["--report-interval", "100ms", "--duration", "2h"],
            "intervals; at most 10000",
        ),
    ];
    for (args, message) in cases {
        let out = Command::new(aurigraph_bin())
            .arg("loadtest")
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let out = Command::new(aurigraph_bin())
        .args([
            "loadtest",
            "compare",
            "/nonexistent/a.json",
            "/nonexistent/b.json",
        ])
        .args(["--out", "/nonexistent/out"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/a.json"));
}

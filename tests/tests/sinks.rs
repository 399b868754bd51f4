//! The downstream sinks fed by a node (`archive_url`, `redis_url`), against a real PostgreSQL
//! and a real Redis started by the test: every committed transfer lands exactly once in the
//! archive and in the stream, and the balances equal the ledger's, across a SIGKILL of the
//! node and its restart (the replayed entries are resent and add nothing), a 20-second outage
//! of PostgreSQL under load and a stop and restart of Redis (the node goes on acknowledging;
//! each sink catches up when its server returns). A sink attached to a node whose early
//! entries are only in a snapshot reports the gap.

use aurigraph_testkit::http::http_request;
use aurigraph_testkit::postgres::PgServer;
use aurigraph_testkit::redis::RedisServer;
use aurigraph_testkit::*;
use aurigraph_wire::record::{address_of, Address, Record};
use std::time::{Duration, Instant};

fn send(node: &Node, records: &[Record]) {
    for r in records {
        let reply = node.post_json("/api/v11/transactions", &transfer_json(r));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["result"], "OK");
    }
}

/// Rows per transfer hash of `records` in the archive, polled until each has one (or 60 s).
fn wait_archived(server: &PgServer, records: &[Record]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        match ::postgres::Client::connect(&server.url(), ::postgres::NoTls) {
            Ok(mut client) => {
                let total: i64 = client
                    .query_one("SELECT count(*) FROM transfers", &[])
                    .map(|r| r.get(0))
                    .unwrap_or(-1);
                let mut missing = 0;
                for r in records {
                    let n: i64 = client
                        .query_one(
                            "SELECT count(*) FROM transfers WHERE tx_hash = $1 AND result = 'OK'",
                            &[&&r.tx_hash().0[..]],
                        )
                        .map(|row| row.get(0))
                        .unwrap_or(0);
                    assert!(n <= 1, "transfer archived {n} times");
                    missing += (n == 0) as usize;
                }
                if missing == 0 && total == records.len() as i64 {
                    return;
                }
                last = format!("{total} rows, {missing} of {} missing", records.len());
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("archive did not catch up: {last}");
}

/// Polls until the Redis stream holds each of `records` exactly once and nothing else (or 60 s).
fn wait_streamed(redis: &RedisServer, records: &[Record]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let want: std::collections::BTreeSet<String> =
        records.iter().map(|r| hex::encode(r.tx_hash().0)).collect();
    while Instant::now() < deadline {
        match stream_hashes(redis) {
            Ok(hashes) => {
                let unique: std::collections::BTreeSet<String> = hashes.iter().cloned().collect();
                assert_eq!(unique.len(), hashes.len(), "a transfer streamed twice");
                if unique == want {
                    return;
                }
                last = format!("{} of {} streamed", unique.len(), want.len());
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the Redis stream did not catch up: {last}");
}

/// The txHash of every entry of the stream, in order.
fn stream_hashes(redis: &RedisServer) -> ::redis::RedisResult<Vec<String>> {
    let mut connection = ::redis::Client::open(redis.url())?.get_connection()?;
    let reply: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
        .arg("aurigraph:transfers")
        .arg("-")
        .arg("+")
        .query(&mut connection)?;
    Ok(reply
        .ids
        .iter()
        .map(|id| id.get::<String>("txHash").expect("a txHash field"))
        .collect())
}

/// The balance of asset 0 of each of `keys` in the archive's `balances` and in the Redis
/// hashes equals the node's, once every sink has caught up with every shard (a resync writes
/// the balances of the state at its index; entries before that index may still be on their
/// way, and the cache takes them as they come).
fn assert_balances_as_the_ledger(
    node: &Node,
    server: &PgServer,
    redis: &RedisServer,
    keys: &[ed25519_dalek::SigningKey],
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
        let lags: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with("aurigraph_sink_lag_entries{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if !lags.is_empty() && lags.iter().all(|&l| l == 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sinks did not catch up: {lags:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut archive = ::postgres::Client::connect(&server.url(), ::postgres::NoTls).unwrap();
    let mut cache = ::redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    for key in keys {
        let address = address_of(key);
        let ledger = ledger_balance(node, &address);
        let archived: String = archive
            .query_one(
                "SELECT balance::TEXT FROM balances WHERE address = $1 AND asset = 0",
                &[&&address.0[..]],
            )
            .unwrap()
            .get(0);
        assert_eq!(archived.parse::<u64>().unwrap(), ledger, "archive balance");
        let cached: u64 = ::redis::cmd("HGET")
            .arg(format!("aurigraph:balance:{}", hex::encode(address.0)))
            .arg(0)
            .query(&mut cache)
            .unwrap();
        assert_eq!(cached, ledger, "Redis balance");
    }
}

/// The node's balance of asset 0 of `address`.
fn ledger_balance(node: &Node, address: &Address) -> u64 {
    let reply = node.get(&format!("/api/v11/accounts/{}", hex::encode(address.0)));
    assert_eq!(reply.status, 200);
    reply.json()["balances"]["0"]
        .as_str()
        .map_or(0, |b| b.parse().unwrap())
}

#[test]
fn every_committed_transfer_lands_once_across_a_node_kill_and_both_servers_away() {
    let server = PgServer::start();
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(8);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "archive_url = {:?}\nredis_url = {:?}\n",
            server.url(),
            redis.url()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let port = free_port();
    let mut node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys, 2)),
        port,
        &["--config", &config_arg],
    );
    let mut nonce = [0u64; 8];
    let mut batch = |n: usize| -> Vec<Record> {
        (0..n)
            .map(|i| {
                let k = i % 4;
                nonce[k] += 1;
                transfer(&keys[k], address_of(&keys[4 + (i % 4)]), 1, nonce[k])
            })
            .collect()
    };
    let mut sent = batch(40);
    send(&node, &sent);
    wait_archived(&server, &sent);
    wait_streamed(&redis, &sent);

    // SIGKILL mid-load: a client submits one transfer after another and the node is killed
    // after 40 acknowledgements, with entries being applied, tapped and written. The restarted
    // node replays its log and the sinks resend; each acknowledged transfer lands once, and so
    // does each in-flight one that the ledger committed (and no other).
    let in_flight = batch(400);
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let (records, acknowledged) = (in_flight.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            for r in &records {
                let body = transfer_json(r).to_string().into_bytes();
                let headers = [("Content-Type", "application/json")];
                match http_request(port, "POST", "/api/v11/transactions", Some(body), &headers) {
                    Ok(reply) if reply.status == 200 => {
                        assert_eq!(reply.json()["result"], "OK");
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => return,
                }
            }
        })
    };
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 40 {
        std::thread::sleep(Duration::from_millis(1));
    }
    node.kill9();
    sender.join().unwrap();
    let acked = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        acked < in_flight.len(),
        "the node was killed after the load"
    );
    let node = Node::start_with_args(dir.path(), None, port, &["--config", &config_arg]);
    for (i, r) in in_flight.iter().enumerate() {
        let path = format!("/api/v11/transactions/{}", hex::encode(r.tx_hash().0));
        let committed = node.get(&path).status == 200;
        assert!(committed || i >= acked, "acknowledged transfer {i} lost");
        if committed {
            sent.push(*r);
        }
    }
    let more = batch(20);
    send(&node, &more);
    sent.extend(more);
    wait_archived(&server, &sent);
    wait_streamed(&redis, &sent);

    // Redis away for 5 s under load, then back: the stream catches up, each transfer once.
    redis.stop();
    for _ in 0..20 {
        let one = batch(1);
        send(&node, &one);
        sent.extend(one);
        std::thread::sleep(Duration::from_millis(250));
    }
    let health = node.get("/api/v11/health").json();
    let redis_check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sink:redis")
        .cloned();
    assert_eq!(
        redis_check.as_ref().map(|c| c["status"].clone()),
        Some("DEGRADED".into()),
        "{health}"
    );
    redis.start_again();
    wait_streamed(&redis, &sent);

    // PostgreSQL away for 20 s under load: the node acknowledges all the same (one transfer
    // every 250 ms), and the sink catches up once it is back.
    server.crash();
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(20) {
        let one = batch(1);
        send(&node, &one);
        sent.extend(one);
        std::thread::sleep(Duration::from_millis(250));
    }
    server.start_again();
    wait_archived(&server, &sent);
    wait_streamed(&redis, &sent);

    // Balances: the archive's and the cache's equal the ledger's.
    assert_balances_as_the_ledger(&node, &server, &redis, &keys);

    // The node's figures of its archive: every shard caught up (its position follows the log
    // past entries without transfers too), and the outage seen as errors.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
        let value = |line_start: &str| -> Vec<f64> {
            metrics
                .lines()
                .filter(|l| l.starts_with(line_start))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect()
        };
        let lags = value("aurigraph_sink_lag_entries{");
        let archived = value("aurigraph_sink_archived_index{");
        let errors = value("aurigraph_sink_errors_total{");
        if lags.len() == 4 && lags.iter().all(|&l| l == 0.0) {
            assert!(archived.iter().all(|&a| a > 0.0), "{metrics}");
            assert!(
                errors.iter().all(|&e| e > 0.0),
                "the outage was not seen: {metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the archive's lag did not reach 0: {lags:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sink_attached_to_a_node_whose_early_entries_are_only_in_a_snapshot_reports_the_gap() {
    let redis = RedisServer::start();
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(3);
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "snapshot_interval_entries = 4\n").unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let port = free_port();
    let mut node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys, 2)),
        port,
        &["--config", &config_arg],
    );
    // Only these transfers touch keys[2]: its balance reaches the sinks by the resync alone.
    let early: Vec<Record> = (1..=20)
        .map(|n| transfer(&keys[0], address_of(&keys[2]), 1, n))
        .collect();
    send(&node, &early);
    node.terminate();

    // Restarted with a sink: what the snapshot covers was never handed to it.
    std::fs::write(
        &config,
        format!(
            "snapshot_interval_entries = 4\nredis_url = {:?}\narchive_url = {:?}\n",
            redis.url(),
            server.url()
        ),
    )
    .unwrap();
    let node = Node::start_with_args(dir.path(), None, port, &["--config", &config_arg]);
    let later = [transfer(&keys[0], address_of(&keys[1]), 1, 21)];
    send(&node, &later);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = node.get("/api/v11/health").json();
        let check = health["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "sink:redis")
            .cloned()
            .expect("a check of the Redis sink");
        let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
        let gaps = metrics
            .lines()
            .find(|l| l.starts_with("aurigraph_sink_gaps_total{sink=\"redis\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if gaps >= 1.0 {
            assert_eq!(check["status"], "DEGRADED", "{health}");
            let reason = check["data"]["reason"].as_str().unwrap();
            assert!(reason.contains("missed log indexes 2..="), "{reason}");
            // The node itself is healthy: a sink never makes it DOWN.
            assert_eq!(health["status"], "UP");
            break;
        }
        assert!(Instant::now() < deadline, "no gap reported: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // What came after the snapshot gets there; what only the snapshot holds does not.
    let later_hash = hex::encode(later[0].tx_hash().0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let streamed = loop {
        let streamed = stream_hashes(&redis).unwrap();
        if streamed.contains(&later_hash) {
            break streamed;
        }
        assert!(
            Instant::now() < deadline,
            "the later transfer never streamed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        streamed.len() < early.len() + 1,
        "{} streamed",
        streamed.len()
    );

    // Both sinks wrote the balances again from the shards' state: they equal the ledger's,
    // though most of the transfers that set them never reached the sinks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = node.get("/api/v11/health").json();
        let resynced = ["sink:postgres", "sink:redis"].iter().all(|name| {
            health["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == *name)
                .and_then(|c| c["data"]["reason"].as_str())
                .is_some_and(|r| r.contains("balances written again from the state"))
        });
        if resynced {
            break;
        }
        assert!(Instant::now() < deadline, "no resync reported: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_balances_as_the_ledger(&node, &server, &redis, &keys);
}

/// A node with the Redis sink whose server is away from the start (snapshots due every 4
/// entries, `sink_retain_bytes_max` as given) takes 40 transfers and is killed; Redis comes
/// back and the node restarts. Returns the node, what it sent, and the metrics text once the
/// stream holds what the sink could still write.
fn crash_while_redis_is_away(
    retain: &str,
) -> (tempfile::TempDir, Node, RedisServer, Vec<Record>, String) {
    let mut redis = RedisServer::start();
    redis.stop();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let keys = keys(3);
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "snapshot_interval_entries = 4\n{retain}\nredis_url = {:?}\n",
            redis.url()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let port = free_port();
    let mut node = Node::start_with_args(
        &dir,
        Some(&genesis(&keys, 2)),
        port,
        &["--config", &config_arg],
    );
    let sent: Vec<Record> = (1..=40)
        .map(|n| transfer(&keys[(n % 2) as usize], address_of(&keys[2]), 1, n / 2 + 1))
        .collect();
    send(&node, &sent);
    let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
    node.kill9();
    redis.start_again();
    let node = Node::start_with_args(&dir, None, port, &["--config", &config_arg]);
    (tmp, node, redis, sent, metrics)
}

fn metric_sum(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_log_keeps_what_a_sink_has_not_written_so_a_crash_while_its_server_is_away_loses_nothing() {
    // The default bound (256 MiB): every snapshot waits for the sink, the log keeps it all.
    let (_dir, node, redis, sent, before_kill) = crash_while_redis_is_away("");
    assert_eq!(
        metric_sum(&before_kill, "aurigraph_sink_snapshots_ahead_total{"),
        0.0,
        "{before_kill}"
    );
    wait_streamed(&redis, &sent);
    let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
    assert_eq!(
        metric_sum(&metrics, "aurigraph_sink_gaps_total{sink=\"redis\"}"),
        0.0,
        "{metrics}"
    );

    // No wait (a bound of 0): the snapshots are saved past the sink, counted, and the crash
    // leaves it a gap, reported.
    let (_dir, node, _redis, _, before_kill) =
        crash_while_redis_is_away("sink_retain_bytes_max = 0");
    assert!(
        metric_sum(&before_kill, "aurigraph_sink_snapshots_ahead_total{") > 0.0,
        "{before_kill}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
        if metric_sum(&metrics, "aurigraph_sink_gaps_total{sink=\"redis\"}") > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no gap reported: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

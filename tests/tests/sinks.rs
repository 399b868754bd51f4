//! The PostgreSQL archive fed by a node (`archive_url`), against a real PostgreSQL started by
//! the test: every committed transfer lands exactly once, across a SIGKILL of the node and
//! its restart (the replayed entries are resent and add nothing) and across a 20-second
//! outage of PostgreSQL under load (the node goes on acknowledging; the sink catches up when
//! it returns).

use aurigraph_testkit::postgres::PgServer;
use aurigraph_testkit::*;
use aurigraph_wire::record::{address_of, Record};
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

#[test]
fn every_committed_transfer_lands_once_across_a_node_kill_and_a_database_outage() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(8);
    let config = dir.path().join("node.toml");
    std::fs::write(&config, format!("archive_url = {:?}\n", server.url())).unwrap();
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

    // SIGKILL and restart: the node replays its log and the sink resends; nothing doubles.
    node.kill9();
    let node = Node::start_with_args(dir.path(), None, port, &["--config", &config_arg]);
    let more = batch(20);
    send(&node, &more);
    sent.extend(more);
    wait_archived(&server, &sent);

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
        if lags.len() == 2 && lags.iter().all(|&l| l == 0.0) {
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

//! Reads of the PostgreSQL archive through the API, with real processes: a node with
//! `archive_url` (and a recent window of 4 transfers per shard, so that transfers really leave
//! it) against a PostgreSQL started by the test.
//!
//! - `GET /api/v11/transactions/{txHash}` answers a transfer that left the recent window from
//!   the archive: the answer the submission got, plus `"source": "archive"`.
//! - `GET /api/v11/accounts/{address}/transactions` pages an account's transfers newest first
//!   (block, shard, position descending), every one once, whatever the page size.
//! - Bad input is 400 in the error format; a node without an archive answers 404 `NO_ARCHIVE`.
//! - PostgreSQL stopped: reads are 503 `ARCHIVE_UNAVAILABLE` at once, the node goes on
//!   accepting transfers, and reads come back with PostgreSQL.

use aurigraph_testkit::postgres::PgServer;
use aurigraph_testkit::*;
use aurigraph_wire::record::{address_of, Address, Record};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Transfers each shard remembers in the node of these tests.
const RECENT_WINDOW: usize = 4;

fn history(node: &Node, address: &str, query: &str) -> Response {
    node.get(&format!("/api/v11/accounts/{address}/transactions{query}"))
}

/// Every page of `address`'s history with `limit` per page (checking each page's shape).
fn walk(node: &Node, address: &str, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut query = format!("?limit={limit}");
    loop {
        let reply = history(node, address, &query);
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let page = reply.json();
        assert_eq!(page["address"], address);
        let transfers = page["transactions"].as_array().unwrap().clone();
        assert!(transfers.len() <= limit);
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(transfers.len(), limit, "a page with a next one is full");
                all.extend(transfers);
                query = format!("?limit={limit}&before={next}");
            }
            None => {
                assert!(page["next"].is_null());
                all.extend(transfers);
                return all;
            }
        }
    }
}

/// The position of a history item: (block, shard, position).
fn place(item: &Value) -> (u64, u64, u64) {
    (
        item["blockNumber"].as_u64().unwrap(),
        item["shard"].as_u64().unwrap(),
        item["position"].as_u64().unwrap(),
    )
}

/// Polls `address`'s history until it lists `count` transfers (or 60 s).
fn wait_listed(node: &Node, address: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = history(node, address, "?limit=500");
        let listed = (reply.status == 200)
            .then(|| reply.json()["transactions"].as_array().map(Vec::len))
            .flatten();
        if listed == Some(count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the archive did not list {count} transfers: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn archived_transfers_are_read_back_past_the_recent_window_and_paged_by_account() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(6);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "archive_url = {:?}\nrecent_transactions_per_shard = {RECENT_WINDOW}\n",
            server.url()
        ),
    )
    .unwrap();
    let node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys, 2)),
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    let focal = address_of(&keys[0]);
    let focal_hex = focal.to_hex();

    // 30 transfers of the focal account (10 sent, 20 received from two senders), 6 that do
    // not concern it; sent one after the other, so each shard's log holds them in this order.
    let mut nonces = [0u64; 6];
    let mut next = |from: usize, to: Address, amount: u64| -> Record {
        nonces[from] += 1;
        transfer(&keys[from], to, amount, nonces[from])
    };
    let mut records = Vec::new();
    for i in 0..36u64 {
        let r = match i % 6 {
            0 | 3 => next(0, address_of(&keys[3 + (i as usize / 6) % 3]), 100 + i),
            1 | 4 => next(1, focal, 200 + i),
            2 => next(2, focal, 300 + i),
            _ => next(4, address_of(&keys[5]), 400 + i),
        };
        records.push(r);
    }
    let replies: Vec<Value> = records.iter().map(|r| node.submit_ok(r)).collect();
    for reply in &replies {
        assert_eq!(reply["result"], "OK", "{reply}");
    }
    let mine: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].from() == focal || records[i].to() == focal)
        .collect();
    assert_eq!(mine.len(), 30);
    wait_listed(&node, &focal_hex, mine.len());

    // The first transfers left their shard's recent window (4 per shard): the archive
    // answers, with what the submission answered and where it came from.
    for (i, reply) in replies.iter().enumerate().take(6) {
        let hash = reply["txHash"].as_str().unwrap();
        let answer = node.get(&format!("/api/v11/transactions/{hash}"));
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let mut expected = reply.clone();
        expected["source"] = "archive".into();
        assert_eq!(answer.json(), expected, "transfer {i}");
    }
    // The last one is still in the window: answered from it, as ever (no source).
    let last = replies.last().unwrap();
    let answer = node
        .get(&format!(
            "/api/v11/transactions/{}",
            last["txHash"].as_str().unwrap()
        ))
        .json();
    assert_eq!(&answer, last);
    // A hash neither holds: 404 as ever.
    node.get(&format!("/api/v11/transactions/{}", "5a".repeat(32)))
        .assert_error(404, "TRANSACTION_NOT_FOUND");

    // The focal account's history: every transfer once, newest first, whatever the page size.
    let one_page = walk(&node, &focal_hex, 500);
    assert_eq!(one_page.len(), mine.len());
    let places: Vec<_> = one_page.iter().map(place).collect();
    assert!(
        places.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {places:?}"
    );
    for limit in [1, 4, 7] {
        assert_eq!(walk(&node, &focal_hex, limit), one_page, "limit {limit}");
    }
    // Each listed transfer is one of the account's, as sent and as decided.
    let by_hash: BTreeMap<String, usize> = mine
        .iter()
        .map(|&i| (records[i].tx_hash().to_string(), i))
        .collect();
    let listed: BTreeSet<&str> = one_page
        .iter()
        .map(|t| t["txHash"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), mine.len(), "a transfer listed twice");
    for item in &one_page {
        let i = by_hash[item["txHash"].as_str().unwrap()];
        let r = &records[i];
        assert_eq!(item["fromAddress"], r.from().to_hex());
        assert_eq!(item["toAddress"], r.to().to_hex());
        assert_eq!(item["amount"], r.amount().to_string());
        assert_eq!(item["nonce"], r.nonce().to_string());
        assert_eq!(item["asset"], 0);
        for field in ["result", "status", "shard", "blockNumber"] {
            assert_eq!(item[field], replies[i][field], "{field}");
        }
    }
    // Within a shard, newest first is the reverse of the order the log took them in.
    for shard in 0..2u64 {
        let listed: Vec<usize> = one_page
            .iter()
            .filter(|t| t["shard"] == shard)
            .map(|t| by_hash[t["txHash"].as_str().unwrap()])
            .collect();
        let mut sent: Vec<usize> = mine
            .iter()
            .copied()
            .filter(|&i| replies[i]["shard"] == shard)
            .collect();
        sent.reverse();
        assert_eq!(listed, sent, "shard {shard}");
    }

    // Bad input: 400 in the error format.
    for query in [
        "?limit=0",
        "?limit=501",
        "?limit=x",
        "?before=abc",
        "?before=1.2",
    ] {
        history(&node, &focal_hex, query).assert_error(400, "INVALID_REQUEST");
    }
    history(&node, "0xnothex", "").assert_error(400, "INVALID_ADDRESS");
    node.get("/api/v11/transactions/123")
        .assert_error(400, "INVALID_TX_HASH");

    // PostgreSQL stops: reads are 503 at once, and the node goes on accepting transfers.
    server.crash();
    let old = replies[0]["txHash"].as_str().unwrap();
    let mut slowest = Duration::ZERO;
    let mut during = Vec::new();
    for round in 0..3 {
        for path in [
            format!("/api/v11/transactions/{old}"),
            format!("/api/v11/accounts/{focal_hex}/transactions?limit=5"),
        ] {
            let started = Instant::now();
            let reply = node.get(&path);
            let took = started.elapsed();
            slowest = slowest.max(took);
            reply.assert_error(503, "ARCHIVE_UNAVAILABLE");
            assert!(
                reply
                    .headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "1"),
                "{:?}",
                reply.headers
            );
            assert!(took < Duration::from_secs(2), "{path}: {took:?}");
        }
        let r = next(1, focal, 500 + round);
        let reply = node.submit_ok(&r);
        assert_eq!(reply["result"], "OK");
        during.push(r);
    }
    println!("ARCHIVE_READS: slowest 503 with PostgreSQL stopped: {slowest:?}");
    let metrics = String::from_utf8(node.get("/metrics").body).unwrap();
    let unavailable: f64 = metrics
        .lines()
        .find(|l| l.starts_with("aurigraph_archive_reads_total{outcome=\"unavailable\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no archive reads counted:\n{metrics}"));
    assert!(unavailable >= 6.0, "{unavailable}");

    // PostgreSQL back: the reads answer again, and the transfers of the outage are listed.
    server.start_again();
    wait_listed(&node, &focal_hex, mine.len() + during.len());
    // Newest first within the shard they went to (the other shard's blocks may be higher).
    let shard = replies[1]["shard"].clone();
    let newest: Vec<Value> = walk(&node, &focal_hex, 2)
        .into_iter()
        .filter(|t| t["shard"] == shard)
        .take(during.len())
        .map(|t| t["txHash"].clone())
        .collect();
    let expected: Vec<Value> = during
        .iter()
        .rev()
        .map(|r| r.tx_hash().to_string().into())
        .collect();
    assert_eq!(newest, expected);
    let answer = node.get(&format!("/api/v11/transactions/{old}"));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["source"], "archive");
}

#[test]
fn a_node_without_an_archive_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let address = address_of(&keys[0]).to_hex();
    let r = transfer(&keys[0], address_of(&keys[1]), 5, 1);
    node.submit_ok(&r);
    history(&node, &address, "").assert_error(404, "NO_ARCHIVE");
    history(&node, &address, "?limit=10&before=5.0.1").assert_error(404, "NO_ARCHIVE");
    // Input is checked first.
    history(&node, &address, "?limit=0").assert_error(400, "INVALID_REQUEST");
    // A transfer in the recent window is answered from it; an unknown one is 404.
    let answer = node
        .get(&format!("/api/v11/transactions/{}", r.tx_hash()))
        .json();
    assert_eq!(answer["result"], "OK");
    assert!(answer.get("source").is_none(), "{answer}");
    node.get(&format!("/api/v11/transactions/{}", "5a".repeat(32)))
        .assert_error(404, "TRANSACTION_NOT_FOUND");
}

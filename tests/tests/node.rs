//! End-to-end tests of the real `aurigraph` binary on loopback.

use aurigraph_testkit::*;
use aurigraph_wire::batch::encode_batch;
use aurigraph_wire::record::{address_of, Address, Record, Transfer};
use aurigraph_wire::shard::shard_of;
use std::time::{Duration, Instant};

const BATCH: &str = BATCH_MEDIA_TYPE;

fn post_batch(node: &Node, records: &[Record]) -> Response {
    node.request(
        "POST",
        "/api/v11/transactions/batch",
        Some(encode_batch(records)),
        &[("Content-Type", BATCH)],
    )
}

fn balance(node: &Node, a: Address) -> u64 {
    let v = node
        .get(&format!("/api/v11/accounts/{}", a.to_hex()))
        .json();
    v["balances"]["0"]
        .as_str()
        .map_or(0, |s| s.parse().unwrap())
}

fn settle(node: &Node, expect: &[(Address, u64)]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<u64> = expect.iter().map(|&(a, _)| balance(node, a)).collect();
        if got.iter().zip(expect).all(|(g, e)| *g == e.1) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "balances {got:?}, expected {expect:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn health_transfers_over_json_and_binary_and_balances() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));

    let health = node.get("/api/v11/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "UP");
    assert_eq!(node.get("/q/health/live").status, 200);
    assert_eq!(node.get("/q/health/ready").status, 200);
    let info = node.get("/api/v11/info").json();
    assert_eq!(info["chainId"], 7);
    assert_eq!(info["shards"], 2);

    let (a, b, c) = (&keys[0], address_of(&keys[1]), address_of(&keys[2]));
    let r = transfer(a, b, 100, 1);
    let reply = node.post_json("/api/v11/transactions", &transfer_json(&r));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let v = reply.json();
    assert_eq!(v["status"], "CONFIRMED");
    assert_eq!(v["result"], "OK");
    assert_eq!(v["txHash"], r.tx_hash().to_hex());
    assert_eq!(v["shard"], shard_of(&address_of(a), 2));
    assert!(v["blockNumber"].as_u64().unwrap() > 0);

    let looked_up = node.get(&format!("/api/v11/transactions/{}", r.tx_hash().to_hex()));
    assert_eq!(looked_up.status, 200);
    assert_eq!(looked_up.json()["result"], "OK");
    node.get(&format!("/api/v11/transactions/{}", "00".repeat(32)))
        .assert_error(404, "TRANSACTION_NOT_FOUND");

    let records = vec![
        transfer(a, c, 5, 2),
        transfer(&keys[3], b, 7, 1),
        transfer(a, b, 1, 3),
    ];
    let reply = post_batch(&node, &records);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    for (res, rec) in results.iter().zip(&records) {
        assert_eq!(res["result"], "OK");
        assert_eq!(res["txHash"], rec.tx_hash().to_hex());
    }
    // JSON batch too.
    let json_batch = serde_json::json!({"transactions": [transfer_json(&transfer(a, c, 2, 4))]});
    let reply = node.post_json("/api/v11/transactions/batch", &json_batch);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["results"][0]["result"], "OK");

    settle(
        &node,
        &[
            (address_of(a), FUNDS - 100 - 5 - 1 - 2),
            (b, FUNDS + 100 + 7 + 1),
            (c, FUNDS + 5 + 2),
            (address_of(&keys[3]), FUNDS - 7),
        ],
    );
    let account = node
        .get(&format!("/api/v11/accounts/{}", address_of(a).to_hex()))
        .json();
    assert_eq!(account["nonce"], "4");

    let blocks = node.get("/api/v11/blocks/latest");
    assert_eq!(blocks.status, 200);
    let openapi = node.get("/api/v11/openapi.json").json();
    for path in [
        "/api/v11/transactions",
        "/api/v11/transactions/batch",
        "/api/v11/accounts/{address}",
        "/api/v11/health",
    ] {
        assert!(openapi["paths"][path].is_object(), "openapi lacks {path}");
    }
}

#[test]
fn every_result_code_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(3);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let (a, b) = (&keys[0], address_of(&keys[1]));
    let send = |r: &Record| -> String {
        let v = node
            .post_json("/api/v11/transactions", &transfer_json(r))
            .json();
        v["result"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string()
    };
    assert_eq!(send(&transfer(a, b, 1, 100)), "OK");
    assert_eq!(send(&transfer(a, b, 1, 100)), "NONCE_REPLAYED");
    assert_eq!(send(&transfer(a, b, 1, 10)), "NONCE_TOO_OLD");
    assert_eq!(send(&transfer(a, b, FUNDS * 2, 101)), "INSUFFICIENT_FUNDS");
    assert_eq!(send(&transfer(a, b, 0, 102)), "ZERO_AMOUNT");
    assert_eq!(send(&transfer(a, address_of(a), 1, 103)), "SELF_TRANSFER");
    let unknown_asset = Transfer {
        chain_id: CHAIN,
        from: address_of(a),
        to: b,
        asset: 9,
        amount: 1,
        nonce: 104,
    }
    .sign(a);
    assert_eq!(send(&unknown_asset), "UNKNOWN_ASSET");
    let wrong_chain = Transfer {
        chain_id: 8,
        from: address_of(a),
        to: b,
        asset: 0,
        amount: 1,
        nonce: 105,
    }
    .sign(a);
    assert_eq!(send(&wrong_chain), "WRONG_CHAIN");
    let mut bad_sig = transfer(a, b, 1, 106);
    bad_sig.0[120] ^= 0x10;
    assert_eq!(send(&bad_sig), "BAD_SIGNATURE");
    let v = node
        .post_json("/api/v11/transactions", &transfer_json(&bad_sig))
        .json();
    assert_eq!(v["status"], "REJECTED");
    // A record without the domain tag can only arrive in a binary batch.
    let mut untagged = transfer(a, b, 1, 107);
    untagged.0[0] = b'X';
    let reply = post_batch(&node, &[untagged]);
    assert_eq!(reply.json()["results"][0]["result"], "MALFORMED");
}

#[test]
fn bad_input_gets_clear_4xx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let good = transfer_json(&transfer(&keys[0], address_of(&keys[1]), 1, 1));
    let json = [("Content-Type", "application/json")];
    let post =
        |path: &str, body: &str| node.request("POST", path, Some(body.as_bytes().to_vec()), &json);

    post("/api/v11/transactions", "{not json").assert_error(400, "MALFORMED_JSON");
    let mut wrong_type = good.clone();
    wrong_type["amount"] = serde_json::json!([1]);
    post("/api/v11/transactions", &wrong_type.to_string()).assert_error(400, "INVALID_REQUEST");
    let mut unknown = good.clone();
    unknown["bogus"] = serde_json::json!(1);
    post("/api/v11/transactions", &unknown.to_string()).assert_error(400, "INVALID_REQUEST");
    let mut bad_hex = good.clone();
    bad_hex["toAddress"] = serde_json::json!("zz");
    let r = post("/api/v11/transactions", &bad_hex.to_string());
    assert_eq!(r.status, 400);
    let mut bad_sig = good.clone();
    bad_sig["signature"] = serde_json::json!("abcd");
    assert_eq!(
        post("/api/v11/transactions", &bad_sig.to_string()).status,
        400
    );

    let huge = vec![b' '; 17 << 20];
    let r = node.request("POST", "/api/v11/transactions", Some(huge), &json);
    r.assert_error(413, "PAYLOAD_TOO_LARGE");

    let too_many: Vec<serde_json::Value> = (0..65_537).map(|_| serde_json::json!({})).collect();
    let body = serde_json::json!({ "transactions": too_many }).to_string();
    let r = post("/api/v11/transactions/batch", &body);
    assert!(r.status == 413 || r.status == 400, "{}", r.status);

    let r = node.request(
        "POST",
        "/api/v11/transactions/batch",
        Some(vec![1, 2, 3]),
        &[("Content-Type", BATCH)],
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("batch"));

    node.get("/api/v11/nope").assert_error(404, "NOT_FOUND");
    node.request("DELETE", "/api/v11/transactions", None, &[])
        .assert_error(405, "METHOD_NOT_ALLOWED");
    node.get("/api/v11/accounts/xyz")
        .assert_error(400, "INVALID_ADDRESS");

    // The node is still healthy and nothing was lost.
    assert_eq!(node.get("/api/v11/health").status, 200);
    let ok = post("/api/v11/transactions", &good.to_string());
    assert_eq!(ok.json()["result"], "OK");
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(8);
    let g = genesis(&keys, 2);
    let mut node = Node::start(dir.path(), Some(&g));
    let port = node.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = Address([0x5a; 32]);
    let mut workers = Vec::new();
    for (w, key) in keys.iter().cloned().enumerate() {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut acked: Vec<Record> = Vec::new();
            let mut nonce = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<Record> = (0..50)
                    .map(|_| {
                        nonce += 1;
                        transfer(&key, sink, 1 + w as u64, nonce)
                    })
                    .collect();
                let Ok(r) = http_request(
                    port,
                    "POST",
                    "/api/v11/transactions/batch",
                    Some(encode_batch(&batch)),
                    &[("Content-Type", BATCH)],
                ) else {
                    break;
                };
                if r.status != 200 {
                    break;
                }
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) else {
                    break;
                };
                for (res, rec) in v["results"].as_array().unwrap().iter().zip(&batch) {
                    if res["result"] == "OK" {
                        acked.push(*rec);
                    }
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<Record> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acked.len() >= 50, "load ran: {} acknowledged", acked.len());

    let node = Node::start_on(dir.path(), None, free_port());
    // Each worker's batches were sequential and each lands in one log entry, so the transfers
    // applied for a sender are exactly nonces 1..=H (H its highest accepted nonce): all its
    // acknowledged transfers were applied iff H >= the highest acknowledged nonce, and its
    // balance says the same count.
    let mut highs = std::collections::HashMap::new();
    for (w, key) in keys.iter().enumerate() {
        let account = node
            .get(&format!("/api/v11/accounts/{}", address_of(key).to_hex()))
            .json();
        let high: u64 = account["nonce"].as_str().unwrap().parse().unwrap();
        let acked_max = acked
            .iter()
            .filter(|r| r.from() == address_of(key))
            .map(|r| r.nonce())
            .max()
            .unwrap_or(0);
        assert!(
            high >= acked_max,
            "sender {w}: acknowledged up to nonce {acked_max}, only {high} survived"
        );
        assert_eq!(
            FUNDS - balance(&node, address_of(key)),
            high * (1 + w as u64),
            "sender {w}"
        );
        highs.insert(address_of(key), high);
    }
    // Acknowledged transfers still inside their sender's nonce window, resubmitted, are replays.
    let newest: Vec<Record> = acked
        .iter()
        .filter(|r| r.nonce() + 64 > highs[&r.from()])
        .copied()
        .collect();
    let v = post_batch(&node, &newest).json();
    for res in v["results"].as_array().unwrap() {
        assert_eq!(
            res["result"], "NONCE_REPLAYED",
            "an acknowledged transfer was lost"
        );
    }
    // Supply is conserved.
    let mut total: u128 = balance(&node, sink) as u128;
    for k in &keys {
        total += balance(&node, address_of(k)) as u128;
    }
    assert_eq!(total, FUNDS as u128 * keys.len() as u128);
}

#[test]
fn sigterm_drains_and_exits_zero_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let mut node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let r = transfer(&keys[0], address_of(&keys[1]), 42, 1);
    assert_eq!(
        node.post_json("/api/v11/transactions", &transfer_json(&r))
            .json()["result"],
        "OK"
    );
    assert_eq!(node.terminate(), Some(0), "{}", node.log_text());
    let node = Node::start_on(dir.path(), None, free_port());
    settle(&node, &[(address_of(&keys[1]), FUNDS + 42)]);
    assert_eq!(
        node.post_json("/api/v11/transactions", &transfer_json(&r))
            .json()["result"],
        "NONCE_REPLAYED"
    );
}

#[test]
fn a_different_genesis_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let mut node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    node.terminate();
    let mut other = genesis(&keys, 2);
    other.chain_id = 99;
    let path = dir.path().join("other.json");
    std::fs::write(&path, other.to_canonical_json(2)).unwrap();
    let out = std::process::Command::new(aurigraph_bin())
        .args(["node", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--genesis")
        .arg(&path)
        .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{}", ports::pick_ports(1)),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("differs"), "{stderr}");
}

#[test]
fn development_chain_keygen_and_transfer_cli() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), None);
    let dev_key = node.data_dir.join("dev-key.json");
    assert!(dev_key.exists(), "dev key written");
    assert!(
        node.log_text().contains("dev-key.json"),
        "log names the key"
    );

    let bin = &aurigraph_bin();
    let out_key = dir.path().join("alice.json");
    let out = std::process::Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&out_key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let alice = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(alice.len(), 64);
    // keygen refuses to overwrite.
    let again = std::process::Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&out_key)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let url = format!("http://127.0.0.1:{}", node.port);
    let key = dev_key.display().to_string();
    aurigraph_ok(&[
        "transfer", "--key", &key, "--to", &alice, "--amount", "25", "--node", &url,
    ]);
    settle(&node, &[(Address::from_hex(&alice).unwrap(), 25)]);

    // Bad CLI input: non-zero exit and a message on stderr.
    let out = std::process::Command::new(bin)
        .args(["transfer", "--key"])
        .arg(&dev_key)
        .args(["--to", "xyz", "--amount", "1", "--node", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}

#[test]
fn a_stalled_start_exits_70_and_names_the_core() {
    // A start-up timeout of 0 ms makes every start count as stalled: the node stops at once
    // with the runtime watchdog's status (a supervisor restarts it) and says which core.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let status = std::process::Command::new(aurigraph_bin())
        .args(["node", "--cores", "1", "--http-addr"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--grpc-addr")
        .arg(format!("127.0.0.1:{}", ports::pick_ports(1)))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("AURIGRAPH_STARTUP_STALL_TIMEOUT_MS", "0")
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(70), "{text}");
    assert!(text.contains("executor 0 did not recover"), "{text}");
    assert!(!text.contains("starting the process over"), "{text}");
}

/// The exit status of a node whose storage failed while it ran (`EX_IOERR` of sysexits.h;
/// `aurigraph_storage::FAIL_STOP_EXIT_CODE`, `docs/operations.md`).
const STORAGE_FAILURE_EXIT_CODE: i32 = 74;

/// A size-limited tmpfs mounted for one test, unmounted (lazily) when dropped.
struct TmpfsMount(std::path::PathBuf);

impl TmpfsMount {
    /// Mounts a tmpfs of `size_bytes` on `at` (created). Panics when it cannot: the test that
    /// needs it must not pass without the failing disk it is about.
    fn new(at: &std::path::Path, size_bytes: u64) -> TmpfsMount {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}")])
            .arg("tmpfs")
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8): {e}"));
        assert!(
            out.status.success(),
            "THIS TEST NEEDS TO MOUNT A TMPFS (root with CAP_SYS_ADMIN) and could not: mount -t \
             tmpfs on {} failed ({}): {}",
            at.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        TmpfsMount(at.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_storage_failure_stops_the_process_with_its_exit_code_file_and_offset() {
    // The data directory is a small tmpfs; once the node runs, a filler file takes every byte
    // left, so the next group commit's write fails (ENOSPC). The node must not carry on with
    // the shard stopped: it logs the failure (file and byte offset) and exits with the storage
    // failure code, for its supervisor to restart it and recovery to decide. (tmpfs takes
    // O_DIRECT since Linux 6.6, so the WAL's DMA files run as on a disk; on older kernels glommio
    // falls back to buffered I/O and the write still fails with ENOSPC.)
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let data = dir.path().join("data");
    let _mount = TmpfsMount::new(&data, 16 << 20);
    let mut node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let r = transfer(&keys[0], address_of(&keys[1]), 5, 1);
    assert_eq!(
        node.post_json("/api/v11/transactions", &transfer_json(&r))
            .json()["result"],
        "OK"
    );

    let mut filler = std::fs::File::create(data.join("filler")).unwrap();
    let chunk = vec![0xA5u8; 64 << 10];
    loop {
        match std::io::Write::write(&mut filler, &chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    drop(filler);

    // Its reply may never come (the process is expected to die): submit from another thread.
    let port = node.port;
    let r = transfer(&keys[0], address_of(&keys[1]), 5, 2);
    std::thread::spawn(move || {
        let body = transfer_json(&r).to_string().into_bytes();
        let _ = http_request(
            port,
            "POST",
            "/api/v11/transactions",
            Some(body),
            &[("Content-Type", "application/json")],
        );
    });

    let child = node.child.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node still runs 30 s after its storage failed:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    node.child = None;
    let log = node.log_text();
    assert_eq!(status.code(), Some(STORAGE_FAILURE_EXIT_CODE), "{log}");
    let line = log
        .lines()
        .find(|line| line.contains("storage failure"))
        .unwrap_or_else(|| panic!("no storage failure logged:\n{log}"));
    assert!(
        line.contains(".wal") && line.contains("byte offset"),
        "{line}"
    );
    eprintln!("logged: {line}");
}

#[test]
fn gateway_mode_moves_custodial_accounts_with_a_token_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(3);
    let mut g = genesis(&keys, 2);
    g.controllers
        .insert(address_of(&keys[0]), "acme".to_string());
    let bin = &aurigraph_bin();
    let tokens = dir.path().join("tokens.json");
    let token_new = |name: &str| {
        std::process::Command::new(bin)
            .args(["token", "new", "--name", name, "--file"])
            .arg(&tokens)
            .output()
            .unwrap()
    };
    let out = token_new("acme");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    assert!(!std::fs::read_to_string(&tokens).unwrap().contains(&token));
    // A bad name: non-zero exit, a message, the file unchanged.
    let out = token_new("no spaces");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gateway name"));

    let node = Node::start_with_args(
        dir.path(),
        Some(&g),
        free_port(),
        &["--tokens", tokens.to_str().unwrap()],
    );
    let unsigned = |from: &ed25519_dalek::SigningKey, nonce: u64| {
        Transfer {
            chain_id: 7,
            from: address_of(from),
            to: address_of(&keys[2]),
            asset: 0,
            amount: 5,
            nonce,
        }
        .with_signature(&[0; 64])
    };
    let post = |records: &[Record], authorization: Option<&str>| {
        let body = encode_batch(records);
        let mut headers = vec![("Content-Type", BATCH)];
        let bearer;
        if let Some(value) = authorization {
            bearer = value.to_string();
            headers.push(("Authorization", bearer.as_str()));
        }
        node.request(
            "POST",
            "/api/v11/gateway/transactions/batch",
            Some(body),
            &headers,
        )
    };
    post(&[unsigned(&keys[0], 1)], None).assert_error(401, "UNAUTHORIZED");
    post(&[unsigned(&keys[0], 1)], Some("Bearer 00")).assert_error(401, "UNAUTHORIZED");
    let good = format!("Bearer {token}");
    let reply = post(&[unsigned(&keys[0], 1), unsigned(&keys[1], 1)], Some(&good));
    assert_eq!(reply.status, 200);
    let results = reply.json()["results"].clone();
    assert_eq!(results[0]["result"], "OK", "{results}");
    assert_eq!(
        results[1]["result"], "BAD_SIGNATURE",
        "not acme's account: {results}"
    );
    // The public endpoint does not take the custodial account's transfer unsigned.
    let public = post_batch(&node, &[unsigned(&keys[0], 2)]);
    assert_eq!(public.json()["results"][0]["result"], "BAD_SIGNATURE");
    settle(&node, &[(address_of(&keys[2]), FUNDS + 5)]);
}

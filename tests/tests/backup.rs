//! `aurigraph backup`: a backup of a validator under load, verified, restored into a fresh
//! data directory; the restored node has every shard at the backup's position with the same
//! state hash, and every transfer acknowledged before the backup started.

use aurigraph_testkit::*;
use aurigraph_wire::record::{address_of, Record};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// `aurigraph ARGS`: exit status and stderr.
fn aurigraph(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(aurigraph_bin())
        .args(args)
        .output()
        .expect("run aurigraph");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_backup_taken_under_load_verifies_and_restores_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(8);
    let tokens = dir.path().join("tokens.json");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, new_token(&tokens, "admin", "ops")).unwrap();
    let tokens_arg = tokens.to_str().unwrap().to_string();
    let source_dir = dir.path().join("source");
    std::fs::create_dir_all(&source_dir).unwrap();
    let mut node = Node::start_with_args(
        &source_dir,
        Some(&genesis(&keys, 2)),
        free_port(),
        &["--tokens", &tokens_arg],
    );
    let url = format!("http://127.0.0.1:{}", node.port);
    let backup_dir = dir.path().join("backup");
    let (token_arg, backup_arg) = (
        token_file.to_str().unwrap().to_string(),
        backup_dir.to_str().unwrap().to_string(),
    );

    // Four senders, one transfer at a time each, all through the backup.
    let stop = AtomicBool::new(false);
    let acked: Mutex<Vec<Record>> = Mutex::new(Vec::new());
    let before_backup: Vec<Record> = std::thread::scope(|s| {
        for k in 0..4 {
            let (stop, acked, keys, node) = (&stop, &acked, &keys, &node);
            s.spawn(move || {
                let mut nonce = 0;
                while !stop.load(Ordering::SeqCst) {
                    nonce += 1;
                    let r = transfer(&keys[k], address_of(&keys[4 + k]), 1, nonce);
                    node.submit_ok(&r);
                    acked.lock().unwrap().push(r);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let before = acked.lock().unwrap().clone();
        let (code, stderr) = aurigraph(&[
            "backup",
            "create",
            "--node",
            &url,
            "--token-file",
            &token_arg,
            "--out",
            &backup_arg,
        ]);
        assert_eq!(code, Some(0), "{stderr}");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        before
    });
    assert!(
        before_backup.len() >= 10,
        "load ran: {}",
        before_backup.len()
    );
    assert!(
        acked.lock().unwrap().len() > before_backup.len(),
        "load went on during the backup"
    );
    assert_eq!(node.terminate(), Some(0));

    // Without a token: refused. Verify passes; a damaged copy does not.
    let (code, _) = aurigraph(&["backup", "verify", &backup_arg]);
    assert_eq!(code, Some(0));
    let damaged = dir.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for entry in std::fs::read_dir(&backup_dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, damaged.join(path.file_name().unwrap())).unwrap();
    }
    let snap = damaged.join("shard-0001.snap");
    let mut bytes = std::fs::read(&snap).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&snap, bytes).unwrap();
    let (code, stderr) = aurigraph(&["backup", "verify", damaged.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("shard-0001.snap: SHA-256"), "{stderr}");

    // Restore, and start a node on it.
    let restored = dir.path().join("restored");
    let data = restored.join("data");
    // The second time, the data directory is there: refused.
    for expected in [Some(0), Some(1)] {
        let (code, stderr) = aurigraph(&[
            "backup",
            "restore",
            &backup_arg,
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert_eq!(code, expected, "{stderr}");
        assert!(
            expected == Some(0) || stderr.contains("not empty"),
            "{stderr}"
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    let restored_node = Node::start_with_args(&restored, None, free_port(), &[]);
    // Each shard recovered exactly the backup's state (the node's log says so before it goes
    // on: a restarted single validator appends a leader's empty entry at once).
    let log = strip_ansi(&restored_node.log_text());
    let status = restored_node.get("/api/v11/consensus/status").json();
    for shard in manifest["shards"].as_array().unwrap() {
        let fields = [
            format!("shard={} ", shard["shard"]),
            format!("applied={} ", shard["index"]),
            format!("state_hash={}", shard["stateHash"].as_str().unwrap()),
        ];
        assert!(
            log.lines()
                .any(|l| l.contains("shard recovered")
                    && fields.iter().all(|f| l.contains(f.as_str()))),
            "no shard recovered with {fields:?} in:\n{log}"
        );
        let s = status["shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["shard"] == shard["shard"])
            .unwrap();
        assert!(
            s["appliedIndex"].as_u64() >= shard["index"].as_u64(),
            "{s} vs {shard}"
        );
    }
    for r in &before_backup {
        let v = restored_node
            .get(&format!("/api/v11/transactions/{}", r.tx_hash().to_hex()))
            .json();
        assert_eq!(v["result"], "OK", "{v}");
    }
}

#[test]
fn a_backup_needs_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let gateway = dir.path().join("gateway.token");
    std::fs::write(&gateway, new_token(&tokens, "gateway", "acme")).unwrap();
    let node = Node::start_with_args(
        dir.path(),
        None,
        free_port(),
        &["--tokens", tokens.to_str().unwrap()],
    );
    let r = node.get("/api/v11/admin/backup");
    assert_eq!(r.status, 401);
    let out = dir.path().join("b");
    let (code, stderr) = aurigraph(&[
        "backup",
        "create",
        "--node",
        &format!("http://127.0.0.1:{}", node.port),
        "--token-file",
        gateway.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("403"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

/// A log file without the terminal colour codes around its fields.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

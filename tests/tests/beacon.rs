//! The node's randomness endpoints against a local HTTPS fake beacon (loopback, a certificate
//! made at test time and trusted through the node configuration's `tls_root`) serving the real
//! signed fixture pulses: verified randomness end to end, and fallback when sources lie or are
//! unreachable, with the node itself unharmed.

use aurigraph_beacon::fake::{self, FakeBeacon};
use aurigraph_testkit::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CURBY_534323: &str = "2e184d426ca97c0a751b7a3bef573527522c03247ab5d8e6cf61bd518285c7442b7b050e4c3a7298c4bf5fe5d265d3c31d89d907108bd8fd3c0e6b93f985e8fc";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../beacon/tests/fixtures/beacon")
}

/// Writes `root.pem` and `node.toml` with a CURBy-RNG source under `{base}/api` and a NIST
/// source under `{base}/nist`; returns the configuration path.
fn write_config(dir: &Path, beacon: &FakeBeacon) -> PathBuf {
    std::fs::write(dir.join("root.pem"), &beacon.root_pem).unwrap();
    let cert = fixtures().join("nist_cert_5501e3d7.pem");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[[beacon]]\nname = \"curby\"\nkind = \"CURBy-RNG\"\nbase_url = \"{base}/api\"\n\
             tls_root = \"root.pem\"\n\n\
             [[beacon]]\nname = \"nist\"\nkind = \"NIST\"\nbase_url = \"{base}/nist\"\n\
             certificate = \"{cert}\"\ntls_root = \"root.pem\"\n",
            base = beacon.base_url,
            cert = cert.display()
        ),
    )
    .unwrap();
    config
}

fn wait_until(node: &Node, what: &str, done: impl Fn(&serde_json::Value) -> bool, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = node.get(path).json();
        if done(&v) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `aurigraph beacon ARGS…`.
fn beacon_cli(args: &[std::ffi::OsString]) -> std::process::Output {
    std::process::Command::new(aurigraph_bin())
        .arg("beacon")
        .args(args)
        .output()
        .unwrap()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn node_serves_verified_randomness_from_the_fake_beacon() {
    let dir = tempfile::tempdir().unwrap();
    let beacon = FakeBeacon::start(fake::fixture_routes(&fixtures()).unwrap()).unwrap();
    let config = write_config(dir.path(), &beacon);
    let node = Node::start_with_args(
        dir.path(),
        None,
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    // The first poll verifies the latest pulse through its predecessor: UP within seconds,
    // not after a 60-s pulse period.
    wait_until(
        &node,
        "the beacon to verify",
        |v| v["status"] == "UP",
        "/api/v11/quantum/randomness/health",
    );

    for (path, field_len) in [
        ("/api/v11/quantum/randomness/random-bytes?size=48", 48),
        ("/api/v11/quantum/randomness/transaction-nonce", 0),
        ("/api/v11/quantum/randomness/crypto-seed?length=32", 32),
    ] {
        let r = node.get(path);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["source"], "CURBY_RNG", "{path}: {v}");
        assert_eq!(v["verified"], true, "{path}: {v}");
        assert_eq!(v["provenance"]["index"], 534323, "{path}: {v}");
        if field_len > 0 {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v["bytes"].as_str().unwrap())
                .unwrap();
            assert_eq!(bytes.len(), field_len, "{path}");
            // Derived with local entropy: never the public beacon value.
            assert!(!CURBY_534323.contains(&hex::encode(&bytes[..16])));
        }
    }
    let latest = node.get("/api/v11/quantum/randomness/pulse/latest").json();
    assert_eq!(latest["value"], CURBY_534323, "{latest}");
    assert_eq!(latest["verified"], true);
    // A third party re-verifies the served value from the documents pulse/latest returns.
    std::fs::write(dir.path().join("pulse.json"), latest["pulse"].to_string()).unwrap();
    std::fs::write(
        dir.path().join("previousPulse.json"),
        latest["previousPulse"].to_string(),
    )
    .unwrap();
    assert!(latest["verifyWith"]
        .as_str()
        .unwrap()
        .starts_with("aurigraph beacon verify-curby"));
    let out = beacon_cli(&[
        "verify-curby".into(),
        "--chain".into(),
        fixtures().join("curby_rng_chain.json").into(),
        "--pulse".into(),
        dir.path().join("pulse.json").into(),
        "--prev".into(),
        dir.path().join("previousPulse.json").into(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), CURBY_534323);
    let health = node.get("/api/v11/health").json();
    assert_eq!(health["status"], "UP");
    let check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "beacon")
        .unwrap();
    assert_eq!(check["status"], "UP", "{health}");

    let text = String::from_utf8(node.get("/metrics").body).unwrap();
    for (series, value) in [
        (
            "aurigraph_beacon_pulses_verified_total{source=\"curby\"}",
            1.0,
        ),
        (
            "aurigraph_beacon_pulses_verified_total{source=\"nist\"}",
            1.0,
        ),
        ("aurigraph_beacon_source_up{source=\"curby\"}", 1.0),
        ("aurigraph_beacon_source_up{source=\"nist\"}", 1.0),
        ("aurigraph_beacon_fallback_total", 0.0),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series}\n{text}");
    }
}

#[test]
fn lying_and_unreachable_beacons_fall_back_and_the_node_is_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    // A beacon whose latest CURBy pulse has a changed signed field and whose NIST pulse is not
    // JSON; the chain record is genuine.
    let genuine = fake::fixture_routes(&fixtures()).unwrap();
    let lying: fake::Routes = Arc::new(move |path: &str| {
        let body = genuine(path)?;
        if path.ends_with("/pulses/latest") {
            let text = String::from_utf8(body).unwrap();
            Some(
                text.replacen("\"index\":534323", "\"index\":534324", 1)
                    .into_bytes(),
            )
        } else if path == "/nist/pulse/last" {
            Some(b"<html>maintenance</html>".to_vec())
        } else {
            Some(body)
        }
    });
    let beacon = FakeBeacon::start(lying).unwrap();
    let config = write_config(dir.path(), &beacon);
    // And a third source on a closed port.
    let closed = free_port();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[beacon]]\nname = \"dead\"\nkind = \"CURBy-RNG\"\nbase_url = \"https://127.0.0.1:{closed}/api\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    let keys = keys(2);
    let g = genesis(&keys, 2);
    let node = Node::start_with_args(
        dir.path(),
        Some(&g),
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    wait_until(
        &node,
        "every source to report a failure",
        |v| {
            v["data"]["reasons"].as_array().is_some_and(|r| {
                r.len() == 3
                    && r.iter()
                        .all(|r| !r.as_str().unwrap_or("").contains("no verified pulse yet"))
            })
        },
        "/api/v11/quantum/randomness/health",
    );
    let health = node.get("/api/v11/quantum/randomness/health");
    assert_eq!(health.status, 503);
    let reasons = health.json()["data"]["reasons"].to_string();
    assert!(
        reasons.contains("curby: ") && reasons.contains("CURBy-RNG pulse rejected"),
        "{reasons}"
    );
    assert!(
        reasons.contains("nist: ") && reasons.contains("NIST pulse rejected"),
        "{reasons}"
    );
    assert!(reasons.contains("dead: "), "{reasons}");

    let v = node
        .get("/api/v11/quantum/randomness/random-bytes?size=16")
        .json();
    assert_eq!(
        (v["source"].as_str(), v["verified"].as_bool()),
        (Some("LOCAL_FALLBACK"), Some(false)),
        "{v}"
    );
    assert_eq!(
        node.get("/api/v11/quantum/randomness/pulse/latest").status,
        404
    );
    // The node still orders and applies transfers, and says it is UP with a degraded beacon.
    let health = node.get("/api/v11/health").json();
    assert_eq!(health["status"], "UP", "{health}");
    let t = transfer(&keys[0], aurigraph_wire::record::address_of(&keys[1]), 5, 1);
    let r = node.post_json("/api/v11/transactions", &transfer_json(&t));
    assert_eq!(
        r.json()["status"],
        "CONFIRMED",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let text = String::from_utf8(node.get("/metrics").body).unwrap();
    assert_eq!(
        metric(&text, "aurigraph_beacon_fallback_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "aurigraph_beacon_source_up{source=\"curby\"}"),
        Some(0.0)
    );
}

#[test]
fn beacon_cli_verifies_the_fixtures_and_rejects_a_swapped_pulse() {
    let f = |name: &str| fixtures().join(name).into_os_string();
    let out = beacon_cli(&[
        "verify-curby".into(),
        "--chain".into(),
        f("curby_rng_chain.json"),
        "--pulse".into(),
        f("curby_rng_pulse_534323.json"),
        "--prev".into(),
        f("curby_rng_pulse_534322.json"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), CURBY_534323);

    let out = beacon_cli(&[
        "verify-nist".into(),
        "--pulse".into(),
        f("nist_pulse_chain1_54609.json"),
        "--prev".into(),
        f("nist_pulse_chain1_54610.json"),
        "--cert".into(),
        f("nist_cert_5501e3d7.pem"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("does not follow"), "{stderr}");
}

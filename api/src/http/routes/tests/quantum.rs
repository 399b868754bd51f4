//! Randomness: the local fallback, parameters, a verified pulse, a failing source.

use super::*;

fn b64(v: &Value) -> Vec<u8> {
    BASE64
        .decode(v.as_str().expect("a string"))
        .expect("base64")
}

fn assert_fallback(v: &Value) {
    assert_eq!(v["source"], "LOCAL_FALLBACK", "{v}");
    assert_eq!(v["verified"], false, "{v}");
    assert!(v["provenance"].is_null(), "{v}");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
}

#[test]
fn randomness_random_bytes_fallback() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, "/api/v11/quantum/randomness/random-bytes");
    assert_eq!(status, StatusCode::OK);
    assert_fallback(&v);
    assert_eq!((v["size"].as_u64(), b64(&v["bytes"]).len()), (Some(32), 32));
    for size in [1usize, 17, 1024] {
        let (status, v) = get(
            &c,
            &format!("/api/v11/quantum/randomness/random-bytes?size={size}"),
        );
        assert_eq!(status, StatusCode::OK);
        assert_fallback(&v);
        assert_eq!(v["size"].as_u64(), Some(size as u64));
        assert_eq!(b64(&v["bytes"]).len(), size);
    }
    let (_, a) = get(&c, "/api/v11/quantum/randomness/random-bytes?size=64");
    let (_, b) = get(&c, "/api/v11/quantum/randomness/random-bytes?size=64");
    assert_ne!(a["bytes"], b["bytes"]);
}

#[test]
fn randomness_bad_parameters() {
    let c = ctx(Fake::default());
    for uri in [
        "/api/v11/quantum/randomness/random-bytes?size=0",
        "/api/v11/quantum/randomness/random-bytes?size=1025",
        "/api/v11/quantum/randomness/random-bytes?size=-1",
        "/api/v11/quantum/randomness/random-bytes?size=abc",
        "/api/v11/quantum/randomness/random-bytes?size=",
        "/api/v11/quantum/randomness/random-bytes?size=1.5",
        "/api/v11/quantum/randomness/random-bytes?size=99999999999999999999999",
        "/api/v11/quantum/randomness/crypto-seed?length=15",
        "/api/v11/quantum/randomness/crypto-seed?length=257",
        "/api/v11/quantum/randomness/crypto-seed?length=0",
        "/api/v11/quantum/randomness/crypto-seed?length=x",
        "/api/v11/quantum/randomness/crypto-seed?length",
    ] {
        let (status, v) = get(&c, uri);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(error_code(&v), "INVALID_REQUEST", "{uri}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(".."),
            "{uri}: {v}"
        );
    }
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/quantum/randomness/random-bytes",
            None,
            Bytes::new(),
        ),
    );
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&v), "METHOD_NOT_ALLOWED");
    let (status, _) = get(&c, "/api/v11/quantum/randomness/pulse/nope");
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn randomness_nonce_and_seed_fallback() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, "/api/v11/quantum/randomness/transaction-nonce");
    assert_eq!(status, StatusCode::OK);
    assert_fallback(&v);
    let nonce = hex::decode(v["nonce"].as_str().unwrap()).unwrap();
    assert_eq!((nonce.len(), v["size"].as_u64()), (32, Some(32)));

    let (status, v) = get(&c, "/api/v11/quantum/randomness/crypto-seed");
    assert_eq!(status, StatusCode::OK);
    assert_fallback(&v);
    assert_eq!(b64(&v["bytes"]).len(), 32);
    for length in [16usize, 100, 256] {
        let (status, v) = get(
            &c,
            &format!("/api/v11/quantum/randomness/crypto-seed?length={length}"),
        );
        assert_eq!(status, StatusCode::OK);
        assert_fallback(&v);
        assert_eq!(b64(&v["bytes"]).len(), length);
        assert_eq!(v["length"].as_u64(), Some(length as u64));
    }
}

#[test]
fn randomness_health_info_pulse_unconfigured() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, "/api/v11/quantum/randomness/health");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "UP");
    assert_eq!(v["data"]["configured"], false);
    assert_eq!(v["data"]["serving"], "LOCAL_FALLBACK");
    assert!(v["data"]["message"]
        .as_str()
        .unwrap()
        .contains("no beacon source configured"));

    let (status, v) = get(&c, "/api/v11/quantum/randomness/info");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["configured"], false);
    assert_eq!(v["sources"], json!([]));
    assert_eq!(v["fallback"], "LOCAL_FALLBACK");
    assert_eq!(v["construction"]["kdf"], "HKDF-SHA512");
    assert_eq!(v["construction"]["salt"], "aurigraph/beacon-derive/v1");
    assert_eq!(
        v["construction"]["info"]["crypto-seed"],
        "aurigraph/crypto-seed"
    );
    assert_eq!(v["limits"]["randomBytesSize"]["max"], 1024);

    let (status, v) = get(&c, "/api/v11/quantum/randomness/pulse/latest");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "NO_VERIFIED_PULSE");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no beacon source is configured"));

    let (status, v) = get(&c, "/api/v11/health");
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
    assert_eq!(v["checks"][1]["name"], "beacon");
    assert_eq!(v["checks"][1]["status"], "UP");
    assert_eq!(v["checks"][1]["data"]["configured"], false);
}

fn verified(source: aurigraph_beacon::Source, index: u64) -> aurigraph_beacon::VerifiedRandomness {
    aurigraph_beacon::VerifiedRandomness {
        value: [7; 64],
        provenance: aurigraph_beacon::Provenance {
            source,
            chain: "bafyrchain".into(),
            index,
            id: "bafyrpulse".into(),
            timestamp: "2024-05-01T12:00:00Z".into(),
        },
    }
}

#[test]
fn randomness_with_a_verified_pulse_and_a_failing_source() {
    use aurigraph_beacon::Source;
    let c = ctx(Fake::default());
    *c.settings.beacon.write().unwrap() =
        BeaconState::with_sources([("curby", Source::CurbyRng)]).unwrap();
    // Configured, nothing verified yet: fallback, beacon DOWN, node UP.
    let (_, v) = get(&c, "/api/v11/quantum/randomness/random-bytes?size=8");
    assert_fallback(&v);
    let (status, v) = get(&c, "/api/v11/quantum/randomness/health");
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("DOWN"))
    );
    let (status, v) = get(&c, "/api/v11/health");
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
    assert_eq!(v["checks"][1]["status"], "DOWN");
    assert_eq!(
        v["checks"][1]["data"]["reasons"][0],
        "curby: no verified pulse yet"
    );
    let (status, v) = get(&c, "/api/v11/quantum/randomness/pulse/latest");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "NO_VERIFIED_PULSE");

    c.settings
        .beacon
        .write()
        .unwrap()
        .record_verified("curby", verified(Source::CurbyRng, 42))
        .unwrap();
    for uri in [
        "/api/v11/quantum/randomness/random-bytes?size=8",
        "/api/v11/quantum/randomness/transaction-nonce",
        "/api/v11/quantum/randomness/crypto-seed?length=16",
    ] {
        let (status, v) = get(&c, uri);
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(
            (v["source"].as_str(), v["verified"].as_bool()),
            (Some("CURBY_RNG"), Some(true))
        );
        assert_eq!(v["provenance"]["index"], 42);
        assert_eq!(v["provenance"]["id"], "bafyrpulse");
        // Derived, never the public value itself.
        assert_ne!(v["bytes"], json!(BASE64.encode([7u8; 8])));
    }
    let (status, v) = get(&c, "/api/v11/quantum/randomness/pulse/latest");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["value"], hex::encode([7u8; 64]));
    assert_eq!(
        (v["verified"].as_bool(), v["public"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(v["provenance"]["chain"], "bafyrchain");
    let (_, v) = get(&c, "/api/v11/quantum/randomness/info");
    assert_eq!(v["sources"][0]["name"], "curby");
    assert_eq!(v["sources"][0]["verified"], true);
    let (status, v) = get(&c, "/api/v11/quantum/randomness/health");
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
    // One fallback answer so far (the first random-bytes), one verified pulse.
    let metrics = |c: &Ctx<Fake>| {
        let (_, _, body) = call(c, request("GET", "/metrics", None, Bytes::new()));
        String::from_utf8(body.to_vec()).unwrap()
    };
    let text = metrics(&c);
    for line in [
        "aurigraph_beacon_fallback_total 1\n",
        "aurigraph_beacon_pulses_verified_total{source=\"curby\"} 1\n",
        "aurigraph_beacon_source_up{source=\"curby\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }

    c.settings
        .beacon
        .write()
        .unwrap()
        .record_failure("curby", "signature does not verify")
        .unwrap();
    let (_, v) = get(&c, "/api/v11/quantum/randomness/crypto-seed");
    assert_fallback(&v);
    let text = metrics(&c);
    for line in [
        "aurigraph_beacon_fallback_total 2\n",
        "aurigraph_beacon_source_up{source=\"curby\"} 0\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    let (status, v) = get(&c, "/api/v11/health");
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
    assert_eq!(
        v["checks"][1]["data"]["reasons"][0],
        "curby: signature does not verify"
    );
}

//! The real beacon client against a local HTTPS fake beacon (rustls, a certificate made at
//! test time, trusted as an extra root) serving the fixture pulses. Nothing here leaves
//! 127.0.0.1.

use aurigraph_beacon::client::{state_for, BeaconClient, ClientOptions, Clock};
use aurigraph_beacon::derive::purpose;
use aurigraph_beacon::fake::{self, FakeBeacon, Routes};
use aurigraph_beacon::source::{BeaconSource, BreakerConfig, SourceKind, DEFAULT_CACHE_CAPACITY};
use aurigraph_beacon::state::{BeaconHealth, BeaconState, FALLBACK_SOURCE};
use aurigraph_beacon::twine::CURBY_RNG_CHAIN_CID;
use aurigraph_beacon::Source;
use rustls::pki_types::CertificateDer;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const CURBY_534323: &str = "2e184d426ca97c0a751b7a3bef573527522c03247ab5d8e6cf61bd518285c7442b7b050e4c3a7298c4bf5fe5d265d3c31d89d907108bd8fd3c0e6b93f985e8fc";

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/beacon")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// A clock that moves one pulse period (and a bit) per reading: every pass is due.
struct FastClock(AtomicU64);

impl Clock for FastClock {
    fn now_ms(&self) -> u64 {
        self.0.fetch_add(61_000, Ordering::SeqCst)
    }
}

/// A fake beacon serving `routes`; returns its base URL and the certificate to trust.
fn https_server(routes: Routes) -> (String, CertificateDer<'static>) {
    let fake = FakeBeacon::start(routes).unwrap();
    let out = (fake.base_url.clone(), fake.root_der.clone());
    // Tests end with the process; the server thread keeps serving until then.
    std::mem::forget(fake);
    out
}

/// Serves `files` in turn at a path (the last one repeatedly).
fn sequence(files: &[&str]) -> impl Fn() -> Vec<u8> + Send + Sync {
    fake::sequence(files.iter().map(|f| fixture(f)).collect())
}

fn curby(name: &str, base_url: String) -> BeaconSource {
    BeaconSource {
        name: name.into(),
        kind: SourceKind::CurbyRng,
        base_url,
        chain_cid: None,
        certificate: None,
        cache_capacity: DEFAULT_CACHE_CAPACITY,
        tls_root: None,
    }
}

fn options(extra_roots: Vec<CertificateDer<'static>>) -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        extra_roots,
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_base_ms: 1_000,
            open_max_ms: 2_000,
        },
        tick: Duration::from_millis(10),
        ..ClientOptions::default()
    }
}

fn start(
    sources: &[BeaconSource],
    options: ClientOptions,
) -> (BeaconClient, Arc<RwLock<BeaconState>>) {
    let state = Arc::new(RwLock::new(state_for(sources).unwrap()));
    let clock = Arc::new(FastClock(AtomicU64::new(0)));
    let client =
        BeaconClient::spawn_with_clock(sources, Arc::clone(&state), options, clock).unwrap();
    (client, state)
}

fn wait_for(state: &RwLock<BeaconState>, what: &str, done: impl Fn(&BeaconState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&state.read().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            state.read().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fake_https_beacon_yields_verified_randomness() {
    let chain = fixture("curby_rng_chain.json");
    let curby_latest = sequence(&["curby_rng_pulse_534322.json", "curby_rng_pulse_534323.json"]);
    let nist_last = sequence(&[
        "nist_pulse_chain1_54609.json",
        "nist_pulse_chain1_54610.json",
    ]);
    let chain_path = format!("/api/chains/{CURBY_RNG_CHAIN_CID}");
    let latest_path = format!("{chain_path}/pulses/latest");
    let (base, root) = https_server(Arc::new(move |path: &str| {
        if path == chain_path {
            Some(chain.clone())
        } else if path == latest_path {
            Some(curby_latest())
        } else if path == "/nist/pulse/last" {
            Some(nist_last())
        } else {
            None
        }
    }));
    let sources = [
        curby("curby", format!("{base}/api/")),
        BeaconSource {
            name: "nist".into(),
            kind: SourceKind::Nist,
            base_url: format!("{base}/nist"),
            certificate: Some(fixture_path("nist_cert_5501e3d7.pem")),
            ..curby("nist", String::new())
        },
    ];
    let (client, state) = start(&sources, options(vec![root]));
    wait_for(&state, "both sources verified", |s| {
        s.health() == BeaconHealth::Up
    });
    client.stop();

    let s = state.read().unwrap();
    let latest = s.latest().unwrap();
    assert_eq!(latest.provenance.source, Source::CurbyRng);
    assert_eq!(latest.provenance.index, 534323);
    assert_eq!(latest.hex(), CURBY_534323);
    let nist = s.sources()[1].latest.as_ref().unwrap();
    assert_eq!(
        (nist.provenance.source, nist.provenance.index),
        (Source::Nist, 54610)
    );
    let drawn = s.draw(purpose::CRYPTO_SEED, 32).unwrap();
    assert_eq!((drawn.source(), drawn.verified()), ("CURBY_RNG", true));
}

#[test]
fn unreachable_source_is_down_and_fallback_is_served() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sources = [curby("dead", format!("https://127.0.0.1:{port}/api"))];
    let (client, state) = start(&sources, options(Vec::new()));
    wait_for(&state, "a recorded failure", |s| {
        s.sources()[0].last_error.is_some()
    });
    let stopped = Instant::now();
    client.stop();
    assert!(stopped.elapsed() < Duration::from_secs(5));

    let s = state.read().unwrap();
    match s.health() {
        BeaconHealth::Down(reasons) => {
            assert_eq!(reasons.len(), 1);
            assert!(reasons[0].starts_with("dead: "), "{reasons:?}");
        }
        other => panic!("expected DOWN, got {other:?}"),
    }
    assert!(s.latest().is_none());
    let drawn = s.draw(purpose::RANDOM_BYTES, 32).unwrap();
    assert_eq!(drawn.bytes.len(), 32);
    assert_eq!((drawn.source(), drawn.verified()), (FALLBACK_SOURCE, false));
}

#[test]
fn untrusted_certificate_oversized_and_lying_responses_are_failures() {
    let chain = fixture("curby_rng_chain.json");
    // A signed field changed: the served CID no longer matches the content.
    let tampered = String::from_utf8(fixture("curby_rng_pulse_534323.json"))
        .unwrap()
        .replacen("\"index\":534323", "\"index\":534324", 1)
        .into_bytes();
    assert_ne!(tampered, fixture("curby_rng_pulse_534323.json"));
    let chain_path = format!("/big/chains/{CURBY_RNG_CHAIN_CID}");
    let lie_chain = format!("/lie/chains/{CURBY_RNG_CHAIN_CID}");
    let lie_latest = format!("{lie_chain}/pulses/latest");
    let (base, root) = https_server(Arc::new(move |path: &str| {
        if path == chain_path {
            Some(vec![b' '; 300 * 1024])
        } else if path == lie_chain {
            Some(chain.clone())
        } else if path == lie_latest {
            Some(tampered.clone())
        } else {
            None
        }
    }));
    // Not trusting the test certificate: TLS fails.
    let sources = [curby("untrusted", format!("{base}/lie"))];
    let (client, state) = start(&sources, options(Vec::new()));
    wait_for(&state, "a TLS failure", |s| {
        s.sources()[0].last_error.is_some()
    });
    client.stop();
    assert!(state.read().unwrap().latest().is_none());

    let sources = [
        curby("big", format!("{base}/big")),
        curby("lie", format!("{base}/lie")),
    ];
    let (client, state) = start(&sources, options(vec![root]));
    wait_for(&state, "both failures", |s| {
        s.sources().iter().all(|s| s.last_error.is_some())
    });
    client.stop();
    let s = state.read().unwrap();
    let big = s.sources()[0].last_error.as_deref().unwrap();
    assert!(big.contains("larger than"), "{big}");
    let lie = s.sources()[1].last_error.as_deref().unwrap();
    assert!(lie.contains("CURBy-RNG pulse rejected"), "{lie}");
    assert!(s.latest().is_none());
    assert_eq!(
        s.draw(purpose::RANDOM_BYTES, 8).unwrap().source(),
        FALLBACK_SOURCE
    );
}

#[test]
fn first_pulse_verifies_at_once_through_its_predecessor_with_a_configured_tls_root() {
    let fake = FakeBeacon::start(fake::fixture_routes(&fixture_path("")).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("aurigraph-beacon-root-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, &fake.root_pem).unwrap();
    let sources = [
        BeaconSource {
            tls_root: Some(root.clone()),
            ..curby("curby", format!("{}/api", fake.base_url))
        },
        BeaconSource {
            name: "nist".into(),
            kind: SourceKind::Nist,
            base_url: format!("{}/nist", fake.base_url),
            certificate: Some(fixture_path("nist_cert_5501e3d7.pem")),
            tls_root: Some(root),
            ..curby("nist", String::new())
        },
    ];
    // The real clock: without the predecessor fetch the first servable value would take a
    // whole pulse period (60 s); with it, both sources verify on their first poll.
    let state = Arc::new(RwLock::new(state_for(&sources).unwrap()));
    let opts = ClientOptions {
        extra_roots: Vec::new(),
        ..options(Vec::new())
    };
    let started = Instant::now();
    let client = BeaconClient::spawn(&sources, Arc::clone(&state), opts).unwrap();
    wait_for(&state, "both sources verified", |s| {
        s.health() == BeaconHealth::Up
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    client.stop();
    let s = state.read().unwrap();
    assert_eq!(s.latest().unwrap().hex(), CURBY_534323);
    assert_eq!(
        s.sources()[1].latest.as_ref().unwrap().provenance.index,
        54610
    );
    assert!(s.sources().iter().all(|s| s.pulses_verified == 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tls_root_that_is_not_a_certificate_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("aurigraph-beacon-badroot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("root.pem");
    std::fs::write(&root, "not a certificate").unwrap();
    let sources = [BeaconSource {
        tls_root: Some(root),
        ..curby("curby", "https://127.0.0.1:1/api".into())
    }];
    let state = Arc::new(RwLock::new(state_for(&sources).unwrap()));
    let err = BeaconClient::spawn(&sources, state, options(Vec::new())).unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_slow_beacon_times_out_and_a_wrong_predecessor_leaves_only_an_anchor() {
    let genuine = fake::fixture_routes(&fixture_path("")).unwrap();
    let routes: Routes = Arc::new(move |path: &str| {
        if path.starts_with("/slow/") {
            // Slower than the client's read timeout below.
            std::thread::sleep(Duration::from_secs(3));
            return genuine(&path.replacen("/slow/", "/api/", 1));
        }
        if path.starts_with("/oddprev/") && path.ends_with("/pulses/534322") {
            // The predecessor request answered with the latest pulse itself.
            return genuine(&format!("/api/chains/{CURBY_RNG_CHAIN_CID}/pulses/latest"));
        }
        genuine(&path.replacen("/oddprev/", "/api/", 1))
    });
    let fake = FakeBeacon::start(routes).unwrap();
    let sources = [
        curby("slow", format!("{}/slow", fake.base_url)),
        curby("oddprev", format!("{}/oddprev", fake.base_url)),
    ];
    let opts = ClientOptions {
        read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        ..options(vec![fake.root_der.clone()])
    };
    let state = Arc::new(RwLock::new(state_for(&sources).unwrap()));
    let client = BeaconClient::spawn(&sources, Arc::clone(&state), opts).unwrap();
    wait_for(&state, "both failures", |s| {
        s.sources().iter().all(|s| s.last_error.is_some())
    });
    client.stop();
    let s = state.read().unwrap();
    let slow = s.sources()[0].last_error.as_deref().unwrap();
    assert!(
        slow.contains("timed out") || slow.contains("imeout"),
        "{slow}"
    );
    let odd = s.sources()[1].last_error.as_deref().unwrap();
    assert!(odd.starts_with("pulse 534323: "), "{odd}");
    assert!(s.latest().is_none());
    assert_eq!(
        s.draw(purpose::RANDOM_BYTES, 8).unwrap().source(),
        FALLBACK_SOURCE
    );
}

//! The real beacon client against a local HTTPS fake beacon (rustls, a certificate made at
//! test time, trusted as an extra root) serving the fixture pulses. Nothing here leaves
//! 127.0.0.1.

use aurigraph_net::beacon::client::{state_for, BeaconClient, ClientOptions, Clock};
use aurigraph_net::beacon::derive::purpose;
use aurigraph_net::beacon::source::{
    BeaconSource, BreakerConfig, SourceKind, DEFAULT_CACHE_CAPACITY,
};
use aurigraph_net::beacon::state::{BeaconHealth, BeaconState, FALLBACK_SOURCE};
use aurigraph_net::beacon::twine::CURBY_RNG_CHAIN_CID;
use aurigraph_net::beacon::Source;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

type Routes = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// Starts an HTTPS server on 127.0.0.1 answering GETs by `routes`; returns its base URL
/// (`https://127.0.0.1:port`) and the certificate to trust.
fn https_server(routes: Routes) -> (String, CertificateDer<'static>) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, routes) = (Arc::clone(&config), Arc::clone(&routes));
            std::thread::spawn(move || serve(tcp, config, routes));
        }
    });
    (base, cert_der)
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, routes: Routes) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (status, body) = match routes(&path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(&body);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Serves `files` in turn at a path (the last one repeatedly).
fn sequence(files: &[&str]) -> impl Fn() -> Vec<u8> + Send + Sync {
    let bodies: Vec<Vec<u8>> = files.iter().map(|f| fixture(f)).collect();
    let next = AtomicUsize::new(0);
    move || {
        let i = next.fetch_add(1, Ordering::SeqCst).min(bodies.len() - 1);
        bodies[i].clone()
    }
}

fn curby(name: &str, base_url: String) -> BeaconSource {
    BeaconSource {
        name: name.into(),
        kind: SourceKind::CurbyRng,
        base_url,
        chain_cid: None,
        certificate: None,
        cache_capacity: DEFAULT_CACHE_CAPACITY,
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

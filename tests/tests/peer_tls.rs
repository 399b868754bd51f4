//! Mutual TLS between real validator processes: a cluster whose peer links need certificates of
//! its CA (made by `aurigraph certs --peer-ids`) refuses connections that would inject raft
//! traffic without one, and a validator whose certificate comes from another CA cannot join,
//! while the cluster goes on committing.

use aurigraph_client::launcher::{PeerTlsFiles, PEER_CERTS_DIR};
use aurigraph_net::transport::{encode_handshake, Handshake};
use aurigraph_testkit::cluster::{committed, shard_status, Cluster, CORES};
use aurigraph_testkit::*;
use aurigraph_wire::record::address_of;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDS: u32 = 2;

/// Sum over cores of a counter of node `i`'s /metrics.
fn metric(cluster: &Cluster, i: usize, name: &str) -> u64 {
    let reply = cluster
        .request(i, "GET", "/metrics", None, Duration::from_secs(5))
        .expect("metrics");
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The handshake frame validator 2 of this chain sends on core 0 (the chain tag as the engine
/// derives it from the genesis): exactly what an impostor would send.
fn handshake_of_node_2(g: &aurigraph_wire::genesis::Genesis) -> Vec<u8> {
    let digest = Sha256::digest(g.to_canonical_json(SHARDS).as_bytes());
    let chain = format!("aurigraph-{}-{}", g.chain_id, hex::encode(&digest[..12]));
    let mut frame = Vec::new();
    encode_handshake(
        &Handshake {
            chain_id: chain.into_bytes(),
            node_id: 2,
            core: 0,
            cores: CORES,
            shard_count: SHARDS,
        },
        &mut frame,
    )
    .unwrap();
    frame
}

/// Sends `bytes` over plain TCP to `port` and reads until the node closes: what came back.
fn plaintext_attempt(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// A TLS attempt to validator 1's peer port, trusting the cluster CA, presenting `client`
/// (certificate, key) or no certificate; sends `bytes` and reads until closed. Returns the
/// plaintext bytes the node answered with.
fn tls_attempt(port: u16, ca: &Path, client: Option<&PeerTlsFiles>, bytes: &[u8]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(&files.cert).unwrap()],
                PrivateKeyDer::from_pem_file(&files.key).unwrap(),
            )
            .unwrap(),
    };
    let name = ServerName::try_from("node-1.aurigraph").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let _ = tls.write_all(bytes).and_then(|()| tls.flush());
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = tls.read(&mut buf) {
        answer.extend_from_slice(&buf[..n]);
    }
    answer
}

fn applied(status: &serde_json::Value) -> u64 {
    (0..SHARDS)
        .filter_map(|s| shard_status(status, s)?["appliedIndex"].as_u64())
        .sum()
}

#[test]
fn without_the_cluster_certificate_nobody_injects_or_joins() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let g = genesis(&keys, SHARDS);
    let mut cluster = Cluster::start(dir.path(), 3, &g);
    let cluster_ca = dir.path().join(PEER_CERTS_DIR).join("ca.pem");
    let rogue_dir = dir.path().join("rogue-certs");
    // Another CA's certificates for node 2 (to impersonate it) and node 4 (to join as it).
    aurigraph_ok(&[
        "certs".as_ref(),
        "--dir".as_ref(),
        rogue_dir.as_os_str(),
        "--peer-ids".as_ref(),
        "2,4".as_ref(),
    ]);
    let receiver = address_of(&keys[3]);
    let mut nonce = 0;
    let mut commit_one = |cluster: &Cluster| {
        nonce += 1;
        let reply = cluster.submit(0, &transfer(&keys[0], receiver, 1, nonce));
        assert!(committed(&reply), "{reply}");
    };
    commit_one(&cluster);

    // 1. Injection into validator 1's peer port (core 0), claiming to be validator 2.
    let port = cluster.node(0).peer_port;
    let refused_before = metric(&cluster, 0, "aurigraph_peer_authentication_failures_total");
    let hello = handshake_of_node_2(&g);
    let plain = plaintext_attempt(port, &hello);
    assert!(
        plain.is_empty() || plain[0] == 21,
        "plaintext got more than a TLS alert: {plain:?}"
    );
    let no_cert = tls_attempt(port, &cluster_ca, None, &hello);
    assert!(no_cert.is_empty(), "answered without a client certificate");
    let rogue_2 = PeerTlsFiles::new(&rogue_dir, 2);
    let rogue = tls_attempt(port, &cluster_ca, Some(&rogue_2), &hello);
    assert!(rogue.is_empty(), "answered another CA's certificate");
    let refused = metric(&cluster, 0, "aurigraph_peer_authentication_failures_total");
    assert!(
        refused >= refused_before + 3,
        "{refused_before} -> {refused} authentication failures"
    );
    commit_one(&cluster);

    // 2. A validator with another CA's certificate asks to join; the leaders add it as a
    //    learner, but no link to it comes up: it never receives an entry.
    let fourth = cluster.add_joining_node_with(Some(PeerTlsFiles::new(&rogue_dir, 4)));
    let start = applied(&cluster.status(fourth));
    cluster.validators_cli(&[
        "add".into(),
        "--id".into(),
        "4".into(),
        "--peer-addr".into(),
        format!("127.0.0.1:{}", cluster.node(fourth).peer_port),
        "--nodes".into(),
        cluster.urls(&[0, 1, 2]),
    ]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        commit_one(&cluster);
        std::thread::sleep(Duration::from_millis(200));
    }
    let members = cluster.status(0);
    for shard in 0..SHARDS {
        let s = shard_status(&members, shard).unwrap();
        assert_eq!(s["learners"], serde_json::json!([4]), "{s}");
    }
    assert_eq!(
        applied(&cluster.status(fourth)),
        start,
        "the rogue got entries"
    );
    assert!(applied(&members) > start + 10);
    assert!(
        metric(&cluster, 0, "aurigraph_peer_authentication_failures_total") > refused,
        "links to the rogue were not refused for their certificate"
    );
    assert!(
        metric(
            &cluster,
            fourth,
            "aurigraph_peer_authentication_failures_total"
        ) > 0
    );
    let log = std::fs::read_to_string(&cluster.node(fourth).log).unwrap();
    assert!(log.contains("authentication failed"), "{log}");
}

//! Mutual TLS on peer links, over real TCP on loopback: validators with certificates from the
//! cluster CA link and exchange messages; a peer without a certificate, with one from another
//! CA, an expired one, or one naming another node is refused before any frame reaches the
//! owner, and the legitimate link is never disturbed.

mod common;
use aurigraph_net::transport::{
    peer_identity_name, DataFrameEncoder, PeerTls, PeerTlsError, Transport, TransportConfig,
    FRAME_BYTES_MAX,
};
use common::{handshake_as, CHAIN, SHARDS};
use glommio::timer::sleep;
use glommio::{LocalExecutorBuilder, Placement};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const TEST_TIMEOUT: Duration = Duration::from_secs(20);

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// Writes `dir/<name>.pem` and `dir/<name>-key.pem`: a certificate for `node_id` that
    /// expires `days` from now (negative: already expired).
    fn issue(&self, dir: &Path, name: &str, node_id: u64, days: i64) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![peer_identity_name(node_id)]).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

fn load(node_id: u64, ca: &Path, (cert, key): &(PathBuf, PathBuf)) -> Arc<PeerTls> {
    Arc::new(PeerTls::load(node_id, ca, cert, key).unwrap())
}

fn config(node: u64, tls: Arc<PeerTls>) -> TransportConfig {
    let mut c = TransportConfig::new(CHAIN, node, 0, 1, SHARDS, "127.0.0.1:0".parse().unwrap());
    c.backoff_min_ms = 10;
    c.backoff_max_ms = 200;
    c.handshake_timeout_ms = 1_000;
    c.tls = Some(tls);
    c
}

/// A handshake claiming node 3 and a data frame, as a rustls client (with `client_cert`, or
/// none) would send them to node 2; returns once the transport closed the connection.
fn impostor(addr: SocketAddr, ca: &Path, client_cert: Option<&(PathBuf, PathBuf)>) {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let name = ServerName::try_from(peer_identity_name(2)).unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let mut frame = DataFrameEncoder::new(FRAME_BYTES_MAX, 16);
    frame.push(0, b"injected").unwrap();
    // The client may finish its side of the handshake before the server refuses it: writes
    // can succeed; what matters is that the link is closed and nothing reaches the owner.
    let _ = tls
        .write_all(&handshake_as(3))
        .and_then(|()| tls.write_all(frame.finish()))
        .and_then(|()| tls.flush());
    let mut buf = [0u8; 1024];
    if let Ok(n @ 1..) = tls.read(&mut buf) {
        panic!("node 2 answered an impostor with {n} bytes");
    }
}

#[test]
fn mutual_tls_links_carry_messages_and_refuse_every_impostor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new();
    let ca_path = ca.write(d, "ca");
    let node1 = ca.issue(d, "node-1", 1, 30);
    let node2 = ca.issue(d, "node-2", 2, 30);
    let rogue_ca = Ca::new();
    let rogue_ca_path = rogue_ca.write(d, "rogue-ca");
    let rogue3 = rogue_ca.issue(d, "rogue-3", 3, 30);
    let expired3 = ca.issue(d, "expired-3", 3, -1);

    let (tls1, tls2) = (load(1, &ca_path, &node1), load(2, &ca_path, &node2));
    let rogue_tls = load(3, &rogue_ca_path, &rogue3);
    let (addr1_tx, addr1_rx) = mpsc::channel::<SocketAddr>();
    let (addr2_tx, addr2_rx) = mpsc::channel::<SocketAddr>();
    let (addr2_tx_rogue, addr2_rx_rogue) = mpsc::channel::<SocketAddr>();
    let (addr2_tx_main, addr2_rx_main) = mpsc::channel::<SocketAddr>();
    let impostors_done = Arc::new(AtomicBool::new(false));

    let spawn = |name: &str| {
        LocalExecutorBuilder::new(Placement::Unbound)
            .name(name)
            .io_memory(1 << 20)
    };
    let node_1 = {
        let done = Arc::clone(&impostors_done);
        spawn("node-1")
            .spawn(move || async move {
                let t = Transport::bind(config(1, tls1)).unwrap();
                addr1_tx.send(t.local_addr()).unwrap();
                t.add_peer(2, addr2_rx.recv().unwrap()).unwrap();
                let deadline = Instant::now() + TEST_TIMEOUT;
                let mut sent = 0u64;
                while !done.load(SeqCst) {
                    assert!(Instant::now() < deadline, "impostors never finished");
                    if t.send(2, 1, &sent.to_le_bytes()).is_ok() {
                        sent += 1;
                    }
                    sleep(Duration::from_millis(5)).await;
                }
                let c = t.counters();
                t.shutdown().await;
                (sent, c)
            })
            .unwrap()
    };
    let node_2 = {
        let done = Arc::clone(&impostors_done);
        spawn("node-2")
            .spawn(move || async move {
                let t = Transport::bind(config(2, tls2)).unwrap();
                addr2_tx.send(t.local_addr()).unwrap();
                addr2_tx_rogue.send(t.local_addr()).unwrap();
                addr2_tx_main.send(t.local_addr()).unwrap();
                t.add_peer(1, addr1_rx.recv().unwrap()).unwrap();
                // Node 3 is a member; only impostors ever claim to be it.
                t.add_peer(3, "127.0.0.1:9".parse().unwrap()).unwrap();
                let deadline = Instant::now() + TEST_TIMEOUT;
                let mut received = Vec::new();
                while !done.load(SeqCst) {
                    assert!(Instant::now() < deadline, "impostors never finished");
                    match t.try_recv() {
                        Some(batch) => {
                            for m in batch.messages() {
                                received.push((batch.from_node(), m.shard, m.payload.to_vec()));
                            }
                        }
                        None => sleep(Duration::from_millis(2)).await,
                    }
                }
                // Node 1's last messages may still be on their way.
                sleep(Duration::from_millis(200)).await;
                while let Some(batch) = t.try_recv() {
                    for m in batch.messages() {
                        received.push((batch.from_node(), m.shard, m.payload.to_vec()));
                    }
                }
                let c = t.counters();
                t.shutdown().await;
                (received, c)
            })
            .unwrap()
    };
    // A full transport that claims node 3 with a certificate from another CA.
    let rogue_done = Arc::new(AtomicBool::new(false));
    let rogue = {
        let done = Arc::clone(&rogue_done);
        spawn("rogue-3")
            .spawn(move || async move {
                let t = Transport::bind(config(3, rogue_tls)).unwrap();
                t.add_peer(2, addr2_rx_rogue.recv().unwrap()).unwrap();
                while !done.load(SeqCst) {
                    let _ = t.send(2, 1, b"injected");
                    sleep(Duration::from_millis(20)).await;
                }
                let c = t.counters();
                t.shutdown().await;
                c
            })
            .unwrap()
    };

    let addr2 = addr2_rx_main.recv().unwrap();
    // Let the real link come up and the rogue try a few times.
    std::thread::sleep(Duration::from_millis(600));
    // 1. Plaintext: our own handshake frame, no TLS at all.
    let mut plain = TcpStream::connect(addr2).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = plain.write_all(&handshake_as(3));
    // rustls answers a non-TLS byte stream with at most an alert record (type 21), then closes.
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 21,
        "plaintext answered with {answer:?}"
    );
    // 2. TLS without a client certificate.
    impostor(addr2, &ca_path, None);
    // 3. The cluster CA's certificate for node 3, expired.
    impostor(addr2, &ca_path, Some(&expired3));
    // 4. A valid certificate of the cluster CA, but for node 1, claiming node 3.
    impostor(addr2, &ca_path, Some(&node1));
    rogue_done.store(true, SeqCst);
    let rogue_counters = rogue.join().unwrap();
    impostors_done.store(true, SeqCst);
    let (sent, c1) = node_1.join().unwrap();
    let (received, c2) = node_2.join().unwrap();
    eprintln!("node 1: {c1:?}\nnode 2: {c2:?}\nrogue: {rogue_counters:?}");
    assert!(sent > 20, "node 1 sent only {sent}");
    assert!(received.iter().all(|(from, _, _)| *from == 1));
    assert_eq!(received.len() as u64, sent);
    assert_eq!(rogue_counters.connects, 0, "{rogue_counters:?}");
    assert!(rogue_counters.authentication_failures >= 1);
    // The rogue transport (at least once), no certificate, expired, another node's.
    assert!(c2.authentication_failures >= 4, "{c2:?}");
    assert_eq!(c1.reconnects, 0, "{c1:?}");
}

#[test]
fn loading_refuses_a_certificate_that_peers_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new();
    let ca_path = ca.write(d, "ca");
    let node1 = ca.issue(d, "node-1", 1, 30);
    let expired = ca.issue(d, "expired", 1, -1);
    let other_ca_path = Ca::new().write(d, "other-ca");
    let load = |id: u64, ca: &Path, pair: &(PathBuf, PathBuf)| {
        PeerTls::load(id, ca, &pair.0, &pair.1).map(|_| ())
    };
    load(1, &ca_path, &node1).unwrap();
    let wrong_node = load(2, &ca_path, &node1).unwrap_err();
    assert!(
        matches!(&wrong_node, PeerTlsError::Certificate { message, .. } if message.contains("node-2.aurigraph")),
        "{wrong_node}"
    );
    let expired = load(1, &ca_path, &expired).unwrap_err().to_string();
    assert!(expired.contains("expired"), "{expired}");
    let untrusted = load(1, &other_ca_path, &node1).unwrap_err().to_string();
    assert!(untrusted.contains("node-1.pem"), "{untrusted}");
    let mismatched_key = load(1, &ca_path, &(node1.0.clone(), d.join("expired-key.pem")))
        .unwrap_err()
        .to_string();
    assert!(mismatched_key.contains("key"), "{mismatched_key}");
    let missing = load(1, &d.join("nope.pem"), &node1)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.pem"), "{missing}");
}

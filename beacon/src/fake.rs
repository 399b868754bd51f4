//! A fake beacon for tests (feature `fake-beacon`): an HTTPS server on 127.0.0.1 with a
//! certificate made when it starts (rcgen), answering GETs from a routing function. The
//! client under test trusts its certificate as an extra root; nothing leaves loopback.
//!
//! [`fixture_routes`] serves the real signed fixture pulses the way the real beacons do (a
//! Twine v1 store under `/api`, NIST Beacon 2.0 under `/nist`), so the real client and the
//! real node can be tested end to end without the internet.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Maps a request path (with query) to a 200 body, or `None` for a 404.
pub type Routes = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// Upper bound of a request head the fake server reads (requests are small GETs).
const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;

/// A running fake beacon; stops accepting when dropped.
pub struct FakeBeacon {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// Its certificate (DER), to trust as a root.
    pub root_der: CertificateDer<'static>,
    /// Its certificate (PEM), for a node configuration's `tls_root` file.
    pub root_pem: String,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl FakeBeacon {
    /// Starts serving `routes` on an ephemeral loopback port.
    pub fn start(routes: Routes) -> std::io::Result<FakeBeacon> {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
                .map_err(std::io::Error::other)?;
        let root_der = cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![root_der.clone()], key)
            .map_err(std::io::Error::other)?,
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("fake-beacon".into())
            .spawn(move || {
                for tcp in listener.incoming().flatten() {
                    if thread_stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let (config, routes) = (Arc::clone(&config), Arc::clone(&routes));
                    std::thread::spawn(move || serve(tcp, config, routes));
                }
            })?;
        Ok(FakeBeacon {
            base_url: format!("https://{addr}"),
            root_der,
            root_pem: cert.pem(),
            stop,
            addr,
        })
    }
}

impl Drop for FakeBeacon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
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
        if request.len() > REQUEST_HEAD_BYTES_MAX {
            return;
        }
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

/// Serves `bodies` in turn (the last one repeatedly).
pub fn sequence(bodies: Vec<Vec<u8>>) -> impl Fn() -> Vec<u8> + Send + Sync {
    assert!(!bodies.is_empty(), "a sequence needs at least one body");
    let next = AtomicUsize::new(0);
    move || {
        let i = next.fetch_add(1, Ordering::SeqCst).min(bodies.len() - 1);
        bodies[i].clone()
    }
}

/// Routes over the fixture directory (`curby_rng_*`, `nist_*` files of the beacon fixtures):
/// a Twine v1 store under `/api` (chain record, `pulses/latest` = 534323, `pulses/534322`) and
/// NIST Beacon 2.0 under `/nist` (`pulse/last` = chain 1 pulse 54610, `chain/1/pulse/54609`).
pub fn fixture_routes(dir: &Path) -> std::io::Result<Routes> {
    use super::twine::CURBY_RNG_CHAIN_CID;
    let read = |name: &str| std::fs::read(dir.join(name));
    let chain_path = format!("/api/chains/{CURBY_RNG_CHAIN_CID}");
    let table: Vec<(String, Vec<u8>)> = vec![
        (chain_path.clone(), read("curby_rng_chain.json")?),
        (
            format!("{chain_path}/pulses/latest"),
            read("curby_rng_pulse_534323.json")?,
        ),
        (
            format!("{chain_path}/pulses/534322"),
            read("curby_rng_pulse_534322.json")?,
        ),
        (
            "/nist/pulse/last".into(),
            read("nist_pulse_chain1_54610.json")?,
        ),
        (
            "/nist/chain/1/pulse/54609".into(),
            read("nist_pulse_chain1_54609.json")?,
        ),
    ];
    Ok(Arc::new(move |path: &str| {
        table
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, body)| body.clone())
    }))
}

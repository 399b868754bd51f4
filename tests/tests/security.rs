//! Hostile clients against the real `aurigraph` binary on loopback: slow heads and bodies, and
//! the admin endpoint without an admin token.

use aurigraph_testkit::*;
use aurigraph_wire::batch::encode_batch;
use aurigraph_wire::record::{address_of, Transfer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// A connection to `to` from source address `from` (another loopback address than the
/// legitimate client's, as an attacker's host would be).
fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

const ATTACK_CONNECTIONS: usize = 1000;
/// The deadlines this test's node runs with (the defaults are 10 s; shorter keeps it quick).
const HEADER_READ_TIMEOUT_MS: u64 = 2000;
const BODY_READ_TIMEOUT_MS: u64 = 2000;
/// What the node's memory may grow by while 1,000 connections hold a declared 16 MB body each:
/// their connection state, not their declared bodies (16 GB).
const ATTACK_RSS_GROWTH_BYTES_MAX: u64 = 64 << 20;

#[test]
fn a_slow_body_attack_is_cut_off_within_memory_while_transfers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(2);
    let g = genesis(&keys, 2);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "header_read_timeout_ms = {HEADER_READ_TIMEOUT_MS}\nbody_read_timeout_ms = {BODY_READ_TIMEOUT_MS}\n"
        ),
    )
    .unwrap();
    let node = Node::start_with_args(
        dir.path(),
        Some(&g),
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    let pid = node.child.as_ref().unwrap().id();
    let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
    let rss_before = rss_bytes(pid);

    // 1,000 connections, each a batch head declaring 16 MB, and then nothing.
    let started = Instant::now();
    let mut attack: Vec<TcpStream> = Vec::with_capacity(ATTACK_CONNECTIONS);
    for _ in 0..ATTACK_CONNECTIONS {
        let Ok(mut stream) = connect_from([127, 0, 0, 2], addr) else {
            continue; // refused at once (the address's connection limit): also fine
        };
        let _ = write!(
            stream,
            "POST /api/v11/transactions/batch HTTP/1.1\r\nHost: x\r\nContent-Type: {BATCH_MEDIA_TYPE}\r\nContent-Length: 16000000\r\n\r\n"
        );
        attack.push(stream);
    }
    // Meanwhile a legitimate client's transfers keep succeeding, and memory stays bounded.
    let mut rss_max = rss_bytes(pid);
    let mut nonce = 0;
    while started.elapsed() < Duration::from_millis(BODY_READ_TIMEOUT_MS + 1000) {
        nonce += 1;
        let record = Transfer {
            chain_id: 7,
            from: address_of(&keys[0]),
            to: address_of(&keys[1]),
            asset: 0,
            amount: 1,
            nonce,
        }
        .sign(&keys[0]);
        let reply = node.request(
            "POST",
            "/api/v11/transactions/batch",
            Some(encode_batch(&[record])),
            &[("Content-Type", BATCH_MEDIA_TYPE)],
        );
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.json()["results"][0]["result"],
            "OK",
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        rss_max = rss_max.max(rss_bytes(pid));
    }
    assert!(nonce > 5, "only {nonce} transfers while under attack");
    let growth = rss_max.saturating_sub(rss_before);
    println!(
        "SLOW-BODY: {} attack connections held; RSS {} MiB before, {} MiB at most under attack \
         (+{} MiB); {nonce} transfers OK meanwhile",
        attack.len(),
        rss_before >> 20,
        rss_max >> 20,
        growth >> 20
    );
    assert!(
        growth <= ATTACK_RSS_GROWTH_BYTES_MAX,
        "RSS grew by {growth} bytes under the attack"
    );
    // Every attack connection is answered 408 and closed by its deadline (or was closed at once).
    let deadline = started + Duration::from_millis(BODY_READ_TIMEOUT_MS + 5000);
    let mut timed_out = 0;
    for stream in &mut attack {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(50))))
            .unwrap();
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {
                let text = String::from_utf8_lossy(&answer);
                assert!(
                    text.is_empty() || text.starts_with("HTTP/1.1 408"),
                    "{text}"
                );
                timed_out += usize::from(!text.is_empty());
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("an attack connection still open after its deadline: {e}"),
        }
    }
    println!(
        "SLOW-BODY: {timed_out} answered 408 REQUEST_TIMEOUT, all closed within {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(timed_out > 0);
}

/// A node of the tests' genesis in `dir`, reading the tokens file `tokens`.
fn node_with_tokens(dir: &std::path::Path, tokens: &std::path::Path) -> Node {
    Node::start_with_args(
        dir,
        Some(&genesis(&keys(2), 2)),
        free_port(),
        &["--tokens", tokens.to_str().unwrap()],
    )
}

#[test]
fn the_admin_endpoint_refuses_cross_site_and_tokenless_calls_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let admin = new_token(&tokens, "admin", "ops");
    let gateway = new_token(&tokens, "gateway", "acme");
    let node = node_with_tokens(dir.path(), &tokens);
    let validators = || node.get("/api/v11/consensus/status").json()["shards"].clone();
    let before = validators();
    let body = br#"{"action":"remove","nodeId":1}"#.to_vec();
    let post = |headers: &[(&str, &str)]| {
        node.request(
            "POST",
            "/api/v11/admin/validators",
            Some(body.clone()),
            headers,
        )
    };
    // What a browser sends cross-site without asking: text/plain, no token.
    post(&[("Content-Type", "text/plain")]).assert_error(401, "UNAUTHORIZED");
    post(&[("Content-Type", "application/json")]).assert_error(401, "UNAUTHORIZED");
    let wrong = format!("Bearer {}", "0".repeat(64));
    post(&[
        ("Content-Type", "application/json"),
        ("Authorization", &wrong),
    ])
    .assert_error(401, "UNAUTHORIZED");
    let as_gateway = format!("Bearer {gateway}");
    post(&[
        ("Content-Type", "application/json"),
        ("Authorization", &as_gateway),
    ])
    .assert_error(403, "FORBIDDEN");
    let as_admin = format!("Bearer {admin}");
    post(&[("Content-Type", "text/plain"), ("Authorization", &as_admin)])
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(validators(), before, "nothing changed");
    let log = node.log_text();
    assert!(
        log.contains("audit"),
        "refusals are audit log lines:\n{log}"
    );
}

#[test]
fn an_admin_listener_takes_the_admin_endpoint_off_the_public_port() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let admin = new_token(&tokens, "admin", "ops");
    let admin_port = free_port();
    let node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys(2), 2)),
        free_port(),
        &[
            "--tokens",
            tokens.to_str().unwrap(),
            "--admin-addr",
            &format!("127.0.0.1:{admin_port}"),
        ],
    );
    let as_admin = format!("Bearer {admin}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", as_admin.as_str()),
    ];
    // Removing a validator that is not a member: the shards answer, nothing changes.
    let body = br#"{"action":"remove","nodeId":7}"#.to_vec();
    let public = node.request(
        "POST",
        "/api/v11/admin/validators",
        Some(body.clone()),
        &headers,
    );
    public.assert_error(404, "NOT_FOUND");
    assert!(String::from_utf8_lossy(&public.body).contains("admin listener"));
    let on_admin = http_request(
        admin_port,
        "POST",
        "/api/v11/admin/validators",
        Some(body),
        &headers,
    )
    .unwrap();
    assert_eq!(
        on_admin.status,
        200,
        "{}",
        String::from_utf8_lossy(&on_admin.body)
    );
    assert!(on_admin.json()["shards"].is_array(), "{}", on_admin.json());
    // The admin listener needs the token as much as the public one did.
    http_request(
        admin_port,
        "POST",
        "/api/v11/admin/validators",
        Some(b"{}".to_vec()),
        &[("Content-Type", "application/json")],
    )
    .unwrap()
    .assert_error(401, "UNAUTHORIZED");
    assert_eq!(node.get("/api/v11/health").status, 200);
}

#[test]
fn a_client_over_its_request_rate_is_answered_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    // A burst of 5, then one request a second (per core; the node runs 2).
    std::fs::write(
        &config,
        "requests_per_s_per_ip = 1\nrequest_burst_per_ip = 5\n",
    )
    .unwrap();
    let node = Node::start_with_args(
        dir.path(),
        Some(&genesis(&keys(2), 2)),
        free_port(),
        &["--config", config.to_str().unwrap()],
    );
    // Requests on one kept-alive connection stay on one core; from an address of its own (the
    // start-up's health checks spent some of 127.0.0.1's bucket).
    let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
    let mut stream = connect_from([127, 0, 0, 3], addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        write!(stream, "GET /api/v11/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let answer = read_response(&mut stream).unwrap();
        if answer.status == 429 {
            let retry_after = answer.headers.iter().find(|(k, _)| k == "retry-after");
            assert_eq!(
                retry_after.map(|(_, v)| v.as_str()),
                Some("1"),
                "{:?}",
                answer.headers
            );
            answer.assert_error(429, "RATE_LIMITED");
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
}

/// schemathesis's `st`: `$AURIGRAPH_SCHEMATHESIS`, or `st` on the PATH (`tests/run` installs
/// it in a virtual environment and sets the variable).
fn schemathesis() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("AURIGRAPH_SCHEMATHESIS") {
        return path.into();
    }
    if let Some(path) = on_path("st") {
        return path;
    }
    panic!(
        "schemathesis is not installed: this test needs its `st` (tests/run installs it: \
         python3 -m venv DIR && DIR/bin/pip install schemathesis==4.32.5, then \
         AURIGRAPH_SCHEMATHESIS=DIR/bin/st)"
    );
}

#[test]
fn schemathesis_finds_the_api_description_and_the_server_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let gateway = new_token(&tokens, "gateway", "acme");
    let node = node_with_tokens(dir.path(), &tokens);
    // Every check; the gateway token on every request (the admin endpoint then answers 403,
    // and is not driven into membership changes of this single validator).
    let out = std::process::Command::new(schemathesis())
        .current_dir(dir.path())
        .args([
            "run",
            &format!("http://127.0.0.1:{}/api/v11/openapi.json", node.port),
        ])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "50",
            "--seed",
            "20261127",
        ])
        .args(["-H", &format!("Authorization: Bearer {gateway}")])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed"))
        .collect();
    println!("SCHEMATHESIS: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis found the API description and the server disagreeing:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl s_client` to `port` trusting `ca`, offering ALPN h2: its output.
fn s_client(port: u16, ca: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "localhost",
            "-alpn",
            "h2,http/1.1",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (Debian's openssl package)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection (rustls, ALPN http/1.1) to `port` trusting the CA in `ca` (PEM).
fn tls_connect(port: u16, ca: &std::path::Path) -> TlsStream {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

#[test]
fn tls_with_a_development_ca_then_a_sighup_reload_that_keeps_connections() {
    let dir = tempfile::tempdir().unwrap();
    let bin = aurigraph_bin();
    let certs = |sub: &str| {
        let path = dir.path().join(sub);
        aurigraph_ok(&["certs".as_ref(), "--dir".as_ref(), path.as_os_str()]);
        path
    };
    let first = certs("first");
    // Nothing is overwritten: a second run into the same directory fails with the file's name.
    let again = std::process::Command::new(&bin)
        .args(["certs", "--dir"])
        .arg(&first)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    for file in ["node.pem", "node-key.pem"] {
        std::fs::copy(first.join(file), live.join(file)).unwrap();
    }
    // A development chain: its funded key is in the data directory, for the CLI below.
    let node = Node::start_with_args(
        dir.path(),
        None,
        free_port(),
        &[
            "--tls-cert",
            live.join("node.pem").to_str().unwrap(),
            "--tls-key",
            live.join("node-key.pem").to_str().unwrap(),
        ],
    );
    let hello = s_client(node.port, &first.join("ca.pem"));
    assert!(hello.contains("Verify return code: 0 (ok)"), "{hello}");
    assert!(hello.contains("ALPN protocol: h2"), "{hello}");
    assert!(hello.contains("TLSv1.3"), "{hello}");
    // A connection kept open across the reload: rustls, HTTP/1.1.
    let mut kept = tls_connect(node.port, &first.join("ca.pem"));
    let ask = |stream: &mut TlsStream| -> u16 {
        stream
            .write_all(b"GET /api/v11/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_response(stream).unwrap().status
    };
    assert_eq!(ask(&mut kept), 200);
    // New certificate files from another CA, then SIGHUP.
    let second = certs("second");
    for file in ["node.pem", "node-key.pem"] {
        std::fs::copy(second.join(file), live.join(file)).unwrap();
    }
    let pid = node.child.as_ref().unwrap().id() as i32;
    // SAFETY: a signal to the node's own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s_client(node.port, &second.join("ca.pem")).contains("Verify return code: 0 (ok)") {
        assert!(
            Instant::now() < deadline,
            "the new certificate is never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stale = s_client(node.port, &first.join("ca.pem"));
    assert!(!stale.contains("Verify return code: 0 (ok)"), "{stale}");
    assert_eq!(ask(&mut kept), 200, "the kept connection goes on");
    assert!(node.log_text().contains("TLS certificate and key reloaded"));
    // curl over TLS with the new CA: HTTP/2 by ALPN.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(second.join("ca.pem"))
        .arg(format!("https://localhost:{}/api/v11/health", node.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    // The command-line client over https: it trusts what SSL_CERT_FILE names, and refuses an
    // unknown CA with the reason.
    let transfer = |ca: &std::path::Path| {
        std::process::Command::new(&bin)
            .args(["transfer", "--key"])
            .arg(node.data_dir.join("dev-key.json"))
            .args(["--to", &"22".repeat(32), "--amount", "5", "--node"])
            .arg(format!("https://localhost:{}", node.port))
            .env("SSL_CERT_FILE", ca)
            .output()
            .unwrap()
    };
    let out = transfer(&second.join("ca.pem"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"result\": \"OK\""));
    let out = transfer(&first.join("ca.pem"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
    // gRPC on --grpc-addr is served with the same certificate (reloaded too): HTTP/2 over TLS.
    let grpc_transfer = |ca: &std::path::Path| {
        std::process::Command::new(&bin)
            .args(["transfer", "--grpc", "--key"])
            .arg(node.data_dir.join("dev-key.json"))
            .args(["--to", &"23".repeat(32), "--amount", "5", "--grpc-addr"])
            .arg(format!("https://localhost:{}", node.grpc_port))
            .env("SSL_CERT_FILE", ca)
            .output()
            .unwrap()
    };
    let out = grpc_transfer(&second.join("ca.pem"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"result\": \"OK\""));
    let out = grpc_transfer(&first.join("ca.pem"));
    assert!(!out.status.success());
    assert!(
        // The first CA has the second's name and another key: its signature does not verify.
        String::from_utf8_lossy(&out.stderr).contains("invalid peer certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

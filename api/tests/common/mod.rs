//! Shared test harness: starts the real `aurigraph` binary on a free loopback port and talks
//! HTTP/1.1 to it with a tiny blocking client (no async runtime in the tests).

#![allow(dead_code)]

use aurigraph_engine::genesis::{Allocation, Genesis};
use aurigraph_engine::record::{address_of, Address, Record, Transfer};
use ed25519_dalek::SigningKey;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHAIN: u32 = 7;
pub const FUNDS: u64 = 1_000_000_000;

pub fn keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 11; 32]))
        .collect()
}

pub fn genesis(keys: &[SigningKey], shards: u32) -> Genesis {
    let mut allocations: Vec<Allocation> = keys
        .iter()
        .map(|k| Allocation {
            address: address_of(k),
            asset: 0,
            amount: FUNDS,
        })
        .collect();
    allocations.sort_by_key(|a| a.address);
    Genesis {
        chain_id: CHAIN,
        shards: Some(shards),
        allocations,
    }
}

pub fn transfer(key: &SigningKey, to: Address, amount: u64, nonce: u64) -> Record {
    Transfer {
        chain_id: CHAIN,
        from: address_of(key),
        to,
        asset: 0,
        amount,
        nonce,
    }
    .sign(key)
}

pub fn transfer_json(record: &Record) -> serde_json::Value {
    serde_json::json!({
        "fromAddress": record.from().to_hex(),
        "toAddress": record.to().to_hex(),
        "amount": record.amount().to_string(),
        "asset": record.asset(),
        "nonce": record.nonce().to_string(),
        "chainId": record.chain_id(),
        "signature": hex::encode(record.signature()),
        "transactionType": "TRANSFER",
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `aurigraph node` child process.
pub struct Node {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, genesis: Option<&Genesis>) -> Node {
        let port = free_port();
        Node::start_on(dir, genesis, port)
    }

    pub fn start_on(dir: &Path, genesis: Option<&Genesis>, port: u16) -> Node {
        Node::start_with_args(dir, genesis, port, &[])
    }

    /// Like [`Node::start_on`], with extra command-line arguments for `aurigraph node`.
    pub fn start_with_args(
        dir: &Path,
        genesis: Option<&Genesis>,
        port: u16,
        extra: &[&str],
    ) -> Node {
        let data_dir = dir.join("data");
        let log = dir.join(format!("node-{port}-{}.log", rand_suffix()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aurigraph"));
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cores")
            .arg("2")
            .args(extra);
        if let Some(g) = genesis {
            let path = dir.join("genesis.json");
            std::fs::write(&path, g.to_canonical_json(g.shards.unwrap_or(2))).unwrap();
            cmd.arg("--genesis").arg(&path);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start aurigraph");
        let mut node = Node {
            child: Some(child),
            port,
            data_dir,
            log,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "node exited during start-up ({status}):\n{}",
                    self.log_text()
                );
            }
            if let Ok(r) = self.try_request("GET", "/api/v11/health", None, &[]) {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("node did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            path,
            Some(body.to_string().into_bytes()),
            &[("Content-Type", "application/json")],
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Response {
        self.try_request(method, path, body, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_text()))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        http_request(self.port, method, path, body, headers)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the error contract: status and `{"error":{"code","message"}}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        let body = String::from_utf8_lossy(&self.body).to_string();
        assert_eq!(self.status, status, "{body}");
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{body}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

/// One HTTP/1.1 request on a fresh connection (Connection: close).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server may answer (413) and close before reading an oversize body: keep its answer.
    let written = stream.write_all(&body);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        written?;
        read?;
    }
    parse_response(&raw)
}

/// Parses a whole HTTP/1.1 response (chunked bodies decoded).
pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("header not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        // A connection closed mid-body (a node killed while answering) is an error, not a
        // short answer.
        if body.len() < len {
            return Err(bad("body shorter than its Content-Length"));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

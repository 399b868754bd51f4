//! One `aurigraph node` child process on a loopback port.

use crate::http::{http_request, Response};
use aurigraph_wire::genesis::Genesis;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `aurigraph node` child process.
pub struct Node {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, genesis: Option<&Genesis>) -> Node {
        let port = crate::free_port();
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
        let mut cmd = Command::new(crate::aurigraph_bin());
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
            // A node serving TLS (which this plaintext client cannot ask) says so in its log.
            if self.log_text().contains("node ready: https://") {
                return;
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
        let child = self.child.take()?;
        Some(sigterm_and_wait(child, &self.log_text()))
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }

    /// Submits one signed transfer (`POST /api/v11/transactions`); the test fails unless the
    /// node answers 200. Returns the reply.
    pub fn submit_ok(&self, record: &aurigraph_wire::record::Record) -> serde_json::Value {
        let reply = self.post_json("/api/v11/transactions", &crate::transfer_json(record));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
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

/// Sends SIGTERM to a node process and waits (at most 30 s) for it to exit; its exit status.
/// Panics with `log` when it does not stop.
pub(crate) fn sigterm_and_wait(mut child: Child, log: &str) -> i32 {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // A signal's death has no code: -1, which no graceful stop returns.
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("node did not stop on SIGTERM:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! One `aurigraph node` child process on loopback ports (HTTP, and gRPC on a port of its own).

use crate::http::{http_request, Response};
use aurigraph_wire::genesis::Genesis;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `aurigraph node` child process.
pub struct Node {
    pub child: Option<Child>,
    /// The HTTP port.
    pub port: u16,
    /// The gRPC port (`--grpc-addr`): every node gets one of its own, so that nodes started
    /// at once never contend for the default 9004.
    pub grpc_port: u16,
    pub data_dir: PathBuf,
    /// The log of the latest start (each start writes a file of its own).
    pub log: PathBuf,
    /// `aurigraph node ...` as started: [`Node::restart`] runs it again.
    args: Vec<OsString>,
    dir: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, genesis: Option<&Genesis>) -> Node {
        let port = crate::free_port();
        Node::start_on(dir, genesis, port)
    }

    pub fn start_on(dir: &Path, genesis: Option<&Genesis>, port: u16) -> Node {
        Node::start_with_args(dir, genesis, port, &[])
    }

    /// Like [`Node::start_on`], with extra command-line arguments for `aurigraph node`. The
    /// node's gRPC port is the one `extra` gives with `--grpc-addr`, else a free one.
    pub fn start_with_args(
        dir: &Path,
        genesis: Option<&Genesis>,
        port: u16,
        extra: &[&str],
    ) -> Node {
        let data_dir = dir.join("data");
        let given_grpc = extra
            .windows(2)
            .find(|pair| pair[0] == "--grpc-addr")
            .map(|pair| {
                pair[1]
                    .parse::<std::net::SocketAddr>()
                    .expect("--grpc-addr HOST:PORT")
                    .port()
            });
        let grpc_port = given_grpc.unwrap_or_else(|| crate::ports::pick_ports(1));
        let mut args: Vec<OsString> = vec![
            "node".into(),
            "--data-dir".into(),
            data_dir.clone().into(),
            "--http-addr".into(),
            format!("127.0.0.1:{port}").into(),
            "--cores".into(),
            "2".into(),
        ];
        if given_grpc.is_none() {
            args.extend([
                "--grpc-addr".into(),
                format!("127.0.0.1:{grpc_port}").into(),
            ]);
        }
        args.extend(extra.iter().map(OsString::from));
        if let Some(g) = genesis {
            let path = dir.join("genesis.json");
            std::fs::write(&path, g.to_canonical_json(g.shards.unwrap_or(2))).unwrap();
            args.extend(["--genesis".into(), path.into()]);
        }
        let mut node = Node {
            child: None,
            port,
            grpc_port,
            data_dir,
            log: PathBuf::new(),
            args,
            dir: dir.to_path_buf(),
        };
        node.spawn();
        node
    }

    /// Starts `aurigraph node` with this node's arguments (a new log file) and waits until it
    /// is ready.
    fn spawn(&mut self) {
        self.log = self
            .dir
            .join(format!("node-{}-{}.log", self.port, rand_suffix()));
        let child = Command::new(crate::aurigraph_bin())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .expect("start aurigraph");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Starts the node again with the same command line (data directory, genesis, HTTP and
    /// gRPC ports), SIGKILLing it first if it still runs, and waits until it is ready.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Base URL of the node's gRPC listener (`http://127.0.0.1:PORT`).
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Base URL of the node's HTTP API (`http://127.0.0.1:PORT`).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

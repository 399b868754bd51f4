//! A cluster of real `aurigraph node` processes on loopback, with a fault-injecting proxy
//! between every ordered pair of validators (node i reaches node j's peer port only through
//! proxy(i→j)), for the replication tests.
//!
//! Nodes are indexed from 0; node `i` has the node id `i + 1`. Every method that waits polls
//! with a deadline and panics with the statuses and the tail of every node's log.
//! Clusters in one test binary run one at a time (a process-wide lock held by each
//! [`Cluster`]): three validators per test already fill a 2-core machine, and the failover
//! figure is only meaningful without a second cluster competing for the cores.

use crate::http::{http, Response};
use crate::ports::pick_ports;
use crate::proxy::Proxy;
use aurigraph_client::launcher::PeerTlsFiles;
use aurigraph_wire::genesis::Genesis;
use aurigraph_wire::record::{Address, Record};
use serde_json::Value;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Cores per validator: one peer port each (core c listens on the base peer port + c).
pub const CORES: u32 = 1;
/// How long start-up, restart and convergence may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(60);
/// Timeout of one status/lookup request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one submission attempt in [`Cluster::submit`] (a timed-out attempt is retried).
pub const SUBMIT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of each node's log quoted in panic messages.
const LOG_TAIL_BYTES: usize = 6000;
/// Error codes after which resubmitting the same signed transfer is the right move
/// (`SHUTTING_DOWN`: a validator draining for a restart; another one, or it once back, takes it).
const RETRYABLE: &[&str] = &["NOT_LEADER", "RETRY", "OVERLOADED", "SHUTTING_DOWN"];

static SERIAL: Mutex<()> = Mutex::new(());

pub struct Cluster {
    pub dir: PathBuf,
    pub shards: u32,
    nodes: Vec<Member>,
    /// `proxies[i][j]`: node i's way to node j's peer port (`None` on the diagonal).
    proxies: Vec<Vec<Option<Proxy>>>,
    /// The tokens file every node reads (`--tokens`): one admin token, kept in
    /// [`Cluster::admin_token_file`] for `aurigraph validators --token-file`.
    tokens_file: PathBuf,
    pub admin_token_file: PathBuf,
    /// Last: released after the children are killed and the proxies stopped.
    _serial: MutexGuard<'static, ()>,
}

/// One validator process.
pub struct Member {
    pub id: u64,
    pub http_port: u16,
    /// The gRPC port (`--grpc-addr`), one of its own.
    pub grpc_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
    starts: AtomicU32,
}

/// What [`Cluster::try_submit`] got back.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The 200 reply's JSON.
    pub reply: Value,
    /// Attempts made (1 when the first one answered).
    pub attempts: u32,
    /// When the attempt that got the reply was sent.
    pub sent: Instant,
    /// When the reply arrived.
    pub answered: Instant,
}

impl Submitted {
    /// Committed: confirmed OK, or a resubmission of a transfer that had been committed.
    pub fn committed(&self) -> bool {
        committed(&self.reply)
    }
}

/// A reply that says the transfer is in the ledger: `CONFIRMED`/`OK`, or `NONCE_REPLAYED`
/// (a resubmitted transfer that had been committed before).
pub fn committed(reply: &Value) -> bool {
    (reply["status"] == "CONFIRMED" && reply["result"] == "OK")
        || reply["result"] == "NONCE_REPLAYED"
}

impl Cluster {
    /// Starts `n` validators (ids 1..=n) in `dir`, all from `genesis`, and waits until every
    /// node is healthy and agrees on a leader for every shard.
    pub fn start(dir: &Path, n: usize, genesis: &Genesis) -> Cluster {
        Cluster::start_with_config(dir, n, genesis, None)
    }

    /// Like [`Cluster::start`], every node also reading `config` (TOML) with `--config`.
    pub fn start_with_config(
        dir: &Path,
        n: usize,
        genesis: &Genesis,
        config: Option<&str>,
    ) -> Cluster {
        assert!(n >= 1);
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let shards = genesis.shards.unwrap_or(2);
        let genesis_path = dir.join("genesis.json");
        std::fs::write(&genesis_path, genesis.to_canonical_json(shards)).unwrap();

        let tokens_file = dir.join("tokens.json");
        let admin_token_file = dir.join("admin.token");
        let (token, entry) =
            aurigraph_wire::tokens::new_token(aurigraph_wire::tokens::Role::Admin, "tests")
                .unwrap();
        aurigraph_wire::tokens::add_to_file(&tokens_file, entry).unwrap();
        std::fs::write(&admin_token_file, token).unwrap();
        // Peer links are mutual TLS, as deployed: certificates of a development CA.
        let peer_certs = dir.join(aurigraph_client::launcher::PEER_CERTS_DIR);
        aurigraph_client::launcher::ensure_peer_certs(
            &crate::aurigraph_bin(),
            &peer_certs,
            n as u64,
        )
        .unwrap();
        let http: Vec<u16> = (0..n).map(|_| pick_ports(1)).collect();
        let grpc: Vec<u16> = (0..n).map(|_| pick_ports(1)).collect();
        let peer: Vec<u16> = (0..n).map(|_| pick_ports(CORES)).collect();
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let proxies: Vec<Vec<Option<Proxy>>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (i != j).then(|| Proxy::start(loopback(peer[j]))))
                    .collect()
            })
            .collect();

        let nodes: Vec<Member> = (0..n)
            .map(|i| {
                let id = i as u64 + 1;
                let node_dir = dir.join(format!("node-{id}"));
                std::fs::create_dir_all(&node_dir).unwrap();
                let peers: Vec<String> = (0..n)
                    .map(|j| {
                        let addr = match &proxies[i][j] {
                            None => loopback(peer[i]),
                            Some(p) => p.local_addr(),
                        };
                        format!("{}={addr}", j + 1)
                    })
                    .collect();
                let mut args: Vec<String> = Vec::new();
                if let Some(text) = config {
                    let path = node_dir.join("node.toml");
                    std::fs::write(&path, text).unwrap();
                    args.extend(["--config".into(), path.display().to_string()]);
                }
                args.extend([
                    "--node-id".into(),
                    id.to_string(),
                    "--data-dir".into(),
                    node_dir.join("data").display().to_string(),
                    "--genesis".into(),
                    genesis_path.display().to_string(),
                    "--http-addr".into(),
                    loopback(http[i]).to_string(),
                    "--grpc-addr".into(),
                    loopback(grpc[i]).to_string(),
                    "--cores".into(),
                    CORES.to_string(),
                    // Validators sharing the host share its cores: none pins.
                    "--pin-cores".into(),
                    "false".into(),
                    "--peer-addr".into(),
                    loopback(peer[i]).to_string(),
                    "--peers".into(),
                    peers.join(","),
                    "--tokens".into(),
                    tokens_file.display().to_string(),
                ]);
                args.extend(peer_tls_args(&PeerTlsFiles::new(&peer_certs, id)));
                args.insert(0, "node".into());
                Member {
                    id,
                    http_port: http[i],
                    grpc_port: grpc[i],
                    peer_port: peer[i],
                    data_dir: node_dir.join("data"),
                    log: node_dir.join("node.log"),
                    args,
                    child: Mutex::new(None),
                    starts: AtomicU32::new(0),
                }
            })
            .collect();
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            shards,
            nodes,
            proxies,
            tokens_file,
            admin_token_file,
            _serial: serial,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        let deadline = Instant::now() + WAIT;
        for i in 0..n {
            cluster.wait_healthy(i, deadline);
        }
        cluster.wait_leaders_until(deadline);
        cluster
    }

    /// Validators in the cluster.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no validator (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Member {
        &self.nodes[i]
    }

    pub fn http_port(&self, i: usize) -> u16 {
        self.nodes[i].http_port
    }

    /// Base URL of node i's gRPC listener (`http://127.0.0.1:PORT`).
    pub fn grpc_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].grpc_port)
    }

    /// Proxy(i→j): how node i reaches node j.
    pub fn proxy(&self, i: usize, j: usize) -> &Proxy {
        self.proxies[i][j]
            .as_ref()
            .expect("no proxy from a node to itself")
    }

    /// Whether node i's process runs (it was not killed, or was restarted).
    pub fn is_live(&self, i: usize) -> bool {
        let mut child = self.nodes[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => false,
            None => false,
        }
    }

    /// Indexes of the nodes whose process runs.
    pub fn live(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_live(i)).collect()
    }

    fn spawn(&self, i: usize) {
        let m = &self.nodes[i];
        let start = m.starts.fetch_add(1, Ordering::SeqCst);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        writeln!(
            log,
            "===== test harness: start #{} of node {}: aurigraph {} =====",
            start + 1,
            m.id,
            m.args.join(" ")
        )
        .unwrap();
        let child = Command::new(crate::aurigraph_bin())
            .args(&m.args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start aurigraph");
        *m.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// SIGKILL node i and reap it.
    pub fn kill9(&self, i: usize) {
        let child = self.nodes[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops node i gracefully (SIGTERM: it drains and stops its shards) and returns its exit
    /// status.
    pub fn terminate(&self, i: usize) -> Option<i32> {
        let child = self.nodes[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(crate::node::sigterm_and_wait(child, &self.log_text(i)))
    }

    /// Starts node i again (after [`Cluster::terminate`]) with the same arguments and data
    /// directory, and waits until it is healthy.
    pub fn start_again(&self, i: usize) {
        assert!(!self.is_live(i), "node {i} still runs");
        self.spawn(i);
        self.wait_healthy(i, Instant::now() + WAIT);
    }

    /// Starts node i again with the same arguments and data directory (killing it first if it
    /// still runs) and waits until it is healthy (it knows a leader of every shard).
    pub fn restart(&self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_healthy(i, Instant::now() + WAIT);
    }

    /// Drops a flag from node i's command line for its later starts (e.g. `--join`).
    pub fn drop_arg(&mut self, i: usize, flag: &str) {
        self.nodes[i].args.retain(|a| a != flag);
    }

    /// The proxies between node i and every other node, both directions (a node added with
    /// [`Cluster::add_joining_node`] has none: its links are direct).
    fn proxies_of(&self, i: usize) -> impl Iterator<Item = &Proxy> {
        (0..self.len()).filter(move |&j| j != i).flat_map(move |j| {
            [self.proxies[i][j].as_ref(), self.proxies[j][i].as_ref()]
                .into_iter()
                .flatten()
        })
    }

    /// Cuts every link into and out of node i (both directions, with every other node).
    pub fn partition(&self, i: usize) {
        self.proxies_of(i).for_each(Proxy::cut);
    }

    pub fn heal(&self, i: usize) {
        self.proxies_of(i).for_each(Proxy::heal);
    }

    pub fn is_partitioned(&self, i: usize) -> bool {
        self.proxies_of(i).any(Proxy::is_cut)
    }

    /// Base URLs of the given nodes' HTTP APIs.
    pub fn urls(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| format!("http://127.0.0.1:{}", self.nodes[i].http_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a new validator (the next id) with `--join`: it knows the others (directly, no
    /// proxies) but is in no shard's group until `aurigraph validators add` makes it a
    /// learner. Returns its index once its HTTP port answers.
    pub fn add_joining_node(&mut self) -> usize {
        let id = self.len() as u64 + 1;
        let peer_certs = self.dir.join(aurigraph_client::launcher::PEER_CERTS_DIR);
        aurigraph_client::launcher::ensure_peer_certs(&crate::aurigraph_bin(), &peer_certs, id)
            .unwrap();
        self.add_joining_node_with(Some(PeerTlsFiles::new(&peer_certs, id)))
    }

    /// [`Cluster::add_joining_node`] whose data directory is first restored from a backup
    /// (`aurigraph backup restore`): it catches up from the backup's positions.
    pub fn add_joining_node_from_backup(&mut self, backup: &Path) -> usize {
        let id = self.len() as u64 + 1;
        let peer_certs = self.dir.join(aurigraph_client::launcher::PEER_CERTS_DIR);
        aurigraph_client::launcher::ensure_peer_certs(&crate::aurigraph_bin(), &peer_certs, id)
            .unwrap();
        let data_dir = self.dir.join(format!("node-{id}")).join("data");
        crate::aurigraph_ok(&[
            "backup".as_ref(),
            "restore".as_ref(),
            backup.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ]);
        self.add_joining_node_with(Some(PeerTlsFiles::new(&peer_certs, id)))
    }

    /// [`Cluster::add_joining_node`] with the given peer certificate files (`None`: plain
    /// peer links), for validators the cluster must not let in.
    pub fn add_joining_node_with(&mut self, peer_tls: Option<PeerTlsFiles>) -> usize {
        let i = self.len();
        let id = i as u64 + 1;
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let (http, grpc, peer) = (pick_ports(1), pick_ports(1), pick_ports(CORES));
        let node_dir = self.dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|m| format!("{}={}", m.id, loopback(m.peer_port)))
            .chain(std::iter::once(format!("{id}={}", loopback(peer))))
            .collect();
        let mut args: Vec<String> = vec![
            "node".into(),
            "--join".into(),
            "--node-id".into(),
            id.to_string(),
            "--data-dir".into(),
            node_dir.join("data").display().to_string(),
            "--genesis".into(),
            self.dir.join("genesis.json").display().to_string(),
            "--http-addr".into(),
            loopback(http).to_string(),
            "--grpc-addr".into(),
            loopback(grpc).to_string(),
            "--cores".into(),
            CORES.to_string(),
            "--pin-cores".into(),
            "false".into(),
            "--peer-addr".into(),
            loopback(peer).to_string(),
            "--peers".into(),
            peers.join(","),
            "--tokens".into(),
            self.tokens_file.display().to_string(),
        ];
        if let Some(files) = peer_tls {
            args.extend(peer_tls_args(&files));
        }
        self.nodes.push(Member {
            id,
            http_port: http,
            grpc_port: grpc,
            peer_port: peer,
            data_dir: node_dir.join("data"),
            log: node_dir.join("node.log"),
            args,
            child: Mutex::new(None),
            starts: AtomicU32::new(0),
        });
        for row in &mut self.proxies {
            row.push(None);
        }
        self.proxies.push((0..=i).map(|_| None).collect());
        self.spawn(i);
        // Not healthy yet (it knows no leader until it is a learner): wait for liveness.
        self.wait_ok(i, "/q/health/live", Instant::now() + WAIT);
        i
    }

    /// Runs `aurigraph validators ARGS --token-file <the admin token>`; fails the test (with
    /// the logs) if it fails.
    pub fn validators_cli(&self, args: &[String]) {
        let out = Command::new(crate::aurigraph_bin())
            .arg("validators")
            .args(args)
            .arg("--token-file")
            .arg(&self.admin_token_file)
            .output()
            .unwrap();
        if !out.status.success() {
            self.fail(&format!(
                "aurigraph validators {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    // ---- HTTP ----

    pub fn request(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> std::io::Result<Response> {
        http(self.nodes[i].http_port, method, path, body, timeout)
    }

    /// GET that must answer 200 with JSON.
    pub fn get_json(&self, i: usize, path: &str) -> Value {
        match self.request(i, "GET", path, None, REQUEST_TIMEOUT) {
            Ok(r) if r.status == 200 => r.json(),
            Ok(r) => self.fail(&format!(
                "node {i}: GET {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => self.fail(&format!("node {i}: GET {path}: {e}")),
        }
    }

    /// `GET /api/v11/consensus/status` of node i, or `None` when it does not answer 200.
    pub fn try_status(&self, i: usize) -> Option<Value> {
        let r = self
            .request(i, "GET", "/api/v11/consensus/status", None, REQUEST_TIMEOUT)
            .ok()?;
        (r.status == 200)
            .then(|| serde_json::from_slice(&r.body).ok())
            .flatten()
    }

    pub fn status(&self, i: usize) -> Value {
        self.get_json(i, "/api/v11/consensus/status")
    }

    /// The node that leads `shard`: one that reports itself its leader (the highest term
    /// wins when a deposed leader has not noticed yet), among the live nodes.
    pub fn leader_of(&self, shard: u32) -> Option<usize> {
        self.live()
            .into_iter()
            .filter_map(|i| {
                let status = self.try_status(i)?;
                let s = shard_status(&status, shard)?;
                (s["role"] == "LEADER").then(|| (s["term"].as_u64().unwrap_or(0), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Polls until some live node leads `shard`.
    pub fn wait_leader(&self, shard: u32) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.leader_of(shard) {
                return i;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no leader of shard {shard}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until every live, unpartitioned node reports, for every shard, the same leader,
    /// and that leader reports itself `LEADER` of it. Returns the leader (node index) per shard.
    pub fn wait_leaders(&self) -> Vec<usize> {
        self.wait_leaders_until(Instant::now() + WAIT)
    }

    fn wait_leaders_until(&self, deadline: Instant) -> Vec<usize> {
        loop {
            if let Some(leaders) = self.agreed_leaders() {
                return leaders;
            }
            if Instant::now() > deadline {
                self.fail("the nodes do not agree on a leader for every shard");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn agreed_leaders(&self) -> Option<Vec<usize>> {
        let nodes: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|&i| !self.is_partitioned(i))
            .collect();
        let statuses: Vec<Value> = nodes
            .iter()
            .map(|&i| self.try_status(i))
            .collect::<Option<_>>()?;
        (0..self.shards)
            .map(|shard| {
                let mut leader = None;
                for s in &statuses {
                    let id = shard_status(s, shard)?["leader"].as_u64()?;
                    if *leader.get_or_insert(id) != id {
                        return None;
                    }
                }
                let index = usize::try_from(leader?).ok()?.checked_sub(1)?;
                let pos = nodes.iter().position(|&i| i == index)?;
                (shard_status(&statuses[pos], shard)?["role"] == "LEADER").then_some(index)
            })
            .collect()
    }

    fn wait_healthy(&self, i: usize, deadline: Instant) {
        self.wait_ok(i, "/api/v11/health", deadline);
    }

    /// Waits until node i answers 200 at `path`; fails if it exits or `deadline` passes.
    fn wait_ok(&self, i: usize, path: &str, deadline: Instant) {
        loop {
            if !self.is_live(i) {
                self.fail(&format!("node {i} exited during start-up"));
            }
            if let Ok(r) = self.request(i, "GET", path, None, REQUEST_TIMEOUT) {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("node {i}: no 200 at {path}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Submits one transfer through node i, resubmitting the same signed transfer after
    /// a 503 `NOT_LEADER`/`RETRY`/`OVERLOADED`/`SHUTTING_DOWN`, a timeout or a connection error, until
    /// it gets a 200 or `deadline` passes. Each attempt waits at most `attempt_timeout`.
    pub fn try_submit(
        &self,
        i: usize,
        record: &Record,
        deadline: Instant,
        attempt_timeout: Duration,
    ) -> Result<Submitted, String> {
        self.submitter()
            .try_submit(i, record, deadline, attempt_timeout)
    }

    /// [`Cluster::try_submit`] with a 30 s deadline; returns the 200 reply (check it with
    /// [`committed`]); panics with the logs when no 200 came.
    pub fn submit(&self, i: usize, record: &Record) -> Value {
        match self.try_submit(
            i,
            record,
            Instant::now() + Duration::from_secs(30),
            SUBMIT_ATTEMPT_TIMEOUT,
        ) {
            Ok(s) => s.reply,
            Err(e) => self.fail(&format!("submit {}: {e}", record.tx_hash().to_hex())),
        }
    }

    /// A handle that submits without borrowing the cluster (for load threads).
    pub fn submitter(&self) -> Submitter {
        Submitter {
            ports: self.nodes.iter().map(|m| m.http_port).collect(),
        }
    }

    /// `(balance of asset 0, nonce)` of `address` on node i.
    pub fn account(&self, i: usize, address: &Address) -> (u64, u64) {
        let v = self.get_json(i, &format!("/api/v11/accounts/{}", address.to_hex()));
        let number = |v: &Value| match v {
            Value::String(s) => s.parse().ok(),
            other => other.as_u64(),
        };
        (
            number(&v["balances"]["0"]).unwrap_or(0),
            number(&v["nonce"]).unwrap_or(0),
        )
    }

    /// `GET /api/v11/transactions/{txHash}` on node i: `Some(json)` on 200, `None` on 404.
    pub fn transaction(&self, i: usize, record: &Record) -> Option<Value> {
        let path = format!("/api/v11/transactions/{}", record.tx_hash().to_hex());
        match self.request(i, "GET", &path, None, REQUEST_TIMEOUT) {
            Ok(r) if r.status == 200 => Some(r.json()),
            Ok(r) if r.status == 404 => None,
            Ok(r) => self.fail(&format!(
                "node {i}: GET {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => self.fail(&format!("node {i}: GET {path}: {e}")),
        }
    }

    /// Polls until node i shows exactly these balances (asset 0).
    pub fn wait_balances(&self, i: usize, expect: &[(Address, u64)]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got: Vec<u64> = expect.iter().map(|(a, _)| self.account(i, a).0).collect();
            if got.iter().zip(expect).all(|(g, (_, e))| g == e) {
                return;
            }
            if Instant::now() > deadline {
                let diff: Vec<String> = got
                    .iter()
                    .zip(expect)
                    .filter(|(g, (_, e))| *g != e)
                    .map(|(g, (a, e))| format!("{}: {g} (expected {e})", a.to_hex()))
                    .collect();
                self.fail(&format!("node {i}: balances differ:\n{}", diff.join("\n")));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until, on every live node, every shard has the same `appliedIndex` and
    /// `stateHash` as on every other live node, and returns those statuses (in node order
    /// of [`Cluster::live`]). Partitioned nodes count: heal them first.
    pub fn wait_converged(&self) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let live = self.live();
            let statuses: Option<Vec<Value>> = live.iter().map(|&i| self.try_status(i)).collect();
            if let Some(statuses) = statuses {
                if converged(&statuses, self.shards) {
                    return statuses;
                }
            }
            if Instant::now() > deadline {
                self.fail(
                    "the replicas did not converge (equal appliedIndex and stateHash per shard)",
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    // ---- diagnostics ----

    /// Node i's whole log (every start of it).
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Every node's status (or why it has none), the proxies, and the tail of every log.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.nodes.iter().enumerate() {
            let status = match self.try_status(i) {
                Some(s) => s.to_string(),
                None => "(no status)".into(),
            };
            out.push_str(&format!(
                "--- node {i} (id {}, http {}, grpc {}, peer {}, {}{}): {status}\n",
                m.id,
                m.http_port,
                m.grpc_port,
                m.peer_port,
                if self.is_live(i) { "running" } else { "down" },
                if self.is_partitioned(i) {
                    ", partitioned"
                } else {
                    ""
                },
            ));
        }
        for row in &self.proxies {
            for p in row.iter().flatten() {
                out.push_str(&format!("{}\n", p.describe()));
            }
        }
        for (i, m) in self.nodes.iter().enumerate() {
            let log = self.log_text(i);
            let tail = tail(&log, LOG_TAIL_BYTES);
            out.push_str(&format!(
                "--- log of node {i} ({}), last {} of {} bytes:\n{tail}\n",
                m.log.display(),
                tail.len(),
                log.len()
            ));
        }
        out
    }

    /// Panics with `what` and [`Cluster::diagnostics`].
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.diagnostics())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `AURIGRAPH_TEST_DIAGNOSTICS=1 cargo test ... -- --nocapture` shows how a passing
        // test's cluster ended (statuses, proxies, logs).
        if std::env::var_os("AURIGRAPH_TEST_DIAGNOSTICS").is_some() {
            eprintln!("cluster at the end:\n{}", self.diagnostics());
        }
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        // The proxies stop when dropped (after this), then the lock is released.
    }
}

/// Submits without borrowing the [`Cluster`] (it is `Send` and `Clone`).
#[derive(Clone)]
pub struct Submitter {
    ports: Vec<u16>,
}

impl Submitter {
    pub fn try_submit(
        &self,
        i: usize,
        record: &Record,
        deadline: Instant,
        attempt_timeout: Duration,
    ) -> Result<Submitted, String> {
        submit_to(self.ports[i], record, deadline, attempt_timeout, u32::MAX)
            .map_err(|e| format!("node {i}: {e}"))
    }

    /// One attempt, no retry: `Err` on a timeout, a connection error or any non-200.
    pub fn submit_once(
        &self,
        i: usize,
        record: &Record,
        timeout: Duration,
    ) -> Result<Submitted, String> {
        submit_to(self.ports[i], record, Instant::now() + timeout, timeout, 1)
            .map_err(|e| format!("node {i}: {e}"))
    }
}

fn submit_to(
    port: u16,
    record: &Record,
    deadline: Instant,
    attempt_timeout: Duration,
    max_attempts: u32,
) -> Result<Submitted, String> {
    let body = crate::transfer_json(record).to_string().into_bytes();
    let mut attempts = 0;
    let mut last;
    loop {
        attempts += 1;
        let sent = Instant::now();
        let timeout = attempt_timeout
            .min(deadline.saturating_duration_since(sent))
            .max(Duration::from_millis(100));
        match http(port, "POST", "/api/v11/transactions", Some(&body), timeout) {
            Ok(r) if r.status == 200 => {
                let reply: Value = serde_json::from_slice(&r.body).map_err(|e| {
                    format!(
                        "200 without JSON ({e}): {}",
                        String::from_utf8_lossy(&r.body)
                    )
                })?;
                return Ok(Submitted {
                    reply,
                    attempts,
                    sent,
                    answered: Instant::now(),
                });
            }
            Ok(r) => {
                let text = String::from_utf8_lossy(&r.body).to_string();
                let code = serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                if r.status != 503 || !RETRYABLE.contains(&code.as_str()) {
                    return Err(format!(
                        "attempt {attempts}: HTTP {} (not retryable): {text}",
                        r.status
                    ));
                }
                last = format!("HTTP {} {text}", r.status);
            }
            // Timeouts, refused or reset connections: the node may be electing or forwarding
            // to a leader that just died. The transfer's nonce makes resubmitting harmless.
            Err(e) => last = format!("{e}"),
        }
        if Instant::now() >= deadline || attempts >= max_attempts {
            return Err(format!(
                "no 200 after {attempts} attempts; the last said: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status object of `shard` in a consensus status.
pub fn shard_status(status: &Value, shard: u32) -> Option<&Value> {
    status["shards"]
        .as_array()?
        .iter()
        .find(|s| s["shard"].as_u64() == Some(u64::from(shard)))
}

/// Every shard has the same applied index and state hash in every status.
pub fn converged(statuses: &[Value], shards: u32) -> bool {
    let Some(first) = statuses.first() else {
        return true;
    };
    (0..shards).all(|shard| {
        let key = |s: &Value| {
            let s = shard_status(s, shard)?;
            Some((
                s["appliedIndex"].as_u64()?,
                s["stateHash"].as_str()?.to_string(),
            ))
        };
        let Some(want) = key(first) else {
            return false;
        };
        statuses.iter().all(|s| key(s).as_ref() == Some(&want))
    })
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The `aurigraph node` flags that use `files`.
fn peer_tls_args(files: &PeerTlsFiles) -> Vec<String> {
    files
        .node_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

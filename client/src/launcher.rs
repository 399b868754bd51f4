//! Validators started as child processes (`aurigraph node`, the binary given), on loopback: for
//! `aurigraph bench` when it is not given --addresses (one, or `--nodes N`; the benchmark client
//! and the node it measures are separate processes, as in production) and `aurigraph cluster`.

use aurigraph_wire::genesis::Genesis;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child node may take to recover and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Validators a local cluster may have (one host: each is a process with its own cores).
pub const LOCAL_NODES_MAX: usize = 9;

/// What went wrong starting a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("--nodes {0}: a local cluster has 1 to {LOCAL_NODES_MAX} validators")]
    NodeCount(usize),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    WriteGenesis {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find own binary: {0}")]
    OwnBinary(std::io::Error),
    #[error("found no {count} consecutive free loopback ports in {}..{}", range.0, range.1)]
    NoFreePorts { count: usize, range: (u16, u16) },
    #[error("cannot create the node directory: {0}")]
    NodeDir(std::io::Error),
    #[error("cannot create {}: {source}", path.display())]
    CreateLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the peer certificates in {}: {message}", dir.display())]
    PeerCerts { dir: PathBuf, message: String },
    #[error("cannot start node {node}: {source}")]
    Spawn { node: u64, source: std::io::Error },
    #[error("node {node}: {reason}; its log:\n{log}")]
    NotStarted {
        node: u64,
        reason: String,
        log: String,
    },
}

/// One validator of a local cluster as it is started.
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub node_id: u64,
    pub http_addr: SocketAddr,
    /// gRPC address (`--grpc-addr`): a free port of its own, so that validators started at
    /// once never contend for the default one.
    pub grpc_addr: SocketAddr,
    /// Base peer address: core `c` listens on its port + `c` (none for a single validator).
    pub peer_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// How a local cluster's validators run, beyond their count.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaunchOptions<'a> {
    /// Executors per validator (see [`start_cluster`]).
    pub cores: Option<usize>,
    /// Tokens file every validator reads.
    pub tokens: Option<&'a Path>,
    /// Peer links as plain TCP instead of mutual TLS (to measure what TLS costs).
    pub plaintext_peers: bool,
    /// Heap each validator touches at start (`aurigraph node --heap-prefault-mib`).
    pub heap_prefault_mib: Option<u64>,
}

/// Where a local cluster keeps its development CA and peer certificates.
pub const PEER_CERTS_DIR: &str = "peer-certs";

/// The files `aurigraph certs --peer-ids` writes into its directory for validator `id`: the
/// CA every validator trusts, and the validator's own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PeerTlsFiles {
    pub fn new(dir: &Path, id: u64) -> PeerTlsFiles {
        PeerTlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("peer-{id}.pem")),
            key: dir.join(format!("peer-{id}-key.pem")),
        }
    }

    /// The `aurigraph node` flags that use them.
    pub fn node_args(&self) -> [std::ffi::OsString; 6] {
        [
            "--peer-ca".into(),
            self.ca.clone().into(),
            "--peer-cert".into(),
            self.cert.clone().into(),
            "--peer-key".into(),
            self.key.clone().into(),
        ]
    }
}

/// The running children of a local cluster; stopped (SIGTERM, then wait) on drop.
pub struct LocalCluster {
    pub nodes: Vec<LocalNode>,
    children: Vec<Child>,
}

impl LocalCluster {
    /// Base URLs of the validators' HTTP APIs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.http_addr))
            .collect()
    }

    /// Base URLs of the validators' gRPC listeners (`--grpc-addr`), in the same order.
    pub fn grpc_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.grpc_addr))
            .collect()
    }

    /// Whether every child is still running; the first that exited, with its status.
    pub fn exited(&mut self) -> Option<(u64, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .zip(&self.nodes)
            .find_map(|(c, n)| c.try_wait().ok().flatten().map(|s| (n.node_id, s)))
    }

    /// SIGTERM to every child, then waits for each (they drain and exit).
    pub fn stop(&mut self) {
        for child in &self.children {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `nodes` validators (ids 1..=nodes) as `exe node ...` (`exe`: the `aurigraph` binary)
/// on loopback in `dir` (`node-<id>/` each), all with `genesis`, each with `options.cores`
/// executors (default: all CPUs for one validator, an equal part of them, at least one, for
/// several); with more than one, every node lists the others in `--peers`, and their links
/// are mutual TLS with certificates of a development CA in `dir/peer-certs` (made by `exe
/// certs` when missing) unless `options.plaintext_peers`. Returns once every node's HTTP port
/// accepts connections.
pub fn start_cluster(
    exe: &Path,
    genesis: &Genesis,
    dir: &Path,
    nodes: usize,
    options: LaunchOptions<'_>,
) -> Result<LocalCluster, LaunchError> {
    let LaunchOptions {
        cores,
        tokens,
        plaintext_peers,
        heap_prefault_mib,
    } = options;
    if !(1..=LOCAL_NODES_MAX).contains(&nodes) {
        return Err(LaunchError::NodeCount(nodes));
    }
    // Validators sharing one host share its cores: by default each gets its part (at least
    // one), so that N validators do not run N times as many busy executors as there are CPUs.
    // The shards still match the host's CPUs, so that their leaders spread over validators.
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = cores.or((nodes > 1).then(|| (available / nodes).max(1)));
    let cores_per_node = cores.unwrap_or(available);
    let shards = genesis.shards.unwrap_or(available as u32);
    let genesis_path = dir.join("genesis.json");
    std::fs::create_dir_all(dir).map_err(|source| LaunchError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    std::fs::write(&genesis_path, genesis.to_canonical_json(shards)).map_err(|source| {
        LaunchError::WriteGenesis {
            path: genesis_path.clone(),
            source,
        }
    })?;
    let mut planned = Vec::with_capacity(nodes);
    let mut ports = FreePorts::new();
    for id in 1..=nodes as u64 {
        let http = ports.take(1)?;
        let grpc = ports.take(1)?;
        let peer = if nodes > 1 {
            Some(ports.take(cores_per_node)?)
        } else {
            None
        };
        let node_dir = dir.join(format!("node-{id}"));
        planned.push(LocalNode {
            node_id: id,
            http_addr: http,
            grpc_addr: grpc,
            peer_addr: peer,
            data_dir: node_dir.join("data"),
            log: node_dir.join("node.log"),
        });
    }
    drop(ports);
    let peer_certs = if nodes > 1 && !plaintext_peers {
        Some(ensure_peer_certs(
            exe,
            &dir.join(PEER_CERTS_DIR),
            nodes as u64,
        )?)
    } else {
        None
    };
    let peers = planned
        .iter()
        .filter_map(|n| n.peer_addr.map(|a| format!("{}={a}", n.node_id)))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = LocalCluster {
        nodes: Vec::new(),
        children: Vec::new(),
    };
    for node in &planned {
        std::fs::create_dir_all(node.log.parent().expect("node dir"))
            .map_err(LaunchError::NodeDir)?;
        let log = std::fs::File::create(&node.log).map_err(|source| LaunchError::CreateLog {
            path: node.log.clone(),
            source,
        })?;
        let mut cmd = Command::new(exe);
        cmd.arg("node")
            .arg("--node-id")
            .arg(node.node_id.to_string())
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--genesis")
            .arg(&genesis_path)
            .arg("--http-addr")
            .arg(node.http_addr.to_string())
            .arg("--grpc-addr")
            .arg(node.grpc_addr.to_string());
        if let Some(cores) = cores {
            cmd.arg("--cores").arg(cores.to_string());
        }
        if let Some(tokens) = tokens {
            cmd.arg("--tokens").arg(tokens);
        }
        if let Some(mib) = heap_prefault_mib {
            cmd.arg("--heap-prefault-mib").arg(mib.to_string());
        }
        if let Some(peer) = node.peer_addr {
            // Validators sharing this host share its cores: none of them pins.
            cmd.arg("--peer-addr")
                .arg(peer.to_string())
                .arg("--peers")
                .arg(&peers)
                .arg("--pin-cores")
                .arg("false");
            if let Some(certs) = &peer_certs {
                cmd.args(PeerTlsFiles::new(certs, node.node_id).node_args());
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                node: node.node_id,
                source,
            })?;
        cluster.children.push(child);
        cluster.nodes.push(node.clone());
    }
    for i in 0..cluster.nodes.len() {
        let port = cluster.nodes[i].http_addr.port();
        if let Err(e) = wait_until_listening(&mut cluster.children[i], port) {
            let node = &cluster.nodes[i];
            let mut text = String::new();
            let _ = std::fs::File::open(&node.log).and_then(|mut f| f.read_to_string(&mut text));
            return Err(LaunchError::NotStarted {
                node: node.node_id,
                reason: e,
                log: text,
            });
        }
    }
    Ok(cluster)
}

/// Starts `nodes` validators for `aurigraph bench --nodes N` (or `aurigraph loadtest`: `tag`
/// prefixes the messages).
pub fn start_nodes(
    tag: &str,
    exe: &Path,
    genesis: &Genesis,
    dir: &Path,
    nodes: usize,
    options: LaunchOptions<'_>,
) -> Result<crate::bench::StartedNode, LaunchError> {
    let cluster = start_cluster(exe, genesis, dir, nodes, options)?;
    for node in &cluster.nodes {
        eprintln!(
            "{tag}: validator {} at http://{}, gRPC http://{} (log: {})",
            node.node_id,
            node.http_addr,
            node.grpc_addr,
            node.log.display()
        );
    }
    match options.heap_prefault_mib {
        Some(mib) => eprintln!("{tag}: each validator warmed {mib} MiB of heap at start"),
        None => {
            eprintln!("{tag}: validators started with a cold heap (--node-heap-prefault-mib 0)")
        }
    }
    let urls = cluster.urls();
    let grpc_urls = cluster.grpc_urls();
    let mut cluster = cluster;
    Ok(crate::bench::StartedNode {
        urls,
        grpc_urls,
        stop: Box::new(move || cluster.stop()),
    })
}

/// Makes the peer certificates of validators 1..=nodes that `dir` lacks (`exe certs
/// --peer-ids`, which creates the CA or signs with the one there) and returns `dir`.
pub fn ensure_peer_certs(exe: &Path, dir: &Path, nodes: u64) -> Result<PathBuf, LaunchError> {
    let missing: Vec<String> = (1..=nodes)
        .filter(|&id| {
            let files = PeerTlsFiles::new(dir, id);
            !files.cert.exists() || !files.key.exists()
        })
        .map(|id| id.to_string())
        .collect();
    if !missing.is_empty() {
        let fail = |message: String| LaunchError::PeerCerts {
            dir: dir.to_path_buf(),
            message,
        };
        let out = Command::new(exe)
            .arg("certs")
            .arg("--dir")
            .arg(dir)
            .arg("--peer-ids")
            .arg(missing.join(","))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            return Err(fail(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
    }
    Ok(dir.to_path_buf())
}

/// Picks the loopback ports of a local cluster and holds each (bound) until dropped, so that
/// no two nodes get one port.
///
/// The ports come from below the kernel's ephemeral range ([`node_port_range`]): a port picked
/// inside it is free only until some `connect()` takes it as its source port, and the
/// validators started first connect to the later ones' peer ports over and over until those
/// listen; one such connection on a port of a later validator's peer range stops that
/// validator from starting (seen on a 16-CPU host, where the peer ranges are wide).
struct FreePorts {
    held: Vec<TcpListener>,
    cursor: PortCursor,
}

impl FreePorts {
    fn new() -> FreePorts {
        FreePorts {
            held: Vec::new(),
            cursor: PortCursor::new(),
        }
    }

    /// `count` consecutive free ports (returns the first), bound until `self` is dropped.
    fn take(&mut self, count: usize) -> Result<SocketAddr, LaunchError> {
        let (first, group) = self.cursor.bind_next(count, |_| true)?;
        self.held.extend(group);
        Ok(SocketAddr::from(([127, 0, 0, 1], first)))
    }
}

/// Walks [`node_port_range`] from a per-process starting point, wrapping at its end, for runs
/// of consecutive loopback ports that bind now (the launcher's clusters, and the test kit's
/// nodes).
pub struct PortCursor {
    range: (u16, u16),
    cursor: u16,
}

impl PortCursor {
    pub fn new() -> PortCursor {
        let range = node_port_range();
        // A per-process start, so that clusters started at once rarely try the same ports.
        let seed = u64::from(std::process::id()).wrapping_mul(7919)
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::from(d.subsec_nanos()));
        let cursor = range.0 + (seed % u64::from(range.1 - range.0)) as u16;
        PortCursor { range, cursor }
    }

    /// The next `count` consecutive ports, each accepted by `usable` and free: returns the
    /// first and their listeners, bound. One pass over the range at most.
    pub fn bind_next(
        &mut self,
        count: usize,
        usable: impl Fn(u16) -> bool,
    ) -> Result<(u16, Vec<TcpListener>), LaunchError> {
        let (low, high) = self.range;
        let none = || LaunchError::NoFreePorts {
            count,
            range: self.range,
        };
        let count = u16::try_from(count).map_err(|_| none())?;
        for _ in 0..(high - low) {
            let first = self.cursor;
            if u32::from(first) + u32::from(count) > u32::from(high) {
                self.cursor = low;
                continue;
            }
            self.cursor = first + count;
            if !(first..first + count).all(&usable) {
                continue;
            }
            let group: Option<Vec<TcpListener>> = (first..first + count)
                .map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
                .collect();
            if let Some(group) = group {
                return Ok((first, group));
            }
        }
        Err(none())
    }
}

impl Default for PortCursor {
    fn default() -> Self {
        PortCursor::new()
    }
}

/// Where the ports of local validators are picked, `low..high`: the 12,000 ports below the
/// kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which `connect()` never hands
/// out as source ports, when that leaves them above 1024; else the upper part of the
/// ephemeral range itself.
pub fn node_port_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if ephemeral.0 >= 13_100 {
        (ephemeral.0 - 12_000, ephemeral.0)
    } else {
        (40_000, 60_000)
    }
}

fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the node exited during start-up ({status})"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the node did not listen within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ports_are_below_the_ephemeral_range_and_never_shared() {
        let (low, high) = node_port_range();
        assert!(low > 1024 && low < high);
        let mut ports = FreePorts::new();
        let peer = ports.take(5).unwrap();
        let http = ports.take(1).unwrap();
        for first in [peer.port(), http.port()] {
            assert!(
                (low..high).contains(&first),
                "{first} outside {low}..{high}"
            );
        }
        assert!(http.port() < peer.port() || http.port() >= peer.port() + 5);
        // Held until dropped: nobody else can bind them meanwhile.
        for port in peer.port()..peer.port() + 5 {
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_err(),
                "{port} is free"
            );
        }
        drop(ports);
        assert!(TcpListener::bind(http).is_ok());
    }

    #[test]
    fn a_range_too_wide_for_the_ports_is_an_error() {
        let mut ports = FreePorts::new();
        let err = ports.take(usize::from(u16::MAX) + 1).unwrap_err();
        assert!(
            err.to_string().contains("consecutive free loopback ports"),
            "{err}"
        );
    }
}

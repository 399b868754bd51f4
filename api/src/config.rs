//! Node configuration: command-line flags, environment variables, a TOML file, defaults — in
//! that order of precedence (a flag beats its environment variable, which beats the file).

use aurigraph_net::beacon::source::BeaconSource;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_DATA_DIR: &str = "./aurigraph-data";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9003";
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:9004";

/// `aurigraph node` flags. Every flag also reads an `AURIGRAPH_*` environment variable.
#[derive(Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// TOML configuration file (keys: data_dir, genesis, http_addr, grpc_addr, peer_addr,
    /// node_id, peers, cores, pin_cores, log_format, body_bytes_max, connections_max_per_core,
    /// snapshot_interval_entries, recent_transactions_per_shard).
    #[arg(long, env = "AURIGRAPH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (created on first start) [default: ./aurigraph-data].
    #[arg(long, env = "AURIGRAPH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Genesis JSON, needed when the data directory is created. Without it, a development chain
    /// with a funded key (written into the data directory) is created.
    #[arg(long, env = "AURIGRAPH_GENESIS", value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:9003].
    #[arg(long, env = "AURIGRAPH_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC address [default: 127.0.0.1:9004] (gRPC is not served by this version yet).
    #[arg(long, env = "AURIGRAPH_GRPC_ADDR", value_name = "HOST:PORT")]
    pub grpc_addr: Option<SocketAddr>,
    /// Validator-to-validator address (replication is not in this version yet).
    #[arg(long, env = "AURIGRAPH_PEER_ADDR", value_name = "HOST:PORT")]
    pub peer_addr: Option<SocketAddr>,
    /// This validator's id (>= 1) [default: 1].
    #[arg(long, env = "AURIGRAPH_NODE_ID", value_name = "N")]
    pub node_id: Option<u64>,
    /// The other validators, `ID=HOST:PORT,...` (replication is not in this version yet).
    #[arg(long, env = "AURIGRAPH_PEERS", value_name = "ID=HOST:PORT,...")]
    pub peers: Option<String>,
    /// Executors (one per core) [default: the number of CPUs available].
    #[arg(long, env = "AURIGRAPH_CORES", value_name = "N")]
    pub cores: Option<usize>,
    /// Pin executor i to CPU i (for dedicated bare-metal hosts).
    #[arg(long, env = "AURIGRAPH_PIN_CORES")]
    pub pin_cores: Option<bool>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "AURIGRAPH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// The TOML file: the same settings as the flags, plus the limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub genesis: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    pub node_id: Option<u64>,
    pub peers: Option<String>,
    pub cores: Option<usize>,
    pub pin_cores: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub body_bytes_max: Option<usize>,
    pub connections_max_per_core: Option<usize>,
    pub snapshot_interval_entries: Option<u64>,
    pub recent_transactions_per_shard: Option<usize>,
    /// `[[beacon]]` sections: randomness-beacon sources in priority order (none by default, so
    /// that a default node never reaches beyond loopback and serves the local fallback).
    #[serde(default)]
    pub beacon: Vec<BeaconSource>,
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub genesis: Option<PathBuf>,
    pub http_addr: SocketAddr,
    /// Reserved for the gRPC API (not served by this version); parsed and validated now so that
    /// configurations written today keep working.
    #[allow(dead_code)]
    pub grpc_addr: SocketAddr,
    pub node_id: u64,
    pub cores: usize,
    pub pin_cores: bool,
    pub log_format: LogFormat,
    pub body_bytes_max: usize,
    pub connections_max_per_core: usize,
    pub snapshot_interval_entries: u64,
    pub recent_transactions_per_shard: usize,
    /// Randomness-beacon sources, validated, in priority order (empty by default).
    pub beacon: Vec<BeaconSource>,
}

/// Upper bound on executors (bounds threads and per-core tables).
pub const CORES_MAX: usize = 256;

impl NodeConfig {
    pub fn resolve(args: &NodeArgs) -> Result<NodeConfig, String> {
        let mut file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        // A beacon's certificate and TLS-root paths are relative to the configuration file.
        if let Some(dir) = args.config.as_deref().and_then(Path::parent) {
            for source in &mut file.beacon {
                for path in [&mut source.certificate, &mut source.tls_root] {
                    if let Some(p) = path.as_mut().filter(|p| p.is_relative()) {
                        *p = dir.join(&*p);
                    }
                }
            }
        }
        if let Some(peers) = args.peers.as_ref().or(file.peers.as_ref()) {
            if !peers.trim().is_empty() {
                return Err(format!(
                    "--peers {peers}: this version runs a single validator; replication across \
                     validators is not available yet"
                ));
            }
        }
        if args.peer_addr.or(file.peer_addr).is_some() {
            return Err(
                "--peer-addr: this version runs a single validator; replication across validators \
                 is not available yet"
                    .into(),
            );
        }
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = args.cores.or(file.cores).unwrap_or(available);
        if cores == 0 || cores > CORES_MAX {
            return Err(format!(
                "--cores {cores}: must be between 1 and {CORES_MAX}"
            ));
        }
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id == 0 {
            return Err("--node-id 0: node ids start at 1".into());
        }
        let body_bytes_max = file.body_bytes_max.unwrap_or(16 << 20);
        if body_bytes_max < 1024 {
            return Err(format!(
                "body_bytes_max {body_bytes_max}: must be at least 1024"
            ));
        }
        for source in &file.beacon {
            source.validate().map_err(|e| format!("[[beacon]]: {e}"))?;
        }
        aurigraph_net::beacon::client::state_for(&file.beacon)
            .map_err(|e| format!("[[beacon]]: {e}"))?;
        Ok(NodeConfig {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            genesis: args.genesis.clone().or(file.genesis),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| DEFAULT_HTTP_ADDR.parse().expect("valid")),
            grpc_addr: args
                .grpc_addr
                .or(file.grpc_addr)
                .unwrap_or_else(|| DEFAULT_GRPC_ADDR.parse().expect("valid")),
            node_id,
            cores,
            pin_cores: args.pin_cores.or(file.pin_cores).unwrap_or(false),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            body_bytes_max,
            connections_max_per_core: file.connections_max_per_core.unwrap_or(4096).max(1),
            snapshot_interval_entries: file.snapshot_interval_entries.unwrap_or(20_000).max(1),
            recent_transactions_per_shard: file.recent_transactions_per_shard.unwrap_or(262_144),
            beacon: file.beacon,
        })
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let c = NodeConfig::resolve(&NodeArgs::default()).unwrap();
        assert_eq!(c.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.node_id, 1);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "http_addr = \"127.0.0.1:7000\"\ncores = 3\n").unwrap();
        let mut args = NodeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(c.http_addr.port(), 7000);
        assert_eq!(c.cores, 3);
        args.cores = Some(2);
        assert_eq!(NodeConfig::resolve(&args).unwrap().cores, 2);
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "bogus = 1\n").unwrap();
        let args = NodeArgs {
            config: Some(file),
            ..Default::default()
        };
        assert!(NodeConfig::resolve(&args).unwrap_err().contains("bogus"));
        let args = NodeArgs {
            cores: Some(0),
            ..Default::default()
        };
        assert!(NodeConfig::resolve(&args).unwrap_err().contains("--cores"));
        let args = NodeArgs {
            peers: Some("2=127.0.0.1:9100".into()),
            ..Default::default()
        };
        assert!(NodeConfig::resolve(&args)
            .unwrap_err()
            .contains("single validator"));
    }

    #[test]
    fn beacon_sources_default_to_none_and_are_validated() {
        assert!(NodeConfig::resolve(&NodeArgs::default())
            .unwrap()
            .beacon
            .is_empty());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        let args = NodeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        std::fs::write(
            &file,
            "[[beacon]]\nname = \"curby\"\nkind = \"CURBy-RNG\"\nbase_url = \"https://127.0.0.1:8443/api\"\n\
             tls_root = \"/etc/mirror-ca.pem\"\n\n\
             [[beacon]]\nname = \"nist\"\nkind = \"NIST\"\nbase_url = \"https://127.0.0.1:8443/nist\"\n\
             certificate = \"nist.pem\"\ncache_capacity = 4\n",
        )
        .unwrap();
        let c = NodeConfig::resolve(&args).unwrap();
        let names: Vec<_> = c.beacon.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["curby", "nist"]);
        assert_eq!(c.beacon[1].cache_capacity, 4);
        assert_eq!(c.beacon[1].certificate, Some(dir.path().join("nist.pem")));
        assert_eq!(c.beacon[0].tls_root, Some("/etc/mirror-ca.pem".into()));

        std::fs::write(
            &file,
            "[[beacon]]\nname = \"curby\"\nkind = \"CURBy-RNG\"\nbase_url = \"http://127.0.0.1:8080\"\n",
        )
        .unwrap();
        assert!(NodeConfig::resolve(&args).unwrap_err().contains("https://"));
        std::fs::write(
            &file,
            "[[beacon]]\nname = \"a\"\nkind = \"CURBy-RNG\"\nbase_url = \"https://h\"\n\
             [[beacon]]\nname = \"a\"\nkind = \"CURBy-RNG\"\nbase_url = \"https://h\"\n",
        )
        .unwrap();
        assert!(NodeConfig::resolve(&args).unwrap_err().contains("twice"));
    }

    /// The shipped example names the real beacons; it is only parsed here, never contacted.
    #[test]
    fn example_beacon_config_resolves() {
        let file =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/node-beacon.toml");
        let args = NodeArgs {
            config: Some(file),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        let urls: Vec<_> = c.beacon.iter().map(|s| s.base_url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://random.colorado.edu/api",
                "https://beacon.nist.gov/beacon/2.0"
            ]
        );
        assert_eq!(
            c.beacon[0].pinned_chain_cid(),
            aurigraph_net::beacon::twine::CURBY_RNG_CHAIN_CID
        );
    }
}

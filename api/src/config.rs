//! Node configuration: command-line flags, environment variables, a TOML file, defaults — in
//! that order of precedence (a flag beats its environment variable, which beats the file).

use aurigraph_beacon::source::BeaconSource;
use aurigraph_wire::limits::{BODY_BYTES_MAX, BODY_BYTES_MAX_MIN};
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
    /// admin_addr, cors_allow_origins, node_id, peers, peer_ca, peer_cert, peer_key,
    /// allow_plaintext_peers, cores, pin_cores, heap_prefault_mib,
    /// log_format, tokens, tls_cert, tls_key, body_bytes_max,
    /// connections_max_per_core, connections_per_ip_max_per_core, idle_timeout_ms,
    /// header_read_timeout_ms, body_read_timeout_ms, body_rate_bytes_per_s_min,
    /// body_bytes_budget_per_core, requests_per_s_per_ip, request_burst_per_ip,
    /// requests_per_s_per_token, request_burst_per_token,
    /// snapshot_interval_entries, snapshot_interval_bytes, snapshot_write_bytes_per_sec,
    /// snapshot_piece_bytes,
    /// ready_cycles_in_flight_max, archive_url, redis_url, redis_stream_len_max,
    /// redis_status_ttl_s, sink_retain_bytes_max, grpc_events_retain_bytes_max,
    /// recent_transactions_per_shard,
    /// verify_slice_signatures, verify_slice_signatures_backlogged, verify_help_signatures_min).
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
    /// A separate listener for the admin endpoints (membership changes), e.g. on a management
    /// network or loopback; the public listener then answers 404 for them. Served by core 0,
    /// with the same TLS and tokens. Without it, one listener serves everything.
    #[arg(long, env = "AURIGRAPH_ADMIN_ADDR", value_name = "HOST:PORT")]
    pub admin_addr: Option<SocketAddr>,
    /// gRPC address [default: 127.0.0.1:9004] (gRPC is not served by this version yet).
    #[arg(long, env = "AURIGRAPH_GRPC_ADDR", value_name = "HOST:PORT")]
    pub grpc_addr: Option<SocketAddr>,
    /// Bytes of applied blocks the gRPC event stream holds to resume from [default: 64 MiB].
    #[arg(long, env = "AURIGRAPH_GRPC_EVENTS_RETAIN_BYTES_MAX")]
    pub grpc_events_retain_bytes_max: Option<u64>,
    /// This validator's base peer address for replication: core c listens on PORT + c
    /// (needed with --peers, or given by this node's own --peers entry).
    #[arg(long, env = "AURIGRAPH_PEER_ADDR", value_name = "HOST:PORT")]
    pub peer_addr: Option<SocketAddr>,
    /// This validator's id (>= 1) [default: 1].
    #[arg(long, env = "AURIGRAPH_NODE_ID", value_name = "N")]
    pub node_id: Option<u64>,
    /// The cluster's validators, `ID=HOST:PORT,...` (base peer addresses; this node's own entry
    /// may be listed). Every shard is replicated on all of them; without it, a single validator.
    #[arg(long, env = "AURIGRAPH_PEERS", value_name = "ID=HOST:PORT,...")]
    pub peers: Option<String>,
    /// Certificates trusted for peer links (PEM): the cluster CA, or every validator's pinned
    /// self-signed certificate. With --peer-cert and --peer-key every peer link is mutual TLS
    /// 1.3 and a peer must present a certificate for its node id (`node-<id>.aurigraph`).
    /// `aurigraph certs --peer-ids 1,2,3` makes a development set. Reloaded on SIGHUP.
    #[arg(
        long,
        env = "AURIGRAPH_PEER_CA",
        value_name = "FILE",
        requires_all = ["peer_cert", "peer_key"]
    )]
    pub peer_ca: Option<PathBuf>,
    /// This validator's peer certificate chain (PEM, its certificate first); with --peer-ca.
    #[arg(
        long,
        env = "AURIGRAPH_PEER_CERT",
        value_name = "FILE",
        requires_all = ["peer_ca", "peer_key"]
    )]
    pub peer_cert: Option<PathBuf>,
    /// The peer certificate's private key (PEM); with --peer-ca.
    #[arg(
        long,
        env = "AURIGRAPH_PEER_KEY",
        value_name = "FILE",
        requires_all = ["peer_ca", "peer_cert"]
    )]
    pub peer_key: Option<PathBuf>,
    /// Run peer links as plain, unauthenticated TCP even to addresses beyond loopback (only on
    /// a network where nobody else can reach the peer ports). Without peer TLS, a node refuses
    /// to start with a non-loopback peer address unless this is given.
    #[arg(long, env = "AURIGRAPH_ALLOW_PLAINTEXT_PEERS")]
    pub allow_plaintext_peers: bool,
    /// Join a running cluster: start outside every shard's group (the validators listed in
    /// --peers form it) until `aurigraph validators add` makes this validator a learner.
    #[arg(long, env = "AURIGRAPH_JOIN")]
    pub join: bool,
    /// Executors (one per core) [default: the number of CPUs available].
    #[arg(long, env = "AURIGRAPH_CORES", value_name = "N")]
    pub cores: Option<usize>,
    /// Pin executor i to the i-th CPU the process may run on [default: true when --cores is
    /// every CPU available (the host's only validator), false otherwise (validators sharing a
    /// host)].
    #[arg(long, env = "AURIGRAPH_PIN_CORES", value_name = "BOOL")]
    pub pin_cores: Option<bool>,
    /// Touch this many MiB of heap at start, then free it, so that the memory the node takes
    /// under load is warm (in a VM, first touches of memory the guest has not used lately cost
    /// several times more; docs/operations.md) [default: 0, off].
    #[arg(long, env = "AURIGRAPH_HEAP_PREFAULT_MIB", value_name = "MIB")]
    pub heap_prefault_mib: Option<u64>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "AURIGRAPH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Tokens file (gateway mode): the SHA-256 of each bearer token this node accepts, with
    /// its role and name (`aurigraph token new` makes one). Without it gateway mode is off.
    #[arg(long, env = "AURIGRAPH_TOKENS", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// TLS certificate chain (PEM, the node's certificate first) for the HTTP API; with
    /// --tls-key. Without both the API is plaintext (the loopback development default).
    /// Reloaded from the same files on SIGHUP. `aurigraph certs` makes a development pair.
    #[arg(
        long,
        env = "AURIGRAPH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); with --tls-cert.
    #[arg(
        long,
        env = "AURIGRAPH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
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
    pub admin_addr: Option<SocketAddr>,
    /// Origins whose web pages may read the API's answers (CORS); none by default.
    pub cors_allow_origins: Option<Vec<String>>,
    pub grpc_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    pub node_id: Option<u64>,
    pub peers: Option<String>,
    pub peer_ca: Option<PathBuf>,
    pub peer_cert: Option<PathBuf>,
    pub peer_key: Option<PathBuf>,
    pub allow_plaintext_peers: Option<bool>,
    pub cores: Option<usize>,
    pub pin_cores: Option<bool>,
    pub heap_prefault_mib: Option<u64>,
    pub log_format: Option<LogFormat>,
    pub tokens: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub body_bytes_max: Option<usize>,
    pub connections_max_per_core: Option<usize>,
    /// Client limits (docs/security.md has the table and the defaults).
    pub connections_per_ip_max_per_core: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub body_rate_bytes_per_s_min: Option<u64>,
    pub body_bytes_budget_per_core: Option<usize>,
    pub requests_per_s_per_ip: Option<u64>,
    pub request_burst_per_ip: Option<u64>,
    pub requests_per_s_per_token: Option<u64>,
    pub request_burst_per_token: Option<u64>,
    pub snapshot_interval_entries: Option<u64>,
    /// Bytes of applied entries between two snapshots (bounds the in-memory log; default
    /// 512 MiB, at least 1 MiB).
    pub snapshot_interval_bytes: Option<u64>,
    /// How fast a shard writes its snapshot's file to the disk, in paced pieces so that the
    /// WAL's group commits do not queue behind it (default 128 MiB/s; 0: unpaced).
    pub snapshot_write_bytes_per_sec: Option<u64>,
    /// Pieces a snapshot travels to a lagging validator in (256 B ..= 1 MiB; default 1 MiB).
    pub snapshot_piece_bytes: Option<usize>,
    /// Ready cycles of a shard staged and not yet durable (1 ..= 64; default 8; 1: each write
    /// durable before the next cycle starts).
    pub ready_cycles_in_flight_max: Option<usize>,
    pub recent_transactions_per_shard: Option<usize>,
    /// PostgreSQL archive of committed transfers (a connection string); absent: no archive.
    pub archive_url: Option<String>,
    /// Redis cache of committed transfers (`redis://host:port/db`); absent: no Redis sink.
    pub redis_url: Option<String>,
    /// The Redis stream's length, roughly (1 ..= 100,000,000; default 1,000,000).
    pub redis_stream_len_max: Option<u64>,
    /// How long a transfer's status stays in Redis, in seconds (1 ..= 2,592,000; default 86,400).
    pub redis_status_ttl_s: Option<u64>,
    /// Bytes of entries a shard applies past a local snapshot while it waits to save it until
    /// the sinks have written up to it (0 ..= 1 TiB; default 256 MiB; 0: never wait).
    pub sink_retain_bytes_max: Option<u64>,
    pub grpc_events_retain_bytes_max: Option<u64>,
    /// Signatures per batch equation between two yields of a core (1 ..= 256; default 64).
    pub verify_slice_signatures: Option<usize>,
    /// The same while submissions wait behind the one being verified (1 ..= 256; default 256).
    pub verify_slice_signatures_backlogged: Option<usize>,
    /// Signatures a submission needs at least before its shard asks the other cores to verify
    /// parts of it (0: never; else 128 ..= 65,536; default 128).
    pub verify_help_signatures_min: Option<usize>,
    pub stall_report_ms: Option<u64>,
    /// `[[beacon]]` sections: randomness-beacon sources in priority order (none by default, so
    /// that a default node never reaches beyond loopback and serves the local fallback).
    #[serde(default)]
    pub beacon: Vec<BeaconSource>,
}

/// A configuration the node cannot run with; every message names the flag, key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A setting out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    #[error("[[beacon]]: {0}")]
    Beacon(String),
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub genesis: Option<PathBuf>,
    pub http_addr: SocketAddr,
    /// The admin endpoints' own listener (`--admin-addr`); `None`: served on `http_addr`.
    pub admin_addr: Option<SocketAddr>,
    /// CORS (`cors_allow_origins`), validated; empty: off.
    pub cors: crate::http::cors::Cors,
    /// Reserved for the gRPC API (not served by this version); parsed and validated now so that
    /// configurations written today keep working.
    #[allow(dead_code)]
    pub grpc_addr: SocketAddr,
    pub node_id: u64,
    /// This validator's base peer address (core `c` listens on its port + `c`); `None` for a
    /// single validator.
    pub peer_addr: Option<SocketAddr>,
    /// The other validators, by node id, with their base peer addresses (empty: single
    /// validator). Sorted by id, this node excluded.
    pub peers: Vec<(u64, SocketAddr)>,
    /// Mutual TLS on peer links (`--peer-ca`, `--peer-cert`, `--peer-key`), loaded; `None`:
    /// plain TCP (loopback, or `--allow-plaintext-peers`).
    pub peer_tls: Option<std::sync::Arc<aurigraph_net::transport::PeerTls>>,
    /// Plain peer links beyond loopback allowed (`--allow-plaintext-peers`).
    pub allow_plaintext_peers: bool,
    /// Joining a running cluster (see `NodeArgs::join`).
    pub join: bool,
    pub cores: usize,
    pub pin_cores: bool,
    /// Heap touched at start (0: none).
    pub heap_prefault_bytes: usize,
    pub log_format: LogFormat,
    pub body_bytes_max: usize,
    pub connections_max_per_core: usize,
    pub client_limits: ClientLimits,
    pub snapshot_interval_entries: u64,
    pub snapshot_interval_bytes: u64,
    pub snapshot_write_bytes_per_sec: u64,
    pub snapshot_piece_bytes: usize,
    pub ready_cycles_in_flight_max: usize,
    pub recent_transactions_per_shard: usize,
    pub archive_url: Option<String>,
    /// The Redis sink: where, and how its keys are bounded (`None`: no Redis sink).
    pub redis: Option<(String, aurigraph_sinks::RedisOptions)>,
    pub sink_retain_bytes_max: u64,
    pub grpc_events_retain_bytes_max: u64,
    pub verify_slice_signatures: usize,
    pub verify_slice_signatures_backlogged: usize,
    pub verify_help_signatures_min: usize,
    /// Log a backtrace when a core's tasks overrun their quantum by this much (0: off).
    pub stall_report_ms: u64,
    /// Bearer tokens accepted (gateway mode), from `--tokens`; empty: gateway mode off.
    pub tokens: aurigraph_engine::tokens::Tokens,
    /// TLS on the HTTP API (`--tls-cert`, `--tls-key`), loaded; `None`: plaintext.
    pub tls: Option<std::sync::Arc<crate::http::tls::Tls>>,
    /// Randomness-beacon sources, validated, in priority order (empty by default).
    pub beacon: Vec<BeaconSource>,
}

/// Upper bound on executors (bounds threads and per-core tables).
pub const CORES_MAX: usize = 256;

/// Bound on `ready_cycles_in_flight_max`: each cycle in flight holds its messages to send.
pub const READY_CYCLES_IN_FLIGHT_LIMIT: usize = 64;

/// What bounds one client of the HTTP API (`aurigraph_api::http::limits`; the table with the
/// defaults is in docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub connections_per_ip_max_per_core: usize,
    pub idle_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub body_rate_bytes_per_s_min: u64,
    pub body_bytes_budget_per_core: usize,
    /// Requests a second per client address per core, and the burst; `None`: no limit.
    pub requests_per_s_per_ip: Option<(u64, u64)>,
    /// Requests a second per bearer token (its name) per core, and the burst; `None`: no limit.
    pub requests_per_s_per_token: Option<(u64, u64)>,
}

impl ClientLimits {
    /// The file's keys over the defaults; every one must be at least 1 (and the body budget
    /// must hold one body of `body_bytes_max`).
    fn resolve(file: &FileConfig, body_bytes_max: usize) -> Result<ClientLimits, ConfigError> {
        use crate::http::limits as l;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let limits = ClientLimits {
            connections_per_ip_max_per_core: file
                .connections_per_ip_max_per_core
                .unwrap_or(l::DEFAULT_CONNECTIONS_PER_IP_MAX_PER_CORE),
            idle_timeout_ms: file
                .idle_timeout_ms
                .unwrap_or(ms(crate::http::DEFAULT_IDLE_TIMEOUT)),
            header_read_timeout_ms: file
                .header_read_timeout_ms
                .unwrap_or(ms(l::DEFAULT_HEADER_READ_TIMEOUT)),
            body_read_timeout_ms: file
                .body_read_timeout_ms
                .unwrap_or(ms(l::DEFAULT_BODY_READ_TIMEOUT)),
            body_rate_bytes_per_s_min: file
                .body_rate_bytes_per_s_min
                .unwrap_or(l::DEFAULT_BODY_RATE_BYTES_PER_S_MIN),
            body_bytes_budget_per_core: file
                .body_bytes_budget_per_core
                .unwrap_or(l::DEFAULT_BODY_BYTES_BUDGET_PER_CORE),
            requests_per_s_per_ip: rate_and_burst(
                ("requests_per_s_per_ip", file.requests_per_s_per_ip),
                ("request_burst_per_ip", file.request_burst_per_ip),
            )?,
            requests_per_s_per_token: rate_and_burst(
                ("requests_per_s_per_token", file.requests_per_s_per_token),
                ("request_burst_per_token", file.request_burst_per_token),
            )?,
        };
        let zero = [
            (
                "connections_per_ip_max_per_core",
                limits.connections_per_ip_max_per_core as u64,
            ),
            ("idle_timeout_ms", limits.idle_timeout_ms),
            ("header_read_timeout_ms", limits.header_read_timeout_ms),
            ("body_read_timeout_ms", limits.body_read_timeout_ms),
            (
                "body_rate_bytes_per_s_min",
                limits.body_rate_bytes_per_s_min,
            ),
        ]
        .into_iter()
        .find(|&(_, value)| value == 0);
        if let Some((key, _)) = zero {
            return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
        }
        if limits.body_bytes_budget_per_core < body_bytes_max {
            return Err(ConfigError::Invalid(format!(
                "body_bytes_budget_per_core ({}) must hold one body of body_bytes_max ({body_bytes_max})",
                limits.body_bytes_budget_per_core
            )));
        }
        Ok(limits)
    }
}

impl NodeConfig {
    pub fn resolve(args: &NodeArgs) -> Result<NodeConfig, ConfigError> {
        let mut file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        // A beacon's certificate and TLS-root paths are relative to the configuration file.
        if let Some(dir) = args.config.as_deref().and_then(Path::parent) {
            for path in [
                &mut file.tokens,
                &mut file.tls_cert,
                &mut file.tls_key,
                &mut file.peer_ca,
                &mut file.peer_cert,
                &mut file.peer_key,
            ] {
                if let Some(p) = path.as_mut().filter(|p| p.is_relative()) {
                    *p = dir.join(&*p);
                }
            }
            for source in &mut file.beacon {
                for path in [&mut source.certificate, &mut source.tls_root] {
                    if let Some(p) = path.as_mut().filter(|p| p.is_relative()) {
                        *p = dir.join(&*p);
                    }
                }
            }
        }
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = args.cores.or(file.cores).unwrap_or(available);
        if cores == 0 || cores > CORES_MAX {
            return Err(ConfigError::Invalid(format!(
                "--cores {cores}: must be between 1 and {CORES_MAX}"
            )));
        }
        let heap_prefault_mib = args
            .heap_prefault_mib
            .or(file.heap_prefault_mib)
            .unwrap_or(0);
        let memory_mib = crate::heap::host_memory_mib();
        if memory_mib.is_some_and(|total| heap_prefault_mib > total / 2) {
            return Err(ConfigError::Invalid(format!(
                "--heap-prefault-mib {heap_prefault_mib}: more than half of this host's memory \
                 ({} MiB)",
                memory_mib.unwrap_or(0)
            )));
        }
        let heap_prefault_bytes = heap_prefault_mib
            .checked_mul(1 << 20)
            .and_then(|bytes| usize::try_from(bytes).ok())
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--heap-prefault-mib {heap_prefault_mib}: too large"
                ))
            })?;
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id == 0 {
            return Err(ConfigError::Invalid(
                "--node-id 0: node ids start at 1".into(),
            ));
        }
        let peers_text = args.peers.as_ref().or(file.peers.as_ref());
        if args.join && peers_text.is_none_or(|p| p.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "--join needs --peers: the validators of the cluster to join".into(),
            ));
        }
        let (peer_addr, peers) = resolve_peers(
            node_id,
            cores,
            args.peer_addr.or(file.peer_addr),
            peers_text.map(String::as_str),
        )?;
        let allow_plaintext_peers =
            args.allow_plaintext_peers || file.allow_plaintext_peers == Some(true);
        let peer_tls = resolve_peer_tls(
            node_id,
            args,
            &file,
            allow_plaintext_peers,
            peer_addr.iter().chain(peers.iter().map(|(_, a)| a)),
        )?;
        let snapshot_piece_bytes = file.snapshot_piece_bytes.unwrap_or(1 << 20);
        if !(256..=1 << 20).contains(&snapshot_piece_bytes) {
            return Err(ConfigError::Invalid(format!(
                "snapshot_piece_bytes {snapshot_piece_bytes}: must be between 256 and 1048576"
            )));
        }
        let recent_transactions_per_shard = file.recent_transactions_per_shard.unwrap_or(262_144);
        let recent_limit = aurigraph_engine::ledger::RECENT_TRANSACTIONS_LIMIT;
        if recent_transactions_per_shard > recent_limit {
            return Err(ConfigError::Invalid(format!(
                "recent_transactions_per_shard {recent_transactions_per_shard}: must be at most \
                 {recent_limit} (the window travels in every snapshot)"
            )));
        }
        use aurigraph_engine::runtime::ingress::{
            VERIFY_SLICE_SIGNATURES_DEFAULT, VERIFY_SLICE_SIGNATURES_MAX,
        };
        use aurigraph_engine::runtime::verify_help::VERIFY_HELP_SIGNATURES_MIN_DEFAULT;
        let slice = |key: &str, value: Option<usize>, default: usize| {
            let slice = value.unwrap_or(default);
            if (1..=VERIFY_SLICE_SIGNATURES_MAX).contains(&slice) {
                Ok(slice)
            } else {
                Err(ConfigError::Invalid(format!(
                    "{key} {slice}: must be between 1 and {VERIFY_SLICE_SIGNATURES_MAX}"
                )))
            }
        };
        let verify_slice_signatures = slice(
            "verify_slice_signatures",
            file.verify_slice_signatures,
            VERIFY_SLICE_SIGNATURES_DEFAULT,
        )?;
        let verify_slice_signatures_backlogged = slice(
            "verify_slice_signatures_backlogged",
            file.verify_slice_signatures_backlogged,
            VERIFY_SLICE_SIGNATURES_MAX,
        )?;
        let verify_help_signatures_min = file
            .verify_help_signatures_min
            .unwrap_or(VERIFY_HELP_SIGNATURES_MIN_DEFAULT);
        if verify_help_signatures_min != 0 && !(128..=65_536).contains(&verify_help_signatures_min)
        {
            return Err(ConfigError::Invalid(format!(
                "verify_help_signatures_min {verify_help_signatures_min}: must be 0 (never) or \
                 between 128 and 65536"
            )));
        }
        let ready_cycles_in_flight_max = file.ready_cycles_in_flight_max.unwrap_or(8);
        if !(1..=READY_CYCLES_IN_FLIGHT_LIMIT).contains(&ready_cycles_in_flight_max) {
            return Err(ConfigError::Invalid(format!(
                "ready_cycles_in_flight_max {ready_cycles_in_flight_max}: must be between 1 and \
                 {READY_CYCLES_IN_FLIGHT_LIMIT}"
            )));
        }
        let sink_retain_bytes_max = file.sink_retain_bytes_max.unwrap_or(256 << 20);
        if sink_retain_bytes_max > 1 << 40 {
            return Err(ConfigError::Invalid(format!(
                "sink_retain_bytes_max {sink_retain_bytes_max}: must be at most 1099511627776 \
                 (1 TiB)"
            )));
        }
        let grpc_events_retain_bytes_max = crate::events::retain_bytes_max(args, &file)?;
        let redis = match &file.redis_url {
            Some(url) => Some((url.clone(), crate::sinks::redis_options(&file)?)),
            None => None,
        };
        let tokens = match args.tokens.as_ref().or(file.tokens.as_ref()) {
            Some(path) => aurigraph_engine::tokens::Tokens::load(path)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?,
            None => aurigraph_engine::tokens::Tokens::default(),
        };
        let tls = match (
            args.tls_cert.as_ref().or(file.tls_cert.as_ref()),
            args.tls_key.as_ref().or(file.tls_key.as_ref()),
        ) {
            (Some(cert), Some(key)) => Some(std::sync::Arc::new(
                crate::http::tls::Tls::load(cert, key)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?,
            )),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "TLS needs both a certificate and its key (--tls-cert and --tls-key, or \
                     tls_cert and tls_key)"
                        .into(),
                ))
            }
        };
        let body_bytes_max = file.body_bytes_max.unwrap_or(BODY_BYTES_MAX);
        if body_bytes_max < BODY_BYTES_MAX_MIN {
            return Err(ConfigError::Invalid(format!(
                "body_bytes_max {body_bytes_max}: must be at least 1024"
            )));
        }
        let client_limits = ClientLimits::resolve(&file, body_bytes_max)?;
        let cors =
            crate::http::cors::Cors::parse(file.cors_allow_origins.as_deref().unwrap_or(&[]))
                .map_err(ConfigError::Invalid)?;
        let http_addr = args
            .http_addr
            .or(file.http_addr)
            .unwrap_or_else(|| DEFAULT_HTTP_ADDR.parse().expect("valid"));
        let admin_addr = args.admin_addr.or(file.admin_addr);
        if admin_addr
            .is_some_and(|a| a == http_addr || a.port() == http_addr.port() && a.port() != 0)
        {
            return Err(ConfigError::Invalid(format!(
                "--admin-addr {}: must be another port than --http-addr {http_addr}",
                admin_addr.expect("checked")
            )));
        }
        for source in &file.beacon {
            source
                .validate()
                .map_err(|e| ConfigError::Beacon(e.to_string()))?;
        }
        aurigraph_beacon::client::state_for(&file.beacon)
            .map_err(|e| ConfigError::Beacon(e.to_string()))?;
        Ok(NodeConfig {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            genesis: args.genesis.clone().or(file.genesis),
            http_addr,
            admin_addr,
            cors,
            grpc_addr: args
                .grpc_addr
                .or(file.grpc_addr)
                .unwrap_or_else(|| DEFAULT_GRPC_ADDR.parse().expect("valid")),
            node_id,
            peer_addr,
            peers,
            peer_tls,
            allow_plaintext_peers,
            join: args.join,
            cores,
            // A node that has every CPU it may run on is the host's only validator: pinned.
            // One given fewer shares the host (local clusters, tests): the OS places it.
            pin_cores: args
                .pin_cores
                .or(file.pin_cores)
                .unwrap_or(cores == available),
            heap_prefault_bytes,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            body_bytes_max,
            connections_max_per_core: file.connections_max_per_core.unwrap_or(4096).max(1),
            client_limits,
            snapshot_interval_entries: file.snapshot_interval_entries.unwrap_or(20_000).max(1),
            snapshot_interval_bytes: file
                .snapshot_interval_bytes
                .unwrap_or(512 << 20)
                .max(1 << 20),
            snapshot_write_bytes_per_sec: file
                .snapshot_write_bytes_per_sec
                .unwrap_or(aurigraph_engine::runtime::SNAPSHOT_WRITE_BYTES_PER_SEC_DEFAULT),
            snapshot_piece_bytes,
            ready_cycles_in_flight_max,
            recent_transactions_per_shard,
            archive_url: file.archive_url.clone(),
            redis,
            sink_retain_bytes_max,
            grpc_events_retain_bytes_max,
            verify_slice_signatures,
            verify_slice_signatures_backlogged,
            verify_help_signatures_min,
            stall_report_ms: file.stall_report_ms.unwrap_or(0),
            tokens,
            tls,
            beacon: file.beacon,
        })
    }
}

/// A request rate and its burst (which defaults to one second's worth), each at least 1; the
/// burst alone is an error.
fn rate_and_burst(
    (rate_key, rate): (&str, Option<u64>),
    (burst_key, burst): (&str, Option<u64>),
) -> Result<Option<(u64, u64)>, ConfigError> {
    match (rate, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::Invalid(format!(
            "{burst_key} needs {rate_key}"
        ))),
        (Some(0), _) => Err(ConfigError::Invalid(format!(
            "{rate_key} must be at least 1"
        ))),
        (Some(_), Some(0)) => Err(ConfigError::Invalid(format!(
            "{burst_key} must be at least 1"
        ))),
        (Some(rate), burst) => Ok(Some((rate, burst.unwrap_or(rate)))),
    }
}

/// Loads the peer TLS files when given (all three, or none); without them, peer links are plain
/// TCP, which is refused beyond loopback unless explicitly allowed.
fn resolve_peer_tls<'a>(
    node_id: u64,
    args: &NodeArgs,
    file: &FileConfig,
    allow_plaintext_peers: bool,
    mut addresses: impl Iterator<Item = &'a SocketAddr>,
) -> Result<Option<std::sync::Arc<aurigraph_net::transport::PeerTls>>, ConfigError> {
    let ca = args.peer_ca.as_ref().or(file.peer_ca.as_ref());
    let cert = args.peer_cert.as_ref().or(file.peer_cert.as_ref());
    let key = args.peer_key.as_ref().or(file.peer_key.as_ref());
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => {
            let tls = aurigraph_net::transport::PeerTls::load(node_id, ca, cert, key)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            Ok(Some(std::sync::Arc::new(tls)))
        }
        (None, None, None) => {
            if allow_plaintext_peers {
                return Ok(None);
            }
            match addresses.find(|a| !a.ip().is_loopback()) {
                Some(addr) => Err(ConfigError::Invalid(format!(
                    "peer address {addr} is beyond loopback: peer links there need mutual TLS \
                     (--peer-ca, --peer-cert and --peer-key; `aurigraph certs --peer-ids` makes \
                     a development set), or --allow-plaintext-peers on a network nobody else \
                     can reach"
                ))),
                None => Ok(None),
            }
        }
        _ => Err(ConfigError::Invalid(
            "peer TLS needs all of --peer-ca, --peer-cert and --peer-key (or peer_ca, \
             peer_cert and peer_key)"
                .into(),
        )),
    }
}

/// Validators by node id with their base peer addresses.
type Peers = Vec<(u64, SocketAddr)>;

/// Validators per cluster at most (bounds raft groups' voter sets and per-peer tables).
pub const VALIDATORS_MAX: usize = 64;

/// Parses `--peers ID=HOST:PORT,...` (this node may be listed: its entry must then agree with
/// `--peer-addr`, or gives it) and checks that the validators' peer port ranges — core `c` of a
/// validator uses its base port + `c` — never overlap on one host: the listeners use
/// `SO_REUSEPORT`, so an overlap would not fail to bind but silently share a port.
fn resolve_peers(
    node_id: u64,
    cores: usize,
    peer_addr: Option<SocketAddr>,
    text: Option<&str>,
) -> Result<(Option<SocketAddr>, Peers), ConfigError> {
    let text = text.map(str::trim).unwrap_or("");
    let mut all: Vec<(u64, SocketAddr)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("--peers: {entry:?} is not ID=HOST:PORT"))
        })?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|&id| id >= 1)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--peers: {entry:?}: the id must be an integer >= 1"
                ))
            })?;
        let addr: SocketAddr = addr.trim().parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "--peers: {entry:?}: {e} (expected HOST:PORT, an IP address)"
            ))
        })?;
        if all.iter().any(|(other, _)| *other == id) {
            return Err(ConfigError::Invalid(format!(
                "--peers: node id {id} is listed twice"
            )));
        }
        all.push((id, addr));
    }
    let own = all.iter().find(|(id, _)| *id == node_id).map(|(_, a)| *a);
    let peer_addr = match (peer_addr, own) {
        (Some(given), Some(listed)) if given != listed => {
            return Err(ConfigError::Invalid(format!(
                "--peer-addr {given} disagrees with this node's --peers entry {node_id}={listed}"
            )))
        }
        (given, listed) => given.or(listed),
    };
    let peers: Vec<(u64, SocketAddr)> = all.into_iter().filter(|(id, _)| *id != node_id).collect();
    if peers.is_empty() {
        return Ok((peer_addr, peers));
    }
    let Some(own_addr) = peer_addr else {
        return Err(ConfigError::Invalid(format!(
            "--peers without --peer-addr: node {node_id} needs its own peer address (give \
             --peer-addr HOST:PORT or list {node_id}=HOST:PORT in --peers)"
        )));
    };
    if peers.len() + 1 > VALIDATORS_MAX {
        return Err(ConfigError::Invalid(format!(
            "--peers: {} validators, at most {VALIDATORS_MAX}",
            peers.len() + 1
        )));
    }
    let cores = cores as u32;
    let mut ranges: Vec<(u64, SocketAddr)> = peers.clone();
    ranges.push((node_id, own_addr));
    for (id, addr) in &ranges {
        if u32::from(addr.port()) == 0 || u32::from(addr.port()) + cores - 1 > u32::from(u16::MAX) {
            return Err(ConfigError::Invalid(format!(
                "peer address {id}={addr}: ports {}..{} (one per core) must lie in 1..=65535",
                addr.port(),
                u32::from(addr.port()) + cores - 1
            )));
        }
    }
    for (i, (a_id, a)) in ranges.iter().enumerate() {
        for (b_id, b) in &ranges[i + 1..] {
            let (a_port, b_port) = (u32::from(a.port()), u32::from(b.port()));
            if a.ip() == b.ip() && a_port < b_port + cores && b_port < a_port + cores {
                return Err(ConfigError::Invalid(format!(
                    "peer addresses {a_id}={a} and {b_id}={b} overlap: each validator uses {cores} \
                     consecutive ports (one per core) from its base port"
                )));
            }
        }
    }
    let mut peers = peers;
    peers.sort_unstable();
    Ok((peer_addr, peers))
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_deployment_example_uses_only_known_keys_of_the_right_types() {
        let text = include_str!("../../deploy/examples/validator.toml");
        let file: FileConfig = toml::from_str(text).expect("deploy/examples/validator.toml");
        assert_eq!(file.node_id, Some(1));
        assert!(file.peers.as_deref().unwrap().contains("3=10.0.0.13:9100"));
        assert!(file.admin_addr.is_some() && file.tokens.is_some());
    }

    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let c = NodeConfig::resolve(&NodeArgs::default()).unwrap();
        assert_eq!(c.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.node_id, 1);
        assert_eq!(c.snapshot_write_bytes_per_sec, 128 << 20);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "http_addr = \"127.0.0.1:7000\"\ncores = 3\nsnapshot_write_bytes_per_sec = 0\n",
        )
        .unwrap();
        let mut args = NodeArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).unwrap();
        assert_eq!(c.http_addr.port(), 7000);
        assert_eq!(c.cores, 3);
        assert_eq!(c.snapshot_write_bytes_per_sec, 0, "0: unpaced");
        args.cores = Some(2);
        assert_eq!(NodeConfig::resolve(&args).unwrap().cores, 2);
    }

    #[test]
    fn heap_prefault_is_off_by_default_and_refused_beyond_half_the_hosts_memory() {
        assert_eq!(
            NodeConfig::resolve(&NodeArgs::default())
                .unwrap()
                .heap_prefault_bytes,
            0
        );
        let some = NodeArgs {
            heap_prefault_mib: Some(64),
            ..Default::default()
        };
        assert_eq!(
            NodeConfig::resolve(&some).unwrap().heap_prefault_bytes,
            64 << 20
        );
        let total = crate::heap::host_memory_mib().expect("/proc/meminfo");
        let too_much = NodeArgs {
            heap_prefault_mib: Some(total),
            ..Default::default()
        };
        let error = NodeConfig::resolve(&too_much).unwrap_err().to_string();
        assert!(error.contains("--heap-prefault-mib"), "{error}");
        assert!(error.contains("half of this host's memory"), "{error}");
    }

    #[test]
    fn a_node_with_every_cpu_pins_its_executors_one_that_shares_the_host_does_not() {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let all = NodeConfig::resolve(&NodeArgs::default()).unwrap();
        assert_eq!((all.cores, all.pin_cores), (available, true));
        let explicit = NodeArgs {
            pin_cores: Some(false),
            ..Default::default()
        };
        assert!(!NodeConfig::resolve(&explicit).unwrap().pin_cores);
        if available > 1 {
            let fewer = NodeArgs {
                cores: Some(available - 1),
                ..Default::default()
            };
            assert!(!NodeConfig::resolve(&fewer).unwrap().pin_cores);
        }
    }

    #[test]
    fn plaintext_peer_links_stay_on_loopback_unless_allowed() {
        let peers = |addr: &str| NodeArgs {
            node_id: Some(1),
            cores: Some(1),
            peers: Some(format!("1={addr}:7000,2={addr}:7100")),
            ..Default::default()
        };
        NodeConfig::resolve(&peers("127.0.0.1")).unwrap();
        let error = NodeConfig::resolve(&peers("10.0.0.1"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("10.0.0.1:7000"), "{error}");
        assert!(error.contains("--peer-ca"), "{error}");
        let allowed = NodeConfig::resolve(&NodeArgs {
            allow_plaintext_peers: true,
            ..peers("10.0.0.1")
        })
        .unwrap();
        assert!(allowed.allow_plaintext_peers && allowed.peer_tls.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "peer_ca = \"ca.pem\"\n").unwrap();
        let half = NodeConfig::resolve(&NodeArgs {
            config: Some(file),
            ..peers("127.0.0.1")
        })
        .unwrap_err()
        .to_string();
        assert!(half.contains("all of --peer-ca"), "{half}");
    }

    #[test]
    fn bad_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let redis = "redis_url = \"redis://127.0.0.1:6379/\"\n";
        for (key, bad_values, with) in [
            ("verify_slice_signatures", [0, 257], ""),
            ("verify_slice_signatures_backlogged", [0, 257], ""),
            ("verify_help_signatures_min", [1, 65_537], ""),
            ("ready_cycles_in_flight_max", [0, 65], ""),
            ("redis_stream_len_max", [0, 100_000_001], redis),
            ("redis_status_ttl_s", [0, 2_592_001], redis),
            (
                "sink_retain_bytes_max",
                [1 << 40 | 1, u32::MAX as u64 * 512],
                "",
            ),
            ("grpc_events_retain_bytes_max", [0, 1 << 40 | 1], ""),
        ] {
            for bad in bad_values {
                let file = dir.path().join("slice.toml");
                std::fs::write(&file, format!("{with}{key} = {bad}\n")).unwrap();
                let args = NodeArgs {
                    config: Some(file),
                    ..Default::default()
                };
                let error = NodeConfig::resolve(&args).unwrap_err().to_string();
                assert!(error.contains(&format!("{key} {bad}")), "{error}");
            }
        }
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "bogus = 1\n").unwrap();
        let args = NodeArgs {
            config: Some(file),
            ..Default::default()
        };
        assert!(NodeConfig::resolve(&args)
            .unwrap_err()
            .to_string()
            .contains("bogus"));
        let args = NodeArgs {
            cores: Some(0),
            ..Default::default()
        };
        assert!(NodeConfig::resolve(&args)
            .unwrap_err()
            .to_string()
            .contains("--cores"));
        let args = NodeArgs {
            peers: Some("2=127.0.0.1:9100".into()),
            ..Default::default()
        };
        assert!(NodeConfig::resolve(&args)
            .unwrap_err()
            .to_string()
            .contains("needs its own peer address"));
        // A window larger than a snapshot may carry is refused at start, not by an assertion.
        let file = dir.path().join("window.toml");
        std::fs::write(&file, "recent_transactions_per_shard = 4194305\n").unwrap();
        let args = NodeArgs {
            config: Some(file),
            ..Default::default()
        };
        let error = NodeConfig::resolve(&args).unwrap_err().to_string();
        assert!(error.contains("recent_transactions_per_shard"), "{error}");
    }

    #[test]
    fn peers_are_parsed_and_checked() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let three = "1=127.0.0.1:9100, 2=127.0.0.1:9110,3=127.0.0.1:9120";
        let (own, peers) = resolve_peers(2, 2, None, Some(three)).unwrap();
        assert_eq!(own, Some(addr("127.0.0.1:9110")));
        assert_eq!(
            peers,
            vec![(1, addr("127.0.0.1:9100")), (3, addr("127.0.0.1:9120"))]
        );
        // Single validator: nothing to check.
        assert_eq!(resolve_peers(1, 2, None, None).unwrap(), (None, vec![]));
        assert_eq!(
            resolve_peers(1, 2, None, Some("1=127.0.0.1:9100")).unwrap(),
            (Some(addr("127.0.0.1:9100")), vec![])
        );
        for (cores, own, text, expected) in [
            (2, None, "2=127.0.0.1:9100,2=127.0.0.1:9200", "listed twice"),
            (2, None, "0=127.0.0.1:9100", "integer >= 1"),
            (2, None, "x", "not ID=HOST:PORT"),
            (2, None, "2=localhost:9100", "expected HOST:PORT"),
            (2, None, "2=127.0.0.1:9100", "needs its own peer address"),
            (2, Some("127.0.0.1:9300"), "1=127.0.0.1:9100", "disagrees"),
            (2, None, "1=127.0.0.1:9100,2=127.0.0.1:9101", "overlap"),
            (4, None, "1=127.0.0.1:9100,2=127.0.0.1:9103", "overlap"),
            (2, None, "1=127.0.0.1:65535,2=127.0.0.1:9103", "1..=65535"),
        ] {
            let own = own.map(addr);
            let err = resolve_peers(1, cores, own, Some(text))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        // Different hosts may use the same ports.
        assert!(resolve_peers(1, 2, None, Some("1=127.0.0.1:9100,2=127.0.0.2:9100")).is_ok());
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
        assert!(NodeConfig::resolve(&args)
            .unwrap_err()
            .to_string()
            .contains("https://"));
        std::fs::write(
            &file,
            "[[beacon]]\nname = \"a\"\nkind = \"CURBy-RNG\"\nbase_url = \"https://h\"\n\
             [[beacon]]\nname = \"a\"\nkind = \"CURBy-RNG\"\nbase_url = \"https://h\"\n",
        )
        .unwrap();
        assert!(NodeConfig::resolve(&args)
            .unwrap_err()
            .to_string()
            .contains("twice"));
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
            aurigraph_beacon::twine::CURBY_RNG_CHAIN_CID
        );
    }
}

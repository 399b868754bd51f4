//! `aurigraph node`: starts the engine (one glommio executor per core) with an HTTP server on
//! every core, all bound to the same port (SO_REUSEPORT, a connection going to the core its
//! source port names: `http::steering`), and stops gracefully on SIGTERM/SIGINT.

use crate::config::{ConfigError, LogFormat, NodeArgs, NodeConfig};
use crate::http::in_flight::InFlightCounts;
use crate::http::{self, HttpSettings};
use aurigraph_beacon::client as beacon_client;
use aurigraph_engine::datadir::GENESIS_FILE;
use aurigraph_engine::genesis::{Allocation, Genesis, GenesisError};
use aurigraph_engine::record::address_of;
use aurigraph_engine::runtime::{CoreService, Engine, EngineConfig};
use aurigraph_engine::EngineError;
use aurigraph_net::transport::PeerTls;
use aurigraph_wire::keyfile::{self, KeyFileError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Chain id of the development chain created when no genesis is given.
pub const DEV_CHAIN_ID: u32 = 7;
pub const DEV_KEY_FILE: &str = "dev-key.json";
const DEV_FUNDS: u64 = 1_000_000_000_000;
/// Raft tick of a replicated node (a single validator keeps the engine's default).
const CLUSTER_RAFT_TICK: Duration = Duration::from_millis(25);
/// How long a graceful stop waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a node did not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory cannot be used (the message names it).
    #[error("{0}")]
    DataDir(String),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    WriteMarker {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read genesis {}: {source}", path.display())]
    ReadGenesis {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Genesis { path: PathBuf, source: GenesisError },
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("{0}")]
    BeaconState(beacon_client::ClientError),
    #[error("beacon client: {0}")]
    BeaconClient(beacon_client::ClientError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("the HTTP servers did not start within 10 s")]
    HttpStart,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("stopped with an error: {0}")]
    Stopped(EngineError),
}

impl NodeError {
    /// The process exit status for this error: [`EXIT_STALLED`] (70) when an executor stalled
    /// during start-up, like the runtime watchdog's (a supervisor restarts the node), 1
    /// otherwise.
    ///
    /// [`EXIT_STALLED`]: aurigraph_engine::runtime::watchdog::EXIT_STALLED
    pub fn exit_status(&self) -> u8 {
        match self {
            NodeError::Engine(EngineError::StartupStalled { .. }) => {
                aurigraph_engine::runtime::watchdog::EXIT_STALLED as u8
            }
            _ => 1,
        }
    }
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AURIGRAPH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a node until SIGTERM or SIGINT.
pub fn run(args: NodeArgs) -> Result<(), NodeError> {
    let mut config = NodeConfig::resolve(&args)?;
    config.data_dir =
        aurigraph_engine::datadir::absolute(&config.data_dir).map_err(NodeError::DataDir)?;
    init_logging(config.log_format);
    // Block the stop signals before any thread starts, so that every thread inherits the mask
    // and only the main thread receives them (SIGHUP: reload TLS; the others: stop).
    let signals = block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    let genesis = genesis_for(&config)?;
    let draining = Arc::new(AtomicBool::new(false));
    let in_flight: Arc<InFlightCounts> = Arc::default();
    // The beacon client: a plain thread (not on the engine's cores) writing the state the
    // randomness endpoints read. No source by default: nothing is fetched, the fallback is
    // served. Stopped (joined) on every return path by dropping it.
    let beacon = Arc::new(RwLock::new(
        beacon_client::state_for(&config.beacon).map_err(NodeError::BeaconState)?,
    ));
    let beacon_client = if config.beacon.is_empty() {
        None
    } else {
        let client = beacon_client::BeaconClient::spawn(
            &config.beacon,
            Arc::clone(&beacon),
            beacon_client::ClientOptions::default(),
        )
        .map_err(NodeError::BeaconClient)?;
        tracing::info!(sources = config.beacon.len(), "beacon client started");
        Some(client)
    };
    let (sinks, applied_taps) = crate::sinks::Sinks::start(&config);
    // Reads of the archive for the API: threads of their own (never a core), fed by a bounded
    // queue; stopped (joined) on every return path by dropping the pool.
    let archive_readers = config.archive_url.as_ref().map(|url| {
        aurigraph_sinks::ArchiveReaderPool::spawn(url, aurigraph_sinks::ReaderOptions::default())
    });
    let settings = HttpSettings {
        addr: config.http_addr,
        body_bytes_max: config.body_bytes_max,
        connections_max_per_core: config.connections_max_per_core,
        connections_per_ip_max_per_core: config.client_limits.connections_per_ip_max_per_core,
        idle_timeout: Duration::from_millis(config.client_limits.idle_timeout_ms),
        header_read_timeout: Duration::from_millis(config.client_limits.header_read_timeout_ms),
        body_deadline: crate::http::limits::BodyDeadline {
            grace: Duration::from_millis(config.client_limits.body_read_timeout_ms),
            rate_bytes_per_s_min: config.client_limits.body_rate_bytes_per_s_min,
        },
        body_bytes_budget_per_core: config.client_limits.body_bytes_budget_per_core,
        request_rate_per_ip: config
            .client_limits
            .requests_per_s_per_ip
            .map(crate::http::limits::RequestRate::from_pair),
        request_rate_per_token: config
            .client_limits
            .requests_per_s_per_token
            .map(crate::http::limits::RequestRate::from_pair),
        node_id: config.node_id,
        version: VERSION,
        draining: draining.clone(),
        in_flight: in_flight.clone(),
        data_dir: Some(config.data_dir.clone()),
        archive_reader: archive_readers.as_ref().map(|p| p.reader()),
        archive: sinks.archive.as_ref().map(|a| a.counters.clone()),
        redis: sinks.redis.as_ref().map(|r| r.counters.clone()),
        events: Some(sinks.events.hub().clone()),
        beacon,
        tokens: Arc::new(config.tokens.clone()),
        tls: config.tls.clone(),
        surface: if config.admin_addr.is_some() {
            http::Surface::Public
        } else {
            http::Surface::All
        },
        cors: Arc::new(config.cors.clone()),
        // One counter slot per core, so that the per-core figures are each core's own.
        metrics: Arc::new(http::Metrics::new(config.cores)),
        ..HttpSettings::new(config.http_addr)
    };
    // The admin listener: core 0 only (membership changes are rare), same TLS and tokens.
    let admin_settings = config.admin_addr.map(|addr| HttpSettings {
        addr,
        surface: http::Surface::Admin,
        checked_addr: Arc::default(),
        ..settings.clone()
    });
    // The gRPC listener (`--grpc-addr`): every core, same TLS, tokens and limits; the same
    // per-core server, which answers gRPC there and on the HTTP port.
    let grpc_settings = HttpSettings {
        addr: config.grpc_addr,
        surface: http::Surface::Grpc,
        checked_addr: Arc::default(),
        ..settings.clone()
    };
    // The HTTP and gRPC listeners of every core, made here in core order (the order steering by
    // source port relies on); a bind error stops the node before the engine starts.
    let http_sockets = CoreSockets::listen(&settings, config.cores)?;
    let grpc_sockets = CoreSockets::listen(&grpc_settings, config.cores)?;
    // Each core adopts its sockets (and core 0 binds the admin listener) and reports it; the
    // first error stops the node with its message.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<(), NodeError>>();
    let service: CoreService = Arc::new(move |core, engine| {
        let settings = settings.clone();
        let bound = bound_tx.clone();
        let admin = admin_settings.clone().filter(|_| core == 0);
        let grpc = grpc_settings.clone();
        let (http_socket, grpc_socket) = (http_sockets.take(core), grpc_sockets.take(core));
        Box::pin(async move {
            if let Some(listener) = adopt_reported(grpc_socket, &grpc, &bound) {
                let engine = engine.clone();
                glommio::spawn_local(http::serve_secondary(listener, core, engine, grpc)).detach();
            }
            if let Some(admin) = admin {
                if let Some(listener) = bind_reported(&admin, &bound) {
                    let engine = engine.clone();
                    glommio::spawn_local(http::serve_secondary(listener, core, engine, admin))
                        .detach();
                }
            }
            if let Some(listener) = adopt_reported(http_socket, &settings, &bound) {
                http::serve(listener, core, engine, settings).await;
            }
        })
    });
    if config.heap_prefault_bytes > 0 {
        let took = crate::heap::prefault(config.heap_prefault_bytes);
        tracing::info!(
            mib = config.heap_prefault_bytes >> 20,
            ms = took.as_millis() as u64,
            "heap prefaulted"
        );
    }
    tracing::info!(
        backend = aurigraph_wire::signature_backend::Ed25519Backend::detect().name(),
        "ed25519 signature verification"
    );
    let mut engine_config = EngineConfig::new(&config.data_dir, config.cores);
    engine_config.node_id = config.node_id;
    engine_config.pin_cores = config.pin_cores;
    engine_config.snapshot_interval_entries = config.snapshot_interval_entries;
    engine_config.snapshot_interval_bytes = config.snapshot_interval_bytes;
    engine_config.snapshot_write_bytes_per_sec = config.snapshot_write_bytes_per_sec;
    engine_config.ready_cycles_in_flight_max = config.ready_cycles_in_flight_max;
    engine_config.verify_slice_signatures = config.verify_slice_signatures;
    engine_config.verify_slice_signatures_backlogged = config.verify_slice_signatures_backlogged;
    engine_config.verify_help_signatures_min = config.verify_help_signatures_min;
    engine_config.stall_report_after = (config.stall_report_ms > 0)
        .then(|| std::time::Duration::from_millis(config.stall_report_ms));
    engine_config.raft_piece_bytes = config.snapshot_piece_bytes;
    engine_config.recent_transactions_per_shard = config.recent_transactions_per_shard;
    engine_config.applied_taps = applied_taps;
    engine_config.sink_retain_bytes_max = config.sink_retain_bytes_max;
    if !config.peers.is_empty() {
        engine_config.peers = config.peers.clone();
        engine_config.peer_addr = config.peer_addr;
        engine_config.peer_tls = config.peer_tls.clone();
        engine_config.allow_plaintext_peers = config.allow_plaintext_peers;
        engine_config.join = joined(&config)?;
        // Failover within about a second: 25 ms ticks, elections after 10-20 silent ticks
        // (250-500 ms), heartbeats every 2 (50 ms).
        engine_config.raft_tick = CLUSTER_RAFT_TICK;
        engine_config.election_ticks = 10;
        engine_config.heartbeat_ticks = 2;
    }
    engine_config.startup_timeout = std::env::var("AURIGRAPH_STARTUP_STALL_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(STARTUP_STALL_TIMEOUT, Duration::from_millis);
    let engine = Engine::start_with_services(engine_config, genesis.as_ref(), Some(service))?;
    sinks.engine_started(&engine);
    for _ in 0..2 * config.cores + usize::from(config.admin_addr.is_some()) {
        match bound_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                engine.shutdown();
                return Err(error);
            }
            Err(_) => {
                engine.shutdown();
                return Err(NodeError::HttpStart);
            }
        }
    }
    tracing::info!(
        http = %config.http_addr,
        grpc = %config.grpc_addr,
        data_dir = %config.data_dir.display(),
        chain_id = engine.chain_id(),
        shards = engine.shard_count(),
        cores = engine.cores(),
        "node ready: {}://{}/api/v11/health",
        if config.tls.is_some() { "https" } else { "http" },
        config.http_addr
    );
    if let Some(admin) = config.admin_addr {
        tracing::info!(%admin, "admin endpoints served on their own listener only");
    }
    if let Some(mount) = aurigraph_tuning::online_discard_mount(&config.data_dir) {
        tracing::warn!(
            %mount,
            "the data directory's file system is mounted with online discard: every WAL \
             segment and snapshot the node deletes then holds up its group commits \
             (`aurigraph tune check` says more; docs/operations.md, \"Host tuning\")"
        );
    }
    let notifier = Arc::new(crate::systemd::Notifier::from_env());
    notifier.notify("READY=1\nSTATUS=serving");
    let pinger = crate::systemd::watchdog_period()
        .filter(|_| notifier.is_active())
        .map(|period| {
            crate::systemd::WatchdogPinger::start(notifier.clone(), engine.beats(), period)
        });
    let signal = loop {
        match wait_for_signal(signals) {
            libc::SIGHUP => reload_tls(config.tls.as_deref(), config.peer_tls.as_deref()),
            signal => break signal_name(signal),
        }
    };
    tracing::info!(signal, "stopping: draining in-flight requests");
    notifier.notify("STOPPING=1\nSTATUS=draining");
    // The executors stop beating as they stop: not a stall to report.
    drop(pinger);
    draining.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while in_flight.total() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let left = in_flight.total();
    if left > 0 {
        tracing::warn!(left, "requests still in flight after the drain timeout");
    }
    if let Some(client) = beacon_client {
        client.stop();
        tracing::info!("beacon client stopped");
    }
    let stopped = engine.shutdown();
    drop(engine);
    if let Some(readers) = archive_readers {
        readers.stop();
        tracing::info!("archive readers stopped");
    }
    // The shards are stopped: each sink writes what it holds and ends.
    sinks.stop();
    match stopped {
        None => {
            tracing::info!("stopped");
            Ok(())
        }
        Some(error) => Err(NodeError::Stopped(error)),
    }
}

/// Marks a data directory whose validator joined a running cluster (`--join`).
const JOINED_MARKER: &str = "joined";

/// Whether this validator joined a running cluster: `--join` now, or at an earlier start of the
/// same data directory (recorded in it, so that a restart without the flag still starts from the
/// other validators' membership and replays the changes that added it).
fn joined(config: &NodeConfig) -> Result<bool, NodeError> {
    let marker = config.data_dir.join(JOINED_MARKER);
    if config.join && !marker.exists() {
        std::fs::create_dir_all(&config.data_dir)
            .and_then(|()| std::fs::write(&marker, b"this validator joined with --join\n"))
            .map_err(|source| NodeError::WriteMarker {
                path: marker.clone(),
                source,
            })?;
    }
    Ok(config.join || marker.exists())
}

/// How long an executor may take to recover its shards before the start counts as stalled.
const STARTUP_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The genesis to create the data directory with: the `--genesis` file, or (when the directory
/// has no genesis yet) a development genesis funding a new key written into the directory.
fn genesis_for(config: &NodeConfig) -> Result<Option<Genesis>, NodeError> {
    if let Some(path) = &config.genesis {
        return read_genesis(path).map(Some);
    }
    if config.data_dir.join(GENESIS_FILE).exists() {
        return Ok(None);
    }
    Ok(Some(development_genesis(&config.data_dir)?))
}

/// Reads and validates a genesis file.
pub fn read_genesis(path: &Path) -> Result<Genesis, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::ReadGenesis {
        path: path.to_path_buf(),
        source,
    })?;
    Genesis::from_json(&text).map_err(|source| NodeError::Genesis {
        path: path.to_path_buf(),
        source,
    })
}

/// The development genesis of `data_dir`: chain [`DEV_CHAIN_ID`] funding the key in
/// `data_dir/dev-key.json` (created, with the directory, when missing).
pub fn development_genesis(data_dir: &Path) -> Result<Genesis, NodeError> {
    std::fs::create_dir_all(data_dir).map_err(|source| NodeError::CreateDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let key_path = data_dir.join(DEV_KEY_FILE);
    let key = if key_path.exists() {
        keyfile::read_key(&key_path)?
    } else {
        let key = keyfile::generate();
        keyfile::write_key(&key_path, &key, false)?;
        key
    };
    let address = address_of(&key);
    tracing::info!(
        key = %key_path.display(),
        %address,
        amount = DEV_FUNDS,
        "development chain: the funded key is {}",
        key_path.display()
    );
    Ok(Genesis {
        chain_id: DEV_CHAIN_ID,
        controllers: Default::default(),
        shards: None,
        allocations: vec![Allocation {
            address,
            asset: 0,
            amount: DEV_FUNDS,
        }],
    })
}

/// Blocks SIGINT and SIGTERM on this thread (and the threads it starts later); returns the set
/// for [`wait_for_stop_signal_timeout`].
pub fn block_stop_signals() -> libc::sigset_t {
    block_signals(&[libc::SIGINT, libc::SIGTERM])
}

/// Blocks `signals` on this thread and the threads it starts later; returns the set.
fn block_signals(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a zeroed sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// SIGHUP: the TLS certificate and key are read again (new connections get them; connections
/// already established keep theirs). A pair that does not load leaves the one in force.
fn reload_tls(tls: Option<&http::tls::Tls>, peer_tls: Option<&PeerTls>) {
    if tls.is_none() && peer_tls.is_none() {
        tracing::info!("SIGHUP: no TLS configured, nothing to reload");
    }
    if let Some(tls) = tls {
        report_reload("TLS certificate and key", tls.reload());
    }
    if let Some(tls) = peer_tls {
        report_reload("peer CA, certificate and key", tls.reload());
    }
}

/// Logs the outcome of reloading `what` on SIGHUP.
fn report_reload(what: &str, result: Result<(), impl std::fmt::Display>) {
    match result {
        Ok(()) => tracing::info!("SIGHUP: {what} reloaded"),
        Err(error) => {
            tracing::error!(%error, "SIGHUP: reloading the {what} failed; the ones in force stay")
        }
    }
}

/// Binds one core's listener of `settings` (the admin listener, unsteered) and reports the
/// outcome on `bound` (the starting thread waits for one report per listener); `None` when it
/// could not bind.
fn bind_reported(
    settings: &HttpSettings,
    bound: &std::sync::mpsc::Sender<Result<(), NodeError>>,
) -> Option<glommio::net::TcpListener> {
    match http::bind(settings) {
        Ok(listener) => {
            let _ = bound.send(Ok(()));
            Some(listener)
        }
        Err(e) => {
            let _ = bound.send(Err(NodeError::Listen {
                addr: settings.addr,
                reason: e.to_string(),
            }));
            None
        }
    }
}

/// The listening sockets of one address, one per core (index = core): made on the starting
/// thread before the engine starts, each taken once by its core's service. Start-up only.
struct CoreSockets(Arc<[Mutex<Option<socket2::Socket>>]>);

impl CoreSockets {
    /// The node's `cores` listeners of `settings`, steered by source port; a failure is the
    /// node's [`NodeError::Listen`] (the message a core's own bind used to report).
    fn listen(settings: &HttpSettings, cores: usize) -> Result<CoreSockets, NodeError> {
        let sockets =
            http::steering::listen_steered(settings, cores).map_err(|e| NodeError::Listen {
                addr: settings.addr,
                reason: e.to_string(),
            })?;
        Ok(CoreSockets(
            sockets.into_iter().map(|s| Mutex::new(Some(s))).collect(),
        ))
    }

    /// Core `core`'s socket, the first time it is asked for.
    fn take(&self, core: usize) -> Option<socket2::Socket> {
        let slot = self.0.get(core)?;
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Turns one core's listening socket into its glommio listener (inside the core's executor:
/// a glommio listener belongs to the executor that makes it) and reports the outcome on
/// `bound` (the starting thread waits for one report per listener); `None` without a socket.
fn adopt_reported(
    socket: Option<socket2::Socket>,
    settings: &HttpSettings,
    bound: &std::sync::mpsc::Sender<Result<(), NodeError>>,
) -> Option<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let Some(socket) = socket else {
        let _ = bound.send(Err(NodeError::Listen {
            addr: settings.addr,
            reason: "no listening socket was made for this core".to_string(),
        }));
        return None;
    };
    // SAFETY: the descriptor is a bound, listening TCP socket that we own; its ownership moves
    // into the listener, which closes it on drop.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) };
    let _ = bound.send(Ok(()));
    Some(listener)
}

/// Waits for SIGINT or SIGTERM, giving up after `timeout` (`None`: no signal came).
pub fn wait_for_stop_signal_timeout(
    set: libc::sigset_t,
    timeout: Duration,
) -> Option<&'static str> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` holds blocked signals; sigtimedwait returns the one received or -1.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    matches!(signal, libc::SIGINT | libc::SIGTERM).then(|| signal_name(signal))
}

/// Waits for one of the blocked signals in `set`.
fn wait_for_signal(set: libc::sigset_t) -> libc::c_int {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` holds blocked signals; sigwait stores the one received.
    unsafe {
        libc::sigwait(&set, &mut signal);
    }
    signal
}

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

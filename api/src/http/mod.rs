//! The HTTP API (documented in `docs/api.md`): hyper 1.x on glommio, one server per core.
//!
//! Every core runs its own accept loop on the same address (`SO_REUSEPORT`), and serves each
//! connection on that core with HTTP/1.1 (keep-alive) or HTTP/2 (h2c with prior knowledge, told
//! apart by the connection preface). A new connection goes to the core `(source port / 2) mod
//! cores`: a classic BPF program on the cores' reuseport group picks it ([`steering`]), so a
//! client that picks its local port reaches the core that owns its shards
//! (`aurigraph_wire::steering`); clients that do not spread evenly over the cores.
//!
//! How a node uses it:
//! 1. [`steering::listen_steered`]`(&settings, cores)`, on the starting thread before the
//!    executors run: checks the address once for the whole node (a port taken by anything,
//!    another node that also uses `SO_REUSEPORT` included, is an error; port 0 is resolved to
//!    one free port that every core then shares), then makes the `cores` listeners in core order
//!    with the steering program attached. [`HttpSettings::bound_addr`] tells the address. Each
//!    core's engine service turns its socket into a glommio listener. ([`bind`] binds one
//!    core's listener from inside its executor, unsteered: the admin listener (core 0 only) and
//!    tests.)
//! 2. [`serve`]`(listener, core, engine, settings)` until draining.
//! 3. To stop: set [`HttpSettings::draining`] (cores stop accepting within [`server::DRAIN_POLL`];
//!    requests already running finish; new requests on open connections get 503
//!    `SHUTTING_DOWN` with `Connection: close`), wait for [`HttpSettings::in_flight`] to reach
//!    0, then stop the engine.
//!
//! Modules: [`routes`] (the route table and the endpoints, independent of sockets), [`types`]
//! (wire types, compact results format), [`error`] (the error shape and its codes),
//! [`metrics`] (measured figures and the `/metrics` exposition), [`io`] (glommio/hyper glue),
//! [`listen`] (the address check, listening sockets), [`server`] (accept loop, connections),
//! [`steering`] (listeners steered by source port),
//! [`openapi`] (the document the route table describes).

pub mod cors;
mod direct;
pub mod error;
pub mod in_flight;
pub mod io;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod steering;
pub mod tls;
pub mod types;

/// The media types of the binary endpoints (the wire contract, `aurigraph-wire`).
pub use aurigraph_wire::compact::{BATCH_MEDIA_TYPE, RESULTS_MEDIA_TYPE};
pub use listen::bind;
pub use metrics::Metrics;
pub use server::{serve, serve_secondary};

use aurigraph_beacon::state::BeaconState;
use aurigraph_wire::limits::BATCH_TRANSFERS_MAX;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Default listen address (see `docs/operations.md`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9003";
/// Default request body limit: 16 MiB (a full binary batch of 65,536 records is 11 MiB).
pub const DEFAULT_BODY_BYTES_MAX: usize = aurigraph_wire::limits::BODY_BYTES_MAX;
/// Default connections served at once per core; more are accepted and closed at once.
pub const DEFAULT_CONNECTIONS_MAX_PER_CORE: usize = 4096;
/// Default idle time after which a connection with no request running is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How the HTTP layer runs. Cheap to clone: shared parts are `Arc`s, and every core's server
/// holds a clone of the same settings (so `draining`, `in_flight` and `metrics` are shared).
#[derive(Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    /// Request bodies larger than this get 413 `PAYLOAD_TOO_LARGE`.
    pub body_bytes_max: usize,
    /// Transfers per batch request; more get 413 `TOO_MANY_TRANSFERS`.
    pub batch_transfers_max: usize,
    /// Connections served at once per core; beyond it new connections are accepted and closed.
    pub connections_max_per_core: usize,
    /// A connection with no request running and no bytes moving for this long is closed
    /// (bounds idle keep-alive connections and clients that stall mid-request).
    pub idle_timeout: Duration,
    /// Connections one client address may hold per core; more are accepted and closed.
    pub connections_per_ip_max_per_core: usize,
    /// Requests one client address may send per core (a token bucket); `None`: no limit.
    pub request_rate_per_ip: Option<limits::RequestRate>,
    /// Requests one bearer token may send per core (a token bucket); `None`: no limit.
    pub request_rate_per_token: Option<limits::RequestRate>,
    /// A request head (HTTP/1.1) must be complete this long after its first byte.
    pub header_read_timeout: Duration,
    /// When a request's body is due ([`limits::BodyDeadline`]): late, 408 and closed.
    pub body_deadline: limits::BodyDeadline,
    /// What the bodies being read on one core may hold together; past it, 503 `OVERLOADED`.
    pub body_bytes_budget_per_core: usize,
    pub node_id: u64,
    pub version: &'static str,
    /// Set to drain: stop accepting; running requests finish; new requests get 503.
    pub draining: Arc<AtomicBool>,
    /// Requests being handled now, over all cores.
    pub in_flight: Arc<in_flight::InFlightCounts>,
    /// Measured figures, over all cores (`/api/v11/stats`, `/metrics`).
    pub metrics: Arc<Metrics>,
    /// The node's data directory, for the disk-space figures of `/metrics` (none: not shown).
    pub data_dir: Option<PathBuf>,
    /// The archive sink's figures, for `/metrics` (none: no archive).
    pub archive: Option<Arc<aurigraph_sinks::SinkCounters>>,
    /// The Redis sink's figures (none: no Redis sink).
    pub redis: Option<Arc<aurigraph_sinks::SinkCounters>>,
    /// Reads of the archive (`GET /api/v11/transactions/{txHash}` past the recent window,
    /// `GET /api/v11/accounts/{address}/transactions`): the node's reader threads (none: no
    /// archive).
    pub archive_reader: Option<aurigraph_sinks::ArchiveReader>,
    /// The node-wide address check done by the first [`bind`] or [`steering::listen_steered`]
    /// (shared by the clones of these settings): the resolved address, or the error every core
    /// reports. Leave as constructed.
    pub checked_addr: Arc<OnceLock<Result<SocketAddr, (std::io::ErrorKind, String)>>>,
    /// The latest verified pulse per configured beacon source, read by
    /// `/api/v11/quantum/randomness/*` and the `beacon` health check (written by a beacon
    /// client; with no source configured, the default, those serve the local fallback).
    pub beacon: Arc<RwLock<BeaconState>>,
    /// Bearer tokens this node accepts (gateway mode); empty: every token is refused.
    pub tokens: Arc<aurigraph_engine::tokens::Tokens>,
    /// TLS on this port (certificate and key, reloadable); `None`: plaintext.
    pub tls: Option<Arc<tls::Tls>>,
    /// Which endpoints this listener serves.
    pub surface: Surface,
    /// Origins whose web pages may read this node's answers (CORS); empty: none.
    pub cors: Arc<cors::Cors>,
    /// The node's event hub, which gRPC `StreamTransactionEvents` reads (`crate::events`);
    /// `None`: that RPC answers UNAVAILABLE (tests without one).
    pub events: Option<Arc<crate::events::EventHub>>,
}

/// Which endpoints a listener serves: all of them (one listener, the default), all but the
/// admin endpoints (the public listener when `--admin-addr` is set), all of them on the
/// admin listener, or gRPC alone (`--grpc-addr`). gRPC requests are answered on every
/// listener but the admin one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    All,
    Public,
    Admin,
    /// The gRPC listener (`--grpc-addr`): gRPC only; an HTTP request gets 404 `NOT_FOUND`
    /// naming the HTTP address.
    Grpc,
}

impl HttpSettings {
    /// Settings with the defaults above (node id 1, this crate's version).
    pub fn new(addr: SocketAddr) -> HttpSettings {
        HttpSettings {
            addr,
            body_bytes_max: DEFAULT_BODY_BYTES_MAX,
            batch_transfers_max: BATCH_TRANSFERS_MAX,
            connections_max_per_core: DEFAULT_CONNECTIONS_MAX_PER_CORE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connections_per_ip_max_per_core: limits::DEFAULT_CONNECTIONS_PER_IP_MAX_PER_CORE,
            request_rate_per_ip: None,
            request_rate_per_token: None,
            header_read_timeout: limits::DEFAULT_HEADER_READ_TIMEOUT,
            body_deadline: limits::BodyDeadline {
                grace: limits::DEFAULT_BODY_READ_TIMEOUT,
                rate_bytes_per_s_min: limits::DEFAULT_BODY_RATE_BYTES_PER_S_MIN,
            },
            body_bytes_budget_per_core: limits::DEFAULT_BODY_BYTES_BUDGET_PER_CORE,
            node_id: 1,
            version: env!("CARGO_PKG_VERSION"),
            draining: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::default(),
            metrics: Arc::new(Metrics::default()),
            data_dir: None,
            archive: None,
            redis: None,
            archive_reader: None,
            checked_addr: Arc::new(OnceLock::new()),
            beacon: Arc::new(RwLock::new(BeaconState::unconfigured())),
            tokens: Arc::default(),
            tls: None,
            surface: Surface::All,
            cors: Arc::default(),
            events: None,
        }
    }

    /// The address the cores listen on, once the first core bound (port 0 resolved).
    #[allow(dead_code)] // for the node and tests that listen on port 0
    pub fn bound_addr(&self) -> Option<SocketAddr> {
        self.checked_addr
            .get()
            .and_then(|r| r.as_ref().ok().copied())
    }
}

impl HttpSettings {
    /// The beacon state, readable even if a writer panicked (it holds plain values).
    pub fn beacon_state(&self) -> std::sync::RwLockReadGuard<'_, BeaconState> {
        self.beacon
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sinks this node feeds, by name, in the order of the engine's taps (the node adds
    /// the PostgreSQL archive's first).
    pub fn sinks(&self) -> Vec<(&'static str, &aurigraph_sinks::SinkCounters)> {
        [("postgres", &self.archive), ("redis", &self.redis)]
            .into_iter()
            .filter_map(|(name, counters)| Some((name, counters.as_deref()?)))
            .collect()
    }
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings::new(DEFAULT_ADDR.parse().expect("valid default address"))
    }
}

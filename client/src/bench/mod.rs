//! `aurigraph bench`: the end-to-end throughput benchmark (its figures: docs/benchmarks.md).
//!
//! What it does, in order:
//! 1. Accounts: `--accounts` deterministic keys (see [`bench_key`]), each funded with
//!    [`BENCH_BALANCE`] of asset 0 in a genesis with chain id `--chain-id` (7).
//! 2. Nodes: without `--addresses`, a node is started in a fresh temporary directory with that
//!    genesis (through the caller's `start_node`) and stopped at the end. With `--addresses`, the
//!    node(s) must already run that genesis: `aurigraph bench --print-genesis FILE` (with the
//!    same `--accounts`, `--genesis-seed`, `--chain-id`) writes it; the benchmark checks the
//!    chain id, the balances, and starts each account's nonces above what the node has seen, so
//!    that it can be run repeatedly against the same chain.
//! 3. Pre-signing, before the clock starts: transfer `k` goes from account `k % accounts` to a
//!    pseudo-random other account, amount 1, with the sender's next nonce; transfers are packed
//!    in order into binary batches of `--batch-size` (all valid: every result should be `OK`).
//! 4. Load: `--concurrency` requests in flight over keep-alive HTTP/1.1 connections, each
//!    `POST /api/v11/transactions/batch` with the binary batch, asking for the compact reply.
//!    Steered (the default over HTTP, `routes`): the senders are grouped into lanes, one per
//!    core of the validators that lead the shards; batch `b` holds senders of lane `b mod L` only
//!    and goes over a connection that lands on that core. With `--no-steer`, senders are
//!    interleaved (transfer `k` from account `k % accounts`) and requests spread over the
//!    addresses round-robin. Closed loop by default; with `--rate` an open loop that
//!    schedules batch `b` at `b * batch_size / rate` seconds after the start. With
//!    `--protocol grpc` the same batches go through gRPC `SubmitStream`, one stream (and one
//!    connection) per worker, one batch in flight on each by default ([`grpc_load`]).
//!
//! How the figures are defined (nothing is estimated or extrapolated):
//! - `elapsed`: from the first request sent to the last reply received.
//! - `load accepted`: `OK` results / elapsed, truncated to an integer (as TigerBeetle's
//!   benchmark does); `results per second` counts any code. A run in which any transfer came
//!   back with another code, or any batch failed, prints its figures and then fails (non-zero
//!   exit, the reason on stderr): the workload is all valid, so anything else is a fault.
//! - `batch latency pN`: from sending a batch's request to receiving its whole reply, per batch,
//!   recorded in microseconds in an HDR histogram (3 significant digits) and printed in whole
//!   milliseconds, truncated (again as TigerBeetle prints them); p100 is the exact maximum.
//!   Microsecond figures are printed on a separate line and in the JSON.
//! - Only transfers whose result came back are counted; batches that failed (HTTP error,
//!   transport error, timeout) are reported separately and never counted as throughput.
//! - With `--rate`, a batch whose scheduled time passes while all connections are busy is sent
//!   late; the latency is still measured from the actual send, and the late count and the
//!   largest lag are reported, so a run whose open loop did not hold is visible as such.
//!
//! Modules: [`workload`] (accounts, genesis, the plan, pre-signing), [`load`] (the workers),
//! `grpc_load` (the workers over gRPC), `routes` (steering), [`report`] (the figures), `setup`
//! (genesis, nodes, clients and readiness, shared with `aurigraph loadtest`).

pub mod cpus;
mod grpc_load;
pub mod load;
pub mod report;
mod routes;
pub(crate) mod setup;
pub mod workload;

pub use report::{measure_verify_ceiling, Report, VerifyCeiling};
pub use workload::{
    bench_key, bench_keys, genesis_json, sign_batches, Plan, BENCH_BALANCE, BENCH_CHAIN_ID,
    BENCH_GATEWAY, BENCH_KEY_TAG, NONCE_WINDOW,
};

use crate::grpc::{GrpcError, STREAM_DEPTH_MAX};
use crate::http::{Client, ClientError, UrlError};
use crate::launcher::{LaunchError, LOCAL_NODES_MAX};
use crate::ops::RequestError;
use aurigraph_proto::v11::ResultFormat;
use aurigraph_wire::genesis::{Genesis, GenesisError, GENESIS_ALLOCATIONS_MAX};
use aurigraph_wire::limits::BATCH_RECORDS_MAX;
use aurigraph_wire::record::Address;
use aurigraph_wire::tokens::TokensError;
use load::{load_worker, progress_bar, remote_nonce_bases, Load, WorkerStats};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Lanes;

/// The options of one run (`aurigraph bench --help` describes each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// Nodes to load (base URLs); empty: start a local cluster of `nodes` validators.
    pub addresses: Vec<String>,
    pub nodes: usize,
    pub transfers: usize,
    pub accounts: usize,
    pub batch_size: usize,
    pub concurrency: usize,
    pub json: Option<PathBuf>,
    pub rate: Option<u64>,
    pub wait_ms: u64,
    pub timeout_ms: u64,
    pub genesis_seed: u64,
    pub chain_id: u32,
    pub shards: Option<u32>,
    pub print_genesis: Option<PathBuf>,
    pub client_threads: usize,
    pub sign_threads: Option<usize>,
    pub json_replies: bool,
    pub keep_data: bool,
    /// Signatures per verification group of the measured ceiling (the engine's chunk).
    pub verify_chunk: usize,
    /// Gateway mode: every account is custodial (controlled by gateway [`BENCH_GATEWAY`]),
    /// transfers go unsigned to the gateway endpoint with a bearer token.
    pub gateway: bool,
    /// With `gateway` and `addresses`: the file holding the gateway's token (a started node
    /// gets a fresh token of its own).
    pub gateway_token_file: Option<PathBuf>,
    /// How the batches are sent: HTTP requests, or gRPC `SubmitStream`s.
    pub protocol: Protocol,
    /// With `protocol` gRPC and `addresses`: where those nodes serve gRPC, one per address, in
    /// the same order; empty: the addresses themselves (a node also serves gRPC on its HTTP
    /// port).
    pub grpc_addresses: Vec<String>,
    /// With `protocol` gRPC: batches in flight per stream, 1 to [`STREAM_DEPTH_MAX`].
    pub stream_depth: usize,
    /// Over HTTP: send each batch to the core (and validator) that owns its senders' shards
    /// (`routes`); gRPC runs are never steered.
    pub steer: bool,
    /// Without `addresses`: the CPUs the started node(s) run on; the benchmark's own threads
    /// then run on the others ([`cpus`]). None: everything shares every CPU.
    pub node_cpus: Option<cpus::CpuList>,
}

/// How `aurigraph bench` sends its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `POST /api/v11/transactions/batch` over HTTP/1.1, one request in flight per connection.
    #[default]
    Http,
    /// `TransactionService.SubmitStream` over HTTP/2, one stream per connection.
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

impl Default for BenchOptions {
    /// The defaults of `aurigraph bench`.
    fn default() -> BenchOptions {
        BenchOptions {
            addresses: Vec::new(),
            nodes: 1,
            transfers: 1_000_000,
            accounts: 10_000,
            batch_size: 1000,
            concurrency: 16,
            json: None,
            rate: None,
            wait_ms: 30_000,
            timeout_ms: 60_000,
            genesis_seed: 0,
            chain_id: BENCH_CHAIN_ID,
            shards: None,
            print_genesis: None,
            client_threads: 2,
            sign_threads: None,
            json_replies: false,
            keep_data: false,
            verify_chunk: 256,
            gateway: false,
            gateway_token_file: None,
            protocol: Protocol::Http,
            grpc_addresses: Vec::new(),
            stream_depth: 1,
            steer: true,
            node_cpus: None,
        }
    }
}

/// What went wrong with a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Some transfer did not come back `OK`: the figures printed count only those that did,
    /// and the run fails so that no script takes them for a clean run.
    #[error("the run does not stand: {0}")]
    NotAllOk(String),
    /// `--node-cpus`: the CPU affinity could not be read or set.
    #[error("cannot place the node and the benchmark on their CPUs: {0}")]
    Affinity(std::io::Error),
    /// An option out of range; the message names it.
    #[error("{0}")]
    InvalidOption(String),
    #[error("cannot write the genesis to {}: {source}", path.display())]
    WriteGenesis {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error("cannot create {}: {source}", path.display())]
    TempDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("the started node reported no URL")]
    NoUrl,
    #[error("the started nodes reported {got} gRPC addresses for {nodes} nodes")]
    NoGrpcUrl { got: usize, nodes: usize },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("node {url} is not healthy (last: {last}); see --wait-ms")]
    NotHealthy { url: String, last: String },
    #[error(
        "node {url} runs chain {node_chain}, the benchmark signs for chain {chain_id} (--chain-id)"
    )]
    ChainMismatch {
        url: String,
        node_chain: u32,
        chain_id: u32,
    },
    #[error("benchmark account {index} ({address}) is unknown to the node: {GENESIS_HINT}")]
    UnknownAccount { index: usize, address: Address },
    #[error("benchmark account {index} ({address}) holds {balance} of asset 0 and must send {needed}: {GENESIS_HINT}")]
    Underfunded {
        index: usize,
        address: Address,
        balance: u64,
        needed: u64,
    },
    #[error("account {0}: the reply has no \"nonce\"")]
    NoNonce(Address),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("load worker failed: {0}")]
    Worker(String),
    #[error("cannot write {}: {source}", path.display())]
    WriteJson {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("benchmark aborted: {0}")]
    Aborted(String),
    #[error("no results were received")]
    NoResults,
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error("cannot steer the load: {0}")]
    Steering(String),
}

/// The prefix of the benchmark's messages.
const TAG: &str = "bench";

const GENESIS_HINT: &str = "start the node(s) with the genesis written by `aurigraph bench --print-genesis FILE` with the same --accounts, --genesis-seed and --chain-id";

/// What `start_node` returns: the nodes' base URLs (e.g. `http://127.0.0.1:40123`), their gRPC
/// listeners' (`--grpc-addr`, in the same order; empty when the nodes serve no gRPC), and a
/// function that stops them, blocking until they have stopped.
pub struct StartedNode {
    pub urls: Vec<String>,
    pub grpc_urls: Vec<String>,
    pub stop: Box<dyn FnOnce()>,
}

fn invalid(message: impl Into<String>) -> BenchError {
    BenchError::InvalidOption(message.into())
}

fn validate(args: &BenchOptions) -> Result<(), BenchError> {
    if args.accounts < 2 {
        return Err(invalid(
            "--accounts must be at least 2 (transfers go to another account)",
        ));
    }
    if args.accounts > GENESIS_ALLOCATIONS_MAX {
        return Err(invalid(format!(
            "--accounts must be at most {GENESIS_ALLOCATIONS_MAX} (the genesis limit)"
        )));
    }
    if args.transfers == 0 {
        return Err(invalid("--transfers must be at least 1"));
    }
    if args.batch_size == 0 || args.batch_size > BATCH_RECORDS_MAX {
        return Err(invalid(format!(
            "--batch-size must be between 1 and {BATCH_RECORDS_MAX}"
        )));
    }
    if args.concurrency == 0 {
        return Err(invalid("--concurrency must be at least 1"));
    }
    if args.rate == Some(0) {
        return Err(invalid("--rate must be at least 1 transfer per second"));
    }
    if args.client_threads == 0 {
        return Err(invalid("--client-threads must be at least 1"));
    }
    if !(1..=LOCAL_NODES_MAX).contains(&args.nodes) {
        return Err(invalid(format!(
            "--nodes must be between 1 and {LOCAL_NODES_MAX}"
        )));
    }
    if args.gateway && !args.addresses.is_empty() && args.gateway_token_file.is_none() {
        return Err(invalid(
            "--gateway with --addresses needs --gateway-token-file: the token of gateway \"bench\" \
             on those nodes (`aurigraph token new --name bench`)",
        ));
    }
    if args.gateway_token_file.is_some() && !args.gateway {
        return Err(invalid("--gateway-token-file goes with --gateway"));
    }
    if args.nodes > 1 && !args.addresses.is_empty() {
        return Err(invalid(
            "--nodes starts a local cluster; it cannot be combined with --addresses",
        ));
    }
    if let Some(node_cpus) = &args.node_cpus {
        if !args.addresses.is_empty() {
            return Err(invalid(
                "--node-cpus places a node the benchmark starts; it cannot be combined with \
                 --addresses",
            ));
        }
        let mine = cpus::CpuList::of_this_thread()
            .map_err(|e| invalid(format!("cannot read this process's CPUs: {e}")))?;
        let foreign = node_cpus.without(&mine);
        if node_cpus.is_empty() || !foreign.is_empty() {
            return Err(invalid(format!(
                "--node-cpus {node_cpus}: this process may run on CPUs {mine} only"
            )));
        }
    }
    if !(1..=STREAM_DEPTH_MAX).contains(&args.stream_depth) {
        return Err(invalid(format!(
            "--stream-depth must be between 1 and {STREAM_DEPTH_MAX} (the batches of one stream \
             the node decides at once)"
        )));
    }
    if args.stream_depth != 1 && args.protocol != Protocol::Grpc {
        return Err(invalid("--stream-depth goes with --protocol grpc"));
    }
    if !args.grpc_addresses.is_empty() {
        if args.protocol != Protocol::Grpc {
            return Err(invalid("--grpc-addresses goes with --protocol grpc"));
        }
        if args.grpc_addresses.len() != args.addresses.len() {
            return Err(invalid(format!(
                "--grpc-addresses names {} gRPC addresses for {} --addresses: give one per \
                 address, in the same order (a started node's is known: use neither)",
                args.grpc_addresses.len(),
                args.addresses.len()
            )));
        }
    }
    Ok(())
}

/// Runs the benchmark (or, with `--print-genesis`, writes the genesis and returns). Builds its
/// own tokio runtime: call it outside any runtime.
///
/// `start_node(genesis, dir)` is called at most once, only without `--addresses`, on the calling
/// thread, before any tokio runtime exists and before signing. `dir` is a fresh, empty, existing
/// directory that the node may use for its data and logs. It returns the node's base URLs, their
/// gRPC listeners' and a stop function; it need not wait for readiness: the benchmark polls
/// `GET /api/v11/health` on every URL until `"status":"UP"` (up to `--wait-ms`), and with
/// `--protocol grpc` `NodeService.Health` on every gRPC URL. The stop function is called exactly
/// once when the benchmark ends (also on errors after a successful start) and must block until
/// the node has stopped; `dir` is removed afterwards unless `--keep-data`.
pub fn run(
    args: BenchOptions,
    start_node: impl FnOnce(&Genesis, &Path, Option<&Path>) -> Result<StartedNode, LaunchError>,
) -> Result<(), BenchError> {
    validate(&args)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sign_threads = args.sign_threads.unwrap_or(cores).max(1);
    let mut plan = Plan {
        transfers: args.transfers,
        accounts: args.accounts,
        batch_size: args.batch_size,
        seed: args.genesis_seed,
        lanes: None,
    };

    let setup::Accounts {
        keys,
        addresses,
        genesis_text,
    } = setup::accounts(
        args.genesis_seed,
        args.accounts,
        args.chain_id,
        args.shards,
        args.gateway,
        sign_threads,
    );
    if let Some(path) = &args.print_genesis {
        return setup::write_genesis(
            TAG,
            path,
            &genesis_text,
            args.accounts,
            args.genesis_seed,
            args.chain_id,
        );
    }
    let genesis = Genesis::from_json(&genesis_text)?;

    // The node, when the benchmark owns it (on its own CPUs with --node-cpus: the child
    // inherits this thread's affinity, and every client thread is created after the switch).
    let placement = args
        .node_cpus
        .as_ref()
        .map(|node| -> Result<_, BenchError> {
            let all = cpus::CpuList::of_this_thread().map_err(BenchError::Affinity)?;
            let rest = all.without(node);
            node.bind_this_thread().map_err(BenchError::Affinity)?;
            Ok((node.clone(), if rest.is_empty() { all } else { rest }))
        })
        .transpose()?;
    let started = setup::start_or_connect(
        setup::NodeChoice {
            tag: TAG,
            addresses: &args.addresses,
            accounts: args.accounts,
            chain_id: args.chain_id,
            gateway: args.gateway,
            gateway_token_file: args.gateway_token_file.as_deref(),
            keep_data: args.keep_data,
        },
        &genesis,
        start_node,
    );
    if let Some((node, client)) = &placement {
        client.bind_this_thread().map_err(BenchError::Affinity)?;
        eprintln!("bench: the node runs on CPUs {node}, the benchmark on CPUs {client}");
    }
    let setup::Nodes {
        urls,
        grpc_urls,
        gateway_token,
        mut guard,
    } = started?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let per_address = args.concurrency.div_ceil(urls.len());
    let clients: Vec<Client> = runtime.block_on(async {
        setup::clients(&urls, timeout, per_address, gateway_token.as_deref())
    })?;

    let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
    // Steered: one client per lane, whose connections land on the lane's core.
    let mut lane_clients: Vec<Client> = Vec::new();
    let own_cluster = args.addresses.is_empty() && args.nodes > 1;
    let steered = args.steer && args.protocol == Protocol::Http;
    let nonce_bases = runtime.block_on(async {
        setup::wait_ready(TAG, &clients, deadline, own_cluster).await?;
        if steered {
            let routes = routes::discover(&clients).await?;
            let route_of_account: Vec<usize> = addresses.iter().map(|a| routes.of(a)).collect();
            let (lanes, lane_routes) = Lanes::group(&route_of_account);
            plan.lanes = Some(Arc::new(lanes));
            let lane_routes: Vec<routes::Route> =
                lane_routes.iter().map(|&r| routes.routes[r]).collect();
            eprintln!(
                "bench: steering {} lanes: {}",
                lane_routes.len(),
                lane_routes
                    .iter()
                    .map(|r| format!("{} core {}", urls[r.url], r.core))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            lane_clients = routes::route_clients(
                &lane_routes,
                &urls,
                timeout,
                args.concurrency,
                gateway_token.as_deref(),
            )?;
        }
        if args.addresses.is_empty() {
            Ok::<_, BenchError>(vec![0u64; args.accounts])
        } else {
            eprintln!(
                "bench: checking {} accounts on {}",
                args.accounts,
                clients[0].base_url()
            );
            remote_nonce_bases(
                &clients[0],
                &plan,
                &addresses,
                args.chain_id,
                args.concurrency,
            )
            .await
        }
    })?;

    // gRPC streams may each hold several batches in flight.
    let in_flight = match args.protocol {
        Protocol::Http => args.concurrency,
        Protocol::Grpc => args.concurrency * args.stream_depth,
    };
    let spread = plan.nonce_spread(in_flight);
    if spread > NONCE_WINDOW {
        eprintln!(
            "bench: warning: {in_flight} batches of {} in flight over {} accounts let one sender's \
             nonces spread over up to {spread} (> the node's window of {NONCE_WINDOW}): some \
             transfers may be rejected as NONCE_TOO_OLD; use more --accounts or less --concurrency",
            args.batch_size, args.accounts
        );
    }

    // gRPC: where the load goes, and each worker's connection, open before the clock.
    let (load_urls, grpc_clients) = match args.protocol {
        Protocol::Http => (urls.clone(), Vec::new()),
        Protocol::Grpc => {
            let grpc_urls = grpc_load::load_urls(&args, &urls, grpc_urls)?;
            eprintln!(
                "bench: opening {} gRPC connections to {}",
                args.concurrency,
                grpc_urls.join(",")
            );
            let clients = runtime.block_on(grpc_load::connect(
                &grpc_urls,
                args.concurrency,
                timeout,
                gateway_token.as_deref(),
                deadline,
            ))?;
            (grpc_urls, clients)
        }
    };

    // Pre-sign, before the clock.
    let signing_bar = progress_bar(args.transfers as u64, "signing");
    let signing_start = Instant::now();
    let batches = sign_batches(
        &plan,
        &keys,
        args.chain_id,
        &nonce_bases,
        sign_threads,
        !args.gateway,
        &signing_bar,
    );
    let signing = signing_start.elapsed();
    signing_bar.finish_and_clear();
    eprintln!(
        "bench: {} {} transfers into {} batches in {:.2} s on {sign_threads} threads",
        if args.gateway { "built" } else { "signed" },
        args.transfers,
        batches.len(),
        signing.as_secs_f64()
    );
    drop(keys);

    // The ceiling, measured now on this machine (only meaningful for a node on this host).
    // A gateway's transfers are not verified: no ceiling.
    let ceiling = if args.addresses.is_empty() && !args.gateway {
        // As many verifier threads as the node has executors.
        let node_cores = placement.as_ref().map_or(cores, |(node, _)| node.len());
        let c = measure_verify_ceiling(
            &batches,
            node_cores,
            args.verify_chunk,
            Duration::from_millis(1500),
        );
        if let Some(c) = &c {
            eprintln!(
                "bench: raw batch verification here: {:.0} signatures/s per core",
                c.per_core_per_sec
            );
        }
        c
    } else {
        None
    };

    // Load.
    let load_bar = progress_bar(args.transfers as u64, "sending");
    let load = Arc::new(Load {
        batches,
        plan,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        rate: args.rate,
        compact: !args.json_replies,
        path: if args.gateway {
            load::PATH_GATEWAY_BATCH
        } else {
            load::PATH_BATCH
        },
        progress: load_bar.clone(),
    });
    let stats = runtime.block_on(async {
        if args.protocol == Protocol::Grpc {
            let settings = grpc_load::StreamSettings {
                depth: args.stream_depth,
                timeout,
                format: if args.json_replies {
                    ResultFormat::Outcomes
                } else {
                    ResultFormat::Compact
                },
            };
            return grpc_load::run(load.clone(), grpc_clients, settings).await;
        }
        let start = Instant::now();
        let senders: Arc<[Client]> = if steered {
            lane_clients.into()
        } else {
            clients.clone().into()
        };
        let workers: Vec<_> = (0..args.concurrency)
            .map(|w| {
                let own = w % senders.len();
                tokio::spawn(load_worker(load.clone(), senders.clone(), own, start))
            })
            .collect();
        let mut total = WorkerStats::new(start);
        for w in workers {
            total.merge(w.await.map_err(|e| BenchError::Worker(e.to_string()))?);
        }
        Ok::<_, BenchError>(total)
    })?;
    load_bar.finish_and_clear();
    drop(clients);
    drop(runtime);

    let elapsed = match (stats.first_send, stats.last_reply) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    let report = Report {
        addresses: load_urls,
        protocol: args.protocol.as_str(),
        stream_depth: (args.protocol == Protocol::Grpc).then_some(args.stream_depth),
        gateway: args.gateway,
        lanes: load.plan.lanes.as_ref().map(|l| l.len()),
        accounts: args.accounts,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        rate: args.rate,
        transfers_planned: args.transfers,
        transfers_sent: stats.transfers_sent,
        batches_sent: stats.batches_sent,
        results_received: stats.results,
        ok: stats.ok,
        other_codes: stats.codes,
        failed_batches: stats.failed_batches,
        failed_transfers: stats.failed_transfers,
        errors: stats.errors,
        aborted: stats.aborted,
        elapsed,
        signing,
        latency_us: stats.latency_us,
        latency_max_us: stats.latency_max_us,
        late_batches: stats.late_batches,
        lag_max: stats.lag_max,
        ceiling,
        node_cpus: placement
            .as_ref()
            .map(|(node, client)| (node.to_string(), client.to_string())),
        timeline: stats.timeline.windows().to_vec(),
    };
    for line in report.summary_lines() {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).expect("JSON prints");
        std::fs::write(path, text + "\n").map_err(|source| BenchError::WriteJson {
            path: path.clone(),
            source,
        })?;
    }
    let outcome = if let Some(reason) = report.aborted.clone() {
        Err(BenchError::Aborted(reason))
    } else if report.results_received == 0 {
        Err(BenchError::NoResults)
    } else if let Some(why) = report.not_all_ok() {
        Err(BenchError::NotAllOk(why))
    } else {
        Ok(())
    };
    if outcome.is_ok() {
        guard.succeeded();
    }
    drop(guard);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_wire::record::address_of;

    #[test]
    fn options_are_validated() {
        assert!(validate(&BenchOptions::default()).is_ok());
        let bad = [
            BenchOptions {
                node_cpus: Some(cpus::CpuList::parse("0").unwrap()),
                addresses: vec!["http://a:1".into()],
                ..BenchOptions::default()
            },
            BenchOptions {
                // A CPU this process may not run on.
                node_cpus: Some(cpus::CpuList::parse("1023").unwrap()),
                ..BenchOptions::default()
            },
            BenchOptions {
                accounts: 1,
                ..BenchOptions::default()
            },
            BenchOptions {
                batch_size: 0,
                ..BenchOptions::default()
            },
            BenchOptions {
                batch_size: BATCH_RECORDS_MAX + 1,
                ..BenchOptions::default()
            },
            BenchOptions {
                concurrency: 0,
                ..BenchOptions::default()
            },
            BenchOptions {
                transfers: 0,
                ..BenchOptions::default()
            },
            BenchOptions {
                rate: Some(0),
                ..BenchOptions::default()
            },
            BenchOptions {
                nodes: 2,
                addresses: vec!["http://a:1".into()],
                ..BenchOptions::default()
            },
            BenchOptions {
                gateway: true,
                addresses: vec!["http://a:1".into()],
                ..BenchOptions::default()
            },
            BenchOptions {
                gateway_token_file: Some("token".into()),
                ..BenchOptions::default()
            },
            BenchOptions {
                protocol: Protocol::Grpc,
                stream_depth: 0,
                ..BenchOptions::default()
            },
            BenchOptions {
                protocol: Protocol::Grpc,
                stream_depth: STREAM_DEPTH_MAX + 1,
                ..BenchOptions::default()
            },
            // Only gRPC streams have a depth.
            BenchOptions {
                stream_depth: 2,
                ..BenchOptions::default()
            },
            BenchOptions {
                addresses: vec!["http://a:1".into()],
                grpc_addresses: vec!["http://a:2".into()],
                ..BenchOptions::default()
            },
            // Started nodes' gRPC addresses are known.
            BenchOptions {
                protocol: Protocol::Grpc,
                grpc_addresses: vec!["http://a:2".into()],
                ..BenchOptions::default()
            },
            BenchOptions {
                protocol: Protocol::Grpc,
                addresses: vec!["http://a:1".into(), "http://b:1".into()],
                grpc_addresses: vec!["http://a:2".into()],
                ..BenchOptions::default()
            },
        ];
        for options in bad {
            let err = validate(&options).unwrap_err();
            assert!(matches!(err, BenchError::InvalidOption(_)), "{options:?}");
            assert!(err.to_string().starts_with("--"), "{err}");
        }
    }

    #[test]
    fn print_genesis_writes_the_file_without_starting_a_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        let options = BenchOptions {
            accounts: 3,
            genesis_seed: 9,
            print_genesis: Some(path.clone()),
            ..BenchOptions::default()
        };
        run(options, |_, _, _| panic!("must not start a node")).unwrap();
        let g = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(g.chain_id, BENCH_CHAIN_ID);
        assert_eq!(g.allocations.len(), 3);
        assert!(g
            .allocations
            .iter()
            .any(|a| a.address == address_of(&bench_key(9, 2))));
        assert!(
            g.controllers.is_empty(),
            "signed mode: no custodial account"
        );
        // Gateway mode: gateway "bench" controls every account.
        let options = BenchOptions {
            accounts: 3,
            print_genesis: Some(path.clone()),
            gateway: true,
            ..BenchOptions::default()
        };
        run(options, |_, _, _| panic!("must not start a node")).unwrap();
        let g = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(g.controllers.len(), 3);
        assert!(g.controllers.values().all(|name| name == BENCH_GATEWAY));
    }
}

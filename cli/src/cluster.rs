//! `aurigraph cluster --nodes N`: a local cluster of N validators on loopback in one directory,
//! for developers. Runs until SIGINT/SIGTERM (then stops every validator gracefully) or until a
//! validator exits on its own (then stops the others and reports it).

use aurigraph_api::config::LogFormat;
use aurigraph_api::node::{self, NodeError};
use aurigraph_client::launcher::{start_cluster, LaunchError, LaunchOptions, LOCAL_NODES_MAX};
use std::path::PathBuf;
use std::time::Duration;

/// Why a local cluster did not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("validator {id} exited ({status}); the others were stopped (its log is in {})", log.display())]
    Exited {
        id: u64,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
}

/// Start a local cluster of validators on loopback (ids 1..=N, one process each).
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Validators to start (1 to 9).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub nodes: usize,
    /// Directory holding the genesis and each validator's `node-<id>/` (data and log).
    #[arg(long, value_name = "DIR", default_value = "./aurigraph-cluster")]
    pub dir: PathBuf,
    /// Executors per validator [default: the CPUs available divided among the validators, at
    /// least 1].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Genesis JSON for every validator [default: a development chain funding a key written to
    /// DIR/dev-key.json; reused when DIR already has one].
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// Tokens file every validator reads (gateway mode; `aurigraph token new`).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Link the validators with plain TCP instead of mutual TLS (by default their peer
    /// certificates come from a development CA in DIR/peer-certs, made on first use).
    #[arg(long)]
    pub plaintext_peers: bool,
}

/// Runs the command until SIGINT/SIGTERM or until a validator exits.
pub fn run(args: ClusterArgs) -> Result<(), ClusterError> {
    if !(1..=LOCAL_NODES_MAX).contains(&args.nodes) {
        return Err(LaunchError::NodeCount(args.nodes).into());
    }
    node::init_logging(LogFormat::Human);
    let signals = node::block_stop_signals();
    let genesis_path = args.dir.join("genesis.json");
    let genesis = match (&args.genesis, genesis_path.exists()) {
        (Some(path), _) => node::read_genesis(path)?,
        (None, true) => node::read_genesis(&genesis_path)?,
        (None, false) => node::development_genesis(&args.dir)?,
    };
    let exe = std::env::current_exe().map_err(LaunchError::OwnBinary)?;
    let options = LaunchOptions {
        cores: args.cores,
        tokens: args.tokens.as_deref(),
        plaintext_peers: args.plaintext_peers,
        heap_prefault_mib: None,
    };
    let mut cluster = start_cluster(&exe, &genesis, &args.dir, args.nodes, options)?;
    for n in &cluster.nodes {
        println!(
            "validator {}: http://{}  grpc {}  peer {}  data {}  log {}",
            n.node_id,
            n.http_addr,
            n.grpc_addr,
            n.peer_addr.map_or("-".to_string(), |a| a.to_string()),
            n.data_dir.display(),
            n.log.display()
        );
    }
    println!(
        "cluster ready: {} validators; Ctrl-C stops them",
        args.nodes
    );
    loop {
        if let Some(signal) = node::wait_for_stop_signal_timeout(signals, Duration::from_secs(1)) {
            tracing::info!(signal, "stopping the cluster");
            cluster.stop();
            return Ok(());
        }
        if let Some((id, status)) = cluster.exited() {
            cluster.stop();
            return Err(ClusterError::Exited {
                id,
                status,
                log: args.dir.join(format!("node-{id}/node.log")),
            });
        }
    }
}

//! What `aurigraph bench` and `aurigraph loadtest` do before their load: the accounts' genesis
//! (or `--print-genesis`), the nodes (started locally, or given by `--addresses`), a client per
//! node, and waiting until they are ready. Every message is prefixed with the caller's `tag`
//! (`bench`, `loadtest`).

use super::workload::{bench_keys, genesis_json};
use super::{load, BenchError, StartedNode, BENCH_GATEWAY};
use crate::http::{normalize_base_url, Client};
use crate::launcher::LaunchError;
use aurigraph_wire::genesis::Genesis;
use aurigraph_wire::record::{address_of, Address};
use aurigraph_wire::tokens::{add_to_file, new_token, Role};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Stops the started node when dropped (also on errors) and removes its directory, unless the
/// run failed: then the directory stays, with each node's log, and the message says where.
pub(crate) struct NodeGuard {
    tag: &'static str,
    stop: Option<Box<dyn FnOnce()>>,
    dir: Option<PathBuf>,
    succeeded: bool,
}

impl NodeGuard {
    pub(crate) fn none(tag: &'static str) -> NodeGuard {
        NodeGuard {
            tag,
            stop: None,
            dir: None,
            succeeded: false,
        }
    }

    /// The run stands: its directory may go.
    pub(crate) fn succeeded(&mut self) {
        self.succeeded = true;
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            eprintln!("{}: stopping the node", self.tag);
            stop();
        }
        if let Some(dir) = self.dir.take() {
            if !self.succeeded {
                eprintln!(
                    "{}: the run failed: kept the nodes' data and logs in {} (node-N/node.log)",
                    self.tag,
                    dir.display()
                );
            } else if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!("{}: cannot remove {}: {e}", self.tag, dir.display());
            }
        }
    }
}

/// The accounts of a run: keys, addresses, and the genesis that funds them, as JSON.
pub(crate) struct Accounts {
    pub keys: Vec<SigningKey>,
    pub addresses: Vec<Address>,
    pub genesis_text: String,
}

/// The keys of `accounts` accounts derived from `seed` (on `threads` threads) and their genesis.
pub(crate) fn accounts(
    seed: u64,
    accounts: usize,
    chain_id: u32,
    shards: Option<u32>,
    gateway: bool,
    threads: usize,
) -> Accounts {
    let keys = bench_keys(seed, accounts, threads);
    let addresses: Vec<Address> = keys.iter().map(address_of).collect();
    let genesis_text = genesis_json(&addresses, chain_id, shards, gateway);
    Accounts {
        keys,
        addresses,
        genesis_text,
    }
}

/// `--print-genesis FILE`: writes the genesis and says so.
pub(crate) fn write_genesis(
    tag: &str,
    path: &Path,
    text: &str,
    accounts: usize,
    seed: u64,
    chain_id: u32,
) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|source| BenchError::WriteGenesis {
        path: path.to_path_buf(),
        source,
    })?;
    eprintln!(
        "{tag}: wrote the genesis of {accounts} accounts (seed {seed}, chain {chain_id}) to {}",
        path.display()
    );
    Ok(())
}

/// The nodes a run loads.
pub(crate) struct Nodes {
    /// Normalized base URLs.
    pub urls: Vec<String>,
    /// The started nodes' gRPC listeners, normalized, in the order of `urls` (empty with
    /// `--addresses`: the caller knows where those serve gRPC).
    pub grpc_urls: Vec<String>,
    /// The gateway's bearer token (gateway mode).
    pub gateway_token: Option<String>,
    /// Stops the nodes the run started (none with `--addresses`).
    pub guard: NodeGuard,
}

/// How the nodes of a run are found or started.
pub(crate) struct NodeChoice<'a> {
    pub tag: &'static str,
    /// `--addresses`; empty: start nodes through `start_node`.
    pub addresses: &'a [String],
    pub accounts: usize,
    pub chain_id: u32,
    pub gateway: bool,
    pub gateway_token_file: Option<&'a Path>,
    pub keep_data: bool,
}

/// Starts the nodes (without `--addresses`: in a fresh temporary directory, with a fresh
/// gateway token in gateway mode) or takes the given ones (and the token of
/// `--gateway-token-file`).
pub(crate) fn start_or_connect(
    choice: NodeChoice<'_>,
    genesis: &Genesis,
    start_node: impl FnOnce(&Genesis, &Path, Option<&Path>) -> Result<StartedNode, LaunchError>,
) -> Result<Nodes, BenchError> {
    let tag = choice.tag;
    let mut guard = NodeGuard::none(tag);
    let mut gateway_token: Option<String> = match choice.gateway_token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let mut grpc_urls: Vec<String> = Vec::new();
    let urls: Vec<String> = if choice.addresses.is_empty() {
        let dir = temp_dir(tag)?;
        eprintln!(
            "{tag}: starting a node in {} ({} funded accounts, chain {})",
            dir.display(),
            choice.accounts,
            choice.chain_id
        );
        if !choice.keep_data {
            guard.dir = Some(dir.clone());
        }
        let tokens_path = dir.join("tokens.json");
        if choice.gateway {
            let (token, entry) = new_token(Role::Gateway, BENCH_GATEWAY)?;
            add_to_file(&tokens_path, entry)?;
            gateway_token = Some(token);
        }
        let tokens = choice.gateway.then_some(tokens_path.as_path());
        let started = start_node(genesis, &dir, tokens)?;
        guard.stop = Some(started.stop);
        if started.urls.is_empty() {
            return Err(BenchError::NoUrl);
        }
        grpc_urls = started.grpc_urls;
        started.urls
    } else {
        choice.addresses.to_vec()
    };
    let urls: Vec<String> = urls
        .iter()
        .map(|u| normalize_base_url(u))
        .collect::<Result<_, _>>()?;
    let grpc_urls: Vec<String> = grpc_urls
        .iter()
        .map(|u| normalize_base_url(u))
        .collect::<Result<_, _>>()?;
    Ok(Nodes {
        urls,
        grpc_urls,
        gateway_token,
        guard,
    })
}

/// One client per URL, each pooling up to `per_address` connections, with the bearer token
/// when given. Must run inside a tokio runtime.
pub(crate) fn clients(
    urls: &[String],
    timeout: Duration,
    per_address: usize,
    token: Option<&str>,
) -> Result<Vec<Client>, BenchError> {
    let clients = urls
        .iter()
        .map(|u| {
            let client = Client::with_options(u, timeout, per_address)?;
            match token {
                Some(token) => client.with_bearer(token),
                None => Ok(client),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(clients)
}

/// Waits until every node is healthy, and with `settle` (a cluster the run started) until
/// every shard is led by its preferred validator (a warning when it is not by `deadline`).
pub(crate) async fn wait_ready(
    tag: &str,
    clients: &[Client],
    deadline: Instant,
    settle: bool,
) -> Result<(), BenchError> {
    for c in clients {
        load::wait_healthy(c, deadline).await?;
    }
    if settle && !load::wait_leaders_settled(&clients[0], deadline).await {
        eprintln!(
            "{tag}: warning: the shards' leadership has not settled on their preferred \
             validators; a hand-over during the run will fail the batches in flight"
        );
    }
    Ok(())
}

/// The gateway token in `path`.
pub(crate) fn read_token(path: &Path) -> Result<String, BenchError> {
    crate::http::read_token_file(path, "--gateway-token-file").map_err(BenchError::InvalidOption)
}

/// A fresh directory under the system's temporary directory.
fn temp_dir(tag: &str) -> Result<PathBuf, BenchError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("aurigraph-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|source| BenchError::TempDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

//! `aurigraph validators add|promote|remove`: membership changes, driven over every validator's
//! admin endpoint (`POST /api/v11/admin/validators`) until every shard applied the step. Each
//! validator applies a step on the shards it leads; shards led elsewhere answer `NOT_LEADER`
//! and are tried on the other validators in the list.
//!
//! Adding a validator is three steps (docs/replication.md): start it with `aurigraph node
//! --join ...`, `aurigraph validators add` (learner in every shard: it receives the log or a
//! snapshot), `aurigraph validators promote` (voter, once it has caught up: this command checks
//! the lag on every shard's leader first).

use crate::client::Client;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How far behind (entries) a learner may be on every shard to be promoted.
const PROMOTE_LAG_MAX: u64 = 1000;
/// How long a step keeps trying (leaders change, another change may be in progress).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Membership changes of the cluster's validators.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ValidatorsCommand {
    /// Add a validator as a learner of every shard (start it with `aurigraph node --join`
    /// first); it catches up from the leaders' logs or snapshots.
    Add {
        /// The new validator's node id.
        #[arg(long, value_name = "N")]
        id: u64,
        /// The new validator's base peer address (IP:PORT; core c uses PORT + c).
        #[arg(long, value_name = "IP:PORT")]
        peer_addr: String,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Promote a learner to voter in every shard, once it has caught up.
    Promote {
        /// The learner's node id.
        #[arg(long, value_name = "N")]
        id: u64,
        #[command(flatten)]
        nodes: Nodes,
    },
    /// Remove a validator from every shard's group.
    Remove {
        /// The validator's node id.
        #[arg(long, value_name = "N")]
        id: u64,
        #[command(flatten)]
        nodes: Nodes,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct Nodes {
    /// HTTP base URLs of the cluster's validators (every shard's leader must be among them).
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
}

/// Runs the command. Builds its own tokio runtime: call it outside any runtime.
pub fn run(command: ValidatorsCommand) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    runtime.block_on(async {
        let (action, id, peer_addr, nodes) = match &command {
            ValidatorsCommand::Add {
                id,
                peer_addr,
                nodes,
            } => ("add-learner", *id, Some(peer_addr.clone()), nodes),
            ValidatorsCommand::Promote { id, nodes } => ("promote", *id, None, nodes),
            ValidatorsCommand::Remove { id, nodes } => ("remove", *id, None, nodes),
        };
        let clients = nodes
            .nodes
            .iter()
            .map(|url| Client::new(url))
            .collect::<Result<Vec<_>, _>>()?;
        if action == "promote" {
            check_caught_up(&clients, id).await?;
        }
        let mut body = serde_json::json!({ "action": action, "nodeId": id });
        if let Some(addr) = peer_addr {
            body["peerAddr"] = addr.into();
        }
        apply_everywhere(&clients, &body).await
    })
}

/// Posts the step to every validator until every shard reports it APPLIED.
async fn apply_everywhere(clients: &[Client], body: &serde_json::Value) -> Result<(), String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut applied: BTreeMap<u64, u64> = BTreeMap::new();
    let mut shards_total = None;
    let mut last_problem = String::new();
    loop {
        for client in clients {
            let reply = match client.post_json("/api/v11/admin/validators", body).await {
                Ok(reply) => reply,
                Err(e) => {
                    last_problem = e.to_string();
                    continue;
                }
            };
            let shards = reply["shards"].as_array().cloned().unwrap_or_default();
            shards_total = Some(shards.len());
            for s in shards {
                let shard = s["shard"].as_u64().unwrap_or(u64::MAX);
                match s["status"].as_str() {
                    Some("APPLIED") => {
                        if applied
                            .insert(shard, s["index"].as_u64().unwrap_or(0))
                            .is_none()
                        {
                            eprintln!(
                                "shard {shard}: applied at index {} (via {})",
                                s["index"],
                                client.base_url()
                            );
                        }
                    }
                    Some("NOT_LEADER") => {}
                    _ => last_problem = format!("shard {shard}: {s}"),
                }
            }
        }
        if shards_total.is_some_and(|n| applied.len() >= n) {
            println!(
                "{} node {}: applied on all {} shards",
                body["action"].as_str().unwrap_or(""),
                body["nodeId"],
                applied.len()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not applied on every shard within {} s (applied on {:?}); last problem: {last_problem}",
                STEP_TIMEOUT.as_secs(),
                applied.keys().collect::<Vec<_>>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every shard's leader (among `clients`) reports the learner at most PROMOTE_LAG_MAX behind.
async fn check_caught_up(clients: &[Client], id: u64) -> Result<(), String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let mut lag_by_shard: BTreeMap<u64, Option<u64>> = BTreeMap::new();
        for client in clients {
            let Ok(status) = client.get_json("/api/v11/consensus/status").await else {
                continue;
            };
            for s in status["shards"].as_array().into_iter().flatten() {
                let shard = s["shard"].as_u64().unwrap_or(u64::MAX);
                let entry = lag_by_shard.entry(shard).or_insert(None);
                if s["role"] == "LEADER" {
                    let lag = s["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| p["nodeId"].as_u64() == Some(id))
                        .and_then(|p| p["lag"].as_u64());
                    if lag.is_some() {
                        *entry = lag;
                    }
                }
            }
        }
        let behind: Vec<String> = lag_by_shard
            .iter()
            .filter(|(_, lag)| lag.is_none_or(|l| l > PROMOTE_LAG_MAX))
            .map(|(shard, lag)| format!("shard {shard}: lag {lag:?}"))
            .collect();
        if !lag_by_shard.is_empty() && behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node {id} has not caught up (at most {PROMOTE_LAG_MAX} entries behind on every shard's leader): {}",
                behind.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

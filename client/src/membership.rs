//! Membership changes (`aurigraph validators add|promote|remove`), driven over every validator's
//! admin endpoint (`POST /api/v11/admin/validators`) until every shard applied the step. Each
//! validator applies a step on the shards it leads; shards led elsewhere answer `NOT_LEADER`
//! and are tried on the other validators in the list.
//!
//! Adding a validator is three steps (docs/replication.md): start it with `aurigraph node
//! --join ...`, `aurigraph validators add` (learner in every shard: it receives the log or a
//! snapshot), `aurigraph validators promote` (voter, once it has caught up: this command checks
//! the lag on every shard's leader first).

use crate::http::{Client, UrlError};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How far behind (entries) a learner may be on every shard to be promoted.
const PROMOTE_LAG_MAX: u64 = 1000;
/// How long a step keeps trying (leaders change, another change may be in progress).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One membership change, applied on every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipStep {
    /// Add validator `id` (base peer address `peer_addr`, `IP:PORT`) as a learner.
    Add { id: u64, peer_addr: String },
    /// Promote learner `id` to voter, once it has caught up.
    Promote { id: u64 },
    /// Remove validator `id`.
    Remove { id: u64 },
}

/// What went wrong with a membership change.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("{0}")]
    Token(String),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("not applied on every shard within {secs} s (applied on {applied:?}); last problem: {last_problem}")]
    NotApplied {
        secs: u64,
        applied: Vec<u64>,
        last_problem: String,
    },
    #[error("node {id} has not caught up (at most {lag_max} entries behind on every shard's leader): {behind}")]
    NotCaughtUp {
        id: u64,
        lag_max: u64,
        behind: String,
    },
}

/// Applies `step` through the validators at `nodes` (HTTP base URLs; every shard's leader must
/// be among them), with `admin_token` (a token of role admin in the validators' tokens files). Builds its own tokio runtime: call it outside any runtime.
pub fn run(
    step: &MembershipStep,
    nodes: &[String],
    admin_token: &str,
) -> Result<(), MembershipError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MembershipError::Runtime)?;
    runtime.block_on(async {
        let (action, id, peer_addr) = match step {
            MembershipStep::Add { id, peer_addr } => ("add-learner", *id, Some(peer_addr.clone())),
            MembershipStep::Promote { id } => ("promote", *id, None),
            MembershipStep::Remove { id } => ("remove", *id, None),
        };
        let clients = nodes
            .iter()
            .map(|url| Client::new(url).and_then(|c| c.with_bearer(admin_token)))
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
async fn apply_everywhere(
    clients: &[Client],
    body: &serde_json::Value,
) -> Result<(), MembershipError> {
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
            return Err(MembershipError::NotApplied {
                secs: STEP_TIMEOUT.as_secs(),
                applied: applied.keys().copied().collect(),
                last_problem,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every shard's leader (among `clients`) reports the learner at most PROMOTE_LAG_MAX behind.
async fn check_caught_up(clients: &[Client], id: u64) -> Result<(), MembershipError> {
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
            return Err(MembershipError::NotCaughtUp {
                id,
                lag_max: PROMOTE_LAG_MAX,
                behind: behind.join(", "),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

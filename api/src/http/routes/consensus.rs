//! Consensus: `GET /api/v11/consensus/status` and `GET /api/v11/validators`, and the figures
//! over the shards that `/api/v11/stats` and `/api/v11/info` share.

use super::response::json_response;
use super::{Answer, Backend, Ctx};
use crate::http::openapi::{error, ok, operation};
use crate::http::types::hex128;
use aurigraph_engine::ShardStatus;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The validators seen from this node: every shard group's voters, this node, and any leader
/// seen (on a single validator exactly `[node_id]`).
pub fn validator_ids(node_id: u64, status: &[ShardStatus]) -> Vec<u64> {
    let mut ids: Vec<u64> = std::iter::once(node_id)
        .chain(status.iter().filter_map(|s| s.leader_id))
        .chain(status.iter().flat_map(|s| s.voter_ids.iter().copied()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The node that leads most shards (ties: the smallest id), if any shard has a leader.
pub(crate) fn main_leader(status: &[ShardStatus]) -> Option<u64> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for id in status.iter().filter_map(|s| s.leader_id) {
        *counts.entry(id).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|&(_, c)| c == best)
        .map(|(id, _)| id)
}

/// This node's role: the role it has in every shard, or `MIXED`.
pub(crate) fn node_state(status: &[ShardStatus]) -> &'static str {
    match status.first() {
        None => "UNKNOWN",
        Some(first) if status.iter().all(|s| s.role == first.role) => first.role,
        Some(_) => "MIXED",
    }
}

/// The consensus figures over every shard (the V11 `consensus` object of `/api/v11/stats`,
/// and gRPC's `ConsensusSummary`).
pub(crate) struct ConsensusSummary {
    pub current_term: u64,
    pub applied_index: u64,
    pub commit_index: u64,
    pub leader: Option<u64>,
    pub validators: usize,
    pub leader_changes: u64,
    pub state: &'static str,
    pub shards: usize,
    pub shards_with_leader: usize,
    pub pending_records: usize,
}

impl ConsensusSummary {
    pub(crate) fn of(node_id: u64, status: &[ShardStatus]) -> ConsensusSummary {
        ConsensusSummary {
            current_term: status.iter().map(|s| s.term).max().unwrap_or(0),
            applied_index: status.iter().map(|s| s.applied_index).sum(),
            commit_index: status.iter().map(|s| s.commit_index).sum(),
            leader: main_leader(status),
            validators: validator_ids(node_id, status).len(),
            leader_changes: status.iter().map(|s| s.leader_changes).sum(),
            state: node_state(status),
            shards: status.len(),
            shards_with_leader: status.iter().filter(|s| s.leader_id.is_some()).count(),
            pending_records: status.iter().map(|s| s.pending_records).sum(),
        }
    }
}

/// The V11 `consensus` object of `/api/v11/stats`.
pub fn consensus_json(node_id: u64, status: &[ShardStatus]) -> Value {
    let c = ConsensusSummary::of(node_id, status);
    json!({
        "currentTerm": c.current_term,
        "blockHeight": c.applied_index,
        "commitIndex": c.commit_index,
        "lastApplied": c.applied_index,
        "leaderNodeId": c.leader,
        "validatorCount": c.validators,
        "activeValidators": c.validators,
        "totalLeaderChanges": c.leader_changes,
        "consensusState": c.state,
        "shards": c.shards,
        "shardsWithLeader": c.shards_with_leader,
        "pendingRecords": c.pending_records,
    })
}

fn shard_json(s: &ShardStatus) -> Value {
    json!({
        "shard": s.shard,
        "core": s.core,
        "role": s.role,
        "leader": s.leader_id,
        "term": s.term,
        "commitIndex": s.commit_index,
        "appliedIndex": s.applied_index,
        "lastIndex": s.last_index,
        "stateHash": hex128(s.state_hash),
        "accounts": s.accounts,
        "leaderChanges": s.leader_changes,
        "pendingRecords": s.pending_records,
        "voters": s.voter_ids,
        "learners": s.learner_ids,
        // On the leader: how far each voter's log matches; empty on a follower.
        "peers": s.peer_matched.iter().zip(&s.peer_lag).map(|(&(id, matched), &(_, lag))| json!({
            "nodeId": id,
            "matchIndex": matched,
            "lag": lag,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/v11/consensus/status`: this node's role and the Raft figures of every shard.
pub async fn status<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let node_id = ctx.settings.node_id;
    let shards: Vec<Value> = status.iter().map(shard_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "nodeId": node_id,
            "state": node_state(&status),
            "currentTerm": status.iter().map(|s| s.term).max().unwrap_or(0),
            "commitIndex": status.iter().map(|s| s.commit_index).sum::<u64>(),
            "appliedIndex": status.iter().map(|s| s.applied_index).sum::<u64>(),
            "leaderId": main_leader(&status),
            "clusterSize": validator_ids(node_id, &status).len(),
            "shards": shards,
        }),
    ))
}

/// A validator at most this many entries behind (seen from a shard this node leads) is ACTIVE.
const VALIDATOR_ACTIVE_LAG_MAX: u64 = 1000;

/// A validator as this node sees it.
pub(crate) struct ValidatorSeen {
    pub node_id: u64,
    pub is_self: bool,
    /// The shards it leads.
    pub leader_of: Vec<u32>,
    /// Seen from the shards this node leads: the most entries it is behind.
    pub lag_entries: Option<u64>,
    /// `ACTIVE`, `LAGGING` or `UNKNOWN`.
    pub status: &'static str,
}

/// Every validator seen from this node, with its status.
pub(crate) fn validators_seen(node_id: u64, status: &[ShardStatus]) -> Vec<ValidatorSeen> {
    validator_ids(node_id, status)
        .into_iter()
        .map(|id| {
            let leader_of: Vec<u32> = status
                .iter()
                .filter(|s| s.leader_id == Some(id))
                .map(|s| s.shard)
                .collect();
            let lag = status
                .iter()
                .flat_map(|s| s.peer_lag.iter())
                .filter(|(peer, _)| *peer == id)
                .map(|&(_, lag)| lag)
                .max();
            let active = id == node_id
                || !leader_of.is_empty()
                || lag.is_some_and(|l| l <= VALIDATOR_ACTIVE_LAG_MAX);
            ValidatorSeen {
                node_id: id,
                is_self: id == node_id,
                leader_of,
                lag_entries: lag,
                status: if active {
                    "ACTIVE"
                } else if lag.is_some() {
                    "LAGGING"
                } else {
                    "UNKNOWN"
                },
            }
        })
        .collect()
}

/// `GET /api/v11/validators`: every validator seen from this node, with its status.
pub async fn validators<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let node_id = ctx.settings.node_id;
    let list: Vec<Value> = validators_seen(node_id, &status)
        .into_iter()
        .map(|v| {
            json!({
                "nodeId": v.node_id,
                "self": v.is_self,
                "leaderOf": v.leader_of,
                "lagEntries": v.lag_entries,
                "status": v.status,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "nodeId": node_id, "validatorCount": list.len(), "validators": list }),
    ))
}

pub fn status_doc() -> Value {
    operation(
        "Consensus status",
        "This node's role, and the Raft figures of every shard.",
        json!({ "200": ok("Consensus status", "ConsensusStatus"), "503": error("Unavailable") }),
    )
}

pub fn validators_doc() -> Value {
    operation(
        "Validators",
        "Validators known to this node: itself and every shard's current leader.",
        json!({ "200": ok("Validators", "Validators"), "503": error("Unavailable") }),
    )
}

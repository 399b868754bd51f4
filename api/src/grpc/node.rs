//! `NodeService` (`Health`, `Info`, `Stats`), `ConsensusService` (`Status`, `Validators`) and
//! `AccountService` (`GetAccount`): the figures of the matching HTTP endpoints, from the same
//! functions, as typed messages.

use super::status::fixed;
use super::{unary, GrpcBody, GrpcResponse};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::routes::consensus::{
    main_leader, node_state, validator_ids, validators_seen, ConsensusSummary,
};
use crate::http::routes::node::{checks, Health};
use crate::http::routes::response::now_iso;
use crate::http::routes::Backend;
use crate::http::routes::Ctx;
use aurigraph_engine::record::Address;
use aurigraph_engine::ShardStatus;
use aurigraph_proto::v11;
use hyper::Request;
use std::cell::Cell;
use std::rc::Rc;
use tonic::Code;

pub const HEALTH: &str = "/aurigraph.v11.NodeService/Health";
pub const INFO: &str = "/aurigraph.v11.NodeService/Info";
pub const STATS: &str = "/aurigraph.v11.NodeService/Stats";
pub const CONSENSUS_STATUS: &str = "/aurigraph.v11.ConsensusService/Status";
pub const VALIDATORS: &str = "/aurigraph.v11.ConsensusService/Validators";
pub const GET_ACCOUNT: &str = "/aurigraph.v11.AccountService/GetAccount";

/// `NodeService/Health`: the checks of `GET /api/v11/health`.
pub async fn health<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(
        ctx,
        request,
        decided,
        |_: tonic::Request<v11::HealthRequest>| async move {
            let (up, checks) = checks(ctx, Health::Ready).await;
            let checks = checks
                .iter()
                .map(|check| v11::HealthCheck {
                    name: check["name"].as_str().unwrap_or_default().to_owned(),
                    status: check["status"].as_str().unwrap_or_default().to_owned(),
                    data_json: check.get("data").map(|d| d.to_string()).unwrap_or_default(),
                })
                .collect();
            Ok(v11::HealthResponse {
                status: if up { "UP" } else { "DOWN" }.into(),
                checks,
            })
        },
    )
    .await
}

/// `NodeService/Info`: the identity of `GET /api/v11/info`.
pub async fn info<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(
        ctx,
        request,
        decided,
        |_: tonic::Request<v11::InfoRequest>| async move {
            let status = ctx.backend.status().await.map_err(ApiError::from)?;
            Ok(v11::InfoResponse {
                node_id: ctx.settings.node_id,
                version: ctx.settings.version.into(),
                chain_id: ctx.backend.chain_id(),
                shards: ctx.backend.shard_count(),
                cores: ctx.backend.cores() as u32,
                assets: ctx.backend.assets(),
                validators: validator_ids(ctx.settings.node_id, &status),
            })
        },
    )
    .await
}

/// `NodeService/Stats`: the figures of `GET /api/v11/stats`.
pub async fn stats<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(
        ctx,
        request,
        decided,
        |_: tonic::Request<v11::StatsRequest>| async move {
            let status = ctx.backend.status().await.map_err(ApiError::from)?;
            let s = ctx.settings.metrics.snapshot();
            let c = ConsensusSummary::of(ctx.settings.node_id, &status);
            Ok(v11::StatsResponse {
                node_id: ctx.settings.node_id,
                timestamp: now_iso(),
                performance: Some(v11::Performance {
                    tps: s.tps,
                    avg_tps: s.avg_tps,
                    peak_tps: s.peak_tps,
                    total_transactions: s.confirmed,
                    rejected_transactions: s.rejected,
                    detached_transactions: s.detached,
                    p50_latency_ms: s.p50_ms,
                    p95_latency_ms: s.p95_ms,
                    p99_latency_ms: s.p99_ms,
                    p999_latency_ms: s.p999_ms,
                    max_latency_ms: s.max_ms,
                    latency_samples: s.latency_samples,
                    latency_window_seconds: s.latency_window_s,
                    memory_usage_mb: s.memory_mb,
                    cpu_usage_percent: s.cpu_percent,
                    uptime_seconds: s.uptime_s,
                }),
                consensus: Some(v11::ConsensusSummary {
                    current_term: c.current_term,
                    block_height: c.applied_index,
                    commit_index: c.commit_index,
                    last_applied: c.applied_index,
                    leader_node_id: c.leader,
                    validator_count: c.validators as u32,
                    active_validators: c.validators as u32,
                    total_leader_changes: c.leader_changes,
                    consensus_state: c.state.into(),
                    shards: c.shards as u32,
                    shards_with_leader: c.shards_with_leader as u32,
                    pending_records: c.pending_records as u64,
                }),
            })
        },
    )
    .await
}

/// `ConsensusService/Status`: the Raft figures of `GET /api/v11/consensus/status`.
pub async fn consensus_status<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(
        ctx,
        request,
        decided,
        |_: tonic::Request<v11::ConsensusStatusRequest>| async move {
            let status = ctx.backend.status().await.map_err(ApiError::from)?;
            let node_id = ctx.settings.node_id;
            Ok(v11::ConsensusStatusResponse {
                node_id,
                state: node_state(&status).into(),
                current_term: status.iter().map(|s| s.term).max().unwrap_or(0),
                commit_index: status.iter().map(|s| s.commit_index).sum(),
                applied_index: status.iter().map(|s| s.applied_index).sum(),
                leader_id: main_leader(&status),
                cluster_size: validator_ids(node_id, &status).len() as u32,
                shards: status.iter().map(shard_consensus).collect(),
            })
        },
    )
    .await
}

fn shard_consensus(s: &ShardStatus) -> v11::ShardConsensus {
    v11::ShardConsensus {
        shard: s.shard,
        core: s.core as u32,
        role: s.role.into(),
        leader: s.leader_id,
        term: s.term,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        last_index: s.last_index,
        state_hash: s.state_hash.to_be_bytes().to_vec(),
        accounts: s.accounts as u64,
        leader_changes: s.leader_changes,
        pending_records: s.pending_records as u64,
        voters: s.voter_ids.clone(),
        learners: s.learner_ids.clone(),
        peers: s
            .peer_matched
            .iter()
            .zip(&s.peer_lag)
            .map(|(&(node_id, match_index), &(_, lag))| v11::PeerProgress {
                node_id,
                match_index,
                lag,
            })
            .collect(),
    }
}

/// `ConsensusService/Validators`: `GET /api/v11/validators`.
pub async fn validators<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(
        ctx,
        request,
        decided,
        |_: tonic::Request<v11::ValidatorsRequest>| async move {
            let status = ctx.backend.status().await.map_err(ApiError::from)?;
            let node_id = ctx.settings.node_id;
            let validators: Vec<v11::Validator> = validators_seen(node_id, &status)
                .into_iter()
                .map(|v| v11::Validator {
                    node_id: v.node_id,
                    self_: v.is_self,
                    leader_of: v.leader_of,
                    lag_entries: v.lag_entries,
                    status: v.status.into(),
                })
                .collect();
            Ok(v11::ValidatorsResponse {
                node_id,
                validator_count: validators.len() as u32,
                validators,
            })
        },
    )
    .await
}

/// `AccountService/GetAccount`: balances by asset and the highest nonce spent; an address
/// never seen is an empty account, as over HTTP.
pub async fn get_account<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(
        ctx,
        request,
        decided,
        |message: tonic::Request<v11::GetAccountRequest>| async move {
            let address = fixed::<32>(
                &message.get_ref().address,
                "address",
                ErrorCode::InvalidAddress,
            )?;
            let account = ctx
                .backend
                .account(Address(address))
                .await
                .map_err(ApiError::from)?
                .unwrap_or_default();
            let mut balances: Vec<v11::Balance> = account
                .balances()
                .map(|(asset, amount)| v11::Balance { asset, amount })
                .collect();
            balances.sort_unstable_by_key(|b| b.asset);
            Ok(v11::GetAccountResponse {
                address: address.to_vec(),
                balances,
                nonce: account.nonce_high,
            })
        },
    )
    .await
}

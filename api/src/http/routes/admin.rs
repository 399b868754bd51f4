//! `POST /api/v11/admin/validators`: membership changes, run by `aurigraph validators`.

use super::request::read_body;
use super::response::json_response;
use super::{Answer, Backend, Ctx, RequestBody};
use crate::http::error::ApiError;
use crate::http::openapi::{error, json_content};
use aurigraph_engine::replica::SubmitError;
use aurigraph_engine::ConfChangeType;
use aurigraph_engine::SubmitFailure;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

/// `POST /api/v11/admin/validators`: one membership step on the shards this validator leads.
/// `{"action": "add-learner" | "promote" | "remove", "nodeId": N, "peerAddr": "HOST:PORT"}`
/// (`peerAddr`, the new validator's base peer address, for add-learner). Answers per shard
/// `APPLIED` (with the log index), `NOT_LEADER` (with the leader: run it there), `REFUSED` or
/// `RETRY`. `aurigraph validators` drives it over every validator until all shards applied.
pub async fn validators<B: Backend, T: RequestBody>(ctx: &Ctx<B>, request: Request<T>) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct MembershipJson {
        action: String,
        node_id: u64,
        #[serde(default)]
        peer_addr: Option<String>,
    }
    let body = read_body(request, ctx.settings.body_bytes_max).await?;
    let m: MembershipJson = serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let bad = |message: String| ApiError::invalid(message);
    if m.node_id == 0 {
        return Err(bad("nodeId must be at least 1".into()));
    }
    let (change, peer_addr) = match (m.action.as_str(), &m.peer_addr) {
        ("add-learner", Some(addr)) => {
            let parsed: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| bad(format!("peerAddr {addr:?}: {e} (expected IP:PORT)")))?;
            (
                ConfChangeType::AddLearnerNode,
                parsed.to_string().into_bytes(),
            )
        }
        ("add-learner", None) => return Err(bad("add-learner needs peerAddr".into())),
        ("promote", _) => (ConfChangeType::AddNode, Vec::new()),
        ("remove", _) => (ConfChangeType::RemoveNode, Vec::new()),
        (other, _) => {
            return Err(bad(format!(
                "action {other:?}: expected add-learner, promote or remove"
            )))
        }
    };
    let results = ctx
        .backend
        .change_membership(vec![(change, m.node_id)], peer_addr)
        .await?;
    let shards: Vec<Value> = results
        .into_iter()
        .map(|(shard, result)| match result {
            Ok(index) => json!({ "shard": shard, "status": "APPLIED", "index": index }),
            Err(SubmitFailure::Rejected(SubmitError::NotLeader { leader, .. })) => {
                json!({ "shard": shard, "status": "NOT_LEADER", "leader": leader })
            }
            Err(SubmitFailure::Retry(_)) => json!({ "shard": shard, "status": "RETRY" }),
            Err(other) => {
                json!({ "shard": shard, "status": "REFUSED", "message": other.to_string() })
            }
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "action": m.action, "nodeId": m.node_id, "shards": shards }),
    ))
}

pub fn validators_doc() -> Value {
    json!({
        "summary": "Membership change (admin)",
        "description": "One membership step on every shard this validator leads: add-learner (with the new validator's peerAddr), promote (learner to voter), remove. raft-rs ConfChangeV2 (joint consensus when several changes go together). Answers per shard APPLIED (log index), NOT_LEADER (leader id: run it there), REFUSED or RETRY; `aurigraph validators` runs it over every validator until all shards applied. Unauthenticated: expose the HTTP port to operators only.",
        "requestBody": { "required": true, "content": json_content(json!({
            "type": "object", "required": ["action", "nodeId"],
            "properties": {
                "action": { "type": "string", "enum": ["add-learner", "promote", "remove"] },
                "nodeId": { "type": "integer", "minimum": 1 },
                "peerAddr": { "type": "string", "description": "IP:PORT, the new validator's base peer address (add-learner)" }
            }
        })) },
        "responses": { "200": { "description": "Per-shard results", "content": json_content(json!({ "type": "object" })) }, "400": error("BadRequest"), "503": error("Unavailable") }
    })
}

//! `POST /api/v11/admin/validators`: membership changes, run by `aurigraph validators`.

use super::auth::require_role;
use super::request::{content_type, is_json, read_body};
use super::response::{bytes_response, json_response};
use super::{Answer, Backend, Ctx, RequestBody};
use crate::http::error::ApiError;
use crate::http::openapi::{error, json_content};
use aurigraph_engine::replica::SubmitError;
use aurigraph_engine::tokens::Role;
use aurigraph_engine::ConfChangeType;
use aurigraph_engine::SubmitFailure;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

/// `POST /api/v11/admin/validators`: one membership step on the shards this validator leads.
/// `{"action": "add-learner" | "promote" | "remove", "nodeId": N, "peerAddr": "HOST:PORT"}`
/// (`peerAddr`, the new validator's base peer address, for add-learner). Answers per shard
/// `APPLIED` (with the log index), `NOT_LEADER` (with the leader: run it there), `REFUSED` or
/// `RETRY`. `aurigraph validators` drives it over every validator until all shards applied.
/// Every admin endpoint's path starts so (hidden on a public listener when an admin listener
/// is configured).
pub const PATH_PREFIX: &str = "/api/v11/admin/";

pub async fn validators<B: Backend, T: RequestBody>(ctx: &Ctx<B>, request: Request<T>) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct MembershipJson {
        action: String,
        node_id: u64,
        #[serde(default)]
        peer_addr: Option<String>,
    }
    // An admin token first: nothing else about the request is looked at without one. Then
    // JSON only — a browser sends a cross-site form or text/plain POST without asking, never
    // an application/json one.
    let admin = require_role(ctx, &request, Role::Admin).inspect_err(|e| {
        tracing::warn!(target: "audit", action = "membership", result = e.code.as_str(), "refused: {}", e.message);
    })?;
    match content_type(&request)? {
        Some(media) if is_json(&media) => {}
        other => {
            return Err(ApiError::unsupported_media_type(
                other.as_deref().unwrap_or("none"),
                "application/json",
            ))
        }
    }
    let body = read_body(ctx, request).await?;
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
        .await
        .inspect_err(|e| {
            tracing::warn!(target: "audit", who = %admin.name, action = %m.action, node_id = m.node_id, result = "ENGINE_FAILURE", "membership change failed: {e}");
        })?;
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
    tracing::info!(target: "audit", who = %admin.name, action = %m.action, node_id = m.node_id, shards = %serde_json::Value::Array(shards.clone()), "membership change");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "action": m.action, "nodeId": m.node_id, "shards": shards }),
    ))
}

/// `GET /api/v11/admin/backup`: every shard's state at its applied index, with the data
/// directory's genesis, as one body (`aurigraph_engine::backup`), taken while the node serves.
/// `aurigraph backup create` writes it into a directory.
pub async fn backup<B: Backend, T: RequestBody>(ctx: &Ctx<B>, request: Request<T>) -> Answer {
    let admin = require_role(ctx, &request, Role::Admin).inspect_err(|e| {
        tracing::warn!(target: "audit", action = "backup", result = e.code.as_str(), "refused: {}", e.message);
    })?;
    let Some(data_dir) = ctx.settings.data_dir.as_deref() else {
        return Err(ApiError::internal(
            "this server has no data directory to back up",
        ));
    };
    // A small file, read on the core: backups are rare.
    let genesis_path = data_dir.join(aurigraph_engine::datadir::GENESIS_FILE);
    let genesis = std::fs::read(&genesis_path)
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", genesis_path.display())))?;
    let parts = ctx.backend.backup().await?;
    let mut shards = Vec::with_capacity(parts.len());
    for part in parts {
        shards.push(part.map_err(|refused| ApiError {
            retry_after: Some(crate::http::error::RETRY_AFTER_SECONDS),
            ..ApiError::new(crate::http::error::ErrorCode::Retry, refused.to_string())
        })?);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = aurigraph_engine::backup::encode(ctx.backend.chain_id(), &genesis, &shards, now_ms);
    let positions: Vec<String> = shards.iter().map(|s| s.index.to_string()).collect();
    tracing::info!(target: "audit", who = %admin.name, action = "backup", bytes = body.len(), indexes = %positions.join(","), "backup taken");
    Ok(bytes_response(
        StatusCode::OK,
        aurigraph_engine::backup::BACKUP_MEDIA_TYPE,
        body,
    ))
}

pub fn backup_doc() -> Value {
    json!({
        "summary": "Backup (admin)",
        "description": "Every shard's state at its applied index (copied on its core between two turns, so the node keeps serving), with the data directory's genesis, as one body of media type application/vnd.aurigraph.backup: the line AURIGRAPH-BACKUP-1, the manifest's length (u32 LE), the manifest (JSON: per file its length and SHA-256; per shard its log index, term, membership and state hash), then the files. Everything acknowledged before the request is in it. `aurigraph backup create` writes it into a directory; `aurigraph backup verify` and `restore` read that. Needs Authorization: Bearer <token> of role admin (401 without a valid token, 403 for another role); 503 RETRY while a shard applies a membership change; every call is an audit log line.",
        "security": [{ "adminToken": [] }],
        "responses": { "200": { "description": "The backup", "content": { "application/vnd.aurigraph.backup": { "schema": { "type": "string", "format": "binary" } } } }, "401": error("Unauthorized"), "403": error("Forbidden"), "503": error("Unavailable") }
    })
}

pub fn validators_doc() -> Value {
    json!({
        "summary": "Membership change (admin)",
        "description": "One membership step on every shard this validator leads: add-learner (with the new validator's peerAddr), promote (learner to voter), remove. raft-rs ConfChangeV2 (joint consensus when several changes go together). Answers per shard APPLIED (log index), NOT_LEADER (leader id: run it there), REFUSED or RETRY; `aurigraph validators` runs it over every validator until all shards applied. Needs Authorization: Bearer <token> of a token with role admin (401 without a valid token, 403 for a token of another role) and Content-Type: application/json (415 otherwise: a browser's cross-site form or text/plain POST is refused before anything is read); every call is an audit log line (target audit: who, what, result).",
        "requestBody": { "required": true, "content": json_content(json!({
            "type": "object", "required": ["action", "nodeId"],
            "properties": {
                "action": { "type": "string", "enum": ["add-learner", "promote", "remove"] },
                "nodeId": { "type": "integer", "minimum": 1 },
                "peerAddr": { "type": "string", "description": "IP:PORT, the new validator's base peer address (add-learner)" }
            }
        })) },
        "security": [{ "adminToken": [] }],
        "responses": { "200": { "description": "Per-shard results", "content": json_content(json!({ "type": "object" })) }, "400": error("BadRequest"), "401": error("Unauthorized"), "403": error("Forbidden"), "415": error("UnsupportedMediaType"), "503": error("Unavailable") }
    })
}

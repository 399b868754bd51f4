//! Blocks: `GET /api/v11/blocks/latest`, `GET /api/v11/blocks/{shard}/{height}`. A block is
//! one applied entry of a shard's log; its height is the log index.

use super::response::json_response;
use super::{Answer, Backend, Ctx};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::openapi::{error, json_content, ok, operation, reference};
use crate::http::types::{hex128, iso8601_ms};
use aurigraph_engine::replica::BlockHeader;
use hyper::StatusCode;
use serde_json::{json, Value};

fn block_json(b: &BlockHeader) -> Value {
    json!({
        "shard": b.shard,
        "height": b.height,
        "hash": hex::encode(b.hash),
        "prevHash": hex::encode(b.prev_hash),
        "txCount": b.tx_count,
        "term": b.term,
        "stateHash": hex128(b.state_hash),
        "timestamp": iso8601_ms(b.timestamp_ms),
        "timestampMs": b.timestamp_ms,
    })
}

/// `GET /api/v11/blocks/latest`: the latest block of every shard.
pub async fn latest<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let blocks = ctx.backend.latest_blocks().await?;
    let blocks: Vec<Value> = blocks.iter().map(block_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "blocks": blocks })))
}

/// `GET /api/v11/blocks/{shard}/{height}`.
pub async fn block<B: Backend>(ctx: &Ctx<B>, shard: &str, height: &str) -> Answer {
    let shard: u32 = shard.parse().map_err(|_| {
        ApiError::invalid(format!(
            "shard {shard:?} is not a shard number (an integer 0..=4294967295)"
        ))
    })?;
    let height: u64 = height.parse().map_err(|_| {
        ApiError::invalid(format!(
            "height {height:?} is not a height (an integer 0..=18446744073709551615)"
        ))
    })?;
    let shards = ctx.backend.shard_count();
    if shard >= shards {
        return Err(ApiError::new(
            ErrorCode::BlockNotFound,
            format!(
                "shard {shard} does not exist: this chain has {shards} shards (0..{})",
                shards - 1
            ),
        ));
    }
    match ctx.backend.block(shard, height).await? {
        Some(b) => Ok(json_response(StatusCode::OK, &block_json(&b))),
        None => Err(ApiError::new(
            ErrorCode::BlockNotFound,
            format!(
                "block {height} of shard {shard} is not available: not produced yet, or older \
                 than the bounded window of recent blocks each shard keeps"
            ),
        )),
    }
}

pub fn latest_doc() -> Value {
    operation(
        "Latest block of every shard",
        "One entry per shard that has a block.",
        json!({
            "200": { "description": "Latest blocks", "content": json_content(json!({ "type": "object", "required": ["blocks"], "properties": { "blocks": { "type": "array", "items": reference("Block") } } })) },
            "503": error("Unavailable")
        }),
    )
}

pub fn block_doc() -> Value {
    json!({
        "summary": "A block of a shard",
        "description": "A block is one applied entry of the shard's log; its height is the log index. Each shard keeps a bounded window of recent blocks: older (or future) heights are 404.",
        "parameters": [
            { "name": "shard", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0, "maximum": u32::MAX } },
            { "name": "height", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } }
        ],
        "responses": { "200": ok("The block", "Block"), "400": error("BadRequest"), "404": error("NotFound"), "503": error("Unavailable") }
    })
}

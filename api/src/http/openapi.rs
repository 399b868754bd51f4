//! `GET /api/v11/openapi.json`: the OpenAPI 3.0 description of every endpoint. The paths come
//! from the route table (each endpoint's operation is written next to its handler); the
//! schemas and the shared error responses are here.

use super::error::ErrorCode;
use super::routes::table::SPEC;
use serde_json::{json, Map, Value};

/// `{"$ref": "#/components/schemas/<name>"}`.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON body of `schema`.
pub fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// A response with a JSON body of the schema named `schema`.
pub fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": json_content(reference(schema)) })
}

/// One of the error responses of `components.responses` (see `error_responses`).
pub fn error(description: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{description}") })
}

/// An operation with a summary, a description and its responses.
pub fn operation(summary: &str, description: &str, responses: Value) -> Value {
    json!({ "summary": summary, "description": description, "responses": responses })
}

/// The paths: every endpoint of the route table, under its path template and method (but the
/// portal's, whose operation is null: pages for people, not the JSON API).
fn paths() -> Value {
    let mut paths = Map::new();
    for route in SPEC {
        let doc = (route.doc)();
        if doc.is_null() {
            continue;
        }
        let methods = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = methods {
            methods.insert(route.method.as_str().to_ascii_lowercase(), doc);
        }
    }
    Value::Object(paths)
}

fn u64_string(description: &str) -> Value {
    json!({ "type": "string", "pattern": decimal_at_most(u64::MAX), "description": description })
}

/// An unsigned integer up to `max`, as a JSON number or a decimal string (V11 clients send
/// both; strings carry u64 values that JSON numbers lose in many clients).
fn integer_or_string(max: u64, description: &str) -> Value {
    json!({ "oneOf": [{ "type": "integer", "minimum": 0, "maximum": max }, { "type": "string", "pattern": decimal_at_most(max) }], "description": description })
}

/// `schema`, or null (an optional field a client may also send as null).
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = true.into();
    schema
}

/// A regular expression for the decimal strings of 0..=`max` (leading zeros allowed, as the
/// server's parser takes them): fewer digits than `max`, or as many and at most `max` — digit
/// by digit, a smaller digit at the first place they differ.
pub fn decimal_at_most(max: u64) -> String {
    let digits: Vec<u32> = max
        .to_string()
        .chars()
        .map(|c| c.to_digit(10).expect("a digit"))
        .collect();
    let n = digits.len();
    let mut alternatives = Vec::new();
    if n > 1 {
        alternatives.push(format!("[0-9]{{1,{}}}", n - 1));
    }
    let mut prefix = String::new();
    for (i, &digit) in digits.iter().enumerate() {
        if digit > 0 {
            let rest = n - i - 1;
            let smaller = if digit == 1 {
                "0".to_string()
            } else {
                format!("[0-{}]", digit - 1)
            };
            alternatives.push(if rest == 0 {
                format!("{prefix}{smaller}")
            } else {
                format!("{prefix}{smaller}[0-9]{{{rest}}}")
            });
        }
        prefix.push(char::from_digit(digit, 10).expect("a digit"));
    }
    alternatives.push(prefix);
    format!("^0*({})$", alternatives.join("|"))
}

fn transfer_schemas() -> Map<String, Value> {
    let mut s = Map::new();
    s.insert("Address".into(), json!({ "type": "string", "pattern": "^(0[xX])?[0-9a-fA-F]{64}$", "description": "An account's Ed25519 public key, 64 hex characters (a 0x prefix is taken; answers never carry one)" }));
    s.insert("Hash".into(), json!({ "type": "string", "pattern": "^(0[xX])?[0-9a-fA-F]{64}$", "description": "SHA-256, 64 hex characters (a 0x prefix is taken; answers never carry one)" }));
    s.insert("Transfer".into(), json!({
        "type": "object", "additionalProperties": false,
        "required": ["fromAddress", "toAddress", "amount", "nonce", "signature"],
        "properties": {
            "fromAddress": reference("Address"),
            "toAddress": reference("Address"),
            "amount": integer_or_string(u64::MAX, "u64; 0 is decided as ZERO_AMOUNT"),
            "asset": nullable(integer_or_string(u32::MAX.into(), "u32, default 0 (the native asset); null or absent: the default")),
            "nonce": integer_or_string(u64::MAX, "u64, replay protection (sliding window of 64 below the highest)"),
            "chainId": nullable(integer_or_string(u32::MAX.into(), "u32, null or absent: the node's chain (what the signature must cover); another chain is decided as WRONG_CHAIN")),
            "signature": { "type": "string", "pattern": "^(0[xX])?[0-9a-fA-F]{128}$", "description": "Ed25519 signature of the 104-byte message, 128 hex characters (a 0x prefix is taken)" },
            "transactionType": { "type": "string", "enum": ["TRANSFER", null], "nullable": true, "description": "TRANSFER (the only type), or null or absent" }
        }
    }));
    s.insert("TransferBatch".into(), json!({
        "type": "object", "additionalProperties": false, "required": ["transactions"],
        "properties": { "transactions": { "type": "array", "minItems": 1, "maxItems": aurigraph_engine::batch::BATCH_RECORDS_MAX, "items": reference("Transfer") } }
    }));
    s.insert("ResultCode".into(), json!({
        "type": "string",
        "enum": aurigraph_engine::ResultCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "description": "Outcome of a transfer; only OK changes state. More codes may be added."
    }));
    s.insert("Outcome".into(), json!({
        "type": "object", "required": ["txHash", "status", "result", "shard", "blockNumber"],
        "properties": {
            "txHash": reference("Hash"),
            "status": { "type": "string", "enum": ["CONFIRMED", "REJECTED"], "description": "CONFIRMED iff result is OK" },
            "result": reference("ResultCode"),
            "shard": { "type": "integer" },
            "blockNumber": { "type": "integer", "format": "int64", "description": "The shard's log index that decided it; 0 when rejected before consensus (e.g. BAD_SIGNATURE)" },
            "source": { "type": "string", "enum": ["archive"], "description": "Present only on GET /api/v11/transactions/{txHash} answered from the PostgreSQL archive (the hash had left the recent window); absent on answers from the recent window" }
        }
    }));
    s.insert("Pending".into(), json!({
        "type": "object", "required": ["txHash", "status", "shard"],
        "properties": { "txHash": reference("Hash"), "status": { "type": "string", "enum": ["PENDING"] }, "shard": { "type": "integer" } }
    }));
    s.insert("BatchOutcome".into(), json!({
        "type": "object", "required": ["results", "accepted", "rejected"],
        "properties": {
            "results": { "type": "array", "items": reference("Outcome"), "description": "In request order" },
            "accepted": { "type": "integer", "description": "Transfers with result OK" },
            "rejected": { "type": "integer", "description": "Transfers with any other result" }
        }
    }));
    s.insert("BatchPending".into(), json!({
        "type": "object", "required": ["results", "pending"],
        "properties": { "results": { "type": "array", "items": reference("Pending") }, "pending": { "type": "integer" } }
    }));
    s.insert("ArchivedTransfer".into(), json!({
        "type": "object",
        "required": ["txHash", "status", "result", "shard", "blockNumber", "position", "fromAddress", "toAddress", "asset", "amount", "nonce"],
        "properties": {
            "txHash": reference("Hash"),
            "status": { "type": "string", "enum": ["CONFIRMED", "REJECTED"], "description": "CONFIRMED iff result is OK" },
            "result": reference("ResultCode"),
            "shard": { "type": "integer" },
            "blockNumber": { "type": "integer", "format": "int64", "description": "The shard's log index that decided it" },
            "position": { "type": "integer", "description": "Its position in that block (log entry)" },
            "fromAddress": reference("Address"),
            "toAddress": reference("Address"),
            "asset": { "type": "integer" },
            "amount": u64_string("u64"),
            "nonce": u64_string("u64")
        }
    }));
    s.insert("AccountTransactions".into(), json!({
        "type": "object", "required": ["address", "transactions", "next"],
        "properties": {
            "address": reference("Address"),
            "transactions": { "type": "array", "items": reference("ArchivedTransfer"), "description": "Newest first: block, then shard, then position, descending" },
            "next": { "type": "string", "nullable": true, "description": "The cursor to pass as `before` for the next page; null on the last page" }
        }
    }));
    s.insert("Account".into(), json!({
        "type": "object", "required": ["address", "balances", "nonce"],
        "properties": {
            "address": reference("Address"),
            "balances": { "type": "object", "additionalProperties": u64_string("amount"), "description": "Non-zero balances by asset id (decimal string keys)" },
            "nonce": u64_string("Highest nonce accepted so far (\"0\" for a new account)")
        }
    }));
    s
}

fn node_schemas() -> Map<String, Value> {
    let mut s = Map::new();
    s.insert("Error".into(), json!({
        "type": "object", "required": ["error"],
        "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
            "code": { "type": "string", "pattern": "^[A-Z_]+$", "description": format!("Stable, UPPER_SNAKE: {}", ErrorCode::ALL.map(ErrorCode::as_str).join(", ")) },
            "message": { "type": "string", "description": "Human-readable explanation" }
        }}}
    }));
    s.insert("RandomBytes".into(), json!({
        "type": "object", "required": ["source", "verified", "timestamp", "size"],
        "properties": {
            "bytes": { "type": "string", "format": "byte", "description": "base64 (random-bytes, crypto-seed)" },
            "nonce": { "type": "string", "description": "lowercase hex (transaction-nonce)" },
            "size": { "type": "integer" },
            "length": { "type": "integer", "description": "crypto-seed: the requested length" },
            "source": { "type": "string", "enum": ["LOCAL_FALLBACK", "CURBY_RNG", "CURBY_Q", "NIST"] },
            "verified": { "type": "boolean", "description": "true when a verified beacon pulse was mixed in" },
            "timestamp": { "type": "string", "format": "date-time" },
            "provenance": { "type": "object", "nullable": true, "description": "The pulse mixed in: source, chain, index, id (pulse CID or URI), timestamp (the pulse's)" }
        }
    }));
    s.insert("Health".into(), json!({
        "type": "object", "required": ["status", "checks"],
        "properties": {
            "status": { "type": "string", "enum": ["UP", "DOWN"] },
            "checks": { "type": "array", "items": { "type": "object", "properties": {
                "name": { "type": "string" }, "status": { "type": "string", "enum": ["UP", "DOWN"] },
                "data": { "type": "object", "properties": {
                    "shards": { "type": "integer" }, "leaders": { "type": "integer", "description": "Shards with a known leader" },
                    "appliedIndex": { "type": "integer", "description": "Sum over shards" }, "commitIndex": { "type": "integer", "description": "Sum over shards" },
                    "error": { "type": "string" }
                }}
            }}}
        }
    }));
    s.insert("Info".into(), json!({
        "type": "object",
        "properties": {
            "nodeId": { "type": "integer" }, "version": { "type": "string" }, "chainId": { "type": "integer" },
            "shards": { "type": "integer" }, "cores": { "type": "integer" },
            "assets": { "type": "array", "items": { "type": "integer" } },
            "validators": { "type": "array", "items": { "type": "integer" }, "description": "Node ids of the validators known to this node" }
        }
    }));
    let number = json!({ "type": "number" });
    let integer = json!({ "type": "integer", "format": "int64" });
    s.insert("Stats".into(), json!({
        "type": "object",
        "properties": {
            "nodeId": integer, "timestamp": { "type": "string", "format": "date-time" },
            "performance": { "type": "object", "properties": {
                "tps": number, "avgTps": number, "peakTps": number,
                "totalTransactions": { "type": "integer", "description": "Transfers confirmed (result OK) through this node's HTTP API since start" },
                "rejectedTransactions": integer, "detachedTransactions": { "type": "integer", "description": "Submitted with wait=false (not in the figures above)" },
                "p50LatencyMs": number, "p95LatencyMs": number, "p99LatencyMs": number, "p999LatencyMs": number, "maxLatencyMs": number,
                "latencySamples": integer, "latencyWindowSeconds": number,
                "memoryUsageMb": number, "cpuUsagePercent": number, "uptimeSeconds": number
            }},
            "consensus": { "type": "object", "properties": {
                "currentTerm": { "type": "integer", "description": "Highest term over the shards" },
                "blockHeight": { "type": "integer", "description": "Applied log entries, summed over the shards" },
                "commitIndex": { "type": "integer", "description": "Sum over the shards" },
                "lastApplied": { "type": "integer", "description": "Sum over the shards" },
                "leaderNodeId": { "type": "integer", "nullable": true, "description": "The node leading most shards" },
                "validatorCount": integer, "activeValidators": integer,
                "totalLeaderChanges": integer,
                "consensusState": { "type": "string", "description": "This node's role in every shard (LEADER, FOLLOWER, CANDIDATE, PRE_CANDIDATE), or MIXED" },
                "shards": integer, "shardsWithLeader": integer, "pendingRecords": integer
            }}
        }
    }));
    s.insert("Block".into(), json!({
        "type": "object", "required": ["shard", "height", "hash", "prevHash", "txCount", "term", "stateHash", "timestamp"],
        "properties": {
            "shard": { "type": "integer" }, "height": { "type": "integer", "description": "The shard's log index" },
            "hash": reference("Hash"), "prevHash": reference("Hash"),
            "txCount": { "type": "integer" }, "term": { "type": "integer" },
            "stateHash": { "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "128-bit state hash of the shard after this block" },
            "timestamp": { "type": "string", "format": "date-time", "description": "When this replica applied it (ISO-8601 UTC, milliseconds); local, not part of any hash" },
            "timestampMs": { "type": "integer", "description": "The same, in milliseconds since the Unix epoch" }
        }
    }));
    s.insert("ShardStatus".into(), json!({
        "type": "object",
        "properties": {
            "shard": { "type": "integer" }, "core": { "type": "integer" },
            "role": { "type": "string", "enum": ["LEADER", "FOLLOWER", "CANDIDATE", "PRE_CANDIDATE"] },
            "leader": { "type": "integer", "nullable": true }, "term": { "type": "integer" },
            "commitIndex": { "type": "integer" }, "appliedIndex": { "type": "integer" }, "lastIndex": { "type": "integer" },
            "stateHash": { "type": "string" }, "accounts": { "type": "integer" },
            "leaderChanges": { "type": "integer" }, "pendingRecords": { "type": "integer" }
        }
    }));
    s.insert("ConsensusStatus".into(), json!({
        "type": "object",
        "properties": {
            "nodeId": { "type": "integer" }, "state": { "type": "string" },
            "currentTerm": { "type": "integer" }, "commitIndex": { "type": "integer" }, "appliedIndex": { "type": "integer" },
            "leaderId": { "type": "integer", "nullable": true }, "clusterSize": { "type": "integer" },
            "shards": { "type": "array", "items": reference("ShardStatus") }
        }
    }));
    s.insert(
        "Validators".into(),
        json!({
            "type": "object",
            "properties": {
                "nodeId": { "type": "integer" }, "validatorCount": { "type": "integer" },
                "validators": { "type": "array", "items": { "type": "object", "properties": {
                    "nodeId": { "type": "integer" }, "self": { "type": "boolean" },
                    "leaderOf": { "type": "array", "items": { "type": "integer" } },
                    "status": { "type": "string", "enum": ["ACTIVE", "UNKNOWN"] }
                }}}
            }
        }),
    );
    s
}

fn error_responses() -> Value {
    let e = |d: &str| json!({ "description": d, "content": json_content(reference("Error")) });
    json!({
        "BadRequest": e("Malformed or invalid request: MALFORMED_JSON (with line and column), INVALID_REQUEST (wrong types, missing or unknown fields, bad parameters), INVALID_ADDRESS, INVALID_SIGNATURE, INVALID_TX_HASH, INVALID_BATCH"),
        "NotFound": e("NOT_FOUND (no such endpoint), TRANSACTION_NOT_FOUND, BLOCK_NOT_FOUND, NO_VERIFIED_PULSE, NO_ARCHIVE (an archive read on a node without archive_url)"),
        "TooLarge": e("PAYLOAD_TOO_LARGE (body over the node's limit, 16 MiB by default) or TOO_MANY_TRANSFERS (over 65,536 per batch by default)"),
        "UnsupportedMediaType": e("UNSUPPORTED_MEDIA_TYPE"),
        "Unauthorized": e("UNAUTHORIZED: no Authorization: Bearer token, or one this node's tokens file does not hold"),
        "Forbidden": e("FORBIDDEN: a valid token that may not do this (e.g. a gateway the genesis gives no account)"),
        "Unavailable": {
            "description": "This validator cannot take the request now: NOT_LEADER, OVERLOADED (with Retry-After), RETRY (with Retry-After; resubmitting is harmless), SHUTTING_DOWN, ENGINE_FAILURE, ARCHIVE_UNAVAILABLE (with Retry-After: PostgreSQL away or slow, or the node's archive readers all busy)",
            "headers": { "Retry-After": { "schema": { "type": "integer" }, "description": "Seconds (OVERLOADED, RETRY, ARCHIVE_UNAVAILABLE)" } },
            "content": json_content(reference("Error"))
        },
        "MethodNotAllowed": {
            "description": "METHOD_NOT_ALLOWED; the Allow header lists the method the path takes",
            "headers": { "Allow": { "schema": { "type": "string" } } },
            "content": json_content(reference("Error"))
        }
    })
}

/// The OpenAPI document.
pub fn document(version: &str) -> Value {
    let mut schemas = transfer_schemas();
    schemas.extend(node_schemas());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Aurigraph validator node API",
            "version": version,
            "description": "The V11 paths and camelCase JSON names, served for real: verified signatures, Raft consensus per shard, durable storage. Every error is {\"error\":{\"code\":\"UPPER_SNAKE\",\"message\":\"…\"}} with a 4xx/5xx status; an unknown path is 404 NOT_FOUND and a known path with another method is 405 METHOD_NOT_ALLOWED (see components.responses). HTTP/1.1 with keep-alive and HTTP/2 (h2c with prior knowledge) on the same port."
        },
        "paths": paths(),
        "components": {
            "schemas": Value::Object(schemas),
            "responses": error_responses(),
            "securitySchemes": {
                "gatewayToken": { "type": "http", "scheme": "bearer", "description": "A token of role gateway: its SHA-256 is listed in the node's tokens file (--tokens)" },
                "adminToken": { "type": "http", "scheme": "bearer", "description": "A token of role admin: its SHA-256 is listed in the node's tokens file (--tokens)" }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::decimal_at_most;

    #[test]
    fn the_decimal_pattern_takes_exactly_the_integers_up_to_its_maximum() {
        for max in [0u64, 1, 9, 10, 99, 100, 305, 4_294_967_295, u64::MAX] {
            let pattern = regex::Regex::new(&decimal_at_most(max)).unwrap();
            let around = [0, 1.min(max), max / 2, max.saturating_sub(1), max];
            for n in around {
                assert!(pattern.is_match(&n.to_string()), "{max}: {n}");
                assert!(
                    pattern.is_match(&format!("00{n}")),
                    "{max}: leading zeros {n}"
                );
            }
            if let Some(over) = max.checked_add(1) {
                assert!(!pattern.is_match(&over.to_string()), "{max}: {over}");
                assert!(
                    !pattern.is_match(&over.saturating_mul(10).to_string()),
                    "{max}"
                );
            } else {
                assert!(!pattern.is_match("18446744073709551616"));
                assert!(!pattern.is_match("99999999999999999999"));
            }
            assert!(!pattern.is_match("") && !pattern.is_match("1a") && !pattern.is_match("-1"));
        }
    }
}

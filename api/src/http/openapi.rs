//! `GET /api/v11/openapi.json`: the OpenAPI 3.0 description of every endpoint.

use serde_json::{json, Map, Value};

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": json_content(reference(schema)) })
}

fn error(description: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{description}") })
}

fn get(summary: &str, description: &str, responses: Value) -> Value {
    json!({ "get": { "summary": summary, "description": description, "responses": responses } })
}

fn wait_parameter() -> Value {
    json!({
        "name": "wait", "in": "query", "required": false,
        "description": "true (default): answer once every transfer is committed, fdatasynced and applied. false: answer 202 right after admission with status PENDING; look the outcome up with GET /api/v11/transactions/{txHash}.",
        "schema": { "type": "boolean", "default": true }
    })
}

fn paths() -> Value {
    let health_responses = json!({
        "200": ok("UP", "Health"),
        "503": { "description": "DOWN (ready: a shard has no leader, or the engine stopped; live: the engine stopped)", "content": json_content(reference("Health")) }
    });
    let mut paths = Map::new();
    paths.insert(
        "/api/v11/health".into(),
        get(
            "Health (readiness)",
            "MicroProfile Health shape. UP when every shard has a known leader.",
            health_responses.clone(),
        ),
    );
    paths.insert(
        "/q/health/live".into(),
        get(
            "Liveness",
            "UP while the ledger engine answers.",
            health_responses.clone(),
        ),
    );
    paths.insert(
        "/q/health/ready".into(),
        get(
            "Readiness",
            "UP when every shard has a known leader.",
            health_responses,
        ),
    );
    paths.insert(
        "/api/v11/info".into(),
        get(
            "Node information",
            "Identity and layout of this validator.",
            json!({ "200": ok("Node information", "Info"), "503": error("Unavailable") }),
        ),
    );
    paths.insert("/api/v11/stats".into(), get(
        "Measured figures",
        "Every number is measured by this process, none is invented. tps: transfers confirmed (result OK) per second over the last second; avgTps: since the HTTP server started; peakTps: highest one-second tps. Latency: admission to reply of waited submissions (wait=true), over roughly the last 10 seconds (latencyWindowSeconds), in a log-bucketed histogram (within 6.25%). memoryUsageMb: resident set size; cpuUsagePercent: process CPU over the last second as a percent of the CPUs available. Consensus figures are sums or maxima over the shards.",
        json!({ "200": ok("Figures", "Stats"), "503": error("Unavailable") }),
    ));
    paths.insert("/api/v11/transactions".into(), json!({ "post": {
        "summary": "Submit one transfer",
        "description": "The transfer is signed by the sender over the 104-byte message of DESIGN.md section 5. A request that is valid but decided with a result other than OK (e.g. INSUFFICIENT_FUNDS) is still HTTP 200, with status REJECTED.",
        "parameters": [wait_parameter()],
        "requestBody": { "required": true, "content": json_content(reference("Transfer")) },
        "responses": {
            "200": ok("Decided: CONFIRMED (result OK) or REJECTED (any other result)", "Outcome"),
            "202": ok("Admitted, not yet decided (wait=false)", "Pending"),
            "400": error("BadRequest"), "413": error("TooLarge"), "415": error("UnsupportedMediaType"), "503": error("Unavailable")
        }
    }}));
    paths.insert("/api/v11/transactions/batch".into(), json!({ "post": {
        "summary": "Submit a batch of transfers",
        "description": "JSON {\"transactions\":[…]} or the binary batch (Content-Type: application/vnd.aurigraph.batch; the rkyv archive of 168-byte records described in aurigraph_engine::batch: 168*N+12 bytes). One result per transfer, in request order. With Accept: application/vnd.aurigraph.results (and wait=true) the answer is the compact binary format: 9 bytes per transfer in request order, 1 byte result code (0 OK, 1 BAD_SIGNATURE, 2 INSUFFICIENT_FUNDS, 3 NONCE_REPLAYED, 4 NONCE_TOO_OLD, 5 ZERO_AMOUNT, 6 SELF_TRANSFER, 7 UNKNOWN_ASSET, 8 WRONG_CHAIN, 9 MALFORMED) then the block number as u64 little-endian (0: rejected before consensus). Decided rejections are HTTP 200.",
        "parameters": [wait_parameter()],
        "requestBody": { "required": true, "content": {
            "application/json": { "schema": reference("TransferBatch") },
            "application/vnd.aurigraph.batch": { "schema": { "type": "string", "format": "binary" } }
        }},
        "responses": {
            "200": { "description": "Every transfer decided", "content": {
                "application/json": { "schema": reference("BatchOutcome") },
                "application/vnd.aurigraph.results": { "schema": { "type": "string", "format": "binary", "description": "9 bytes per transfer: result code u8, block u64 LE" } }
            }},
            "202": ok("Admitted, not yet decided (wait=false)", "BatchPending"),
            "400": error("BadRequest"),
            "413": error("TooLarge"),
            "415": error("UnsupportedMediaType"),
            "503": error("Unavailable")
        }
    }}));
    paths.insert("/api/v11/transactions/{txHash}".into(), json!({ "get": {
        "summary": "Status of a transfer",
        "description": "Each shard keeps a bounded window of recent transfers; older or unknown hashes are 404.",
        "parameters": [{ "name": "txHash", "in": "path", "required": true, "schema": reference("Hash") }],
        "responses": {
            "200": { "description": "Known", "content": json_content(json!({ "oneOf": [reference("Outcome"), reference("Pending")] })) },
            "400": error("BadRequest"), "404": error("NotFound"), "503": error("Unavailable")
        }
    }}));
    paths.insert("/api/v11/accounts/{address}".into(), json!({ "get": {
        "summary": "Balances and nonce of an account",
        "description": "An address that never held anything is answered as an empty account: 200, balances {}, nonce \"0\".",
        "parameters": [{ "name": "address", "in": "path", "required": true, "schema": reference("Address") }],
        "responses": { "200": ok("The account", "Account"), "400": error("BadRequest"), "503": error("Unavailable") }
    }}));
    paths.insert("/api/v11/blocks/latest".into(), get("Latest block of every shard", "One entry per shard that has a block.", json!({
        "200": { "description": "Latest blocks", "content": json_content(json!({ "type": "object", "required": ["blocks"], "properties": { "blocks": { "type": "array", "items": reference("Block") } } })) },
        "503": error("Unavailable")
    })));
    paths.insert("/api/v11/blocks/{shard}/{height}".into(), json!({ "get": {
        "summary": "A block of a shard",
        "description": "A block is one applied entry of the shard's log; its height is the log index. Each shard keeps a bounded window of recent blocks: older (or future) heights are 404.",
        "parameters": [
            { "name": "shard", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } },
            { "name": "height", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } }
        ],
        "responses": { "200": ok("The block", "Block"), "400": error("BadRequest"), "404": error("NotFound"), "503": error("Unavailable") }
    }}));
    paths.insert(
        "/api/v11/validators".into(),
        get(
            "Validators",
            "Validators known to this node: itself and every shard's current leader.",
            json!({ "200": ok("Validators", "Validators"), "503": error("Unavailable") }),
        ),
    );
    paths.insert("/api/v11/admin/validators".into(), json!({ "post": {
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
    }}));
    paths.insert("/api/v11/consensus/status".into(), get("Consensus status", "This node's role, and the Raft figures of every shard.", json!({ "200": ok("Consensus status", "ConsensusStatus"), "503": error("Unavailable") })));
    let int_query = |name: &str, min: u32, max: u32, description: &str| {
        json!({
            "name": name, "in": "query", "required": false, "description": description,
            "schema": { "type": "integer", "minimum": min, "maximum": max, "default": 32 }
        })
    };
    let drawn = |summary: &str, description: &str, parameters: Vec<Value>| {
        json!({ "get": {
            "summary": summary, "description": description, "parameters": parameters,
            "responses": { "200": ok("Random bytes", "RandomBytes"), "400": error("BadRequest") }
        }})
    };
    const CONSTRUCTION: &str = " Bytes are HKDF-SHA512 over 64 bytes of OS CSPRNG output concatenated with the latest verified beacon value (see info); with no verified pulse (no source configured, the default, or none verifying) from the CSPRNG alone, with source LOCAL_FALLBACK and verified false.";
    paths.insert(
        "/api/v11/quantum/randomness/random-bytes".into(),
        drawn(
            "Random bytes",
            &format!("size bytes, base64 in bytes.{CONSTRUCTION}"),
            vec![int_query(
                "size",
                1,
                1024,
                "Bytes wanted, 1..1024 (default 32)",
            )],
        ),
    );
    paths.insert(
        "/api/v11/quantum/randomness/transaction-nonce".into(),
        drawn(
            "Transaction nonce",
            &format!("32 bytes, lowercase hex in nonce.{CONSTRUCTION}"),
            vec![],
        ),
    );
    paths.insert(
        "/api/v11/quantum/randomness/crypto-seed".into(),
        drawn(
            "Cryptographic seed",
            &format!("length bytes, base64 in bytes.{CONSTRUCTION}"),
            vec![int_query(
                "length",
                16,
                256,
                "Seed length in bytes, 16..256 (default 32)",
            )],
        ),
    );
    paths.insert("/api/v11/quantum/randomness/health".into(), get(
        "Beacon health",
        "UP with no source configured (data.configured false: the fallback is served by design) or when every configured source has a verified pulse; DOWN (503) with data.reasons when a configured source has none or fails. The node's own health shows this as its beacon check without changing the node's status.",
        json!({ "200": { "description": "UP", "content": json_content(json!({ "type": "object" })) }, "503": { "description": "DOWN", "content": json_content(json!({ "type": "object" })) } }),
    ));
    paths.insert("/api/v11/quantum/randomness/info".into(), get(
        "Beacon sources and construction",
        "The configured sources (empty by default) with their latest verified pulse and last error, the supported sources, the fallback and the derivation (HKDF-SHA512 salt, input and per-endpoint info labels), and the parameter limits.",
        json!({ "200": { "description": "Beacon information", "content": json_content(json!({ "type": "object" })) } }),
    ));
    paths.insert("/api/v11/quantum/randomness/pulse/latest".into(), get(
        "Latest verified pulse",
        "The public output (value, hex; bytes, base64) of the latest verified pulse and its provenance (source, chain, index, id = pulse CID or URI, pulse timestamp), enough to fetch and re-verify it. Public by design: never a secret. 503 NO_VERIFIED_PULSE when none is held.",
        json!({ "200": { "description": "Latest verified pulse", "content": json_content(json!({ "type": "object" })) }, "503": error("Unavailable") }),
    ));
    paths.insert("/api/v11/openapi.json".into(), get("This document", "OpenAPI 3.0.", json!({ "200": { "description": "OpenAPI document", "content": json_content(json!({ "type": "object" })) } })));
    paths.insert("/metrics".into(), get("Prometheus metrics", "The figures of /api/v11/stats and per-shard consensus figures, in the OpenMetrics 1.0 text format (prometheus-client).", json!({
        "200": { "description": "Metrics", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } },
        "503": error("Unavailable")
    })));
    Value::Object(paths)
}

fn u64_string(description: &str) -> Value {
    json!({ "type": "string", "pattern": "^[0-9]{1,20}$", "description": description })
}

fn integer_or_string(description: &str) -> Value {
    json!({ "oneOf": [{ "type": "integer", "format": "int64", "minimum": 0 }, { "type": "string", "pattern": "^[0-9]{1,20}$" }], "description": description })
}

fn transfer_schemas() -> Map<String, Value> {
    let mut s = Map::new();
    s.insert("Address".into(), json!({ "type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "An account's Ed25519 public key, 64 hex characters" }));
    s.insert("Hash".into(), json!({ "type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "SHA-256, 64 hex characters" }));
    s.insert("Transfer".into(), json!({
        "type": "object", "additionalProperties": false,
        "required": ["fromAddress", "toAddress", "amount", "nonce", "signature"],
        "properties": {
            "fromAddress": reference("Address"),
            "toAddress": reference("Address"),
            "amount": integer_or_string("u64; 0 is decided as ZERO_AMOUNT"),
            "asset": integer_or_string("u32, default 0 (the native asset)"),
            "nonce": integer_or_string("u64, replay protection (sliding window of 64 below the highest)"),
            "chainId": integer_or_string("u32, default: the node's chain (what the signature must cover); another chain is decided as WRONG_CHAIN"),
            "signature": { "type": "string", "pattern": "^[0-9a-fA-F]{128}$", "description": "Ed25519 signature of the 104-byte message, 128 hex characters" },
            "transactionType": { "type": "string", "enum": ["TRANSFER"] }
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
            "blockNumber": { "type": "integer", "format": "int64", "description": "The shard's log index that decided it; 0 when rejected before consensus (e.g. BAD_SIGNATURE)" }
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
            "code": { "type": "string", "pattern": "^[A-Z_]+$", "description": "Stable, UPPER_SNAKE: NOT_FOUND, METHOD_NOT_ALLOWED, MALFORMED_JSON, INVALID_REQUEST, INVALID_ADDRESS, INVALID_SIGNATURE, INVALID_TX_HASH, INVALID_BATCH, BODY_READ_FAILED, PAYLOAD_TOO_LARGE, TOO_MANY_TRANSFERS, UNSUPPORTED_MEDIA_TYPE, TRANSACTION_NOT_FOUND, BLOCK_NOT_FOUND, NOT_LEADER, OVERLOADED, RETRY, SHUTTING_DOWN, ENGINE_FAILURE, NO_VERIFIED_PULSE, INTERNAL" },
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
        "NotFound": e("NOT_FOUND (no such endpoint), TRANSACTION_NOT_FOUND, BLOCK_NOT_FOUND"),
        "TooLarge": e("PAYLOAD_TOO_LARGE (body over the node's limit, 16 MiB by default) or TOO_MANY_TRANSFERS (over 65,536 per batch by default)"),
        "UnsupportedMediaType": e("UNSUPPORTED_MEDIA_TYPE"),
        "Unavailable": {
            "description": "This validator cannot take the request now: NOT_LEADER, OVERLOADED (with Retry-After), RETRY (with Retry-After; resubmitting is harmless), SHUTTING_DOWN, ENGINE_FAILURE, NO_VERIFIED_PULSE (quantum/randomness/pulse/latest)",
            "headers": { "Retry-After": { "schema": { "type": "integer" }, "description": "Seconds (OVERLOADED, RETRY)" } },
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
        "components": { "schemas": Value::Object(schemas), "responses": error_responses() }
    })
}

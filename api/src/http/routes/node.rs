//! The node: health, information, measured figures, metrics, and this API's description.

use super::consensus::{consensus_json, validator_ids};
use super::quantum;
use super::response::{bytes_response, json_response, now_iso};
use super::{Answer, Backend, Ctx};
use crate::http::metrics::exposition;
use crate::http::metrics::render::{render, Scrape};
use crate::http::metrics::Snapshot;
use crate::http::openapi::{error, json_content, ok, operation, reference};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde_json::{json, Value};

/// Which health: live (the engine answers) or ready (every shard has a leader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Live,
    Ready,
}

/// `GET /api/v11/health`, `/q/health/ready` (UP when every shard has a leader) and
/// `/q/health/live` (UP while the engine answers), with the beacon as a second check.
pub async fn health<B: Backend>(ctx: &Ctx<B>, kind: Health) -> Answer {
    let (up, checks) = checks(ctx, kind).await;
    let word = if up { "UP" } else { "DOWN" };
    let body = json!({ "status": word, "checks": checks });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json_response(code, &body))
}

/// Whether the node is up (the ledger check alone decides), and every check: the ledger's,
/// the beacon's, one per downstream sink (shared by HTTP and gRPC).
pub async fn checks<B: Backend>(ctx: &Ctx<B>, kind: Health) -> (bool, Vec<Value>) {
    let (up, data) = match ctx.backend.status().await {
        Ok(status) => {
            let leaders = status.iter().filter(|s| s.leader_id.is_some()).count();
            let up = kind == Health::Live || leaders == status.len();
            let data = json!({
                "shards": status.len(),
                "leaders": leaders,
                "appliedIndex": status.iter().map(|s| s.applied_index).sum::<u64>(),
                "commitIndex": status.iter().map(|s| s.commit_index).sum::<u64>(),
            });
            (up, data)
        }
        Err(e) => (false, json!({ "error": e.to_string() })),
    };
    let word = if up { "UP" } else { "DOWN" };
    let mut checks = vec![
        json!({ "name": "ledger", "status": word, "data": data }),
        quantum::beacon_check(&ctx.settings),
    ];
    checks.extend(sink_checks(&ctx.settings));
    (up, checks)
}

/// One check per downstream sink: UP, or DEGRADED with the reason (it cannot write, or it
/// found a gap). A sink never makes the node DOWN: the ledger does not wait for it.
fn sink_checks(settings: &crate::http::HttpSettings) -> Vec<Value> {
    let check = |name: &str, counters: &aurigraph_sinks::SinkCounters| {
        let name = format!("sink:{name}");
        match counters.health() {
            aurigraph_sinks::SinkHealth::Up => json!({ "name": name, "status": "UP" }),
            aurigraph_sinks::SinkHealth::Degraded(reason) => json!({
                "name": name,
                "status": "DEGRADED",
                "data": { "reason": reason },
            }),
        }
    };
    settings
        .sinks()
        .into_iter()
        .map(|(name, counters)| check(name, counters))
        .collect()
}

/// `GET /api/v11/info`.
pub async fn info<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "nodeId": ctx.settings.node_id,
            "version": ctx.settings.version,
            "chainId": ctx.backend.chain_id(),
            "shards": ctx.backend.shard_count(),
            "cores": ctx.backend.cores(),
            "assets": ctx.backend.assets(),
            "validators": validator_ids(ctx.settings.node_id, &status),
        }),
    ))
}

/// The V11 `performance` object (plus a few extra measured fields).
pub(crate) fn performance_json(s: &Snapshot) -> Value {
    json!({
        "tps": s.tps,
        "avgTps": s.avg_tps,
        "peakTps": s.peak_tps,
        "totalTransactions": s.confirmed,
        "rejectedTransactions": s.rejected,
        "detachedTransactions": s.detached,
        "p50LatencyMs": s.p50_ms,
        "p95LatencyMs": s.p95_ms,
        "p99LatencyMs": s.p99_ms,
        "p999LatencyMs": s.p999_ms,
        "maxLatencyMs": s.max_ms,
        "latencySamples": s.latency_samples,
        "latencyWindowSeconds": s.latency_window_s,
        "memoryUsageMb": s.memory_mb,
        "cpuUsagePercent": s.cpu_percent,
        "uptimeSeconds": s.uptime_s,
    })
}

/// `GET /api/v11/stats`: the V11 shape, every figure measured.
pub async fn stats<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let snapshot = ctx.settings.metrics.snapshot();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "nodeId": ctx.settings.node_id,
            "timestamp": now_iso(),
            "performance": performance_json(&snapshot),
            "consensus": consensus_json(ctx.settings.node_id, &status),
        }),
    ))
}

/// `GET /metrics`: Prometheus text format (see [`crate::http::metrics::render`]).
pub async fn metrics<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let counters = ctx.backend.shard_counters();
    let core_counters = ctx.backend.core_counters();
    let body = render(&Scrape {
        settings: &ctx.settings,
        status: &status,
        counters: &counters,
        core_counters: &core_counters,
        chain_id: ctx.backend.chain_id(),
        shards: ctx.backend.shard_count(),
        cores: ctx.backend.cores(),
    });
    let mut response = bytes_response(StatusCode::OK, "text/plain", body.into_bytes());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(exposition::CONTENT_TYPE),
    );
    Ok(response)
}

/// `GET /api/v11/openapi.json`.
pub fn openapi<B>(ctx: &Ctx<B>) -> Answer {
    Ok(json_response(
        StatusCode::OK,
        &crate::http::openapi::document(ctx.settings.version),
    ))
}

fn health_responses() -> Value {
    json!({
        "200": ok("UP", "Health"),
        "503": { "description": "DOWN (ready: a shard has no leader, or the engine stopped; live: the engine stopped)", "content": json_content(reference("Health")) }
    })
}

pub fn health_doc() -> Value {
    operation(
        "Health (readiness)",
        "MicroProfile Health shape. UP when every shard has a known leader.",
        health_responses(),
    )
}

pub fn live_doc() -> Value {
    operation(
        "Liveness",
        "UP while the ledger engine answers.",
        health_responses(),
    )
}

pub fn ready_doc() -> Value {
    operation(
        "Readiness",
        "UP when every shard has a known leader.",
        health_responses(),
    )
}

pub fn info_doc() -> Value {
    operation(
        "Node information",
        "Identity and layout of this validator.",
        json!({ "200": ok("Node information", "Info"), "503": error("Unavailable") }),
    )
}

pub fn stats_doc() -> Value {
    operation("Measured figures",
        "Every number is measured by this process, none is invented. tps: transfers confirmed (result OK) per second over the last second; avgTps: since the HTTP server started; peakTps: highest one-second tps. Latency: admission to reply of waited submissions (wait=true), over roughly the last 10 seconds (latencyWindowSeconds), in a log-bucketed histogram (within 6.25%). memoryUsageMb: resident set size; cpuUsagePercent: process CPU over the last second as a percent of the CPUs available. Consensus figures are sums or maxima over the shards.",
        json!({ "200": ok("Figures", "Stats"), "503": error("Unavailable") }))
}

pub fn openapi_doc() -> Value {
    operation(
        "This document",
        "OpenAPI 3.0.",
        json!({ "200": { "description": "OpenAPI document", "content": json_content(json!({ "type": "object" })) } }),
    )
}

pub fn metrics_doc() -> Value {
    operation("Prometheus metrics", "The figures of /api/v11/stats and per-shard consensus figures, in the OpenMetrics 1.0 text format (prometheus-client).", json!({
        "200": { "description": "Metrics", "content": { "application/openmetrics-text": { "schema": { "type": "string" } } } },
        "503": error("Unavailable")
    }))
}

//! Reads: accounts, blocks, health, info, stats, consensus, validators.

use super::*;

#[test]
fn accounts() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, &format!("/api/v11/accounts/{}", "01".repeat(32)));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"address": "01".repeat(32), "balances": {"0": "1000", "3": "5"}, "nonce": "12"})
    );
    let (status, v) = get(&c, &format!("/api/v11/accounts/{}", "05".repeat(32)));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"address": "05".repeat(32), "balances": {}, "nonce": "0"})
    );
    let (status, v) = get(&c, "/api/v11/accounts/zz");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_ADDRESS")
    );
}

#[test]
fn blocks() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, "/api/v11/blocks/1/9");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        json!({"shard": 1, "height": 9, "hash": "01".repeat(32), "prevHash": "02".repeat(32), "txCount": 3, "term": 2,
               "stateHash": format!("{}5", "0".repeat(31)), "timestamp": "2024-05-01T12:00:00.000Z", "timestampMs": 1_714_564_800_000u64})
    );
    let (status, v) = get(&c, "/api/v11/blocks/1/8");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "BLOCK_NOT_FOUND")
    );
    let (status, v) = get(&c, "/api/v11/blocks/2/9");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "BLOCK_NOT_FOUND")
    );
    let (status, v) = get(&c, "/api/v11/blocks/x/9");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    let (status, v) = get(&c, "/api/v11/blocks/latest");
    assert_eq!(
        (status, v["blocks"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2))
    );
}

#[test]
fn health_info_stats_consensus() {
    let c = ctx(Fake::default());
    for path in ["/api/v11/health", "/q/health/live", "/q/health/ready"] {
        let (status, v) = get(&c, path);
        assert_eq!(
            (status, v["status"].as_str()),
            (StatusCode::OK, Some("UP")),
            "{path}"
        );
        assert_eq!(v["checks"][0]["name"], "ledger");
        assert_eq!(v["checks"][0]["data"]["leaders"], 2);
    }
    let leaderless = ctx(Fake {
        no_leader: true,
        ..Fake::default()
    });
    let (status, v) = get(&leaderless, "/q/health/ready");
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("DOWN"))
    );
    let (status, _) = get(&leaderless, "/q/health/live");
    assert_eq!(status, StatusCode::OK);
    let stopped = ctx(Fake {
        stopped: true,
        ..Fake::default()
    });
    let (status, v) = get(&stopped, "/q/health/live");
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("DOWN"))
    );

    let (status, v) = get(&c, "/api/v11/info");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            v["nodeId"].as_u64(),
            v["chainId"].as_u64(),
            v["shards"].as_u64()
        ),
        (Some(1), Some(7), Some(2))
    );
    assert_eq!(v["validators"], json!([1]));
    assert_eq!(v["version"], "test");

    let (status, v) = get(&c, "/api/v11/stats");
    assert_eq!(status, StatusCode::OK);
    for field in [
        "tps",
        "avgTps",
        "peakTps",
        "totalTransactions",
        "p50LatencyMs",
        "p95LatencyMs",
        "p99LatencyMs",
        "memoryUsageMb",
        "cpuUsagePercent",
    ] {
        assert!(v["performance"][field].is_number(), "{field}: {v}");
    }
    assert!(v["performance"]["memoryUsageMb"].as_f64().unwrap() > 0.0);
    let consensus = &v["consensus"];
    assert_eq!(consensus["currentTerm"], 4);
    assert_eq!(consensus["commitIndex"], 20);
    assert_eq!(consensus["leaderNodeId"], 1);
    assert_eq!(consensus["validatorCount"], 1);
    assert_eq!(consensus["consensusState"], "LEADER");
    assert_eq!(consensus["totalLeaderChanges"], 2);
    let (_, v) = get(&leaderless, "/api/v11/stats");
    assert_eq!(v["consensus"]["consensusState"], "MIXED");

    let (status, v) = get(&c, "/api/v11/consensus/status");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["shards"].as_array().unwrap().len(), 2);
    assert_eq!(v["shards"][1]["term"], 4);
    assert_eq!(v["clusterSize"], 1);
    let (status, v) = get(&c, "/api/v11/validators");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["validators"][0]["leaderOf"], json!([0, 1]));
    let (status, v) = get(&stopped, "/api/v11/info");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN")
    );
}

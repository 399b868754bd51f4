//! Routing, the metrics, the API description, draining.

use super::*;

#[test]
fn routes_and_methods() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, "/api/v11/nope");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let (status, v) = get(&c, "/portal/nope.js");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    let (status, headers, _) = call(&c, request("DELETE", "/api/v11/info", None, Bytes::new()));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET");
    let (status, headers, body) = call(
        &c,
        request("GET", "/api/v11/transactions/batch", None, Bytes::new()),
    );
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert!(String::from_utf8_lossy(&body).contains("METHOD_NOT_ALLOWED"));
    let path = |slot: usize| SPEC[slot].path;
    match lookup(&Method::GET, "/api/v11/blocks/1/2") {
        Lookup::Found { slot, params } => {
            assert_eq!(
                (path(slot), params),
                ("/api/v11/blocks/{shard}/{height}", ["1", "2"])
            )
        }
        other => panic!("{other:?}"),
    }
    match lookup(&Method::GET, "/api/v11/transactions/batch") {
        Lookup::WrongMethod { slot, allow } => {
            assert_eq!(
                (path(slot), allow.as_str()),
                ("/api/v11/transactions/batch", "POST")
            )
        }
        other => panic!("{other:?}"),
    }
    match lookup(&Method::POST, "/api/v11/transactions/batch") {
        Lookup::Found { slot, .. } => assert_eq!(path(slot), "/api/v11/transactions/batch"),
        other => panic!("{other:?}"),
    }
    match lookup(&Method::GET, "/api/v11/health") {
        Lookup::Found { slot, .. } => assert_eq!(path(slot), "/api/v11/health"),
        other => panic!("{other:?}"),
    }
    assert_eq!(lookup(&Method::GET, "/api/v11/info/"), Lookup::NotFound);
    assert_eq!(lookup(&Method::GET, "/api/v11/blocks/1"), Lookup::NotFound);
    assert_eq!(lookup(&Method::GET, "*"), Lookup::NotFound);
    // Every endpoint is reached by its own template, with its own method.
    for (slot, route) in SPEC.iter().enumerate() {
        let concrete = route.path.replace(['{', '}'], "");
        match lookup(&route.method, &concrete) {
            Lookup::Found { slot: found, .. } => assert_eq!(found, slot, "{}", route.path),
            other => panic!("{}: {other:?}", route.path),
        }
    }
    assert_eq!(c.settings.in_flight.total(), 0);
}

#[test]
fn prometheus_metrics() {
    let c = ctx(Fake::default());
    let (status, headers, body) = call(&c, request("GET", "/metrics", None, Bytes::new()));
    assert_eq!(status, StatusCode::OK);
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "aurigraph_transactions_total{result=\"OK\"} 0\n",
        "# TYPE aurigraph_transaction_duration_seconds histogram\n",
        "aurigraph_consensus_term{shard=\"1\"} 4\n",
        "aurigraph_consensus_is_leader{shard=\"0\"} 1\n",
        "aurigraph_consensus_peer_lag_entries{shard=\"0\",peer=\"1\"} 0\n",
        "aurigraph_consensus_cluster_size 1\n",
        "aurigraph_signature_verifications_total{outcome=\"invalid\"} 2\n",
        "aurigraph_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n",
        "aurigraph_wal_fsync_duration_seconds_count 1\n",
        "# TYPE aurigraph_beacon_pulses_verified counter\n",
        "# EOF\n",
        "aurigraph_build_info{version=",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    // A submission shows in the counters, the histograms and the request counts.
    let r = signed(1, 5);
    let body = Bytes::from(transfer_json(&r).to_string());
    let (status, _, _) = call(&c, request("POST", "/api/v11/transactions", None, body));
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = call(&c, request("GET", "/metrics", None, Bytes::new()));
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "aurigraph_transactions_total{result=\"OK\"} 1\n",
        "aurigraph_transaction_duration_seconds_count 1\n",
        "aurigraph_batches_total 1\n",
        "aurigraph_api_requests_total{protocol=\"http\",method=\"POST\",route=\"/api/v11/transactions\",status=\"200\"} 1\n",
        "aurigraph_api_requests_total{protocol=\"http\",method=\"GET\",route=\"/metrics\",status=\"200\"} 1\n",
        "aurigraph_api_request_duration_seconds_count{protocol=\"http\",route=\"/api/v11/transactions\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    let label = |path: &str| route_label(lookup(&Method::GET, path).slot());
    assert_eq!(lookup(&Method::GET, "/nope").slot(), ROUTE_SLOTS - 1);
    assert_eq!(label("/nope"), UNMATCHED);
    assert_eq!(label("/q/health/ready"), "/q/health/ready");
    assert_eq!(label("/api/v11/health"), "/api/v11/health");
    assert_eq!(
        label("/api/v11/blocks/1/2"),
        "/api/v11/blocks/{shard}/{height}"
    );
    assert_eq!(
        label("/api/v11/quantum/randomness/pulse/latest"),
        "/api/v11/quantum/randomness/pulse/latest"
    );
    assert_eq!(
        label("/api/v11/quantum/randomness/crypto-seed"),
        "/api/v11/quantum/randomness/crypto-seed"
    );
    // A known path with another method counts under its route.
    assert_eq!(label_of(&Method::PUT, "/api/v11/stats"), "/api/v11/stats");
    // The portal's page and files count under their own paths, a file it lacks as unmatched.
    assert_eq!(label("/"), "/");
    assert_eq!(label("/portal/app.js"), "/portal/app.js");
    assert_eq!(label("/portal/nope.js"), UNMATCHED);
}

#[test]
fn the_portal_is_served_with_its_headers_and_revalidated() {
    use hyper::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
    let c = ctx(Fake::default());
    for (path, media, cache) in [
        ("/", "text/html; charset=utf-8", "no-cache"),
        (
            "/portal/app.js",
            "text/javascript; charset=utf-8",
            "public, max-age=600",
        ),
        (
            "/portal/style.css",
            "text/css; charset=utf-8",
            "public, max-age=600",
        ),
        ("/portal/icon.svg", "image/svg+xml", "public, max-age=600"),
    ] {
        let (status, headers, body) = call(&c, request("GET", path, None, Bytes::new()));
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[CONTENT_TYPE], media, "{path}");
        assert_eq!(headers[CACHE_CONTROL], cache, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self';") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(!body.is_empty());
        // The same version again: 304 without a body.
        let etag = headers[ETAG].clone();
        let mut again = request("GET", path, None, Bytes::new());
        again.headers_mut().insert(IF_NONE_MATCH, etag.clone());
        let (status, headers, body) = call(&c, again);
        assert_eq!(
            (status, body.len()),
            (StatusCode::NOT_MODIFIED, 0),
            "{path}"
        );
        assert_eq!(headers[ETAG], etag);
        // Another version: the file.
        let mut other = request("GET", path, None, Bytes::new());
        other
            .headers_mut()
            .insert(IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        assert_eq!(call(&c, other).0, StatusCode::OK);
    }
    let (status, headers, _) = call(&c, request("POST", "/", None, Bytes::new()));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET");
    // Served on a public listener too (it reads the public API only).
    let mut public = ctx(Fake::default());
    public.settings.surface = crate::http::Surface::Public;
    assert_eq!(
        call(&public, request("GET", "/", None, Bytes::new())).0,
        StatusCode::OK
    );
}

fn label_of(method: &Method, path: &str) -> &'static str {
    route_label(lookup(method, path).slot())
}

#[test]
fn openapi_lists_every_endpoint() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, "/api/v11/openapi.json");
    assert_eq!(status, StatusCode::OK);
    assert!(v["openapi"].as_str().unwrap().starts_with("3.0"));
    let paths = v["paths"].as_object().unwrap();
    // Every endpoint of the route table is described, under its method (but the portal's
    // pages, which are no part of the JSON API).
    let api: Vec<_> = SPEC.iter().filter(|r| !(r.doc)().is_null()).collect();
    assert_eq!(
        SPEC.len() - api.len(),
        4,
        "the portal's page and its 3 files"
    );
    assert!(paths.get("/").is_none());
    for route in &api {
        let method = route.method.as_str().to_lowercase();
        assert!(
            paths[route.path][&method].is_object(),
            "{} {} missing",
            route.method,
            route.path
        );
    }
    // And nothing else: every described operation is routed.
    let described: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(described, api.len());
    // Every $ref resolves.
    let text = v.to_string();
    for piece in text.split("\"$ref\":\"#/components/").skip(1) {
        let reference = &piece[..piece.find('"').unwrap()];
        let (kind, name) = reference.split_once('/').unwrap();
        assert!(
            v["components"][kind][name].is_object(),
            "dangling $ref {reference}"
        );
    }
}

#[test]
fn draining_refuses_new_requests() {
    let c = ctx(Fake::default());
    c.settings.draining.store(true, Ordering::SeqCst);
    let (status, headers, body) = call(&c, request("GET", "/api/v11/info", None, Bytes::new()));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["connection"], "close");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_code(&v), "SHUTTING_DOWN");
}

#[test]
fn the_v11_path_aliases_answer_as_their_endpoints() {
    let c = ctx(Fake::default());
    for (alias, target) in [
        ("/api/v11/blockchain/latest", "/api/v11/blocks/latest"),
        ("/api/v11/blockchain/stats", "/api/v11/stats"),
        ("/api/v11/consensus/metrics", "/api/v11/consensus/status"),
        ("/api/v11/system/status", "/api/v11/health"),
    ] {
        let (alias_status, alias_body) = get(&c, alias);
        let (target_status, target_body) = get(&c, target);
        assert_eq!(alias_status, StatusCode::OK, "{alias}: {alias_body}");
        assert_eq!(alias_status, target_status, "{alias}");
        // Figures that move between the two calls aside, the same shape.
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&alias_body), keys(&target_body), "{alias}");
    }
    let (_, doc) = get(&c, "/api/v11/openapi.json");
    let alias = &doc["paths"]["/api/v11/blockchain/latest"]["get"];
    assert_eq!(alias["deprecated"], true);
    assert!(alias["summary"]
        .as_str()
        .unwrap()
        .contains("/api/v11/blocks/latest"));
}

#[test]
fn cors_answers_listed_origins_only() {
    let mut c = ctx(Fake::default());
    let from = |origin: &str, method: &str| {
        let mut req = request(method, "/api/v11/health", None, Bytes::new());
        req.headers_mut().insert(
            hyper::header::ORIGIN,
            HeaderValue::from_str(origin).unwrap(),
        );
        if method == "OPTIONS" {
            req.headers_mut().insert(
                hyper::header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("GET"),
            );
        }
        req
    };
    let allow = hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN;
    // Off by default: no CORS header, and a preflight is just an OPTIONS request (405).
    let (status, headers, _) = call(&c, from("https://portal.example", "GET"));
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key(&allow));
    assert_eq!(
        call(&c, from("https://portal.example", "OPTIONS")).0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    c.settings.cors =
        Arc::new(crate::http::cors::Cors::parse(&["https://portal.example".to_string()]).unwrap());
    let (status, headers, _) = call(&c, from("https://portal.example", "GET"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[&allow], "https://portal.example");
    let (status, headers, body) = call(&c, from("https://portal.example", "OPTIONS"));
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    assert_eq!(headers[&allow], "https://portal.example");
    assert!(headers[hyper::header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let (_, headers, _) = call(&c, from("https://evil.example", "GET"));
    assert!(!headers.contains_key(&allow));
    assert_eq!(
        call(&c, from("https://evil.example", "OPTIONS")).0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

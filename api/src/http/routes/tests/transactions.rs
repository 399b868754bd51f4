//! Transfers: one, batches in JSON and binary, compact results, errors, lookups.

use super::*;

#[test]
fn submits_one_transfer() {
    let fake = Fake::default();
    let c = ctx(fake.clone());
    let r = signed(1, 10);
    let body = transfer_json(&r).to_string();
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions",
            Some("application/json; charset=utf-8"),
            body.clone(),
        ),
    );
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["txHash"], r.tx_hash().to_hex());
    assert_eq!(v["status"], "CONFIRMED");
    assert_eq!(v["result"], "OK");
    assert_eq!(v["blockNumber"], 5);
    assert_eq!(v["shard"], shard_of(&r.from(), 2));
    assert_eq!(
        fake.submitted.borrow().as_slice(),
        &[r],
        "the record is exactly the signed one"
    );
    // A decided rejection is still a valid request: 200 with REJECTED.
    let zero = signed(2, 0);
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions",
            None,
            transfer_json(&zero).to_string(),
        ),
    );
    assert_eq!(
        (status, v["status"].as_str(), v["result"].as_str()),
        (StatusCode::OK, Some("REJECTED"), Some("ZERO_AMOUNT"))
    );
    // wait=false: 202 PENDING.
    let (status, v) = call_json(
        &c,
        request("POST", "/api/v11/transactions?wait=false", None, body),
    );
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING"))
    );
    assert_eq!(v["txHash"], r.tx_hash().to_hex());
    let s = c.settings.metrics.snapshot();
    assert_eq!((s.confirmed, s.rejected, s.detached), (1, 1, 1));
}

#[test]
fn bad_transfers_get_precise_errors() {
    let c = ctx(Fake::default());
    let post = |body: String, ct: Option<&str>| {
        call_json(&c, request("POST", "/api/v11/transactions", ct, body))
    };
    let good = transfer_json(&signed(1, 10));
    let (status, v) = post("{\"fromAddress\": ".into(), None);
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "MALFORMED_JSON")
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("line 1"));
    let mut extra = good.clone();
    extra["gas"] = json!(1);
    assert_eq!(
        error_code(&post(extra.to_string(), None).1),
        "INVALID_REQUEST"
    );
    let mut bad = good.clone();
    bad["fromAddress"] = json!("00");
    assert_eq!(
        error_code(&post(bad.to_string(), None).1),
        "INVALID_ADDRESS"
    );
    let mut bad = good.clone();
    bad["signature"] = json!("00");
    assert_eq!(
        error_code(&post(bad.to_string(), None).1),
        "INVALID_SIGNATURE"
    );
    let mut bad = good.clone();
    bad["transactionType"] = json!("STAKE");
    assert_eq!(
        error_code(&post(bad.to_string(), None).1),
        "INVALID_REQUEST"
    );
    let (status, v) = post(good.to_string(), Some("text/plain"));
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
    let (status, v) = post(" ".repeat(5000), None);
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions?wait=maybe",
            None,
            good.to_string(),
        ),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert_eq!(c.settings.in_flight.total(), 0);
}

#[test]
fn body_limit_is_enforced_while_reading() {
    // No Content-Length (as with chunked bodies): Limited stops the read.
    let c = ctx(Fake::default());
    let body = http_body_util::StreamBody::new(futures::stream::iter((0..10).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![b' '; 1000])))
    })));
    let req = Request::builder()
        .method("POST")
        .uri("/api/v11/transactions")
        .body(body)
        .unwrap();
    let response = block_on(handle(&c, req));
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A declared length over the limit is refused before reading.
    let mut req = request("POST", "/api/v11/transactions", None, "{}");
    req.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(1_000_000u32));
    assert_eq!(
        block_on(handle(&c, req)).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[test]
fn engine_refusals_are_503s() {
    let fake = Fake::default();
    let c = ctx(fake.clone());
    let body = transfer_json(&signed(1, 10)).to_string();
    let cases = [
        (
            SubmitFailure::Rejected(SubmitError::NotLeader {
                shard: 0,
                leader: Some(2),
            }),
            "NOT_LEADER",
        ),
        (
            SubmitFailure::Rejected(SubmitError::Overloaded(0)),
            "OVERLOADED",
        ),
        (SubmitFailure::Retry(0), "RETRY"),
        (SubmitFailure::Stopped, "SHUTTING_DOWN"),
    ];
    for (failure, code) in cases {
        *fake.fail.borrow_mut() = Some(failure);
        let (status, headers, bytes) = call(
            &c,
            request("POST", "/api/v11/transactions", None, body.clone()),
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::SERVICE_UNAVAILABLE, code)
        );
        if code == "OVERLOADED" {
            assert_eq!(headers["retry-after"], "1");
        }
    }
}

#[test]
fn json_batches() {
    let fake = Fake::default();
    let c = ctx(fake.clone());
    let records = [signed(1, 10), signed(2, 0), signed(3, 7)];
    let body = json!({ "transactions": records.iter().map(transfer_json).collect::<Vec<_>>() })
        .to_string();
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            Some("application/json"),
            body.clone(),
        ),
    );
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (r, out) in records.iter().zip(results) {
        assert_eq!(out["txHash"], r.tx_hash().to_hex());
    }
    assert_eq!(results[1]["status"], "REJECTED");
    let (status, v) = call_json(
        &c,
        request("POST", "/api/v11/transactions/batch?wait=false", None, body),
    );
    assert_eq!(
        (status, v["pending"].as_u64()),
        (StatusCode::ACCEPTED, Some(3))
    );
    assert_eq!(v["results"][2]["status"], "PENDING");
    // Over the limit of 3, empty, a bad element (named by index).
    let four: Vec<Value> = [signed(1, 1), signed(2, 1), signed(3, 1), signed(4, 1)]
        .iter()
        .map(transfer_json)
        .collect();
    let four = json!({ "transactions": four });
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            None,
            four.to_string(),
        ),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "TOO_MANY_TRANSFERS")
    );
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            None,
            "{\"transactions\":[]}",
        ),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    let mut bad =
        json!({ "transactions": [transfer_json(&records[0]), transfer_json(&records[1])] });
    bad["transactions"][1]["toAddress"] = json!("xyz");
    let (_, v) = call_json(
        &c,
        request("POST", "/api/v11/transactions/batch", None, bad.to_string()),
    );
    assert_eq!(error_code(&v), "INVALID_ADDRESS");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("transactions[1].toAddress"),
        "{v}"
    );
}

#[test]
fn binary_batches_and_compact_results() {
    let fake = Fake::default();
    let c = ctx(fake.clone());
    let records = [signed(1, 10), signed(2, 0)];
    let bytes = encode_batch(&records);
    let mut req = request(
        "POST",
        "/api/v11/transactions/batch",
        Some(BATCH_MEDIA_TYPE),
        bytes.clone(),
    );
    req.headers_mut().insert(
        ACCEPT,
        HeaderValue::from_static("application/vnd.aurigraph.results"),
    );
    let (status, headers, body) = call(&c, req);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], RESULTS_MEDIA_TYPE);
    let decoded = decode_compact_results(&body).unwrap();
    assert_eq!(
        decoded,
        vec![(ResultCode::Ok as u8, 5), (ResultCode::ZeroAmount as u8, 5)]
    );
    assert_eq!(fake.submitted.borrow().as_slice(), &records);
    // Without the Accept header: JSON.
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            Some(BATCH_MEDIA_TYPE),
            bytes.clone(),
        ),
    );
    assert_eq!((status, v["accepted"].as_u64()), (StatusCode::OK, Some(1)));
    // Broken and oversize batches.
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            Some(BATCH_MEDIA_TYPE),
            bytes[..100].to_vec(),
        ),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_BATCH")
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("168*N+12"),
        "{v}"
    );
    let mut bad_version = bytes.clone();
    bad_version[2 * 168] = 9;
    let (_, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            Some(BATCH_MEDIA_TYPE),
            bad_version,
        ),
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("version"),
        "{v}"
    );
    let four = encode_batch(&[signed(1, 1), signed(2, 1), signed(3, 1), signed(4, 1)]);
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            Some(BATCH_MEDIA_TYPE),
            four,
        ),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "TOO_MANY_TRANSFERS")
    );
    let (status, v) = call_json(
        &c,
        request(
            "POST",
            "/api/v11/transactions/batch",
            Some("application/octet-stream"),
            bytes,
        ),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
}

#[test]
fn transaction_lookup() {
    let c = ctx(Fake::default());
    let (status, v) = get(&c, &format!("/api/v11/transactions/{}", "01".repeat(32)));
    assert_eq!(
        (status, v["status"].as_str(), v["shard"].as_u64()),
        (StatusCode::OK, Some("PENDING"), Some(1))
    );
    assert!(v.get("result").is_none());
    let (status, v) = get(&c, &format!("/api/v11/transactions/{}", "02".repeat(32)));
    assert_eq!(
        (status, v["status"].as_str(), v["result"].as_str()),
        (StatusCode::OK, Some("REJECTED"), Some("NONCE_REPLAYED"))
    );
    let (status, v) = get(&c, &format!("/api/v11/transactions/{}", "03".repeat(32)));
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "TRANSACTION_NOT_FOUND")
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("window"));
    let (status, v) = get(&c, "/api/v11/transactions/xyz");
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_TX_HASH")
    );
}

#[test]
fn random_inputs_never_panic() {
    use rand::{Rng, SeedableRng};
    let c = ctx(Fake::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let good = transfer_json(&signed(1, 10)).to_string().into_bytes();
    for i in 0..500 {
        let mut body = good.clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..body.len());
            body[at] = rng.gen();
        }
        let (path, ct) = if i % 2 == 0 {
            ("/api/v11/transactions", None)
        } else {
            ("/api/v11/transactions/batch", Some(BATCH_MEDIA_TYPE))
        };
        let response = block_on(handle(&c, request("POST", path, ct, body)));
        assert!(
            response.status().is_success() || response.status().is_client_error(),
            "{}",
            response.status()
        );
    }
}

#[test]
fn the_gateway_endpoint_needs_a_token_of_the_tokens_file() {
    use aurigraph_engine::tokens::{new_token, Role, Tokens};
    let (token, entry) = new_token(Role::Gateway, "acme").unwrap();
    let (stranger, stranger_entry) = new_token(Role::Gateway, "stranger").unwrap();
    let file = json!({ "tokens": [entry, stranger_entry] }).to_string();
    let fake = Fake::default();
    let mut c = ctx(fake.clone());
    let records = [signed(1, 10)];
    let post = |authorization: Option<&str>| {
        let mut req = request(
            "POST",
            "/api/v11/gateway/transactions/batch",
            Some(BATCH_MEDIA_TYPE),
            encode_batch(&records),
        );
        if let Some(value) = authorization {
            req.headers_mut().insert(
                hyper::header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        req
    };
    // Gateway mode off (no tokens file): every request is 401, and says why.
    let (status, v) = call_json(&c, post(Some(&format!("Bearer {token}"))));
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("--tokens"));
    c.settings.tokens = Arc::new(Tokens::from_json(&file).unwrap());
    for bad in [
        None,
        Some("Basic abc"),
        Some("Bearer "),
        Some("Bearer nope"),
    ] {
        let (status, v) = call_json(&c, post(bad));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}: {v}");
        assert_eq!(error_code(&v), "UNAUTHORIZED");
    }
    // A valid token of a gateway the genesis gives no account: 403.
    let (status, v) = call_json(&c, post(Some(&format!("Bearer {stranger}"))));
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    assert!(
        fake.submitted.borrow().is_empty(),
        "nothing refused was submitted"
    );
    // The gateway's own token: submitted on its behalf.
    let (status, v) = call_json(&c, post(Some(&format!("Bearer {token}"))));
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(fake.submitted_as.borrow().as_slice(), &[Some(GatewayId(0))]);
    // The public batch endpoint submits on nobody's behalf, token or not.
    let mut public = post(Some(&format!("Bearer {token}")));
    *public.uri_mut() = "/api/v11/transactions/batch".parse().unwrap();
    let (status, _) = call_json(&c, public);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fake.submitted_as.borrow().last(), Some(&None));
}

#[test]
fn v11_clients_may_prefix_hex_with_0x() {
    let fake = Fake::default();
    let c = ctx(fake.clone());
    let record = signed(1, 10);
    let mut transfer = transfer_json(&record);
    for field in ["fromAddress", "toAddress", "signature"] {
        let hex = transfer[field].as_str().unwrap().to_string();
        transfer[field] = format!("0x{hex}").into();
    }
    let req = request(
        "POST",
        "/api/v11/transactions",
        Some("application/json"),
        transfer.to_string(),
    );
    let (status, v) = call_json(&c, req);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        fake.submitted.borrow().as_slice(),
        &[record],
        "the same transfer"
    );
    // A path's hash and address too.
    let hash = hex::encode(record.tx_hash().0);
    let (status, v) = get(&c, &format!("/api/v11/transactions/0X{hash}"));
    assert_ne!(status, StatusCode::BAD_REQUEST, "{v}");
    let from = record.from().to_hex();
    let (status, v) = get(&c, &format!("/api/v11/accounts/0x{from}"));
    assert_eq!(status, StatusCode::OK, "{v}");
    // Only one prefix, and only hex after it.
    let (status, v) = get(&c, &format!("/api/v11/accounts/0x0x{}", &from[4..]));
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_ADDRESS")
    );
}

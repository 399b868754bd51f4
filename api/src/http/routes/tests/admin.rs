//! The admin endpoint: an admin token, JSON only, nothing changed otherwise.

use super::*;
use aurigraph_engine::tokens::{new_token, Role, Tokens};

fn membership_post(
    content_type: Option<&str>,
    authorization: Option<&str>,
) -> Request<Full<Bytes>> {
    let body = json!({ "action": "remove", "nodeId": 3 }).to_string();
    let mut req = request("POST", "/api/v11/admin/validators", content_type, body);
    if let Some(value) = authorization {
        req.headers_mut().insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
    }
    req
}

#[test]
fn membership_changes_need_an_admin_token_and_json() {
    let (admin, admin_entry) = new_token(Role::Admin, "ops").unwrap();
    let (gateway, gateway_entry) = new_token(Role::Gateway, "acme").unwrap();
    let fake = Fake::default();
    let mut c = ctx(fake.clone());
    let bearer = |token: &str| format!("Bearer {token}");
    // A node without a tokens file takes no admin call.
    let (status, v) = call_json(
        &c,
        membership_post(Some("application/json"), Some(&bearer(&admin))),
    );
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--role admin"),
        "{v}"
    );
    let file = json!({ "tokens": [admin_entry, gateway_entry] }).to_string();
    c.settings.tokens = Arc::new(Tokens::from_json(&file).unwrap());
    let refused = [
        // A browser's cross-site POST: no token, text/plain.
        (
            Some("text/plain"),
            None,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            Some("application/json"),
            Some("Bearer wrong".to_string()),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            Some("application/json"),
            Some(bearer(&gateway)),
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        // The right token, but not JSON (a form or text/plain body).
        (
            Some("text/plain"),
            Some(bearer(&admin)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            Some(bearer(&admin)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            None,
            Some(bearer(&admin)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ];
    for (media, authorization, want_status, want_code) in refused {
        let (status, v) = call_json(&c, membership_post(media, authorization.as_deref()));
        assert_eq!(
            (status, error_code(&v)),
            (want_status, want_code),
            "{media:?} {authorization:?}: {v}"
        );
    }
    assert!(
        fake.membership_changes.borrow().is_empty(),
        "nothing changed"
    );
    let (status, v) = call_json(
        &c,
        membership_post(Some("application/json"), Some(&bearer(&admin))),
    );
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["shards"][0]["status"], "APPLIED");
    assert_eq!(
        *fake.membership_changes.borrow(),
        vec![(ConfChangeType::RemoveNode, 3)]
    );
}

#[test]
fn a_gateway_endpoint_refuses_an_admin_token() {
    let (admin, admin_entry) = new_token(Role::Admin, "ops").unwrap();
    let fake = Fake::default();
    let mut c = ctx(fake.clone());
    let file = json!({ "tokens": [admin_entry] }).to_string();
    c.settings.tokens = Arc::new(Tokens::from_json(&file).unwrap());
    let mut req = request(
        "POST",
        "/api/v11/gateway/transactions/batch",
        Some(BATCH_MEDIA_TYPE),
        encode_batch(&[signed(1, 10)]),
    );
    req.headers_mut().insert(
        hyper::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {admin}")).unwrap(),
    );
    let (status, v) = call_json(&c, req);
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::FORBIDDEN, "FORBIDDEN"),
        "{v}"
    );
    assert!(fake.submitted.borrow().is_empty());
}

#[test]
fn with_an_admin_listener_the_public_one_hides_the_admin_endpoints() {
    let (admin, entry) = new_token(Role::Admin, "ops").unwrap();
    let fake = Fake::default();
    let mut c = ctx(fake.clone());
    let file = json!({ "tokens": [entry] }).to_string();
    c.settings.tokens = Arc::new(Tokens::from_json(&file).unwrap());
    let post = || membership_post(Some("application/json"), Some(&format!("Bearer {admin}")));
    c.settings.surface = crate::http::Surface::Public;
    let (status, v) = call_json(&c, post());
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin listener"),
        "{v}"
    );
    assert!(fake.membership_changes.borrow().is_empty());
    // Everything else is served as before.
    assert_eq!(get(&c, "/api/v11/health").0, StatusCode::OK);
    c.settings.surface = crate::http::Surface::Admin;
    assert_eq!(call_json(&c, post()).0, StatusCode::OK);
    assert_eq!(fake.membership_changes.borrow().len(), 1);
}

#[test]
fn a_token_over_its_request_rate_is_answered_429_from_any_connection() {
    let (admin, entry) = new_token(Role::Admin, "ops").unwrap();
    let fake = Fake::default();
    let mut c = ctx(fake.clone());
    let file = json!({ "tokens": [entry] }).to_string();
    c.settings.tokens = Arc::new(Tokens::from_json(&file).unwrap());
    c.principals = crate::http::limits::PrincipalRates::new(Some(
        crate::http::limits::RequestRate::from_pair((1, 2)),
    ));
    let post = || membership_post(Some("application/json"), Some(&format!("Bearer {admin}")));
    assert_eq!(call_json(&c, post()).0, StatusCode::OK);
    assert_eq!(call_json(&c, post()).0, StatusCode::OK);
    let (status, headers, body) = call(&c, post());
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[hyper::header::RETRY_AFTER], "1");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error_code(&v), "RATE_LIMITED");
    assert_eq!(
        fake.membership_changes.borrow().len(),
        2,
        "the third did nothing"
    );
}

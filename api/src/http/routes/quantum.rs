//! Randomness, `GET /api/v11/quantum/randomness/*`: bytes, nonces and seeds derived with
//! HKDF from the OS CSPRNG and the latest verified beacon pulse (the CSPRNG alone, marked
//! LOCAL_FALLBACK, when none is held), the beacon's health and sources, the latest pulse.

use super::request::int_param;
use super::response::{json_response, now_iso};
use super::{Answer, Ctx};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::openapi::{error, json_content, ok, operation};
use crate::http::HttpSettings;
use aurigraph_beacon::derive::{purpose, DERIVE_SALT};
use aurigraph_beacon::state::{BeaconHealth, BeaconState, Drawn, FALLBACK_SOURCE};
use aurigraph_beacon::Source;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

/// `random-bytes?size=`: allowed sizes and the default.
const RANDOM_BYTES_SIZE: (usize, usize, usize) = (1, 1024, 32);
/// `crypto-seed?length=`: allowed lengths and the default.
const CRYPTO_SEED_LENGTH: (usize, usize, usize) = (16, 256, 32);
/// Bytes of a `transaction-nonce`.
const NONCE_BYTES: usize = 32;

/// The beacon's health: UP (also with no source configured: the fallback is served by
/// design), and its data.
fn beacon_status(state: &BeaconState) -> (bool, Value) {
    let serving = state
        .latest()
        .map_or(FALLBACK_SOURCE, |r| r.provenance.source.as_str());
    match state.health() {
        BeaconHealth::NotConfigured => (
            true,
            json!({
                "configured": false,
                "serving": FALLBACK_SOURCE,
                "message": "no beacon source configured: randomness is served from the OS CSPRNG \
                            (source LOCAL_FALLBACK, verified false)",
            }),
        ),
        BeaconHealth::Up => (
            true,
            json!({
                "configured": true,
                "serving": serving,
                "pulse": state.latest().map(|r| &r.provenance),
            }),
        ),
        BeaconHealth::Down(reasons) => (
            false,
            json!({
                "configured": true,
                "serving": serving,
                "reasons": reasons,
            }),
        ),
    }
}

/// The `beacon` check of the node's health: degraded when a configured source fails, which
/// does not change the node's own status.
pub fn beacon_check(settings: &HttpSettings) -> Value {
    let (up, data) = beacon_status(&settings.beacon_state());
    json!({ "name": "beacon", "status": if up { "UP" } else { "DOWN" }, "data": data })
}

fn drawn_json(drawn: &Drawn, fields: Value) -> Value {
    let mut body = json!({
        "source": drawn.source(),
        "verified": drawn.verified(),
        "timestamp": now_iso(),
        "provenance": drawn.provenance,
    });
    if let (Value::Object(body), Value::Object(fields)) = (&mut body, fields) {
        body.extend(fields);
    }
    body
}

fn draw(settings: &HttpSettings, purpose: &[u8], len: usize) -> Result<Drawn, ApiError> {
    let drawn = settings
        .beacon_state()
        .draw(purpose, len)
        .map_err(|e| ApiError::internal(format!("could not derive random bytes: {e}")))?;
    if !drawn.verified() {
        settings.metrics.count_beacon_fallback();
    }
    Ok(drawn)
}

/// `random-bytes?size=N`: `size` bytes, base64.
pub fn random_bytes<B, T>(ctx: &Ctx<B>, request: &Request<T>) -> Answer {
    let settings = &ctx.settings;
    let size = int_param(request, "size", RANDOM_BYTES_SIZE)?;
    let drawn = draw(settings, purpose::RANDOM_BYTES, size)?;
    let body = drawn_json(
        &drawn,
        json!({ "bytes": BASE64.encode(&drawn.bytes), "size": size }),
    );
    Ok(json_response(StatusCode::OK, &body))
}

/// `transaction-nonce`: 32 bytes, hex.
pub fn transaction_nonce<B>(ctx: &Ctx<B>) -> Answer {
    let settings = &ctx.settings;
    let drawn = draw(settings, purpose::TRANSACTION_NONCE, NONCE_BYTES)?;
    let body = drawn_json(
        &drawn,
        json!({ "nonce": hex::encode(&drawn.bytes), "size": NONCE_BYTES }),
    );
    Ok(json_response(StatusCode::OK, &body))
}

/// `crypto-seed?length=N`: `length` bytes, base64.
pub fn crypto_seed<B, T>(ctx: &Ctx<B>, request: &Request<T>) -> Answer {
    let settings = &ctx.settings;
    let length = int_param(request, "length", CRYPTO_SEED_LENGTH)?;
    let drawn = draw(settings, purpose::CRYPTO_SEED, length)?;
    let body = drawn_json(
        &drawn,
        json!({ "bytes": BASE64.encode(&drawn.bytes), "size": length, "length": length }),
    );
    Ok(json_response(StatusCode::OK, &body))
}

/// `health`: UP (200) or DOWN (503), with the reasons.
pub fn health<B>(ctx: &Ctx<B>) -> Answer {
    let settings = &ctx.settings;
    let (up, data) = beacon_status(&settings.beacon_state());
    let body = json!({ "status": if up { "UP" } else { "DOWN" }, "data": data });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json_response(code, &body))
}

/// `info`: the sources, the construction, the limits.
pub fn info<B>(ctx: &Ctx<B>) -> Answer {
    let settings = &ctx.settings;
    let state = settings.beacon_state();
    let sources: Vec<Value> = state
        .sources()
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "source": s.source.as_str(),
                "verified": s.latest.is_some(),
                "pulse": s.latest.as_ref().map(|r| &r.provenance),
                "lastError": s.last_error,
            })
        })
        .collect();
    let body = json!({
        "configured": state.is_configured(),
        "sources": sources,
        "supportedSources": [Source::CurbyRng.as_str(), Source::CurbyQ.as_str(), Source::Nist.as_str()],
        "fallback": FALLBACK_SOURCE,
        "construction": {
            "kdf": "HKDF-SHA512",
            "salt": String::from_utf8_lossy(DERIVE_SALT),
            "ikm": "64 bytes from the OS CSPRNG || the latest verified beacon value (64 bytes); \
                    the CSPRNG bytes alone when no verified pulse is held (LOCAL_FALLBACK)",
            "info": {
                "random-bytes": String::from_utf8_lossy(purpose::RANDOM_BYTES),
                "transaction-nonce": String::from_utf8_lossy(purpose::TRANSACTION_NONCE),
                "crypto-seed": String::from_utf8_lossy(purpose::CRYPTO_SEED),
            },
            "note": "a beacon's output is public: served bytes are never the beacon value \
                     itself, and are as unpredictable as the OS CSPRNG even to whoever \
                     knows the pulse; pulse/latest serves the public value",
        },
        "limits": {
            "randomBytesSize": { "min": RANDOM_BYTES_SIZE.0, "max": RANDOM_BYTES_SIZE.1, "default": RANDOM_BYTES_SIZE.2 },
            "cryptoSeedLength": { "min": CRYPTO_SEED_LENGTH.0, "max": CRYPTO_SEED_LENGTH.1, "default": CRYPTO_SEED_LENGTH.2 },
            "nonceBytes": NONCE_BYTES,
        },
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `pulse/latest`: the public output of the latest verified pulse and how to re-verify it.
pub fn pulse_latest<B>(ctx: &Ctx<B>) -> Answer {
    let settings = &ctx.settings;
    let state = settings.beacon_state();
    let Some(status) = state.latest_source() else {
        let why = if state.is_configured() {
            "no verified beacon pulse is held (see /api/v11/quantum/randomness/health)"
        } else {
            "no beacon source is configured, so there is no verified pulse; \
                 random-bytes, transaction-nonce and crypto-seed serve LOCAL_FALLBACK"
        };
        return Err(ApiError::new(ErrorCode::NoVerifiedPulse, why));
    };
    let latest = status
        .latest
        .as_ref()
        .expect("latest_source has randomness");
    // The signed documents, as served, for re-verification by anyone.
    let document = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes).unwrap_or_else(|_| json!(BASE64.encode(bytes)))
    };
    let evidence = status.evidence.as_ref();
    let command = match latest.provenance.source {
            Source::Nist => "aurigraph beacon verify-nist --pulse pulse.json --prev previousPulse.json --cert <the certificate named by pulse.certificateId>".to_string(),
            _ => format!(
                "aurigraph beacon verify-curby --chain <chain record {}> --pulse pulse.json --prev previousPulse.json",
                latest.provenance.chain
            ),
        };
    let body = json!({
        "source": latest.provenance.source.as_str(),
        "verified": true,
        "public": true,
        "note": "the beacon's public output: never use it alone as a secret",
        "value": latest.hex(),
        "bytes": BASE64.encode(latest.value),
        "size": latest.value.len(),
        "timestamp": now_iso(),
        "provenance": latest.provenance,
        "pulse": evidence.map(|e| document(&e.pulse)),
        "previousPulse": evidence.map(|e| document(&e.previous)),
        "verifyWith": command,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// A `?name=N` parameter within `(min, max, default)`.
fn int_query(name: &str, (min, max, default): (usize, usize, usize), description: &str) -> Value {
    json!({
        "name": name, "in": "query", "required": false, "description": description,
        "schema": { "type": "integer", "minimum": min, "maximum": max, "default": default }
    })
}

/// The operation of an endpoint that draws bytes.
fn drawn_doc(summary: &str, description: &str, parameters: Vec<Value>) -> Value {
    json!({
        "summary": summary, "description": description, "parameters": parameters,
        "responses": { "200": ok("Random bytes", "RandomBytes"), "400": error("BadRequest") }
    })
}

const CONSTRUCTION: &str = " Bytes are HKDF-SHA512 over 64 bytes of OS CSPRNG output concatenated with the latest verified beacon value (see info); with no verified pulse (no source configured, the default, or none verifying) from the CSPRNG alone, with source LOCAL_FALLBACK and verified false.";

pub fn random_bytes_doc() -> Value {
    drawn_doc(
        "Random bytes",
        &format!("size bytes, base64 in bytes.{CONSTRUCTION}"),
        vec![int_query(
            "size",
            RANDOM_BYTES_SIZE,
            "Bytes wanted, 1..1024 (default 32)",
        )],
    )
}

pub fn transaction_nonce_doc() -> Value {
    drawn_doc(
        "Transaction nonce",
        &format!("32 bytes, lowercase hex in nonce.{CONSTRUCTION}"),
        vec![],
    )
}

pub fn crypto_seed_doc() -> Value {
    drawn_doc(
        "Cryptographic seed",
        &format!("length bytes, base64 in bytes.{CONSTRUCTION}"),
        vec![int_query(
            "length",
            CRYPTO_SEED_LENGTH,
            "Seed length in bytes, 16..256 (default 32)",
        )],
    )
}

pub fn health_doc() -> Value {
    operation(
        "Beacon health",
        "UP with no source configured (data.configured false: the fallback is served by design) or when every configured source has a verified pulse; DOWN (503) with data.reasons when a configured source has none or fails. The node's own health shows this as its beacon check without changing the node's status.",
        json!({ "200": { "description": "UP", "content": json_content(json!({ "type": "object" })) }, "503": { "description": "DOWN", "content": json_content(json!({ "type": "object" })) } }),
    )
}

pub fn info_doc() -> Value {
    operation(
        "Beacon sources and construction",
        "The configured sources (empty by default) with their latest verified pulse and last error, the supported sources, the fallback and the derivation (HKDF-SHA512 salt, input and per-endpoint info labels), and the parameter limits.",
        json!({ "200": { "description": "Beacon information", "content": json_content(json!({ "type": "object" })) } }),
    )
}

pub fn pulse_latest_doc() -> Value {
    operation(
        "Latest verified pulse",
        "The public output (value, hex; bytes, base64) of the latest verified pulse and its provenance (source, chain, index, id = pulse CID or URI, pulse timestamp), enough to fetch and re-verify it. Public by design: never a secret. 404 NO_VERIFIED_PULSE when none is held (always, while no source is configured).",
        json!({ "200": { "description": "Latest verified pulse", "content": json_content(json!({ "type": "object" })) }, "404": error("NotFound") }),
    )
}

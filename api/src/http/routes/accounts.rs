//! `GET /api/v11/accounts/{address}`: balances and nonce of an account.

use super::response::json_response;
use super::{Answer, Backend, Ctx};
use crate::http::openapi::{error, ok, reference};
use crate::http::types::parse_address;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `GET /api/v11/accounts/{address}`: an address never seen is an empty account (200).
pub async fn account<B: Backend>(ctx: &Ctx<B>, address: &str) -> Answer {
    let address = parse_address(address)?;
    let account = ctx.backend.account(address).await?.unwrap_or_default();
    let balances: BTreeMap<String, String> = account
        .balances()
        .map(|(asset, amount)| (asset.to_string(), amount.to_string()))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "address": address.to_hex(),
            "balances": balances,
            "nonce": account.nonce_high.to_string(),
        }),
    ))
}

pub fn account_doc() -> Value {
    json!({
        "summary": "Balances and nonce of an account",
        "description": "An address that never held anything is answered as an empty account: 200, balances {}, nonce \"0\".",
        "parameters": [{ "name": "address", "in": "path", "required": true, "schema": reference("Address") }],
        "responses": { "200": ok("The account", "Account"), "400": error("BadRequest"), "503": error("Unavailable") }
    })
}

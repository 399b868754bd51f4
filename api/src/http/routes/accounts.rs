//! `GET /api/v11/accounts/{address}`: balances and nonce of an account.
//! `GET /api/v11/accounts/{address}/transactions`: its transfers, from the archive.

use super::archive::{self, HistoryItemOut, HistoryOut};
use super::request::int_param;
use super::response::{json_response, Hex32};
use super::{Answer, Backend, Ctx};
use crate::http::error::ApiError;
use crate::http::openapi::{decimal_at_most, error, ok, reference};
use crate::http::types::parse_address;
use aurigraph_sinks::archive_query::{
    CURSOR_BLOCK_MAX, CURSOR_POSITION_MAX, CURSOR_SHARD_MAX, HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
};
use aurigraph_sinks::HistoryCursor;
use hyper::{Request, StatusCode};
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

/// `GET /api/v11/accounts/{address}/transactions?limit=N&before=CURSOR`: the account's
/// transfers as sender or receiver, newest first (`(block, shard, position)` descending, see
/// `aurigraph_sinks::archive_query`), from the archive. The input is checked first (400), then
/// whether the node has an archive (404 `NO_ARCHIVE`).
pub async fn transactions<B: Backend, T>(
    ctx: &Ctx<B>,
    request: Request<T>,
    address: &str,
) -> Answer {
    let address = parse_address(address)?;
    let limit = int_param(
        &request,
        "limit",
        (
            1,
            HISTORY_LIMIT_MAX as usize,
            HISTORY_LIMIT_DEFAULT as usize,
        ),
    )? as u32;
    let before = before_param(&request)?;
    let reader = archive::reader(&ctx.settings, "an account's transactions")?;
    let page = archive::history(reader, address.0, before, limit).await?;
    Ok(json_response(
        StatusCode::OK,
        &HistoryOut {
            address: Hex32(&address.0),
            transactions: page.transfers.iter().map(HistoryItemOut::from).collect(),
            next: page.next.map(|c| c.to_string()),
        },
    ))
}

/// `?before=CURSOR` (the last one given), if any.
fn before_param<T>(request: &Request<T>) -> Result<Option<HistoryCursor>, ApiError> {
    let mut before = None;
    for pair in request.uri().query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "before" {
            before = Some(value);
        }
    }
    before
        .map(|text| {
            text.parse::<HistoryCursor>()
                .map_err(|e| ApiError::invalid(format!("query parameter before: {e}")))
        })
        .transpose()
}

/// The pattern of a cursor: three decimal integers joined by dots, each within its column's
/// range (leading zeros taken, as the server's parser takes them).
fn cursor_pattern() -> String {
    let part = |max: u64| {
        let full = decimal_at_most(max);
        full.trim_start_matches('^')
            .trim_end_matches('$')
            .to_string()
    };
    format!(
        "^{}\\.{}\\.{}$",
        part(CURSOR_BLOCK_MAX),
        part(CURSOR_SHARD_MAX.into()),
        part(CURSOR_POSITION_MAX.into())
    )
}

pub fn account_doc() -> Value {
    json!({
        "summary": "Balances and nonce of an account",
        "description": "An address that never held anything is answered as an empty account: 200, balances {}, nonce \"0\".",
        "parameters": [{ "name": "address", "in": "path", "required": true, "schema": reference("Address") }],
        "responses": { "200": ok("The account", "Account"), "400": error("BadRequest"), "503": error("Unavailable") }
    })
}

pub fn transactions_doc() -> Value {
    json!({
        "summary": "An account's transfers, from the archive",
        "description": format!("The transfers the account sent or received, read from the node's PostgreSQL archive (archive_url; docs/operations.md): every transfer the log decided, whatever its result, including those that have left the recent window. Newest first: by block (the shard's log index) descending, then shard descending, then position in the block descending. Within a shard that is the log's order; shards keep logs of their own, so across shards it is by block height, not by time. A page holds at most `limit` transfers; `next` is the cursor of its last one (null on the last page), passed back as `before` for the next page. The cursor is BLOCK.SHARD.POSITION in decimal; treat it as opaque. A transfer archived after a page was read appears on a later walk from the top, not in the pages already read. 404 NO_ARCHIVE on a node without an archive; 503 ARCHIVE_UNAVAILABLE (with Retry-After) when PostgreSQL is away, does not answer within {} s, or the node's archive readers are all busy.", aurigraph_sinks::ReaderOptions::default().timeout.as_secs()),
        "parameters": [
            { "name": "address", "in": "path", "required": true, "schema": reference("Address") },
            { "name": "limit", "in": "query", "required": false, "description": "Transfers per page", "schema": { "type": "integer", "minimum": 1, "maximum": HISTORY_LIMIT_MAX, "default": HISTORY_LIMIT_DEFAULT } },
            { "name": "before", "in": "query", "required": false, "description": "The `next` of the previous page: only transfers after it (older) are listed. Absent: from the newest.", "schema": { "type": "string", "pattern": cursor_pattern() } }
        ],
        "responses": {
            "200": ok("A page of the account's transfers, newest first", "AccountTransactions"),
            "400": error("BadRequest"), "404": error("NotFound"), "503": error("Unavailable")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_pattern_takes_exactly_what_the_parser_takes() {
        let pattern = regex::Regex::new(&cursor_pattern()).unwrap();
        for good in [
            "0.0.0",
            "1042.1.7",
            "001042.01.007",
            "9223372036854775807.2147483647.2147483647",
        ] {
            assert!(pattern.is_match(good), "{good}");
            assert!(good.parse::<HistoryCursor>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "1.2",
            "1.2.3.4",
            "a.1.2",
            "+1.2.3",
            "9223372036854775808.0.0",
            "1.2147483648.0",
            "1.0.2147483648",
            "1..2",
        ] {
            assert!(!pattern.is_match(bad), "{bad}");
            assert!(bad.parse::<HistoryCursor>().is_err(), "{bad}");
        }
    }
}

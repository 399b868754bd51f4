//! Transfers: `POST /api/v11/transactions` (one, JSON), `POST /api/v11/transactions/batch`
//! (JSON or the binary batch; JSON or compact results), `GET /api/v11/transactions/{txHash}`.

use super::auth::require_role;
use super::request::{content_type, is_json, read_body, wait_param, wants_compact};
use super::response::{
    bytes_response, json_response, BatchOut, OutcomeOut, PendingBatchOut, PendingOut,
};
use super::{archive, Answer, Backend, Ctx, RequestBody};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::openapi::{error, json_content, ok, reference};
use crate::http::types::{
    encode_compact_results, parse_tx_hash, BatchJson, TransferJson, BATCH_MEDIA_TYPE,
    RESULTS_MEDIA_TYPE,
};
use aurigraph_engine::batch::{decode_batch, BatchError, BATCH_FOOTER_BYTES};
use aurigraph_engine::record::{Record, TxHash, RECORD_BYTES};
use aurigraph_engine::replica::{Outcome, TxStatus};
use aurigraph_engine::runtime::GatewayId;
use aurigraph_engine::shard_of;
use aurigraph_engine::tokens::Role;
use aurigraph_engine::SubmitFailure;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::time::Instant;

/// `POST /api/v11/transactions`: one V11 JSON transfer.
pub async fn submit<B: Backend, T: RequestBody>(ctx: &Ctx<B>, request: Request<T>) -> Answer {
    match content_type(&request)? {
        None => {}
        Some(media) if is_json(&media) => {}
        Some(media) => return Err(ApiError::unsupported_media_type(&media, "application/json")),
    }
    let wait = wait_param(&request)?;
    let body = read_body(ctx, request).await?;
    let transfer: TransferJson =
        serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let record = transfer.to_record(ctx.backend.chain_id(), None)?;
    match submit_records(ctx, std::slice::from_ref(&record), None, wait).await? {
        Submitted::Pending(pending) => {
            let (hash, shard) = pending_one(&pending, &record, ctx.backend.shard_count());
            Ok(json_response(
                StatusCode::ACCEPTED,
                &PendingOut::new(&hash, shard),
            ))
        }
        Submitted::Decided(outcomes) => {
            let outcome = outcomes.first().expect("one outcome per transfer");
            Ok(json_response(StatusCode::OK, &OutcomeOut::from(outcome)))
        }
    }
}

/// The hash and shard a single submitted transfer waits under: the engine's answer, else the
/// record's own.
pub(crate) fn pending_one(
    pending: &[(TxHash, u32)],
    record: &Record,
    shard_count: u32,
) -> (TxHash, u32) {
    pending
        .first()
        .copied()
        .unwrap_or_else(|| (record.tx_hash(), shard_of(&record.from(), shard_count)))
}

/// What a submission came to: admitted, not decided (`wait` false: each transfer's hash and
/// shard), or decided (every outcome, in request order).
pub(crate) enum Submitted {
    Pending(Vec<(TxHash, u32)>),
    Decided(Vec<Outcome>),
}

/// Submits `records` on behalf of `gateway` (or of nobody), waiting for their decision or not,
/// and records the figures: the one admission of the HTTP and gRPC submissions.
pub(crate) async fn submit_records<B: Backend>(
    ctx: &Ctx<B>,
    records: &[Record],
    gateway: Option<GatewayId>,
    wait: bool,
) -> Result<Submitted, ApiError> {
    let count = records.len();
    if !wait {
        let shard_count = ctx.backend.shard_count();
        let hashes = ctx.backend.submit_detached(records, gateway).await?;
        ctx.settings.metrics.record_detached(ctx.core, count as u64);
        let shards = records.iter().map(|r| shard_of(&r.from(), shard_count));
        return Ok(Submitted::Pending(hashes.into_iter().zip(shards).collect()));
    }
    decided(ctx, count, ctx.backend.submit(records, gateway)).await
}

/// Submits a validated binary batch's body whole (`Backend::submit_archive`: on the core that
/// owns its one shard, its bytes may become the log entry) and waits for the decision.
/// `count`: its records.
async fn submit_archive<B: Backend>(
    ctx: &Ctx<B>,
    body: Vec<u8>,
    count: usize,
    gateway: Option<GatewayId>,
) -> Result<Submitted, ApiError> {
    decided(ctx, count, ctx.backend.submit_archive(body, gateway)).await
}

/// Waits for `count` transfers' outcomes from `submission` and records the figures.
async fn decided<B: Backend>(
    ctx: &Ctx<B>,
    count: usize,
    submission: impl std::future::Future<Output = Result<Vec<Outcome>, SubmitFailure>>,
) -> Result<Submitted, ApiError> {
    let admitted = Instant::now();
    let outcomes = submission.await?;
    let latency = admitted.elapsed();
    if outcomes.len() != count {
        return Err(ApiError::internal(format!(
            "the engine returned {} outcomes for {count} transfers",
            outcomes.len()
        )));
    }
    ctx.settings
        .metrics
        .record_decided(ctx.core, outcomes.iter().map(|o| o.result), latency);
    Ok(Submitted::Decided(outcomes))
}

/// `POST /api/v11/transactions/batch`: JSON `{"transactions":[…]}` or a binary batch.
pub async fn submit_batch<B: Backend, T: RequestBody>(ctx: &Ctx<B>, request: Request<T>) -> Answer {
    submit_batch_as(ctx, request, None).await
}

/// `POST /api/v11/gateway/transactions/batch`: the batch endpoint for a gateway (gateway
/// mode), authenticated with `Authorization: Bearer <token>`; transfers from the accounts the
/// genesis gives the gateway need no signature, every other transfer does.
pub async fn submit_gateway_batch<B: Backend, T: RequestBody>(
    ctx: &Ctx<B>,
    request: Request<T>,
) -> Answer {
    let principal = require_role(ctx, &request, Role::Gateway)?;
    let gateway = gateway_named(ctx, &principal.name)?;
    submit_batch_as(ctx, request, Some(gateway)).await
}

/// The gateway `name` (an authenticated gateway principal) of this chain: 403 `FORBIDDEN` when
/// the genesis gives it no account.
pub(crate) fn gateway_named<B: Backend>(ctx: &Ctx<B>, name: &str) -> Result<GatewayId, ApiError> {
    ctx.backend.gateway(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the genesis gives gateway {name:?} no account (an allocation's \"controller\": \"gateway:{name}\")"
            ),
        )
    })
}

async fn submit_batch_as<B: Backend, T: RequestBody>(
    ctx: &Ctx<B>,
    request: Request<T>,
    gateway: Option<GatewayId>,
) -> Answer {
    let binary = match content_type(&request)? {
        None => false,
        Some(media) if is_json(&media) => false,
        Some(media) if media == BATCH_MEDIA_TYPE => true,
        Some(media) => {
            return Err(ApiError::unsupported_media_type(
                &media,
                "application/json or application/vnd.aurigraph.batch",
            ))
        }
    };
    let wait = wait_param(&request)?;
    let compact = wants_compact(&request);
    let max = ctx.settings.batch_transfers_max;
    let body = read_body(ctx, request).await?;
    // A binary batch's records are read in place from the body (rkyv-validated), not copied;
    // waited for, the body goes to the engine whole (detached, the general path).
    let submitted = if binary {
        let records = decode_binary_batch(&body, max)?;
        if wait {
            let count = records.len();
            submit_archive(ctx, body, count, gateway).await?
        } else {
            submit_records(ctx, records, gateway, false).await?
        }
    } else {
        let records = decode_json_batch(&body, max, ctx.backend.chain_id())?;
        submit_records(ctx, &records, gateway, wait).await?
    };
    let outcomes = match submitted {
        Submitted::Pending(pending) => {
            let results: Vec<PendingOut> = pending
                .iter()
                .map(|(h, s)| PendingOut::new(h, *s))
                .collect();
            return Ok(json_response(
                StatusCode::ACCEPTED,
                &PendingBatchOut {
                    pending: results.len(),
                    results,
                },
            ));
        }
        Submitted::Decided(outcomes) => outcomes,
    };
    let accepted = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let rejected = outcomes.len() - accepted;
    if compact {
        return Ok(bytes_response(
            StatusCode::OK,
            RESULTS_MEDIA_TYPE,
            encode_compact_results(&outcomes),
        ));
    }
    let results: Vec<OutcomeOut> = outcomes.iter().map(OutcomeOut::from).collect();
    Ok(json_response(
        StatusCode::OK,
        &BatchOut {
            results,
            accepted,
            rejected,
        },
    ))
}

/// Validates a binary batch (`aurigraph_engine::batch`); its records, in place in `body`.
pub(crate) fn decode_binary_batch(body: &[u8], max: usize) -> Result<&[Record], ApiError> {
    // The count follows from the length; refuse oversize batches before validating them.
    if body.len() >= BATCH_FOOTER_BYTES
        && (body.len() - BATCH_FOOTER_BYTES).is_multiple_of(RECORD_BYTES)
    {
        let count = (body.len() - BATCH_FOOTER_BYTES) / RECORD_BYTES;
        if count > max {
            return Err(ApiError::too_many_transfers(count, max));
        }
    }
    match decode_batch(body) {
        Ok(view) => Ok(view.records()),
        Err(BatchError::TooManyRecords { count, .. }) => {
            Err(ApiError::too_many_transfers(count, max))
        }
        Err(e) => Err(ApiError::new(
            ErrorCode::InvalidBatch,
            format!("invalid binary batch: {e}"),
        )),
    }
}

fn decode_json_batch(body: &[u8], max: usize, chain_id: u32) -> Result<Vec<Record>, ApiError> {
    let batch: BatchJson = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    if batch.transactions.len() > max {
        return Err(ApiError::too_many_transfers(batch.transactions.len(), max));
    }
    if batch.transactions.is_empty() {
        return Err(ApiError::invalid(
            "\"transactions\" is empty: a batch holds at least one transfer",
        ));
    }
    batch
        .transactions
        .iter()
        .enumerate()
        .map(|(i, t)| t.to_record(chain_id, Some(i)))
        .collect()
}

/// `GET /api/v11/transactions/{txHash}`: from the shards' recent window, else (with
/// `archive_url`) from the archive, marked `"source": "archive"`.
pub async fn transaction<B: Backend>(ctx: &Ctx<B>, hash: &str) -> Answer {
    let hash = parse_tx_hash(hash)?;
    match ctx.backend.transaction(hash).await? {
        None => match &ctx.settings.archive_reader {
            None => Err(ApiError::new(
                ErrorCode::TransactionNotFound,
                format!(
                    "transaction {hash} is not known to this node: it was never submitted, or it \
                     is older than the bounded window of recent transactions each shard keeps"
                ),
            )),
            Some(reader) => match archive::transfer(reader, hash.0).await? {
                Some(row) => Ok(json_response(
                    StatusCode::OK,
                    &archive::ArchivedOutcomeOut::from(&row),
                )),
                None => Err(ApiError::new(
                    ErrorCode::TransactionNotFound,
                    format!(
                        "transaction {hash} is not known to this node: it is neither in the \
                         window of recent transactions each shard keeps nor in the archive (never \
                         submitted, rejected before consensus, or not archived yet)"
                    ),
                )),
            },
        },
        Some(TxStatus::Pending { shard }) => Ok(json_response(
            StatusCode::OK,
            &PendingOut::new(&hash, shard),
        )),
        Some(TxStatus::Decided(outcome)) => {
            Ok(json_response(StatusCode::OK, &OutcomeOut::from(&outcome)))
        }
    }
}

/// The `wait` query parameter of the submissions.
fn wait_parameter() -> Value {
    json!({
        "name": "wait", "in": "query", "required": false,
        "description": "true (default): answer once every transfer is committed, fdatasynced and applied. false: answer 202 right after admission with status PENDING; look the outcome up with GET /api/v11/transactions/{txHash}.",
        "schema": { "type": "boolean", "default": true }
    })
}

pub fn submit_doc() -> Value {
    json!({
        "summary": "Submit one transfer",
        "description": "The transfer is signed by the sender over the 104-byte message documented in docs/api.md. A request that is valid but decided with a result other than OK (e.g. INSUFFICIENT_FUNDS) is still HTTP 200, with status REJECTED.",
        "parameters": [wait_parameter()],
        "requestBody": { "required": true, "content": json_content(reference("Transfer")) },
        "responses": {
            "200": ok("Decided: CONFIRMED (result OK) or REJECTED (any other result)", "Outcome"),
            "202": ok("Admitted, not yet decided (wait=false)", "Pending"),
            "400": error("BadRequest"), "413": error("TooLarge"), "415": error("UnsupportedMediaType"), "503": error("Unavailable")
        }
    })
}

pub fn submit_batch_doc() -> Value {
    json!({
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
    })
}

pub fn submit_gateway_batch_doc() -> Value {
    let mut doc = submit_batch_doc();
    doc["summary"] = "Submit a batch of transfers as a gateway (gateway mode)".into();
    doc["description"] = "The batch endpoint for a gateway, with Authorization: Bearer <token> (a token of the node's tokens file with role gateway). Transfers whose source account the genesis gives that gateway (\"controller\": \"gateway:NAME\") need no signature (send any 64 bytes, e.g. zeros); every other transfer must be signed by its sender and is refused BAD_SIGNATURE otherwise. Nonce window, result codes, durability and replication are those of /api/v11/transactions/batch; the body and answer formats too.".into();
    doc["security"] = json!([{ "gatewayToken": [] }]);
    doc["responses"]["401"] = error("Unauthorized");
    doc["responses"]["403"] = error("Forbidden");
    doc
}

pub fn transaction_doc() -> Value {
    json!({
        "summary": "Status of a transfer",
        "description": "Each shard keeps a bounded window of recent transfers. On a node with the PostgreSQL archive (archive_url), a hash the window does not hold is looked up in the archive: found, the answer is the same Outcome with \"source\": \"archive\" added; PostgreSQL away or slow is 503 ARCHIVE_UNAVAILABLE. Unknown hashes (or, without an archive, hashes older than the window) are 404 TRANSACTION_NOT_FOUND.",
        "parameters": [{ "name": "txHash", "in": "path", "required": true, "schema": reference("Hash") }],
        "responses": {
            "200": { "description": "Known", "content": json_content(json!({ "oneOf": [reference("Outcome"), reference("Pending")] })) },
            "400": error("BadRequest"), "404": error("NotFound"), "503": error("Unavailable")
        }
    })
}

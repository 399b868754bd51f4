//! Request routing and the endpoints (DESIGN.md section 8). Everything here is independent of
//! sockets and executors: [`handle`] turns a request into a response using a [`Backend`] (the
//! engine in production, a fake in the tests below).

use super::error::ApiError;
use super::prometheus::Exposition;
use super::stats::{Histograms, Snapshot, API_ROUTES};
use super::types::{
    hex128, iso8601_ms, parse_address, parse_tx_hash, status_of, BatchJson, TransferJson,
    BATCH_MEDIA_TYPE, RESULTS_MEDIA_TYPE,
};
use super::HttpSettings;
use aurigraph_engine::batch::{decode_batch, BatchError, BATCH_FOOTER_BYTES};
use aurigraph_engine::ledger::Account;
use aurigraph_engine::record::{Address, Record, TxHash, RECORD_BYTES};
use aurigraph_engine::replica::{BlockHeader, Outcome, SubmitError, TxStatus};
use aurigraph_engine::runtime::{
    Engine, EngineError, HistogramCounts, ShardCounters, ShardStatus, SubmitFailure,
};
use aurigraph_engine::shard_of;
use aurigraph_engine::ConfChangeType;
use aurigraph_net::beacon::derive::{purpose, DERIVE_SALT};
use aurigraph_net::beacon::state::{BeaconHealth, BeaconState, Drawn, FALLBACK_SOURCE};
use aurigraph_net::beacon::Source;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// What the HTTP layer needs from the ledger (implemented by [`Engine`]).
pub(crate) trait Backend: Clone + 'static {
    fn chain_id(&self) -> u32;
    fn shard_count(&self) -> u32;
    fn cores(&self) -> usize;
    fn assets(&self) -> Vec<u32>;
    fn submit(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SubmitFailure>>;
    fn submit_detached(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<Vec<TxHash>, SubmitFailure>>;
    fn transaction(
        &self,
        hash: TxHash,
    ) -> impl Future<Output = Result<Option<TxStatus>, EngineError>>;
    fn account(
        &self,
        address: Address,
    ) -> impl Future<Output = Result<Option<Account>, EngineError>>;
    fn status(&self) -> impl Future<Output = Result<Vec<ShardStatus>, EngineError>>;
    fn block(
        &self,
        shard: u32,
        height: u64,
    ) -> impl Future<Output = Result<Option<BlockHeader>, EngineError>>;
    fn latest_blocks(&self) -> impl Future<Output = Result<Vec<BlockHeader>, EngineError>>;
    /// Proposes a membership change on the shards this validator leads (see
    /// [`Engine::change_membership`]).
    fn change_membership(
        &self,
        changes: Vec<(ConfChangeType, u64)>,
        peer_addr: Vec<u8>,
    ) -> impl Future<Output = Result<MembershipResults, EngineError>>;
    /// Running totals of every shard (WAL, snapshots, signatures), read without a message.
    fn shard_counters(&self) -> Arc<[ShardCounters]>;
}

impl Backend for Engine {
    fn chain_id(&self) -> u32 {
        Engine::chain_id(self)
    }
    fn shard_count(&self) -> u32 {
        Engine::shard_count(self)
    }
    fn cores(&self) -> usize {
        Engine::cores(self)
    }
    fn assets(&self) -> Vec<u32> {
        Engine::assets(self).to_vec()
    }
    fn submit(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<Vec<Outcome>, SubmitFailure>> {
        Engine::submit(self, records)
    }
    fn submit_detached(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<Vec<TxHash>, SubmitFailure>> {
        Engine::submit_detached(self, records)
    }
    fn transaction(
        &self,
        hash: TxHash,
    ) -> impl Future<Output = Result<Option<TxStatus>, EngineError>> {
        Engine::transaction(self, hash)
    }
    fn account(
        &self,
        address: Address,
    ) -> impl Future<Output = Result<Option<Account>, EngineError>> {
        Engine::account(self, address)
    }
    fn status(&self) -> impl Future<Output = Result<Vec<ShardStatus>, EngineError>> {
        Engine::status(self)
    }
    fn block(
        &self,
        shard: u32,
        height: u64,
    ) -> impl Future<Output = Result<Option<BlockHeader>, EngineError>> {
        Engine::block(self, shard, height)
    }
    fn latest_blocks(&self) -> impl Future<Output = Result<Vec<BlockHeader>, EngineError>> {
        Engine::latest_blocks(self)
    }
    fn change_membership(
        &self,
        changes: Vec<(ConfChangeType, u64)>,
        peer_addr: Vec<u8>,
    ) -> impl Future<Output = Result<MembershipResults, EngineError>> {
        Engine::change_membership(self, changes, peer_addr)
    }
    fn shard_counters(&self) -> Arc<[ShardCounters]> {
        Engine::shard_counters(self).clone()
    }
}

/// Per shard: the log index at which a membership change applied, or why not.
pub(crate) type MembershipResults = Vec<(u32, Result<u64, SubmitFailure>)>;

/// What a request handler sees: its core, the ledger, the settings (shared figures included).
pub(crate) struct Ctx<B> {
    pub core: usize,
    pub backend: B,
    pub settings: HttpSettings,
}

pub(crate) type HttpResponse = Response<Full<Bytes>>;
type Answer = Result<HttpResponse, ApiError>;

/// Counts a request in `in_flight` for as long as it is handled (also when its future is
/// dropped because the client went away).
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Live,
    Ready,
}

/// The endpoints; the strings borrow path segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    Health(Health),
    Info,
    Stats,
    Submit,
    SubmitBatch,
    Transaction(&'a str),
    Account(&'a str),
    BlocksLatest,
    Block(&'a str, &'a str),
    Validators,
    AdminValidators,
    Consensus,
    OpenApi,
    Metrics,
    Randomness(Randomness),
}

/// The endpoints under `/api/v11/quantum/randomness/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Randomness {
    RandomBytes,
    TransactionNonce,
    CryptoSeed,
    Health,
    Info,
    PulseLatest,
}

/// The index in [`API_ROUTES`] of a path's route (the last for a path that matches none).
fn route_label(path: &str) -> usize {
    let template = match route(path).map(|(r, _)| r) {
        Some(Route::Health(Health::Live)) => "/q/health/live",
        Some(Route::Health(Health::Ready)) if path.starts_with("/q/") => "/q/health/ready",
        Some(Route::Health(Health::Ready)) => "/api/v11/health",
        Some(Route::Metrics) => "/metrics",
        Some(Route::Info) => "/api/v11/info",
        Some(Route::Stats) => "/api/v11/stats",
        Some(Route::Submit) => "/api/v11/transactions",
        Some(Route::SubmitBatch) => "/api/v11/transactions/batch",
        Some(Route::Transaction(_)) => "/api/v11/transactions/{txHash}",
        Some(Route::Account(_)) => "/api/v11/accounts/{address}",
        Some(Route::BlocksLatest) => "/api/v11/blocks/latest",
        Some(Route::Block(..)) => "/api/v11/blocks/{shard}/{height}",
        Some(Route::Validators) => "/api/v11/validators",
        Some(Route::AdminValidators) => "/api/v11/admin/validators",
        Some(Route::Consensus) => "/api/v11/consensus/status",
        Some(Route::OpenApi) => "/api/v11/openapi.json",
        Some(Route::Randomness(r)) => match r {
            Randomness::RandomBytes => "/api/v11/quantum/randomness/random-bytes",
            Randomness::TransactionNonce => "/api/v11/quantum/randomness/transaction-nonce",
            Randomness::CryptoSeed => "/api/v11/quantum/randomness/crypto-seed",
            Randomness::Health => "/api/v11/quantum/randomness/health",
            Randomness::Info => "/api/v11/quantum/randomness/info",
            Randomness::PulseLatest => "/api/v11/quantum/randomness/pulse/latest",
        },
        None => "unmatched",
    };
    API_ROUTES
        .iter()
        .position(|&r| r == template)
        .unwrap_or(API_ROUTES.len() - 1)
}

/// The route of a path and the one method it takes.
fn route(path: &str) -> Option<(Route<'_>, Method)> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let get = Method::GET;
    let post = Method::POST;
    Some(match segments.as_slice() {
        ["q", "health", "live"] => (Route::Health(Health::Live), get),
        ["q", "health", "ready"] => (Route::Health(Health::Ready), get),
        ["metrics"] => (Route::Metrics, get),
        ["api", "v11", rest @ ..] => match rest {
            ["health"] => (Route::Health(Health::Ready), get),
            ["info"] => (Route::Info, get),
            ["stats"] => (Route::Stats, get),
            ["transactions"] => (Route::Submit, post),
            ["transactions", "batch"] => (Route::SubmitBatch, post),
            ["transactions", hash] => (Route::Transaction(hash), get),
            ["accounts", address] => (Route::Account(address), get),
            ["blocks", "latest"] => (Route::BlocksLatest, get),
            ["blocks", shard, height] => (Route::Block(shard, height), get),
            ["validators"] => (Route::Validators, get),
            ["admin", "validators"] => (Route::AdminValidators, post),
            ["consensus", "status"] => (Route::Consensus, get),
            ["openapi.json"] => (Route::OpenApi, get),
            ["quantum", "randomness", rest @ ..] => (
                Route::Randomness(match rest {
                    ["random-bytes"] => Randomness::RandomBytes,
                    ["transaction-nonce"] => Randomness::TransactionNonce,
                    ["crypto-seed"] => Randomness::CryptoSeed,
                    ["health"] => Randomness::Health,
                    ["info"] => Randomness::Info,
                    ["pulse", "latest"] => Randomness::PulseLatest,
                    _ => return None,
                }),
                get,
            ),
            _ => return None,
        },
        _ => return None,
    })
}

/// Answers one request. Never panics on input; every failure is the contract's error shape.
pub(crate) async fn handle<B, T>(ctx: &Ctx<B>, request: Request<T>) -> HttpResponse
where
    B: Backend,
    T: Body<Data = Bytes>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _in_flight = InFlight::enter(&ctx.settings.in_flight);
    let started = Instant::now();
    let route = route_label(request.uri().path());
    let method = request.method().clone();
    // One span per request at debug level (a disabled span costs a level check): whatever the
    // request logs carries its method, route template and core; `status` is filled in at the end.
    let span = tracing::debug_span!(
        "request",
        method = %method,
        route = API_ROUTES[route],
        core = ctx.core,
        status = tracing::field::Empty,
    );
    let response = if ctx.settings.draining.load(Ordering::SeqCst) {
        ApiError::shutting_down().into_response()
    } else {
        match dispatch(ctx, request).instrument(span.clone()).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    };
    if !span.is_disabled() {
        span.record("status", response.status().as_u16());
        span.in_scope(|| {
            tracing::debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "request served"
            )
        });
    }
    ctx.settings.metrics.record_request(
        ctx.core,
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn dispatch<B, T>(ctx: &Ctx<B>, request: Request<T>) -> Answer
where
    B: Backend,
    T: Body<Data = Bytes>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path().to_owned();
    let Some((route, method)) = route(&path) else {
        return Err(ApiError::route_not_found(request.method().as_str(), &path));
    };
    if request.method() != method {
        let allow = if method == Method::POST {
            "POST"
        } else {
            "GET"
        };
        return Err(ApiError::method_not_allowed(
            request.method().as_str(),
            &path,
            allow,
        ));
    }
    match route {
        Route::Health(kind) => health(ctx, kind).await,
        Route::Info => info(ctx).await,
        Route::Stats => stats(ctx).await,
        Route::Submit => submit(ctx, request).await,
        Route::SubmitBatch => submit_batch(ctx, request).await,
        Route::Transaction(hash) => transaction(ctx, hash).await,
        Route::Account(address) => account(ctx, address).await,
        Route::BlocksLatest => blocks_latest(ctx).await,
        Route::Block(shard, height) => block(ctx, shard, height).await,
        Route::Validators => validators(ctx).await,
        Route::AdminValidators => admin_validators(ctx, request).await,
        Route::Consensus => consensus(ctx).await,
        Route::OpenApi => Ok(json_response(
            StatusCode::OK,
            &super::openapi::document(ctx.settings.version),
        )),
        Route::Metrics => metrics(ctx).await,
        Route::Randomness(r) => randomness(ctx, r, &request),
    }
}

fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => bytes_response(status, "application/json", bytes),
        Err(e) => ApiError::internal(format!("could not encode the answer: {e}")).into_response(),
    }
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

// ---------------------------------------------------------------------------------------------
// Request bodies and parameters

/// The media type of the request without parameters, lower case; `None` when absent.
fn content_type<T>(request: &Request<T>) -> Result<Option<String>, ApiError> {
    match request.headers().get(CONTENT_TYPE) {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::unsupported_media_type("<not text>", "application/json"))?;
            Ok(Some(
                text.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase(),
            ))
        }
    }
}

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Whether the client asked for the compact results format.
fn wants_compact<T>(request: &Request<T>) -> bool {
    request.headers().get_all(ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|m| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(RESULTS_MEDIA_TYPE)
            })
        })
    })
}

/// `?wait=true|false` (default true).
fn wait_param<T>(request: &Request<T>) -> Result<bool, ApiError> {
    let mut wait = true;
    for pair in request.uri().query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "wait" {
            wait = match value {
                "true" | "1" | "" => true,
                "false" | "0" => false,
                other => {
                    return Err(ApiError::invalid(format!(
                        "query parameter wait={other:?}: expected true or false"
                    )))
                }
            };
        }
    }
    Ok(wait)
}

/// Reads the whole body, refusing more than `limit` bytes: first by `Content-Length`, then
/// while reading (`Limited`, for chunked bodies and lying lengths).
async fn read_body<T>(request: Request<T>, limit: usize) -> Result<Vec<u8>, ApiError>
where
    T: Body<Data = Bytes>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = match request.headers().get(CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Content-Length is not a number"))?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = std::pin::pin!(Limited::new(request.into_body(), limit));
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::payload_too_large(limit)
            } else {
                ApiError::bad_request(
                    "BODY_READ_FAILED",
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Transfers

/// `POST /api/v11/transactions`: one V11 JSON transfer.
async fn submit<B, T>(ctx: &Ctx<B>, request: Request<T>) -> Answer
where
    B: Backend,
    T: Body<Data = Bytes>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match content_type(&request)? {
        None => {}
        Some(media) if is_json(&media) => {}
        Some(media) => return Err(ApiError::unsupported_media_type(&media, "application/json")),
    }
    let wait = wait_param(&request)?;
    let body = read_body(request, ctx.settings.body_bytes_max).await?;
    let transfer: TransferJson =
        serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let record = transfer.to_record(ctx.backend.chain_id(), None)?;
    if !wait {
        let hashes = ctx.backend.submit_detached(vec![record]).await?;
        ctx.settings.metrics.record_detached(ctx.core, 1);
        let shard = shard_of(&record.from(), ctx.backend.shard_count());
        let hash = hashes.first().copied().unwrap_or_else(|| record.tx_hash());
        return Ok(json_response(
            StatusCode::ACCEPTED,
            &PendingOut::new(&hash, shard),
        ));
    }
    let admitted = Instant::now();
    let outcomes = ctx.backend.submit(vec![record]).await?;
    let Some(outcome) = outcomes.first() else {
        return Err(ApiError::internal("the engine returned no outcome"));
    };
    ctx.settings
        .metrics
        .record_decided(ctx.core, [outcome.result], admitted.elapsed());
    Ok(json_response(StatusCode::OK, &OutcomeOut::from(outcome)))
}

/// `POST /api/v11/transactions/batch`: JSON `{"transactions":[…]}` or a binary batch.
async fn submit_batch<B, T>(ctx: &Ctx<B>, request: Request<T>) -> Answer
where
    B: Backend,
    T: Body<Data = Bytes>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
    let body = read_body(request, ctx.settings.body_bytes_max).await?;
    let records = if binary {
        decode_binary_batch(&body, max)?
    } else {
        decode_json_batch(&body, max, ctx.backend.chain_id())?
    };
    let count = records.len();
    if !wait {
        let shard_count = ctx.backend.shard_count();
        let shards: Vec<u32> = records
            .iter()
            .map(|r| shard_of(&r.from(), shard_count))
            .collect();
        let hashes = ctx.backend.submit_detached(records).await?;
        ctx.settings.metrics.record_detached(ctx.core, count as u64);
        let results: Vec<PendingOut> = hashes
            .iter()
            .zip(shards)
            .map(|(h, s)| PendingOut::new(h, s))
            .collect();
        return Ok(json_response(
            StatusCode::ACCEPTED,
            &PendingBatchOut {
                pending: results.len(),
                results,
            },
        ));
    }
    let admitted = Instant::now();
    let outcomes = ctx.backend.submit(records).await?;
    let latency = admitted.elapsed();
    if outcomes.len() != count {
        return Err(ApiError::internal(format!(
            "the engine returned {} outcomes for {count} transfers",
            outcomes.len()
        )));
    }
    let accepted = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let rejected = count - accepted;
    ctx.settings
        .metrics
        .record_decided(ctx.core, outcomes.iter().map(|o| o.result), latency);
    if compact {
        return Ok(bytes_response(
            StatusCode::OK,
            RESULTS_MEDIA_TYPE,
            super::types::encode_compact_results(&outcomes),
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

/// Validates a binary batch (`aurigraph_engine::batch`) and copies its records out.
fn decode_binary_batch(body: &[u8], max: usize) -> Result<Vec<Record>, ApiError> {
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
        Ok(view) => Ok(view.records().to_vec()),
        Err(BatchError::TooManyRecords { count, .. }) => {
            Err(ApiError::too_many_transfers(count, max))
        }
        Err(e) => Err(ApiError::bad_request(
            "INVALID_BATCH",
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

/// A transaction hash serialised as 64 lowercase hex characters without allocating.
struct Hex32<'a>(&'a [u8; 32]);

impl Serialize for Hex32<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&out).map_err(serde::ser::Error::custom)?)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeOut<'a> {
    tx_hash: Hex32<'a>,
    status: &'static str,
    result: &'static str,
    shard: u32,
    /// The shard's log index that decided it; 0 when it was rejected before consensus.
    block_number: u64,
}

impl<'a> From<&'a Outcome> for OutcomeOut<'a> {
    fn from(o: &'a Outcome) -> OutcomeOut<'a> {
        OutcomeOut {
            tx_hash: Hex32(&o.tx_hash.0),
            status: status_of(o.result),
            result: o.result.as_str(),
            shard: o.shard,
            block_number: o.block,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PendingOut<'a> {
    tx_hash: Hex32<'a>,
    status: &'static str,
    shard: u32,
}

impl<'a> PendingOut<'a> {
    fn new(hash: &'a TxHash, shard: u32) -> PendingOut<'a> {
        PendingOut {
            tx_hash: Hex32(&hash.0),
            status: "PENDING",
            shard,
        }
    }
}

#[derive(Serialize)]
struct BatchOut<'a> {
    results: Vec<OutcomeOut<'a>>,
    accepted: usize,
    rejected: usize,
}

#[derive(Serialize)]
struct PendingBatchOut<'a> {
    results: Vec<PendingOut<'a>>,
    pending: usize,
}

/// `GET /api/v11/transactions/{txHash}`.
async fn transaction<B: Backend>(ctx: &Ctx<B>, hash: &str) -> Answer {
    let hash = parse_tx_hash(hash)?;
    match ctx.backend.transaction(hash).await? {
        None => Err(ApiError::not_found(
            "TRANSACTION_NOT_FOUND",
            format!(
                "transaction {hash} is not known to this node: it was never submitted, or it is \
                 older than the bounded window of recent transactions each shard keeps"
            ),
        )),
        Some(TxStatus::Pending { shard }) => Ok(json_response(
            StatusCode::OK,
            &PendingOut::new(&hash, shard),
        )),
        Some(TxStatus::Decided(outcome)) => {
            Ok(json_response(StatusCode::OK, &OutcomeOut::from(&outcome)))
        }
    }
}

/// `GET /api/v11/accounts/{address}`: an address never seen is an empty account (200).
async fn account<B: Backend>(ctx: &Ctx<B>, address: &str) -> Answer {
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

// ---------------------------------------------------------------------------------------------
// Blocks

fn block_json(b: &BlockHeader) -> Value {
    json!({
        "shard": b.shard,
        "height": b.height,
        "hash": hex::encode(b.hash),
        "prevHash": hex::encode(b.prev_hash),
        "txCount": b.tx_count,
        "term": b.term,
        "stateHash": hex128(b.state_hash),
        "timestamp": iso8601_ms(b.timestamp_ms),
        "timestampMs": b.timestamp_ms,
    })
}

async fn blocks_latest<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let blocks = ctx.backend.latest_blocks().await?;
    let blocks: Vec<Value> = blocks.iter().map(block_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "blocks": blocks })))
}

async fn block<B: Backend>(ctx: &Ctx<B>, shard: &str, height: &str) -> Answer {
    let shard: u32 = shard
        .parse()
        .map_err(|_| ApiError::invalid(format!("shard {shard:?} is not a number")))?;
    let height: u64 = height
        .parse()
        .map_err(|_| ApiError::invalid(format!("height {height:?} is not a number")))?;
    let shards = ctx.backend.shard_count();
    if shard >= shards {
        return Err(ApiError::not_found(
            "BLOCK_NOT_FOUND",
            format!(
                "shard {shard} does not exist: this chain has {shards} shards (0..{})",
                shards - 1
            ),
        ));
    }
    match ctx.backend.block(shard, height).await? {
        Some(b) => Ok(json_response(StatusCode::OK, &block_json(&b))),
        None => Err(ApiError::not_found(
            "BLOCK_NOT_FOUND",
            format!(
                "block {height} of shard {shard} is not available: not produced yet, or older \
                 than the bounded window of recent blocks each shard keeps"
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Node, consensus, health, figures

/// Node ids known from this node's view: itself and every shard's leader. (Shard status does
/// not list the voters; on a single validator this is exactly `[node_id]`.)
/// The validators: every shard group's voters (and this node, and any leader seen).
fn validator_ids(node_id: u64, status: &[ShardStatus]) -> Vec<u64> {
    let mut ids: Vec<u64> = std::iter::once(node_id)
        .chain(status.iter().filter_map(|s| s.leader_id))
        .chain(status.iter().flat_map(|s| s.voter_ids.iter().copied()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The node that leads most shards (ties: the smallest id), if any shard has a leader.
fn main_leader(status: &[ShardStatus]) -> Option<u64> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for id in status.iter().filter_map(|s| s.leader_id) {
        *counts.entry(id).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|&(_, c)| c == best)
        .map(|(id, _)| id)
}

/// This node's role: the role it has in every shard, or `MIXED`.
fn node_state(status: &[ShardStatus]) -> &'static str {
    match status.first() {
        None => "UNKNOWN",
        Some(first) if status.iter().all(|s| s.role == first.role) => first.role,
        Some(_) => "MIXED",
    }
}

async fn health<B: Backend>(ctx: &Ctx<B>, kind: Health) -> Answer {
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
    let body = json!({
        "status": word,
        "checks": [
            { "name": "ledger", "status": word, "data": data },
            beacon_check(&ctx.settings),
        ],
    });
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(json_response(code, &body))
}

async fn info<B: Backend>(ctx: &Ctx<B>) -> Answer {
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

fn now_iso() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    iso8601_ms(ms)
}

/// The V11 `performance` object (plus a few extra measured fields).
fn performance_json(s: &Snapshot) -> Value {
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

fn consensus_json(node_id: u64, status: &[ShardStatus]) -> Value {
    let validators = validator_ids(node_id, status);
    json!({
        "currentTerm": status.iter().map(|s| s.term).max().unwrap_or(0),
        "blockHeight": status.iter().map(|s| s.applied_index).sum::<u64>(),
        "commitIndex": status.iter().map(|s| s.commit_index).sum::<u64>(),
        "lastApplied": status.iter().map(|s| s.applied_index).sum::<u64>(),
        "leaderNodeId": main_leader(status),
        "validatorCount": validators.len(),
        "activeValidators": validators.len(),
        "totalLeaderChanges": status.iter().map(|s| s.leader_changes).sum::<u64>(),
        "consensusState": node_state(status),
        "shards": status.len(),
        "shardsWithLeader": status.iter().filter(|s| s.leader_id.is_some()).count(),
        "pendingRecords": status.iter().map(|s| s.pending_records).sum::<usize>(),
    })
}

async fn stats<B: Backend>(ctx: &Ctx<B>) -> Answer {
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

fn shard_json(s: &ShardStatus) -> Value {
    json!({
        "shard": s.shard,
        "core": s.core,
        "role": s.role,
        "leader": s.leader_id,
        "term": s.term,
        "commitIndex": s.commit_index,
        "appliedIndex": s.applied_index,
        "lastIndex": s.last_index,
        "stateHash": hex128(s.state_hash),
        "accounts": s.accounts,
        "leaderChanges": s.leader_changes,
        "pendingRecords": s.pending_records,
        "voters": s.voter_ids,
        "learners": s.learner_ids,
        // On the leader: how far each voter's log matches; empty on a follower.
        "peers": s.peer_matched.iter().zip(&s.peer_lag).map(|(&(id, matched), &(_, lag))| json!({
            "nodeId": id,
            "matchIndex": matched,
            "lag": lag,
        })).collect::<Vec<_>>(),
    })
}

async fn consensus<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let node_id = ctx.settings.node_id;
    let shards: Vec<Value> = status.iter().map(shard_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "nodeId": node_id,
            "state": node_state(&status),
            "currentTerm": status.iter().map(|s| s.term).max().unwrap_or(0),
            "commitIndex": status.iter().map(|s| s.commit_index).sum::<u64>(),
            "appliedIndex": status.iter().map(|s| s.applied_index).sum::<u64>(),
            "leaderId": main_leader(&status),
            "clusterSize": validator_ids(node_id, &status).len(),
            "shards": shards,
        }),
    ))
}

/// `POST /api/v11/admin/validators`: one membership step on the shards this validator leads.
/// `{"action": "add-learner" | "promote" | "remove", "nodeId": N, "peerAddr": "HOST:PORT"}`
/// (`peerAddr`, the new validator's base peer address, for add-learner). Answers per shard
/// `APPLIED` (with the log index), `NOT_LEADER` (with the leader: run it there), `REFUSED` or
/// `RETRY`. `aurigraph validators` drives it over every validator until all shards applied.
async fn admin_validators<B, T>(ctx: &Ctx<B>, request: Request<T>) -> Answer
where
    B: Backend,
    T: Body<Data = Bytes>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct MembershipJson {
        action: String,
        node_id: u64,
        #[serde(default)]
        peer_addr: Option<String>,
    }
    let body = read_body(request, ctx.settings.body_bytes_max).await?;
    let m: MembershipJson = serde_json::from_slice(&body).map_err(|e| ApiError::from_json(&e))?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message);
    if m.node_id == 0 {
        return Err(bad("nodeId must be at least 1".into()));
    }
    let (change, peer_addr) = match (m.action.as_str(), &m.peer_addr) {
        ("add-learner", Some(addr)) => {
            let parsed: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| bad(format!("peerAddr {addr:?}: {e} (expected IP:PORT)")))?;
            (
                ConfChangeType::AddLearnerNode,
                parsed.to_string().into_bytes(),
            )
        }
        ("add-learner", None) => return Err(bad("add-learner needs peerAddr".into())),
        ("promote", _) => (ConfChangeType::AddNode, Vec::new()),
        ("remove", _) => (ConfChangeType::RemoveNode, Vec::new()),
        (other, _) => {
            return Err(bad(format!(
                "action {other:?}: expected add-learner, promote or remove"
            )))
        }
    };
    let results = ctx
        .backend
        .change_membership(vec![(change, m.node_id)], peer_addr)
        .await?;
    let shards: Vec<Value> = results
        .into_iter()
        .map(|(shard, result)| match result {
            Ok(index) => json!({ "shard": shard, "status": "APPLIED", "index": index }),
            Err(SubmitFailure::Rejected(SubmitError::NotLeader { leader, .. })) => {
                json!({ "shard": shard, "status": "NOT_LEADER", "leader": leader })
            }
            Err(SubmitFailure::Retry(_)) => json!({ "shard": shard, "status": "RETRY" }),
            Err(other) => {
                json!({ "shard": shard, "status": "REFUSED", "message": other.to_string() })
            }
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "action": m.action, "nodeId": m.node_id, "shards": shards }),
    ))
}

/// A validator at most this many entries behind (seen from a shard this node leads) is ACTIVE.
const VALIDATOR_ACTIVE_LAG_MAX: u64 = 1000;

async fn validators<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let node_id = ctx.settings.node_id;
    let list: Vec<Value> = validator_ids(node_id, &status)
        .into_iter()
        .map(|id| {
            let leads: Vec<u32> = status
                .iter()
                .filter(|s| s.leader_id == Some(id))
                .map(|s| s.shard)
                .collect();
            // Seen from the shards this node leads: the most entries this validator is behind.
            let lag = status
                .iter()
                .flat_map(|s| s.peer_lag.iter())
                .filter(|(peer, _)| *peer == id)
                .map(|&(_, lag)| lag)
                .max();
            json!({
                "nodeId": id,
                "self": id == node_id,
                "leaderOf": leads,
                "lagEntries": lag,
                "status": if id == node_id || !leads.is_empty() || lag.is_some_and(|l| l <= VALIDATOR_ACTIVE_LAG_MAX) {
                    "ACTIVE"
                } else if lag.is_some() {
                    "LAGGING"
                } else {
                    "UNKNOWN"
                },
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "nodeId": node_id, "validatorCount": list.len(), "validators": list }),
    ))
}

/// `GET /metrics`: Prometheus text format. Every figure is measured: lock-free counters of the
/// HTTP cores and of the shards summed at scrape time, shard consensus state asked of every
/// shard now, process figures read from `/proc`. The family names are listed in
/// `docs/monitoring.md`; dashboards and alert rules in `deploy/` use only these.
async fn metrics<B: Backend>(ctx: &Ctx<B>) -> Answer {
    let status = ctx.backend.status().await?;
    let body = render_metrics(ctx, &status);
    let mut response = bytes_response(StatusCode::OK, "text/plain", body.into_bytes());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(super::prometheus::CONTENT_TYPE),
    );
    Ok(response)
}

fn render_metrics<B: Backend>(ctx: &Ctx<B>, status: &[ShardStatus]) -> String {
    let s = ctx.settings.metrics.snapshot();
    let h: Histograms = ctx.settings.metrics.histograms();
    let counters = ctx.backend.shard_counters();
    let mut e = Exposition::new();

    // --- Transfers
    e.family(
        "aurigraph_transactions_total",
        "counter",
        "Transfers answered after consensus (wait=true), by result code (OK, INSUFFICIENT_FUNDS, ...).",
    );
    for (code, n) in &h.results {
        e.sample(
            "aurigraph_transactions_total",
            &[("result", code.as_str())],
            *n,
        );
    }
    e.single(
        "aurigraph_transactions_detached_total",
        "counter",
        "Transfers admitted with wait=false (their result is not seen by the API; see /api/v11/transactions/{txHash}).",
        s.detached,
    );
    e.family(
        "aurigraph_transaction_duration_seconds",
        "histogram",
        "Admission-to-reply latency of transfers answered after consensus.",
    );
    e.histogram(
        "aurigraph_transaction_duration_seconds",
        &[],
        &h.latency_us,
        1e6,
    );
    // Windowed quantiles as a gauge (OpenMetrics summaries are not encoded by
    // prometheus-client; the since-start sum and count are the histogram's).
    e.family(
        "aurigraph_transaction_latency_seconds",
        "gauge",
        "Admission-to-reply latency quantiles over the recent window (the figures of /api/v11/stats).",
    );
    for (q, ms) in [
        ("0.5", s.p50_ms),
        ("0.95", s.p95_ms),
        ("0.99", s.p99_ms),
        ("0.999", s.p999_ms),
    ] {
        e.sample(
            "aurigraph_transaction_latency_seconds",
            &[("quantile", q)],
            ms / 1000.0,
        );
    }
    e.single(
        "aurigraph_transaction_latency_max_seconds",
        "gauge",
        "Longest admission-to-reply latency over the recent window.",
        s.max_ms / 1000.0,
    );
    e.single(
        "aurigraph_tps",
        "gauge",
        "Confirmed transfers per second over the last second.",
        s.tps,
    );
    e.single(
        "aurigraph_peak_tps",
        "gauge",
        "Highest one-second confirmed-transfer rate since start.",
        s.peak_tps,
    );
    e.single(
        "aurigraph_batches_total",
        "counter",
        "Submissions (POST /transactions or /transactions/batch) that carried transfers into consensus.",
        h.batch_size.count(),
    );
    e.family(
        "aurigraph_batch_size",
        "histogram",
        "Transfers per submission.",
    );
    e.histogram("aurigraph_batch_size", &[], &h.batch_size, 1.0);
    let shard_labels: Vec<String> = status.iter().map(|st| st.shard.to_string()).collect();
    let per_shard = |e: &mut Exposition,
                     name: &str,
                     kind: &str,
                     help: &str,
                     f: &dyn Fn(&ShardStatus) -> u64| {
        e.family(name, kind, help);
        for (st, label) in status.iter().zip(&shard_labels) {
            e.sample(name, &[("shard", label)], f(st));
        }
    };
    per_shard(
        &mut e,
        "aurigraph_transaction_queue_size",
        "gauge",
        "Transfers admitted by the shard and not yet decided (bounded by pending_records_max).",
        &|st| st.pending_records as u64,
    );
    per_shard(
        &mut e,
        "aurigraph_shard_queued_commands",
        "gauge",
        "Commands (submissions, queries, receipts) waiting in the shard's channels.",
        &|st| st.queued_commands as u64,
    );
    e.family(
        "aurigraph_signature_verifications_total",
        "counter",
        "Ed25519 signatures verified at admission, by outcome (valid, invalid).",
    );
    let valid: u64 = counters
        .iter()
        .map(|c| c.signatures_valid.load(Ordering::Relaxed))
        .sum();
    let invalid: u64 = counters
        .iter()
        .map(|c| c.signatures_invalid.load(Ordering::Relaxed))
        .sum();
    e.sample(
        "aurigraph_signature_verifications_total",
        &[("outcome", "valid")],
        valid,
    );
    e.sample(
        "aurigraph_signature_verifications_total",
        &[("outcome", "invalid")],
        invalid,
    );

    // --- Consensus, per shard (each shard is one raft group)
    per_shard(
        &mut e,
        "aurigraph_consensus_term",
        "gauge",
        "Raft term of the shard.",
        &|st| st.term,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_commit_index",
        "gauge",
        "Raft commit index of the shard.",
        &|st| st.commit_index,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_applied_index",
        "gauge",
        "Last log index applied to the shard's ledger.",
        &|st| st.applied_index,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_last_index",
        "gauge",
        "Last index in the shard's raft log on this node.",
        &|st| st.last_index,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_is_leader",
        "gauge",
        "1 when this node leads the shard.",
        &|st| (st.role == "LEADER") as u64,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_has_leader",
        "gauge",
        "1 when the shard has a leader known to this node.",
        &|st| st.leader_id.is_some() as u64,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_leader_changes_total",
        "counter",
        "Leader changes seen by the shard on this node since start.",
        &|st| st.leader_changes,
    );
    per_shard(
        &mut e,
        "aurigraph_consensus_voters",
        "gauge",
        "Voters of the shard's raft group.",
        &|st| st.voters as u64,
    );
    e.single(
        "aurigraph_consensus_cluster_size",
        "gauge",
        "Validators in the cluster (the most voters of any shard's raft group).",
        status.iter().map(|st| st.voters).max().unwrap_or(0),
    );
    e.family(
        "aurigraph_consensus_peer_lag_entries",
        "gauge",
        "On the shard's leader: entries each voter (this node included) is behind the leader's last index.",
    );
    for (st, label) in status.iter().zip(&shard_labels) {
        for (peer, lag) in &st.peer_lag {
            let peer = peer.to_string();
            e.sample(
                "aurigraph_consensus_peer_lag_entries",
                &[("shard", label), ("peer", &peer)],
                *lag,
            );
        }
    }
    per_shard(
        &mut e,
        "aurigraph_shard_accounts",
        "gauge",
        "Accounts held by the shard.",
        &|st| st.accounts as u64,
    );

    // --- Storage
    let mut fsync = HistogramCounts::default();
    for c in counters.iter() {
        fsync.add(&c.wal_fsync_ns.read());
    }
    e.family(
        "aurigraph_wal_fsync_duration_seconds",
        "histogram",
        "fdatasync time of each WAL group commit, all shards.",
    );
    e.histogram("aurigraph_wal_fsync_duration_seconds", &[], &fsync, 1e9);
    e.single(
        "aurigraph_wal_bytes_written_total",
        "counter",
        "Bytes written to the WAL segments (padding included), all shards.",
        counters
            .iter()
            .map(|c| c.wal_bytes_written.load(Ordering::Relaxed))
            .sum::<u64>(),
    );
    e.single(
        "aurigraph_snapshots_total",
        "counter",
        "Shard state snapshots written since start, all shards.",
        counters
            .iter()
            .map(|c| c.snapshots.load(Ordering::Relaxed))
            .sum::<u64>(),
    );
    if let Some((capacity, available)) = ctx
        .settings
        .data_dir
        .as_deref()
        .and_then(super::stats::disk_space)
    {
        e.single(
            "aurigraph_data_dir_capacity_bytes",
            "gauge",
            "Size of the file system holding the data directory.",
            capacity,
        );
        e.single(
            "aurigraph_data_dir_available_bytes",
            "gauge",
            "Bytes available to the node on the file system holding the data directory.",
            available,
        );
    }

    // --- HTTP API
    e.family(
        "aurigraph_api_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status.",
    );
    for r in &h.requests {
        let status = r
            .status
            .map_or_else(|| "other".to_string(), |c| c.to_string());
        e.sample(
            "aurigraph_api_requests_total",
            &[
                ("method", r.method),
                ("route", r.route),
                ("status", &status),
            ],
            r.count,
        );
    }
    e.family(
        "aurigraph_api_request_duration_seconds",
        "histogram",
        "HTTP request handling time, by route template.",
    );
    for (route, hist) in &h.request_us {
        e.histogram(
            "aurigraph_api_request_duration_seconds",
            &[("route", route)],
            hist,
            1e6,
        );
    }
    e.single(
        "aurigraph_http_requests_in_flight",
        "gauge",
        "HTTP requests being handled.",
        ctx.settings.in_flight.load(Ordering::Relaxed),
    );

    // --- Randomness beacon
    e.family(
        "aurigraph_beacon_pulses_verified_total",
        "counter",
        "Distinct beacon pulses fully verified (signature, pinned anchor, chaining and \
         precommitment), by configured source name.",
    );
    let beacon = beacon_state(&ctx.settings).sources().to_vec();
    for s in &beacon {
        e.sample(
            "aurigraph_beacon_pulses_verified_total",
            &[("source", &s.name)],
            s.pulses_verified,
        );
    }
    e.family(
        "aurigraph_beacon_source_up",
        "gauge",
        "1 while a configured beacon source holds verified randomness and reports no failure.",
    );
    for s in &beacon {
        let up = s.latest.is_some() && s.last_error.is_none();
        e.sample("aurigraph_beacon_source_up", &[("source", &s.name)], up);
    }
    e.single(
        "aurigraph_beacon_fallback_total",
        "counter",
        "Randomness answers (random-bytes, transaction-nonce, crypto-seed) served from the OS \
         CSPRNG alone because no verified pulse was held (LOCAL_FALLBACK).",
        ctx.settings.metrics.beacon_fallbacks(),
    );

    // --- Validator links (per core: every shard of a core shares its transport)
    let mut cores_seen = std::collections::BTreeSet::new();
    let per_core: Vec<&ShardStatus> = status
        .iter()
        .filter(|s| s.transport.is_some() && cores_seen.insert(s.core))
        .collect();
    e.family(
        "aurigraph_peer_link_up",
        "gauge",
        "1 while this core's outbound link to the peer validator is up (handshake done).",
    );
    for s in &per_core {
        let core = s.core.to_string();
        for &(peer, up) in &s.peer_links {
            e.sample(
                "aurigraph_peer_link_up",
                &[("core", &core), ("peer", &peer.to_string())],
                up,
            );
        }
    }
    type PeerCounter = fn(&aurigraph_net::transport::TransportCounters) -> u64;
    let peer_counters: [(&str, &str, PeerCounter); 7] = [
        (
            "aurigraph_peer_messages_sent_total",
            "Messages sent to other validators.",
            |c| c.messages_sent,
        ),
        (
            "aurigraph_peer_messages_received_total",
            "Messages received from other validators.",
            |c| c.messages_received,
        ),
        (
            "aurigraph_peer_bytes_sent_total",
            "Frame bytes written to other validators.",
            |c| c.bytes_sent,
        ),
        (
            "aurigraph_peer_bytes_received_total",
            "Frame bytes read from other validators.",
            |c| c.bytes_received,
        ),
        (
            "aurigraph_peer_decode_errors_total",
            "Inbound links closed for a malformed frame.",
            |c| c.decode_errors,
        ),
        (
            "aurigraph_peer_reconnects_total",
            "Outbound links re-established after a break.",
            |c| c.reconnects,
        ),
        (
            "aurigraph_peer_queue_full_total",
            "Sends refused because a peer's queue was full (back-pressure).",
            |c| c.queue_full_drops,
        ),
    ];
    for (name, help, value) in peer_counters {
        e.family(name, "counter", help);
        for s in &per_core {
            if let Some(c) = &s.transport {
                e.sample(name, &[("core", &s.core.to_string())], value(c));
            }
        }
    }

    // --- Per core: CPU time of each core's executor thread (shards, verification, HTTP)
    e.family(
        "aurigraph_core_cpu_seconds_total",
        "counter",
        "User and system CPU time of each core's executor thread (its shards, signature verification and HTTP server), seconds.",
    );
    for (core, seconds) in ctx.settings.metrics.core_cpu_seconds() {
        e.sample(
            "aurigraph_core_cpu_seconds_total",
            &[("core", &core.to_string())],
            seconds,
        );
    }

    // --- Process and build
    let p = super::stats::read_process();
    e.single(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, seconds.",
        p.cpu_seconds,
    );
    e.single(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size.",
        p.resident_bytes,
    );
    e.single(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size.",
        p.virtual_bytes,
    );
    e.single(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, seconds.",
        p.start_time_seconds,
    );
    e.single(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        p.open_fds,
    );
    e.single(
        "process_max_fds",
        "gauge",
        "Limit on open file descriptors.",
        p.max_fds,
    );
    e.single(
        "process_threads",
        "gauge",
        "OS threads of the process.",
        p.threads,
    );
    e.single(
        "aurigraph_cpu_usage_ratio",
        "gauge",
        "Process CPU use over the last second as a fraction of the CPUs available to it.",
        s.cpu_percent / 100.0,
    );
    e.single(
        "aurigraph_cpus_available",
        "gauge",
        "CPUs this process may run on.",
        super::stats::cpus_available(),
    );
    e.single(
        "aurigraph_uptime_seconds",
        "gauge",
        "Seconds since the node's figures started.",
        s.uptime_s,
    );
    e.family(
        "aurigraph_build_info",
        "gauge",
        "Always 1; the labels tell the build.",
    );
    e.sample(
        "aurigraph_build_info",
        &[
            ("version", ctx.settings.version),
            (
                "profile",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            ),
        ],
        1u64,
    );
    let node_id = ctx.settings.node_id.to_string();
    let chain_id = ctx.backend.chain_id().to_string();
    e.family(
        "aurigraph_node_info",
        "gauge",
        "Always 1; the labels tell the node.",
    );
    e.sample(
        "aurigraph_node_info",
        &[("node_id", &node_id), ("chain_id", &chain_id)],
        1u64,
    );
    e.single(
        "aurigraph_shards",
        "gauge",
        "Shards of the ledger.",
        ctx.backend.shard_count() as u64,
    );
    e.single(
        "aurigraph_cores",
        "gauge",
        "Executors (one per core) of the node.",
        ctx.backend.cores(),
    );
    e.finish()
}

// ---------------------------------------------------------------------------------------------
// Randomness (`/api/v11/quantum/randomness/*`)

/// `random-bytes?size=`: allowed sizes and the default.
const RANDOM_BYTES_SIZE: (usize, usize, usize) = (1, 1024, 32);
/// `crypto-seed?length=`: allowed lengths and the default.
const CRYPTO_SEED_LENGTH: (usize, usize, usize) = (16, 256, 32);
/// Bytes of a `transaction-nonce`.
const NONCE_BYTES: usize = 32;

/// `?name=N` as an integer in `min..=max` (`default` when absent); 400 otherwise.
fn int_param<T>(
    request: &Request<T>,
    name: &str,
    (min, max, default): (usize, usize, usize),
) -> Result<usize, ApiError> {
    let mut value = None;
    for pair in request.uri().query().unwrap_or("").split('&') {
        let (key, v) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            value = Some(v);
        }
    }
    let Some(v) = value else {
        return Ok(default);
    };
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "query parameter {name}={v:?}: expected an integer in {min}..={max}"
        ))),
    }
}

/// The beacon state, readable even if a writer panicked (it holds plain values).
fn beacon_state(settings: &HttpSettings) -> std::sync::RwLockReadGuard<'_, BeaconState> {
    settings
        .beacon
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
fn beacon_check(settings: &HttpSettings) -> Value {
    let (up, data) = beacon_status(&beacon_state(settings));
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
    let drawn = beacon_state(settings)
        .draw(purpose, len)
        .map_err(|e| ApiError::internal(format!("could not derive random bytes: {e}")))?;
    if !drawn.verified() {
        settings.metrics.count_beacon_fallback();
    }
    Ok(drawn)
}

fn randomness<B, T>(ctx: &Ctx<B>, which: Randomness, request: &Request<T>) -> Answer {
    let settings = &ctx.settings;
    let body = match which {
        Randomness::RandomBytes => {
            let size = int_param(request, "size", RANDOM_BYTES_SIZE)?;
            let drawn = draw(settings, purpose::RANDOM_BYTES, size)?;
            drawn_json(
                &drawn,
                json!({ "bytes": BASE64.encode(&drawn.bytes), "size": size }),
            )
        }
        Randomness::TransactionNonce => {
            let drawn = draw(settings, purpose::TRANSACTION_NONCE, NONCE_BYTES)?;
            drawn_json(
                &drawn,
                json!({ "nonce": hex::encode(&drawn.bytes), "size": NONCE_BYTES }),
            )
        }
        Randomness::CryptoSeed => {
            let length = int_param(request, "length", CRYPTO_SEED_LENGTH)?;
            let drawn = draw(settings, purpose::CRYPTO_SEED, length)?;
            drawn_json(
                &drawn,
                json!({ "bytes": BASE64.encode(&drawn.bytes), "size": length, "length": length }),
            )
        }
        Randomness::Health => {
            let (up, data) = beacon_status(&beacon_state(settings));
            let body = json!({ "status": if up { "UP" } else { "DOWN" }, "data": data });
            let code = if up {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return Ok(json_response(code, &body));
        }
        Randomness::Info => {
            let state = beacon_state(settings);
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
            json!({
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
            })
        }
        Randomness::PulseLatest => {
            let state = beacon_state(settings);
            let Some(status) = state.latest_source() else {
                let why = if state.is_configured() {
                    "no verified beacon pulse is held (see /api/v11/quantum/randomness/health)"
                } else {
                    "no beacon source is configured, so there is no verified pulse; \
                     random-bytes, transaction-nonce and crypto-seed serve LOCAL_FALLBACK"
                };
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "NO_VERIFIED_PULSE",
                    why,
                ));
            };
            let latest = status
                .latest
                .as_ref()
                .expect("latest_source has randomness");
            // The signed documents, as served, for re-verification by anyone.
            let document = |bytes: &[u8]| {
                serde_json::from_slice::<Value>(bytes)
                    .unwrap_or_else(|_| json!(BASE64.encode(bytes)))
            };
            let evidence = status.evidence.as_ref();
            let command = match latest.provenance.source {
                Source::Nist => "aurigraph beacon verify-nist --pulse pulse.json --prev previousPulse.json --cert <the certificate named by pulse.certificateId>".to_string(),
                _ => format!(
                    "aurigraph beacon verify-curby --chain <chain record {}> --pulse pulse.json --prev previousPulse.json",
                    latest.provenance.chain
                ),
            };
            json!({
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
            })
        }
    };
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aurigraph_engine::batch::encode_batch;
    use aurigraph_engine::record::Transfer;
    use aurigraph_engine::replica::SubmitError;
    use aurigraph_engine::ResultCode;
    use futures::executor::block_on;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A ledger double: records what was submitted, answers what the test set up.
    #[derive(Clone, Default)]
    pub(crate) struct Fake {
        submitted: Rc<RefCell<Vec<Record>>>,
        fail: Rc<RefCell<Option<SubmitFailure>>>,
        no_leader: bool,
        stopped: bool,
    }

    impl Fake {
        fn outcome(r: &Record) -> Outcome {
            let result = if r.amount() == 0 {
                ResultCode::ZeroAmount
            } else {
                ResultCode::Ok
            };
            Outcome {
                tx_hash: r.tx_hash(),
                result,
                shard: shard_of(&r.from(), 2),
                block: 5,
            }
        }
        fn status_of(&self, shard: u32) -> ShardStatus {
            ShardStatus {
                shard,
                core: shard as usize,
                role: if self.no_leader && shard == 1 {
                    "CANDIDATE"
                } else {
                    "LEADER"
                },
                term: 3 + shard as u64,
                leader_id: if self.no_leader && shard == 1 {
                    None
                } else {
                    Some(1)
                },
                commit_index: 10,
                applied_index: 9,
                last_index: 10,
                state_hash: 0xabc,
                accounts_hash: 0,
                accounts: 4,
                leader_changes: 1,
                pending_records: 0,
                queued_commands: 0,
                voters: 1,
                transport: None,
                peer_links: Vec::new(),
                voter_ids: vec![1],
                learner_ids: Vec::new(),
                peer_matched: if self.no_leader && shard == 1 {
                    Vec::new()
                } else {
                    vec![(1, 10)]
                },
                peer_lag: if self.no_leader && shard == 1 {
                    Vec::new()
                } else {
                    vec![(1, 0)]
                },
            }
        }
    }

    fn stopped() -> Result<(), EngineError> {
        Err(EngineError::Stopped)
    }

    impl Backend for Fake {
        fn chain_id(&self) -> u32 {
            7
        }
        fn shard_count(&self) -> u32 {
            2
        }
        fn cores(&self) -> usize {
            2
        }
        fn assets(&self) -> Vec<u32> {
            vec![0]
        }
        async fn submit(&self, records: Vec<Record>) -> Result<Vec<Outcome>, SubmitFailure> {
            if let Some(f) = self.fail.borrow().clone() {
                return Err(f);
            }
            self.submitted.borrow_mut().extend_from_slice(&records);
            Ok(records.iter().map(Fake::outcome).collect())
        }
        async fn submit_detached(
            &self,
            records: Vec<Record>,
        ) -> Result<Vec<TxHash>, SubmitFailure> {
            if let Some(f) = self.fail.borrow().clone() {
                return Err(f);
            }
            self.submitted.borrow_mut().extend_from_slice(&records);
            Ok(records.iter().map(Record::tx_hash).collect())
        }
        async fn transaction(&self, hash: TxHash) -> Result<Option<TxStatus>, EngineError> {
            Ok(match hash.0[0] {
                1 => Some(TxStatus::Pending { shard: 1 }),
                2 => Some(TxStatus::Decided(Outcome {
                    tx_hash: hash,
                    result: ResultCode::NonceReplayed,
                    shard: 0,
                    block: 4,
                })),
                _ => None,
            })
        }
        async fn account(&self, address: Address) -> Result<Option<Account>, EngineError> {
            Ok((address.0[0] == 1).then(|| Account {
                nonce_high: 12,
                nonce_window: 1,
                native: 1000,
                others: Some(Box::new(vec![(3, 5), (4, 0)])),
            }))
        }
        async fn status(&self) -> Result<Vec<ShardStatus>, EngineError> {
            if self.stopped {
                stopped()?;
            }
            Ok((0..2).map(|s| self.status_of(s)).collect())
        }
        async fn block(&self, shard: u32, height: u64) -> Result<Option<BlockHeader>, EngineError> {
            Ok((height == 9).then_some(BlockHeader {
                shard,
                height,
                hash: [1; 32],
                prev_hash: [2; 32],
                tx_count: 3,
                term: 2,
                state_hash: 5,
                timestamp_ms: 1_714_564_800_000,
            }))
        }
        async fn latest_blocks(&self) -> Result<Vec<BlockHeader>, EngineError> {
            Ok(vec![
                self.block(0, 9).await?.unwrap(),
                self.block(1, 9).await?.unwrap(),
            ])
        }
        async fn change_membership(
            &self,
            changes: Vec<(ConfChangeType, u64)>,
            _peer_addr: Vec<u8>,
        ) -> Result<MembershipResults, EngineError> {
            // Shard 0 is led here, shard 1 elsewhere.
            assert_eq!(changes.len(), 1);
            Ok(vec![
                (0, Ok(42)),
                (
                    1,
                    Err(SubmitFailure::Rejected(SubmitError::NotLeader {
                        shard: 1,
                        leader: Some(2),
                    })),
                ),
            ])
        }
        fn shard_counters(&self) -> Arc<[ShardCounters]> {
            let counters: Arc<[ShardCounters]> = (0..2).map(|_| ShardCounters::default()).collect();
            counters[1].wal_fsync_ns.observe(700_000);
            counters[1]
                .signatures_invalid
                .fetch_add(2, Ordering::Relaxed);
            counters
        }
    }

    fn ctx(fake: Fake) -> Ctx<Fake> {
        let mut settings = HttpSettings::new("127.0.0.1:0".parse().unwrap());
        settings.version = "test";
        settings.batch_transfers_max = 3;
        settings.body_bytes_max = 4096;
        Ctx {
            core: 0,
            backend: fake,
            settings,
        }
    }

    fn request(
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        b.body(Full::new(body.into())).unwrap()
    }

    fn call(ctx: &Ctx<Fake>, req: Request<Full<Bytes>>) -> (StatusCode, hyper::HeaderMap, Bytes) {
        let response = block_on(handle(ctx, req));
        let (parts, body) = response.into_parts();
        let bytes = block_on(body.collect()).unwrap().to_bytes();
        (parts.status, parts.headers, bytes)
    }

    fn call_json(ctx: &Ctx<Fake>, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
        let (status, headers, bytes) = call(ctx, req);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn get(ctx: &Ctx<Fake>, uri: &str) -> (StatusCode, Value) {
        call_json(ctx, request("GET", uri, None, Bytes::new()))
    }

    fn error_code(v: &Value) -> &str {
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {v}"))
    }

    pub(crate) fn key(n: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32])
    }

    pub(crate) fn signed(n: u8, amount: u64) -> Record {
        Transfer {
            chain_id: 7,
            from: aurigraph_engine::record::address_of(&key(n)),
            to: Address([9; 32]),
            asset: 0,
            amount,
            nonce: n as u64,
        }
        .sign(&key(n))
    }

    pub(crate) fn transfer_json(r: &Record) -> Value {
        json!({
            "fromAddress": r.from().to_hex(),
            "toAddress": r.to().to_hex(),
            "amount": r.amount().to_string(),
            "nonce": r.nonce(),
            "signature": hex::encode(r.signature()),
            "transactionType": "TRANSFER",
        })
    }

    #[test]
    fn routes_and_methods() {
        let c = ctx(Fake::default());
        let (status, v) = get(&c, "/api/v11/nope");
        assert_eq!(
            (status, error_code(&v)),
            (StatusCode::NOT_FOUND, "NOT_FOUND")
        );
        let (status, v) = get(&c, "/");
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
        assert_eq!(
            route("/api/v11/blocks/1/2"),
            Some((Route::Block("1", "2"), Method::GET))
        );
        assert_eq!(
            route("/api/v11/health"),
            Some((Route::Health(Health::Ready), Method::GET))
        );
        assert_eq!(route("/api/v11/info/"), None);
        assert_eq!(c.settings.in_flight.load(Ordering::SeqCst), 0);
    }

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
        assert_eq!(c.settings.in_flight.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn body_limit_is_enforced_while_reading() {
        // No Content-Length (as with chunked bodies): Limited stops the read.
        let c = ctx(Fake::default());
        let body = http_body_util::StreamBody::new(futures::stream::iter((0..10).map(|_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![
                b' ';
                1000
            ])))
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
        let decoded = super::super::types::decode_compact_results(&body).unwrap();
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

    fn b64(v: &Value) -> Vec<u8> {
        BASE64
            .decode(v.as_str().expect("a string"))
            .expect("base64")
    }

    fn assert_fallback(v: &Value) {
        assert_eq!(v["source"], "LOCAL_FALLBACK", "{v}");
        assert_eq!(v["verified"], false, "{v}");
        assert!(v["provenance"].is_null(), "{v}");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
    }

    #[test]
    fn randomness_random_bytes_fallback() {
        let c = ctx(Fake::default());
        let (status, v) = get(&c, "/api/v11/quantum/randomness/random-bytes");
        assert_eq!(status, StatusCode::OK);
        assert_fallback(&v);
        assert_eq!((v["size"].as_u64(), b64(&v["bytes"]).len()), (Some(32), 32));
        for size in [1usize, 17, 1024] {
            let (status, v) = get(
                &c,
                &format!("/api/v11/quantum/randomness/random-bytes?size={size}"),
            );
            assert_eq!(status, StatusCode::OK);
            assert_fallback(&v);
            assert_eq!(v["size"].as_u64(), Some(size as u64));
            assert_eq!(b64(&v["bytes"]).len(), size);
        }
        let (_, a) = get(&c, "/api/v11/quantum/randomness/random-bytes?size=64");
        let (_, b) = get(&c, "/api/v11/quantum/randomness/random-bytes?size=64");
        assert_ne!(a["bytes"], b["bytes"]);
    }

    #[test]
    fn randomness_bad_parameters() {
        let c = ctx(Fake::default());
        for uri in [
            "/api/v11/quantum/randomness/random-bytes?size=0",
            "/api/v11/quantum/randomness/random-bytes?size=1025",
            "/api/v11/quantum/randomness/random-bytes?size=-1",
            "/api/v11/quantum/randomness/random-bytes?size=abc",
            "/api/v11/quantum/randomness/random-bytes?size=",
            "/api/v11/quantum/randomness/random-bytes?size=1.5",
            "/api/v11/quantum/randomness/random-bytes?size=99999999999999999999999",
            "/api/v11/quantum/randomness/crypto-seed?length=15",
            "/api/v11/quantum/randomness/crypto-seed?length=257",
            "/api/v11/quantum/randomness/crypto-seed?length=0",
            "/api/v11/quantum/randomness/crypto-seed?length=x",
            "/api/v11/quantum/randomness/crypto-seed?length",
        ] {
            let (status, v) = get(&c, uri);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(error_code(&v), "INVALID_REQUEST", "{uri}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains(".."),
                "{uri}: {v}"
            );
        }
        let (status, v) = call_json(
            &c,
            request(
                "POST",
                "/api/v11/quantum/randomness/random-bytes",
                None,
                Bytes::new(),
            ),
        );
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error_code(&v), "METHOD_NOT_ALLOWED");
        let (status, _) = get(&c, "/api/v11/quantum/randomness/pulse/nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn randomness_nonce_and_seed_fallback() {
        let c = ctx(Fake::default());
        let (status, v) = get(&c, "/api/v11/quantum/randomness/transaction-nonce");
        assert_eq!(status, StatusCode::OK);
        assert_fallback(&v);
        let nonce = hex::decode(v["nonce"].as_str().unwrap()).unwrap();
        assert_eq!((nonce.len(), v["size"].as_u64()), (32, Some(32)));

        let (status, v) = get(&c, "/api/v11/quantum/randomness/crypto-seed");
        assert_eq!(status, StatusCode::OK);
        assert_fallback(&v);
        assert_eq!(b64(&v["bytes"]).len(), 32);
        for length in [16usize, 100, 256] {
            let (status, v) = get(
                &c,
                &format!("/api/v11/quantum/randomness/crypto-seed?length={length}"),
            );
            assert_eq!(status, StatusCode::OK);
            assert_fallback(&v);
            assert_eq!(b64(&v["bytes"]).len(), length);
            assert_eq!(v["length"].as_u64(), Some(length as u64));
        }
    }

    #[test]
    fn randomness_health_info_pulse_unconfigured() {
        let c = ctx(Fake::default());
        let (status, v) = get(&c, "/api/v11/quantum/randomness/health");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["status"], "UP");
        assert_eq!(v["data"]["configured"], false);
        assert_eq!(v["data"]["serving"], "LOCAL_FALLBACK");
        assert!(v["data"]["message"]
            .as_str()
            .unwrap()
            .contains("no beacon source configured"));

        let (status, v) = get(&c, "/api/v11/quantum/randomness/info");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["configured"], false);
        assert_eq!(v["sources"], json!([]));
        assert_eq!(v["fallback"], "LOCAL_FALLBACK");
        assert_eq!(v["construction"]["kdf"], "HKDF-SHA512");
        assert_eq!(v["construction"]["salt"], "aurigraph/beacon-derive/v1");
        assert_eq!(
            v["construction"]["info"]["crypto-seed"],
            "aurigraph/crypto-seed"
        );
        assert_eq!(v["limits"]["randomBytesSize"]["max"], 1024);

        let (status, v) = get(&c, "/api/v11/quantum/randomness/pulse/latest");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_code(&v), "NO_VERIFIED_PULSE");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no beacon source is configured"));

        let (status, v) = get(&c, "/api/v11/health");
        assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
        assert_eq!(v["checks"][1]["name"], "beacon");
        assert_eq!(v["checks"][1]["status"], "UP");
        assert_eq!(v["checks"][1]["data"]["configured"], false);
    }

    fn verified(
        source: aurigraph_net::beacon::Source,
        index: u64,
    ) -> aurigraph_net::beacon::VerifiedRandomness {
        aurigraph_net::beacon::VerifiedRandomness {
            value: [7; 64],
            provenance: aurigraph_net::beacon::Provenance {
                source,
                chain: "bafyrchain".into(),
                index,
                id: "bafyrpulse".into(),
                timestamp: "2024-05-01T12:00:00Z".into(),
            },
        }
    }

    #[test]
    fn randomness_with_a_verified_pulse_and_a_failing_source() {
        use aurigraph_net::beacon::Source;
        let c = ctx(Fake::default());
        *c.settings.beacon.write().unwrap() =
            BeaconState::with_sources([("curby", Source::CurbyRng)]).unwrap();
        // Configured, nothing verified yet: fallback, beacon DOWN, node UP.
        let (_, v) = get(&c, "/api/v11/quantum/randomness/random-bytes?size=8");
        assert_fallback(&v);
        let (status, v) = get(&c, "/api/v11/quantum/randomness/health");
        assert_eq!(
            (status, v["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("DOWN"))
        );
        let (status, v) = get(&c, "/api/v11/health");
        assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
        assert_eq!(v["checks"][1]["status"], "DOWN");
        assert_eq!(
            v["checks"][1]["data"]["reasons"][0],
            "curby: no verified pulse yet"
        );
        let (status, v) = get(&c, "/api/v11/quantum/randomness/pulse/latest");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_code(&v), "NO_VERIFIED_PULSE");

        c.settings
            .beacon
            .write()
            .unwrap()
            .record_verified("curby", verified(Source::CurbyRng, 42))
            .unwrap();
        for uri in [
            "/api/v11/quantum/randomness/random-bytes?size=8",
            "/api/v11/quantum/randomness/transaction-nonce",
            "/api/v11/quantum/randomness/crypto-seed?length=16",
        ] {
            let (status, v) = get(&c, uri);
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(
                (v["source"].as_str(), v["verified"].as_bool()),
                (Some("CURBY_RNG"), Some(true))
            );
            assert_eq!(v["provenance"]["index"], 42);
            assert_eq!(v["provenance"]["id"], "bafyrpulse");
            // Derived, never the public value itself.
            assert_ne!(v["bytes"], json!(BASE64.encode([7u8; 8])));
        }
        let (status, v) = get(&c, "/api/v11/quantum/randomness/pulse/latest");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["value"], hex::encode([7u8; 64]));
        assert_eq!(
            (v["verified"].as_bool(), v["public"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(v["provenance"]["chain"], "bafyrchain");
        let (_, v) = get(&c, "/api/v11/quantum/randomness/info");
        assert_eq!(v["sources"][0]["name"], "curby");
        assert_eq!(v["sources"][0]["verified"], true);
        let (status, v) = get(&c, "/api/v11/quantum/randomness/health");
        assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
        // One fallback answer so far (the first random-bytes), one verified pulse.
        let metrics = |c: &Ctx<Fake>| {
            let (_, _, body) = call(c, request("GET", "/metrics", None, Bytes::new()));
            String::from_utf8(body.to_vec()).unwrap()
        };
        let text = metrics(&c);
        for line in [
            "aurigraph_beacon_fallback_total 1\n",
            "aurigraph_beacon_pulses_verified_total{source=\"curby\"} 1\n",
            "aurigraph_beacon_source_up{source=\"curby\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }

        c.settings
            .beacon
            .write()
            .unwrap()
            .record_failure("curby", "signature does not verify")
            .unwrap();
        let (_, v) = get(&c, "/api/v11/quantum/randomness/crypto-seed");
        assert_fallback(&v);
        let text = metrics(&c);
        for line in [
            "aurigraph_beacon_fallback_total 2\n",
            "aurigraph_beacon_source_up{source=\"curby\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        let (status, v) = get(&c, "/api/v11/health");
        assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("UP")));
        assert_eq!(
            v["checks"][1]["data"]["reasons"][0],
            "curby: signature does not verify"
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
            "aurigraph_api_requests_total{method=\"POST\",route=\"/api/v11/transactions\",status=\"200\"} 1\n",
            "aurigraph_api_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1\n",
            "aurigraph_api_request_duration_seconds_count{route=\"/api/v11/transactions\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert_eq!(route_label("/nope"), API_ROUTES.len() - 1);
        assert_eq!(
            API_ROUTES[route_label("/q/health/ready")],
            "/q/health/ready"
        );
        assert_eq!(
            API_ROUTES[route_label("/api/v11/health")],
            "/api/v11/health"
        );
        assert_eq!(
            API_ROUTES[route_label("/api/v11/blocks/1/2")],
            "/api/v11/blocks/{shard}/{height}"
        );
        assert_eq!(
            API_ROUTES[route_label("/api/v11/quantum/randomness/pulse/latest")],
            "/api/v11/quantum/randomness/pulse/latest"
        );
        assert_eq!(
            API_ROUTES[route_label("/api/v11/quantum/randomness/crypto-seed")],
            "/api/v11/quantum/randomness/crypto-seed"
        );
    }

    #[test]
    fn openapi_lists_every_endpoint() {
        let c = ctx(Fake::default());
        let (status, v) = get(&c, "/api/v11/openapi.json");
        assert_eq!(status, StatusCode::OK);
        assert!(v["openapi"].as_str().unwrap().starts_with("3.0"));
        let paths = v["paths"].as_object().unwrap();
        // Every routed path (the metrics' route labels list them all) is described.
        for &p in API_ROUTES.iter().filter(|&&r| r != "unmatched") {
            assert!(paths.contains_key(p), "{p} missing");
            // Every method of every path is routed with that method.
            for method in paths[p].as_object().unwrap().keys() {
                let concrete = p
                    .replace("{txHash}", &"00".repeat(32))
                    .replace("{address}", &"00".repeat(32))
                    .replace("{shard}", "0")
                    .replace("{height}", "1");
                let (_, m) = route(&concrete).unwrap_or_else(|| panic!("{p} not routed"));
                assert_eq!(m.as_str().to_lowercase(), *method, "{p}");
            }
        }
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
}

//! The gRPC API (package `aurigraph.v11`, `proto/aurigraph/v11/*.proto`, documented in
//! `docs/api.md`): served by the same per-core hyper server as HTTP. A request whose
//! `content-type` is `application/grpc…` goes to [`handle`] instead of the HTTP route table,
//! on the HTTP port and on `--grpc-addr` alike, over HTTP/2 (plaintext with prior knowledge, or
//! TLS with ALPN `h2`: the listener's own TLS).
//!
//! tonic supplies the codec, the framing and the status trailers (`tonic::server::Grpc`); this
//! module routes by path to our handlers instead of tonic's generated servers, whose traits
//! require `Send` futures: the engine's are not (each core submits through its own rings and
//! `Rc`s, shared-nothing). Streaming RPCs run their work in a local task of the core and hand
//! tonic a bounded channel (`Send`) to encode from.
//!
//! Every RPC passes the same admission as its HTTP endpoint: the same engine calls, bearer
//! tokens (`authorization` metadata), the request rate per token, message size limits
//! (`body_bytes_max`, 16 MiB by default), draining, and the figures of
//! `aurigraph_api_requests_total{protocol="grpc"}`.

mod budget;
pub mod events;
pub mod health;
mod node;
mod reflection;
pub mod status;
mod transactions;

#[cfg(test)]
pub(crate) mod tests;

use crate::http::routes::Backend;
use crate::http::routes::{BoxError, Ctx};
use bytes::Bytes;
use hyper::body::Body;
use hyper::Request;
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tonic::{Code, Status};

/// The per-core gRPC state (in the core's request context): its health service, and the
/// budget of the messages its calls are receiving.
#[derive(Default)]
pub struct CoreState {
    health: health::CoreHealthCell,
    messages: std::cell::OnceCell<std::sync::Arc<budget::MessageBudget>>,
}

/// A gRPC answer: tonic's body (messages, then the status in trailers).
pub type GrpcResponse = hyper::Response<tonic::body::Body>;

/// A request body tonic can decode from (hyper's `Incoming` in production).
pub trait GrpcBody:
    Body<Data = Bytes, Error: Into<BoxError> + Send> + Send + Unpin + 'static
{
}

impl<T> GrpcBody for T
where
    T: Body<Data = Bytes> + Send + Unpin + 'static,
    T::Error: Into<BoxError> + Send,
{
}

/// The RPCs served, by path (their index is their metrics slot; the last slot counts paths
/// that are none of these).
pub const RPCS: [&str; 16] = [
    transactions::SUBMIT_TRANSACTION,
    transactions::SUBMIT_BATCH,
    transactions::GET_TRANSACTION,
    events::STREAM_TRANSACTION_EVENTS,
    transactions::SUBMIT_STREAM,
    node::HEALTH,
    node::INFO,
    node::STATS,
    node::CONSENSUS_STATUS,
    node::VALIDATORS,
    node::GET_ACCOUNT,
    health::CHECK,
    health::WATCH,
    reflection::V1,
    reflection::V1ALPHA,
    "other",
];

/// Messages of a batch stream (`SubmitStream`) decided at once; more wait for an answer.
pub const SUBMIT_STREAM_IN_FLIGHT_MAX: usize = 16;
/// Encoded answers a stream holds for a client that does not read them; past this the node
/// stops reading its requests (HTTP/2 flow control holds the client back).
pub const STREAM_ANSWERS_BUFFERED_MAX: usize = 16;
/// The largest answer message the node encodes (a full batch's outcomes fit: 65,536 × ~60 B).
pub const ENCODED_MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Whether a request is gRPC: `content-type: application/grpc` (or `application/grpc+…`).
pub fn is_grpc<T>(request: &Request<T>) -> bool {
    request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v == "application/grpc"
                || v.starts_with("application/grpc+")
                || v.starts_with("application/grpc;")
        })
}

/// Answers one gRPC request on this core. Never panics on input: every failure is a gRPC
/// status.
pub async fn handle<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
) -> GrpcResponse {
    let _in_flight = crate::http::routes::InFlight::enter(&ctx.settings.in_flight, ctx.core);
    let started = Instant::now();
    let path = request.uri().path();
    let slot = RPCS[..RPCS.len() - 1]
        .iter()
        .position(|rpc| *rpc == path)
        .unwrap_or(RPCS.len() - 1);
    let decided = Cell::new(None);
    let budget = ctx.grpc.messages.get_or_init(|| {
        std::sync::Arc::new(budget::MessageBudget::new(
            ctx.settings.body_bytes_budget_per_core,
        ))
    });
    let message_bytes_max = match RPCS[slot] {
        reflection::V1 | reflection::V1ALPHA => reflection::MESSAGE_BYTES_MAX,
        _ => ctx.settings.body_bytes_max,
    };
    let request =
        request.map(|body| budget::BudgetedBody::new(body, budget.clone(), message_bytes_max));
    let response = if ctx.settings.draining.load(Ordering::SeqCst) {
        Status::unavailable("SHUTTING_DOWN: the node is shutting down; retry on another")
            .into_http()
    } else if request.method() != hyper::Method::POST {
        Status::unimplemented(format!("gRPC is POST only, not {}", request.method())).into_http()
    } else {
        dispatch(ctx, slot, request, &decided).await
    };
    let code = decided.get().unwrap_or_else(|| header_code(&response));
    ctx.settings
        .metrics
        .record_grpc(ctx.core, slot, code, started.elapsed());
    response
}

async fn dispatch<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    slot: usize,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    match RPCS[slot] {
        transactions::SUBMIT_TRANSACTION => transactions::submit(ctx, request, decided).await,
        transactions::SUBMIT_BATCH => transactions::submit_batch(ctx, request, decided).await,
        transactions::GET_TRANSACTION => transactions::get(ctx, request, decided).await,
        transactions::SUBMIT_STREAM => transactions::submit_stream(ctx, request).await,
        events::STREAM_TRANSACTION_EVENTS => events::stream(ctx, request).await,
        node::HEALTH => node::health(ctx, request, decided).await,
        node::INFO => node::info(ctx, request, decided).await,
        node::STATS => node::stats(ctx, request, decided).await,
        node::CONSENSUS_STATUS => node::consensus_status(ctx, request, decided).await,
        node::VALIDATORS => node::validators(ctx, request, decided).await,
        node::GET_ACCOUNT => node::get_account(ctx, request, decided).await,
        health::CHECK | health::WATCH => health::serve(ctx, request).await,
        reflection::V1 | reflection::V1ALPHA => reflection::serve(request).await,
        _ => Status::unimplemented(format!(
            "no RPC {} on this node: it serves aurigraph.v11 (TransactionService, \
             NodeService, ConsensusService, AccountService), grpc.health.v1.Health and server \
             reflection",
            request.uri().path()
        ))
        .into_http(),
    }
}

/// The status a response carries in its headers (a trailers-only answer: tonic's refusals
/// before a handler runs, e.g. a message it cannot decode), else OK (the stream opened).
fn header_code(response: &GrpcResponse) -> Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// tonic's server machinery for messages `Req` → `Resp`, with this node's size limits.
pub(crate) fn grpc<Req, Resp, B>(
    ctx: &Ctx<B>,
) -> tonic::server::Grpc<tonic_prost::ProstCodec<Resp, Req>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
        .max_decoding_message_size(ctx.settings.body_bytes_max)
        .max_encoding_message_size(ENCODED_MESSAGE_BYTES_MAX)
}

/// A unary RPC: tonic decodes the request message, `handler` answers it, tonic encodes the
/// answer (or the status). The handler's status code is noted in `decided` for the figures.
pub(crate) async fn unary<B, T, Req, Resp, F, Fut>(
    ctx: &Ctx<B>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
    handler: F,
) -> GrpcResponse
where
    T: GrpcBody,
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let service = Unary(Some(move |message: tonic::Request<Req>| async move {
        let answer = handler(message).await;
        decided.set(Some(
            answer.as_ref().map_or_else(Status::code, |_| Code::Ok),
        ));
        answer.map(tonic::Response::new)
    }));
    grpc::<Req, Resp, B>(ctx).unary(service, request).await
}

/// A one-call `UnaryService` of a closure (tonic calls a unary service once per request).
struct Unary<F>(Option<F>);

impl<Req, Resp, F, Fut> tonic::server::UnaryService<Req> for Unary<F>
where
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    type Response = Resp;
    type Future =
        futures::future::Either<Fut, std::future::Ready<Result<tonic::Response<Resp>, Status>>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        match self.0.take() {
            Some(handler) => futures::future::Either::Left(handler(request)),
            None => futures::future::Either::Right(std::future::ready(Err(Status::internal(
                "a unary handler was called twice",
            )))),
        }
    }
}

/// The bounded channel a streaming RPC's local task answers through (tonic encodes from its
/// receiving end, which is `Send`).
pub(crate) type Answers<Resp> = futures::channel::mpsc::Receiver<Result<Resp, Status>>;

//! `TransactionService`: `SubmitTransaction`, `SubmitBatch`, `GetTransaction` and the
//! bidirectional `SubmitStream`, through the same admission as `POST /api/v11/transactions`,
//! `POST /api/v11/transactions/batch` (and its gateway twin) and `GET
//! /api/v11/transactions/{txHash}`.

use super::status::{fixed, invalid, status_of};
use super::{grpc, unary, Answers, GrpcBody, GrpcResponse};
use super::{STREAM_ANSWERS_BUFFERED_MAX, SUBMIT_STREAM_IN_FLIGHT_MAX};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::routes::auth::require_role;
use crate::http::routes::transactions::{
    decode_binary_batch, gateway_named, pending_one, submit_records, Submitted,
};
use crate::http::routes::Backend;
use crate::http::routes::{archive, Ctx};
use crate::http::types::encode_compact_results;
use aurigraph_engine::record::{Address, Record, Transfer, TxHash};
use aurigraph_engine::replica::{Outcome, TxStatus};
use aurigraph_engine::runtime::GatewayId;
use aurigraph_engine::tokens::Role;
use aurigraph_engine::ResultCode;
use aurigraph_proto::v11;
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use hyper::Request;
use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use tonic::{Code, Status, Streaming};

pub const SUBMIT_TRANSACTION: &str = "/aurigraph.v11.TransactionService/SubmitTransaction";
pub const SUBMIT_BATCH: &str = "/aurigraph.v11.TransactionService/SubmitBatch";
pub const GET_TRANSACTION: &str = "/aurigraph.v11.TransactionService/GetTransaction";
pub const SUBMIT_STREAM: &str = "/aurigraph.v11.TransactionService/SubmitStream";

/// `SubmitTransaction`: one signed transfer.
pub async fn submit<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(ctx, request, decided, |message| async move {
        let message: v11::SubmitTransactionRequest = message.into_inner();
        let transfer = message
            .transfer
            .as_ref()
            .ok_or_else(|| invalid("transfer is missing"))?;
        let record = record_of(transfer, ctx.backend.chain_id(), "transfer")?;
        let records = std::slice::from_ref(&record);
        let outcome = match submit_records(ctx, records, None, !message.detach).await? {
            Submitted::Pending(pending) => {
                let (hash, shard) = pending_one(&pending, &record, ctx.backend.shard_count());
                pending_outcome(&hash, shard)
            }
            Submitted::Decided(outcomes) => {
                decided_outcome(outcomes.first().expect("one outcome per transfer"))
            }
        };
        Ok(v11::SubmitTransactionResponse {
            outcome: Some(outcome),
        })
    })
    .await
}

/// `SubmitBatch`: many transfers, as messages or as one binary batch.
pub async fn submit_batch<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    let gateway = match gateway_of(ctx, &request) {
        Ok(gateway) => gateway,
        Err(status) => {
            decided.set(Some(status.code()));
            return status.into_http();
        }
    };
    let gateway = gateway.map(|g| g.id);
    unary(ctx, request, decided, |message| async move {
        answer_batch(ctx, message.into_inner(), gateway).await
    })
    .await
}

/// `GetTransaction`: the recent window, else the archive (`source` says which).
pub async fn get<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
    decided: &Cell<Option<Code>>,
) -> GrpcResponse {
    unary(ctx, request, decided, |message| async move {
        let message: v11::GetTransactionRequest = message.into_inner();
        let hash = TxHash(fixed::<32>(
            &message.tx_hash,
            "tx_hash",
            ErrorCode::InvalidTxHash,
        )?);
        let recent = |outcome| v11::GetTransactionResponse {
            outcome: Some(outcome),
            source: "recent".into(),
        };
        match ctx
            .backend
            .transaction(hash)
            .await
            .map_err(ApiError::from)?
        {
            Some(TxStatus::Pending { shard }) => Ok(recent(pending_outcome(&hash, shard))),
            Some(TxStatus::Decided(outcome)) => Ok(recent(decided_outcome(&outcome))),
            None => {
                let not_found = || {
                    status_of(ApiError::new(
                        ErrorCode::TransactionNotFound,
                        format!(
                            "transaction {hash} is not known to this node: never submitted, or \
                             older than the window of recent transfers each shard keeps (and not \
                             in the archive, if the node has one)"
                        ),
                    ))
                };
                let Some(reader) = &ctx.settings.archive_reader else {
                    return Err(not_found());
                };
                let row = archive::transfer(reader, hash.0)
                    .await?
                    .ok_or_else(not_found)?;
                let result = ResultCode::ALL
                    .iter()
                    .copied()
                    .find(|code| code.as_str() == row.result)
                    .ok_or_else(|| {
                        Status::internal(format!("the archive holds result {:?}", row.result))
                    })?;
                Ok(v11::GetTransactionResponse {
                    outcome: Some(decided_outcome(&Outcome {
                        tx_hash: hash,
                        result,
                        shard: row.shard,
                        block: row.block,
                    })),
                    source: archive::SOURCE_ARCHIVE.into(),
                })
            }
        }
    })
    .await
}

/// `SubmitStream`: the client streams batches; each is answered in order, up to
/// [`SUBMIT_STREAM_IN_FLIGHT_MAX`] decided at once. The work runs in a local task of this core;
/// tonic encodes the answers from a bounded channel. A request that does not validate ends the
/// stream with its status once the answers before it are sent; a client that goes away ends
/// the task (the batches it already sent are still decided by the log, as over HTTP).
pub async fn submit_stream<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
) -> GrpcResponse {
    let gateway = match gateway_of(ctx, &request) {
        Ok(gateway) => gateway,
        Err(status) => return status.into_http(),
    };
    let (requests_tx, requests_rx) = oneshot::channel();
    let (answers_tx, answers_rx) = mpsc::channel(STREAM_ANSWERS_BUFFERED_MAX);
    let task_ctx = ctx.clone();
    glommio::spawn_local(async move {
        if let Ok(requests) = requests_rx.await {
            pump(task_ctx, requests, gateway, answers_tx).await;
        }
    })
    .detach();
    let service = StreamHandoff(Some((requests_tx, answers_rx)));
    grpc::<v11::SubmitBatchRequest, v11::SubmitBatchResponse, B>(ctx)
        .streaming(service, request)
        .await
}

/// Hands tonic's decoded request stream to the core's task and tonic the answers' channel.
struct StreamHandoff<Req, Resp>(Option<(oneshot::Sender<Streaming<Req>>, Answers<Resp>)>);

impl<Req, Resp> tonic::server::StreamingService<Req> for StreamHandoff<Req, Resp> {
    type Response = Resp;
    type ResponseStream = Answers<Resp>;
    type Future = std::future::Ready<Result<tonic::Response<Answers<Resp>>, Status>>;

    fn call(&mut self, request: tonic::Request<Streaming<Req>>) -> Self::Future {
        std::future::ready(match self.0.take() {
            Some((requests, answers)) => match requests.send(request.into_inner()) {
                Ok(()) => Ok(tonic::Response::new(answers)),
                Err(_) => Err(Status::unavailable("the core's stream task is gone")),
            },
            None => Err(Status::internal("a stream handler was called twice")),
        })
    }
}

/// One step of a stream's task: a request read (or the end of requests), or an answer ready.
enum Step<A> {
    Request(Option<Result<v11::SubmitBatchRequest, Status>>),
    Answer(A),
}

async fn pump<B: Backend>(
    ctx: Rc<Ctx<B>>,
    mut requests: Streaming<v11::SubmitBatchRequest>,
    gateway: Option<Gateway>,
    mut answers: mpsc::Sender<Result<v11::SubmitBatchResponse, Status>>,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut reading = true;
    // The status that ends the stream once every answer before it is sent.
    let mut ending: Option<Status> = None;
    loop {
        if !reading && in_flight.is_empty() {
            break;
        }
        let step: Step<Result<v11::SubmitBatchResponse, Status>> = std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(answer)) = in_flight.poll_next_unpin(cx) {
                return Poll::Ready(Step::Answer(answer));
            }
            if reading && in_flight.len() < SUBMIT_STREAM_IN_FLIGHT_MAX {
                if let Poll::Ready(request) = requests.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Request(request));
                }
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Answer(answer) => {
                let failed = answer.is_err();
                if answers.send(answer).await.is_err() {
                    return; // the client went away
                }
                if failed {
                    return; // an error status ends the stream
                }
            }
            Step::Request(None) => reading = false,
            Step::Request(Some(Err(status))) => {
                reading = false;
                ending = Some(status);
            }
            Step::Request(Some(Ok(_))) if ctx.settings.draining.load(Ordering::SeqCst) => {
                // A draining node admits nothing new; the batches already in flight finish.
                reading = false;
                ending = Some(status_of(ApiError::shutting_down()));
            }
            Step::Request(Some(Ok(message))) => {
                if let Some(gateway) = &gateway {
                    // Each message of a gateway's stream counts against its request rate.
                    if let Err(seconds) = ctx.principals.take(&gateway.name) {
                        reading = false;
                        ending = Some(status_of(ApiError::rate_limited(seconds)));
                        continue;
                    }
                }
                let ctx = &ctx;
                let id = gateway.as_ref().map(|g| g.id);
                in_flight.push_back(async move { answer_batch(ctx, message, id).await });
            }
        }
    }
    if let Some(status) = ending {
        let _ = answers.send(Err(status)).await;
    }
}

/// A batch request answered: validated, submitted, decided (or admitted, with `detach`).
async fn answer_batch<B: Backend>(
    ctx: &Ctx<B>,
    message: v11::SubmitBatchRequest,
    gateway: Option<GatewayId>,
) -> Result<v11::SubmitBatchResponse, Status> {
    let format = v11::ResultFormat::try_from(message.format).map_err(|_| {
        invalid(format!(
            "format {} is not a ResultFormat (OUTCOMES = 1, COMPACT = 2)",
            message.format
        ))
    })?;
    let compact = format == v11::ResultFormat::Compact;
    if compact && message.detach {
        return Err(invalid(
            "format COMPACT carries decided results: it cannot be combined with detach",
        ));
    }
    let max = ctx.settings.batch_transfers_max;
    let chain_id = ctx.backend.chain_id();
    let records: Cow<'_, [Record]> = match &message.body {
        None => return Err(invalid("the request has no body: set transfers or batch")),
        Some(v11::submit_batch_request::Body::Batch(bytes)) => {
            Cow::Borrowed(decode_binary_batch(bytes, max)?)
        }
        Some(v11::submit_batch_request::Body::Transfers(list)) => {
            if list.transfers.is_empty() {
                return Err(invalid(
                    "transfers is empty: a batch holds at least one transfer",
                ));
            }
            if list.transfers.len() > max {
                return Err(ApiError::too_many_transfers(list.transfers.len(), max).into());
            }
            let records: Result<Vec<Record>, Status> = list
                .transfers
                .iter()
                .enumerate()
                .map(|(i, t)| record_of(t, chain_id, &format!("transfers[{i}]")))
                .collect();
            Cow::Owned(records?)
        }
    };
    let request_id = message.request_id;
    let outcomes = match submit_records(ctx, &records, gateway, !message.detach).await? {
        Submitted::Pending(pending) => {
            let outcomes: Vec<v11::Outcome> = pending
                .iter()
                .map(|(hash, shard)| pending_outcome(hash, *shard))
                .collect();
            return Ok(v11::SubmitBatchResponse {
                pending: outcomes.len() as u32,
                outcomes,
                request_id,
                ..Default::default()
            });
        }
        Submitted::Decided(outcomes) => outcomes,
    };
    let accepted = outcomes.iter().filter(|o| o.result.is_ok()).count() as u32;
    let mut answer = v11::SubmitBatchResponse {
        accepted,
        rejected: outcomes.len() as u32 - accepted,
        request_id,
        ..Default::default()
    };
    if compact {
        answer.compact_results = encode_compact_results(&outcomes);
    } else {
        answer.outcomes = outcomes.iter().map(decided_outcome).collect();
    }
    Ok(answer)
}

/// The gateway a request speaks for: none without `authorization` metadata (every transfer
/// needs its signature); with it, the token must be a gateway's (UNAUTHENTICATED otherwise,
/// PERMISSION_DENIED for another role or a gateway the genesis gives no account).
pub(crate) struct Gateway {
    name: String,
    id: GatewayId,
}

fn gateway_of<B: Backend, T>(
    ctx: &Ctx<B>,
    request: &Request<T>,
) -> Result<Option<Gateway>, Status> {
    if !request.headers().contains_key(hyper::header::AUTHORIZATION) {
        return Ok(None);
    }
    let principal = require_role(ctx, request, Role::Gateway)?;
    let id = gateway_named(ctx, &principal.name)?;
    Ok(Some(Gateway {
        name: principal.name,
        id,
    }))
}

/// The record of a transfer message; `field` names it in errors.
fn record_of(transfer: &v11::Transfer, chain_id: u32, field: &str) -> Result<Record, Status> {
    let from = fixed::<32>(
        &transfer.from,
        &format!("{field}.from"),
        ErrorCode::InvalidAddress,
    )?;
    let to = fixed::<32>(
        &transfer.to,
        &format!("{field}.to"),
        ErrorCode::InvalidAddress,
    )?;
    let signature = fixed::<64>(
        &transfer.signature,
        &format!("{field}.signature"),
        ErrorCode::InvalidSignature,
    )?;
    let transfer = Transfer {
        chain_id: transfer.chain_id.unwrap_or(chain_id),
        from: Address(from),
        to: Address(to),
        asset: transfer.asset,
        amount: transfer.amount,
        nonce: transfer.nonce,
    };
    Ok(transfer.with_signature(&signature))
}

fn decided_outcome(outcome: &Outcome) -> v11::Outcome {
    let status = if outcome.result.is_ok() {
        v11::TransactionStatus::Confirmed
    } else {
        v11::TransactionStatus::Rejected
    };
    v11::Outcome {
        tx_hash: outcome.tx_hash.0.to_vec(),
        status: status as i32,
        result: Some(outcome.result as i32),
        shard: outcome.shard,
        block_number: outcome.block,
    }
}

fn pending_outcome(hash: &TxHash, shard: u32) -> v11::Outcome {
    v11::Outcome {
        tx_hash: hash.0.to_vec(),
        status: v11::TransactionStatus::Pending as i32,
        result: None,
        shard,
        block_number: 0,
    }
}

//! `StreamTransactionEvents`: committed transfers as their blocks apply, read from the node's
//! event hub (`crate::events`). One `TransactionEvents` message per applied block that holds at
//! least one transfer the filters match (an account, sending or receiving; a set of shards),
//! in each shard's block order; positions are per shard (`resume_after`). A shard with no match
//! for a second gets an empty message at its latest block (progress for `resume_after`).
//!
//! Each stream is a local task of the core that opened it: it reads the hub, builds the
//! messages (decoding and hashing only the blocks it reads), and sends them into a bounded
//! channel that tonic encodes from. A client that reads slowly holds the task back, never
//! more memory: if the hub drops blocks the stream has not read, the stream ends with
//! RESOURCE_EXHAUSTED and the client resumes from its last block. The status a stream ends
//! with travels apart from the blocks (a oneshot), so that a full channel never holds it back.

use super::status::{fixed, invalid, status_of};
use super::{grpc, Answers, GrpcBody, GrpcResponse, STREAM_ANSWERS_BUFFERED_MAX};
use crate::events::{matching, Behind, Next, Refused, Start, Subscription};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::in_flight::InFlightCounts;
use crate::http::routes::{Backend, Ctx};
use aurigraph_engine::record::Address;
use aurigraph_engine::replica::AppliedEntry;
use aurigraph_engine::ShardId;
use aurigraph_proto::v11;
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::{FutureExt, Stream, StreamExt};
use hyper::Request;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tonic::Status;

pub const STREAM_TRANSACTION_EVENTS: &str =
    "/aurigraph.v11.TransactionService/StreamTransactionEvents";

/// How often a stream that waits (for a block, or for its client to read) looks whether the
/// node is draining or the client went away: the longest either goes unnoticed.
const STREAM_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Transfers a stream hashes between two looks at whether its core has other work (a full
/// block is 8,192 SHA-256 hashes, several milliseconds).
const EVENTS_PER_YIELD: usize = 256;
/// A stream whose filter matched nothing of a shard for this long is sent an empty message at
/// that shard's latest block read: its resume position keeps up with the node's window, which a
/// filtered stream's last match alone may fall out of.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

type Req = v11::StreamTransactionEventsRequest;
type Sent = mpsc::Sender<Result<v11::TransactionEvents, Status>>;

/// Serves one event stream: refused at once (trailers only) if its request is invalid or its
/// start is out of range; otherwise the stream runs until the client cancels it, falls behind
/// the hub's window, or the node stops.
pub async fn stream<B: Backend, T: GrpcBody>(
    ctx: &Rc<Ctx<B>>,
    request: Request<T>,
) -> GrpcResponse {
    let open = Open(Some(|message: tonic::Request<Req>| {
        open(ctx, message.into_inner())
    }));
    grpc::<Req, v11::TransactionEvents, B>(ctx)
        .server_streaming(open, request)
        .await
}

/// Checks the request, subscribes to the hub and starts the stream's task on this core.
fn open<B: Backend>(ctx: &Ctx<B>, message: Req) -> Result<EventStream, Status> {
    let hub = ctx.settings.events.as_ref().ok_or_else(|| {
        Status::unavailable("this listener has no event hub: StreamTransactionEvents is not served")
    })?;
    let interest = Interest::of(&message, ctx.backend.shard_count())?;
    let subscription = hub
        .subscribe(&interest.shards, &interest.resume_after, interest.start)
        .map_err(refused)?;
    let (answers, blocks) = mpsc::channel(STREAM_ANSWERS_BUFFERED_MAX);
    let (ended, end) = oneshot::channel();
    let draining = ctx.settings.draining.clone();
    let task = serve(subscription, interest.account, answers, ended, draining);
    glommio::spawn_local(task).detach();
    Ok(EventStream {
        blocks,
        end: Some(end),
        _counted: Counted::enter(&ctx.settings.in_flight, ctx.core),
    })
}

/// What a request asks for, checked.
#[derive(Debug, PartialEq, Eq)]
struct Interest {
    account: Option<Address>,
    /// Distinct, each an existing shard; every shard when the request names none.
    shards: Vec<ShardId>,
    /// Distinct shards, each among `shards`.
    resume_after: Vec<(ShardId, u64)>,
    start: Start,
}

impl Interest {
    fn of(message: &Req, shard_count: u32) -> Result<Interest, Status> {
        assert!(shard_count >= 1);
        let account = match message.account.is_empty() {
            true => None,
            false => Some(Address(fixed::<32>(
                &message.account,
                "account",
                ErrorCode::InvalidAddress,
            )?)),
        };
        let exists = |field: &str, shard: u32| {
            if shard < shard_count {
                Ok(shard)
            } else {
                Err(invalid(format!(
                    "{field}: no shard {shard}; this chain has {shard_count} shards (0 to {})",
                    shard_count - 1
                )))
            }
        };
        let mut shards = message
            .shards
            .iter()
            .map(|&shard| exists("shards", shard))
            .collect::<Result<Vec<_>, _>>()?;
        shards.sort_unstable();
        shards.dedup();
        if shards.is_empty() {
            shards = (0..shard_count).collect();
        }
        let mut named = vec![false; shard_count as usize];
        let mut resume_after = Vec::with_capacity(message.resume_after.len().min(shards.len()));
        for position in &message.resume_after {
            let shard = exists("resume_after", position.shard)?;
            if named[shard as usize] {
                return Err(invalid(format!(
                    "resume_after names shard {shard} twice: give one position per shard"
                )));
            }
            named[shard as usize] = true;
            if shards.binary_search(&shard).is_err() {
                return Err(invalid(format!(
                    "resume_after names shard {shard}, which shards does not select"
                )));
            }
            resume_after.push((shard, position.block_number));
        }
        let start = match v11::StartFrom::try_from(message.start) {
            Ok(v11::StartFrom::Unspecified | v11::StartFrom::Latest) => Start::Latest,
            Ok(v11::StartFrom::Earliest) => Start::Earliest,
            Err(_) => {
                return Err(invalid(format!(
                    "start {}: not a StartFrom (0 START_FROM_UNSPECIFIED, 1 LATEST, 2 EARLIEST)",
                    message.start
                )))
            }
        };
        Ok(Interest {
            account,
            shards,
            resume_after,
            start,
        })
    }
}

/// The status of a stream the hub refuses.
fn refused(refused: Refused) -> Status {
    match refused {
        Refused::Streams { max } => status_of(ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "{max} event streams are open on this node, its most: retry later or on another \
                 validator"
            ),
        )),
        Refused::OutOfRange { shard, after, span } => Status::out_of_range(format!(
            "resume_after shard {shard} block {after}: older than what this node holds of shard \
             {shard}, its blocks after {} up to {} ({}). Resume after block {} or later, or \
             start from EARLIEST; read the blocks in between from the archive or another \
             validator",
            span.floor,
            span.newest,
            match span.evicted() {
                true => "older ones were dropped for room: grpc_events_retain_bytes_max",
                false => "the node started from, or restored, a snapshot at that block",
            },
            span.floor,
        )),
    }
}

/// How a stream that runs ends: its status (a stream never ends with OK).
fn ended_by(behind: &Behind) -> Status {
    let Behind {
        shard, after, span, ..
    } = behind;
    if behind.evicted {
        Status::resource_exhausted(format!(
            "this stream fell behind the node's event window: shard {shard}'s blocks after \
             {after} up to {} were dropped for room (grpc_events_retain_bytes_max) before it read \
             them. Read faster or filter more (account, shards), and reopen with resume_after \
             set to the last block received of each shard (OUT_OF_RANGE if the node no longer \
             holds it: then start from EARLIEST and read what is between from the archive)",
            span.floor
        ))
    } else {
        Status::out_of_range(format!(
            "shard {shard}'s blocks after {after} up to {} never reached this node's event \
             window (it restored a snapshot from the leader, or its event queue overflowed): \
             read them from the archive or another validator, then reopen with resume_after \
             shard {shard} block {}",
            span.floor, span.floor
        ))
    }
}

fn shutting_down() -> Status {
    status_of(ApiError::new(
        ErrorCode::ShuttingDown,
        "the node is shutting down: reopen the stream on another validator, with resume_after \
         set to the last block received of each shard",
    ))
}

/// Why a stream's task stops sending.
enum Stop {
    /// The client went away: nobody to tell.
    Cancelled,
    /// The node drains.
    Draining,
}

/// The stream's task: reads the hub, sends each matching block, ends with a status.
async fn serve(
    mut subscription: Subscription,
    account: Option<Address>,
    mut answers: Sent,
    ended: oneshot::Sender<Status>,
    draining: Arc<AtomicBool>,
) {
    // Per shard: when the client was last sent a message of it (a match, or progress).
    let mut told_at: Vec<Option<Instant>> = Vec::new();
    let status = loop {
        if answers.is_closed() {
            return;
        }
        if draining.load(Ordering::SeqCst) {
            break shutting_down();
        }
        let next = match subscription.read() {
            Next::Wait => {
                // Listen, then look again: a block that arrived in between is not missed.
                let listener = subscription.listen();
                match subscription.read() {
                    Next::Wait => {
                        let tick = pin!(glommio::timer::sleep(STREAM_CHECK_INTERVAL));
                        select(listener, tick).await;
                        continue;
                    }
                    next => next,
                }
            }
            next => next,
        };
        match next {
            Next::Block { shard, entry } => {
                let matched = events_of(shard, &entry, account.as_ref()).await;
                let message = matched.or_else(|| progress(&mut told_at, shard, entry.index));
                if let Some(message) = message {
                    told(&mut told_at, shard);
                    match send(&mut answers, message, &draining).await {
                        Ok(()) => {}
                        Err(Stop::Cancelled) => return,
                        Err(Stop::Draining) => break shutting_down(),
                    }
                }
                glommio::yield_if_needed().await;
            }
            Next::Behind(behind) => break ended_by(&behind),
            Next::Closed => break shutting_down(),
            Next::Wait => unreachable!("handled above"),
        }
    };
    // The receiver may be gone (the client cancelled meanwhile): nothing to tell then.
    let _ = ended.send(status);
}

/// The empty message that tells the client how far `shard` has applied, if it was told
/// nothing of that shard for [`PROGRESS_INTERVAL`] (a stream's first block of a shard starts
/// the clock).
fn progress(
    told_at: &mut Vec<Option<Instant>>,
    shard: ShardId,
    block_number: u64,
) -> Option<v11::TransactionEvents> {
    let last = *told_slot(told_at, shard).get_or_insert_with(Instant::now);
    (last.elapsed() >= PROGRESS_INTERVAL).then_some(v11::TransactionEvents {
        shard,
        block_number,
        events: Vec::new(),
    })
}

/// Notes that the client was just sent a message of `shard`.
fn told(told_at: &mut Vec<Option<Instant>>, shard: ShardId) {
    *told_slot(told_at, shard) = Some(Instant::now());
}

/// When the client was last told of `shard` (`None`: never; the vector grows to the shard).
fn told_slot(told_at: &mut Vec<Option<Instant>>, shard: ShardId) -> &mut Option<Instant> {
    let slot = shard as usize;
    if told_at.len() <= slot {
        told_at.resize(slot + 1, None);
    }
    &mut told_at[slot]
}

/// Sends one message once the client made room for it, looking at the drain meanwhile.
async fn send(
    answers: &mut Sent,
    message: v11::TransactionEvents,
    draining: &AtomicBool,
) -> Result<(), Stop> {
    loop {
        let ready = {
            let ready = futures::future::poll_fn(|cx| answers.poll_ready(cx));
            let tick = pin!(glommio::timer::sleep(STREAM_CHECK_INTERVAL));
            match select(ready, tick).await {
                Either::Left((ready, _)) => Some(ready),
                Either::Right(_) => None,
            }
        };
        match ready {
            Some(Ok(())) => {
                return answers.start_send(Ok(message)).map_err(|_| Stop::Cancelled);
            }
            Some(Err(_)) => return Err(Stop::Cancelled),
            None if draining.load(Ordering::SeqCst) => return Err(Stop::Draining),
            None => {}
        }
    }
}

/// The message of a block: its transfers the filter matches (`None`: none).
async fn events_of(
    shard: ShardId,
    entry: &AppliedEntry,
    account: Option<&Address>,
) -> Option<v11::TransactionEvents> {
    let mut events = Vec::new();
    for (i, (position, record, result)) in matching(entry, account).enumerate() {
        if i > 0 && i % EVENTS_PER_YIELD == 0 {
            glommio::yield_if_needed().await;
        }
        events.push(v11::TransactionEvent {
            tx_hash: record.tx_hash().0.to_vec(),
            from: record.from().0.to_vec(),
            to: record.to().0.to_vec(),
            asset: record.asset(),
            amount: record.amount(),
            nonce: record.nonce(),
            result: result as i32,
            position,
        });
    }
    (!events.is_empty()).then_some(v11::TransactionEvents {
        shard,
        block_number: entry.index,
        events,
    })
}

/// What tonic encodes (`Send`, unlike the task): the blocks the task sends, then the status
/// it ended with.
struct EventStream {
    blocks: Answers<v11::TransactionEvents>,
    end: Option<oneshot::Receiver<Status>>,
    /// Until tonic drops the stream (after its status, or when the client went away).
    _counted: Counted,
}

/// Counts an open stream in its core's `in_flight`, as the request it is, so that a draining
/// node waits (up to its drain timeout) for its streams to hand over their UNAVAILABLE status
/// before it stops the cores.
struct Counted {
    counts: Arc<InFlightCounts>,
    core: usize,
}

impl Counted {
    fn enter(counts: &Arc<InFlightCounts>, core: usize) -> Counted {
        counts.enter(core);
        Counted {
            counts: counts.clone(),
            core,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counts.exit(self.core);
    }
}

impl Stream for EventStream {
    type Item = Result<v11::TransactionEvents, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(block) = ready!(self.blocks.poll_next_unpin(cx)) {
            return Poll::Ready(Some(block));
        }
        // Every block is out: the task ended.
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        // No status: the task was dropped with its core (the node stopped).
        let status = ready!(end.poll_unpin(cx)).unwrap_or_else(|_| shutting_down());
        self.end = None;
        Poll::Ready(Some(Err(status)))
    }
}

/// The `ServerStreamingService` tonic calls once with the decoded request. tonic calls it on
/// this core, within `stream`, and asks `Send` only of the stream it returns: opening the
/// stream (and spawning its local task) happens right in `call`, so that a refusal is the
/// response's status at once.
struct Open<F>(Option<F>);

impl<F> tonic::server::ServerStreamingService<Req> for Open<F>
where
    F: FnOnce(tonic::Request<Req>) -> Result<EventStream, Status>,
{
    type Response = v11::TransactionEvents;
    type ResponseStream = EventStream;
    type Future = std::future::Ready<Result<tonic::Response<EventStream>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let opened = match self.0.take() {
            Some(open) => open(request),
            None => Err(Status::internal("an event stream was opened twice")),
        };
        std::future::ready(opened.map(tonic::Response::new))
    }
}

#[cfg(test)]
mod tests;

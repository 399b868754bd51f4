//! The load of `aurigraph bench --protocol grpc`: the same pre-signed batches as the HTTP load,
//! sent through `TransactionService.SubmitStream`.
//!
//! Like for like with the HTTP load: each of the `--concurrency` workers has a connection of
//! its own (the node's cores each accept their own, so connections spread over them as the HTTP
//! load's do) and opens one bidirectional stream on it; it takes the next batch from the same
//! shared counter, sends it as a binary-batch `SubmitBatchRequest` (`request_id` = the batch's
//! index, compact results unless `--json-replies`) and, with `--stream-depth 1` (the default),
//! waits for its answer before sending the next: one batch in flight per worker, as one request
//! per connection over HTTP. A larger depth keeps up to that many batches of a stream in flight
//! (the node decides up to [`STREAM_DEPTH_MAX`] of one stream at once).
//!
//! The figures are those of the HTTP load: a batch's latency runs from sending its request to
//! reading its answer; results are decoded exactly as the HTTP compact reply is. Answers come
//! back in order: an answer with another `request_id`, a status that ends the stream, a broken
//! connection or no answer within `--timeout-ms` fails the batches in flight on that stream and
//! aborts the run (over HTTP a transport error or a timeout aborts it; a status on a stream
//! ends the stream, so no later batch of that worker could be sent either). An answer that does
//! not decode fails its batch only, as over HTTP.

use super::load::{min_opt, Load, WorkerStats};
use super::{BenchError, BenchOptions};
use crate::grpc::{
    check_request_id, decode_batch_response, GrpcClient, GrpcError, GrpcErrorKind, StreamSender,
    STREAM_DEPTH_MAX,
};
use crate::http::normalize_base_url;
use aurigraph_proto::v11::ResultFormat;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How the gRPC load runs, beyond what [`Load`] holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSettings {
    /// Batches in flight per stream, 1 to [`STREAM_DEPTH_MAX`].
    pub depth: usize,
    /// How long a batch may wait for its answer.
    pub timeout: Duration,
    pub format: ResultFormat,
}

/// Where the gRPC load goes: the started nodes' gRPC listeners, else `--grpc-addresses`, else
/// the `--addresses` themselves (a node also serves gRPC on its HTTP port).
pub(crate) fn load_urls(
    args: &BenchOptions,
    urls: &[String],
    started: Vec<String>,
) -> Result<Vec<String>, BenchError> {
    if args.addresses.is_empty() {
        if started.len() != urls.len() {
            return Err(BenchError::NoGrpcUrl {
                got: started.len(),
                nodes: urls.len(),
            });
        }
        Ok(started)
    } else if args.grpc_addresses.is_empty() {
        Ok(urls.to_vec())
    } else {
        Ok(args
            .grpc_addresses
            .iter()
            .map(|u| normalize_base_url(u))
            .collect::<Result<_, _>>()?)
    }
}

/// Waits until every node's gRPC API answers `NodeService.Health` with `UP` (up to `deadline`),
/// then opens `workers` clients, one connection each, spread over `urls` round-robin.
pub(crate) async fn connect(
    urls: &[String],
    workers: usize,
    timeout: Duration,
    token: Option<&str>,
    deadline: Instant,
) -> Result<Vec<GrpcClient>, BenchError> {
    for url in urls {
        wait_healthy(url, timeout, deadline).await?;
    }
    let mut clients = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = GrpcClient::connect(&urls[w % urls.len()], timeout).await?;
        clients.push(match token {
            Some(token) => client.with_bearer(token)?,
            None => client,
        });
    }
    Ok(clients)
}

async fn wait_healthy(url: &str, timeout: Duration, deadline: Instant) -> Result<(), BenchError> {
    loop {
        let last = match GrpcClient::connect(url, timeout).await {
            Ok(client) => match client.health().await {
                Ok(health) if health.status == "UP" => return Ok(()),
                Ok(health) => format!("health is {}", health.status),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(BenchError::NotHealthy {
                url: url.to_string(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one worker per client until the batches are all sent and answered (or the run is
/// stopped); returns their figures merged.
pub(crate) async fn run(
    load: Arc<Load>,
    clients: Vec<GrpcClient>,
    settings: StreamSettings,
) -> Result<WorkerStats, BenchError> {
    debug_assert!((1..=STREAM_DEPTH_MAX).contains(&settings.depth));
    let start = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(worker(load.clone(), client, start, settings)))
        .collect();
    let mut total = WorkerStats::new(start);
    for w in workers {
        total.merge(w.await.map_err(|e| BenchError::Worker(e.to_string()))?);
    }
    Ok(total)
}

/// A batch sent and not yet answered.
struct InFlight {
    index: usize,
    records: usize,
    sent: Instant,
}

/// One stream: a feeding task sends batches while this one reads their answers, in order.
async fn worker(
    load: Arc<Load>,
    client: GrpcClient,
    start: Instant,
    settings: StreamSettings,
) -> WorkerStats {
    let (sender, mut answers) = client.open_stream(settings.depth);
    // A permit per batch in flight, returned when its answer is read: exactly `depth` in
    // flight, as the HTTP load has one request per connection.
    let permits = Arc::new(Semaphore::new(settings.depth));
    let (in_flight_tx, in_flight) = async_channel::bounded::<InFlight>(settings.depth);
    let feeding = tokio::spawn(feed(
        load.clone(),
        sender.clone(),
        permits.clone(),
        in_flight_tx,
        start,
        settings.format,
    ));
    let mut stats = WorkerStats::new(start);
    let mut failure: Option<GrpcError> = None;
    while let Ok(batch) = in_flight.recv().await {
        let deadline = batch.sent + settings.timeout;
        let answer = tokio::time::timeout_at(deadline.into(), answers.next()).await;
        let received = Instant::now();
        stats.last_reply = Some(received);
        let answer = match answer {
            Ok(Ok(Some(answer))) => check_request_id(&answer, batch.index as u64)
                .map(|()| answer)
                .map_err(|e| stream_error(&client, GrpcErrorKind::Decode(e))),
            Ok(Ok(None)) => Err(stream_error(
                &client,
                GrpcErrorKind::Decode(format!(
                    "the node ended the stream before answering batch {}",
                    batch.index
                )),
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(stream_error(
                &client,
                GrpcErrorKind::Timeout(settings.timeout),
            )),
        };
        match answer {
            Ok(answer) => {
                match decode_batch_response(&answer, batch.records) {
                    Ok(results) => stats.record_results(batch.sent, received, &results),
                    Err(e) => {
                        let e = stream_error(&client, GrpcErrorKind::Decode(e));
                        stats.record_failure(batch.records, e.short(), || e.to_string());
                    }
                }
                permits.add_permits(1);
                load.progress.inc(batch.records as u64);
            }
            Err(e) => {
                stats.record_failure(batch.records, e.short(), || e.to_string());
                load.progress.inc(batch.records as u64);
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failure {
        // The stream is over: stop every worker (the figures would no longer be those of the
        // load asked for), then count what this stream still had in flight as failed with it.
        load.stop.store(true, Ordering::Relaxed);
        permits.close();
        sender.close();
        in_flight.close();
        stats.merge(feeding.await.unwrap_or_else(|_| WorkerStats::new(start)));
        while let Ok(batch) = in_flight.try_recv() {
            stats.record_failure(batch.records, e.short(), || e.to_string());
            load.progress.inc(batch.records as u64);
        }
        stats.aborted = Some(e.to_string());
        return stats;
    }
    stats.merge(feeding.await.unwrap_or_else(|_| WorkerStats::new(start)));
    drop(sender);
    // Every batch is answered and the requests have ended: the node closes the stream with
    // its status, which must be OK (anything else is loud, though every batch was answered).
    let end = tokio::time::timeout(settings.timeout, answers.next()).await;
    let end_error = match end {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(answer))) => Some(stream_error(
            &client,
            GrpcErrorKind::Decode(format!(
                "an answer (request {}) after every batch was answered",
                answer.request_id
            )),
        )),
        Ok(Err(e)) => Some(e),
        Err(_) => Some(stream_error(
            &client,
            GrpcErrorKind::Timeout(settings.timeout),
        )),
    };
    if let Some(e) = end_error {
        stats
            .errors
            .entry(e.short())
            .or_insert((0, e.to_string()))
            .0 += 1;
        stats.aborted = Some(format!("the stream did not end cleanly: {e}"));
    }
    stats
}

fn stream_error(client: &GrpcClient, kind: GrpcErrorKind) -> GrpcError {
    GrpcError {
        rpc: "SubmitStream",
        url: client.url().to_string(),
        kind,
    }
}

/// Sends batches on the stream while a permit is free; returns the sending half's figures
/// (first send, batches and transfers sent, the open loop's lateness).
async fn feed(
    load: Arc<Load>,
    sender: StreamSender,
    permits: Arc<Semaphore>,
    in_flight: async_channel::Sender<InFlight>,
    start: Instant,
    format: ResultFormat,
) -> WorkerStats {
    let mut stats = WorkerStats::new(start);
    loop {
        match permits.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => break, // the worker has given up on the stream
        }
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let b = load.next.fetch_add(1, Ordering::Relaxed);
        if b >= load.batches.len() {
            break;
        }
        let range = load.plan.batch_range(b);
        let records = range.len();
        stats.pace(load.rate, start, range.start).await;
        let sent = Instant::now();
        let batch = InFlight {
            index: b,
            records,
            sent,
        };
        if in_flight.send(batch).await.is_err() {
            break;
        }
        stats.first_send = min_opt(stats.first_send, Some(sent));
        stats.transfers_sent += records as u64;
        stats.batches_sent += 1;
        let request = crate::grpc::batch_request(load.batches[b].clone(), format, b as u64);
        if sender.send(request).await.is_err() {
            // The stream has ended; the worker reads why from its answers.
            break;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{validate, Protocol};

    #[test]
    fn grpc_options_that_stand() {
        let grpc = BenchOptions {
            protocol: Protocol::Grpc,
            stream_depth: STREAM_DEPTH_MAX,
            ..BenchOptions::default()
        };
        assert!(validate(&grpc).is_ok());
        let remote = BenchOptions {
            addresses: vec!["http://a:1".into(), "b:1".into()],
            grpc_addresses: vec!["a:9004".into(), "https://b:9004/".into()],
            ..grpc.clone()
        };
        assert!(validate(&remote).is_ok());
        let urls = vec!["http://a:1".to_string(), "http://b:1".to_string()];
        // --grpc-addresses, normalized as node URLs are.
        assert_eq!(
            load_urls(&remote, &urls, Vec::new()).unwrap(),
            vec!["http://a:9004", "https://b:9004"]
        );
        // Without them, the addresses themselves: a node serves gRPC on its HTTP port too.
        let derived = BenchOptions {
            grpc_addresses: Vec::new(),
            ..remote
        };
        assert_eq!(load_urls(&derived, &urls, Vec::new()).unwrap(), urls);
        // Started nodes: their own gRPC listeners, one per node.
        let started = vec!["http://127.0.0.1:5".to_string()];
        assert_eq!(
            load_urls(&grpc, &urls[..1], started.clone()).unwrap(),
            started
        );
        assert!(matches!(
            load_urls(&grpc, &urls[..1], Vec::new()),
            Err(BenchError::NoGrpcUrl { got: 0, nodes: 1 })
        ));
    }
}

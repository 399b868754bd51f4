//! Whether a node's event stream keeps up with its load: one gRPC
//! `TransactionService/StreamTransactionEvents` over every shard (start LATEST, no filter),
//! read as fast as this process can, and every interval the lag of each shard: the node's
//! `applied_index` (`ConsensusService/Status`, polled at that moment) minus the last block the
//! stream delivered of that shard. Run it beside a load (`aurigraph bench --addresses ...`),
//! then read the table: a lag that stays flat while the load runs keeps up; one that climbs
//! does not. `--help` has an example.
//!
//! The lag is in blocks (log entries). An entry that holds no transfer moves `applied_index`
//! but is not streamed (one message per block with a transfer; a progress message only when a
//! shard had nothing to send for a second and the stream reads a later entry of it), and the
//! node applies such entries under load too, so a stream that has read everything can still
//! show a lag of a few blocks: the block lag tells growth, not "caught up".
//! Before the stream delivered anything of a shard, the shard's position is its
//! `applied_index` when the stream opened, so an idle shard's lag is 0.
//!
//! The second measure, `behind`, is exact about "caught up": the transfers the node confirmed
//! (result OK, `NodeService/Stats` `total_transactions`, polled with the status) since the
//! stream opened, minus the OK events the stream delivered. It holds when every transfer goes
//! through this node's API (one validator) and the node is idle when the stream opens (start
//! the tool before the load, e.g. with `--wait-for-load-s`); a node counts a transfer when it
//! replies, after it applied it, so a stream ahead of the replies reads a little below 0.
//!
//! Everything the measurement involves shares the machine: on a 2-CPU host the node, the
//! load generator and this reader compete for the same cores. The summary prints this
//! process's own CPU seconds so that its share can be told apart.

use aurigraph_proto::v11::consensus_service_client::ConsensusServiceClient;
use aurigraph_proto::v11::node_service_client::NodeServiceClient;
use aurigraph_proto::v11::transaction_service_client::TransactionServiceClient;
use aurigraph_proto::v11::{
    BlockPosition, ConsensusStatusRequest, ResultCode, StartFrom, StatsRequest,
    StreamTransactionEventsRequest,
};
use clap::Parser;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Messages larger than this are refused by tonic unless raised (its default is 4 MiB); a
/// block of 65,536 transfers encodes to about 10 MiB, so leave room.
const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// A poll (`Status`, `Stats`) that takes longer than this means the node is stuck or gone: the
/// run stops.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--wait-for-load-s` looks whether a shard applied a block.
const LOAD_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Wait between two attempts to reopen a stream the node ended (it may be restarting).
const REOPEN_BACKOFF: Duration = Duration::from_secs(1);
/// Attempts to reopen an ended stream before the run gives up.
const REOPEN_ATTEMPTS_MAX: u32 = 10;

#[derive(Parser, Debug)]
#[command(
    name = "events_lag",
    about = "Measure whether a node's gRPC event stream (StreamTransactionEvents) keeps up \
             with its load: per shard, the node's applied index minus the last block streamed",
    long_about = None,
    after_help = "Example, beside a signed load of about 60 s on a node started by hand:\n  \
        target/release/events_lag --grpc http://127.0.0.1:19104 --wait-for-load-s 600 \\\n    \
        --duration-s 90 --json target/aurigraph-bench/events-lag.json &\n  \
        target/release/aurigraph bench --addresses http://127.0.0.1:19103 --transfers 7000000\n\n\
        Each line: t_s (seconds since the clock started), events and events/s streamed in the \
        interval, blocks streamed, blocks the node applied (the sum of the shards' \
        applied_index moves, entries without transfers included), lag_<shard> and max_lag in \
        blocks, and behind: transfers the node confirmed since the stream opened minus the OK \
        events streamed (0: caught up; exact with one validator whose every transfer came \
        through its API). The summary compares the samples taken while the node applied \
        blocks: the first against the last, the maximum, the least-squares slope."
)]
struct Args {
    /// The node's gRPC address (its --grpc-addr; it also serves gRPC on its --http-addr).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9004")]
    grpc: String,
    /// How long to measure, in seconds, from the start of the clock (see --wait-for-load-s).
    #[arg(long, value_name = "S", default_value_t = 75)]
    duration_s: u64,
    /// Seconds between two samples (one line each).
    #[arg(long, value_name = "S", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    interval_s: u64,
    /// Open the stream, then start the clock only once a shard applies a block, waiting up to
    /// this many seconds (0: start at once). A benchmark that pre-signs its transfers first
    /// loads the node a minute or more after it starts.
    #[arg(long, value_name = "S", default_value_t = 0)]
    wait_for_load_s: u64,
    /// The lag "grew" if the max lag at the end of the load exceeds the one at its start by
    /// more than this many blocks: a sample lands anywhere in a block's fdatasync and apply, so
    /// a lag of a few blocks moves from sample to sample without a trend.
    #[arg(long, value_name = "BLOCKS", default_value_t = 8)]
    grow_tolerance_blocks: u64,
    /// Also write every sample and the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// What the reading task saw of the stream, shared with the sampler.
#[derive(Default)]
struct Seen {
    /// Per shard: the last block streamed, else the applied index when the stream (re)opened
    /// from LATEST (so that blocks applied before it do not count as lag).
    position: BTreeMap<u32, u64>,
    /// Whether the stream opened (the node answered its headers).
    opened: bool,
    events: u64,
    /// Events whose transfer the ledger decided OK (the node's confirmed count moves by these).
    ok_events: u64,
    blocks: u64,
    /// Why the stream ended each time it did (the node ends a stream that fell behind its
    /// event window with RESOURCE_EXHAUSTED), with the seconds since the run started.
    ends: Vec<(f64, String)>,
    /// Set when the stream cannot be reopened: the run stops.
    failed: Option<String>,
}

/// One line of the table.
struct Sample {
    t_s: f64,
    events: u64,
    events_per_s: f64,
    blocks: u64,
    applied_blocks: u64,
    /// Per shard, in shard order.
    lag: Vec<(u32, u64)>,
    /// Transfers the node confirmed since the stream opened minus the OK events it streamed.
    behind_transfers: i64,
}

impl Sample {
    fn max_lag(&self) -> u64 {
        self.lag.iter().map(|&(_, lag)| lag).max().unwrap_or(0)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("events_lag: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    // Two connections: the stream's blocks never queue the polls behind them, and the node
    // spreads connections over its cores.
    let stream_channel = connect(&args.grpc).await?;
    let mut node = Node::new(connect(&args.grpc).await?);

    let shards: Vec<u32> = node.poll().await?.applied.keys().copied().collect();
    println!(
        "events_lag: {} shards ({}), stream over every shard from LATEST",
        shards.len(),
        join(&shards)
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stream =
        TransactionServiceClient::new(stream_channel).max_decoding_message_size(MESSAGE_BYTES_MAX);
    let reader = tokio::spawn(read_stream(
        stream,
        node.clone(),
        Arc::clone(&seen),
        started,
    ));
    // The stream is open once its headers came; blocks applied before are neither streamed
    // nor lag, so the opening positions and counts are taken after.
    wait_open(&seen).await?;
    let opened = node.poll().await?;
    let ok_events_at_open = {
        let mut seen = seen.lock().unwrap();
        for (&shard, &index) in &opened.applied {
            seen.position.entry(shard).or_insert(index);
        }
        seen.ok_events
    };

    let mut previous = opened.clone();
    if args.wait_for_load_s > 0 {
        let deadline = Instant::now() + Duration::from_secs(args.wait_for_load_s);
        println!(
            "events_lag: waiting up to {} s for the load",
            args.wait_for_load_s
        );
        loop {
            let now = node.poll().await?;
            if now
                .applied
                .iter()
                .any(|(s, index)| index > &opened.applied[s])
            {
                previous = now;
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no shard applied a block within {} s (--wait-for-load-s)",
                    args.wait_for_load_s
                ));
            }
            tokio::time::sleep(LOAD_POLL_INTERVAL).await;
        }
    }

    let clock = Instant::now();
    let interval = Duration::from_secs(args.interval_s);
    let mut header = "    t_s     events   events/s   blocks  applied".to_string();
    for shard in &shards {
        header += &format!(" {:>8}", format!("lag_{shard}"));
    }
    header += "  max_lag    behind";
    println!("{header}");
    let mut samples = Vec::new();
    let mut counted = {
        let seen = seen.lock().unwrap();
        (seen.events, seen.blocks, clock)
    };
    let mut ends_printed = 0;
    loop {
        let now = node.poll().await?;
        let (sample, ends, at) = {
            let seen = seen.lock().unwrap();
            // The counts are read now, after the poll: the interval ends here.
            let at = Instant::now();
            if let Some(failed) = &seen.failed {
                return Err(failed.clone());
            }
            let lag = shards
                .iter()
                .map(|shard| {
                    let applied = now.applied.get(shard).copied().unwrap_or(0);
                    let streamed = seen.position.get(shard).copied().unwrap_or(0);
                    // The stream may have read a block applied after the poll answered.
                    (*shard, applied.saturating_sub(streamed))
                })
                .collect();
            let (events, blocks, since) = counted;
            let seconds = at.duration_since(since).as_secs_f64();
            let confirmed = now.confirmed as i64 - opened.confirmed as i64;
            let streamed_ok = (seen.ok_events - ok_events_at_open) as i64;
            let sample = Sample {
                t_s: at.duration_since(clock).as_secs_f64(),
                events: seen.events - events,
                events_per_s: match seconds > 0.0 {
                    true => (seen.events - events) as f64 / seconds,
                    false => 0.0,
                },
                blocks: seen.blocks - blocks,
                applied_blocks: now.applied_total().saturating_sub(previous.applied_total()),
                lag,
                behind_transfers: confirmed - streamed_ok,
            };
            counted = (seen.events, seen.blocks, at);
            (sample, seen.ends[ends_printed..].to_vec(), at)
        };
        previous = now;
        for (t, why) in &ends {
            println!("events_lag: the stream ended at {t:.1} s (run time): {why}");
        }
        ends_printed += ends.len();
        print_sample(&sample);
        samples.push(sample);
        if at.duration_since(clock) >= Duration::from_secs(args.duration_s) {
            break;
        }
        let next = clock + interval * samples.len() as u32;
        tokio::time::sleep_until(next.into()).await;
    }
    reader.abort();

    let seen = seen.lock().unwrap();
    let summary = summarize(&samples, args.grow_tolerance_blocks);
    let cpu_s = cpu_seconds();
    println!("{}", summary.text);
    println!(
        "events_lag: {} events ({} OK) in {} blocks streamed; {} stream end(s); this process \
         used {cpu_s:.1} CPU s in {:.1} s",
        seen.events,
        seen.ok_events,
        seen.blocks,
        seen.ends.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.json {
        let document = json!({
            "grpc": args.grpc,
            "interval_s": args.interval_s,
            "shards": shards,
            "samples": samples.iter().map(|s| json!({
                "t_s": s.t_s,
                "events": s.events,
                "events_per_s": s.events_per_s,
                "blocks": s.blocks,
                "applied_blocks": s.applied_blocks,
                "lag": s.lag.iter().map(|&(shard, lag)| json!({"shard": shard, "lag": lag}))
                    .collect::<Vec<_>>(),
                "max_lag": s.max_lag(),
                "behind_transfers": s.behind_transfers,
            })).collect::<Vec<_>>(),
            "summary": summary.json,
            "events": seen.events,
            "ok_events": seen.ok_events,
            "blocks": seen.blocks,
            "stream_ends": seen.ends.iter().map(|(t, why)| json!({"t_s": t, "why": why}))
                .collect::<Vec<_>>(),
            "cpu_s": cpu_s,
        });
        let text = serde_json::to_string_pretty(&document).expect("JSON of plain values");
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("events_lag: wrote {}", path.display());
    }
    Ok(())
}

/// The node's figures the lag is measured against, polled over their own connection.
#[derive(Clone)]
struct Node {
    consensus: ConsensusServiceClient<Channel>,
    stats: NodeServiceClient<Channel>,
}

/// One poll of the node.
#[derive(Clone)]
struct Polled {
    /// Every shard's applied index, by shard.
    applied: BTreeMap<u32, u64>,
    /// Transfers the node confirmed (result OK) through its API since it started.
    confirmed: u64,
}

impl Polled {
    fn applied_total(&self) -> u64 {
        self.applied.values().sum()
    }
}

impl Node {
    fn new(channel: Channel) -> Node {
        Node {
            consensus: ConsensusServiceClient::new(channel.clone()),
            stats: NodeServiceClient::new(channel),
        }
    }

    /// `ConsensusService/Status` and `NodeService/Stats`, asked at once.
    async fn poll(&mut self) -> Result<Polled, String> {
        let (mut consensus, mut stats) = (self.consensus.clone(), self.stats.clone());
        let (status, counts) = tokio::join!(
            bounded(
                "ConsensusService/Status",
                consensus.status(ConsensusStatusRequest {})
            ),
            bounded("NodeService/Stats", stats.stats(StatsRequest {})),
        );
        let (status, counts) = (status?, counts?);
        if status.shards.is_empty() {
            return Err("ConsensusService/Status: the node reports no shard".into());
        }
        Ok(Polled {
            applied: status
                .shards
                .iter()
                .map(|s| (s.shard, s.applied_index))
                .collect(),
            confirmed: counts.performance.map_or(0, |p| p.total_transactions),
        })
    }
}

/// A unary call under [`POLL_TIMEOUT`].
async fn bounded<T>(
    rpc: &str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(POLL_TIMEOUT, call).await {
        Err(_) => Err(format!("{rpc}: no answer in {POLL_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("{rpc}: {e}")),
        Ok(Ok(answer)) => Ok(answer.into_inner()),
    }
}

async fn connect(url: &str) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("--grpc {url}: {e}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// Waits until the reading task opened the stream (or failed to).
async fn wait_open(seen: &Mutex<Seen>) -> Result<(), String> {
    loop {
        {
            let seen = seen.lock().unwrap();
            if let Some(failed) = &seen.failed {
                return Err(failed.clone());
            }
            if seen.opened {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the stream for as long as the run lasts. If the node ends it, reopens it right after
/// the last block streamed of each shard; if the node no longer holds that (OUT_OF_RANGE),
/// from LATEST, the skipped blocks then left out of the lag (each end is reported).
async fn read_stream(
    mut client: TransactionServiceClient<Channel>,
    mut node: Node,
    seen: Arc<Mutex<Seen>>,
    started: Instant,
) {
    let mut first = true;
    let mut attempts = 0;
    loop {
        let resume_after: Vec<BlockPosition> = match first {
            true => Vec::new(),
            false => {
                let seen = seen.lock().unwrap();
                seen.position
                    .iter()
                    .map(|(&shard, &block_number)| BlockPosition {
                        shard,
                        block_number,
                    })
                    .collect()
            }
        };
        let request = StreamTransactionEventsRequest {
            resume_after,
            start: StartFrom::Latest as i32,
            ..Default::default()
        };
        let opened = match client.stream_transaction_events(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(refused) if refused.code() == Code::OutOfRange => {
                // Too far behind to resume: from LATEST, positions moved to the applied index.
                let opened = client
                    .stream_transaction_events(StreamTransactionEventsRequest::default())
                    .await;
                if opened.is_ok() {
                    if let Ok(now) = node.poll().await {
                        let mut seen = seen.lock().unwrap();
                        let t = started.elapsed().as_secs_f64();
                        seen.ends.push((
                            t,
                            format!(
                                "resume refused ({}); reopened from LATEST",
                                refused.message()
                            ),
                        ));
                        seen.position.extend(now.applied);
                    }
                }
                opened.map(|r| r.into_inner())
            }
            Err(status) => Err(status),
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                attempts += 1;
                if first || attempts >= REOPEN_ATTEMPTS_MAX {
                    seen.lock().unwrap().failed =
                        Some(format!("StreamTransactionEvents: cannot open: {e}"));
                    return;
                }
                tokio::time::sleep(REOPEN_BACKOFF).await;
                continue;
            }
        };
        if first {
            seen.lock().unwrap().opened = true;
            first = false;
        }
        attempts = 0;
        let why = loop {
            match stream.message().await {
                Ok(Some(block)) => {
                    let mut seen = seen.lock().unwrap();
                    // A message without events is progress (the node sends one for a shard
                    // it had nothing to say of for a second): a position, not a block.
                    if !block.events.is_empty() {
                        seen.events += block.events.len() as u64;
                        seen.ok_events += block
                            .events
                            .iter()
                            .filter(|e| e.result == ResultCode::Ok as i32)
                            .count() as u64;
                        seen.blocks += 1;
                    }
                    seen.position.insert(block.shard, block.block_number);
                }
                Ok(None) => break "ended without a status".to_string(),
                Err(status) => break format!("{:?}: {}", status.code(), status.message()),
            }
        };
        let t = started.elapsed().as_secs_f64();
        seen.lock().unwrap().ends.push((t, why));
    }
}

fn print_sample(s: &Sample) {
    let mut line = format!(
        "{:>7.1} {:>10} {:>10.0} {:>8} {:>8}",
        s.t_s, s.events, s.events_per_s, s.blocks, s.applied_blocks
    );
    for (_, lag) in &s.lag {
        line += &format!(" {lag:>8}");
    }
    line += &format!(" {:>8} {:>9}", s.max_lag(), s.behind_transfers);
    println!("{line}");
}

struct Summary {
    text: String,
    json: serde_json::Value,
}

/// The lag at the first and the last sample taken while the load ran, its maximum, its slope
/// over the load, whether it grew, and where it stood at the last sample.
fn summarize(samples: &[Sample], tolerance_blocks: u64) -> Summary {
    // A sample was taken while the load ran if the node applied blocks both in the interval
    // before it and in the one after it (the last sample: before it): the sample in whose
    // interval the load ended sees the tail already drained, not the lag under load.
    let load: Vec<&Sample> = samples
        .iter()
        .enumerate()
        .filter(|&(i, s)| {
            s.applied_blocks > 0
                && samples
                    .get(i + 1)
                    .is_none_or(|next| next.applied_blocks > 0)
        })
        .map(|(_, s)| s)
        .collect();
    let (Some(first), Some(last)) = (load.first(), load.last()) else {
        return Summary {
            text: "events_lag: no sample was taken while the node applied blocks: no load, no \
                   verdict"
                .into(),
            json: json!({"load_samples": 0}),
        };
    };
    let max = load.iter().map(|s| s.max_lag()).max().unwrap_or(0);
    let behind_max = load.iter().map(|s| s.behind_transfers).max().unwrap_or(0);
    let slope = slope_per_minute(&load, |s| s.max_lag() as f64);
    let behind_slope = slope_per_minute(&load, |s| s.behind_transfers as f64);
    let grew = last.max_lag() > first.max_lag() + tolerance_blocks;
    let final_sample = samples.last().expect("a load sample is a sample");
    let load_ran_on = final_sample.applied_blocks > 0;
    let mut text = format!(
        "events_lag: {} samples under load, {:.1} s to {:.1} s. Max lag (blocks): {} at the \
         first, {} at the last, {} at most, slope {:+.1} blocks/min; grew: {} (last > first + \
         {} blocks). Transfers behind: {} at the first, {} at the last, {} at most, slope \
         {:+.0}/min.",
        load.len(),
        first.t_s,
        last.t_s,
        first.max_lag(),
        last.max_lag(),
        max,
        slope,
        if grew { "yes" } else { "no" },
        tolerance_blocks,
        first.behind_transfers,
        last.behind_transfers,
        behind_max,
        behind_slope,
    );
    if load_ran_on {
        text += " The load still ran at the last sample.";
    } else {
        text += &format!(
            " At the last sample ({:.1} s, no load): lag {} blocks, {} transfers behind.",
            final_sample.t_s,
            final_sample.max_lag(),
            final_sample.behind_transfers
        );
    }
    Summary {
        text,
        json: json!({
            "load_samples": load.len(),
            "load_first_t_s": first.t_s,
            "load_last_t_s": last.t_s,
            "lag_first": first.max_lag(),
            "lag_last": last.max_lag(),
            "lag_max": max,
            "lag_slope_blocks_per_min": slope,
            "grew": grew,
            "grow_tolerance_blocks": tolerance_blocks,
            "behind_first": first.behind_transfers,
            "behind_last": last.behind_transfers,
            "behind_max": behind_max,
            "behind_slope_per_min": behind_slope,
            "load_ran_past_the_end": load_ran_on,
            "final_lag": final_sample.max_lag(),
            "final_behind": final_sample.behind_transfers,
        }),
    }
}

/// The least-squares slope of `value` over time, per minute (0 with one sample).
fn slope_per_minute(samples: &[&Sample], value: impl Fn(&Sample) -> f64) -> f64 {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.t_s).sum::<f64>() / n;
    let mean = samples.iter().map(|s| value(s)).sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for s in samples {
        covariance += (s.t_s - mean_t) * (value(s) - mean);
        variance += (s.t_s - mean_t).powi(2);
    }
    match variance > 0.0 {
        true => covariance / variance * 60.0,
        false => 0.0,
    }
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn join(shards: &[u32]) -> String {
    shards
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

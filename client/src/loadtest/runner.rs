//! One run over time: reads every node's metrics, starts the load, moves the ramp's level at
//! each step, and at each report interval's end takes the client's tally, reads the nodes
//! again and prints the interval. At the end (the duration, `--max-requests`, or an
//! interruption) it stops the load, waits for the requests in flight, and closes the last
//! interval with their replies and a last read of the nodes.

use super::driver::{closed_worker, open_scheduler, Shared};
use super::options::Settings;
use super::recorder::Tally;
use super::report::{interval_line, Interval, ServerInterval};
use super::schedule::{interval_bounds, RampKind};
use super::scrape::{node_interval, scrape_all, Scrape};
use crate::http::Client;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a run measured.
pub(crate) struct Outcome {
    pub intervals: Vec<Interval>,
    pub total: Tally,
    /// The nodes' counters from the first read to the last.
    pub whole: ServerInterval,
    /// Every node was read at the start and at the end.
    pub complete: bool,
    pub stopped_early: Option<String>,
}

/// The live progress line: time through the run, and the last interval's figures.
pub(crate) fn progress_bar(duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis().max(1) as u64);
    let style = ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {percent:>3}% {msg}")
        .expect("progress template");
    bar.set_style(style);
    bar
}

fn nodes_between(urls: &[String], before: &[Scrape], after: &[Scrape]) -> ServerInterval {
    ServerInterval::of(
        urls.iter()
            .zip(before.iter().zip(after))
            .map(|(url, (b, a))| node_interval(url, b, a))
            .collect(),
    )
}

/// Moves the level at each step of the ramp until the last.
async fn ramp_levels(settings: Settings, start: Instant, level: watch::Sender<u64>) {
    let ramp = settings.ramp;
    let mut t = Duration::ZERO;
    while let Some(next) = ramp.next_change_after(t) {
        tokio::time::sleep_until((start + next).into()).await;
        if level.send(ramp.level_at(next)).is_err() {
            return;
        }
        t = next;
    }
}

/// Runs the load for `settings` against `shared`'s clients; reads the nodes through
/// `scrapers` (one per URL of `urls`).
pub(crate) async fn run_load(
    shared: Arc<Shared>,
    settings: &Settings,
    scrapers: &[Client],
    urls: &[String],
    interrupt: Option<Arc<AtomicBool>>,
    bar: &ProgressBar,
) -> Outcome {
    let level_name = settings.ramp.kind.name();
    let baseline = scrape_all(scrapers).await;
    let start = Instant::now();
    let ramp = settings.ramp;
    let (level_tx, level_rx) = watch::channel(ramp.level_at(Duration::ZERO));
    let load: Vec<JoinHandle<()>> = match ramp.kind {
        RampKind::Concurrency => (0..ramp.max_level())
            .map(|id| tokio::spawn(closed_worker(shared.clone(), id, level_rx.clone())))
            .collect(),
        RampKind::Rate => vec![tokio::spawn(open_scheduler(
            shared.clone(),
            level_rx.clone(),
            start,
            settings.duration,
            settings.max_in_flight,
        ))],
    };
    drop(level_rx);
    let mut helpers = vec![tokio::spawn(ramp_levels(
        settings.clone(),
        start,
        level_tx.clone(),
    ))];
    if let Some(flag) = interrupt {
        let shared = shared.clone();
        helpers.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if flag.load(Ordering::Relaxed) {
                    shared.request_stop("interrupted (SIGINT or SIGTERM)");
                    return;
                }
            }
        }));
    }
    let ticker = bar.clone();
    helpers.push(tokio::spawn(async move {
        loop {
            ticker.set_position(start.elapsed().as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }));

    let bounds = interval_bounds(settings.duration, settings.report_interval);
    let mut previous = baseline.clone();
    let mut intervals = Vec::with_capacity(bounds.len());
    let mut total = Tally::new();
    let mut load = Some(load);
    let mut interval_start = 0.0;
    for (index, &(_, nominal_end)) in bounds.iter().enumerate() {
        if !shared.stop.load(Ordering::SeqCst) {
            tokio::select! {
                _ = tokio::time::sleep_until((start + nominal_end).into()) => {}
                _ = shared.stopped.notified() => {}
            }
        }
        let last = index + 1 == bounds.len() || shared.stop.load(Ordering::SeqCst);
        let level = ramp.level_at(
            start
                .elapsed()
                .min(nominal_end)
                .saturating_sub(Duration::from_nanos(1)),
        );
        if last {
            // The end: no new request; the last interval waits for those in flight.
            shared.stop.store(true, Ordering::SeqCst);
            let _ = level_tx.send(0);
            for task in load.take().into_iter().flatten() {
                let _ = task.await;
            }
        }
        let end = start.elapsed().as_secs_f64();
        let tally = shared.recorder.take();
        let scrape = scrape_all(scrapers).await;
        let server = nodes_between(urls, &previous, &scrape);
        let interval = Interval::new(index, (interval_start, end), level, &tally, server);
        total.merge(&tally);
        let line = interval_line(&interval, level_name);
        bar.suspend(|| println!("{line}"));
        bar.set_message(format!(
            "{level_name} {} | {:.0} req/s | {:.0} tx/s | p99 {:.1} ms | errors {}",
            interval.level,
            interval.requests_per_second,
            interval.transfers_per_second,
            interval.latency.p99_us as f64 / 1000.0,
            interval.error_count()
        ));
        intervals.push(interval);
        previous = scrape;
        interval_start = end;
        if last {
            break;
        }
    }
    for h in helpers {
        h.abort();
    }
    let whole = nodes_between(urls, &baseline, &previous);
    let complete = baseline.iter().chain(&previous).all(|s| s.error.is_none());
    let stopped_early = shared.stop_reason();
    Outcome {
        intervals,
        total,
        whole,
        complete,
        stopped_early,
    }
}

//! `aurigraph loadtest`: a load that changes over time, measured per interval on both sides
//! (docs/loadtest.md).
//!
//! A closed-loop concurrency ramp (`--start-concurrency` to `--end-concurrency` by `--step`
//! every `--step-interval`) or an open-loop rate ramp (`--start-rate` to `--end-rate`), for
//! `--duration` (by default: up to the end level, then one step interval at it), then it stops.
//! Each request is a binary batch of transfers (the benchmark's accounts, genesis and signing;
//! `--gateway` for unsigned custodial ones), a read of an account, or a GET of `--path`, sent
//! to the nodes round-robin. Every `--report-interval` the client's figures (latency from HDR
//! histograms, throughput, success rate, errors by kind) are closed, and every node's
//! `/metrics` is read: its CPU, memory, per-shard indexes and transfers by result over the same
//! interval. `--out DIR` writes `report.json`, `report.csv` and `report.html`.
//!
//! Modules: [`options`] (flags, bounds, the preset), [`schedule`] (the ramp's arithmetic),
//! `source` (what each request is), `driver` (closed and open loops), `recorder` (the
//! client's tally), [`scrape`] (the nodes' metrics), `runner` (one run over time), [`report`]
//! (the figures, JSON), [`csv`], [`plots`], [`html`] (the page), [`compare`] (two runs).

pub mod compare;
pub mod csv;
mod driver;
pub mod html;
pub mod options;
pub mod plots;
mod recorder;
pub mod report;
mod runner;
pub mod schedule;
pub mod scrape;
mod source;

pub use options::{parse_duration, LoadtestOptions, Preset, Settings, Target};
pub use recorder::{Latency, Percentile};
pub use report::Report;

use crate::bench::load::remote_nonce_bases;
use crate::bench::setup::{self, NodeChoice};
use crate::bench::workload::{Plan, NONCE_WINDOW};
use crate::bench::{BenchError, StartedNode};
use crate::launcher::LaunchError;
use aurigraph_wire::genesis::Genesis;
use report::RunInfo;
use source::{SignerPlan, Signers, Source};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The prefix of the load test's messages.
const TAG: &str = "loadtest";
/// Timeout of one read of a node's metrics.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Transfers the signers keep ready at most (their queue is also bounded in batches).
const AHEAD_TRANSFERS_MAX: usize = 200_000;

/// What went wrong with a load test.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// An option out of range; the message names it.
    #[error("{0}")]
    InvalidOption(String),
    #[error(transparent)]
    Setup(#[from] BenchError),
    #[error(transparent)]
    Genesis(#[from] aurigraph_wire::genesis::GenesisError),
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no request was answered (errors: {0})")]
    NoReplies(String),
    #[error("{0}")]
    Compare(String),
}

/// Runs a load test and returns its report (or, with `--print-genesis`, writes the genesis and
/// returns `None`). Builds its
/// own tokio runtime: call it outside any runtime. `command` is recorded in the report;
/// `interrupt`, once set, ends the run early (its report is still written). `start_node` is
/// called as `aurigraph bench` calls it (see [`crate::bench::run`]), only without
/// `--addresses`.
pub fn run(
    options: LoadtestOptions,
    command: String,
    interrupt: Option<Arc<AtomicBool>>,
    start_node: impl FnOnce(&Genesis, &Path, Option<&Path>) -> Result<StartedNode, LaunchError>,
) -> Result<Option<Report>, LoadtestError> {
    let o = options;
    let settings = o.resolve().map_err(LoadtestError::InvalidOption)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let accounts = setup::accounts(
        o.genesis_seed,
        o.accounts,
        o.chain_id,
        o.shards,
        o.gateway,
        cores,
    );
    if let Some(path) = &o.print_genesis {
        setup::write_genesis(
            TAG,
            path,
            &accounts.genesis_text,
            o.accounts,
            o.genesis_seed,
            o.chain_id,
        )?;
        return Ok(None);
    }
    let genesis = Genesis::from_json(&accounts.genesis_text)?;
    let in_flight = settings.in_flight_max();
    let ahead = (in_flight + 16).min((AHEAD_TRANSFERS_MAX / o.batch_size).max(4));
    let plan = Plan {
        transfers: (o.max_requests as usize).saturating_mul(o.batch_size),
        accounts: o.accounts,
        batch_size: o.batch_size,
        seed: o.genesis_seed,
        lanes: None,
    };
    if o.target == Target::Transfers {
        let spread = plan.nonce_spread(in_flight + ahead);
        if spread > NONCE_WINDOW {
            eprintln!(
                "{TAG}: warning: up to {} batches of {} signed or in flight over {} accounts let \
                 one sender's nonces spread over up to {spread} (> the node's window of \
                 {NONCE_WINDOW}): some transfers may be rejected as NONCE_TOO_OLD; use more \
                 --accounts",
                in_flight + ahead,
                o.batch_size,
                o.accounts
            );
        }
    }
    let nodes = setup::start_or_connect(
        NodeChoice {
            tag: TAG,
            addresses: &o.addresses,
            accounts: o.accounts,
            chain_id: o.chain_id,
            gateway: o.gateway,
            gateway_token_file: o.gateway_token_file.as_deref(),
            keep_data: o.keep_data,
        },
        &genesis,
        start_node,
    )?;
    let urls = nodes.urls.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.client_threads)
        .enable_all()
        .build()
        .map_err(LoadtestError::Runtime)?;
    let timeout = Duration::from_millis(o.timeout_ms);
    let (clients, scrapers) = runtime.block_on(async {
        let per_address = in_flight.div_ceil(urls.len());
        let clients = setup::clients(&urls, timeout, per_address, nodes.gateway_token.as_deref())?;
        let scrapers = setup::clients(&urls, SCRAPE_TIMEOUT, 1, None)?;
        Ok::<_, BenchError>((clients, scrapers))
    })?;
    let deadline = Instant::now() + Duration::from_millis(o.wait_ms);
    let own_cluster = o.addresses.is_empty() && o.nodes > 1;
    runtime.block_on(setup::wait_ready(TAG, &scrapers, deadline, own_cluster))?;

    let (signers, source) = match &o.target {
        Target::Transfers => {
            let nonce_bases = if o.addresses.is_empty() {
                vec![0u64; o.accounts]
            } else {
                eprintln!("{TAG}: checking {} accounts on {}", o.accounts, urls[0]);
                runtime.block_on(remote_nonce_bases(
                    &scrapers[0],
                    &plan,
                    &accounts.addresses,
                    o.chain_id,
                    16,
                ))?
            };
            let (signers, source) = Signers::start(SignerPlan {
                plan,
                keys: accounts.keys,
                addresses: accounts.addresses,
                chain_id: o.chain_id,
                nonce_bases,
                sign: !o.gateway,
                threads: o.sign_threads,
                ahead,
            });
            (Some(signers), source)
        }
        Target::Reads => (None, Source::reads(accounts.addresses)),
        Target::Path(path) => (None, Source::Path(path.clone())),
    };

    let started_unix_seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    eprintln!(
        "{TAG}: {} ramp {} -> {} by {} every {:.1} s, for {:.1} s, report every {:.1} s, against {}",
        settings.ramp.kind.name(),
        settings.ramp.start,
        settings.ramp.end,
        settings.ramp.step,
        settings.ramp.step_interval.as_secs_f64(),
        settings.duration.as_secs_f64(),
        settings.report_interval.as_secs_f64(),
        urls.join(",")
    );
    let shared = Arc::new(driver::Shared::new(source, clients, o.max_requests));
    let bar = runner::progress_bar(settings.duration);
    let outcome = runtime.block_on(runner::run_load(
        shared, &settings, &scrapers, &urls, interrupt, &bar,
    ));
    bar.finish_and_clear();
    if let Some(signers) = signers {
        signers.stop();
    }
    drop(scrapers);
    drop(runtime);

    let run = RunInfo {
        command,
        ramp: settings.ramp.kind.name().to_string(),
        start: settings.ramp.start,
        end: settings.ramp.end,
        step: settings.ramp.step,
        step_interval_seconds: settings.ramp.step_interval.as_secs_f64(),
        report_interval_seconds: settings.report_interval.as_secs_f64(),
        duration_seconds: settings.duration.as_secs_f64(),
        time_factor: o.time_factor,
        preset: o.preset.map(|p| p.name().to_string()),
        target: o.target.name().to_string(),
        path: match &o.target {
            Target::Path(p) => Some(p.clone()),
            _ => None,
        },
        gateway: o.gateway,
        batch_size: o.batch_size,
        accounts: o.accounts,
        addresses: urls,
        started_unix_seconds,
    };
    let report = Report::new(
        run,
        outcome.intervals,
        &outcome.total,
        outcome.whole,
        outcome.complete,
        outcome.stopped_early,
    );
    for line in report.summary_lines() {
        println!("{line}");
    }
    if let Some(dir) = &o.out {
        write_report(&report, dir)?;
        eprintln!(
            "{TAG}: wrote {0}/report.json, {0}/report.csv and {0}/report.html",
            dir.display()
        );
    }
    let mut guard = nodes.guard;
    if report.totals.replied > 0 {
        guard.succeeded();
    }
    drop(guard);
    if report.totals.replied == 0 {
        let errors: Vec<String> = report
            .totals
            .errors
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        return Err(LoadtestError::NoReplies(errors.join(", ")));
    }
    Ok(Some(report))
}

/// Writes `report.json`, `report.csv` and `report.html` into `dir` (created if missing).
pub fn write_report(report: &Report, dir: &Path) -> Result<(), LoadtestError> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| LoadtestError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| LoadtestError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write("report.json", report.to_json())?;
    write("report.csv", csv::to_csv(report))?;
    write("report.html", html::report_html(report))?;
    Ok(())
}

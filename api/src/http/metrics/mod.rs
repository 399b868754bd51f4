//! Measured figures for `GET /api/v11/stats` and `GET /metrics`: the counters (here), the
//! histogram buckets of the windowed percentiles ([`buckets`]), the process figures read from
//! `/proc` ([`process`]), and the `/metrics` exposition ([`render`], one function per family,
//! encoded by [`exposition`]).
//!
//! The hot path (every answered submission) only does relaxed `fetch_add`s on counters of its own
//! core's slot (cache-line aligned, so cores do not contend): transfers confirmed / rejected, and
//! the admission-to-reply latency in a log-bucketed histogram. A sampler task (one per process,
//! on core 0) wakes every second and derives the windowed figures: throughput of the last second,
//! the peak of those, CPU use of the last second, and a latency snapshot every second so that
//! percentiles cover the last [`LATENCY_WINDOW`].
//!
//! For `/metrics` the same hot-path calls also count results per result code, fill
//! Prometheus-style histograms with fixed bounds (admission-to-reply latency, transfers per
//! submission, HTTP request duration per route) and count HTTP requests by route, method and
//! status: all of them relaxed atomics of the core's own slot, summed over the slots at scrape
//! time.

pub mod buckets;
pub mod exposition;
pub mod process;
pub mod render;

pub use buckets::{bucket_of, bucket_value, quantile, BUCKETS};
pub use process::{cpus_available, disk_space, read_cpu_ticks, read_process, read_rss_bytes};

use super::routes::table::{route_label, ROUTE_SLOTS};
use aurigraph_engine::runtime::{AtomicHistogram, HistogramCounts};
use aurigraph_engine::ResultCode;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the sampler runs; `tps` is over one such window.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(1);
/// Latency percentiles cover roughly this much recent time.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(10);

/// Upper bounds of the `aurigraph_transaction_duration_seconds` histogram, in microseconds.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Upper bounds of the `aurigraph_api_request_duration_seconds` histogram, in microseconds.
pub const REQUEST_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Upper bounds of the `aurigraph_batch_size` histogram (transfers per submission).
pub const BATCH_BOUNDS: &[u64] = &[1, 4, 16, 64, 256, 1024, 4096, 16_384, 65_536];

/// Method labels; methods other than these count as `OTHER`.
pub const API_METHODS: &[&str] = &["GET", "POST", "OTHER"];
/// Status labels kept apart; any other status counts as `other`.
pub const API_STATUSES: &[u16] = &[200, 202, 400, 404, 405, 413, 415, 429, 500, 503];
const STATUS_SLOTS: usize = API_STATUSES.len() + 1;
const RESULT_CODES: usize = ResultCode::ALL.len();

/// One core's counters, on their own cache lines.
#[repr(align(128))]
struct CoreSlot {
    /// Decided transfers per result code (index = the code's `u8`).
    results: [AtomicU64; RESULT_CODES],
    detached: AtomicU64,
    latency_us: Box<[AtomicU64]>,
    latency_hist: AtomicHistogram,
    batch_size: AtomicHistogram,
    /// `[route][method][status]`, flattened.
    requests: Box<[AtomicU64]>,
    /// One per route.
    request_us: Box<[AtomicHistogram]>,
    /// gRPC calls, `[rpc][status code]`, flattened (`crate::grpc::RPCS`, the 17 gRPC codes).
    grpc_calls: Box<[AtomicU64]>,
    /// gRPC handling time (to the answer's head), one per RPC.
    grpc_call_us: Box<[AtomicHistogram]>,
    /// Connections this core's listeners (HTTP and gRPC) accepted.
    connections_accepted: AtomicU64,
    bodies_read_direct: AtomicU64,
}

/// gRPC status codes (0 OK to 16 UNAUTHENTICATED).
const GRPC_CODES: usize = 17;

impl CoreSlot {
    fn new() -> CoreSlot {
        CoreSlot {
            results: std::array::from_fn(|_| AtomicU64::new(0)),
            detached: AtomicU64::new(0),
            latency_us: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            latency_hist: AtomicHistogram::new(LATENCY_BOUNDS_US),
            batch_size: AtomicHistogram::new(BATCH_BOUNDS),
            requests: (0..ROUTE_SLOTS * API_METHODS.len() * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            request_us: (0..ROUTE_SLOTS)
                .map(|_| AtomicHistogram::new(REQUEST_BOUNDS_US))
                .collect(),
            grpc_calls: (0..crate::grpc::RPCS.len() * GRPC_CODES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            grpc_call_us: (0..crate::grpc::RPCS.len())
                .map(|_| AtomicHistogram::new(REQUEST_BOUNDS_US))
                .collect(),
            connections_accepted: AtomicU64::new(0),
            bodies_read_direct: AtomicU64::new(0),
        }
    }

    fn confirmed(&self) -> &AtomicU64 {
        &self.results[ResultCode::Ok as usize]
    }
}

/// HTTP requests of one (route, method, status), summed over the cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestCount {
    pub route: &'static str,
    pub method: &'static str,
    /// The status code, or `None` for one not in [`API_STATUSES`].
    pub status: Option<u16>,
    pub count: u64,
}

/// gRPC calls of one (RPC, status), summed over the cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcCount {
    /// The RPC's path (`/aurigraph.v11.TransactionService/SubmitBatch`), or `other`.
    pub rpc: &'static str,
    /// The gRPC status code's name (`OK`, `INVALID_ARGUMENT`, ...).
    pub status: &'static str,
    pub count: u64,
}

/// Histograms and labelled counters for `/metrics`, summed over the cores.
#[derive(Clone, Debug, Default)]
pub struct Histograms {
    /// Decided transfers per result code.
    pub results: Vec<(ResultCode, u64)>,
    /// Admission-to-reply latency, microseconds.
    pub latency_us: HistogramCounts,
    /// Transfers per submission.
    pub batch_size: HistogramCounts,
    /// Non-zero request counts.
    pub requests: Vec<RequestCount>,
    /// Request duration per route (microseconds), routes with requests only.
    pub request_us: Vec<(&'static str, HistogramCounts)>,
    /// Non-zero gRPC call counts.
    pub grpc_calls: Vec<GrpcCount>,
    /// gRPC handling time per RPC (microseconds), RPCs with calls only.
    pub grpc_call_us: Vec<(&'static str, HistogramCounts)>,
}

/// Figures derived by the sampler.
#[derive(Default)]
struct Sampled {
    last_at: Option<Instant>,
    last_confirmed: u64,
    last_cpu_ticks: Option<u64>,
    tps: f64,
    peak_tps: f64,
    cpu_percent: f64,
    /// Cumulative latency counts, one per sample, oldest first, covering `LATENCY_WINDOW`.
    latency_snapshots: VecDeque<(Instant, Vec<u64>)>,
}

/// Process-wide figures, shared by every core's server (`Arc`).
pub struct Metrics {
    started: Instant,
    slots: Box<[CoreSlot]>,
    sampled: Mutex<Sampled>,
    /// Randomness requests served from the OS CSPRNG alone (no verified pulse held). Not on
    /// the transfer path, so one shared atomic is fine.
    beacon_fallbacks: std::sync::atomic::AtomicU64,
    /// Kernel thread id of each core's executor thread (0 until its server starts), for the
    /// per-core CPU figures.
    core_tids: Box<[std::sync::atomic::AtomicI32]>,
}

/// A consistent read of the figures, for the answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub uptime_s: f64,
    pub confirmed: u64,
    pub rejected: u64,
    pub detached: u64,
    pub tps: f64,
    pub avg_tps: f64,
    pub peak_tps: f64,
    pub latency_samples: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub latency_window_s: f64,
    pub memory_mb: f64,
    pub cpu_percent: f64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl Metrics {
    /// `slots` per-core counter slots; core `c` uses slot `c % slots`.
    pub fn new(slots: usize) -> Metrics {
        Metrics {
            started: Instant::now(),
            slots: (0..slots.max(1)).map(|_| CoreSlot::new()).collect(),
            sampled: Mutex::new(Sampled::default()),
            beacon_fallbacks: std::sync::atomic::AtomicU64::new(0),
            core_tids: (0..slots.max(1))
                .map(|_| std::sync::atomic::AtomicI32::new(0))
                .collect(),
        }
    }

    /// Records the calling thread as core `core`'s executor thread (its server calls this
    /// once, on that thread).
    pub fn register_core_thread(&self, core: usize) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        if let Some(slot) = self.core_tids.get(core) {
            slot.store(tid, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// CPU seconds (user + system) used by each registered core's executor thread so far,
    /// from `/proc/self/task/<tid>/stat`: `(core, seconds)`.
    pub fn core_cpu_seconds(&self) -> Vec<(usize, f64)> {
        let ticks = process::clock_ticks_per_second();
        self.core_tids
            .iter()
            .enumerate()
            .filter_map(|(core, tid)| {
                let tid = tid.load(std::sync::atomic::Ordering::Relaxed);
                if tid == 0 {
                    return None;
                }
                let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
                Some((core, process::parse_cpu_ticks(&text)? as f64 / ticks))
            })
            .collect()
    }

    /// Counts one randomness answer served from the local fallback.
    pub fn count_beacon_fallback(&self) {
        self.beacon_fallbacks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Randomness answers served from the local fallback since start.
    pub fn beacon_fallbacks(&self) -> u64 {
        self.beacon_fallbacks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, core: usize) -> &CoreSlot {
        &self.slots[core % self.slots.len()]
    }

    /// Records the transfers of one submission answered after consensus (their result codes),
    /// all of them with the same admission-to-reply `latency`. Also counts the submission as one
    /// batch of that many transfers.
    pub fn record_decided(
        &self,
        core: usize,
        results: impl IntoIterator<Item = ResultCode>,
        latency: Duration,
    ) {
        let mut counts = [0u64; RESULT_CODES];
        for code in results {
            counts[code as usize] += 1;
        }
        let slot = self.slot(core);
        let mut n = 0;
        for (atomic, &c) in slot.results.iter().zip(&counts) {
            if c > 0 {
                atomic.fetch_add(c, Relaxed);
                n += c;
            }
        }
        if n > 0 {
            let us = latency.as_micros().min(u64::MAX as u128) as u64;
            slot.latency_us[bucket_of(us)].fetch_add(n, Relaxed);
            slot.latency_hist.observe_n(us, n);
            slot.batch_size.observe(n);
        }
    }

    /// Records transfers admitted with `?wait=false` (their outcome is not seen here), one
    /// submission of `count` transfers.
    pub fn record_detached(&self, core: usize, count: u64) {
        let slot = self.slot(core);
        slot.detached.fetch_add(count, Relaxed);
        slot.batch_size.observe(count);
    }

    /// Records one answered HTTP request. `route` indexes the route table (its last slot,
    /// [`ROUTE_SLOTS`]` - 1`, is for paths that match no route).
    pub fn record_request(
        &self,
        core: usize,
        route: usize,
        method: &hyper::Method,
        status: u16,
        duration: Duration,
    ) {
        let route = route.min(ROUTE_SLOTS - 1);
        let m = match *method {
            hyper::Method::GET => 0,
            hyper::Method::POST => 1,
            _ => 2,
        };
        let st = API_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(API_STATUSES.len());
        let slot = self.slot(core);
        slot.requests[(route * API_METHODS.len() + m) * STATUS_SLOTS + st].fetch_add(1, Relaxed);
        let us = duration.as_micros().min(u64::MAX as u128) as u64;
        slot.request_us[route].observe(us);
    }

    /// Records one gRPC call: its RPC (an index into [`crate::grpc::RPCS`]), its status code
    /// (for a stream: the one it opened with) and the time to its answer's head.
    pub fn record_grpc(&self, core: usize, rpc: usize, code: tonic::Code, duration: Duration) {
        let rpc = rpc.min(crate::grpc::RPCS.len() - 1);
        let code = (code as usize).min(GRPC_CODES - 1);
        let slot = self.slot(core);
        slot.grpc_calls[rpc * GRPC_CODES + code].fetch_add(1, Relaxed);
        let us = duration.as_micros().min(u64::MAX as u128) as u64;
        slot.grpc_call_us[rpc].observe(us);
    }

    /// Counts one connection accepted by a listener of `core`.
    pub fn count_connection_accepted(&self, core: usize) {
        self.slot(core).connections_accepted.fetch_add(1, Relaxed);
    }

    /// A request body received straight from the socket into its own buffer (`http::direct`).
    pub fn record_direct_body(&self, core: usize) {
        self.slot(core).bodies_read_direct.fetch_add(1, Relaxed);
    }

    /// Request bodies received straight into their own buffer so far, one count per slot.
    pub fn bodies_read_direct(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|s| s.bodies_read_direct.load(Relaxed))
            .collect()
    }

    /// Connections accepted so far, one count per slot (index = core on a node whose slots
    /// are its cores): how connections spread over the cores.
    pub fn connections_accepted(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|s| s.connections_accepted.load(Relaxed))
            .collect()
    }

    /// The gRPC figures, summed over the cores.
    fn grpc_histograms(&self, h: &mut Histograms) {
        let rpcs = crate::grpc::RPCS.len();
        let mut calls = vec![0u64; rpcs * GRPC_CODES];
        let mut call_us = vec![HistogramCounts::default(); rpcs];
        for slot in self.slots.iter() {
            for (total, a) in calls.iter_mut().zip(slot.grpc_calls.iter()) {
                *total += a.load(Relaxed);
            }
            for (total, hist) in call_us.iter_mut().zip(slot.grpc_call_us.iter()) {
                total.add(&hist.read());
            }
        }
        h.grpc_calls = calls
            .iter()
            .enumerate()
            .filter(|(_, &count)| count > 0)
            .map(|(i, &count)| GrpcCount {
                rpc: crate::grpc::RPCS[i / GRPC_CODES],
                status: crate::grpc::status::code_name(tonic::Code::from_i32(
                    (i % GRPC_CODES) as i32,
                )),
                count,
            })
            .collect();
        h.grpc_call_us = call_us
            .into_iter()
            .enumerate()
            .filter(|(_, hist)| hist.count() > 0)
            .map(|(rpc, hist)| (crate::grpc::RPCS[rpc], hist))
            .collect();
    }

    /// The histograms and labelled counters, summed over the cores.
    pub fn histograms(&self) -> Histograms {
        let mut h = Histograms {
            results: ResultCode::ALL.iter().map(|&c| (c, 0)).collect(),
            ..Histograms::default()
        };
        let mut requests = vec![0u64; ROUTE_SLOTS * API_METHODS.len() * STATUS_SLOTS];
        let mut request_us: Vec<HistogramCounts> = vec![HistogramCounts::default(); ROUTE_SLOTS];
        for slot in self.slots.iter() {
            for (r, a) in h.results.iter_mut().zip(&slot.results) {
                r.1 += a.load(Relaxed);
            }
            h.latency_us.add(&slot.latency_hist.read());
            h.batch_size.add(&slot.batch_size.read());
            for (total, a) in requests.iter_mut().zip(slot.requests.iter()) {
                *total += a.load(Relaxed);
            }
            for (total, hist) in request_us.iter_mut().zip(slot.request_us.iter()) {
                total.add(&hist.read());
            }
        }
        for (i, &count) in requests.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let st = i % STATUS_SLOTS;
            let m = (i / STATUS_SLOTS) % API_METHODS.len();
            let route = i / STATUS_SLOTS / API_METHODS.len();
            h.requests.push(RequestCount {
                route: route_label(route),
                method: API_METHODS[m],
                status: API_STATUSES.get(st).copied(),
                count,
            });
        }
        h.request_us = request_us
            .into_iter()
            .enumerate()
            .filter(|(_, hist)| hist.count() > 0)
            .map(|(route, hist)| (route_label(route), hist))
            .collect();
        self.grpc_histograms(&mut h);
        h
    }

    fn total(&self, field: impl Fn(&CoreSlot) -> &AtomicU64) -> u64 {
        self.slots.iter().map(|s| field(s).load(Relaxed)).sum()
    }

    fn latency_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; BUCKETS];
        for slot in self.slots.iter() {
            for (c, a) in counts.iter_mut().zip(slot.latency_us.iter()) {
                *c += a.load(Relaxed);
            }
        }
        counts
    }

    /// One sampler step; call every [`SAMPLE_PERIOD`] from one task.
    pub fn sample(&self) {
        self.sample_at(Instant::now(), read_cpu_ticks())
    }

    fn sample_at(&self, now: Instant, cpu_ticks: Option<u64>) {
        let confirmed = self.total(CoreSlot::confirmed);
        let counts = self.latency_counts();
        let mut s = self.sampled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = s.last_at {
            let elapsed = now.duration_since(last).as_secs_f64();
            if elapsed > 0.0 {
                s.tps = (confirmed - s.last_confirmed) as f64 / elapsed;
                s.peak_tps = s.peak_tps.max(s.tps);
                if let (Some(before), Some(ticks)) = (s.last_cpu_ticks, cpu_ticks) {
                    let cpu_s =
                        ticks.saturating_sub(before) as f64 / process::clock_ticks_per_second();
                    s.cpu_percent = 100.0 * cpu_s / elapsed / cpus_available() as f64;
                }
            }
        }
        s.last_at = Some(now);
        s.last_confirmed = confirmed;
        s.last_cpu_ticks = cpu_ticks;
        s.latency_snapshots.push_back((now, counts));
        // Keep the newest snapshot that is at least LATENCY_WINDOW old as the window's start.
        while s.latency_snapshots.len() > 1
            && now.duration_since(s.latency_snapshots[1].0) >= LATENCY_WINDOW
        {
            s.latency_snapshots.pop_front();
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let uptime = now.duration_since(self.started).as_secs_f64();
        let confirmed = self.total(CoreSlot::confirmed);
        let mut counts = self.latency_counts();
        let s = self.sampled.lock().unwrap_or_else(|e| e.into_inner());
        // Percentiles over the recent window: now minus the oldest kept snapshot.
        let window_start = s.latency_snapshots.front();
        let window = match window_start {
            Some((at, base)) => {
                for (c, b) in counts.iter_mut().zip(base) {
                    *c = c.saturating_sub(*b);
                }
                now.duration_since(*at).as_secs_f64()
            }
            None => uptime,
        };
        let max = counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0.0, bucket_value);
        let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
        Snapshot {
            uptime_s: uptime,
            confirmed,
            rejected: self
                .slots
                .iter()
                .flat_map(|s| s.results.iter().skip(1))
                .map(|a| a.load(Relaxed))
                .sum(),
            detached: self.total(|s| &s.detached),
            tps: s.tps,
            avg_tps: if uptime > 0.0 {
                confirmed as f64 / uptime
            } else {
                0.0
            },
            peak_tps: s.peak_tps,
            latency_samples: counts.iter().sum(),
            p50_ms: ms(quantile(&counts, 0.50)),
            p95_ms: ms(quantile(&counts, 0.95)),
            p99_ms: ms(quantile(&counts, 0.99)),
            p999_ms: ms(quantile(&counts, 0.999)),
            max_ms: ms(max),
            latency_window_s: window,
            memory_mb: read_rss_bytes().map_or(0.0, |b| b as f64 / (1024.0 * 1024.0)),
            cpu_percent: s.cpu_percent,
        }
    }
}

#[cfg(test)]
mod tests;

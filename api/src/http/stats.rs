//! Measured figures for `GET /api/v11/stats` and `GET /metrics`.
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

/// Sub-buckets per power of two: values are kept within 1/16 (6.25 %) of their true value.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Largest exponent kept (values are in microseconds: 2^40 µs is about 12 days).
const EXP_MAX: u32 = 40;
/// Buckets of the histogram.
pub const BUCKETS: usize = (SUB + (EXP_MAX - SUB_BITS) as u64 * SUB) as usize;

/// The bucket of a value (exact below 16, then 16 buckets per power of two, clamped at the top).
pub fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let e = (63 - value.leading_zeros()).min(EXP_MAX - 1);
    let m = if e == EXP_MAX - 1 && value >> e > 1 {
        SUB - 1 // beyond the range: the last bucket
    } else {
        (value >> (e - SUB_BITS)) - SUB
    };
    (SUB + (e - SUB_BITS) as u64 * SUB + m) as usize
}

/// The midpoint of a bucket's range of values.
pub fn bucket_value(index: usize) -> f64 {
    let i = index as u64;
    if i < SUB {
        return i as f64;
    }
    let e = (i - SUB) / SUB + SUB_BITS as u64;
    let m = (i - SUB) % SUB;
    let width = 1u64 << (e - SUB_BITS as u64);
    ((SUB + m) * width) as f64 + (width as f64 - 1.0) / 2.0
}

/// The value at quantile `q` (0..=1) of bucket counts, or 0 when empty.
pub fn quantile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return bucket_value(i);
        }
    }
    bucket_value(counts.len() - 1)
}

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

/// Route labels of `aurigraph_api_requests_total` (path templates); the last is for paths that
/// match no route.
pub const API_ROUTES: &[&str] = &[
    "/q/health/live",
    "/q/health/ready",
    "/metrics",
    "/api/v11/health",
    "/api/v11/info",
    "/api/v11/stats",
    "/api/v11/transactions",
    "/api/v11/transactions/batch",
    "/api/v11/transactions/{txHash}",
    "/api/v11/accounts/{address}",
    "/api/v11/blocks/latest",
    "/api/v11/blocks/{shard}/{height}",
    "/api/v11/validators",
    "/api/v11/admin/validators",
    "/api/v11/consensus/status",
    "/api/v11/openapi.json",
    "/api/v11/quantum/randomness/random-bytes",
    "/api/v11/quantum/randomness/transaction-nonce",
    "/api/v11/quantum/randomness/crypto-seed",
    "/api/v11/quantum/randomness/health",
    "/api/v11/quantum/randomness/info",
    "/api/v11/quantum/randomness/pulse/latest",
    "unmatched",
];
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
}

impl CoreSlot {
    fn new() -> CoreSlot {
        CoreSlot {
            results: std::array::from_fn(|_| AtomicU64::new(0)),
            detached: AtomicU64::new(0),
            latency_us: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            latency_hist: AtomicHistogram::new(LATENCY_BOUNDS_US),
            batch_size: AtomicHistogram::new(BATCH_BOUNDS),
            requests: (0..API_ROUTES.len() * API_METHODS.len() * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            request_us: (0..API_ROUTES.len())
                .map(|_| AtomicHistogram::new(REQUEST_BOUNDS_US))
                .collect(),
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
        let ticks = clock_ticks_per_second();
        self.core_tids
            .iter()
            .enumerate()
            .filter_map(|(core, tid)| {
                let tid = tid.load(std::sync::atomic::Ordering::Relaxed);
                if tid == 0 {
                    return None;
                }
                let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
                Some((core, parse_cpu_ticks(&text)? as f64 / ticks))
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

    /// Records one answered HTTP request. `route` indexes [`API_ROUTES`].
    pub fn record_request(
        &self,
        core: usize,
        route: usize,
        method: &hyper::Method,
        status: u16,
        duration: Duration,
    ) {
        let route = route.min(API_ROUTES.len() - 1);
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

    /// The histograms and labelled counters, summed over the cores.
    pub fn histograms(&self) -> Histograms {
        let mut h = Histograms {
            results: ResultCode::ALL.iter().map(|&c| (c, 0)).collect(),
            ..Histograms::default()
        };
        let mut requests = vec![0u64; API_ROUTES.len() * API_METHODS.len() * STATUS_SLOTS];
        let mut request_us: Vec<HistogramCounts> =
            vec![HistogramCounts::default(); API_ROUTES.len()];
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
                route: API_ROUTES[route],
                method: API_METHODS[m],
                status: API_STATUSES.get(st).copied(),
                count,
            });
        }
        h.request_us = API_ROUTES
            .iter()
            .zip(request_us)
            .filter(|(_, hist)| hist.count() > 0)
            .map(|(&route, hist)| (route, hist))
            .collect();
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
                    let cpu_s = ticks.saturating_sub(before) as f64 / clock_ticks_per_second();
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

/// Resident set size from `/proc/self/statm` (second field, in pages).
pub fn read_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * if page > 0 { page as u64 } else { 4096 })
}

/// utime + stime of this process from `/proc/self/stat`, in clock ticks.
pub fn read_cpu_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&text)
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The standard `process_*` figures of the Prometheus client libraries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    /// Unix time the process started, seconds.
    pub start_time_seconds: f64,
}

/// Reads this process's figures from `/proc` (fields that cannot be read stay 0).
pub fn read_process() -> ProcessFigures {
    let mut p = ProcessFigures {
        resident_bytes: read_rss_bytes().unwrap_or(0),
        ..ProcessFigures::default()
    };
    let ticks = clock_ticks_per_second();
    if let Ok(text) = std::fs::read_to_string("/proc/self/stat") {
        p.cpu_seconds = parse_cpu_ticks(&text).map_or(0.0, |t| t as f64 / ticks);
        if let Some(close) = text.rfind(')') {
            // Fields after the command name, starting with field 3 (state) at index 0.
            let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            p.threads = field(20).unwrap_or(0);
            p.virtual_bytes = field(23).unwrap_or(0);
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
                stat.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            if let (Some(boot), Some(start)) = (boot, field(22)) {
                p.start_time_seconds = boot as f64 + start as f64 / ticks;
            }
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        p.max_fds = limit.rlim_cur;
    }
    p
}

/// Capacity and space available to this (unprivileged) process on the file system of `path`.
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPUs this process may run on (affinity and cgroup aware).
pub fn cpus_available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 30, (1 << 39) + 5, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v >= 1 << 30, "{v}");
            assert!(b < BUCKETS, "{v} -> {b}");
            last = b;
            if v < (1 << 39) {
                let mid = bucket_value(b);
                assert!(
                    (mid - v as f64).abs() <= (v as f64 / 16.0).max(0.0) + 0.5,
                    "{v} -> {mid}"
                );
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for v in 0..16 {
            assert_eq!(bucket_value(bucket_of(v)), v as f64);
        }
    }

    #[test]
    fn quantiles_of_known_distributions() {
        let mut counts = vec![0u64; BUCKETS];
        assert_eq!(quantile(&counts, 0.5), 0.0);
        for v in 1..=1000u64 {
            counts[bucket_of(v * 1000)] += 1; // 1 ms .. 1000 ms in µs
        }
        let p50 = quantile(&counts, 0.5) / 1000.0;
        let p99 = quantile(&counts, 0.99) / 1000.0;
        assert!((p50 - 500.0).abs() < 500.0 / 16.0, "{p50}");
        assert!((p99 - 990.0).abs() < 990.0 / 16.0, "{p99}");
        assert!(quantile(&counts, 1.0) >= quantile(&counts, 0.999));
    }

    #[test]
    fn counters_tps_and_windowed_latency() {
        let m = Metrics::new(2);
        let t0 = Instant::now();
        m.sample_at(t0, Some(0));
        let codes = |ok: usize, bad: usize| {
            std::iter::repeat_n(ResultCode::Ok, ok)
                .chain(std::iter::repeat_n(ResultCode::InsufficientFunds, bad))
        };
        m.record_decided(0, codes(900, 100), Duration::from_millis(4));
        m.record_decided(3, codes(100, 0), Duration::from_millis(8));
        m.record_detached(1, 5);
        m.sample_at(t0 + Duration::from_secs(1), Some(0));
        let s = m.snapshot();
        assert_eq!((s.confirmed, s.rejected, s.detached), (1000, 100, 5));
        assert!((s.tps - 1000.0).abs() < 1e-6, "{}", s.tps);
        assert!((s.peak_tps - 1000.0).abs() < 1e-6);
        assert_eq!(s.latency_samples, 1100);
        assert!((s.p50_ms - 4.0).abs() < 0.3, "{}", s.p50_ms);
        assert!((s.p99_ms - 8.0).abs() < 0.6, "{}", s.p99_ms);
        // A quiet second: tps falls to 0, the peak stays.
        m.sample_at(t0 + Duration::from_secs(2), Some(0));
        let s = m.snapshot();
        assert_eq!(s.tps, 0.0);
        assert!((s.peak_tps - 1000.0).abs() < 1e-6);
        // Beyond the latency window, old latencies leave the percentiles.
        for k in 3..15 {
            m.sample_at(t0 + Duration::from_secs(k), Some(0));
        }
        assert_eq!(m.snapshot().latency_samples, 0);
        assert_eq!(m.snapshot().p99_ms, 0.0);
    }

    #[test]
    fn histograms_results_and_requests() {
        let m = Metrics::new(2);
        m.record_decided(
            0,
            [ResultCode::Ok, ResultCode::Ok, ResultCode::NonceReplayed],
            Duration::from_micros(700),
        );
        m.record_decided(1, [ResultCode::Ok], Duration::from_millis(30));
        m.record_detached(1, 10);
        m.record_request(0, 6, &hyper::Method::POST, 200, Duration::from_micros(800));
        m.record_request(1, 6, &hyper::Method::POST, 200, Duration::from_micros(900));
        m.record_request(1, 99, &hyper::Method::PUT, 418, Duration::from_micros(5));
        let h = m.histograms();
        assert_eq!(h.results[0], (ResultCode::Ok, 3));
        assert_eq!(h.results[ResultCode::NonceReplayed as usize].1, 1);
        assert_eq!(h.results.iter().map(|r| r.1).sum::<u64>(), 4);
        assert_eq!(h.latency_us.count(), 4);
        assert_eq!(h.latency_us.sum, 3 * 700 + 30_000);
        // 700 µs falls under le=1000 µs, 30 ms under le=50 ms.
        assert_eq!(h.latency_us.counts[3], 3);
        assert_eq!(h.latency_us.counts[8], 1);
        // Three submissions: 3, 1 and 10 transfers.
        assert_eq!(h.batch_size.count(), 3);
        assert_eq!(h.batch_size.sum, 14);
        assert_eq!(
            h.requests,
            vec![
                RequestCount {
                    route: "/api/v11/transactions",
                    method: "POST",
                    status: Some(200),
                    count: 2
                },
                RequestCount {
                    route: "unmatched",
                    method: "OTHER",
                    status: None,
                    count: 1
                },
            ]
        );
        assert_eq!(h.request_us.len(), 2);
        assert_eq!(h.request_us[0].1.count(), 2);
        let s = m.snapshot();
        assert_eq!((s.confirmed, s.rejected, s.detached), (3, 1, 10));
    }

    #[test]
    fn reads_proc() {
        let p = read_process();
        assert!(
            p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes,
            "{p:?}"
        );
        assert!(
            p.threads >= 1 && p.open_fds >= 1 && p.max_fds >= p.open_fds,
            "{p:?}"
        );
        assert!(p.start_time_seconds > 1.5e9, "{p:?}");
        let (capacity, available) = disk_space(std::path::Path::new("/")).unwrap();
        assert!(capacity >= available && capacity > 0);
        assert_eq!(
            parse_cpu_ticks("123 (a b) c) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0"),
            Some(100)
        );
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(read_rss_bytes().unwrap() > 0);
        assert!(read_cpu_ticks().is_some());
    }
}

//! The options of `aurigraph loadtest`, their bounds, the preset, and how they resolve into
//! the [`Settings`] of one run (preset first, explicit flags over it, then `--time-factor`).

use super::schedule::{Ramp, RampKind};
use crate::bench::BENCH_CHAIN_ID;
use crate::launcher::LOCAL_NODES_MAX;
use aurigraph_wire::genesis::GENESIS_ALLOCATIONS_MAX;
use std::path::PathBuf;
use std::time::Duration;

/// Requests in flight at most in a closed loop.
pub const CONCURRENCY_MAX: u64 = 4096;
/// Requests per second at most in an open loop.
pub const RATE_MAX: u64 = 1_000_000;
/// Shortest report interval and step interval (after `--time-factor`).
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Longest run (after `--time-factor`).
pub const DURATION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most report intervals in one run.
pub const INTERVALS_MAX: u64 = 10_000;
/// Smallest and largest `--time-factor`.
pub const TIME_FACTOR_MIN: f64 = 0.0001;
pub const TIME_FACTOR_MAX: f64 = 100.0;
/// Transfers per request at most.
pub const BATCH_SIZE_MAX: usize = 1000;
/// Requests one run may send at most (`--max-requests`), and its default.
pub const MAX_REQUESTS_MAX: u64 = 1_000_000_000;
pub const MAX_REQUESTS_DEFAULT: u64 = 100_000_000;
/// Open loop: requests in flight at most (`--max-in-flight`), and its default.
pub const MAX_IN_FLIGHT_MAX: usize = 65_536;
pub const MAX_IN_FLIGHT_DEFAULT: usize = 1024;
/// Nodes a run may address.
pub const ADDRESSES_MAX: usize = 64;
/// Per-request timeout bounds, in milliseconds.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// Longest `--path`.
pub const PATH_LEN_MAX: usize = 1024;

/// A named shape of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The old system's 4-hour test: 1 request in flight, 5 more every 20 minutes up to 50,
    /// figures every 5 minutes, 4 hours in all.
    V11FourHours,
}

impl Preset {
    pub const NAMES: &'static [&'static str] = &["v11-4h"];

    pub fn name(self) -> &'static str {
        match self {
            Preset::V11FourHours => "v11-4h",
        }
    }

    pub fn parse(name: &str) -> Result<Preset, String> {
        match name {
            "v11-4h" => Ok(Preset::V11FourHours),
            _ => Err(format!(
                "unknown preset {name:?} (known: {})",
                Preset::NAMES.join(", ")
            )),
        }
    }

    /// (start, end, step) of the concurrency, step interval, report interval, duration.
    fn shape(self) -> (u64, u64, u64, Duration, Duration, Duration) {
        match self {
            Preset::V11FourHours => (
                1,
                50,
                5,
                Duration::from_secs(20 * 60),
                Duration::from_secs(5 * 60),
                Duration::from_secs(4 * 3600),
            ),
        }
    }
}

/// What each request does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// A binary batch of `--batch-size` transfers (signed, or unsigned to the gateway endpoint).
    #[default]
    Transfers,
    /// `GET /api/v11/accounts/{address}` of the run's accounts in turn.
    Reads,
    /// `GET` of one path.
    Path(String),
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Transfers => "transfers",
            Target::Reads => "reads",
            Target::Path(_) => "path",
        }
    }
}

/// The options of one run, as given (`aurigraph loadtest --help` describes each).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadtestOptions {
    pub addresses: Vec<String>,
    pub nodes: usize,
    pub preset: Option<Preset>,
    pub start_concurrency: Option<u64>,
    pub end_concurrency: Option<u64>,
    pub start_rate: Option<u64>,
    pub end_rate: Option<u64>,
    pub step: Option<u64>,
    pub step_interval: Option<Duration>,
    pub report_interval: Option<Duration>,
    pub duration: Option<Duration>,
    pub time_factor: f64,
    pub target: Target,
    pub gateway: bool,
    pub gateway_token_file: Option<PathBuf>,
    pub batch_size: usize,
    pub accounts: usize,
    pub genesis_seed: u64,
    pub chain_id: u32,
    pub shards: Option<u32>,
    pub print_genesis: Option<PathBuf>,
    pub timeout_ms: u64,
    pub wait_ms: u64,
    pub client_threads: usize,
    pub sign_threads: usize,
    pub max_in_flight: Option<usize>,
    pub max_requests: u64,
    pub out: Option<PathBuf>,
    pub keep_data: bool,
}

impl Default for LoadtestOptions {
    /// The defaults of `aurigraph loadtest`.
    fn default() -> LoadtestOptions {
        LoadtestOptions {
            addresses: Vec::new(),
            nodes: 1,
            preset: None,
            start_concurrency: None,
            end_concurrency: None,
            start_rate: None,
            end_rate: None,
            step: None,
            step_interval: None,
            report_interval: None,
            duration: None,
            time_factor: 1.0,
            target: Target::Transfers,
            gateway: false,
            gateway_token_file: None,
            batch_size: 1,
            accounts: 10_000,
            genesis_seed: 0,
            chain_id: BENCH_CHAIN_ID,
            shards: None,
            print_genesis: None,
            timeout_ms: 30_000,
            wait_ms: 30_000,
            client_threads: 2,
            sign_threads: 1,
            max_in_flight: None,
            max_requests: MAX_REQUESTS_DEFAULT,
            out: None,
            keep_data: false,
        }
    }
}

/// Defaults of a ramp given without a preset.
const DEFAULT_START_CONCURRENCY: u64 = 1;
const DEFAULT_END_CONCURRENCY: u64 = 10;
const DEFAULT_STEP_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// A run's shape once resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub ramp: Ramp,
    pub report_interval: Duration,
    pub duration: Duration,
    /// Open loop: requests in flight at most.
    pub max_in_flight: usize,
}

impl Settings {
    /// Report intervals of the run (the last may be shorter).
    pub fn intervals(&self) -> u64 {
        (self
            .duration
            .as_nanos()
            .div_ceil(self.report_interval.as_nanos())) as u64
    }

    /// Connections a node may need at most.
    pub fn in_flight_max(&self) -> usize {
        match self.ramp.kind {
            RampKind::Concurrency => self.ramp.max_level() as usize,
            RampKind::Rate => self.max_in_flight,
        }
    }
}

fn bad(message: impl Into<String>) -> String {
    message.into()
}

fn scaled(d: Duration, factor: f64) -> Duration {
    Duration::from_secs_f64((d.as_secs_f64() * factor).min(DURATION_MAX.as_secs_f64() * 2.0))
}

fn check_level(flag: &str, value: u64, max: u64) -> Result<u64, String> {
    if value == 0 || value > max {
        return Err(bad(format!(
            "{flag} must be between 1 and {max} (got {value})"
        )));
    }
    Ok(value)
}

fn check_interval(flag: &str, d: Duration, hint: &str) -> Result<Duration, String> {
    if d < INTERVAL_MIN {
        return Err(bad(format!(
            "{flag} must be at least {} ms{hint} (got {:.3} s)",
            INTERVAL_MIN.as_millis(),
            d.as_secs_f64()
        )));
    }
    if d > DURATION_MAX {
        return Err(bad(format!(
            "{flag} must be at most {} days{hint}",
            DURATION_MAX.as_secs() / 86_400
        )));
    }
    Ok(d)
}

impl LoadtestOptions {
    /// The options other than the ramp's: each within its bounds, none contradicting another.
    fn check_others(&self) -> Result<(), String> {
        if self.accounts < 2 || self.accounts > GENESIS_ALLOCATIONS_MAX {
            return Err(bad(format!(
                "--accounts must be between 2 and {GENESIS_ALLOCATIONS_MAX}"
            )));
        }
        if self.batch_size == 0 || self.batch_size > BATCH_SIZE_MAX {
            return Err(bad(format!(
                "--batch-size must be between 1 and {BATCH_SIZE_MAX}"
            )));
        }
        if !(1..=LOCAL_NODES_MAX).contains(&self.nodes) {
            return Err(bad(format!(
                "--nodes must be between 1 and {LOCAL_NODES_MAX}"
            )));
        }
        if self.nodes > 1 && !self.addresses.is_empty() {
            return Err(bad(
                "--nodes starts a local cluster; it cannot be combined with --addresses",
            ));
        }
        if self.addresses.len() > ADDRESSES_MAX {
            return Err(bad(format!(
                "--addresses takes at most {ADDRESSES_MAX} nodes"
            )));
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            return Err(bad(format!(
                "--timeout-ms must be between 1 and {TIMEOUT_MS_MAX}"
            )));
        }
        if self.wait_ms > TIMEOUT_MS_MAX {
            return Err(bad(format!("--wait-ms must be at most {TIMEOUT_MS_MAX}")));
        }
        if !(1..=64).contains(&self.client_threads) {
            return Err(bad("--client-threads must be between 1 and 64"));
        }
        if !(1..=64).contains(&self.sign_threads) {
            return Err(bad("--sign-threads must be between 1 and 64"));
        }
        if self.max_requests == 0 || self.max_requests > MAX_REQUESTS_MAX {
            return Err(bad(format!(
                "--max-requests must be between 1 and {MAX_REQUESTS_MAX}"
            )));
        }
        if self.gateway && self.target != Target::Transfers {
            return Err(bad(
                "--gateway goes with transfers, not with --target reads or --path",
            ));
        }
        if self.gateway && !self.addresses.is_empty() && self.gateway_token_file.is_none() {
            return Err(bad(
                "--gateway with --addresses needs --gateway-token-file: the token of gateway \
                 \"bench\" on those nodes (`aurigraph token new --name bench`)",
            ));
        }
        if self.gateway_token_file.is_some() && !self.gateway {
            return Err(bad("--gateway-token-file goes with --gateway"));
        }
        if let Target::Path(path) = &self.target {
            check_path(path)?;
        }
        if !(TIME_FACTOR_MIN..=TIME_FACTOR_MAX).contains(&self.time_factor) {
            return Err(bad(format!(
                "--time-factor must be between {TIME_FACTOR_MIN} and {TIME_FACTOR_MAX} (got {})",
                self.time_factor
            )));
        }
        Ok(())
    }

    /// The run's shape: the preset's values, the flags given over them, `--time-factor`
    /// applied to every duration, each bounded. The message of an error names the flag.
    pub fn resolve(&self) -> Result<Settings, String> {
        self.check_others()?;
        let concurrency_flags = self.start_concurrency.is_some() || self.end_concurrency.is_some();
        let rate_flags = self.start_rate.is_some() || self.end_rate.is_some();
        if concurrency_flags && rate_flags {
            return Err(bad(
                "--start-concurrency/--end-concurrency (closed loop) and --start-rate/--end-rate \
                 (open loop) exclude each other",
            ));
        }
        if rate_flags && self.preset.is_some() {
            return Err(bad(
                "--preset is a concurrency ramp; it cannot be combined with --start-rate",
            ));
        }
        if self.end_rate.is_some() && self.start_rate.is_none() {
            return Err(bad("--end-rate needs --start-rate"));
        }
        if self.max_in_flight.is_some() && !rate_flags {
            return Err(bad("--max-in-flight goes with --start-rate (open loop)"));
        }
        let preset = self.preset.map(Preset::shape);
        let (kind, start, end, max) = if rate_flags {
            let start = check_level("--start-rate", self.start_rate.unwrap_or(1), RATE_MAX)?;
            let end = check_level("--end-rate", self.end_rate.unwrap_or(start), RATE_MAX)?;
            (RampKind::Rate, start, end, RATE_MAX)
        } else {
            let (d_start, d_end) = preset
                .map_or((DEFAULT_START_CONCURRENCY, DEFAULT_END_CONCURRENCY), |p| {
                    (p.0, p.1)
                });
            let start = check_level(
                "--start-concurrency",
                self.start_concurrency.unwrap_or(d_start),
                CONCURRENCY_MAX,
            )?;
            let end = check_level(
                "--end-concurrency",
                self.end_concurrency
                    .unwrap_or(if self.start_concurrency.is_some() {
                        d_end.max(start)
                    } else {
                        d_end
                    }),
                CONCURRENCY_MAX,
            )?;
            (RampKind::Concurrency, start, end, CONCURRENCY_MAX)
        };
        let default_step = match (kind, preset) {
            (RampKind::Concurrency, Some(p)) => p.2,
            (RampKind::Concurrency, None) => 1,
            (RampKind::Rate, _) => (start.abs_diff(end) / 10).max(1),
        };
        let step = check_level("--step", self.step.unwrap_or(default_step), max)?;
        let factor = self.time_factor;
        let hint = if factor == 1.0 {
            ""
        } else {
            " after --time-factor"
        };
        let step_interval = check_interval(
            "--step-interval",
            scaled(
                self.step_interval
                    .or(preset.map(|p| p.3))
                    .unwrap_or(DEFAULT_STEP_INTERVAL),
                factor,
            ),
            hint,
        )?;
        let report_interval = check_interval(
            "--report-interval",
            scaled(
                self.report_interval
                    .or(preset.map(|p| p.4))
                    .unwrap_or(DEFAULT_REPORT_INTERVAL),
                factor,
            ),
            hint,
        )?;
        let ramp = Ramp {
            kind,
            start,
            end,
            step,
            step_interval,
        };
        let duration = match self.duration.or(preset.map(|p| p.5)) {
            Some(d) => scaled(d, factor),
            None => ramp.default_duration(),
        };
        let duration = check_interval("--duration", duration, hint)?;
        if duration < report_interval {
            return Err(bad(format!(
                "--duration ({:.3} s) must be at least --report-interval ({:.3} s)",
                duration.as_secs_f64(),
                report_interval.as_secs_f64()
            )));
        }
        let settings = Settings {
            ramp,
            report_interval,
            duration,
            max_in_flight: self.max_in_flight.unwrap_or(MAX_IN_FLIGHT_DEFAULT),
        };
        if settings.max_in_flight == 0 || settings.max_in_flight > MAX_IN_FLIGHT_MAX {
            return Err(bad(format!(
                "--max-in-flight must be between 1 and {MAX_IN_FLIGHT_MAX}"
            )));
        }
        if settings.intervals() > INTERVALS_MAX {
            return Err(bad(format!(
                "--duration / --report-interval makes {} intervals; at most {INTERVALS_MAX}",
                settings.intervals()
            )));
        }
        Ok(settings)
    }
}

/// A path a run may GET: absolute, printable, without spaces, at most [`PATH_LEN_MAX`] bytes.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(bad(format!(
            "--path must start with one / (e.g. /api/v11/health), got {path:?}"
        )));
    }
    if path.len() > PATH_LEN_MAX {
        return Err(bad(format!("--path must be at most {PATH_LEN_MAX} bytes")));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!(
            "--path must not contain spaces or control characters: {path:?}"
        )));
    }
    Ok(())
}

/// A duration as `--step-interval`, `--report-interval` and `--duration` take it: a number with
/// a unit, `ms`, `s`, `m` or `h` (`500ms`, `2.5s`, `20m`, `4h`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 30s, 20m, 4h)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds > DURATION_MAX.as_secs_f64() * 1000.0 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(f: impl FnOnce(&mut LoadtestOptions)) -> Result<Settings, String> {
        let mut o = LoadtestOptions::default();
        f(&mut o);
        o.resolve()
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14_400)));
        for bad in ["", "s", "ten", "5 d", "-1s", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_resolve_to_a_closed_ramp_that_stops() {
        let s = resolve(|_| {}).unwrap();
        assert_eq!(s.ramp.kind, RampKind::Concurrency);
        assert_eq!((s.ramp.start, s.ramp.end, s.ramp.step), (1, 10, 1));
        // 9 steps to the end, then one interval at the end.
        assert_eq!(s.duration, Duration::from_secs(100));
        assert_eq!(s.intervals(), 20);
        assert_eq!(s.in_flight_max(), 10);
    }

    #[test]
    fn the_preset_scales_with_the_time_factor() {
        let s = resolve(|o| o.preset = Some(Preset::V11FourHours)).unwrap();
        assert_eq!((s.ramp.start, s.ramp.end, s.ramp.step), (1, 50, 5));
        assert_eq!(s.duration, Duration::from_secs(4 * 3600));
        assert_eq!(s.intervals(), 48);
        let s = resolve(|o| {
            o.preset = Some(Preset::V11FourHours);
            o.time_factor = 0.01;
        })
        .unwrap();
        assert_eq!(s.duration, Duration::from_secs(144)); // 2.4 min
        assert_eq!(s.ramp.step_interval, Duration::from_secs(12));
        assert_eq!(s.report_interval, Duration::from_secs(3));
        // Explicit flags win over the preset.
        let s = resolve(|o| {
            o.preset = Some(Preset::V11FourHours);
            o.end_concurrency = Some(20);
            o.duration = Some(Duration::from_secs(600));
        })
        .unwrap();
        assert_eq!((s.ramp.end, s.duration), (20, Duration::from_secs(600)));
        assert_eq!(Preset::parse("v11-4h"), Ok(Preset::V11FourHours));
        assert!(Preset::parse("x").unwrap_err().contains("v11-4h"));
    }

    #[test]
    fn an_open_ramp_takes_rates() {
        let s = resolve(|o| {
            o.start_rate = Some(100);
            o.end_rate = Some(1000);
        })
        .unwrap();
        assert_eq!(s.ramp.kind, RampKind::Rate);
        assert_eq!(s.ramp.step, 90);
        assert_eq!(s.in_flight_max(), MAX_IN_FLIGHT_DEFAULT);
    }

    #[test]
    fn every_bound_is_checked_with_the_flag_named() {
        type Change = Box<dyn Fn(&mut LoadtestOptions)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "--start-concurrency",
                Box::new(|o| o.start_concurrency = Some(0)),
            ),
            (
                "--end-concurrency",
                Box::new(|o| o.end_concurrency = Some(CONCURRENCY_MAX + 1)),
            ),
            (
                "--start-rate",
                Box::new(|o| o.start_rate = Some(RATE_MAX + 1)),
            ),
            ("--end-rate", Box::new(|o| o.end_rate = Some(10))),
            ("--step", Box::new(|o| o.step = Some(0))),
            (
                "--step-interval",
                Box::new(|o| o.step_interval = Some(Duration::from_millis(10))),
            ),
            (
                "--report-interval",
                Box::new(|o| o.report_interval = Some(Duration::ZERO)),
            ),
            (
                "--duration",
                Box::new(|o| o.duration = Some(Duration::from_secs(1))),
            ),
            (
                "--duration",
                Box::new(|o| o.duration = Some(DURATION_MAX * 2)),
            ),
            (
                "--duration",
                Box::new(|o| {
                    o.report_interval = Some(Duration::from_millis(100));
                    o.duration = Some(Duration::from_secs(3600));
                }),
            ),
            ("--time-factor", Box::new(|o| o.time_factor = 0.0)),
            ("--time-factor", Box::new(|o| o.time_factor = f64::NAN)),
            (
                "--step-interval",
                Box::new(|o| {
                    o.step_interval = Some(Duration::from_millis(500));
                    o.time_factor = 0.1;
                }),
            ),
            (
                "--batch-size",
                Box::new(|o| o.batch_size = BATCH_SIZE_MAX + 1),
            ),
            ("--accounts", Box::new(|o| o.accounts = 1)),
            ("--nodes", Box::new(|o| o.nodes = 0)),
            (
                "--nodes",
                Box::new(|o| {
                    o.nodes = 3;
                    o.addresses = vec!["http://a:1".into()];
                }),
            ),
            ("--timeout-ms", Box::new(|o| o.timeout_ms = 0)),
            ("--max-requests", Box::new(|o| o.max_requests = 0)),
            ("--max-in-flight", Box::new(|o| o.max_in_flight = Some(8))),
            (
                "--max-in-flight",
                Box::new(|o| {
                    o.start_rate = Some(5);
                    o.max_in_flight = Some(0);
                }),
            ),
            (
                "--start-concurrency",
                Box::new(|o| {
                    o.start_concurrency = Some(2);
                    o.start_rate = Some(2);
                }),
            ),
            (
                "--preset",
                Box::new(|o| {
                    o.preset = Some(Preset::V11FourHours);
                    o.start_rate = Some(2);
                }),
            ),
            (
                "--gateway",
                Box::new(|o| {
                    o.gateway = true;
                    o.target = Target::Reads;
                }),
            ),
            (
                "--gateway",
                Box::new(|o| {
                    o.gateway = true;
                    o.addresses = vec!["http://a:1".into()];
                }),
            ),
            (
                "--gateway-token-file",
                Box::new(|o| o.gateway_token_file = Some("t".into())),
            ),
            (
                "--path",
                Box::new(|o| o.target = Target::Path("api".into())),
            ),
            (
                "--path",
                Box::new(|o| o.target = Target::Path("/a b".into())),
            ),
            (
                "--addresses",
                Box::new(|o| o.addresses = vec!["x:1".into(); ADDRESSES_MAX + 1]),
            ),
        ];
        for (flag, change) in cases {
            let err = resolve(|o| change(o)).unwrap_err();
            assert!(err.starts_with(flag), "{flag}: {err}");
        }
    }
}

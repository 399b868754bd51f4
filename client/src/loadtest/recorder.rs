//! What the client saw, tallied per report interval: every completed request, its latency in an
//! HDR histogram (microseconds, 3 significant digits), transfers by result, errors by kind.
//! A request counts in the interval in which it completed.

use crate::bench::report::{latency_at_us, new_histogram};
use crate::http::{ClientError, ErrorKind};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The error kind of a request that got no 2xx reply.
pub(crate) fn error_kind(e: &ClientError) -> String {
    match &e.kind {
        ErrorKind::Transport(_) => "connection".into(),
        ErrorKind::Timeout(_) => "timeout".into(),
        ErrorKind::Status { .. } => e.short(), // "HTTP 503 OVERLOADED"
        ErrorKind::Decode(_) => "undecodable reply".into(),
    }
}

/// The error kind of transfers answered with result `code` (not `OK`).
pub(crate) fn result_kind(code: &str) -> String {
    format!("result {code}")
}

/// Counts of one interval (or of the whole run).
#[derive(Clone)]
pub(crate) struct Tally {
    /// Requests completed: replied (2xx) or failed.
    pub requests: u64,
    /// Requests with a 2xx reply; each one's latency is in `latency_us`.
    pub replied: u64,
    /// Replied requests whose transfers (if any) all came back `OK`.
    pub ok_requests: u64,
    /// Transfers whose result came back, and those `OK`.
    pub transfers: u64,
    pub transfers_ok: u64,
    /// Error kind → count (requests for HTTP/connection/timeout kinds, transfers for results).
    pub errors: BTreeMap<String, u64>,
    pub latency_us: Histogram<u64>,
    pub latency_min_us: u64,
    pub latency_max_us: u64,
    /// Open loop: requests sent more than 1 ms after their scheduled time, and the largest lag.
    pub late: u64,
    pub lag_max: Duration,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            requests: 0,
            replied: 0,
            ok_requests: 0,
            transfers: 0,
            transfers_ok: 0,
            errors: BTreeMap::new(),
            latency_us: new_histogram(),
            latency_min_us: 0,
            latency_max_us: 0,
            late: 0,
            lag_max: Duration::ZERO,
        }
    }

    fn latency(&mut self, latency: Duration) {
        let us = (latency.as_micros().max(1)).min(u64::MAX as u128) as u64;
        self.latency_us.saturating_record(us);
        self.latency_min_us = if self.replied == 1 {
            us
        } else {
            self.latency_min_us.min(us)
        };
        self.latency_max_us = self.latency_max_us.max(us);
    }

    /// A 2xx reply after `latency`, with the result codes of its transfers (none for a GET).
    pub fn replied(&mut self, latency: Duration, results: &[(bool, &str)]) {
        self.requests += 1;
        self.replied += 1;
        self.latency(latency);
        let mut all_ok = true;
        for (ok, code) in results {
            self.transfers += 1;
            if *ok {
                self.transfers_ok += 1;
            } else {
                all_ok = false;
                *self.errors.entry(result_kind(code)).or_insert(0) += 1;
            }
        }
        if all_ok {
            self.ok_requests += 1;
        }
    }

    /// A request that got no 2xx reply.
    pub fn failed(&mut self, kind: String) {
        self.requests += 1;
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// An open-loop request sent `lag` after its scheduled time.
    pub fn lag(&mut self, lag: Duration) {
        if lag > Duration::from_millis(1) {
            self.late += 1;
        }
        self.lag_max = self.lag_max.max(lag);
    }

    pub fn merge(&mut self, o: &Tally) {
        if o.replied > 0 {
            self.latency_min_us = if self.replied == 0 {
                o.latency_min_us
            } else {
                self.latency_min_us.min(o.latency_min_us)
            };
        }
        self.requests += o.requests;
        self.replied += o.replied;
        self.ok_requests += o.ok_requests;
        self.transfers += o.transfers;
        self.transfers_ok += o.transfers_ok;
        for (k, n) in &o.errors {
            *self.errors.entry(k.clone()).or_insert(0) += n;
        }
        self.latency_us.add(&o.latency_us).expect("same bounds");
        self.latency_max_us = self.latency_max_us.max(o.latency_max_us);
        self.late += o.late;
        self.lag_max = self.lag_max.max(o.lag_max);
    }

    pub fn summary(&self) -> Latency {
        let h = &self.latency_us;
        let q = |q: f64| latency_at_us(h, self.latency_max_us, q);
        Latency {
            count: h.len(),
            min_us: if h.is_empty() { 0 } else { self.latency_min_us },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.latency_max_us,
        }
    }

    /// The latency at each of [`CURVE_QUANTILES`] (the percentile curve of the report).
    pub fn curve(&self) -> Vec<Percentile> {
        CURVE_QUANTILES
            .iter()
            .map(|&q| Percentile {
                quantile: q,
                us: latency_at_us(&self.latency_us, self.latency_max_us, q),
            })
            .collect()
    }
}

/// Quantiles of the percentile curve: 0 to 99.999 % in steps that get finer towards the tail.
pub const CURVE_QUANTILES: &[f64] = &[
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98,
    0.99, 0.993, 0.995, 0.997, 0.998, 0.999, 0.9993, 0.9995, 0.9997, 0.9999, 0.99999, 1.0,
];

/// Request latency of an interval, in microseconds; quantiles from the HDR histogram (the
/// middle of their bucket, within 0.05 %), min and max exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One point of the percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    pub quantile: f64,
    pub us: u64,
}

/// The tally of the interval in progress, shared by every request.
pub(crate) struct Recorder {
    current: Mutex<Tally>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            current: Mutex::new(Tally::new()),
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Tally) -> R) -> R {
        f(&mut self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The interval's tally; the next interval starts empty.
    pub fn take(&self) -> Tally {
        self.with(|t| std::mem::replace(t, Tally::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_count_requests_transfers_and_errors() {
        let r = Recorder::new();
        r.with(|t| t.replied(Duration::from_millis(2), &[(true, "OK"), (true, "OK")]));
        r.with(|t| {
            t.replied(
                Duration::from_millis(4),
                &[(true, "OK"), (false, "NONCE_TOO_OLD")],
            )
        });
        r.with(|t| t.replied(Duration::from_micros(300), &[]));
        r.with(|t| t.failed("timeout".into()));
        let a = r.take();
        assert_eq!((a.requests, a.replied, a.ok_requests), (4, 3, 2));
        assert_eq!((a.transfers, a.transfers_ok), (4, 3));
        assert_eq!(a.errors["result NONCE_TOO_OLD"], 1);
        assert_eq!(a.errors["timeout"], 1);
        let s = a.summary();
        assert_eq!((s.count, s.min_us, s.max_us), (3, 300, 4000));
        assert_eq!(s.p50_us, 2000);
        assert!(r.take().requests == 0, "take starts a new interval");
        let mut total = Tally::new();
        total.merge(&a);
        total.merge(&Tally::new());
        assert_eq!((total.summary().min_us, total.summary().count), (300, 3));
        let curve = total.curve();
        assert_eq!(curve.len(), CURVE_QUANTILES.len());
        assert_eq!(curve.last().unwrap().us, 4000);
        assert!(curve.windows(2).all(|w| w[0].us <= w[1].us));
        assert_eq!(Tally::new().summary(), Latency::default());
    }

    #[test]
    fn error_kinds_name_the_status_or_the_failure() {
        let e = |kind| ClientError {
            method: "POST",
            url: "http://h:1/x".into(),
            kind,
        };
        let status = ErrorKind::Status {
            status: 503,
            code: Some("OVERLOADED".into()),
            message: String::new(),
        };
        assert_eq!(error_kind(&e(status)), "HTTP 503 OVERLOADED");
        assert_eq!(
            error_kind(&e(ErrorKind::Timeout(Duration::from_secs(1)))),
            "timeout"
        );
        assert_eq!(
            error_kind(&e(ErrorKind::Transport("refused".into()))),
            "connection"
        );
        assert_eq!(
            result_kind("INSUFFICIENT_FUNDS"),
            "result INSUFFICIENT_FUNDS"
        );
    }
}

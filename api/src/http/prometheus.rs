//! A writer of the Prometheus text exposition format (version 0.0.4): families with `# HELP`
//! and `# TYPE`, escaped label values, histograms as cumulative `_bucket` series with `_sum`
//! and `_count`. Used by `GET /metrics`; the figures come from lock-free counters read at
//! scrape time, so nothing here is on the hot path.

use aurigraph_engine::runtime::HistogramCounts;
use std::fmt::Write;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
pub struct Exposition {
    out: String,
}

/// A sample value: integers print exactly, floats the way Prometheus parses them.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v as u64)
    }
}

fn write_value(out: &mut String, value: Value) {
    match value {
        Value::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Float(v) if v.is_nan() => out.push_str("NaN"),
        Value::Float(v) if v == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(v) if v == f64::NEG_INFINITY => out.push_str("-Inf"),
        Value::Float(v) => {
            let _ = write!(out, "{v}");
        }
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(16 * 1024),
        }
    }

    /// Starts a family: `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels);
        self.out.push(' ');
        write_value(&mut self.out, value.into());
        self.out.push('\n');
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Into<Value>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The series of one histogram (the family must have been started). Bounds and sum are
    /// divided by `per_unit` (e.g. 1e6 for microseconds to seconds, 1 for counts).
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &HistogramCounts,
        per_unit: f64,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, &bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let le = format_bound(bound as f64 / per_unit);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        let count = h.count();
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, count);
        self.sample(&format!("{name}_sum"), labels, h.sum as f64 / per_unit);
        self.sample(&format!("{name}_count"), labels, count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A bucket bound without float noise (`0.0001`, not `0.00010000000000000002`).
fn format_bound(v: f64) -> String {
    let s = format!("{:.9}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family("a_total", "counter", "Line one\nline two \\ done.");
        e.sample("a_total", &[("route", "/x\"y\\z\n")], 3u64);
        e.single("b", "gauge", "B.", f64::NAN);
        e.sample("c", &[], 0.25);
        e.sample("d", &[], f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP a_total Line one\\nline two \\\\ done.\n# TYPE a_total counter\n\
             a_total{route=\"/x\\\"y\\\\z\\n\"} 3\n# HELP b B.\n# TYPE b gauge\nb NaN\nc 0.25\nd +Inf\n"
        );
    }

    #[test]
    fn histograms_are_cumulative() {
        static BOUNDS: &[u64] = &[100, 1000];
        let h = HistogramCounts {
            bounds: BOUNDS,
            counts: vec![1, 2, 3],
            sum: 9000,
        };
        let mut e = Exposition::new();
        e.histogram("h_seconds", &[("shard", "0")], &h, 1e6);
        assert_eq!(
            e.finish(),
            "h_seconds_bucket{shard=\"0\",le=\"0.0001\"} 1\n\
             h_seconds_bucket{shard=\"0\",le=\"0.001\"} 3\n\
             h_seconds_bucket{shard=\"0\",le=\"+Inf\"} 6\n\
             h_seconds_sum{shard=\"0\"} 0.009\n\
             h_seconds_count{shard=\"0\"} 6\n"
        );
        assert_eq!(format_bound(2.5), "2.5");
        assert_eq!(format_bound(1.0), "1");
        assert_eq!(format_bound(0.0), "0");
    }
}

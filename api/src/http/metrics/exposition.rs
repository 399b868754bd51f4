//! The `/metrics` exposition. The figures come from lock-free counters read at scrape time
//! (nothing here is on the hot path); [`Exposition`] gathers them as families of samples and
//! the `prometheus-client` crate encodes them (OpenMetrics text: escaping, `_total` suffixes,
//! cumulative histogram buckets, `# EOF`), through a [`Collector`] over the gathered families.
//!
//! Families are named as they are queried: a counter is gathered as `x_total` and described
//! as `x` (OpenMetrics), so that `rate(x_total[…])` in rules and dashboards matches.

use aurigraph_engine::runtime::HistogramCounts;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of the exposition (OpenMetrics 1.0, which Prometheus negotiates).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A sample value: integers print exactly, floats as Prometheus parses them.
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

type Labels = Vec<(String, String)>;

#[derive(Debug)]
enum Sample {
    Scalar(Value),
    /// Non-cumulative `(upper bound, count)` pairs ending with `(f64::MAX, overflow)`.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Debug)]
struct Family {
    /// The name as queried (`x_total` for a counter).
    name: String,
    kind: MetricType,
    help: String,
    samples: Vec<(Labels, Sample)>,
}

/// The families of one scrape, in the order they were started.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

/// Label values escaped as the text formats require (`\\`, `\"`, `\n`): prometheus-client
/// 0.23 writes label values as given (the unit test below pins this).
fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| {
            let mut escaped = String::with_capacity(v.len());
            for c in v.chars() {
                match c {
                    '\\' => escaped.push_str("\\\\"),
                    '"' => escaped.push_str("\\\""),
                    '\n' => escaped.push_str("\\n"),
                    c => escaped.push(c),
                }
            }
            ((*k).to_owned(), escaped)
        })
        .collect()
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            families: Vec::with_capacity(64),
        }
    }

    /// Starts a family: `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let kind = match kind {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            other => panic!("metric {name}: unknown kind {other}"),
        };
        assert!(
            !matches!(kind, MetricType::Counter) || name.ends_with("_total"),
            "counter {name} must be named x_total"
        );
        assert!(
            self.families.iter().all(|f| f.name != name),
            "metric family {name} started twice"
        );
        // One line; the encoder adds nothing, and OpenMetrics help ends without a period
        // convention, so keep the text as written.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        self.families.push(Family {
            name: name.to_owned(),
            kind,
            help,
            samples: Vec::new(),
        });
    }

    fn family_mut(&mut self, name: &str) -> &mut Family {
        self.families
            .iter_mut()
            .rev()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("sample of {name} before its family"))
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        let family = self.family_mut(name);
        assert!(
            !matches!(family.kind, MetricType::Histogram),
            "{name}: histogram samples go through Exposition::histogram"
        );
        family
            .samples
            .push((owned(labels), Sample::Scalar(value.into())));
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
        let mut buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .enumerate()
            .map(|(i, &bound)| {
                (
                    bound as f64 / per_unit,
                    h.counts.get(i).copied().unwrap_or(0),
                )
            })
            .collect();
        let count = h.count();
        let in_bounds: u64 = buckets.iter().map(|(_, c)| c).sum();
        buckets.push((f64::MAX, count.saturating_sub(in_bounds)));
        let family = self.family_mut(name);
        assert!(matches!(family.kind, MetricType::Histogram), "{name}");
        family.samples.push((
            owned(labels),
            Sample::Histogram {
                sum: h.sum as f64 / per_unit,
                count,
                buckets,
            },
        ));
    }

    /// The encoded exposition.
    pub fn finish(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Gathered(self.families)));
        let mut out = String::with_capacity(32 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("encoding into a String does not fail");
        out
    }
}

/// The families of one scrape as a prometheus-client collector.
#[derive(Debug)]
struct Gathered(Vec<Family>);

impl Collector for Gathered {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let name = match family.kind {
                MetricType::Counter => family.name.trim_end_matches("_total"),
                _ => family.name.as_str(),
            };
            let mut metric = encoder.encode_descriptor(name, &family.help, None, family.kind)?;
            for (labels, sample) in &family.samples {
                // No `{}` on unlabelled series.
                if labels.is_empty() {
                    encode_sample(&mut metric, family.kind, sample)?;
                } else {
                    encode_sample(&mut metric.encode_family(labels)?, family.kind, sample)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_sample(
    series: &mut MetricEncoder,
    kind: MetricType,
    sample: &Sample,
) -> Result<(), std::fmt::Error> {
    match (kind, sample) {
        (MetricType::Counter, Sample::Scalar(Value::Int(v))) => {
            series.encode_counter::<NoLabelSet, _, u64>(v, None)
        }
        (MetricType::Counter, Sample::Scalar(Value::Float(v))) => {
            series.encode_counter::<NoLabelSet, _, f64>(v, None)
        }
        (_, Sample::Scalar(Value::Int(v))) => series.encode_gauge(&(*v as i64)),
        (_, Sample::Scalar(Value::Float(v))) => series.encode_gauge(v),
        (
            _,
            Sample::Histogram {
                sum,
                count,
                buckets,
            },
        ) => series.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family("a_total", "counter", "Line one\nline two.");
        e.sample("a_total", &[("route", "/x\"y\\z\n")], 3u64);
        e.single("b", "gauge", "B.", f64::NAN);
        e.family("c", "gauge", "C.");
        e.sample("c", &[], 0.25);
        e.sample("c", &[("k", "v")], 7u64);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP a Line one line two.\n# TYPE a counter\n\
             a_total{route=\"/x\\\"y\\\\z\\n\"} 3\n# HELP b B.\n# TYPE b gauge\nb NaN\n\
             # HELP c C.\n# TYPE c gauge\nc 0.25\nc{k=\"v\"} 7\n# EOF\n"
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
        e.family("h_seconds", "histogram", "H.");
        e.histogram("h_seconds", &[("shard", "0")], &h, 1e6);
        let text = e.finish();
        for line in [
            "h_seconds_bucket{le=\"0.0001\",shard=\"0\"} 1\n",
            "h_seconds_bucket{le=\"0.001\",shard=\"0\"} 3\n",
            "h_seconds_bucket{le=\"+Inf\",shard=\"0\"} 6\n",
            "h_seconds_sum{shard=\"0\"} 0.009\n",
            "h_seconds_count{shard=\"0\"} 6\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    #[should_panic(expected = "must be named x_total")]
    fn a_counter_is_named_total() {
        Exposition::new().family("a", "counter", "A.");
    }
}

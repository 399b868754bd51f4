//! `aurigraph loadtest compare A.json B.json --out DIR`: two runs' reports plotted against
//! each other in `DIR/compare.html` (same self-contained page as a report), with their totals
//! side by side. Run A is drawn solid, run B dashed.

use super::html::{escape, page, shape, utc, TimeAxis};
use super::plots::{percentile_chart, time_chart, Curve, Line, TimeChart};
use super::report::{Interval, Report};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Reads a `report.json`.
pub fn read_report(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Report::from_json(&text)
        .map_err(|e| format!("{} is not a load test report: {e}", path.display()))
}

fn name_of(path: &Path) -> String {
    path.display().to_string()
}

/// The page comparing run `a` (from `a_name`) with run `b`.
pub fn compare_html(a: &Report, a_name: &str, b: &Report, b_name: &str) -> String {
    let longest = a.totals.elapsed_seconds.max(b.totals.elapsed_seconds);
    let axis = TimeAxis::for_seconds(longest);
    let runs = [(a, "A", 0usize), (b, "B", 1usize)];
    let lines = |what: &str, f: &dyn Fn(&Interval) -> Option<f64>| -> Vec<Line> {
        runs.iter()
            .map(|(r, label, k)| {
                let line = Line::new(format!("{what} {label}"), axis.points(r, f), *k);
                if *k == 1 {
                    line.dashed()
                } else {
                    line
                }
            })
            .collect()
    };
    let levels = vec![axis.levels(a), axis.levels(b)];
    let chart = |title, y_desc, lines, log_y| {
        time_chart(&TimeChart {
            title,
            x_desc: axis.desc,
            y_desc,
            lines,
            levels: levels.clone(),
            level_desc: "level (A solid, B dashed)",
            log_y,
            empty_note: "nothing to draw",
        })
    };
    let mut throughput = lines("requests/s", &|i| Some(i.requests_per_second));
    throughput.extend(
        lines("OK transfers/s", &|i| Some(i.transfers_per_second))
            .into_iter()
            .map(|mut l| {
                l.color = super::plots::COLORS[2 + usize::from(l.dashed)];
                l
            }),
    );
    let mut latency = lines("p99", &|i| {
        (i.latency.count > 0).then_some(i.latency.p99_us as f64 / 1000.0)
    });
    latency.extend(
        lines("p50", &|i| {
            (i.latency.count > 0).then_some(i.latency.p50_us as f64 / 1000.0)
        })
        .into_iter()
        .map(|mut l| {
            l.color = super::plots::COLORS[2 + usize::from(l.dashed)];
            l
        }),
    );
    let plots = [
        (
            "Throughput",
            chart(
                "Throughput per interval (A solid, B dashed)",
                "per second",
                throughput,
                false,
            ),
        ),
        (
            "Latency over time",
            chart(
                "Latency p50 and p99 per interval (log scale)",
                "latency",
                latency,
                true,
            ),
        ),
        (
            "Latency distribution",
            percentile_chart(
                "Latency distribution over each whole run",
                &[
                    Curve {
                        name: format!("A: {}", a_name),
                        points: a
                            .latency_percentiles
                            .iter()
                            .map(|p| (p.quantile, p.us))
                            .collect(),
                        color: 0,
                    },
                    Curve {
                        name: format!("B: {}", b_name),
                        points: b
                            .latency_percentiles
                            .iter()
                            .map(|p| (p.quantile, p.us))
                            .collect(),
                        color: 1,
                    },
                ],
            ),
        ),
        (
            "Errors",
            chart(
                "Errors per interval, all kinds",
                "errors",
                lines("errors", &|i| Some(i.error_count() as f64)),
                false,
            ),
        ),
        (
            "Node CPU",
            chart(
                "Node CPU, all nodes together",
                "cores busy",
                lines("CPU", &|i| i.server.cpu_cores),
                false,
            ),
        ),
        (
            "Node memory",
            chart(
                "Node memory, all nodes together",
                "resident MiB",
                lines("RSS", &|i| {
                    i.server.rss_bytes.map(|b| b as f64 / (1u64 << 20) as f64)
                }),
                false,
            ),
        ),
    ];
    let mut body = String::from("<h1>Aurigraph load test: two runs compared</h1>");
    for (r, label, name) in [(a, "A", a_name), (b, "B", b_name)] {
        let _ = write!(
            body,
            "<div class=\"sub\"><b>{label}</b>: {} · {} · {}</div>",
            escape(name),
            utc(r.run.started_unix_seconds),
            escape(&shape(r))
        );
    }
    body.push_str("<table><tr><th class=\"l\">figure</th><th>A</th><th>B</th><th>B / A</th></tr>");
    let row = |body: &mut String, name: &str, x: f64, y: f64, d: usize| {
        let ratio = if x != 0.0 {
            format!("{:.3}", y / x)
        } else {
            "-".into()
        };
        let _ = write!(
            body,
            "<tr><td class=\"l\">{}</td><td>{x:.d$}</td><td>{y:.d$}</td><td>{ratio}</td></tr>",
            escape(name)
        );
    };
    let (ta, tb) = (&a.totals, &b.totals);
    row(
        &mut body,
        "elapsed s",
        ta.elapsed_seconds,
        tb.elapsed_seconds,
        1,
    );
    row(
        &mut body,
        "requests",
        ta.requests as f64,
        tb.requests as f64,
        0,
    );
    row(
        &mut body,
        "requests/s",
        ta.requests_per_second,
        tb.requests_per_second,
        1,
    );
    row(
        &mut body,
        "OK transfers/s",
        ta.transfers_per_second,
        tb.transfers_per_second,
        1,
    );
    row(
        &mut body,
        "success rate",
        ta.success_rate,
        tb.success_rate,
        4,
    );
    for (name, f) in [
        (
            "latency p50 ms",
            (|t: &super::report::Totals| t.latency.p50_us) as fn(&_) -> u64,
        ),
        ("latency p99 ms", |t| t.latency.p99_us),
        ("latency p99.9 ms", |t| t.latency.p999_us),
        ("latency max ms", |t| t.latency.max_us),
    ] {
        row(
            &mut body,
            name,
            f(ta) as f64 / 1000.0,
            f(tb) as f64 / 1000.0,
            2,
        );
    }
    let errors = |r: &Report| r.totals.errors.values().sum::<u64>() as f64;
    row(&mut body, "errors", errors(a), errors(b), 0);
    body.push_str("</table>");
    for (heading, svg) in plots {
        let _ = write!(body, "<h2>{heading}</h2>{svg}");
    }
    page("Aurigraph load test: comparison", &body)
}

/// Reads both reports and writes `out/compare.html`; returns its path.
pub fn run_compare(a: &Path, b: &Path, out: &Path) -> Result<PathBuf, String> {
    let (ra, rb) = (read_report(a)?, read_report(b)?);
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let path = out.join("compare.html");
    std::fs::write(&path, compare_html(&ra, &name_of(a), &rb, &name_of(b)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::report::tests::sample;

    #[test]
    fn two_reports_make_one_page() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        std::fs::write(&a, sample().to_json()).unwrap();
        let mut other = sample();
        other.intervals.pop();
        let b = dir.path().join("b.json");
        std::fs::write(&b, other.to_json()).unwrap();
        let path = run_compare(&a, &b, &dir.path().join("cmp")).unwrap();
        let html = std::fs::read_to_string(path).unwrap();
        assert_eq!(html.matches("<svg").count(), 6);
        assert!(html.contains("B / A") && html.contains("a.json"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"x\": 1}").unwrap();
        let err = run_compare(&a, &bad, dir.path()).unwrap_err();
        assert!(err.contains("is not a load test report"), "{err}");
        assert!(run_compare(&a, &dir.path().join("none.json"), dir.path())
            .unwrap_err()
            .contains("cannot read"));
    }
}

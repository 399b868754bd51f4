//! `report.html`: one self-contained page (inline CSS and SVG; no script, no external font,
//! image or style sheet) with the run's summary, its plots and the table of its intervals.

use super::plots::{percentile_chart, time_chart, Curve, Line, TimeChart};
use super::report::{Interval, Report};
use std::collections::BTreeMap;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1320px}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:24px 0 8px}\
.sub{color:#555;font-size:13px;margin-bottom:12px;word-break:break-all}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}\
.ok{color:#0a7d32;font-weight:bold}.bad{color:#b00020;font-weight:bold}\
.figs{display:grid;grid-template-columns:repeat(4,auto);gap:2px 18px;font-size:14px;\
margin:8px 0}.figs b{font-weight:600}svg{display:block;margin:6px 0}";

/// Text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time.
pub fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The page's frame around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// Time on the x axis: seconds, or minutes for runs longer than 10 minutes.
pub struct TimeAxis {
    pub divisor: f64,
    pub desc: &'static str,
}

impl TimeAxis {
    pub fn for_seconds(seconds: f64) -> TimeAxis {
        if seconds > 600.0 {
            TimeAxis {
                divisor: 60.0,
                desc: "time since start (min)",
            }
        } else {
            TimeAxis {
                divisor: 1.0,
                desc: "time since start (s)",
            }
        }
    }

    /// The intervals' values at their middles.
    pub fn points(&self, r: &Report, f: impl Fn(&Interval) -> Option<f64>) -> Vec<(f64, f64)> {
        r.intervals
            .iter()
            .filter_map(|i| {
                f(i).map(|v| ((i.start_seconds + i.end_seconds) / 2.0 / self.divisor, v))
            })
            .collect()
    }

    /// The ramp's level over the run, as steps: where it stood from the start to the end of
    /// the last interval (changes at each step interval, up to the end level).
    pub fn levels(&self, r: &Report) -> Vec<(f64, f64)> {
        let end = r.intervals.last().map_or(0.0, |i| i.end_seconds);
        let run = &r.run;
        let mut points = Vec::new();
        let mut t = 0.0;
        let mut level = run.start as f64;
        let step = run.step as f64 * if run.end >= run.start { 1.0 } else { -1.0 };
        let (lo, hi) = (run.start.min(run.end) as f64, run.start.max(run.end) as f64);
        while t < end && points.len() < 2 * 100_000 {
            let next = if run.step_interval_seconds > 0.0 && level != run.end as f64 {
                (t + run.step_interval_seconds).min(end)
            } else {
                end
            };
            points.push((t / self.divisor, level));
            points.push((next / self.divisor, level));
            t = next;
            level = (level + step).clamp(lo, hi);
        }
        points
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// The error kinds of a run, most frequent first, at most `max`.
pub fn top_error_kinds(r: &Report, max: usize) -> Vec<String> {
    let mut kinds: Vec<(&String, &u64)> = r.totals.errors.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    kinds
        .into_iter()
        .take(max)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Every plot of one run, as SVG texts with their headings.
pub fn plots(r: &Report) -> Vec<(&'static str, String)> {
    let axis = TimeAxis::for_seconds(r.totals.elapsed_seconds);
    let level = vec![axis.levels(r)];
    let level_desc = if r.run.ramp == "rate" {
        "target rate (requests/s)"
    } else {
        "concurrency"
    };
    let chart = |title, y_desc, lines, log_y, empty_note| {
        time_chart(&TimeChart {
            title,
            x_desc: axis.desc,
            y_desc,
            lines,
            levels: level.clone(),
            level_desc,
            log_y,
            empty_note,
        })
    };
    let throughput = chart(
        "Throughput per interval, with the ramp's level (grey, right axis)",
        "per second",
        vec![
            Line::new(
                "requests/s",
                axis.points(r, |i| Some(i.requests_per_second)),
                0,
            ),
            Line::new(
                "OK transfers/s (client)",
                axis.points(r, |i| Some(i.transfers_per_second)),
                1,
            ),
            Line::new(
                "OK transfers/s (nodes' counters)",
                axis.points(r, |i| Some(i.server.transactions_ok() as f64 / i.seconds())),
                2,
            )
            .dashed(),
        ],
        false,
        "no requests",
    );
    let latency = chart(
        "Request latency per interval (log scale), with the ramp's level",
        "latency",
        [("p50", 0), ("p90", 5), ("p99", 1), ("p99.9", 3), ("max", 6)]
            .into_iter()
            .map(|(name, color)| {
                let points = axis.points(r, |i| {
                    let l = &i.latency;
                    let us = match name {
                        "p50" => l.p50_us,
                        "p90" => l.p90_us,
                        "p99" => l.p99_us,
                        "p99.9" => l.p999_us,
                        _ => l.max_us,
                    };
                    (l.count > 0).then_some(us as f64 / 1000.0)
                });
                Line::new(name, points, color)
            })
            .collect(),
        true,
        "no replies",
    );
    let curve = percentile_chart(
        "Latency distribution over the whole run (percentile curve)",
        &[Curve {
            name: format!("all {} replied requests", r.totals.latency.count),
            points: r
                .latency_percentiles
                .iter()
                .map(|p| (p.quantile, p.us))
                .collect(),
            color: 0,
        }],
    );
    let errors = chart(
        "Errors per interval, by kind",
        "errors",
        top_error_kinds(r, 8)
            .into_iter()
            .enumerate()
            .map(|(k, kind)| {
                let points = axis.points(r, |i| Some(*i.errors.get(&kind).unwrap_or(&0) as f64));
                Line::new(kind, points, k + 1)
            })
            .collect(),
        false,
        "no errors in this run",
    );
    let node_lines = |f: &dyn Fn(&Interval, usize) -> Option<f64>,
                      total: &dyn Fn(&Interval) -> Option<f64>| {
        let nodes = r.intervals.first().map_or(0, |i| i.server.nodes.len());
        let mut lines: Vec<Line> = (0..nodes)
            .map(|n| {
                let url = &r.intervals[0].server.nodes[n].url;
                Line::new(url.clone(), axis.points(r, |i| f(i, n)), n + 1)
            })
            .collect();
        if nodes > 1 {
            lines.insert(0, Line::new("all nodes", axis.points(r, total), 0));
        }
        lines
    };
    let cpu = chart(
        "Node CPU per interval (process_cpu_seconds_total increase / interval)",
        "cores busy",
        node_lines(
            &|i, n| i.server.nodes.get(n).and_then(|x| x.cpu_cores),
            &|i| i.server.cpu_cores,
        ),
        false,
        "no node was read",
    );
    let memory = chart(
        "Node memory at each interval's end (process_resident_memory_bytes)",
        "resident MiB",
        node_lines(
            &|i, n| {
                i.server
                    .nodes
                    .get(n)
                    .and_then(|x| x.rss_bytes)
                    .map(|b| b as f64 / MIB)
            },
            &|i| i.server.rss_bytes.map(|b| b as f64 / MIB),
        ),
        false,
        "no node was read",
    );
    vec![
        ("Throughput", throughput),
        ("Latency over time", latency),
        ("Latency distribution", curve),
        ("Errors", errors),
        ("Node CPU", cpu),
        ("Node memory", memory),
    ]
}

fn fig(out: &mut String, name: &str, value: String) {
    let _ = write!(
        out,
        "<div>{}</div><div><b>{}</b></div>",
        escape(name),
        escape(&value)
    );
}

/// The key figures of a run as a grid.
fn figures(r: &Report) -> String {
    let t = &r.totals;
    let l = &t.latency;
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    let mut out = String::from("<div class=\"figs\">");
    fig(
        &mut out,
        "elapsed",
        format!(
            "{:.1} s in {} intervals",
            t.elapsed_seconds,
            r.intervals.len()
        ),
    );
    fig(
        &mut out,
        "requests",
        format!("{} ({} replied)", t.requests, t.replied),
    );
    fig(&mut out, "success rate", format!("{:.4}", t.success_rate));
    fig(
        &mut out,
        "requests/s",
        format!("{:.1}", t.requests_per_second),
    );
    fig(&mut out, "OK transfers", t.transfers_ok.to_string());
    fig(
        &mut out,
        "OK transfers/s",
        format!("{:.1}", t.transfers_per_second),
    );
    fig(
        &mut out,
        "latency p50 / p90",
        format!("{} / {}", ms(l.p50_us), ms(l.p90_us)),
    );
    fig(
        &mut out,
        "latency p99 / p99.9",
        format!("{} / {}", ms(l.p99_us), ms(l.p999_us)),
    );
    fig(
        &mut out,
        "latency min / mean / max",
        format!(
            "{} / {:.2} ms / {}",
            ms(l.min_us),
            l.mean_us / 1000.0,
            ms(l.max_us)
        ),
    );
    let errors: u64 = t.errors.values().sum();
    fig(&mut out, "errors", errors.to_string());
    out.push_str("</div>");
    out
}

fn check(r: &Report) -> String {
    let c = &r.check;
    let (class, word) = if c.agree {
        ("ok", "agree")
    } else if c.complete {
        ("bad", "differ")
    } else {
        ("bad", "incomplete: a scrape failed")
    };
    format!(
        "<p>The nodes' own counters over the run (first scrape to last) against the client's \
         counts: <span class=\"{class}\">{word}</span></p><table><tr><th class=\"l\">figure</th>\
         <th>client</th><th>nodes</th></tr><tr><td class=\"l\">OK transfers \
         (aurigraph_transactions_total{{result=\"OK\"}})</td><td>{}</td><td>{}</td></tr>\
         <tr><td class=\"l\">transfers, any result (aurigraph_transactions_total)</td><td>{}</td>\
         <td>{}</td></tr><tr><td class=\"l\">requests (aurigraph_api_requests_total, /metrics \
         left out)</td><td>{}</td><td>{}</td></tr></table>",
        c.client_transfers_ok,
        c.node_transfers_ok,
        c.client_transfers,
        c.node_transfers,
        c.client_requests,
        c.node_api_requests
    )
}

fn interval_table(r: &Report) -> String {
    let mut out = format!(
        "<table><tr><th>#</th><th>start s</th><th>end s</th><th>{}</th><th>requests</th>\
         <th>req/s</th><th>OK tx/s</th><th>success</th><th>p50 ms</th><th>p99 ms</th>\
         <th>p99.9 ms</th><th>max ms</th><th>errors</th><th>node CPU</th><th>node MiB</th>\
         <th>nodes OK tx</th></tr>",
        r.level_name()
    );
    let opt = |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.d$}"));
    for i in &r.intervals {
        let l = &i.latency;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.4}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.index,
            i.start_seconds,
            i.end_seconds,
            i.level,
            i.requests,
            i.requests_per_second,
            i.transfers_per_second,
            i.success_rate,
            l.p50_us as f64 / 1000.0,
            l.p99_us as f64 / 1000.0,
            l.p999_us as f64 / 1000.0,
            l.max_us as f64 / 1000.0,
            i.error_count(),
            opt(i.server.cpu_cores, 2),
            opt(i.server.rss_bytes.map(|b| b as f64 / MIB), 0),
            i.server.transactions_ok()
        );
    }
    out.push_str("</table>");
    out
}

/// A one-line description of the run's shape.
pub fn shape(r: &Report) -> String {
    let run = &r.run;
    let mut s = format!(
        "{} ramp {} → {} by {} every {:.1} s; report every {:.1} s; duration {:.1} s; target {}",
        run.ramp,
        run.start,
        run.end,
        run.step,
        run.step_interval_seconds,
        run.report_interval_seconds,
        run.duration_seconds,
        run.target
    );
    if let Some(p) = &run.path {
        let _ = write!(s, " {p}");
    }
    if run.target == "transfers" {
        let _ = write!(
            s,
            " ({}, {} per request, {} accounts)",
            if run.gateway { "gateway" } else { "signed" },
            run.batch_size,
            run.accounts
        );
    }
    if let Some(p) = &run.preset {
        let _ = write!(s, "; preset {p} × time factor {}", run.time_factor);
    }
    s
}

/// `report.html`'s text.
pub fn report_html(r: &Report) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Aurigraph load test</h1><div class=\"sub\">{} · {} node(s): {}<br>{}<br>{}</div>",
        utc(r.run.started_unix_seconds),
        r.run.addresses.len(),
        escape(&r.run.addresses.join(", ")),
        escape(&shape(r)),
        escape(&r.run.command)
    );
    if let Some(why) = &r.stopped_early {
        let _ = write!(body, "<p class=\"bad\">Stopped early: {}</p>", escape(why));
    }
    body.push_str(&figures(r));
    body.push_str(&check(r));
    for (heading, svg) in plots(r) {
        let _ = write!(body, "<h2>{heading}</h2>{svg}");
    }
    let kinds: BTreeMap<&String, &u64> = r.totals.errors.iter().collect();
    if !kinds.is_empty() {
        body.push_str(
            "<h2>Errors by kind</h2><table><tr><th class=\"l\">kind</th><th>count</th></tr>",
        );
        for (k, n) in kinds {
            let _ = write!(
                body,
                "<tr><td class=\"l\">{}</td><td>{n}</td></tr>",
                escape(k)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Intervals</h2>");
    body.push_str(&interval_table(r));
    page("Aurigraph load test", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::report::tests::sample;

    #[test]
    fn the_page_is_self_contained_with_every_plot() {
        let html = report_html(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 6, "six plots");
        for word in [
            "Throughput",
            "Latency distribution",
            "Errors",
            "Node CPU",
            "Node memory",
        ] {
            assert!(html.contains(word), "{word}");
        }
        for external in [
            "<script",
            "<link",
            "<img",
            "src=",
            "url(",
            "@import",
            "@font-face",
        ] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.contains("result NONCE_TOO_OLD"));
        assert!(
            html.contains("<td>2</td><td>4.0</td><td>6.0</td><td>3</td>"),
            "interval 2's row"
        );
    }

    #[test]
    fn the_ramp_is_drawn_where_it_stepped() {
        let mut r = sample();
        let axis = TimeAxis::for_seconds(6.0);
        let steps = [
            (0.0, 1.0),
            (2.0, 1.0),
            (2.0, 2.0),
            (4.0, 2.0),
            (4.0, 3.0),
            (6.0, 3.0),
        ];
        assert_eq!(axis.levels(&r), steps);
        r.run.step_interval_seconds = 5.0;
        assert_eq!(
            axis.levels(&r),
            [(0.0, 1.0), (5.0, 1.0), (5.0, 2.0), (6.0, 2.0)]
        );
    }

    #[test]
    fn dates_and_text_are_written_safely() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}

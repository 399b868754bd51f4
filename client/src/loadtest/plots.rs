//! The report's plots, drawn with `plotters` into SVG text (its SVG backend alone: text is laid
//! out with plotters' built-in estimate and drawn by the browser as `<text>`, so no font file
//! is read). Two shapes: a chart over time (any number of lines, the ramp's level as a grey area
//! on a second axis, optionally a log10 scale), and the latency percentile curve.

use plotters::prelude::*;

pub const WIDTH: u32 = 1300;
pub const HEIGHT: u32 = 360;

/// Line colours, in order (colour-blind-safe).
pub const COLORS: &[RGBColor] = &[
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

const LEVEL_FILL: RGBColor = RGBColor(215, 215, 215);
const FONT: &str = "sans-serif";

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
}

impl Line {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Line {
        Line {
            name: name.into(),
            points,
            color: COLORS[color % COLORS.len()],
            dashed: false,
        }
    }

    pub fn dashed(mut self) -> Line {
        self.dashed = true;
        self
    }
}

/// A chart over time.
pub struct TimeChart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub lines: Vec<Line>,
    /// The ramp's level (steps) on the second axis; the second one dashed (compare).
    pub levels: Vec<Vec<(f64, f64)>>,
    pub level_desc: &'a str,
    /// Values on a log10 scale (latency).
    pub log_y: bool,
    /// Shown in the plot area when there is nothing to draw.
    pub empty_note: &'a str,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        1.0
    } else {
        v * 1.08
    }
}

/// A value in milliseconds as an axis label.
pub fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.3} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.0} us", ms * 1000.0)
    }
}

/// A plain number as an axis label (k, M for large ones).
pub fn format_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn y_of(log_y: bool, v: f64) -> Option<f64> {
    if log_y {
        (v > 0.0).then(|| v.log10())
    } else {
        Some(v)
    }
}

/// The chart as SVG text.
pub fn time_chart(c: &TimeChart<'_>) -> String {
    let mut svg = String::new();
    if let Err(e) = draw_time_chart(c, &mut svg) {
        svg = error_svg(c.title, &e.to_string());
    }
    svg
}

fn draw_time_chart(c: &TimeChart<'_>, svg: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = c
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .chain(c.levels.iter().flatten())
        .map(|p| p.0);
    let x_max = nice_max(xs.fold(0.0, f64::max));
    let ys: Vec<f64> = c
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter_map(|p| y_of(c.log_y, p.1))
        .collect();
    let (y_min, y_max) = if c.log_y {
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if ys.is_empty() {
            (0.0, 1.0)
        } else {
            (lo.floor().min(lo - 0.1), hi.ceil().max(hi + 0.1))
        }
    } else {
        (0.0, nice_max(ys.iter().copied().fold(0.0, f64::max)))
    };
    let level_max = nice_max(c.levels.iter().flatten().map(|p| p.1).fold(0.0, f64::max));
    let mut chart = ChartBuilder::on(&root)
        .caption(c.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(78)
        .right_y_label_area_size(if c.levels.is_empty() { 0 } else { 64 })
        .build_cartesian_2d(0.0..x_max, y_min..y_max)?
        .set_secondary_coord(0.0..x_max, 0.0..level_max);
    let log_y = c.log_y;
    let y_fmt = move |v: &f64| {
        if log_y {
            format_ms(10f64.powf(*v))
        } else {
            format_count(*v)
        }
    };
    chart
        .configure_mesh()
        .x_desc(c.x_desc)
        .y_desc(c.y_desc)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&|v| format_count(*v))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    if !c.levels.is_empty() {
        chart
            .configure_secondary_axes()
            .y_desc(c.level_desc)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            // Levels are whole numbers: no label between them.
            .y_label_formatter(&|v| {
                if v.fract().abs() < 1e-9 {
                    format_count(*v)
                } else {
                    String::new()
                }
            })
            .draw()?;
    }
    for (k, level) in c.levels.iter().enumerate() {
        if k == 0 {
            chart.draw_secondary_series(AreaSeries::new(
                level.iter().copied(),
                0.0,
                LEVEL_FILL.mix(0.45).filled(),
            ))?;
        }
        let style = ShapeStyle::from(RGBColor(150, 150, 150)).stroke_width(1);
        if k == 0 {
            chart.draw_secondary_series(LineSeries::new(level.iter().copied(), style))?;
        } else {
            chart.draw_secondary_series(DashedLineSeries::new(
                level.iter().copied(),
                6,
                4,
                style,
            ))?;
        }
    }
    let mut drawn = false;
    for line in &c.lines {
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .filter_map(|&(x, y)| y_of(c.log_y, y).map(|y| (x, y)))
            .collect();
        if points.is_empty() {
            continue;
        }
        drawn = true;
        let style = ShapeStyle::from(line.color).stroke_width(2);
        let color = line.color;
        let legend = move |(x, y): (i32, i32)| {
            PathElement::new(
                vec![(x, y), (x + 22, y)],
                ShapeStyle::from(color).stroke_width(2),
            )
        };
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(points, 7, 4, style))?
                .label(line.name.as_str())
                .legend(legend);
        } else {
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(line.name.as_str())
                .legend(legend);
        }
    }
    if drawn {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 13))
            .draw()?;
    } else {
        chart.plotting_area().draw(&Text::new(
            c.empty_note.to_string(),
            (x_max * 0.42, (y_min + y_max) / 2.0),
            (FONT, 16).into_font().color(&BLACK.mix(0.6)),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// One percentile curve: (quantile, latency in µs) pairs.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, u64)>,
    pub color: usize,
}

/// A curve's name, colour and points on the chart's axes.
type CurvePoints = (String, usize, Vec<(f64, f64)>);

/// Position of quantile `q` on the curve's x axis: its "nines", -log10(1 - q) (0 → 0,
/// 0.9 → 1, 0.99 → 2, ...); the maximum (q = 1) is left out.
fn nines(q: f64) -> Option<f64> {
    (q < 1.0).then(|| -(1.0 - q).log10())
}

fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if x < 0.5 {
        format!("{p:.0}%")
    } else {
        let decimals = (x.round() as usize).saturating_sub(2);
        format!("{p:.decimals$}%")
    }
}

/// The latency percentile curve as SVG text (log scale of latency).
pub fn percentile_chart(title: &str, curves: &[Curve]) -> String {
    let mut svg = String::new();
    if let Err(e) = draw_percentile_chart(title, curves, &mut svg) {
        svg = error_svg(title, &e.to_string());
    }
    svg
}

fn draw_percentile_chart(title: &str, curves: &[Curve], svg: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let lines: Vec<CurvePoints> = curves
        .iter()
        .map(|c| {
            let points = c
                .points
                .iter()
                .filter(|(_, us)| *us > 0)
                .filter_map(|&(q, us)| nines(q).map(|x| (x, (us as f64 / 1000.0).log10())))
                .collect();
            (c.name.clone(), c.color, points)
        })
        .collect();
    let ys = lines.iter().flat_map(|l| l.2.iter().map(|p| p.1));
    let lo = ys.clone().fold(f64::INFINITY, f64::min);
    let hi = ys.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo.floor().min(lo - 0.1), hi.ceil().max(hi + 0.1))
    } else {
        (0.0, 1.0)
    };
    let x_max = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    // Up to the next whole "nine" (5.000000001 is 5).
    let x_max = (x_max - 1e-6).ceil().max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(42)
        .y_label_area_size(78)
        .build_cartesian_2d(0.0..x_max, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1 - p)")
        .y_desc("latency")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|v| format_ms(10f64.powf(*v)))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()?;
    for (name, color, points) in lines {
        let c = COLORS[color % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, ShapeStyle::from(c).stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 22, y)],
                    ShapeStyle::from(c).stroke_width(2),
                )
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    root.present()?;
    Ok(())
}

/// What is shown instead of a chart that could not be drawn.
fn error_svg(title: &str, error: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"60\">\
         <text x=\"10\" y=\"30\" font-family=\"sans-serif\">{}: cannot draw: {}</text></svg>",
        escape(title),
        escape(error)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_text() {
        let svg = time_chart(&TimeChart {
            title: "Throughput",
            x_desc: "time (s)",
            y_desc: "per second",
            lines: vec![
                Line::new("requests/s", vec![(1.0, 10.0), (3.0, 30.0)], 0),
                Line::new("transfers/s", vec![(1.0, 20.0), (3.0, 60.0)], 1).dashed(),
            ],
            levels: vec![vec![(0.0, 1.0), (2.0, 1.0), (2.0, 2.0), (4.0, 2.0)]],
            level_desc: "concurrency",
            log_y: false,
            empty_note: "no data",
        });
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("Throughput") && svg.contains("requests/s"));
        assert!(svg.contains("concurrency"));
        assert!(!svg.contains("<image") && !svg.contains("href"));
        let empty = time_chart(&TimeChart {
            title: "Errors",
            x_desc: "time (s)",
            y_desc: "errors",
            lines: vec![],
            levels: vec![],
            level_desc: "",
            log_y: true,
            empty_note: "no errors",
        });
        assert!(empty.contains("no errors"), "{empty}");
        let curve = percentile_chart(
            "Latency distribution",
            &[Curve {
                name: "run".into(),
                points: vec![
                    (0.0, 500),
                    (0.5, 1000),
                    (0.9, 2000),
                    (0.99, 9000),
                    (1.0, 9500),
                ],
                color: 0,
            }],
        );
        assert!(curve.contains("99%") && curve.contains("90%"), "{curve}");
    }

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(format_ms(0.25), "250 us");
        assert_eq!(format_ms(2.5), "2.5 ms");
        assert_eq!(format_ms(25.0), "25 ms");
        assert_eq!(format_ms(2500.0), "2.500 s");
        assert_eq!(format_count(12_345.0), "12k");
        assert_eq!(format_count(3.0), "3");
        assert_eq!(format_count(0.75), "0.75");
        assert!((nines(0.99).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), None);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(3.0), "99.9%");
    }
}

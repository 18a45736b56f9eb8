//! A self-contained HTML page for one or more reports, overlaid for comparison: the HDR
//! percentile curve (log x axis: 90%, 99%, 99.9% ... evenly spaced), latency over time (p50
//! dashed, p99 solid), throughput over time, and the summary table. Inline SVG written here;
//! nothing is fetched when the page is viewed.

use std::fmt::Write as _;

use crate::report::Report;

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const W: f64 = 880.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 45.0;

/// The page for `reports` (their order gives the colours).
pub fn render(reports: &[Report]) -> String {
    let mut page = String::new();
    let title = reports
        .iter()
        .map(|r| r.label.as_str())
        .collect::<Vec<_>>()
        .join(" vs ");
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Load test: {}</title><style>{STYLE}</style></head><body>\n\
         <h1>Load test: {}</h1>\n",
        esc(&title),
        esc(&title)
    );
    page.push_str(&legend(reports));
    page.push_str("<h2>Latency by percentile</h2>\n<p class=\"note\">HDR-style: the x axis is \
        log(1/(1&minus;percentile)), so each step right is ten times rarer. Successful requests only.</p>\n");
    page.push_str(&percentile_chart(reports));
    page.push_str(
        "<h2>Latency over time</h2>\n<p class=\"note\">Per second: p99 solid, p50 dashed.</p>\n",
    );
    page.push_str(&latency_chart(reports));
    page.push_str("<h2>Throughput over time</h2>\n<p class=\"note\">Successful requests finished per second.</p>\n");
    page.push_str(&throughput_chart(reports));
    page.push_str("<h2>Summary</h2>\n");
    page.push_str(&summary_table(reports));
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:960px}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}.note{color:#666;font-size:.9em;margin:.2em 0}\
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
th{background:#f4f4f4}td.l{text-align:left}.sw{display:inline-block;width:1em;height:.7em;margin-right:.4em}\
svg text{font-size:12px;fill:#444}.legend span{margin-right:1.5em}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn legend(reports: &[Report]) -> String {
    let mut s = String::from("<p class=\"legend\">");
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            s,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{} ({}, {})</span>",
            color(i),
            esc(&r.label),
            esc(&r.protocol),
            esc(&r.load_shape())
        );
    }
    s.push_str("</p>\n");
    s
}

/// One line of a chart.
struct Series {
    color: &'static str,
    dashed: bool,
    label: String,
    points: Vec<(f64, f64)>,
}

/// A "nice" axis maximum and step (1, 2 or 5 times a power of ten) for values up to `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// An SVG line chart; x ticks given, y from 0 to a nice maximum.
fn chart(
    x_max: f64,
    x_ticks: &[(f64, String)],
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> String {
    let y_top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let (y_max, y_step) = nice_axis(y_top);
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + x / x_max * pw;
    let py = |y: f64| TOP + ph - y / y_max * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">\n"
    );
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let (right, yy, lx, ty) = (W - RIGHT, py(y), LEFT - 6.0, py(y) + 4.0);
        let label = fmt_num((y * 1000.0).round() / 1000.0);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{right:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/>\
             <text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>"
        );
        y += y_step;
    }
    for (x, label) in x_ticks {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            px(*x),
            TOP + ph,
            TOP + ph + 16.0,
            esc(label)
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + pw / 2.0,
        H - 6.0,
        esc(x_label),
        TOP + ph / 2.0,
        esc(y_label)
    );
    for line in series {
        if line.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x.min(x_max)), py(y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"><title>{}</title></polyline>",
            line.color,
            if line.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            },
            pts.join(" "),
            esc(&line.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// x position of a percentile on the log axis: log10(1 / (1 - p)).
fn log_x(percentile: f64, cap: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        cap
    } else {
        (1.0 / rest).log10().min(cap)
    }
}

fn percentile_chart(reports: &[Report]) -> String {
    // Enough nines to show every run's tail (at most 99.9999%).
    let nines = reports
        .iter()
        .map(|r| (r.ok.max(1) as f64).log10().ceil())
        .fold(2.0, f64::max)
        .min(6.0);
    let ticks: Vec<(f64, String)> = (0..=nines as u32)
        .map(|k| {
            let label = match k {
                0 => "0%".to_owned(),
                1 => "90%".to_owned(),
                k => format!("99.{}%", "9".repeat(k as usize - 2)).replace("99.%", "99%"),
            };
            (f64::from(k), label)
        })
        .collect();
    let series: Vec<Series> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            color: color(i),
            dashed: false,
            label: r.label.clone(),
            points: r
                .percentile_curve
                .iter()
                .map(|p| (log_x(p.percentile, nines), p.latency_us as f64 / 1000.0))
                .collect(),
        })
        .collect();
    chart(nines, &ticks, "percentile", "latency (ms)", &series)
}

fn time_ticks(reports: &[Report]) -> (f64, Vec<(f64, String)>) {
    let x_max = reports
        .iter()
        .map(|r| r.timeline.len() as f64)
        .fold(1.0, f64::max);
    let (_, step) = nice_axis(x_max);
    let step = step.max(1.0);
    let mut ticks = Vec::new();
    let mut t = 0.0;
    while t <= x_max {
        ticks.push((t, fmt_num(t)));
        t += step;
    }
    (x_max, ticks)
}

fn latency_chart(reports: &[Report]) -> String {
    let (x_max, ticks) = time_ticks(reports);
    let mut series = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        // A second's point sits at its middle; seconds without successes are left out.
        let at = |pick: fn(&crate::report::TimelinePoint) -> u64| -> Vec<(f64, f64)> {
            r.timeline
                .iter()
                .filter(|p| p.ok > 0)
                .map(|p| (p.t_s as f64 + 0.5, pick(p) as f64 / 1000.0))
                .collect()
        };
        series.push(Series {
            color: color(i),
            dashed: false,
            label: format!("{} p99", r.label),
            points: at(|p| p.p99_us),
        });
        series.push(Series {
            color: color(i),
            dashed: true,
            label: format!("{} p50", r.label),
            points: at(|p| p.p50_us),
        });
    }
    chart(x_max, &ticks, "seconds", "latency (ms)", &series)
}

fn throughput_chart(reports: &[Report]) -> String {
    let (x_max, ticks) = time_ticks(reports);
    let series: Vec<Series> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            color: color(i),
            dashed: false,
            label: r.label.clone(),
            points: r
                .timeline
                .iter()
                .map(|p| (p.t_s as f64 + 0.5, p.ok as f64))
                .collect(),
        })
        .collect();
    chart(x_max, &ticks, "seconds", "requests / s", &series)
}

fn summary_table(reports: &[Report]) -> String {
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let mut s = String::from(
        "<table><tr><th>run</th><th>protocol</th><th>load</th><th>requests</th><th>req/s</th>\
         <th>rows/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th>\
         <th>mean ms</th><th>errors</th></tr>\n",
    );
    for (i, r) in reports.iter().enumerate() {
        let l = &r.latency_us;
        let errors = if r.errors.is_empty() {
            "none".to_owned()
        } else {
            r.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "<tr><td class=\"l\"><i class=\"sw\" style=\"background:{}\"></i>{}</td><td class=\"l\">{}</td>\
             <td class=\"l\">{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{:.3}</td><td class=\"l\">{}</td></tr>",
            color(i),
            esc(&r.label),
            esc(&r.protocol),
            esc(&r.load_shape()),
            r.requests,
            r.throughput_rps,
            r.throughput_rows_per_s,
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            l.mean / 1000.0,
            esc(&errors)
        );
    }
    s.push_str("</table>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn the_page_overlays_every_run_and_fetches_nothing() {
        let mut b = sample("b <fast>", 500);
        b.ok = 100_000;
        let page = render(&[sample("a", 1000), b]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("b &lt;fast&gt;"), "labels are escaped");
        assert!(!page.contains("<fast>"));
        // Three charts, each with a line per run (two in the latency chart).
        assert_eq!(page.matches("<svg").count(), 3);
        assert_eq!(page.matches("<polyline").count(), 2 + 4 + 2);
        assert!(
            page.contains("99.999%"),
            "ticks reach the tail of the larger run"
        );
        assert!(
            !page.contains("http://") || !page.contains("src=\"http"),
            "no remote resources"
        );
        assert!(!page.contains("<script src"));
    }

    #[test]
    fn axes_and_log_positions() {
        assert_eq!(nice_axis(7.3), (8.0, 2.0));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
        assert_eq!(nice_axis(95.0), (100.0, 20.0));
        assert!((log_x(90.0, 5.0) - 1.0).abs() < 1e-9);
        assert!((log_x(99.9, 5.0) - 3.0).abs() < 1e-9);
        assert_eq!(log_x(100.0, 5.0), 5.0);
        assert_eq!(log_x(0.0, 5.0), 0.0);
    }
}

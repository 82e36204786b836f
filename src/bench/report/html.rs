//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no external files)
//! with the latency-by-percentile plot on the usual log `1/(1-p)` axis, throughput over time
//! and p99 latency over time.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::summary::{Latency, Summary};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 320.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 45.0;
const MARGIN_TOP: f64 = 30.0;
const MARGIN_BOTTOM: f64 = 45.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"];

/// One line of a chart.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points (x, y) in data units.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X axis ticks (position, label); empty → automatic.
    pub x_ticks: Vec<(f64, String)>,
    /// The lines.
    pub series: Vec<Series>,
}

/// Renders the whole page.
pub fn render(summary: &Summary, ack: &Histogram<u64>, e2e: &Histogram<u64>) -> String {
    let mut page = String::new();
    let title = format!("strata bench: {}", escape(&summary.name));
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{}</style>\n</head>\n<body>\n<h1>{title}</h1>\n",
        CSS
    );
    let _ = writeln!(page, "<p><code>{}</code></p>", escape(&summary.command));
    page.push_str(&summary_table(summary));
    page.push_str(&percentile_chart(ack, e2e).svg());
    page.push_str(&throughput_chart(summary).svg());
    page.push_str(&p99_chart(summary).svg());
    page.push_str("</body>\n</html>\n");
    page
}

const CSS: &str = "body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}th:first-child,td:first-child{text-align:left}\
svg{display:block;margin:1.5em 0}code{font-size:90%;word-break:break-all}";

fn summary_table(s: &Summary) -> String {
    let mut t = String::from(
        "<table>\n<tr><th></th><th>msgs/s</th><th>MB/s</th><th>p50</th><th>p90</th><th>p99</th>\
         <th>p99.9</th><th>p99.99</th><th>max</th></tr>\n",
    );
    let rows = [
        ("produce (ack latency)", s.produce.as_ref(), s.ack_latency.as_ref()),
        ("consume (e2e latency)", s.consume.as_ref(), s.e2e_latency.as_ref()),
    ];
    for (label, tput, lat) in rows {
        let Some(tput) = tput else { continue };
        let _ = write!(
            t,
            "<tr><td>{label}</td><td>{:.0}</td><td>{:.1}</td>",
            tput.msgs_per_s, tput.mb_per_s
        );
        let cells: Vec<String> = match lat {
            Some(Latency { p50_us, p90_us, p99_us, p999_us, p9999_us, max_us, .. }) => {
                [p50_us, p90_us, p99_us, p999_us, p9999_us, max_us]
                    .iter()
                    .map(|v| super::us(**v))
                    .collect()
            }
            None => vec!["-".into(); 6],
        };
        for c in cells {
            let _ = write!(t, "<td>{c}</td>");
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    let _ = writeln!(
        t,
        "<p>measured {:.1} s; records produced {}, consumed {}; partitions {}, producers {}, \
         consumers {}, record size {} B, acks {}, compression {}</p>",
        s.measured_seconds,
        s.produced_total,
        s.consumed_total,
        s.settings.partitions,
        s.settings.producers,
        s.settings.consumers,
        escape(&s.settings.record_size),
        s.settings.acks,
        s.settings.compression
    );
    t
}

/// Latency (ms) against percentile, x = log10(1/(1-p)).
pub fn percentile_chart(ack: &Histogram<u64>, e2e: &Histogram<u64>) -> Chart {
    let mut series = Vec::new();
    let mut nines = 1;
    for (name, h) in [("produce-ack", ack), ("end-to-end", e2e)] {
        if h.is_empty() {
            continue;
        }
        let points: Vec<(f64, f64)> = h
            .iter_quantiles(5)
            .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1000.0))
            .filter(|(q, _)| *q < 1.0)
            .map(|(q, ms)| ((1.0 / (1.0 - q)).log10(), ms))
            .collect();
        let top = points.iter().map(|p| p.0).fold(0.0, f64::max).ceil() as i32;
        nines = nines.max(top);
        series.push(Series { name: name.into(), points });
    }
    let x_ticks = (0..=nines.min(7))
        .map(|n| {
            let label = match n {
                0 => "0%".to_string(),
                n => format!("{}%", 100.0 - 100.0 / 10f64.powi(n)),
            };
            (f64::from(n), label)
        })
        .collect();
    Chart {
        title: "Latency by percentile".into(),
        x_label: "percentile (log 1/(1-p))".into(),
        y_label: "latency (ms)".into(),
        x_ticks,
        series,
    }
}

fn throughput_chart(s: &Summary) -> Chart {
    let mut series = Vec::new();
    if s.produce.is_some() {
        let points = s.timeline.iter().map(|t| (t.second as f64, t.produce_msgs as f64)).collect();
        series.push(Series { name: "produced msgs/s".into(), points });
    }
    if s.consume.is_some() {
        let points = s.timeline.iter().map(|t| (t.second as f64, t.consume_msgs as f64)).collect();
        series.push(Series { name: "consumed msgs/s".into(), points });
    }
    Chart {
        title: "Throughput over time".into(),
        x_label: "time (s)".into(),
        y_label: "msgs/s".into(),
        x_ticks: vec![],
        series,
    }
}

fn p99_chart(s: &Summary) -> Chart {
    let ms = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
    let ack = s.timeline.iter().filter_map(|t| Some((t.second as f64, ms(t.ack_p99_us)?)));
    let e2e = s.timeline.iter().filter_map(|t| Some((t.second as f64, ms(t.e2e_p99_us)?)));
    let series = [("produce-ack p99", ack.collect::<Vec<_>>()), ("end-to-end p99", e2e.collect())]
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(name, points)| Series { name: name.into(), points })
        .collect();
    Chart {
        title: "p99 latency over time".into(),
        x_label: "time (s)".into(),
        y_label: "p99 latency (ms)".into(),
        x_ticks: vec![],
        series,
    }
}

impl Chart {
    /// The chart as an inline `<svg>` element.
    pub fn svg(&self) -> String {
        let all = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
        for &(x, y) in all {
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        if let Some(last) = self.x_ticks.last() {
            x_max = x_max.max(last.0);
        }
        let x_max = if x_max > 0.0 { x_max } else { 1.0 };
        let y_max = nice_ceiling(y_max);
        let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
        let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
        let sx = |x: f64| MARGIN_LEFT + x / x_max * plot_w;
        let sy = |y: f64| MARGIN_TOP + plot_h - y / y_max * plot_h;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-size=\"11\">\n\
             <text x=\"{}\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n",
            WIDTH / 2.0,
            escape(&self.title)
        );
        self.axes(&mut svg, x_max, y_max, &sx, &sy);
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> =
                s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
                path.join(" ")
            );
            let ly = MARGIN_TOP + 14.0 * i as f64 + 6.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"12\" height=\"3\" fill=\"{color}\"/>\
                 <text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
                MARGIN_LEFT + 10.0,
                ly,
                MARGIN_LEFT + 26.0,
                ly + 4.0,
                escape(&s.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn axes(
        &self,
        svg: &mut String,
        x_max: f64,
        y_max: f64,
        sx: &dyn Fn(f64) -> f64,
        sy: &dyn Fn(f64) -> f64,
    ) {
        let (x0, y0) = (sx(0.0), sy(0.0));
        let _ = writeln!(
            svg,
            "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"#444\"/>\
             <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{}\" stroke=\"#444\"/>",
            sx(x_max),
            sy(y_max)
        );
        let x_ticks: Vec<(f64, String)> = if self.x_ticks.is_empty() {
            let step = nice_ceiling(x_max / 5.0);
            (0..)
                .map(|i| f64::from(i) * step)
                .take_while(|x| *x <= x_max + 1e-9)
                .map(|x| (x, short(x)))
                .collect()
        } else {
            self.x_ticks.clone()
        };
        for (x, label) in x_ticks {
            let _ = writeln!(
                svg,
                "<line x1=\"{0:.1}\" y1=\"{y0}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
                sx(x),
                sy(y_max),
                y0 + 15.0,
                escape(&label)
            );
        }
        for i in 0..=5 {
            let y = y_max * f64::from(i) / 5.0;
            let _ = writeln!(
                svg,
                "<line x1=\"{x0}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
                sy(y),
                sx(x_max),
                x0 - 5.0,
                sy(y) + 4.0,
                short(y)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text>\
             <text x=\"14\" y=\"{:.0}\" text-anchor=\"middle\" \
             transform=\"rotate(-90 14 {:.0})\">{}</text>",
            MARGIN_LEFT + (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label),
            HEIGHT / 2.0,
            HEIGHT / 2.0,
            escape(&self.y_label)
        );
    }
}

/// The next 1/2/5 × 10^n at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// A compact axis label: `0`, `0.25`, `40`, `1.5k`, `2M`.
fn short(v: f64) -> String {
    let text = if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    text.replace(".0k", "k").replace(".0M", "M")
}

/// Escapes text for HTML/SVG content and attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Elements that have no end tag.
const VOID_ELEMENTS: &[&str] = &["meta", "br", "hr", "img", "input", "link"];

/// Checks that every tag of `html` is closed in order (a small structural check for tests and
/// for the report writer's own assertions), and that the page has the expected skeleton.
pub fn check_well_formed(html: &str) -> Result<(), String> {
    if !html.starts_with("<!DOCTYPE html>") {
        return Err("missing <!DOCTYPE html>".into());
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>').ok_or("unterminated tag")?;
        let tag = &after[..end];
        rest = &after[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad tag <{tag}>"));
        }
        if !tag.ends_with('/') && !VOID_ELEMENTS.contains(&name) {
            stack.push(name);
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed tags {stack:?}"));
    }
    for needed in ["<html", "<head>", "<title>", "<body>"] {
        if !html.contains(needed) {
            return Err(format!("missing {needed}"));
        }
    }
    Ok(())
}

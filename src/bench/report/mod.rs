//! What a run shows: the live progress line, the final table, and the `--report DIR` files
//! (`*.hgrm`, `summary.json`, `report.html`).

pub mod hgrm;
pub mod html;
pub mod summary;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::Context;

use super::run::Outcome;
use super::stats::{Progress, NS_PER_S};
use summary::{Latency, Summary};

/// The live line printed to stderr each second.
pub struct ProgressLine {
    start_ns: u64,
    measure_start_ns: u64,
    last_ns: u64,
    last_acked: u64,
    last_consumed: u64,
    last_bytes: u64,
}

impl ProgressLine {
    /// Starts counting at `start_ns`.
    pub fn new(start_ns: u64, measure_start_ns: u64) -> Self {
        ProgressLine {
            start_ns,
            measure_start_ns,
            last_ns: start_ns,
            last_acked: 0,
            last_consumed: 0,
            last_bytes: 0,
        }
    }

    /// The line for `now_ns`, with rates since the previous call.
    pub fn render(&mut self, now_ns: u64, progress: &Progress) -> String {
        let acked = Progress::get(&progress.acked);
        let consumed = Progress::get(&progress.consumed);
        let bytes = Progress::get(&progress.acked_bytes);
        let seconds = (now_ns.saturating_sub(self.last_ns) as f64 / NS_PER_S as f64).max(1e-9);
        let max_of = |slots: &[std::sync::atomic::AtomicU64]| {
            slots.iter().map(|a| a.load(Ordering::Relaxed)).max().unwrap_or(0)
        };
        let phase = if now_ns < self.measure_start_ns { " warmup" } else { "" };
        let mut line = format!(
            "[{:>4}s{phase}] produce {:>9} msg/s {:>8.1} MB/s | consume {:>9} msg/s",
            (now_ns.saturating_sub(self.start_ns)) / NS_PER_S,
            si((acked - self.last_acked) as f64 / seconds),
            (bytes - self.last_bytes) as f64 / 1e6 / seconds,
            si((consumed - self.last_consumed) as f64 / seconds),
        );
        let _ = write!(
            line,
            " | p99 ack {} e2e {} | in flight {} | errors {}",
            live_us(max_of(&progress.live_ack_p99_us)),
            live_us(max_of(&progress.live_e2e_p99_us)),
            Progress::get(&progress.sent).saturating_sub(acked),
            Progress::get(&progress.errors),
        );
        self.last_ns = now_ns;
        self.last_acked = acked;
        self.last_consumed = consumed;
        self.last_bytes = bytes;
        line
    }
}

/// `1234567` → `1.23M`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Like [`us`], with `-` for "no sample yet".
fn live_us(v: u64) -> String {
    if v == 0 {
        "-".into()
    } else {
        us(v)
    }
}

/// Microseconds for humans: `850µs`, `1.23ms`, `2.5s`.
pub fn us(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{:.2}s", v as f64 / 1e6)
    } else if v >= 1000 {
        format!("{:.2}ms", v as f64 / 1e3)
    } else {
        format!("{v}µs")
    }
}

/// The final table printed to stdout.
pub fn table(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} ({}), measured {:.1}s",
        summary.name,
        format!("{:?}", summary.mode).to_lowercase(),
        summary.measured_seconds
    );
    let _ = writeln!(
        out,
        "{:<10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "msgs/s", "MB/s", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let rows = [
        ("produce", summary.produce.as_ref(), summary.ack_latency.as_ref()),
        ("consume", summary.consume.as_ref(), summary.e2e_latency.as_ref()),
    ];
    for (label, tput, lat) in rows {
        let Some(tput) = tput else { continue };
        let lat_cells = lat.map(latency_cells).unwrap_or_else(|| vec!["-".to_string(); 6]);
        let _ = writeln!(
            out,
            "{label:<10} {:>12.0} {:>9.1} {}",
            tput.msgs_per_s,
            tput.mb_per_s,
            lat_cells.iter().map(|c| format!("{c:>9}")).collect::<Vec<_>>().join(" ")
        );
    }
    table_footer(summary, &mut out);
    out
}

/// Notes under the table: what the latencies are, record counts, tool CPU.
fn table_footer(summary: &Summary, out: &mut String) {
    let _ = writeln!(out, "(produce row latency: produce-ack; consume row latency: end-to-end)");
    let _ = writeln!(
        out,
        "records: produced {} consumed {} errors {}{}",
        summary.produced_total,
        summary.consumed_total,
        summary.produce.as_ref().map_or(0, |p| p.errors),
        if summary.drained { "" } else { " (consumers did NOT catch up)" }
    );
    if let Some(cpu) = summary.tool_cpu_percent {
        let _ = writeln!(out, "load tool CPU: {cpu:.0}% of one core over the measured window");
    }
    if summary.foreign_records > 0 {
        let _ = writeln!(out, "skipped {} records not sent by this run", summary.foreign_records);
    }
}

fn latency_cells(l: &Latency) -> Vec<String> {
    [l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.p9999_us, l.max_us].iter().map(|&v| us(v)).collect()
}

/// Writes `ack.hgrm`, `e2e.hgrm`, `summary.json` and `report.html` into `dir`.
pub fn write_reports(dir: &Path, outcome: &Outcome, summary: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let rec = &outcome.recorder;
    for (name, h) in [("ack.hgrm", &rec.ack), ("e2e.hgrm", &rec.e2e)] {
        if !h.is_empty() {
            std::fs::write(dir.join(name), hgrm::percentile_distribution(h, 1000.0, 5))?;
        }
    }
    let json = serde_json::to_string_pretty(summary)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("report.html"), html::render(summary, &rec.ack, &rec.e2e))?;
    Ok(())
}

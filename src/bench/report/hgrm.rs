//! The HdrHistogram percentile distribution text format (`*.hgrm`), as written by Java's
//! `AbstractHistogram.outputPercentileDistribution(out, ticksPerHalfDistance, scalingRatio)`
//! and read by the standard HdrHistogram plotters.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Renders `h` with values divided by `scaling` (1000 turns recorded µs into ms) and
/// `ticks_per_half_distance` percentile steps per halving of the remaining distance (Java: 5).
pub fn percentile_distribution(
    h: &Histogram<u64>,
    scaling: f64,
    ticks_per_half_distance: u32,
) -> String {
    let precision = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total: u64 = 0;
    for v in h.iter_quantiles(ticks_per_half_distance) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / scaling;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.precision$} {q:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:>12.precision$} {q:>2.12} {total:>10}");
        }
    }
    let (bucket_count, sub_bucket_count) = bucket_counts(h);
    let mean = h.mean() / scaling;
    let stdev = h.stdev() / scaling;
    let max = h.max() as f64 / scaling;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.precision$}, StdDeviation   = {stdev:>12.precision$}]"
    );
    let _ = writeln!(out, "#[Max     = {max:>12.precision$}, Total count    = {:>12}]", h.len());
    let _ =
        writeln!(out, "#[Buckets = {bucket_count:>12}, SubBuckets     = {sub_bucket_count:>12}]");
    out
}

/// Java's bucket and sub-bucket counts for the histogram's range and precision.
fn bucket_counts(h: &Histogram<u64>) -> (u32, u64) {
    let single_unit = 2 * 10u64.pow(u32::from(h.sigfig()));
    let sub_bucket_count_magnitude = 64 - (single_unit - 1).leading_zeros();
    let sub_bucket_count = 1u64 << sub_bucket_count_magnitude;
    (u32::from(h.buckets()), sub_bucket_count)
}

/// One parsed data line of an `.hgrm` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Value (scaled).
    pub value: f64,
    /// Percentile as a fraction 0..=1.
    pub percentile: f64,
    /// Cumulative count.
    pub total_count: u64,
}

/// Parses the data lines of an `.hgrm` text (header and `#[` footer skipped).
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for raw in text.lines().skip(2) {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let mut fields = raw.split_whitespace();
        let mut next = |what: &str| fields.next().ok_or(format!("missing {what} in {raw:?}"));
        let value = next("value")?.parse().map_err(|e| format!("{e} in {raw:?}"))?;
        let percentile = next("percentile")?.parse().map_err(|e| format!("{e} in {raw:?}"))?;
        let total_count = next("count")?.parse().map_err(|e| format!("{e} in {raw:?}"))?;
        lines.push(Line { value, percentile, total_count });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests;

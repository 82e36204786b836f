use super::*;
use crate::bench::stats::{new_histogram, SIGFIG_TOTAL};

fn sample() -> Histogram<u64> {
    let mut h = new_histogram(SIGFIG_TOTAL);
    for v in 1..=10_000u64 {
        h.saturating_record(v * 10);
    }
    h
}

#[test]
fn matches_java_layout() {
    let text = percentile_distribution(&sample(), 1000.0, 5);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert_eq!(lines.next(), Some(""));
    let first = lines.next().expect("first data line");
    assert_eq!(first, "       0.010 0.000000000000          1           1.00");
    let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
    assert_eq!(footer.len(), 3);
    assert!(footer[0].starts_with("#[Mean    = "), "{}", footer[0]);
    assert!(footer[1].starts_with("#[Max     = "), "{}", footer[1]);
    assert!(footer[1].ends_with("Total count    =        10000]"), "{}", footer[1]);
    assert!(footer[2].ends_with("SubBuckets     =         2048]"), "{}", footer[2]);
    let last_data = text.lines().rfind(|l| !l.starts_with('#')).expect("data");
    assert!(last_data.contains("1.000000000000"), "{last_data}");
}

#[test]
fn parses_back_monotonic() {
    let h = sample();
    let lines = parse(&percentile_distribution(&h, 1000.0, 5)).expect("parses");
    assert!(lines.len() > 50);
    for pair in lines.windows(2) {
        assert!(pair[0].value <= pair[1].value);
        assert!(pair[0].percentile <= pair[1].percentile);
        assert!(pair[0].total_count <= pair[1].total_count);
    }
    let last = lines.last().expect("last");
    assert_eq!(last.total_count, 10_000);
    assert_eq!(last.percentile, 1.0);
    assert!((last.value - h.max() as f64 / 1000.0).abs() < 1e-9);
}

use std::sync::Arc;

use super::summary::{Summary, FIELDS};
use super::*;
use crate::bench::cli::{resolve, RunFlags};
use crate::bench::settings::Mode;
use crate::bench::stats::{Progress, Recorder, SendSpan, NS_PER_S};
use crate::bench::workload::WorkloadFile;

const START_NS: u64 = 1_700_000_000 * NS_PER_S;

/// A three-second e2e run with made-up latencies.
fn outcome() -> Outcome {
    let flags = RunFlags::default();
    let settings = resolve(Mode::E2e, &flags, WorkloadFile::default(), "strata bench e2e".into())
        .expect("defaults resolve");
    let progress = Progress::default();
    let mut recorder = Recorder::new(START_NS, 0);
    for second in 0..3u64 {
        for i in 0..100u64 {
            let sent = START_NS + second * NS_PER_S + i * 10_000_000;
            let span = SendSpan { count: 10, bytes: 1000, first_ns: sent, last_ns: sent + 900 };
            recorder.record_acks(sent + 200_000 + i * 1000, span, &progress);
            recorder.record_consumed(sent + 900_000, sent, 100, &progress);
        }
    }
    Outcome {
        settings: Arc::new(settings),
        produced_all: recorder.acked_all,
        consumed_all: recorder.consumed_all,
        recorder,
        measure_start_ns: START_NS,
        measure_end_ns: START_NS + 3 * NS_PER_S,
        drained: true,
        tool_cpu_percent: Some(12.5),
        partitions: 16,
    }
}

fn lookup<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut node = doc;
    for part in path.split('.') {
        node = match part.strip_suffix("[]") {
            Some(array) => node.get(array)?.as_array()?.first()?,
            None => node.get(part)?,
        };
    }
    Some(node)
}

/// Every dotted path of a JSON document (arrays of objects as `name[]`).
fn paths(doc: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    let Some(object) = doc.as_object() else {
        return;
    };
    for (key, value) in object {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        out.push(path.clone());
        match value {
            serde_json::Value::Array(items) if items.first().is_some_and(|i| i.is_object()) => {
                paths(&items[0], &format!("{path}[]"), out);
            }
            _ => paths(value, &path, out),
        }
    }
}

#[test]
fn summary_json_has_exactly_the_documented_fields() {
    let summary = Summary::of(&outcome());
    let doc = serde_json::to_value(&summary).expect("serializes");
    for field in FIELDS {
        assert!(lookup(&doc, field).is_some(), "summary.json lacks {field}");
    }
    let mut found = Vec::new();
    paths(&doc, "", &mut found);
    for path in &found {
        assert!(FIELDS.contains(&path.as_str()), "{path} is not in FIELDS");
    }
    let readme = include_str!("../../../perf/README.md");
    for field in FIELDS {
        assert!(readme.contains(&format!("`{field}`")), "perf/README.md does not document {field}");
    }
}

#[test]
fn summary_numbers_add_up() {
    let summary = Summary::of(&outcome());
    let produce = summary.produce.as_ref().expect("produce");
    assert_eq!(produce.messages, 3000);
    assert!((produce.msgs_per_s - 1000.0).abs() < 1e-6);
    assert_eq!(summary.timeline.len(), 3);
    assert_eq!(summary.timeline[1].consume_msgs, 100);
    let e2e = summary.e2e_latency.as_ref().expect("e2e");
    assert_eq!(e2e.count, 300);
    assert!((899..=901).contains(&e2e.p50_us), "{}", e2e.p50_us);
    let ack = summary.ack_latency.as_ref().expect("ack");
    assert!(ack.min_us >= 199 && ack.max_us <= 301, "{ack:?}");
}

#[test]
fn html_is_well_formed_and_has_three_svg_plots() {
    let out = outcome();
    let summary = Summary::of(&out);
    let page = html::render(&summary, &out.recorder.ack, &out.recorder.e2e);
    html::check_well_formed(&page).expect("well formed");
    assert_eq!(page.matches("<svg").count(), 3);
    assert!(page.contains("Latency by percentile"));
    assert!(page.contains("99.9%"), "log 1/(1-p) axis labels");
    assert!(page.contains("<polyline"));
    assert!(!page.contains("<script"), "self-contained, no scripts");
    assert!(html::check_well_formed("<!DOCTYPE html><html><body><p></body></html>").is_err());
}

#[test]
fn table_lists_both_latencies() {
    let table = table(&Summary::of(&outcome()));
    assert!(table.contains("p99.99"));
    assert!(table.lines().any(|l| l.starts_with("produce")));
    assert!(table.lines().any(|l| l.starts_with("consume")));
}

//! Black-box test of `strata bench`: a short e2e scenario against a real broker; the produced
//! count must equal the consumed count and the report files must be well formed.
//!
//! The broker is `strata serve` (this crate's binary); `STRATA_BENCH_TANSU=/path/to/tansu`
//! runs the same test against a Tansu broker instead, to check the tool against another peer.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::bench::report::hgrm;

mod common;

/// The broker under test: Strata (the default), or a Tansu binary named by
/// `STRATA_BENCH_TANSU`, killed on drop.
enum Broker {
    // The TempDir holds the data directory until the broker is gone.
    Strata(common::Broker, #[allow(dead_code)] tempfile::TempDir),
    Other(Child, String),
}

impl Broker {
    fn addr(&self) -> String {
        match self {
            Broker::Strata(b, _) => b.bootstrap(),
            Broker::Other(_, addr) => addr.clone(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Other(child, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().expect("temp dir");
    let Ok(tansu) = std::env::var("STRATA_BENCH_TANSU") else {
        let broker = common::Broker::start(dir.path(), &["--shards", "1"]);
        return Broker::Strata(broker, dir);
    };
    let addr = format!("127.0.0.1:{}", common::free_port());
    let url = format!("tcp://{addr}");
    let child = Command::new(tansu)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start broker");
    // Tansu prints no ready line: wait until it accepts connections.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker::Other(child, addr)
}

fn run_bench(broker: &Broker, report: &Path) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "e2e", "--brokers", &broker.addr(), "--topic", "it-e2e"])
        .args(["--partitions", "3", "--rate", "20k", "--duration", "2s", "--warmup", "500ms"])
        .args(["--record-size", "64..256", "--key-mode", "sequential"])
        .arg("--report")
        .arg(report)
        .output()
        .expect("run strata bench");
    assert!(
        output.status.success(),
        "bench failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn e2e_counts_match_and_reports_are_well_formed() {
    let broker = start_broker();
    let report = tempfile::tempdir().expect("report dir");
    let output = run_bench(&broker, report.path());
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("p99.99"), "{table}");

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.path().join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json parses");
    let produced = summary["produced_total"].as_u64().expect("produced_total");
    let consumed = summary["consumed_total"].as_u64().expect("consumed_total");
    assert!(produced > 0);
    assert_eq!(produced, consumed, "every produced record must be consumed");
    assert_eq!(summary["drained"], serde_json::Value::Bool(true));
    for field in strata::bench::report::summary::documented_fields() {
        assert!(pointer(&summary, field).is_some(), "summary.json lacks {field}");
    }

    for name in ["ack.hgrm", "e2e.hgrm"] {
        let text = std::fs::read_to_string(report.path().join(name)).expect(name);
        let lines = hgrm::parse(&text).expect("hgrm parses");
        assert!(!lines.is_empty(), "{name} is empty");
        for pair in lines.windows(2) {
            assert!(pair[0].value <= pair[1].value, "{name}: values not monotonic");
            assert!(pair[0].percentile <= pair[1].percentile, "{name}: percentiles not monotonic");
        }
        assert!(text.contains("#[Mean    ="), "{name} lacks the footer");
    }

    let html = std::fs::read_to_string(report.path().join("report.html")).expect("report.html");
    strata::bench::report::html::check_well_formed(&html).expect("report.html is well formed");
    assert!(html.matches("<svg").count() >= 3, "three plots expected");
}

/// `bench consume` (which prefetches: the next fetch leaves before a response's records are
/// counted) reads back every record `bench produce` wrote, over many small fetches, and stops
/// once drained.
#[test]
fn consume_reads_back_every_produced_record() {
    let broker = start_broker();
    let bench = |args: &[&str]| {
        let report = tempfile::tempdir().expect("report dir");
        let output = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("bench")
            .args(args)
            .args(["--brokers", &broker.addr(), "--topic", "it-consume", "--partitions", "3"])
            .arg("--report")
            .arg(report.path())
            .output()
            .expect("run strata bench");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let summary = std::fs::read_to_string(report.path().join("summary.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&summary).expect("summary.json parses")
    };
    let produced = bench(&["produce", "--messages", "30000", "--record-size", "200"]);
    let total = produced["produced_total"].as_u64().expect("produced_total");
    assert!(total >= 30_000, "{produced}");
    let consumed =
        bench(&["consume", "--record-size", "200", "--fetch-bytes", "16KiB", "--duration", "60s"]);
    assert_eq!(consumed["consumed_total"].as_u64(), Some(total), "{consumed}");
    assert_eq!(consumed["drained"], serde_json::Value::Bool(true));
    assert_eq!(consumed["foreign_records"].as_u64(), Some(0));
}

/// Looks up a dotted path (`settings.partitions`, `timeline[].second`) in a JSON document.
fn pointer<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut node = doc;
    for part in path.split('.') {
        node = match part.strip_suffix("[]") {
            Some(array) => node.get(array)?.as_array()?.first()?,
            None => node.get(part)?,
        };
    }
    Some(node)
}

//! `strata produce` and `strata consume` against a real broker and a three-broker cluster:
//! keyed records land on murmur2's partition in order, consume reads back exactly what was
//! produced (JSON and --format), starts at --offset, and errors end the commands non-zero.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use common::{create, fetch_one, layout, poll, records, Broker, Cluster, Conn};
use strata::record_batch::partition::partition_for_key;

/// Runs `strata ARGS` with `stdin`: (success, stdout, stderr).
fn strata(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn produce(bootstrap: &str, topic: &str, extra: &[&str], lines: &str) -> String {
    let mut args = vec!["produce", topic, "--bootstrap-server", bootstrap];
    args.extend_from_slice(extra);
    let (ok, _, stderr) = strata(&args, lines);
    assert!(ok, "strata produce failed: {stderr}");
    stderr
}

/// `strata consume --output json` (stopping after 30 s without records unless `extra` says
/// otherwise): one JSON per line.
fn consume_json(bootstrap: &str, topic: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["consume", topic, "--bootstrap-server", bootstrap, "--output", "json"];
    if !extra.contains(&"--timeout-ms") {
        args.extend_from_slice(&["--timeout-ms", "30000"]);
    }
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = strata(&args, "");
    assert!(ok, "strata consume failed: {stderr}");
    stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// 1000 lines, every other one `key<i % 10>:value-<i>`, the others `value-<i>` (no key).
fn thousand_lines() -> String {
    (0..1000)
        .map(
            |i| {
                if i % 2 == 0 {
                    format!("key{}:value-{i}\n", i % 10)
                } else {
                    format!("value-{i}\n")
                }
            },
        )
        .collect()
}

/// (key, value) of a JSON record.
fn key_value(r: &serde_json::Value) -> (Option<String>, String) {
    (r["key"].as_str().map(str::to_owned), r["value"].as_str().unwrap().to_owned())
}

/// Checks that `got` holds exactly the records of [`thousand_lines`] on `partitions`
/// partitions: offsets 0.. per partition, each key on its murmur2 partition in order.
fn check_thousand(got: &[serde_json::Value], partitions: i32) {
    assert_eq!(got.len(), 1000);
    let produced: BTreeSet<(Option<String>, String)> = (0..1000)
        .map(|i| {
            let key = (i % 2 == 0).then(|| format!("key{}", i % 10));
            (key, format!("value-{i}"))
        })
        .collect();
    let consumed: BTreeSet<_> = got.iter().map(key_value).collect();
    assert_eq!(consumed, produced);
    let mut by_partition: BTreeMap<i64, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in got {
        by_partition.entry(r["partition"].as_i64().unwrap()).or_default().push(r);
    }
    let mut per_key: BTreeMap<String, Vec<(i64, u32)>> = BTreeMap::new();
    for (p, rs) in &mut by_partition {
        rs.sort_by_key(|r| r["offset"].as_i64().unwrap());
        let offsets: Vec<i64> = rs.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
        assert_eq!(offsets, (0..rs.len() as i64).collect::<Vec<_>>(), "partition {p}");
        for r in rs.iter() {
            if let (Some(key), value) = key_value(r) {
                let i: u32 = value.trim_start_matches("value-").parse().unwrap();
                per_key.entry(key).or_default().push((*p, i));
            }
        }
    }
    assert_eq!(per_key.len(), 5);
    for (key, seen) in per_key {
        let expected = i64::from(partition_for_key(key.as_bytes(), partitions));
        assert!(seen.iter().all(|(p, _)| *p == expected), "{key} not all on {expected}");
        assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{key} out of order");
    }
}

#[test]
fn produce_then_consume_on_one_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let bootstrap = broker.bootstrap();
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "lines", 3, 1), (0, None));

    let summary = produce(&bootstrap, "lines", &["--key-separator", ":"], &thousand_lines());
    assert!(summary.contains("produced 1000 records to lines"), "{summary}");

    let got = consume_json(&bootstrap, "lines", &["--num", "1000"]);
    check_thousand(&got, 3);
    assert!(got.iter().all(|r| r["topic"] == "lines" && r["timestamp"].as_i64() > Some(0)));

    // --partition 1 --offset 5 starts there.
    let mut expected: Vec<_> = got.iter().filter(|r| r["partition"] == 1).collect();
    expected.sort_by_key(|r| r["offset"].as_i64().unwrap());
    let rest = (expected.len() - 5).to_string();
    let args = ["--partition", "1", "--offset", "5", "--num", &rest];
    let from_five = consume_json(&bootstrap, "lines", &args);
    assert_eq!(from_five.len(), expected.len() - 5);
    assert_eq!(from_five[0]["offset"], 5);
    assert!(from_five.iter().zip(&expected[5..]).all(|(a, b)| a == *b));

    // --offset latest sees nothing old; a kcat-like --format; --num stops early.
    let latest = consume_json(&bootstrap, "lines", &["--offset", "latest", "--timeout-ms", "200"]);
    assert!(latest.is_empty());
    let args = [
        "consume",
        "lines",
        "--bootstrap-server",
        &bootstrap,
        "--partition",
        "2",
        "--num",
        "2",
        "--format",
        "%t %p %o %k|%v\\n",
    ];
    let (ok, text, stderr) = strata(&args, "");
    assert!(ok, "{stderr}");
    let first: Vec<_> = expected_lines(&got, 2);
    assert_eq!(text.lines().collect::<Vec<_>>(), first);

    // Compressed batches and a fixed partition round-trip too.
    assert_eq!(create(&mut conn, "packed", 2, 1), (0, None));
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let lines = format!("{codec}-a\n{codec}-b\n");
        produce(&bootstrap, "packed", &["--compression", codec, "--partition", "1"], &lines);
    }
    let packed = consume_json(&bootstrap, "packed", &["--num", "8"]);
    let values: Vec<_> = packed.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(
        values,
        ["gzip-a", "gzip-b", "snappy-a", "snappy-b", "lz4-a", "lz4-b"]
            .into_iter()
            .chain(["zstd-a", "zstd-b"])
            .collect::<Vec<_>>()
    );
    assert!(packed.iter().all(|r| r["partition"] == 1 && r["key"].is_null()));
}

/// The first two records of `partition` as `--format '%t %p %o %k|%v\n'` prints them.
fn expected_lines(got: &[serde_json::Value], partition: i64) -> Vec<String> {
    let mut rs: Vec<_> = got.iter().filter(|r| r["partition"] == partition).collect();
    rs.sort_by_key(|r| r["offset"].as_i64().unwrap());
    rs.iter()
        .take(2)
        .map(|r| {
            let (key, value) = key_value(r);
            format!("lines {partition} {} {}|{value}", r["offset"], key.unwrap_or_default())
        })
        .collect()
}

#[test]
fn produce_and_consume_through_one_broker_of_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let mut conns: Vec<Conn> = cluster.brokers.iter().map(|b| Conn::connect(b.addr)).collect();
    assert_eq!(create(&mut conns[0], "spread", 3, 1), (0, None));
    let placed = |l: &common::Layout| l.len() == 3 && l.iter().all(|p| p.1 > 0);
    let leaders =
        poll("leaders of every partition", || layout(&mut conns[0], "spread").filter(placed))
            .into_iter()
            .map(|p| (p.0, p.1))
            .collect::<BTreeMap<i32, i32>>();
    for conn in &mut conns {
        poll("every broker to see the leaders", || layout(conn, "spread").filter(placed));
    }
    let distinct: BTreeSet<i32> = leaders.values().copied().collect();
    assert!(distinct.len() > 1, "leaders all on one broker: {leaders:?}");

    let bootstrap = cluster.brokers[0].bootstrap();
    let summary = produce(&bootstrap, "spread", &["--key-separator", ":"], &thousand_lines());
    assert!(summary.contains("produced 1000 records"), "{summary}");

    // Every partition's leader holds its records.
    let mut total = 0;
    for (partition, leader) in &leaders {
        let mut conn = Conn::connect(cluster.brokers[(*leader - 1) as usize].addr);
        let mut held = Vec::new();
        while let Some(batch) = Some(fetch_one(&mut conn, "spread", *partition, held.len() as i64))
            .filter(|d| d.error_code == 0 && d.records.as_ref().is_some_and(|r| !r.is_empty()))
        {
            held.extend(records(batch.records.as_ref().unwrap()));
        }
        assert!(!held.is_empty(), "partition {partition} on broker {leader} is empty");
        total += held.len();
    }
    assert_eq!(total, 1000);

    let got = consume_json(&bootstrap, "spread", &["--num", "1000"]);
    check_thousand(&got, 3);
}

#[test]
fn errors_end_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let mut conn = Conn::connect(broker.addr);

    let (ok, _, stderr) = strata(&["produce", "missing", "--bootstrap-server", &bootstrap], "x\n");
    assert!(!ok);
    assert!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{stderr}");
    let (ok, _, stderr) = strata(&["consume", "missing", "--bootstrap-server", &bootstrap], "");
    assert!(!ok);
    assert!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{stderr}");

    assert_eq!(create(&mut conn, "two", 2, 1), (0, None));
    let args = ["produce", "two", "--bootstrap-server", &bootstrap, "--partition", "5"];
    let (ok, _, stderr) = strata(&args, "x\n");
    assert!(!ok);
    assert!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{stderr}");

    // Nothing to read: --timeout-ms ends the consumer, successfully and silently.
    let args = ["consume", "two", "--bootstrap-server", &bootstrap, "--timeout-ms", "300"];
    let (ok, stdout, stderr) = strata(&args, "");
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty());

    // Empty input produces nothing; acks 0 and 1 work; a broker that is not there is a clear
    // error.
    let summary = produce(&bootstrap, "two", &[], "");
    assert!(summary.contains("produced 0 records"), "{summary}");
    produce(&bootstrap, "two", &["--acks", "0", "--partition", "0"], "a0\nb0\n");
    let summary = produce(&bootstrap, "two", &["--acks", "1", "--partition", "0"], "c1\n");
    assert!(summary.contains("partition 0: 1 records, last offset 2"), "{summary}");
    let got = consume_json(&bootstrap, "two", &["--partition", "0", "--num", "3"]);
    let values: Vec<_> = got.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["a0", "b0", "c1"]);
    drop(conn);
    drop(broker);
    let (ok, _, stderr) = strata(&["produce", "two", "--bootstrap-server", &bootstrap], "x\n");
    assert!(!ok);
    assert!(stderr.contains("connecting to"), "{stderr}");
}

/// An aborted transaction's records are skipped with `--isolation read-committed`.
#[test]
fn read_committed_skips_aborted_transactions() {
    use kafka_protocol::messages::*;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let bootstrap = broker.bootstrap();
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "tx", 1, 1), (0, None));
    let s = |v: &str| kafka_protocol::protocol::StrBytes::from_string(v.to_owned());
    let id = || TransactionalId(s("t1"));

    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(id()))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let ResponseKind::InitProducerId(r) =
        conn.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
    else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(r.error_code, 0);
    let (pid, epoch) = (r.producer_id, r.producer_epoch);
    let topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
        .with_name(TopicName(s("tx")))
        .with_partitions(vec![0]);
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id())
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![topic]);
    let ResponseKind::AddPartitionsToTxn(_) =
        conn.call(ApiKey::AddPartitionsToTxn, 3, RequestKind::AddPartitionsToTxn(req))
    else {
        panic!("not an AddPartitionsToTxn response")
    };
    let batch = common::transactional_batch(pid.0, epoch, 0, &[b"t-a", b"t-b"]);
    let data =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(s("tx")))
        .with_partition_data(vec![data]);
    let req = ProduceRequest::default()
        .with_transactional_id(Some(id()))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let req = EndTxnRequest::default()
        .with_transactional_id(id())
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(false);
    let ResponseKind::EndTxn(r) = conn.call(ApiKey::EndTxn, 3, RequestKind::EndTxn(req)) else {
        panic!("not an EndTxn response")
    };
    assert_eq!(r.error_code, 0);

    produce(&bootstrap, "tx", &[], "after\n");
    let values = |isolation: &str, num: &str| -> Vec<String> {
        let args = ["--isolation", isolation, "--num", num];
        let got = consume_json(&bootstrap, "tx", &args);
        got.iter().map(|r| r["value"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(values("read-committed", "1"), ["after"]);
    assert_eq!(values("read-uncommitted", "3"), ["t-a", "t-b", "after"]);
}

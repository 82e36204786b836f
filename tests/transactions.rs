//! Transactions over the raw protocol: the coordinator's checks and error codes, produce
//! verification, read_committed fetches and ListOffsets, the operator APIs
//! (DescribeProducers, DescribeTransactions, ListTransactions), state surviving a restart,
//! and `strata txn list|describe`.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::txn::{self, add, end, init, init_with, txn_id};
use common::{create_topic, records, transactional_batch, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "tt";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Produce v9 with a transactional id: the partition's error code.
fn produce_txn(conn: &mut Conn, id: &str, partition: i32, records: Bytes) -> i16 {
    txn::produce(conn, id, TOPIC, partition, records)
}

fn describe(conn: &mut Conn, id: &str) -> describe_transactions_response::TransactionState {
    let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]);
    let ResponseKind::DescribeTransactions(r) =
        conn.call(ApiKey::DescribeTransactions, 0, RequestKind::DescribeTransactions(req))
    else {
        panic!("not a DescribeTransactions response")
    };
    r.transaction_states[0].clone()
}

fn list(conn: &mut Conn, states: &[&str]) -> ListTransactionsResponse {
    let req = ListTransactionsRequest::default()
        .with_state_filters(states.iter().map(|v| s(v)).collect())
        .with_duration_filter(-1);
    let ResponseKind::ListTransactions(r) =
        conn.call(ApiKey::ListTransactions, 1, RequestKind::ListTransactions(req))
    else {
        panic!("not a ListTransactions response")
    };
    r
}

/// Fetch v12 of partition 0 from `offset` at `isolation` (0 or 1).
fn fetch(conn: &mut Conn, offset: i64, isolation: i8) -> fetch_response::PartitionData {
    let p = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default()
        .with_topic(TopicName(s(TOPIC)))
        .with_partitions(vec![p]);
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
        panic!("not a Fetch response")
    };
    r.responses[0].partitions[0].clone()
}

fn latest(conn: &mut Conn, isolation: i8) -> i64 {
    let p = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
    let t = list_offsets_request::ListOffsetsTopic::default()
        .with_name(TopicName(s(TOPIC)))
        .with_partitions(vec![p]);
    let req = ListOffsetsRequest::default().with_isolation_level(isolation).with_topics(vec![t]);
    let ResponseKind::ListOffsets(r) =
        conn.call(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(req))
    else {
        panic!("not a ListOffsets response")
    };
    r.topics[0].partitions[0].offset
}

fn producers(conn: &mut Conn) -> Vec<describe_producers_response::ProducerState> {
    let t = describe_producers_request::TopicRequest::default()
        .with_name(TopicName(s(TOPIC)))
        .with_partition_indexes(vec![0]);
    let req = DescribeProducersRequest::default().with_topics(vec![t]);
    let ResponseKind::DescribeProducers(r) =
        conn.call(ApiKey::DescribeProducers, 0, RequestKind::DescribeProducers(req))
    else {
        panic!("not a DescribeProducers response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    r.topics[0].partitions[0].active_producers.clone()
}

fn find_txn_coordinator(conn: &mut Conn, key: &str) -> i16 {
    let req = FindCoordinatorRequest::default().with_key_type(1).with_key(s(key));
    let ResponseKind::FindCoordinator(r) =
        conn.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req))
    else {
        panic!("not a FindCoordinator response")
    };
    r.error_code
}

fn code(e: E) -> i16 {
    e.code()
}

#[test]
fn a_raw_transaction_is_checked_aborted_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, TOPIC, 2);
    assert_eq!(find_txn_coordinator(&mut conn, "tx-a"), 0);
    assert_eq!(find_txn_coordinator(&mut conn, ""), code(E::InvalidRequest));

    let (error, pid, epoch) = init(&mut conn, "tx-a");
    assert_eq!((error, epoch), (0, 0));
    let me = (pid, epoch);
    assert_eq!(add(&mut conn, "tx-a", (pid, 1), &[(TOPIC, 0)]), [code(E::ProducerFenced)]);
    assert_eq!(
        add(&mut conn, "tx-a", (pid + 1, 0), &[(TOPIC, 0)]),
        [code(E::InvalidProducerIdMapping)]
    );
    assert_eq!(add(&mut conn, "nobody", me, &[(TOPIC, 0)]), [code(E::InvalidProducerIdMapping)]);
    assert_eq!(
        add(&mut conn, "tx-a", me, &[(TOPIC, 0), ("missing", 0)]),
        [code(E::OperationNotAttempted), code(E::UnknownTopicOrPartition)]
    );
    assert_eq!(end(&mut conn, "tx-a", me, true), code(E::InvalidTxnState), "nothing to end");
    assert_eq!(add(&mut conn, "tx-a", me, &[(TOPIC, 0)]), [0]);

    // Partition 1 is not in the transaction; a zombie epoch is refused; clients never write
    // control batches.
    let b = || transactional_batch(pid, 0, 0, &[b"a", b"b", b"c"]);
    assert_eq!(produce_txn(&mut conn, "tx-a", 1, b()), code(E::InvalidTxnState));
    let stale = transactional_batch(pid, 7, 0, &[b"z"]);
    assert_eq!(produce_txn(&mut conn, "tx-a", 0, stale), code(E::InvalidProducerEpoch));
    let untracked = common::produce(&mut conn, TOPIC, 0, b(), -1).0;
    assert_eq!(untracked, code(E::InvalidRecord), "transactional batches need a transactional id");
    let marker = Bytes::from(strata::record_batch::marker_batch(pid, 0, true, 0, 0));
    assert_eq!(common::produce(&mut conn, TOPIC, 0, marker, -1).0, code(E::InvalidRecord));
    assert_eq!(produce_txn(&mut conn, "tx-a", 0, b()), 0);

    // Open: read_committed sees nothing, the LSO stays at the transaction's first offset.
    let open = fetch(&mut conn, 0, 1);
    assert_eq!((open.high_watermark, open.last_stable_offset), (3, 0));
    assert!(open.records.unwrap_or_default().is_empty());
    assert_eq!(records(&fetch(&mut conn, 0, 0).records.unwrap()).len(), 3);
    assert_eq!((latest(&mut conn, 1), latest(&mut conn, 0)), (0, 3));
    let seen = producers(&mut conn);
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].producer_id.0, seen[0].current_txn_start_offset), (pid, 0));
    let d = describe(&mut conn, "tx-a");
    assert_eq!((d.error_code, d.transaction_state.as_str()), (0, "Ongoing"));
    assert_eq!(d.topics.len(), 1);
    assert_eq!(d.topics[0].partitions, [0]);
    assert!(d.transaction_start_time_ms > 0);
    assert_eq!(describe(&mut conn, "unknown").error_code, code(E::TransactionalIdNotFound));
    let listed = list(&mut conn, &[]);
    assert!(listed
        .transaction_states
        .iter()
        .any(|t| t.transactional_id.0.as_str() == "tx-a"
            && t.transaction_state.as_str() == "Ongoing"));
    let filtered = list(&mut conn, &["CompleteCommit", "Bogus"]);
    assert!(filtered.transaction_states.iter().all(|t| t.transactional_id.0.as_str() != "tx-a"));
    assert_eq!(filtered.unknown_state_filters, [s("Bogus")]);

    assert_eq!(end(&mut conn, "tx-a", me, false), 0);
    assert_eq!(end(&mut conn, "tx-a", me, false), 0, "a retried abort succeeds");
    assert_eq!(end(&mut conn, "tx-a", me, true), code(E::InvalidTxnState));
    let aborted = |conn: &mut Conn| {
        let done = fetch(conn, 0, 1);
        assert_eq!((done.high_watermark, done.last_stable_offset), (4, 4), "3 records + marker");
        let list = done.aborted_transactions.unwrap_or_default();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].producer_id.0, list[0].first_offset), (pid, 0));
    };
    aborted(&mut conn);
    assert_eq!(describe(&mut conn, "tx-a").transaction_state.as_str(), "CompleteAbort");

    // Everything survives a restart: the coordinator's state and the partition's abort list.
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    // The coordinator replays its partition after the broker is ready (60 s safety limit).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut after = describe(&mut conn, "tx-a");
    while after.error_code == code(E::CoordinatorLoadInProgress) {
        assert!(std::time::Instant::now() < deadline, "the coordinator never loaded");
        after = describe(&mut conn, "tx-a");
    }
    assert_eq!((after.error_code, after.transaction_state.as_str()), (0, "CompleteAbort"));
    assert_eq!((after.producer_id.0, after.producer_epoch), me);
    aborted(&mut conn);
    let (error, again, epoch) = init(&mut conn, "tx-a");
    assert_eq!((error, again, epoch), (0, pid, 1), "same producer id, next epoch");
}

#[test]
fn a_timed_out_transaction_is_aborted_and_its_producer_may_reinitialise() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, TOPIC, 1);
    let (_, pid, epoch) = init_with(&mut conn, "hasty", 500, (-1, -1));
    assert_eq!(add(&mut conn, "hasty", (pid, epoch), &[(TOPIC, 0)]), [0]);
    assert_eq!(produce_txn(&mut conn, "hasty", 0, transactional_batch(pid, epoch, 0, &[b"x"])), 0);
    broker.wait_for_log("aborting a timed-out transaction");
    broker.wait_for_log("completed a transaction in the background");
    let aborted = describe(&mut conn, "hasty");
    assert_eq!(aborted.transaction_state.as_str(), "CompleteAbort");
    assert_eq!(aborted.producer_epoch, epoch + 1, "the abort bumped the epoch");
    let fenced = end(&mut conn, "hasty", (pid, epoch), true);
    assert_eq!(fenced, code(E::ProducerFenced), "its commit comes too late");
    assert_eq!(end(&mut conn, "hasty", (pid, epoch), false), 0, "its abort is already done");
    let late = produce_txn(&mut conn, "hasty", 0, transactional_batch(pid, epoch, 1, &[b"y"]));
    assert_eq!(late, code(E::InvalidProducerEpoch));
    // KIP-360: the producer re-initialises with the epoch it had and gets the next one.
    assert_eq!(init_with(&mut conn, "hasty", 60_000, (pid, epoch)), (0, pid, epoch + 2));
    assert_eq!(init_with(&mut conn, "hasty", 60_000, (pid, epoch)).0, code(E::ProducerFenced));
    let done = fetch(&mut conn, 0, 1);
    assert_eq!(done.aborted_transactions.unwrap_or_default().len(), 1);
    assert_eq!(done.last_stable_offset, done.high_watermark);
}

/// Whether ListTransactions lists `id`, and in which state.
/// KIP-588: PRODUCER_FENCED is new in InitProducerId v4 and AddPartitionsToTxn,
/// AddOffsetsToTxn and EndTxn v2; older requests get INVALID_PRODUCER_EPOCH, as from Kafka.
#[test]
fn a_fenced_producer_speaking_an_old_version_hears_invalid_producer_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, TOPIC, 1);
    let (_, pid, first) = init(&mut conn, "old");
    let (_, _, second) = init(&mut conn, "old");
    assert_eq!(second, first + 1, "the second producer fenced the first");
    let (fenced, epoch) = (code(E::ProducerFenced), code(E::InvalidProducerEpoch));
    let old = (pid, first);
    for (version, expected) in [(0, epoch), (1, epoch), (2, fenced), (3, fenced)] {
        let got = txn::add_at(&mut conn, version, "old", old, &[(TOPIC, 0)]);
        assert_eq!(got, [expected], "AddPartitionsToTxn v{version}");
    }
    for (version, expected) in [(0, epoch), (1, epoch), (2, fenced), (3, fenced)] {
        let got = txn::add_offsets_at(&mut conn, version, "old", old, "some-group");
        assert_eq!(got, expected, "AddOffsetsToTxn v{version}");
        assert_eq!(
            txn::end_at(&mut conn, version, "old", old, true),
            expected,
            "EndTxn v{version}"
        );
    }
    // The epoch before last is no longer one the producer may re-initialise from.
    let (_, _, third) = init(&mut conn, "old");
    assert_eq!(third, second + 1);
    for (version, expected) in [(3, epoch), (4, fenced), (5, fenced)] {
        let got = txn::init_at(&mut conn, version, "old", 60_000, old).0;
        assert_eq!(got, expected, "InitProducerId v{version}");
    }
}

fn listed(conn: &mut Conn, id: &str) -> Option<String> {
    let all = list(conn, &[]);
    assert_eq!(all.error_code, 0);
    let found = all.transaction_states.iter().find(|t| t.transactional_id.0.as_str() == id);
    found.map(|t| t.transaction_state.as_str().to_owned())
}

/// InitProducerId, AddPartitionsToTxn and a committing EndTxn: the (producer id, epoch).
fn commit_one(conn: &mut Conn, id: &str) -> (i64, i16) {
    let (error, pid, epoch) = init(conn, id);
    assert_eq!(error, 0);
    assert_eq!(add(conn, id, (pid, epoch), &[(TOPIC, 0)]), [0]);
    assert_eq!(end(conn, id, (pid, epoch), true), 0);
    (pid, epoch)
}

fn poll_until_unlisted(conn: &mut Conn, id: &str) {
    common::poll(&format!("{id} to expire"), || listed(conn, id).is_none().then_some(()));
}

#[test]
fn idle_transactional_ids_expire_for_good_but_open_transactions_do_not() {
    let dir = tempfile::tempdir().unwrap();
    // One shard: every id on the same coordinator, so its periodic passes order them.
    let args = ["--shards", "1", "--transactional-id-expiration-ms", "1000"];
    let mut broker = Broker::start(dir.path(), &args);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, TOPIC, 1);
    // Updated before the committed ids below, and open far longer than the expiration.
    let (_, open_pid, open_epoch) = init_with(&mut conn, "exp-open", 600_000, (-1, -1));
    assert_eq!(add(&mut conn, "exp-open", (open_pid, open_epoch), &[(TOPIC, 0)]), [0]);
    let (done_pid, _) = commit_one(&mut conn, "exp-done");
    poll_until_unlisted(&mut conn, "exp-done");
    let gone = describe(&mut conn, "exp-done");
    assert_eq!(gone.error_code, code(E::TransactionalIdNotFound));
    // An id completed after that expiry goes in a later pass, which saw the open id as well.
    commit_one(&mut conn, "exp-later");
    poll_until_unlisted(&mut conn, "exp-later");
    assert_eq!(listed(&mut conn, "exp-open").as_deref(), Some("Ongoing"));

    // Restarted with an expiration that never comes: only the tombstones can keep the
    // expired ids away.
    broker.stop();
    drop(broker);
    let args = ["--shards", "1", "--transactional-id-expiration-ms", "3600000"];
    let broker = Broker::start(dir.path(), &args);
    let mut conn = Conn::connect(broker.addr);
    let after = common::poll("the coordinator to load", || {
        let d = describe(&mut conn, "exp-done");
        (d.error_code != code(E::CoordinatorLoadInProgress)).then_some(d)
    });
    assert_eq!(after.error_code, code(E::TransactionalIdNotFound), "replay forgets it");
    assert_eq!(describe(&mut conn, "exp-later").error_code, code(E::TransactionalIdNotFound));
    assert_eq!(listed(&mut conn, "exp-done"), None);
    assert_eq!(listed(&mut conn, "exp-open").as_deref(), Some("Ongoing"));

    // The id starts afresh, as a new one: a new producer id at epoch 0.
    let (error, pid, epoch) = init(&mut conn, "exp-done");
    assert_eq!((error, epoch), (0, 0));
    assert_ne!(pid, done_pid, "not the expired id's producer id");
    assert_eq!(listed(&mut conn, "exp-done").as_deref(), Some("Empty"));
}

fn strata_txn(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["txn", "--bootstrap-server", &broker.bootstrap()])
        .args(args)
        .output()
        .expect("strata runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn strata_txn_lists_and_describes_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, TOPIC, 1);
    let (_, pid, epoch) = init(&mut conn, "cli-open");
    assert_eq!(add(&mut conn, "cli-open", (pid, epoch), &[(TOPIC, 0)]), [0]);
    let (_, done_pid, done_epoch) = init(&mut conn, "cli-done");
    assert_eq!(add(&mut conn, "cli-done", (done_pid, done_epoch), &[(TOPIC, 0)]), [0]);
    assert_eq!(end(&mut conn, "cli-done", (done_pid, done_epoch), true), 0);

    let (ok, table, err) = strata_txn(&broker, &["list"]);
    assert!(ok, "{err}");
    assert!(table.lines().any(|l| l.starts_with("cli-open") && l.contains("Ongoing")), "{table}");
    let (ok, json, err) = strata_txn(&broker, &["--output", "json", "list"]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let done = rows.as_array().unwrap().iter().find(|r| r["transactional_id"] == "cli-done");
    assert_eq!(done.unwrap()["state"], "CompleteCommit");
    assert_eq!(done.unwrap()["producer_id"], done_pid);

    let (ok, json, err) = strata_txn(&broker, &["--output", "json", "describe", "cli-open"]);
    assert!(ok, "{err}");
    let described: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(described["state"], "Ongoing");
    assert_eq!(described["producer_id"], pid);
    assert_eq!(described["partitions"], serde_json::json!([format!("{TOPIC}-0")]));
    let (ok, table, _) = strata_txn(&broker, &["describe", "cli-open"]);
    assert!(ok && table.contains("Ongoing") && table.contains("tt-0"), "{table}");
    let (ok, _, err) = strata_txn(&broker, &["describe", "nobody"]);
    assert!(!ok, "an unknown transactional id is an error");
    assert!(err.contains("TransactionalIdNotFound"), "{err}");
}

#[test]
fn random_transaction_requests_get_answers_or_disconnects_never_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut state: u64 = 0x7a11_5eed_0000_0001;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // (api key, highest version): InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
    // TxnOffsetCommit, DescribeProducers, DescribeTransactions, ListTransactions.
    let apis = [(22i16, 5u64), (24, 3), (25, 4), (26, 4), (28, 4), (61, 0), (65, 0), (66, 1)];
    for round in 0..400 {
        let (key, max) = apis[round % apis.len()];
        let len = (next() % 120) as usize + 10;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        frame[0..2].copy_from_slice(&key.to_be_bytes());
        frame[2..4].copy_from_slice(&((next() % (max + 1)) as i16).to_be_bytes());
        // A null client id, so the body decoder sees the random bytes.
        frame[8..10].copy_from_slice(&(-1i16).to_be_bytes());
        let mut conn = Conn::connect(broker.addr);
        conn.send_frame(&frame);
        let _ = conn.read_frame();
    }
    let mut conn = Conn::connect(broker.addr);
    let ResponseKind::ApiVersions(r) =
        conn.call(ApiKey::ApiVersions, 0, RequestKind::ApiVersions(ApiVersionsRequest::default()))
    else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(r.error_code, 0, "the broker still serves");
    assert!(list(&mut conn, &[]).error_code == 0);
}

//! Replication between three brokers on loopback, driven with raw Kafka requests so a test
//! can talk to one chosen broker: a partitioned (SIGSTOPped) leader never acknowledges an
//! acks=all write after another broker took over and loses what it took alone; leader
//! epochs answer OffsetForLeaderEpoch; the preferred leader gets its partitions back; a
//! replica fetch of a restarted broker's previous incarnation is refused (broker epochs).
//! (Real-client checks, acks=all through a kill -9 and min.insync.replicas, are in
//! tests/clients/test_replication.py.)

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{
    batch, create, create_with, layout, log_bytes, poll, produce, records, Cluster, Conn,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// Fast failover: fenced 2 s after the last heartbeat, out of the ISR after 3 s of lag.
const FAST: &[&str] =
    &["--shards", "1", "--broker-session-timeout-ms", "2000", "--replica-lag-time-max-ms", "3000"];
/// [`FAST`], with leadership staying where failover put it: the test talks to the new leader
/// after the old (preferred) one is back in sync.
const FAST_NO_REBALANCE: &[&str] = &[
    "--shards",
    "1",
    "--broker-session-timeout-ms",
    "2000",
    "--replica-lag-time-max-ms",
    "3000",
    "--auto-leader-rebalance",
    "false",
];

/// The leader of partition 0 of `topic` when every broker in `via` reports the same one
/// and, if `full`, every replica in sync.
fn leader(cluster: &mut Cluster, via: &[i32], topic: &str, full: bool) -> Option<i32> {
    let mut seen = BTreeSet::new();
    for &id in via {
        let mut conn = Conn::connect(cluster.node(id).addr);
        let parts = layout(&mut conn, topic)?;
        let (_, leader, replicas, isr) = parts.into_iter().next()?;
        if leader < 0 || (full && isr.len() != replicas.len()) {
            return None;
        }
        seen.insert(leader);
    }
    (seen.len() == 1).then(|| seen.into_iter().next()).flatten()
}

/// The brokers of a 3-node cluster other than `id`.
fn others(id: i32) -> Vec<i32> {
    (1..=3).filter(|&n| n != id).collect()
}

/// Values of every record of partition 0 read from `conn` (a leader), from offset 0.
fn values(conn: &mut Conn, topic: &str) -> Vec<Vec<u8>> {
    let data = common::fetch_one(conn, topic, 0, 0);
    assert_eq!(data.error_code, 0);
    records(&data.records.unwrap_or_default()).into_iter().map(|(_, _, v)| v).collect()
}

/// OffsetForLeaderEpoch v4 for partition 0 of `topic`: (error, epoch, end offset).
fn epoch_end(conn: &mut Conn, topic: &str, epoch: i32) -> (i16, i32, i64) {
    use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    let p = OffsetForLeaderPartition::default()
        .with_partition(0)
        .with_current_leader_epoch(-1)
        .with_leader_epoch(epoch);
    let t = OffsetForLeaderTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.into())))
        .with_partitions(vec![p]);
    let req =
        OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]);
    let ResponseKind::OffsetForLeaderEpoch(r) =
        conn.call(ApiKey::OffsetForLeaderEpoch, 4, RequestKind::OffsetForLeaderEpoch(req))
    else {
        panic!("not an OffsetForLeaderEpoch response")
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

#[test]
fn a_partitioned_leader_never_acknowledges_and_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    a_partitioned_leader(dir.path(), FAST_NO_REBALANCE);
}

/// The same with replication fetches over mutual TLS (the inter-broker listener is SSL with
/// client certificates required).
#[test]
fn a_partitioned_leader_never_acknowledges_and_is_truncated_with_tls_between_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let mut args: Vec<String> = FAST_NO_REBALANCE.iter().map(|s| s.to_string()).collect();
    args.extend(common::tls::inter_broker_tls_args(dir.path()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    a_partitioned_leader(dir.path(), &args);
}

fn a_partitioned_leader(dir: &Path, args: &[&str]) {
    let mut cluster = Cluster::start(dir, 3, args);
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(create_with(&mut conn, "split", 1, 3, &[("min.insync.replicas", "2")]).0, 0);
    let old = poll("a leader with every replica in sync", || {
        leader(&mut cluster, &[1, 2, 3], "split", true)
    });
    let mut to_old = Conn::connect(cluster.node(old).addr);
    assert_eq!(produce(&mut to_old, "split", 0, batch(&[(b"k", b"before")]), -1), (0, 0));

    // Partition the leader away: the others fence it and elect one of themselves.
    cluster.node(old).signal("STOP");
    let rest = others(old);
    let new =
        poll("a new leader", || leader(&mut cluster, &rest, "split", false).filter(|&l| l != old));
    let mut to_new = Conn::connect(cluster.node(new).addr);
    assert_eq!(produce(&mut to_new, "split", 0, batch(&[(b"k", b"after")]), -1), (0, 1));

    // Back, the old leader may still believe it leads for a moment: an acks=all write sent
    // straight to it must fail, never be acknowledged (its followers follow the new leader).
    cluster.node(old).signal("CONT");
    let (code, _) = produce(&mut to_old, "split", 0, batch(&[(b"k", b"stale")]), -1);
    assert_ne!(code, 0, "the old leader acknowledged an acks=all write");

    // It becomes a follower, truncates what it took alone and catches up.
    poll("all replicas in sync again", || leader(&mut cluster, &[1, 2, 3], "split", true));
    assert_eq!(values(&mut to_new, "split"), vec![b"before".to_vec(), b"after".to_vec()]);
    let dirs: Vec<_> = cluster.brokers.iter().map(|b| b.data_dir.clone()).collect();
    poll("identical logs on the three brokers", || {
        let copies: BTreeSet<Vec<u8>> = dirs.iter().map(|d| log_bytes(d, "split", 0)).collect();
        (copies.len() == 1).then_some(())
    });

    // Leader epochs: the first leader's epoch ended where the new leader's began.
    let mut conn = Conn::connect(cluster.node(new).addr);
    let (error, _, end) = epoch_end(&mut conn, "split", 0);
    assert_eq!((error, end), (0, 1));
    // A follower does not answer for the partition.
    let mut conn = Conn::connect(cluster.node(old).addr);
    assert_eq!(epoch_end(&mut conn, "split", 0).0, 6, "NOT_LEADER_OR_FOLLOWER");
}

#[test]
fn the_preferred_leader_gets_its_partitions_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, FAST);
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(create(&mut conn, "pref", 1, 3).0, 0);
    let preferred = poll("a leader", || leader(&mut cluster, &[1, 2, 3], "pref", true));
    let mut to_leader = Conn::connect(cluster.node(preferred).addr);
    assert_eq!(produce(&mut to_leader, "pref", 0, batch(&[(b"k", b"one")]), -1), (0, 0));

    cluster.node(preferred).kill9();
    let rest = others(preferred);
    let interim = poll("a new leader", || {
        leader(&mut cluster, &rest, "pref", false).filter(|&l| l != preferred)
    });
    let mut to_interim = Conn::connect(cluster.node(interim).addr);
    assert_eq!(produce(&mut to_interim, "pref", 0, batch(&[(b"k", b"two")]), -1), (0, 1));

    cluster.node(preferred).restart();
    poll("the preferred replica to lead again, in sync", || {
        leader(&mut cluster, &[1, 2, 3], "pref", true).filter(|&l| l == preferred)
    });
    let mut to_leader = Conn::connect(cluster.node(preferred).addr);
    assert_eq!(values(&mut to_leader, "pref"), vec![b"one".to_vec(), b"two".to_vec()]);
    // The old leader refuses produce now that it follows.
    let mut to_interim = Conn::connect(cluster.node(interim).addr);
    let (code, _) = produce(&mut to_interim, "pref", 0, batch(&[(b"k", b"x")]), 1);
    assert_eq!(code, 6, "NOT_LEADER_OR_FOLLOWER");
}

#[test]
fn a_returning_follower_copies_a_compacted_leader() {
    let dir = tempfile::tempdir().unwrap();
    let args = [FAST_NO_REBALANCE, &["--retention-check-ms", "100"]].concat();
    let mut cluster = Cluster::start(dir.path(), 3, &args);
    let mut conn = Conn::connect(cluster.node(1).addr);
    let configs = [("cleanup.policy", "compact"), ("segment.bytes", "1048576")];
    assert_eq!(create_with(&mut conn, "compacted", 1, 3, &configs).0, 0);
    let lead = poll("a leader with every replica in sync", || {
        leader(&mut cluster, &[1, 2, 3], "compacted", true)
    });
    let follower = others(lead)[0];
    cluster.node(follower).kill9();

    // 4 MiB in batches of 100 records: the even batches rewrite the same 100 keys, so
    // compaction removes all but the last of them whole; the odd ones have keys of their own.
    let mut to_leader = Conn::connect(cluster.node(lead).addr);
    let value = vec![b'v'; 1000];
    for i in 0..40 {
        let keys: Vec<Vec<u8>> = (0..100)
            .map(|j| if i % 2 == 0 { format!("hot-{j}") } else { format!("own-{i}-{j}") })
            .map(String::into_bytes)
            .collect();
        let records: Vec<(&[u8], &[u8])> =
            keys.iter().map(|k| (k.as_slice(), value.as_slice())).collect();
        assert_eq!(produce(&mut to_leader, "compacted", 0, batch(&records), 1), (0, i * 100));
    }
    poll("the leader to compact away the first batch", || {
        let data = common::fetch_one(&mut to_leader, "compacted", 0, 0);
        records(&data.records.unwrap_or_default()).first().filter(|r| r.0 > 0).map(|_| ())
    });

    // Back, the follower fetches from offset 0 and gets batches with gaps between them.
    cluster.node(follower).restart();
    poll("the follower back in sync", || leader(&mut cluster, &[1, 2, 3], "compacted", true));
    let latest = |dir: &Path| {
        let bytes = log_bytes(dir, "compacted", 0);
        let mut latest = std::collections::BTreeMap::new();
        for (offset, key, value) in records(&bytes.into()) {
            latest.insert(key, (offset, value));
        }
        latest
    };
    let leader_dir = cluster.node(lead).data_dir.clone();
    let follower_dir = cluster.node(follower).data_dir.clone();
    let on_leader = latest(&leader_dir);
    assert_eq!(on_leader.len(), 100 + 20 * 100);
    assert_eq!(on_leader.values().map(|v| v.0).max(), Some(3999));
    poll("the follower's copy to reach the end", || {
        (latest(&follower_dir) == on_leader).then_some(())
    });
}

/// A forged replica fetch (Fetch v15) of partition 0 of topic `id` as broker `replica` at
/// broker epoch `epoch`, from `offset`.
fn replica_fetch(
    conn: &mut Conn,
    id: uuid::Uuid,
    replica: i32,
    epoch: i64,
    offset: i64,
) -> fetch_response::PartitionData {
    let p = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default().with_topic_id(id).with_partitions(vec![p]);
    let state = fetch_request::ReplicaState::default()
        .with_replica_id(BrokerId(replica))
        .with_replica_epoch(epoch);
    let req = FetchRequest::default()
        .with_replica_state(state)
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, 15, RequestKind::Fetch(req)) else {
        panic!("not a Fetch response")
    };
    r.responses[0].partitions[0].clone()
}

/// Replica fetches carry the follower's broker epoch: after a follower restarted, a fetch in
/// the name of its previous incarnation (a paused old process, say) is refused with
/// STALE_BROKER_EPOCH and reads nothing, while its current incarnation keeps replicating.
#[test]
fn a_replica_fetch_of_a_previous_broker_incarnation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, FAST_NO_REBALANCE);
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(create(&mut conn, "epochs", 1, 3).0, 0);
    let lead = poll("a leader with every replica in sync", || {
        leader(&mut cluster, &[1, 2, 3], "epochs", true)
    });
    let follower = others(lead)[0];
    let old = cluster.node(follower).broker_epoch();
    cluster.node(follower).kill9();
    cluster.node(follower).restart();
    let new = cluster.node(follower).broker_epoch();
    assert!(new > old, "a new incarnation gets a higher epoch: {old} then {new}");
    poll("every replica in sync again", || leader(&mut cluster, &[1, 2, 3], "epochs", true));

    // acks=all: the restarted follower's own fetches (with its new epoch) are accepted.
    let mut to_leader = Conn::connect(cluster.node(lead).addr);
    assert_eq!(produce(&mut to_leader, "epochs", 0, batch(&[(b"k", b"v")]), -1), (0, 0));
    let meta = common::metadata(&mut to_leader);
    let id = meta.topics.iter().find(|t| t.name.as_ref().unwrap().0.as_str() == "epochs");
    let id = id.unwrap().topic_id;

    let stale = replica_fetch(&mut to_leader, id, follower, old, 0);
    assert_eq!(stale.error_code, 77, "STALE_BROKER_EPOCH");
    assert!(stale.records.unwrap_or_default().is_empty());
    let current = replica_fetch(&mut to_leader, id, follower, new, 0);
    assert_eq!(current.error_code, 0);
    let read = records(&current.records.unwrap_or_default());
    assert_eq!(read.iter().map(|r| r.2.clone()).collect::<Vec<_>>(), vec![b"v".to_vec()]);
}

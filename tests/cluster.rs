//! Multi-broker clusters on loopback: placement, Metadata from every broker, NOT_LEADER on
//! non-leaders, controller failover, and start-up checks of the cluster settings.

mod common;

use std::collections::BTreeMap;

use common::{batch, create, fetch_one, layout, metadata, poll, produce, Broker, Cluster, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn controller(conn: &mut Conn) -> i32 {
    let req = DescribeClusterRequest::default();
    let ResponseKind::DescribeCluster(r) =
        conn.call(ApiKey::DescribeCluster, 0, RequestKind::DescribeCluster(req))
    else {
        panic!("not a DescribeCluster response")
    };
    assert_eq!(r.error_code, 0);
    r.controller_id.0
}

/// The admin listener's `/metrics` text (HTTP/1.0, so the body ends with the connection).
fn scrape(admin: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: strata\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
    body.to_owned()
}

/// Brokers DescribeCluster v2 reports as fenced (not heard from by the controller lately).
fn fenced(conn: &mut Conn) -> Vec<i32> {
    let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let ResponseKind::DescribeCluster(r) =
        conn.call(ApiKey::DescribeCluster, 2, RequestKind::DescribeCluster(req))
    else {
        panic!("not a DescribeCluster response")
    };
    r.brokers.iter().filter(|b| b.is_fenced).map(|b| b.broker_id.0).collect()
}

#[test]
fn six_partitions_with_three_replicas_are_led_by_every_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "2"]);
    let mut conns: Vec<Conn> = cluster.brokers.iter().map(|b| Conn::connect(b.addr)).collect();
    assert_eq!(create(&mut conns[1], "six", 6, 3), (0, None));

    // Metadata from every broker lists the three brokers and the same placement.
    let expected = layout(&mut conns[1], "six").expect("the proposer knows the topic");
    for conn in &mut conns {
        let seen = poll("every broker to see the topic", || layout(conn, "six"));
        assert_eq!(seen, expected);
        let r = metadata(conn);
        let brokers: BTreeMap<i32, i32> = r.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
        let ports: BTreeMap<i32, i32> = cluster
            .brokers
            .iter()
            .enumerate()
            .map(|(i, b)| (i as i32 + 1, b.addr.port() as i32))
            .collect();
        assert_eq!(brokers, ports);
    }
    let mut leads = BTreeMap::new();
    for (_, leader, replicas, isr) in &expected {
        *leads.entry(*leader).or_insert(0) += 1;
        assert_eq!(replicas.len(), 3);
        assert_eq!(replicas[0], *leader, "the preferred leader leads");
        assert_eq!(isr, replicas, "a new partition's replicas are all in sync");
    }
    assert_eq!(leads, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));

    // Produce to each partition's leader and read it back; other brokers refuse it.
    for (partition, leader, _, _) in &expected {
        let value = format!("value-{partition}");
        let records = batch(&[(b"k", value.as_bytes())]);
        let leader_conn = &mut conns[(*leader - 1) as usize];
        assert_eq!(produce(leader_conn, "six", *partition, records.clone(), -1), (0, 0));
        let data = fetch_one(leader_conn, "six", *partition, 0);
        assert_eq!(data.error_code, 0);
        let got = common::records(&data.records.unwrap());
        assert_eq!(got, vec![(0, b"k".to_vec(), value.into_bytes())]);
        let other = &mut conns[(*leader % 3) as usize];
        assert_eq!(produce(other, "six", *partition, records, -1).0, NOT_LEADER_OR_FOLLOWER);
        // A follower serves a consumer's Fetch v11+ (KIP-392) up to the high watermark it
        // knows (it learns it with its next fetch from the leader), an older Fetch not.
        let from_follower = poll("the record on a follower", || {
            let data = fetch_one(other, "six", *partition, 0);
            assert_eq!(data.error_code, 0);
            Some(common::records(&data.records?)).filter(|r| !r.is_empty())
        });
        assert_eq!(from_follower, got);
        let old = common::fetch_at(other, 10, "six", *partition, 0);
        assert_eq!(old.error_code, NOT_LEADER_OR_FOLLOWER);
    }
    drop(conns);

    // `strata topic create --replication-factor` through another broker.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["topic", "create", "cli", "--partitions", "3", "--replication-factor", "2"])
        .arg("--bootstrap-server")
        .arg(cluster.brokers[1].addr.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut conn = Conn::connect(cluster.brokers[1].addr);
    let cli = layout(&mut conn, "cli").expect("created");
    assert!(cli.iter().all(|(_, _, replicas, _)| replicas.len() == 2), "{cli:?}");
    manual_assignments_are_kept_and_checked(&mut conn);
    drop(conn);
    // In sync, nothing is under-replicated. With broker 3 gone (fenced, so dropped from
    // every ISR), each survivor's /metrics flags the partitions of "six" it now leads, and
    // `strata cluster info` lists all six.
    let flagged = |broker: &Broker| {
        let text = scrape(broker.admin.expect("an admin listener"));
        let count = text
            .lines()
            .filter(|l| l.starts_with("strata_partition_under_replicated{"))
            .filter(|l| l.contains("topic=\"six\"") && l.ends_with(" 1"))
            .count();
        let total: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("strata_under_replicated_partitions "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the node-wide gauge");
        (count, total)
    };
    for broker in &cluster.brokers {
        poll("every replica in sync", || (flagged(broker).0 == 0).then_some(()));
    }
    cluster.node(3).kill9();
    poll("the survivors to flag all six partitions", || {
        let counts: Vec<(usize, i64)> = cluster.brokers[..2].iter().map(flagged).collect();
        let six: usize = counts.iter().map(|c| c.0).sum();
        (six == 6 && counts.iter().all(|c| c.1 >= c.0 as i64)).then_some(())
    });
    let info = poll("cluster info to list the six partitions and two live brokers", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["cluster", "info", "--output", "json", "--bootstrap-server"])
            .arg(cluster.brokers[0].addr.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let under = info["under_replicated_partitions"].as_array().unwrap();
        let brokers = info["brokers"].as_array().unwrap();
        let alive = brokers.iter().filter(|b| b["alive"].as_bool().unwrap()).count();
        // Liveness reaches each broker with its next heartbeat answer: poll for it too.
        let six = under.iter().filter(|p| p["topic"] == "six").count();
        (six == 6 && alive == 2).then_some(info)
    });
    assert_eq!(info["brokers"].as_array().unwrap().len(), 3);
    assert!((1..=2).contains(&info["controller"].as_i64().unwrap()), "{info}");
    cluster.brokers[..2].iter_mut().for_each(Broker::stop);
}

/// CreateTopics and CreatePartitions with `assignments`, as kafkajs's own tests send them:
/// the replica lists are kept as given (the first replica leads), and lists naming a broker
/// that is not registered are refused with Kafka's code and message.
fn manual_assignments_are_kept_and_checked(conn: &mut Conn) {
    use create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
    use create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
    let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let create = |conn: &mut Conn, name: &str, lists: &[&[i32]]| {
        let assignments = lists.iter().enumerate().map(|(i, l)| {
            CreatableReplicaAssignment::default()
                .with_partition_index(i as i32)
                .with_broker_ids(ids(l))
        });
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(assignments.collect());
        let req = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000);
        let ResponseKind::CreateTopics(r) =
            conn.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
        else {
            panic!("not a CreateTopics response")
        };
        let t = &r.topics[0];
        (t.error_code, t.error_message.as_ref().map(|m| m.to_string()))
    };
    let grow = |conn: &mut Conn, name: &str, total: i32, lists: &[&[i32]]| {
        let assignments =
            lists.iter().map(|l| CreatePartitionsAssignment::default().with_broker_ids(ids(l)));
        let topic = CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_count(total)
            .with_assignments(Some(assignments.collect()));
        let req =
            CreatePartitionsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000);
        let ResponseKind::CreatePartitions(r) =
            conn.call(ApiKey::CreatePartitions, 3, RequestKind::CreatePartitions(req))
        else {
            panic!("not a CreatePartitions response")
        };
        let t = &r.results[0];
        (t.error_code, t.error_message.as_ref().map(|m| m.to_string()))
    };
    const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    let (code, message) = create(conn, "manual", &[&[1, 10]]);
    assert_eq!(code, INVALID_REPLICA_ASSIGNMENT);
    let message = message.unwrap_or_default();
    assert!(message.contains("broker 10, but no such broker is registered"), "{message}");
    assert_eq!(create(conn, "manual", &[&[3, 1], &[2, 3]]), (0, None));
    let expected = vec![(0, 3, vec![3, 1], vec![3, 1]), (1, 2, vec![2, 3], vec![2, 3])];
    assert_eq!(layout(conn, "manual"), Some(expected.clone()));
    let (code, message) = grow(conn, "manual", 3, &[&[1, 9]]);
    assert_eq!(code, INVALID_REPLICA_ASSIGNMENT, "{message:?}");
    assert_eq!(grow(conn, "manual", 3, &[&[1, 2]]).0, 0);
    let grown = layout(conn, "manual").expect("the topic");
    assert_eq!(grown[..2], expected[..], "the first two partitions did not move");
    assert_eq!(grown[2], (2, 1, vec![1, 2], vec![1, 2]));
}

#[test]
fn a_new_controller_is_elected_when_the_controller_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let mut first = Conn::connect(cluster.brokers[0].addr);
    let old = poll("a controller", || Some(controller(&mut first)).filter(|&id| id > 0));
    drop(first);
    cluster.node(old).kill9();

    let survivors: Vec<i32> = (1..=3).filter(|&id| id != old).collect();
    let mut conns: Vec<Conn> =
        survivors.iter().map(|&id| Conn::connect(cluster.node(id).addr)).collect();
    // Forwarded to whichever controller wins the election.
    assert_eq!(create(&mut conns[0], "after-failover", 4, 1), (0, None));
    let new = poll("a new controller", || {
        Some(controller(&mut conns[1])).filter(|id| survivors.contains(id))
    });
    assert_ne!(new, old);
    let seen =
        poll("the other survivor to see the topic", || layout(&mut conns[1], "after-failover"));
    assert_eq!(seen.len(), 4);

    // Its heartbeats stopped: the new controller reports it dead, on every survivor.
    for conn in &mut conns {
        poll("the killed broker to be reported dead", || (fenced(conn) == vec![old]).then_some(()));
    }

    // The killed broker comes back from its Raft log and catches up.
    cluster.node(old).restart();
    poll("the restarted broker to be alive", || fenced(&mut conns[0]).is_empty().then_some(()));
    let mut back = Conn::connect(cluster.node(old).addr);
    poll("the restarted broker to catch up", || layout(&mut back, "after-failover"));
    assert_eq!(create(&mut back, "after-restart", 1, 3), (0, None));
}

#[test]
fn a_single_broker_needs_no_cluster_setup() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--node-id", "4"]);
    let mut conn = Conn::connect(broker.addr);
    let r = metadata(&mut conn);
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.brokers[0].node_id.0, 4);
    assert_eq!(r.controller_id.0, 4);
    assert_eq!(controller(&mut conn), 4);
    assert!(!dir.path().join("data").join("controller").exists());
    let (code, message) = create(&mut conn, "two-replicas", 1, 2);
    assert_eq!(code, 38, "INVALID_REPLICATION_FACTOR: {message:?}");
}

fn serve_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    serve_fails_in(dir.path(), args)
}

/// The stderr of `strata serve` with `args`, which must stop with an error (one that starts
/// is killed after a minute and fails the test instead of hanging it).
fn serve_fails_in(data_dir: &std::path::Path, args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("strata serve {args:?} started");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success(), "strata serve {args:?} succeeded");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stderr
}

#[test]
fn bad_cluster_settings_fail_start_up_naming_the_key() {
    let stderr = serve_fails(&["--controller-voters", "1@nowhere"]);
    assert!(stderr.contains("controller-voters"), "{stderr}");
    let stderr = serve_fails(&["--controller-voters", "1@127.0.0.1:19093", "--node-id", "1"]);
    assert!(stderr.contains("controller-listen"), "{stderr}");
}

#[test]
fn an_observer_broker_leads_and_follows_but_never_controls() {
    let dir = tempfile::tempdir().unwrap();
    // Three voters and broker 4, which is not in the voter list (a KRaft broker-only node).
    let mut cluster = Cluster::start_with_observers(dir.path(), 3, 1, &["--shards", "1"]);
    let mut observer = Conn::connect(cluster.node(4).addr);
    assert_eq!(metadata(&mut observer).brokers.len(), 4);
    // Created through the observer (forwarded to the controller), placed on all four.
    assert_eq!(create(&mut observer, "wide", 8, 3), (0, None));
    let wide = layout(&mut observer, "wide").expect("the proposer knows the topic");
    let mut leads = BTreeMap::new();
    for (_, leader, _, _) in &wide {
        *leads.entry(*leader).or_insert(0) += 1;
    }
    assert_eq!(leads, BTreeMap::from([(1, 2), (2, 2), (3, 2), (4, 2)]));
    let (partition, _, replicas, _) = wide.iter().find(|p| p.1 == 4).unwrap().clone();
    let value = b"on the observer";
    assert_eq!(produce(&mut observer, "wide", partition, batch(&[(b"k", value)]), -1), (0, 0));
    let data = fetch_one(&mut observer, "wide", partition, 0);
    assert_eq!(common::records(&data.records.unwrap()), vec![(0, b"k".to_vec(), value.to_vec())]);

    // Killed, the observer is fenced and its partitions move to their ISR; restarted, it
    // comes back from its own copy of the metadata log, is unfenced and leads again.
    cluster.node(4).kill9();
    let mut voter = Conn::connect(cluster.node(replicas[1]).addr);
    poll("the observer to be fenced", || (fenced(&mut voter) == vec![4]).then_some(()));
    let moved = poll("its partitions to get new leaders", || {
        let now = layout(&mut voter, "wide")?;
        now.iter().all(|p| p.1 != 4).then_some(now)
    });
    let new_leader = moved.iter().find(|p| p.0 == partition).unwrap().1;
    let mut conn = Conn::connect(cluster.node(new_leader).addr);
    // Readable once the new leader's high watermark passes it (its followers report in).
    let read = poll("the acknowledged record at the new leader", || {
        let data = fetch_one(&mut conn, "wide", partition, 0);
        Some(common::records(&data.records?)).filter(|r| !r.is_empty())
    });
    assert_eq!(read, vec![(0, b"k".to_vec(), value.to_vec())]);
    cluster.node(4).restart();
    poll("the observer to be unfenced", || fenced(&mut voter).is_empty().then_some(()));
    let mut observer = Conn::connect(cluster.node(4).addr);
    let leaders = |layout: &common::Layout| -> Vec<(i32, i32)> {
        layout.iter().map(|(partition, leader, _, _)| (*partition, *leader)).collect()
    };
    poll("the observer to lead its preferred partitions again", || {
        let now = layout(&mut observer, "wide")?;
        (leaders(&now) == leaders(&wide)).then_some(())
    });

    // The observer never becomes the controller: with the controller killed, a voter takes
    // over, and the observer's metadata changes still go through.
    let old = poll("a controller", || Some(controller(&mut observer)).filter(|&id| id > 0));
    assert!((1..=3).contains(&old), "controller {old}");
    cluster.node(old).kill9();
    assert_eq!(create(&mut observer, "after-failover", 2, 2), (0, None));
    let new = poll("a new controller", || {
        Some(controller(&mut observer)).filter(|&id| id > 0 && id != old)
    });
    assert!((1..=3).contains(&new), "controller {new}");
    let mut voter = Conn::connect(cluster.node(new).addr);
    poll("a voter to see the topic", || layout(&mut voter, "after-failover"));
}

#[test]
fn a_restarted_broker_serves_nothing_before_it_caught_up_with_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(create(&mut conn, "stale", 3, 3), (0, None));
    let synced = poll("every replica in sync", || {
        let now = layout(&mut conn, "stale")?;
        now.iter().all(|p| p.3.len() == 3).then_some(now)
    });
    let mine = synced.iter().find(|p| p.1 == 1).expect("broker 1 leads one partition").0;
    drop(conn);
    // Everyone down, broker 1 last: its own controller log says it leads `mine`.
    for id in [2, 3, 1] {
        cluster.node(id).kill9();
    }
    cluster.node(1).relaunch();
    cluster.node(2).restart();
    // Until its registration went through the new quorum, its metadata may be stale: it
    // must neither lead nor follow anything before that.
    let early = cluster.node(1).log_until("broker registered with the controller");
    let served: Vec<&String> = early.iter().filter(|l| l.contains("topic=stale")).collect();
    assert!(served.is_empty(), "served before catching up: {served:?}");
    cluster.node(1).wait_ready();
    let mut conn = Conn::connect(cluster.node(1).addr);
    let records = batch(&[(b"k", b"after the restart")]);
    // Broker 3 stays down: once fenced, its partitions are led by 1 or 2.
    let leader = poll("a live leader of broker 1's partition", || {
        let now = layout(&mut conn, "stale")?;
        now.iter().find(|p| p.0 == mine).map(|p| p.1).filter(|l| [1, 2].contains(l))
    });
    let mut at_leader = Conn::connect(cluster.node(leader).addr);
    poll("the leader to take the write", || {
        (produce(&mut at_leader, "stale", mine, records.clone(), 1).0 == 0).then_some(())
    });
}

#[test]
fn a_minority_cannot_change_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    cluster.node(2).kill9();
    cluster.node(3).kill9();
    let mut conn = Conn::connect(cluster.node(1).addr);
    let (code, message) = create(&mut conn, "split", 1, 1);
    // REQUEST_TIMED_OUT (7) if node 1 still thinks it leads, NOT_CONTROLLER (41) otherwise.
    assert!(matches!(code, 7 | 41), "code {code}: {message:?}");
    assert_eq!(layout(&mut conn, "split"), None);
}

#[test]
fn a_single_broker_data_directory_joins_a_cluster_with_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut single = Broker::start(dir.path(), &[]);
    let mut conn = Conn::connect(single.addr);
    let id = common::create_topic(&mut conn, "legacy", 2);
    assert_eq!(produce(&mut conn, "legacy", 1, batch(&[(b"k", b"kept")]), -1), (0, 0));
    drop(conn);
    single.stop();

    // The same data directory, now node 1 of a one-voter cluster.
    let controller = format!("127.0.0.1:{}", common::free_port());
    let args = ["--node-id", "1", "--controller-listen", &controller, "--controller-voters"];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push(format!("1@{controller}"));
    args.extend(["--cluster-secret".to_owned(), common::random_secret()]);
    let mut clustered = Broker::launch(single.addr, single.data_dir.clone(), args);
    clustered.wait_ready();
    let mut conn = Conn::connect(clustered.addr);
    let seen = layout(&mut conn, "legacy").expect("the topic was imported");
    assert_eq!(seen, vec![(0, 1, vec![1], vec![1]), (1, 1, vec![1], vec![1])]);
    let r = metadata(&mut conn);
    let legacy = r.topics.iter().find(|t| t.topic_id == id).expect("same topic id");
    assert_eq!(legacy.name.as_ref().unwrap().0.as_str(), "legacy");
    let data = fetch_one(&mut conn, "legacy", 1, 0);
    let got = common::records(&data.records.unwrap());
    assert_eq!(got, vec![(0, b"k".to_vec(), b"kept".to_vec())]);
    assert!(clustered.data_dir.join("metadata.json.imported").exists());
    clustered.stop();

    // Its controller files are node 1's now: as node 2 the directory does not start (Kafka
    // refuses a meta.properties of another node.id), naming both ids.
    let controller = format!("127.0.0.1:{}", common::free_port());
    let voters = format!("2@{controller}");
    let secret = common::random_secret();
    let args = ["--node-id", "2", "--controller-listen", &controller, "--controller-voters"];
    let mut args = args.to_vec();
    args.extend([voters.as_str(), "--cluster-secret", &secret]);
    let stderr = serve_fails_in(&clustered.data_dir, &args);
    assert!(stderr.contains("belong to node 1, and this broker is node 2"), "{stderr}");
}

/// FindCoordinator v3 for a transactional id: (error code, node id).
fn txn_coordinator(conn: &mut Conn, id: &str) -> (i16, i32) {
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(id.into()))
        .with_key_type(1);
    let ResponseKind::FindCoordinator(r) =
        conn.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req))
    else {
        panic!("not a FindCoordinator response")
    };
    (r.error_code, r.node_id.0)
}

/// InitProducerId v4 with a transactional id: (error code, producer id).
fn init_transactional(conn: &mut Conn, id: &str) -> (i16, i64) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.into()))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let ResponseKind::InitProducerId(r) =
        conn.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
    else {
        panic!("not an InitProducerId response")
    };
    (r.error_code, r.producer_id.0)
}

#[test]
fn a_transactional_id_is_coordinated_by_the_leader_of_its_state_partition() {
    const NOT_COORDINATOR: i16 = 16;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let mut conns: Vec<Conn> = cluster.brokers.iter().map(|b| Conn::connect(b.addr)).collect();
    // __transaction_state is created once every broker registered; then all brokers agree.
    let coordinator = poll("a transaction coordinator", || {
        let (error, node) = txn_coordinator(&mut conns[0], "tx-cluster");
        (error == 0).then_some(node)
    });
    for conn in &mut conns {
        let seen = poll("every broker to name it", || {
            let (error, node) = txn_coordinator(conn, "tx-cluster");
            (error == 0).then_some(node)
        });
        assert_eq!(seen, coordinator);
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let (error, producer_id) = init_transactional(conn, "tx-cluster");
        if i as i32 + 1 == coordinator {
            assert_eq!(error, 0, "the coordinator answers");
            assert!(producer_id >= 0);
        } else {
            assert_eq!(error, NOT_COORDINATOR, "broker {} is not the coordinator", i + 1);
        }
    }
}

/// WriteTxnMarkers v1 of one marker (commit) for `partitions` of `topic`: their error codes.
fn write_markers(
    conn: &mut Conn,
    producer: (i64, i16),
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let t = write_txn_markers_request::WritableTxnMarkerTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_indexes(partitions.to_vec());
    let m = write_txn_markers_request::WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_transaction_result(true)
        .with_coordinator_epoch(0)
        .with_topics(vec![t]);
    let req = WriteTxnMarkersRequest::default().with_markers(vec![m]);
    let ResponseKind::WriteTxnMarkers(r) =
        conn.call(ApiKey::WriteTxnMarkers, 1, RequestKind::WriteTxnMarkers(req))
    else {
        panic!("not a WriteTxnMarkers response")
    };
    assert_eq!(r.markers.len(), 1);
    assert_eq!(r.markers[0].producer_id.0, producer.0);
    let t = &r.markers[0].topics[0];
    assert_eq!(t.name.0.as_str(), topic);
    let indexes: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    assert_eq!(indexes, partitions, "one answer per partition, in request order");
    t.partitions.iter().map(|p| p.error_code).collect()
}

#[test]
fn write_txn_markers_writes_only_what_this_broker_leads() {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "2"]);
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(create(&mut conn, "wm", 3, 1).0, 0);
    let parts = poll("every partition to have a leader", || {
        layout(&mut conn, "wm").filter(|l| l.len() == 3 && l.iter().all(|p| p.1 > 0))
    });
    let leaders: Vec<i32> = parts.iter().map(|p| p.1).collect();
    let (led, elsewhere): (Vec<i32>, Vec<i32>) = (0..3).partition(|p| leaders[*p as usize] == 1);
    assert!(!led.is_empty() && !elsewhere.is_empty(), "placement: {leaders:?}");
    // A producer's record on a partition broker 1 leads (its epoch is then known there).
    let local = led[0];
    let records = common::idempotent_batch(4242, 3, 0, &[b"v"]);
    assert_eq!(produce(&mut conn, "wm", local, records, -1).0, 0);

    let mut asked: Vec<i32> = (0..3).collect();
    asked.push(9);
    let codes = write_markers(&mut conn, (4242, 3), "wm", &asked);
    for (p, code) in asked.iter().zip(&codes) {
        let want = match *p {
            9 => UNKNOWN_TOPIC_OR_PARTITION,
            p if leaders[p as usize] == 1 => 0,
            _ => NOT_LEADER_OR_FOLLOWER,
        };
        assert_eq!(*code, want, "partition {p} (leaders {leaders:?})");
    }
    assert_eq!(write_markers(&mut conn, (4242, 3), "no-such-topic", &[0]), vec![3]);
    // The marker is in the log (a control batch after the record), and only there.
    assert_eq!(fetch_one(&mut conn, "wm", local, 0).high_watermark, 2);
    for p in elsewhere {
        let mut leader = Conn::connect(cluster.node(leaders[p as usize]).addr);
        // Broker 1 may learn the placement before the leader itself has applied it.
        let hw = poll("the leader to serve its partition", || {
            let data = fetch_one(&mut leader, "wm", p, 0);
            (data.error_code == 0).then_some(data.high_watermark)
        });
        assert_eq!(hw, 0);
    }
    // A marker of an older epoch than the partition's producer is refused.
    assert_eq!(write_markers(&mut conn, (4242, 2), "wm", &[local]), vec![INVALID_PRODUCER_EPOCH]);
}

/// FindCoordinator v3 of `key` (`key_type` 0: group, 1: transactional id) asked of `conn`,
/// once the cluster has one: its node id.
fn coordinator_of(conn: &mut Conn, key_type: i8, key: &str) -> i32 {
    poll("a coordinator", || {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.into()))
            .with_key_type(key_type);
        let ResponseKind::FindCoordinator(r) =
            conn.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req))
        else {
            panic!("not a FindCoordinator response")
        };
        (r.error_code == 0).then_some(r.node_id.0)
    })
}

/// One key of `prefix` coordinated by each broker: node id → key.
fn one_key_per_broker(conn: &mut Conn, key_type: i8, prefix: &str) -> BTreeMap<i32, String> {
    let mut keys = BTreeMap::new();
    for i in 0..1000 {
        let key = format!("{prefix}-{i}");
        keys.entry(coordinator_of(conn, key_type, &key)).or_insert(key);
        if keys.len() == 3 {
            return keys;
        }
    }
    panic!("no key for every broker: {keys:?}")
}

/// `strata <args> --output json --bootstrap-server <addr>`, its stdout parsed.
fn cli_json(addr: std::net::SocketAddr, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .args(["--output", "json", "--bootstrap-server", &addr.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn group_and_txn_commands_reach_every_coordinator_and_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let first = cluster.brokers[0].addr;
    let mut conn = Conn::connect(first);
    // Three partitions led by the three brokers, each holding i + 1 records.
    assert_eq!(create(&mut conn, "spread", 3, 1), (0, None));
    let parts = poll("the topic's leaders", || layout(&mut conn, "spread"));
    for (partition, leader, _, _) in parts {
        let mut to_leader = Conn::connect(cluster.node(leader).addr);
        // Broker 1 may learn the placement before the leader itself has applied it.
        poll("the leader to serve its partition", || {
            (fetch_one(&mut to_leader, "spread", partition, 0).error_code == 0).then_some(())
        });
        for i in 0..=partition {
            let produced = produce(&mut to_leader, "spread", partition, batch(&[(b"k", b"v")]), 1);
            assert_eq!(produced, (0, i64::from(i)));
        }
    }

    let described = cli_json(first, &["topic", "describe", "spread"]);
    let shown: Vec<(i64, i64, serde_json::Value)> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["latest"].as_i64().unwrap(), p["leader"].as_i64().unwrap(), p["isr"].clone()))
        .collect();
    let wanted: Vec<(i64, i64, serde_json::Value)> = layout(&mut conn, "spread")
        .unwrap()
        .into_iter()
        .map(|(p, leader, _, _)| (i64::from(p) + 1, i64::from(leader), serde_json::json!([leader])))
        .collect();
    assert_eq!(shown, wanted, "leaders and offsets asked of each partition's leader");

    // Groups coordinated by each broker get offsets through broker 1: the commit goes to the
    // coordinator, the log end offsets come from each partition's leader.
    let groups = one_key_per_broker(&mut conn, 0, "g");
    for group in groups.values() {
        let args = ["group", "reset-offsets", group, "--topic", "spread", "--to-latest"];
        cli_json(first, &[&args[..], &["--execute"]].concat());
    }
    let listed = cli_json(first, &["group", "list"]);
    let mut names: Vec<&str> =
        listed.as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut wanted: Vec<&str> = groups.values().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(names, wanted, "every broker's groups are listed");
    for group in groups.values() {
        let described = cli_json(first, &["group", "describe", group]);
        let offsets: Vec<(i64, i64, i64)> = described["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let field = |name: &str| p[name].as_i64().unwrap();
                (field("partition"), field("committed_offset"), field("log_end_offset"))
            })
            .collect();
        assert_eq!(offsets, vec![(0, 1, 1), (1, 2, 2), (2, 3, 3)], "{group}");
    }

    // Transactional ids coordinated by each broker.
    let ids = one_key_per_broker(&mut conn, 1, "tx");
    for (node, id) in &ids {
        let mut coordinator = Conn::connect(cluster.node(*node).addr);
        // Broker 1 may name it before it has applied its leadership and loaded the partition.
        let (error, _) = poll("the coordinator to take the id", || {
            let answer = init_transactional(&mut coordinator, id);
            (![14, 15, 16].contains(&answer.0)).then_some(answer)
        });
        assert_eq!(error, 0);
    }
    let listed = cli_json(first, &["txn", "list"]);
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transactional_id"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let mut wanted: Vec<&str> = ids.values().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(names, wanted, "every broker's transactional ids are listed");
    for id in ids.values() {
        assert_eq!(cli_json(first, &["txn", "describe", id])["state"], "Empty", "{id}");
    }
}

//! The controller's storage survives a restart: vote, log (appended, truncated, purged) and
//! snapshot are read back from disk as written.

use std::collections::BTreeMap;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote,
};

use super::store::{LogStore, StateMachine};
use super::TypeConfig;
use crate::controller::placement::Command;
use crate::controller::BrokerMeta;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, command: Option<Command>) -> Entry<TypeConfig> {
    let payload = command.map_or(EntryPayload::Blank, EntryPayload::Normal);
    Entry { log_id: log_id(index), payload }
}

fn register(id: i32) -> Command {
    let broker = BrokerMeta::new(id, "127.0.0.1", 9000);
    Command::RegisterBroker { broker, cluster_id: "c".into() }
}

fn create(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: uuid::Uuid::from_u128(1),
        partitions: 2,
        replication_factor: 1,
        configs: BTreeMap::new(),
        assignment: Vec::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn vote_and_log_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        let entries = (1..=5).map(|i| entry(i, Some(register(i as i32))));
        log.blocking_append(entries).await.unwrap();
        log.truncate(log_id(4)).await.unwrap();
        log.purge(log_id(1)).await.unwrap();

        let mut again = LogStore::open(dir.path()).unwrap();
        assert_eq!(again.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        let state = again.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1)));
        assert_eq!(state.last_log_id, Some(log_id(3)));
        let read = again.try_get_log_entries(0..10).await.unwrap();
        let indexes: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![2, 3]);
        assert_eq!(read[0], entry(2, Some(register(2))));
    });
}

#[test]
fn a_snapshot_restores_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (publish, _updates) = futures::channel::mpsc::unbounded();
        let mut machine = StateMachine::open(dir.path(), publish).unwrap();
        let entries =
            vec![entry(1, None), entry(2, Some(register(1))), entry(3, Some(create("t")))];
        let replies = machine.apply(entries).await.unwrap();
        assert_eq!(replies, vec![Ok(()), Ok(()), Ok(())]);
        let refused = machine.apply(vec![entry(4, Some(create("t")))]).await.unwrap();
        assert!(refused[0].is_err(), "a second create of one topic is refused");
        machine.get_snapshot_builder().await.build_snapshot().await.unwrap();

        let (publish, mut updates) = futures::channel::mpsc::unbounded();
        let mut again = StateMachine::open(dir.path(), publish).unwrap();
        let (applied, _) = again.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(4)));
        let restored = updates.try_recv().expect("the restored metadata is published");
        assert_eq!(restored.topics["t"].partitions.len(), 2);
        assert_eq!(restored.version, 3, "the version is the index of the last change");
        assert!(again.get_current_snapshot().await.unwrap().is_some());
    });
}

/// Starts voter `id` of a quorum whose controller listeners are `listeners` (ids 1, 2, ...).
fn start_voter(
    id: i32,
    listeners: &[std::net::SocketAddr],
    listener: std::net::TcpListener,
    data_dir: &std::path::Path,
) -> super::Started {
    let config = crate::config::BrokerConfig {
        node_id: id,
        data_dir: data_dir.to_owned(),
        listeners: vec![crate::config::Listener::plaintext(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            9000 + id as u16,
        )))],
        broker_session_timeout_ms: 1_000,
        controller_voters: listeners
            .iter()
            .enumerate()
            .map(|(i, a)| crate::config::Voter {
                id: i as i32 + 1,
                host: a.ip().to_string(),
                port: a.port(),
            })
            .collect(),
        ..Default::default()
    };
    super::start(&config, listener, None).unwrap()
}

#[test]
fn a_broker_whose_heartbeats_stop_is_fenced_and_its_partitions_re_led() {
    use futures::StreamExt;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let listeners: Vec<_> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut started: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| start_voter(i as i32 + 1, &addrs, l, dirs[i].path()))
        .collect();
    // Dropping a handle would stop its controller: keep both.
    let handles: Vec<_> = started.iter().map(|s| s.handle.clone()).collect();
    let mut updates = started.remove(0).updates;
    let handle = handles[1].clone();
    runtime().block_on(async move {
        // Broker 3 registers (through broker 2's controller) but never heartbeats.
        let ghost = BrokerMeta::new(3, "127.0.0.1", 9003);
        handle
            .propose(Command::RegisterBroker { broker: ghost, cluster_id: "c".into() })
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let create = Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::from_u128(1),
            partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::new(),
            assignment: Vec::new(),
        };
        // Until brokers 1 and 2 have registered too, a factor of 3 is refused.
        while handle.propose(create.clone()).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the topic was never created");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut led_by_3 = false;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let meta = tokio::time::timeout(left, updates.next())
                .await
                .expect("broker 3 was never fenced")
                .expect("the controller stopped");
            let Some(topic) = meta.topics.get("t") else { continue };
            if !meta.fenced.contains(&3) {
                led_by_3 |= topic.partitions.iter().any(|p| p.leader == Some(3));
                continue;
            }
            assert!(led_by_3, "broker 3 led a partition before it was fenced");
            assert_eq!(meta.fenced.iter().copied().collect::<Vec<_>>(), vec![3]);
            for p in &topic.partitions {
                assert!(matches!(p.leader, Some(1 | 2)), "{p:?}");
                assert!(!p.isr.contains(&3), "{p:?}");
                let was_led_by_3 = p.replicas[0] == 3;
                assert_eq!(p.leader_epoch, i32::from(was_led_by_3), "{p:?}");
            }
            return;
        }
    });
}

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
    let broker = BrokerMeta { id, host: "127.0.0.1".into(), port: 9000 };
    Command::RegisterBroker { broker, cluster_id: "c".into() }
}

fn create(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: uuid::Uuid::from_u128(1),
        partitions: 2,
        replication_factor: 1,
        configs: BTreeMap::new(),
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

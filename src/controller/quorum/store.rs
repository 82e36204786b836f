//! The controller's Raft log, vote and snapshot on disk, and the state machine.
//!
//! Layout under `<data>/controller/`:
//! - `vote.json`: the last vote (written before openraft is told it is saved);
//! - `committed.json`: the last committed log id (an optimisation; losing it is safe);
//! - `purged.json`: the last log id purged after a snapshot;
//! - `log/<index>.json`: one file per entry (metadata changes are rare and small);
//! - `snapshot.json`: the last snapshot (its meta and the serialized metadata).
//!
//! Every file is replaced atomically and durably (temp file, fsync, rename, directory fsync),
//! so a crash leaves either the old or the new version, never a torn one. A leftover
//! `*.tmp` is ignored. The state machine is in memory: it is rebuilt from the snapshot and
//! the log at start-up (openraft re-applies the committed entries).
//!
//! A full disk (ENOSPC, EDQUOT) is not an error openraft sees: openraft 0.9 shuts its core
//! down for good on any `StorageError`. A write that fails for lack of space is retried,
//! with backoff, until it succeeds, and the call does not return before: openraft awaits the
//! flush of appended entries, so nothing is reported durable (acknowledged to a leader,
//! counted for a commit, a vote cast) before it is, and no committed entry can be lost. The
//! node's Raft core waits meanwhile (its peers see it as slow, elect without it if it led,
//! and it catches up once space returns), and [`disk_full`] is set, so the node refuses new
//! proposals at once instead of letting them time out. Other I/O errors stay fatal.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::{Applied, NodeId, TypeConfig};
use crate::controller::ClusterMetadata;

type Node = openraft::BasicNode;
type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn read_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(&e).into()
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

/// First pause before a write that found the disk full is retried; doubles up to
/// [`FULL_RETRY_MAX`].
const FULL_RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest pause between two attempts of a write that found the disk full.
const FULL_RETRY_MAX: Duration = Duration::from_secs(1);

/// The "disk full" flag of the controller store in `dir` (shared by its log store and state
/// machine, and read by the proposal path to refuse changes while it is set).
pub fn disk_full(dir: &Path) -> Arc<AtomicBool> {
    static FLAGS: OnceLock<Mutex<BTreeMap<PathBuf, Arc<AtomicBool>>>> = OnceLock::new();
    let flags = FLAGS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut flags = flags.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    flags.entry(dir.to_path_buf()).or_default().clone()
}

/// Runs `attempt` until it succeeds or fails with something else than a full disk, pausing
/// between attempts; `full` is set while the disk is full (see the module docs).
async fn durably<T>(
    full: &AtomicBool,
    what: &str,
    mut attempt: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut delay = FULL_RETRY_MIN;
    loop {
        match attempt() {
            Ok(value) => {
                if full.swap(false, Ordering::Relaxed) {
                    tracing::info!("controller store: disk space is back, {what} written");
                }
                return Ok(value);
            }
            Err(e) if crate::storage::space::is_no_space(&e) => {
                if !full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "controller store: disk full writing {what} ({e}); \
                        refusing controller changes and retrying until space returns"
                    );
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(FULL_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Durably replaces `dir/name` with `bytes` (temp file, fsync, rename, directory fsync).
fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn to_json<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(std::io::Error::other)
}

fn entry_name(index: u64) -> String {
    format!("{index:020}.json")
}

struct LogInner {
    dir: PathBuf,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

/// The Raft log and vote, on disk (see the module docs). Clones share the same log.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
    full: Arc<AtomicBool>,
}

impl LogStore {
    /// Opens (or creates) the log under `dir` (`<data>/controller`).
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir)?;
        let mut entries = BTreeMap::new();
        for file in std::fs::read_dir(&log_dir)? {
            let path = file?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let entry: Entry<TypeConfig> = read_json(&path)?
                .ok_or_else(|| std::io::Error::other(format!("{} vanished", path.display())))?;
            entries.insert(entry.log_id.index, entry);
        }
        let inner = LogInner {
            vote: read_json(&dir.join("vote.json"))?,
            committed: read_json(&dir.join("committed.json"))?,
            purged: read_json(&dir.join("purged.json"))?,
            dir: dir.to_owned(),
            entries,
        };
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)), full: disk_full(dir) })
    }

    fn dir(&self) -> PathBuf {
        self.lock().dir.clone()
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id).or(inner.purged);
        Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let bytes = to_json(vote).map_err(write_error)?;
        let dir = self.dir();
        durably(&self.full, "the vote", || write_durable(&dir, "vote.json", &bytes))
            .await
            .map_err(write_error)?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let bytes = to_json(&committed).map_err(write_error)?;
        let dir = self.dir();
        durably(&self.full, "the commit index", || write_durable(&dir, "committed.json", &bytes))
            .await
            .map_err(write_error)?;
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log_dir = self.dir().join("log");
        let mut result = Ok(());
        for entry in entries {
            let bytes = match to_json(&entry) {
                Ok(bytes) => bytes,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let name = entry_name(entry.log_id.index);
            let written =
                durably(&self.full, "a log entry", || write_durable(&log_dir, &name, &bytes)).await;
            if let Err(e) = written {
                result = Err(e);
                break;
            }
            self.lock().entries.insert(entry.log_id.index, entry);
        }
        let failed = result.as_ref().err().map(|e| std::io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(write_error(e)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.lock();
        let doomed: Vec<u64> = inner.entries.range(log_id.index..).map(|(i, _)| *i).collect();
        let log_dir = inner.dir.join("log");
        // Newest first: a crash part-way leaves a shorter log, never one with a hole.
        for index in doomed.into_iter().rev() {
            remove_entry(&log_dir, index).map_err(write_error)?;
            inner.entries.remove(&index);
        }
        sync_dir(&log_dir).map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let bytes = to_json(&Some(log_id)).map_err(write_error)?;
        let dir = self.dir();
        durably(&self.full, "the purge point", || write_durable(&dir, "purged.json", &bytes))
            .await
            .map_err(write_error)?;
        let mut inner = self.lock();
        inner.purged = Some(log_id);
        let doomed: Vec<u64> = inner.entries.range(..=log_id.index).map(|(i, _)| *i).collect();
        let log_dir = inner.dir.join("log");
        for index in doomed {
            remove_entry(&log_dir, index).map_err(write_error)?;
            inner.entries.remove(&index);
        }
        sync_dir(&log_dir).map_err(write_error)
    }
}

fn remove_entry(log_dir: &Path, index: u64) -> std::io::Result<()> {
    match std::fs::remove_file(log_dir.join(entry_name(index))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `snapshot.json`.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// What a snapshot's data holds.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    metadata: ClusterMetadata,
}

struct MachineInner {
    dir: PathBuf,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    metadata: ClusterMetadata,
    snapshot: Option<StoredSnapshot>,
    /// Every applied change goes to shard 0 (see `quorum::start`).
    publish: UnboundedSender<Arc<ClusterMetadata>>,
}

/// The replicated state machine: the cluster metadata. Clones share it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<MachineInner>>,
    full: Arc<AtomicBool>,
}

impl StateMachine {
    /// Restores the machine from `dir/snapshot.json`, if any.
    pub fn open(
        dir: &Path,
        publish: UnboundedSender<Arc<ClusterMetadata>>,
    ) -> std::io::Result<Self> {
        let snapshot: Option<StoredSnapshot> = read_json(&dir.join("snapshot.json"))?;
        let mut inner = MachineInner {
            dir: dir.to_owned(),
            last_applied: None,
            membership: StoredMembership::default(),
            metadata: ClusterMetadata::default(),
            snapshot: None,
            publish,
        };
        if let Some(snapshot) = snapshot {
            inner.restore(snapshot)?;
        }
        Ok(StateMachine { inner: Arc::new(Mutex::new(inner)), full: disk_full(dir) })
    }

    fn lock(&self) -> MutexGuard<'_, MachineInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `read` on the metadata as last applied here (keep it short: it holds the lock
    /// that applying takes).
    pub fn with_metadata<R>(&self, read: impl FnOnce(&ClusterMetadata) -> R) -> R {
        read(&self.lock().metadata)
    }
}

impl MachineInner {
    fn restore(&mut self, snapshot: StoredSnapshot) -> std::io::Result<()> {
        let data: SnapshotData =
            serde_json::from_slice(&snapshot.data).map_err(std::io::Error::other)?;
        self.metadata = data.metadata;
        self.last_applied = snapshot.meta.last_log_id;
        self.membership = snapshot.meta.last_membership.clone();
        self.snapshot = Some(snapshot);
        let _ = self.publish.unbounded_send(Arc::new(self.metadata.clone()));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (dir, meta, data) = {
            let inner = self.lock();
            let data = SnapshotData { metadata: inner.metadata.clone() };
            let data = to_json(&data).map_err(write_error)?;
            let last = inner.last_applied;
            let snapshot_id =
                last.map_or_else(|| "0-0".to_owned(), |l| format!("{}-{}", l.leader_id, l.index));
            let meta = SnapshotMeta {
                last_log_id: last,
                last_membership: inner.membership.clone(),
                snapshot_id,
            };
            (inner.dir.clone(), meta, data)
        };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        let bytes = to_json(&stored).map_err(write_error)?;
        durably(&self.full, "a snapshot", || write_durable(&dir, "snapshot.json", &bytes))
            .await
            .map_err(write_error)?;
        self.lock().snapshot = Some(stored);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut replies = Vec::new();
        let mut changed = false;
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(())
                }
                EntryPayload::Normal(command) => match inner.metadata.apply(&command) {
                    Ok(mut next) => {
                        // The log index: the same on every broker, and what a proposer waits
                        // for before it answers its client.
                        next.version = entry.log_id.index;
                        inner.metadata = next;
                        changed = true;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            replies.push(reply);
        }
        if changed {
            let _ = inner.publish.unbounded_send(Arc::new(inner.metadata.clone()));
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let stored = StoredSnapshot { meta: meta.clone(), data: snapshot.into_inner() };
        let bytes = to_json(&stored).map_err(write_error)?;
        let dir = self.lock().dir.clone();
        durably(&self.full, "a snapshot", || write_durable(&dir, "snapshot.json", &bytes))
            .await
            .map_err(write_error)?;
        self.lock().restore(stored).map_err(read_error)
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

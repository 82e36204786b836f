//! One partition's log on one shard: O_DIRECT segments, sparse indexes, a tail cache,
//! group-committed writes and crash recovery.
//!
//! A [`PartitionLog`] lives on ONE glommio executor (`!Send`, `Rc` inside, no locks). Appends
//! are synchronous (they validate, assign offsets and queue); one writer task per partition
//! writes everything queued in one DMA write, fdatasyncs per [`FlushPolicy`], then advances the
//! durable end and wakes `durable()` and `wait_for_data` futures.
//!
//! Replication (see `docs/replication.md`): off by default, the high watermark consumers read
//! up to is the durable end. [`PartitionLog::set_replicated`] separates them: the high
//! watermark is then set by the replication layer ([`PartitionLog::set_high_watermark`]) and
//! checkpointed in `<dir>/high-watermark`. Followers append leader batches verbatim
//! ([`PartitionLog::append_replica`]), read past the high watermark
//! ([`PartitionLog::read_replica`]), and drop divergent suffixes ([`PartitionLog::truncate_to`],
//! [`PartitionLog::reset_to`], see `truncate`). The leader epoch cache (`replica`) lives in
//! `<dir>/leader-epoch-checkpoint`.
//!
//! On-disk layout of the partition directory given by the caller (like Kafka):
//! `<20-digit zero-padded base offset>.log` with `.index` (relative offset u32 → position u32,
//! big-endian) and `.timeindex` (timestamp i64 → relative offset u32). Index files exist for
//! closed segments only; the active segment's indexes are rebuilt by the recovery scan.
//! Segment files are preallocated (`fallocate`, size set up front): the file size is NOT the
//! data size for the active segment; closed segments are truncated to their data size.
//!
//! Imports only `crate::record_batch`.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[doc(hidden)]
pub mod bench_api;
mod cache;
mod compact;
#[cfg(test)]
mod faults;
mod index;
mod prealloc;
mod producers;
mod read;
mod readahead;
#[cfg(test)]
mod readahead_tests;
mod readbuf;
mod recovery;
mod recycle;
mod replica;
mod retention;
mod segment;
mod shared;
pub mod space;
mod truncate;
mod wait;
mod writer;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use glommio::TaskQueueHandle;

use crate::record_batch::{self, BatchError, BatchHeader, Batches};
pub use cache::CachePool;
pub use compact::CompactionStats;
use producers::Verdict;
pub use producers::{
    AbortedTxn, ProducerError, ProducerInfo, BATCHES_KEPT, PRODUCER_EXPIRATION_MS,
};
pub use readbuf::release as release_read_buffers;
pub use recycle::RecyclePool;
pub use segment::{prime_dma_probe, DMA_PROBE_FILE};
use shared::{Shared, TruncateKind, Truncation};
use wait::Until;

/// Required alignment of every write and of preallocation extents (O_DIRECT, 4 KiB pages).
pub const BLOCK_BYTES: u64 = 4096;
/// Largest single DMA write the writer issues (tail block included).
pub const WRITE_BYTES_MAX: u64 = 8 << 20;
/// Largest batch the log accepts, whatever `max_batch_bytes` says: one batch plus the
/// rewritten tail block always fits in one write.
pub const BATCH_BYTES_MAX: usize = (WRITE_BYTES_MAX - BLOCK_BYTES) as usize;
/// Largest `segment_bytes`; file positions in the index are u32.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
/// Bytes checked for garbage after the recovered end of the active segment (the file is cut
/// at the end if any is found).
pub const RECOVERY_ZERO_BYTES: u64 = WRITE_BYTES_MAX + BLOCK_BYTES;
/// Default first (and smallest) preallocation extent of a log.
pub const PREALLOC_MIN_BYTES_DEFAULT: u64 = 64 << 10;

const _: () = assert!(WRITE_BYTES_MAX.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(SEGMENT_BYTES_MAX.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(BATCH_BYTES_MAX as u64 + BLOCK_BYTES <= WRITE_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MAX + WRITE_BYTES_MAX <= u32::MAX as u64);

/// Kafka error code KAFKA_STORAGE_ERROR.
pub const KAFKA_STORAGE_ERROR: i16 = 56;
/// Kafka error code OFFSET_OUT_OF_RANGE.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Kafka error code NOT_LEADER_OR_FOLLOWER, returned for a closed log.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Per-partition (topic-level) log settings. Out-of-range values are clamped, see
/// [`LogConfig::sanitized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll when the next batch would make the active segment exceed this (default 1 GiB).
    pub segment_bytes: u64,
    /// Roll before writing into an active segment whose first write is older than this.
    pub segment_ms: Option<u64>,
    /// Largest preallocation extent of segment files (default 64 MiB): the extent grows
    /// with the write rate up to this (see `prealloc`).
    pub prealloc_bytes: u64,
    /// Smallest preallocation extent, the first one of a log (default 64 KiB).
    pub prealloc_min_bytes: u64,
    /// Write zeros over each extent preallocated ahead of the data, in the background
    /// (default off: on this machine it lowered the ack p50 and raised the p99, see
    /// perf/results/2026-12-05-prezero.md). `fallocate` leaves unwritten extents; every
    /// fdatasync after a write into one also writes the extent conversion (two synchronous
    /// metadata writes here), a zeroed extent converts once. Costs a second write of the
    /// log's bytes.
    pub prezero: bool,
    /// Keep the file of the oldest segment retention deletes (one per partition) and make it
    /// the partition's next segment instead of a new file: its blocks are already written, so
    /// writes into it convert no unwritten extents (traced under load: io_uring issues them
    /// from the shard's thread instead of a kernel worker, and an fdatasync writes 0.5
    /// metadata blocks on average instead of 1.3), and nothing is freed: on a filesystem
    /// mounted with `discard` every deleted segment's discard holds the fdatasyncs behind it.
    /// Costs up to one segment file per partition beyond retention while it waits for the
    /// next roll, bounded per shard by a [`RecyclePool`] (see `recycle`). A
    /// recycled file holds stale batches after the new data; they all have offsets below the
    /// segment's base (a reset that lowers the log start deletes the kept file), so recovery,
    /// which stops at the first batch whose offset goes back, never takes them.
    pub recycle: bool,
    /// While every append is fdatasync'ed, open each new active segment with O_DSYNC, so
    /// that each write returns once its data is durable and no fdatasync follows (default
    /// on; see `writer::open_active_file`). The same guarantee as a write then an
    /// fdatasync.
    pub write_dsync: bool,
    /// Bytes of log between sparse index entries (Kafka default 4096).
    pub index_interval_bytes: u32,
    /// Largest accepted batch, `message.max.bytes` (default 1 MiB + 12).
    pub max_batch_bytes: usize,
    /// Whether the broker stamps batches with its clock.
    pub timestamp_type: TimestampType,
    /// When appended data is fdatasync'ed.
    pub flush: FlushPolicy,
    /// Bytes of recent batches kept in memory to serve tail reads (default 8 MiB).
    pub tail_cache_bytes: usize,
    /// What the background cleaner does with closed segments (`cleanup.policy` & co).
    pub cleanup: CleanupConfig,
}

/// `cleanup.policy` and the settings of its two halves, applied by
/// [`PartitionLog::enforce_retention`] and [`PartitionLog::compact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupConfig {
    /// `delete` is in the policy: closed segments expire by age and total size.
    pub delete: bool,
    /// `compact` is in the policy: closed segments keep the latest record per key.
    pub compact: bool,
    /// `retention.ms`: a closed segment whose newest record is older expires (`None`: never).
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: oldest closed segments go while the log is larger (`None`: no cap).
    pub retention_bytes: Option<u64>,
    /// `delete.retention.ms`: tombstones survive compaction this long after their batch.
    pub delete_retention_ms: u64,
    /// `min.compaction.lag.ms`: segments with records younger than this are not compacted.
    pub min_compaction_lag_ms: u64,
}

impl Default for CleanupConfig {
    fn default() -> CleanupConfig {
        CleanupConfig {
            delete: true,
            compact: false,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: None,
            prealloc_bytes: 64 << 20,
            prealloc_min_bytes: PREALLOC_MIN_BYTES_DEFAULT,
            prezero: false,
            recycle: false,
            write_dsync: true,
            index_interval_bytes: 4096,
            max_batch_bytes: (1 << 20) + 12,
            timestamp_type: TimestampType::CreateTime,
            flush: FlushPolicy::default(),
            tail_cache_bytes: 8 << 20,
            cleanup: CleanupConfig::default(),
        }
    }
}

impl LogConfig {
    /// The config with every value clamped to what the log supports: `segment_bytes` to
    /// `[BLOCK_BYTES, SEGMENT_BYTES_MAX]`, `prealloc_bytes` to a non-zero multiple of
    /// `BLOCK_BYTES` (`prealloc_min_bytes` at most `prealloc_bytes`), `max_batch_bytes` to
    /// `BATCH_BYTES_MAX`, `index_interval_bytes` ≥ 1.
    pub fn sanitized(mut self) -> LogConfig {
        self.segment_bytes = self.segment_bytes.clamp(BLOCK_BYTES, SEGMENT_BYTES_MAX);
        let prealloc = self.prealloc_bytes.clamp(BLOCK_BYTES, SEGMENT_BYTES_MAX);
        self.prealloc_bytes = prealloc.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let min = self.prealloc_min_bytes.clamp(BLOCK_BYTES, self.prealloc_bytes);
        self.prealloc_min_bytes = min.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        self.max_batch_bytes = self.max_batch_bytes.min(BATCH_BYTES_MAX);
        self.index_interval_bytes = self.index_interval_bytes.max(1);
        self
    }
}

/// Which timestamp a partition keeps (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// Stamp every batch with the broker clock at append (`maxTimestamp`, attributes bit 3).
    LogAppendTime,
}

/// When appended data is fdatasync'ed. Data is ALWAYS written to the file (O_DIRECT write
/// completed) before an append is acknowledged, so a process crash (kill -9) never loses
/// acknowledged data.
///
/// `every_append = true` (the default): an append is acknowledged only after fdatasync covered
/// it (group commit: one fdatasync covers every append queued while the previous flush ran).
/// Otherwise appends are acknowledged once written, and fdatasync runs when `messages` records
/// accumulated or `interval_ms` passed since the last one (or on `flush`/roll/close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Acknowledge only after fdatasync.
    pub every_append: bool,
    /// fdatasync after this many unsynced records (`flush.messages`).
    pub messages: Option<u64>,
    /// fdatasync when unsynced data is this old (`flush.ms`).
    pub interval_ms: Option<u64>,
    /// Unless `every_append`: fdatasync (in the background) once this many bytes are
    /// unsynced, so that each sync stays short (the broker's `flush_bytes`).
    pub bytes: Option<u64>,
}

impl Default for FlushPolicy {
    fn default() -> FlushPolicy {
        FlushPolicy { every_append: true, messages: None, interval_ms: None, bytes: None }
    }
}

/// A storage failure. A failed write or fdatasync poisons the log (fsyncgate: the page state
/// after a failed fsync is unknown): every append and flush fails with `Poisoned` until the
/// writer has verified and synced the log again (see `writer`), which it retries by itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// On-disk data that recovery may not drop is invalid (a closed segment or its name).
    #[error("corrupt log at {path} position {position}: {reason}")]
    Corrupt {
        /// File concerned.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fdatasync failed; the log accepts nothing until it recovered.
    #[error("log poisoned by a write or fdatasync failure (recovering)")]
    Poisoned,
    /// The log was closed or deleted.
    #[error("log closed")]
    Closed,
}

impl StorageError {
    /// KAFKA_STORAGE_ERROR (56), or NOT_LEADER_OR_FOLLOWER (6) for a closed log.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            StorageError::Closed => NOT_LEADER_OR_FOLLOWER,
            _ => KAFKA_STORAGE_ERROR,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: impl Into<std::io::Error>) -> Self {
        StorageError::Io { op, path: path.to_path_buf(), source: source.into() }
    }
}

/// Why an append was refused. Nothing of the call was appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A batch failed validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// An idempotent producer's batch is out of sequence or from a fenced epoch.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// An idempotent producer sent more than one batch for the partition in one request
    /// (Kafka allows exactly one).
    #[error("an idempotent produce must carry exactly one batch per partition")]
    IdempotentBatchCount,
    /// The log is poisoned (see [`StorageError::Poisoned`]).
    #[error("log poisoned")]
    Poisoned,
    /// The log is closing or closed.
    #[error("log closed")]
    Closed,
    /// A replica batch starts below the log end offset, or below the end of the batch
    /// before it in the same append.
    #[error("replica batch at offset {got}, below the next offset {expected}")]
    OffsetBehind {
        /// The lowest offset the batch could start at.
        expected: i64,
        /// Its base offset.
        got: i64,
    },
    /// The log is being truncated (`truncate_to`/`reset_to`); retry after it.
    #[error("log is being truncated")]
    Truncating,
}

impl AppendError {
    /// The batch's code, KAFKA_STORAGE_ERROR (56) or NOT_LEADER_OR_FOLLOWER (6).
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            AppendError::Batch(e) => e.kafka_error_code(),
            AppendError::Producer(e) => e.kafka_error_code(),
            AppendError::IdempotentBatchCount => record_batch::INVALID_RECORD,
            AppendError::Poisoned => KAFKA_STORAGE_ERROR,
            AppendError::Closed => NOT_LEADER_OR_FOLLOWER,
            AppendError::OffsetBehind { .. } => OFFSET_OUT_OF_RANGE,
            AppendError::Truncating => NOT_LEADER_OR_FOLLOWER,
        }
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// `offset < log_start` or `offset > high_watermark`.
    #[error("offset out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// First offset in the log.
        log_start: i64,
        /// High watermark when the read was checked.
        high_watermark: i64,
    },
    /// Reading failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReadError {
    /// OFFSET_OUT_OF_RANGE (1), or the storage error's code.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ReadError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
            ReadError::Storage(e) => e.kafka_error_code(),
        }
    }
}

/// Result of [`PendingAppend::durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// Broker timestamp for LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Log start offset when acknowledged.
    pub log_start_offset: i64,
}

/// Whole batches returned by [`PartitionLog::read`].
#[derive(Debug, Clone)]
pub struct ReadBatches {
    /// Whole batches, starting with the one containing the requested offset.
    pub records: Bytes,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
}

/// Handle to one partition's log. Cheap to clone; all clones share the log. Lives on the
/// executor that opened it. Dropping the last clone without `close` stops the writer after it
/// wrote and synced what was queued.
#[derive(Clone)]
pub struct PartitionLog {
    handle: Rc<Handle>,
}

struct Handle {
    shared: Rc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closing.set(true);
        self.shared.wake_writer();
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing), recovering it (see `recovery`), and spawns
    /// its writer task on the current task queue.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, StorageError> {
        PartitionLog::open_in(dir, config, None).await
    }

    /// Like [`PartitionLog::open`], with the writer task on task queue `queue` if given.
    pub async fn open_in(
        dir: PathBuf,
        config: LogConfig,
        queue: Option<TaskQueueHandle>,
    ) -> Result<PartitionLog, StorageError> {
        let shared = recovery::open(dir, config.sanitized(), queue).await?;
        Ok(PartitionLog { handle: Rc::new(Handle { shared }) })
    }

    fn shared(&self) -> &Rc<Shared> {
        &self.handle.shared
    }

    /// Counts this log's tail cache against the shard's budget from now on (see
    /// [`CachePool`]).
    pub fn join_cache_pool(&self, pool: &Rc<CachePool>) {
        pool.join(self.shared());
    }

    /// Counts this log's kept segment file against the shard's budget from now on (see
    /// [`RecyclePool`]).
    pub fn join_recycle_pool(&self, pool: &Rc<RecyclePool>) {
        recycle::join(self.shared(), pool);
    }

    /// Deletes the segment file this log keeps for its next segment, if any (the disk is
    /// below its headroom: see [`RecyclePool::set_space_low`]).
    pub async fn release_kept_file(&self) -> Result<(), StorageError> {
        let shared = self.shared();
        let _permit = shared.checkpoint_lock.acquire_permit(1).await;
        if shared.kept.get().is_none() && !segment::recycled_path(&shared.dir).exists() {
            return Ok(());
        }
        recycle::release(shared).await
    }

    /// Bytes of data in the log's segment files (what Kafka's DescribeLogDirs calls the
    /// partition's size: written records, not the space preallocated ahead of them).
    pub fn size_bytes(&self) -> u64 {
        self.shared().segments.borrow().iter().map(|s| s.size.get()).sum()
    }

    /// Bytes held by this log's tail cache.
    pub fn cached_bytes(&self) -> usize {
        self.shared().cache.borrow().bytes()
    }

    /// First offset in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.shared().log_start.get()
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.shared().leo.get()
    }

    /// What consumers may read up to (reads, `wait_for_data`, the last stable offset,
    /// retention and compaction bounds): [`PartitionLog::durable_end`] unless replicated, else
    /// the replicated high watermark (see [`PartitionLog::set_high_watermark`]).
    pub fn high_watermark(&self) -> i64 {
        self.shared().visible_end()
    }

    /// End of acknowledged data: written, and fdatasync'ed if the flush policy says so (the
    /// acks=1 point; [`PendingAppend::durable`] resolves there).
    pub fn durable_end(&self) -> i64 {
        self.shared().durable.get()
    }

    /// Replication mode, off by default. Off: `high_watermark() == durable_end()`. Turning it
    /// on starts the high watermark at the `high-watermark` checkpoint of the partition dir
    /// (clamped to `[log start, durable end]`), or at the log start if there is none.
    pub fn set_replicated(&self, on: bool) {
        let shared = self.shared();
        if shared.replicated.get() == on {
            return;
        }
        if on {
            let start = shared.log_start.get();
            let checkpoint = shared.hw_checkpoint.get().unwrap_or(start);
            shared.high_watermark.set(checkpoint.clamp(start, shared.durable.get()));
        }
        shared.replicated.set(on);
        shared.progress.wake_all();
    }

    /// Replicated mode: moves the high watermark to `min(hw, durable_end())` if that is
    /// higher (only truncation lowers it), wakes `wait_for_data`/`wait_for_high_watermark`
    /// and checkpoints it every few seconds. Ignored when not replicated.
    pub fn set_high_watermark(&self, hw: i64) {
        let shared = self.shared();
        if !shared.replicated.get() {
            return;
        }
        let hw = hw.min(shared.durable.get());
        if hw <= shared.high_watermark.get() {
            return;
        }
        shared.high_watermark.set(hw);
        shared.progress.wake_all();
        replica::checkpoint_hw(shared, false);
    }

    /// Resolves when `high_watermark() > offset`, or the log is closed or deleted.
    pub fn wait_for_high_watermark(&self, offset: i64) -> WaitForData {
        self.wait_for_data(offset)
    }

    /// Resolves when `durable_end() > offset`, or the log is closed or deleted (a leader's
    /// high watermark follows its own durable end). A poisoned log is waited on: it recovers.
    pub fn wait_for_durable(&self, offset: i64) -> WaitForData {
        self.wait_past(offset, |s| s.durable.get())
    }

    /// Resolves when the log has data past `offset` (appended: queued for its write, or
    /// written, fdatasync or not), or the log is closed or deleted: the leader side of a
    /// follower's long-poll fetch. A follower copies a batch while the leader's own write and
    /// fdatasync of it run, so an `acks=all` append costs the slower of the two brokers'
    /// write and sync plus a round trip, not their sum (issue 20 target 8: "the leader
    /// answers a waiting follower fetch as soon as it appends"). Safe because the high
    /// watermark stays capped by this broker's `durable_end()`
    /// ([`PartitionLog::set_high_watermark`]): a follower may hold records the leader could
    /// still lose (a crash, or a failed write that reloads the log), but no consumer or
    /// producer has been told of them, and a new leader's log is the truth the old one
    /// truncates to (as in Kafka, whose leaders serve followers unflushed data; a follower
    /// ahead of a leader that lost its suffix in the same epoch is told where they diverge).
    /// A poisoned log is waited on.
    pub fn wait_for_appended(&self, offset: i64) -> WaitForData {
        self.wait_past(offset, |s| s.leo.get())
    }

    /// Resolves when `end(shared) > offset`, or the log is closed or deleted; woken by the
    /// writer's `progress` wakes, never polled.
    fn wait_past(&self, offset: i64, end: fn(&Shared) -> i64) -> WaitForData {
        let until =
            Until::new(self.shared().clone(), move |s: &Shared| end(s) > offset || s.closed.get());
        WaitForData { until }
    }

    /// Like [`PartitionLog::read`], but up to the log end offset instead of the high
    /// watermark (followers fetch beyond it, see [`PartitionLog::wait_for_appended`]): what is
    /// not written yet comes from the tail cache, which keeps every batch until written.
    /// `ReadBatches::high_watermark` is still the high watermark.
    pub async fn read_replica(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, ReadError> {
        read::read_until(self.shared(), offset, max_bytes, true, false).await
    }

    /// Becoming leader at `epoch`: later appends stamp `partitionLeaderEpoch = epoch` (not
    /// covered by the CRC), and a new epoch enters the epoch cache at `log_end_offset()`
    /// (persisted).
    pub fn set_leader_epoch(&self, epoch: i32) {
        let shared = self.shared();
        shared.leader_epoch.set(epoch);
        replica::add_epoch(shared, epoch, shared.leo.get());
    }

    /// Latest epoch in the leader epoch cache, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.shared().epochs.borrow().last().map(|&(epoch, _)| epoch)
    }

    /// Kafka's OffsetForLeaderEpoch answer from the epoch cache: the largest cached epoch
    /// `<= epoch` and the start offset of the next cached epoch, or `log_end_offset()` if it
    /// is the latest. `(-1, -1)` when `epoch` is below every cached epoch or the cache is
    /// empty.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let shared = self.shared();
        replica::end_offset_for(&shared.epochs.borrow(), epoch, shared.leo.get())
    }

    /// The leader epoch cache: (epoch, start offset), oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.shared().epochs.borrow().clone()
    }

    /// Follower append: `records` are whole batches copied from the leader with offsets
    /// assigned. Offsets only go up: the first batch starts at or after `log_end_offset()`,
    /// each next one after the one before (else `OffsetBehind`). Gaps are allowed, as in
    /// Kafka: they are what a leader's compacted segments look like, and a follower copies
    /// them as they are. Each batch is validated (CRC included; control batches
    /// allowed) and stored verbatim. Producer sequences are not checked but producer and
    /// transaction state is updated as by a leader append; a batch whose
    /// `partitionLeaderEpoch` is newer than the epoch cache's latest enters the cache.
    pub fn append_replica(&self, records: &[u8]) -> Result<PendingAppend, AppendError> {
        let shared = self.shared();
        self.check_appendable()?;
        let mut headers = Vec::new();
        let mut next_offset = shared.leo.get();
        for item in Batches::new(records) {
            let (_, range) = item?;
            let batch = records.get(range.clone()).unwrap_or_default();
            let header = record_batch::validate_stored(batch, BATCH_BYTES_MAX)?;
            if header.base_offset < next_offset {
                let got = header.base_offset;
                return Err(AppendError::OffsetBehind { expected: next_offset, got });
            }
            next_offset = header.last_offset() + 1;
            headers.push((header, range));
        }
        if headers.is_empty() {
            return Err(AppendError::Batch(BatchError::Empty));
        }
        let base_offset = shared.leo.get();
        let all = Bytes::copy_from_slice(records);
        let mut batches = Vec::with_capacity(headers.len());
        let now = now_ms();
        for (header, range) in headers {
            let batch = records.get(range.clone()).unwrap_or_default();
            if header.producer_id >= 0 {
                let marker = record_batch::marker_kind(batch, &header);
                shared.producers.borrow_mut().record(&header, marker, header.base_offset, now);
            }
            let epoch = header.partition_leader_epoch;
            if epoch >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest) {
                replica::add_epoch(shared, epoch, header.base_offset);
            }
            batches.push(all.slice(range));
        }
        shared.enqueue(batches, next_offset, 0);
        Ok(PendingAppend {
            shared: shared.clone(),
            base_offset,
            last_offset: next_offset - 1,
            log_append_time: -1,
            reloads_seen: shared.reloads.borrow().len(),
        })
    }

    fn check_appendable(&self) -> Result<(), AppendError> {
        let shared = self.shared();
        if shared.poisoned.get() {
            return Err(AppendError::Poisoned);
        }
        if shared.closing.get() {
            return Err(AppendError::Closed);
        }
        if shared.truncation.borrow().is_some() {
            return Err(AppendError::Truncating);
        }
        Ok(())
    }

    /// Drops every record at or above `offset` (nothing if `offset >= log_end_offset()`).
    /// Truncation works on whole batches: a batch containing `offset` goes entirely, so the
    /// log then ends at its base offset (appends continue at `log_end_offset()`). Waits for
    /// queued writes; appends meanwhile fail with `Truncating`. Later segments go, the one
    /// holding `offset` is cut, indexes, tail cache, producer state, epoch cache (entries
    /// starting at or after the new end) and the high watermark (`min(hw, new end)`)
    /// follow. Crash-safe: an interrupted truncation leaves a log that opens with its data
    /// below `offset` intact. Below the log start it is [`PartitionLog::reset_to`].
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let shared = self.shared();
        if offset >= shared.leo.get() && !shared.closed.get() {
            // Nothing to cut, but as Kafka's truncateTo, drop epochs that start at the log
            // end: a broker that became leader and lost leadership before appending anything
            // has such an entry, which its new leader never had. Kept, it would be this
            // follower's `last_fetched_epoch`, and the leader would answer "diverging" to
            // every fetch.
            replica::trim_epochs(shared, shared.leo.get());
            return Ok(());
        }
        self.truncate(TruncateKind::To(offset)).await
    }

    /// Empties the log so that it starts (and ends) at `offset`: every segment goes, the epoch
    /// cache and producer state are cleared, the high watermark is `offset`.
    pub async fn reset_to(&self, offset: i64) -> Result<(), StorageError> {
        self.truncate(TruncateKind::Reset(offset.max(0))).await
    }

    async fn truncate(&self, kind: TruncateKind) -> Result<(), StorageError> {
        let shared = self.shared();
        let _permit = shared.checkpoint_lock.acquire_permit(1).await;
        if shared.closing.get() || shared.closed.get() {
            return Err(StorageError::Closed);
        }
        if shared.poisoned.get() {
            return Err(StorageError::Poisoned);
        }
        if shared.truncation.borrow().is_some() {
            // Cannot happen: the permit serializes truncations.
            return Err(StorageError::Closed);
        }
        *shared.truncation.borrow_mut() = Some(Box::new(Truncation { kind, result: None }));
        shared.wake_writer();
        Until::new(shared.clone(), |s: &Shared| {
            let done = s.truncation.borrow().as_ref().is_some_and(|t| t.result.is_some());
            done || s.writer_done.get()
        })
        .await;
        let result = shared.truncation.borrow_mut().take().and_then(|t| t.result);
        match result {
            Some(result) => result,
            None if shared.poisoned.get() => Err(StorageError::Poisoned),
            None => Err(StorageError::Closed),
        }
    }

    /// Segment files of the log (0 once closed).
    pub fn segment_count(&self) -> usize {
        self.shared().segments.borrow().len()
    }

    /// Whether a write or fdatasync failed (see [`StorageError::Poisoned`]).
    pub fn is_poisoned(&self) -> bool {
        self.shared().poisoned.get()
    }

    /// Directory holding the segment files.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// Validates every batch in `records` (one or more concatenated batches), assigns offsets
    /// (rewrites baseOffset; LogAppendTime when configured; partitionLeaderEpoch as set by
    /// [`PartitionLog::set_leader_epoch`], else 0)
    /// and queues it for writing. SYNCHRONOUS on purpose: appends from the same task happen in
    /// call order, so the server can pipeline requests. A bad batch rejects the whole call,
    /// nothing is appended. A retry of one of an idempotent producer's last
    /// [`BATCHES_KEPT`] batches appends nothing and answers with the offsets of the original.
    /// Copies the batches once (after validation); [`PartitionLog::append_owned`] does not.
    pub fn append(&self, records: &[u8]) -> Result<PendingAppend, AppendError> {
        self.append_from(Records::Borrowed(records), false)
    }

    /// [`PartitionLog::append`] of a buffer the caller gives up: offsets, epoch and
    /// LogAppendTime are written into it in place (after validation, which reads it as it came)
    /// and its batches are queued and cached as slices of it, with no copy.
    pub fn append_owned(&self, records: OwnedRecords) -> Result<PendingAppend, AppendError> {
        self.append_from(Records::Owned(records.bytes, records.pinned), false)
    }

    /// Appends a transaction marker (control batch) for `producer_id` at `epoch`, as the
    /// transaction coordinator does to commit or abort the producer's transaction here.
    /// A marker from an epoch older than the producer's is refused (INVALID_PRODUCER_EPOCH).
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<PendingAppend, AppendError> {
        self.shared().producers.borrow().check_marker(producer_id, epoch)?;
        let batch =
            record_batch::marker_batch(producer_id, epoch, commit, coordinator_epoch, now_ms());
        self.append_from(Records::Borrowed(&batch), true)
    }

    fn append_from(&self, input: Records<'_>, control: bool) -> Result<PendingAppend, AppendError> {
        let shared = self.shared();
        let records = input.as_slice();
        self.check_appendable()?;
        let (max_batch_bytes, timestamp_type) = {
            let config = shared.config.borrow();
            (config.max_batch_bytes, config.timestamp_type)
        };
        let mut ranges = Vec::new();
        for item in Batches::new(records) {
            let (_, range) = item?;
            let batch = records.get(range.clone()).unwrap_or_default();
            let header = record_batch::validate(batch, max_batch_bytes)?;
            if !control {
                record_batch::check_client_batch(&header)?;
            }
            ranges.push((header, range));
        }
        if ranges.is_empty() {
            return Err(AppendError::Batch(BatchError::Empty));
        }
        if let Some(original) = self.check_producers(&ranges)? {
            return Ok(PendingAppend {
                shared: shared.clone(),
                base_offset: original.base_offset,
                last_offset: original.last_offset,
                log_append_time: -1,
                reloads_seen: shared.reloads.borrow().len(),
            });
        }
        let epoch = shared.leader_epoch.get();
        let log_append_time = match timestamp_type {
            TimestampType::LogAppendTime => now_ms(),
            TimestampType::CreateTime => -1,
        };
        let base_offset = shared.leo.get();
        // Validation above read the batches as they came; now they are rewritten, in the
        // caller's buffer if it gave it up, else in one copy of them all.
        let (mut buffer, pinned) = input.into_owned();
        let mut next_offset = base_offset;
        for (header, range) in &ranges {
            let batch = buffer.get_mut(range.clone()).unwrap_or_default();
            assign(batch, next_offset, epoch, log_append_time)?;
            next_offset += i64::from(header.last_offset_delta) + 1;
        }
        let all = buffer.freeze();
        let mut assigned = Vec::with_capacity(ranges.len());
        next_offset = base_offset;
        for (header, range) in ranges {
            let batch = all.slice(range);
            if header.producer_id >= 0 {
                // Only idempotent batches pay for the clock (one per request: see above).
                let now = if log_append_time >= 0 { log_append_time } else { now_ms() };
                let marker = record_batch::marker_kind(&batch, &header);
                shared.producers.borrow_mut().record(&header, marker, next_offset, now);
            }
            next_offset += i64::from(header.last_offset_delta) + 1;
            assigned.push(batch);
        }
        shared.enqueue(assigned, next_offset, pinned);
        Ok(PendingAppend {
            shared: shared.clone(),
            base_offset,
            last_offset: next_offset - 1,
            log_append_time,
            reloads_seen: shared.reloads.borrow().len(),
        })
    }

    /// The idempotence check of [`PartitionLog::append`]: `Some(original)` for a retry.
    fn check_producers(
        &self,
        batches: &[(BatchHeader, std::ops::Range<usize>)],
    ) -> Result<Option<producers::BatchRecord>, AppendError> {
        let idempotent = |(h, _): &&(BatchHeader, _)| h.producer_id >= 0 && !h.is_control();
        let Some((header, _)) = batches.iter().find(idempotent) else { return Ok(None) };
        if batches.len() != 1 {
            return Err(AppendError::IdempotentBatchCount);
        }
        let log_start = self.shared().log_start.get();
        match self.shared().producers.borrow().check(header, log_start)? {
            Verdict::Append => Ok(None),
            Verdict::Duplicate(original) => Ok(Some(original)),
        }
    }

    /// Forgets idempotent producers idle for `max_age_ms` (Kafka's
    /// `producer.id.expiration.ms`, by default [`PRODUCER_EXPIRATION_MS`]; called by the
    /// shard's housekeeping). Returns how many were forgotten.
    pub fn expire_producers(&self, now_ms: i64, max_age_ms: i64) -> usize {
        let mut producers = self.shared().producers.borrow_mut();
        producers.prune_aborted(self.shared().log_start.get());
        producers.expire(now_ms, max_age_ms)
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark when it is lower (or no transaction is open). read_committed readers see
    /// only offsets below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        let first_open = self.shared().producers.borrow().first_unstable_offset();
        first_open.map_or(hw, |first| first.min(hw))
    }

    /// Aborted transactions with data in offsets `[from, to)`, for read_committed fetches.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.shared().producers.borrow().aborted_between(from, to)
    }

    /// Open transactions in this partition: (producer id, first offset), oldest first.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.shared().producers.borrow().open_transactions()
    }

    /// Every producer this partition knows (DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.shared().producers.borrow().describe()
    }

    /// Replaces the topic config (sanitized). Takes effect for later appends and writes.
    pub fn set_config(&self, config: LogConfig) {
        *self.shared().config.borrow_mut() = config.sanitized();
        self.shared().wake_writer();
    }

    /// Deletes closed segments that are below the log start offset or, under the delete
    /// policy, older than `retention.ms` (by their newest record's timestamp, as Kafka) or
    /// beyond `retention.bytes`; advances and persists the log start offset. Never deletes
    /// the active segment. Returns how many segments went.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        retention::enforce(self.shared(), now_ms).await
    }

    /// DeleteRecords: moves the log start offset to `offset` (`-1`: the high watermark) and
    /// persists it; segments wholly below it go at the next [`PartitionLog::enforce_retention`].
    /// Returns the new log start. `OffsetOutOfRange` above the high watermark.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, ReadError> {
        retention::delete_records(self.shared(), offset).await
    }

    /// One compaction pass when the policy includes `compact` (see `compact.rs`): closed
    /// segments keep the latest record per key, expired tombstones go, offsets stay.
    pub async fn compact(&self, now_ms: i64) -> Result<CompactionStats, StorageError> {
        compact::compact(self.shared(), now_ms).await
    }

    /// The current config (sanitized).
    pub fn config(&self) -> LogConfig {
        self.shared().config.borrow().clone()
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` in total, but at least
    /// one whole batch (KIP-74); only batches below the high watermark. Empty if
    /// `offset == high_watermark`; `OffsetOutOfRange` below the log start or above the HW.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        read::read_until(self.shared(), offset, max_bytes, false, false).await
    }

    /// Like [`PartitionLog::read`], but only whole batches within `max_bytes`: empty when
    /// the first one is larger (Kafka's `minOneMessage = false`, for a fetch's later
    /// partitions). The size of such a batch is remembered, so asking again with as little
    /// room reads nothing from the disk.
    pub async fn read_within(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, ReadError> {
        read::read_until(self.shared(), offset, max_bytes, false, true).await
    }

    /// Reads the log from its start to the high watermark, `chunk_bytes` at a time, and
    /// hands each read (whole batches) to `apply` with the offset it was asked from (its
    /// first batch may start below). For state kept in a log and rebuilt from it: consumer
    /// offsets, transaction state. A read error or a read that makes no progress is logged
    /// and ends the replay early.
    pub async fn replay(&self, chunk_bytes: usize, mut apply: impl FnMut(i64, &Bytes)) {
        let dir = self.shared().dir.clone();
        let mut offset = self.log_start_offset();
        while offset < self.high_watermark() {
            let read = match self.read(offset, chunk_bytes).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(dir = %dir.display(), offset, "replay stopped: {e}");
                    return;
                }
            };
            if read.records.is_empty() {
                // The log ends inside a gap (truncated there): nothing more to read.
                return;
            }
            let next = Batches::new(&read.records)
                .map_while(Result::ok)
                .map(|(header, _)| header.last_offset() + 1)
                .last()
                .unwrap_or(offset);
            if next <= offset {
                tracing::error!(dir = %dir.display(), offset, "replay made no progress; stopping");
                return;
            }
            apply(offset, &read.records);
            offset = next;
        }
    }

    /// Resolves when `high_watermark() > offset`, or the log is closed or deleted (a
    /// poisoned log is waited on: it recovers). Woken by the writer when it advances the high
    /// watermark (no polling). Owns a handle on the log, so it may outlive `self`.
    pub fn wait_for_data(&self, offset: i64) -> WaitForData {
        self.wait_past(offset, Shared::visible_end)
    }

    /// First `(offset, timestamp)` below the high watermark whose record timestamp is ≥
    /// `timestamp_ms`, or `None`. Uses the time index to skip segments and blocks.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        read::offset_for_timestamp(self.shared(), timestamp_ms).await
    }

    /// `(offset, timestamp)` of the first record carrying the largest timestamp in the log, as
    /// ListOffsets MAX_TIMESTAMP (KIP-734) answers; `None` when the log is empty or that record
    /// is not below the high watermark yet (Kafka answers nothing then too).
    pub async fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>, ReadError> {
        read::offset_of_max_timestamp(self.shared()).await
    }

    /// Resolves when everything appended before the call is written and fdatasync'ed.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let shared = self.shared();
        let target = shared.leo.get();
        shared.request_sync(target);
        Until::new(shared.clone(), move |s: &Shared| {
            s.synced.get() >= target || s.poisoned.get() || s.writer_done.get()
        })
        .await;
        replica::checkpoint_hw(shared, true);
        if shared.synced.get() >= target {
            Ok(())
        } else if shared.poisoned.get() {
            Err(StorageError::Poisoned)
        } else {
            Err(StorageError::Closed)
        }
    }

    /// Stops appends, waits until everything queued is written and synced, truncates the
    /// active segment to its data size and stops the writer. Later reads and appends fail
    /// with `Closed`; `Poisoned` if the log was poisoned (it is closed all the same).
    pub async fn close(&self) -> Result<(), StorageError> {
        let shared = self.shared();
        shared.closing.set(true);
        shared.wake_writer();
        Until::new(shared.clone(), |s: &Shared| s.writer_done.get()).await;
        replica::checkpoint_hw(shared, true);
        shared.closed.set(true);
        // A kept file stays on disk; whoever opens the log next counts it.
        recycle::forget_kept(shared);
        shared.segments.borrow_mut().clear();
        shared.cache.borrow_mut().clear();
        shared.forget_reads();
        shared.progress.wake_all();
        if shared.poisoned.get() {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    /// Closes the log (ignoring poison) and removes its directory with everything in it,
    /// then closes its files, off the shard's thread: that frees the log's blocks (see
    /// [`retention::unlink_then_close`]).
    pub async fn delete(&self) -> Result<(), StorageError> {
        let segments = self.shared().segments.borrow().clone();
        let closed = self.close().await;
        if let Err(e) = closed {
            tracing::warn!(dir = %self.dir().display(), "deleting a poisoned log: {e}");
        }
        let files = segments.into_iter().filter_map(retention::owned_file).collect();
        let dir = self.dir().to_owned();
        retention::unlink_then_close(files, move || {
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io("remove dir", &dir, e))
        })
        .await
    }

    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.shared().faults.fail_next_write();
    }

    /// Resolves when the log has written data past `offset` (the O_DIRECT write completed).
    #[cfg(test)]
    pub(crate) fn wait_for_written(&self, offset: i64) -> WaitForData {
        self.wait_past(offset, |s| s.written.get())
    }

    #[cfg(test)]
    pub(crate) fn faults(&self) -> &faults::Faults {
        &self.shared().faults
    }
}

/// Rewrites one validated batch for the log, in place: base offset, leader epoch and, when
/// `log_append_time >= 0`, LogAppendTime (which recomputes the CRC; the other two are outside
/// the CRC-covered bytes).
fn assign(
    batch: &mut [u8],
    base_offset: i64,
    epoch: i32,
    log_append_time: i64,
) -> Result<(), BatchError> {
    record_batch::set_base_offset(batch, base_offset)?;
    record_batch::set_partition_leader_epoch(batch, epoch)?;
    if log_append_time >= 0 {
        record_batch::set_log_append_time(batch, log_append_time)?;
    }
    Ok(())
}

/// Record batches given up to [`PartitionLog::append_owned`].
#[derive(Debug, Default)]
pub struct OwnedRecords {
    /// The batches, rewritten in place by the append.
    pub bytes: BytesMut,
    /// The size of the allocation `bytes` is a slice of (a produce request's frame) when it
    /// is larger, else 0. Each batch cached from it counts as at least this against the
    /// tail-cache budgets: it keeps the whole allocation alive, however the frame's other
    /// slices come and go, so what the caches hold in memory stays within their budgets.
    pub pinned: usize,
}

impl OwnedRecords {
    /// Batches in their own allocation.
    pub fn own(bytes: BytesMut) -> OwnedRecords {
        OwnedRecords { bytes, pinned: 0 }
    }

    /// A copy of `records` in its own allocation.
    pub fn copied(records: &[u8]) -> OwnedRecords {
        OwnedRecords::own(BytesMut::from(records))
    }
}

/// The batches of an append: borrowed (copied once, after validation) or given up.
enum Records<'a> {
    Borrowed(&'a [u8]),
    /// The buffer, and the size of the allocation it keeps alive when larger (0: its own).
    Owned(BytesMut, usize),
}

impl Records<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Records::Borrowed(records) => records,
            Records::Owned(records, _) => records,
        }
    }

    /// The buffer to rewrite, and the allocation size its slices keep alive (0: their own).
    fn into_owned(self) -> (BytesMut, usize) {
        match self {
            Records::Borrowed(records) => (BytesMut::from(records), 0),
            Records::Owned(records, pinned) => (records, pinned),
        }
    }
}

/// An append whose offsets are assigned; await [`PendingAppend::durable`] for the ack.
#[derive(Clone)]
pub struct PendingAppend {
    shared: Rc<Shared>,
    base_offset: i64,
    last_offset: i64,
    log_append_time: i64,
    /// Reloads of the log before this append (see `Shared::reloads`).
    reloads_seen: usize,
}

impl std::fmt::Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAppend")
            .field("base_offset", &self.base_offset)
            .field("last_offset", &self.last_offset)
            .finish()
    }
}

impl PendingAppend {
    /// Offset assigned to the first record of the call.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset assigned to the last record of the call.
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }

    /// Broker timestamp stamped on the batches (LogAppendTime), else -1.
    pub fn log_append_time(&self) -> i64 {
        self.log_append_time
    }

    /// Resolves when the append is acknowledged per the flush policy (high watermark passed
    /// it): `Ok`, or `Poisoned`/`Closed` if the log failed or closed before that (or a
    /// reload after a failure dropped it).
    pub async fn durable(self) -> Result<AppendInfo, StorageError> {
        let last_offset = self.last_offset;
        Until::new(self.shared.clone(), move |s: &Shared| {
            s.durable.get() > last_offset || s.poisoned.get() || s.writer_done.get()
        })
        .await;
        let shared = &self.shared;
        let dropped =
            shared.reloads.borrow().iter().skip(self.reloads_seen).any(|&end| end <= last_offset);
        if dropped {
            return Err(StorageError::Poisoned);
        }
        if shared.durable.get() > last_offset {
            return Ok(AppendInfo {
                base_offset: self.base_offset,
                last_offset,
                log_append_time: self.log_append_time,
                log_start_offset: shared.log_start.get(),
            });
        }
        if shared.poisoned.get() {
            return Err(StorageError::Poisoned);
        }
        Err(StorageError::Closed)
    }
}

/// Future returned by [`PartitionLog::wait_for_data`]. Deregisters itself when dropped.
pub struct WaitForData {
    until: Until,
}

impl Future for WaitForData {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.until).poll(cx)
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Header of a batch produced by `append` (already validated): parse cannot fail.
pub(crate) fn header_of(batch: &[u8]) -> Option<BatchHeader> {
    BatchHeader::parse(batch).ok()
}

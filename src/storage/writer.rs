//! The writer task: the only code that writes segment files.
//!
//! Loop: wait for work; write every batch queued at that moment in DMA writes of at most
//! `WRITE_BYTES_MAX` starting at the aligned end (re-writing the partial last block from a
//! copy), one write in flight; fdatasync per policy; publish the new high watermark. Appends
//! that arrive meanwhile are written by the next round: group commit. A batch leaves the
//! queue only once written. Space ahead of the data is preallocated adaptively (`prealloc`).
//! Under a periodic flush policy (interval or count, not every append), appends are
//! acknowledged once written, so the periodic fdatasync runs in the background
//! ([`BackgroundSync`]) while the writer goes on writing; an explicit `flush`, a roll, a
//! truncation and closing wait for it and sync in the foreground.
//!
//! While every append is fdatasync'ed, the active segment is opened with O_DSYNC
//! (`LogConfig::write_dsync`, [`open_active_file`]): each write returns durable and no
//! fdatasync follows.
//!
//! Any write, fdatasync, preallocation, roll or truncation failure poisons the log (fsyncgate:
//! after a failed fsync nothing unsynced can be trusted): appends are refused and waiting
//! acknowledgements fail. The writer then retries recovery with backoff until it succeeds or
//! the log closes: it reads back what was written since the last good fdatasync and checks
//! it (CRC and offsets) before syncing it again, and makes sure the next queued write has its
//! space; if the read-back shows damage, or a truncation failed half way, it reloads the log
//! from disk as a restart would (`recovery::load`), dropping what is not verifiably there
//! (those appends were never acknowledged under the every-append policy). Only then does the
//! log take appends again.

use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::prealloc::Prealloc;
use super::recovery::{self, Loaded};
use super::segment::{self, align_down, align_up, Segment};
use super::shared::Shared;
use super::{header_of, StorageError, BLOCK_BYTES, WRITE_BYTES_MAX};

/// Data bytes of one write besides the rewritten partial block.
const WRITE_DATA_BYTES_MAX: usize = (WRITE_BYTES_MAX - BLOCK_BYTES) as usize;
const _: () = assert!(super::BATCH_BYTES_MAX <= WRITE_DATA_BYTES_MAX);

/// First pause before a recovery attempt; doubles up to [`RECOVERY_RETRY_MAX`].
#[cfg(not(test))]
const RECOVERY_RETRY_MIN: Duration = Duration::from_millis(100);
#[cfg(test)]
const RECOVERY_RETRY_MIN: Duration = Duration::from_millis(1);
/// Longest pause between two recovery attempts.
const RECOVERY_RETRY_MAX: Duration = Duration::from_secs(2);

/// A preallocation running in the background.
pub(crate) struct Growth {
    segment: Rc<Segment>,
    /// The file size it sets.
    target: u64,
    task: glommio::Task<Result<(), std::io::Error>>,
}

/// A periodic fdatasync of the active segment running beside the writer.
///
/// Before, the writer awaited it: every append to the partition queued behind a sync of up
/// to a second of data. With `--flush-ms 1000`, fdatasync took p50 0.3 / p99 6.5 / max 9 ms
/// (ext4 tracepoints, perf/results/2026-12-05-perf2.md) and the 16 partitions of a topic
/// synced in the same tick, so each second's ack p99 was 5-6 ms and stalls of up to 80 ms
/// were seen; acks under that policy never needed the sync.
///
/// A shard runs one at a time ([`BACKGROUND_SYNC_TURN`]), and it covers what is written
/// when its turn comes; with `FlushPolicy::bytes` a partition starts one whenever that much
/// is unsynced. So each sync is small under a light load (16 partitions syncing a second's
/// data at once held this machine's disk ~70 ms, and every ack with it:
/// perf/results/2026-12-07-device-pauses.md section 6), and grows with the load instead of
/// multiplying. The price on that disk: 1 KiB max-rate produce 13-25% lower
/// (perf/results/2026-12-07-flush-slices.md).
pub(crate) struct BackgroundSync {
    /// Its turn came: the fdatasync runs (or ran).
    started: Rc<Cell<bool>>,
    task: glommio::Task<Result<Covered, StorageError>>,
}

/// What a background sync made durable: the offsets below `written`, the active segment's
/// bytes below `size`.
struct Covered {
    written: i64,
    size: u64,
}

thread_local! {
    /// The turn of this shard's (thread's) background syncs: one at a time.
    static BACKGROUND_SYNC_TURN: Rc<glommio::sync::Semaphore> =
        Rc::new(glommio::sync::Semaphore::new(1));
}

/// State owned by the writer task for the active segment.
pub(crate) struct Writer {
    pub(crate) shared: Rc<Shared>,
    pub(crate) segment: Rc<Segment>,
    /// File size set by preallocation (never more than the file has): writes end below it.
    pub(crate) allocated: u64,
    /// Copy of the bytes `[align_down(size), size)` of the active segment.
    pub(crate) tail: Vec<u8>,
    pub(crate) unsynced_records: u64,
    pub(crate) last_sync: Instant,
    /// When the first batch went into the active segment (this process), for `segment_ms`.
    pub(crate) first_write: Option<Instant>,
    /// Position in the active segment below which its data is fdatasync'ed.
    pub(crate) synced_position: u64,
    pub(crate) prealloc: Prealloc,
    pub(crate) growing: Option<Growth>,
    /// The periodic fdatasync in flight, if any.
    pub(crate) syncing: Option<BackgroundSync>,
    /// A truncation failed part way: recovery reloads the log from disk.
    pub(crate) reload_needed: bool,
    /// Names in the log directory changed at open: sync it (and its parent) before the
    /// first fdatasync acknowledges anything (opening a log syncs nothing, so that brokers
    /// with many partitions create and open them fast).
    pub(crate) dir_unsynced: bool,
    /// Some data since the last foreground fdatasync was written without O_DSYNC (or its
    /// durability is unknown, after opening or a failure): the next sync must run an
    /// fdatasync even if the active segment is opened with O_DSYNC.
    pub(crate) plain_unsynced: bool,
}

/// Runs the writer until the log closes (recovering from failures meanwhile).
pub(crate) async fn run(mut writer: Writer) {
    loop {
        match writer.work().await {
            Ok(()) => break,
            Err(error) => {
                if !writer.shared.poisoned.get() {
                    writer.shared.poison(&error);
                }
                // Boxed, as the other rare steps: an idle writer's future stays small (one
                // per partition, 10,000 partitions on a broker).
                if !Box::pin(writer.recover()).await {
                    break;
                }
            }
        }
    }
    writer.settle_growth().await;
    // The log is closing: a sync still in flight has nothing left to publish.
    let _ = writer.collect_sync(true).await;
    let shared = writer.shared.clone();
    drop(writer);
    shared.writer_done.set(true);
    shared.progress.wake_all();
}

impl Writer {
    /// The writer of a freshly loaded log.
    pub(crate) fn new(shared: Rc<Shared>, active: &recovery::ActiveParts) -> Writer {
        let min = shared.config.borrow().prealloc_min_bytes;
        Writer {
            shared,
            segment: active.segment.clone(),
            allocated: active.allocated,
            tail: active.tail.clone(),
            unsynced_records: 0,
            last_sync: Instant::now(),
            first_write: None,
            synced_position: active.segment.size.get(),
            prealloc: Prealloc::new(min),
            growing: None,
            syncing: None,
            reload_needed: false,
            dir_unsynced: active.dir_unsynced,
            plain_unsynced: true,
        }
    }

    async fn work(&mut self) -> Result<(), StorageError> {
        loop {
            self.wait_for_work().await;
            self.collect_sync(false).await?;
            let count = self.shared.pending.borrow().len();
            self.write_queued(count).await?;
            if self.sync_due() {
                if self.background_sync_allowed() {
                    self.start_sync();
                } else {
                    // Followers' fetches were woken when the batches were appended
                    // (`Shared::enqueue`): they copy them while this write and sync run.
                    self.sync().await?;
                }
            }
            self.shared.publish();
            if let Some(kind) = self.truncation_wanted() {
                self.settle_growth().await;
                self.collect_sync(true).await?;
                let result = Box::pin(self.truncate(kind)).await;
                self.shared.publish();
                let failed = result.as_ref().err().map(ToString::to_string);
                if let Some(t) = self.shared.truncation.borrow_mut().as_mut() {
                    t.result = Some(result);
                }
                self.shared.progress.wake_all();
                if let Some(error) = failed {
                    // The files may be half cut: recovery reloads them.
                    self.reload_needed = true;
                    return Err(StorageError::Io {
                        op: "truncate log",
                        path: self.shared.dir.clone(),
                        source: std::io::Error::other(error),
                    });
                }
            }
            if self.shared.closing.get() && self.shared.pending.borrow().is_empty() {
                return Box::pin(self.finish()).await;
            }
        }
    }

    async fn wait_for_work(&self) {
        let ready = WorkReady { shared: &self.shared };
        let deadline = {
            let config = self.shared.config.borrow();
            let unsynced = self.shared.synced.get() < self.shared.written.get();
            // A sync in flight wakes the writer when it lands: no deadline meanwhile.
            let idle = self.syncing.is_none();
            match config.flush.interval_ms {
                Some(ms) if unsynced && idle && !config.flush.every_append => {
                    Some(self.last_sync + Duration::from_millis(ms))
                }
                _ => None,
            }
        };
        match deadline {
            None => ready.await,
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                let sleep = pin!(glommio::timer::sleep(wait));
                futures::future::select(pin!(ready), sleep).await;
            }
        }
    }

    /// Writes the first `count` queued batches, rolling segments as needed.
    async fn write_queued(&mut self, mut count: usize) -> Result<(), StorageError> {
        while count > 0 {
            let Some(batches) = self.gather(count) else {
                Box::pin(self.roll()).await?;
                continue;
            };
            self.write(&batches).await?;
            self.shared.pending.borrow_mut().drain(..batches.len());
            count -= batches.len();
            self.shared.publish();
        }
        Ok(())
    }

    /// The first queued batches (up to `count`) that fit one write, left in the queue; `None`
    /// if the first one needs a roll first.
    fn gather(&self, count: usize) -> Option<Vec<Bytes>> {
        let pending = self.shared.pending.borrow();
        let mut batches: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        for next in pending.iter().take(count) {
            let size = self.segment.size.get() + bytes as u64;
            if self.needs_roll(size, next) {
                if batches.is_empty() {
                    return None;
                }
                break;
            }
            if !batches.is_empty() && bytes + next.len() > WRITE_DATA_BYTES_MAX {
                break;
            }
            bytes += next.len();
            batches.push(next.clone());
        }
        Some(batches)
    }

    fn needs_roll(&self, size: u64, batch: &Bytes) -> bool {
        if size == 0 {
            return false;
        }
        let config = self.shared.config.borrow();
        let full = size + batch.len() as u64 > config.segment_bytes;
        let aged = match (config.segment_ms, self.first_write) {
            (Some(ms), Some(first)) => first.elapsed() >= Duration::from_millis(ms),
            _ => false,
        };
        let span = header_of(batch).map_or(0, |h| h.last_offset() - self.segment.base_offset);
        full || aged || span >= i64::from(u32::MAX)
    }

    /// One DMA write of `batches` at the segment's aligned end.
    async fn write(&mut self, batches: &[Bytes]) -> Result<(), StorageError> {
        let segment = self.segment.clone();
        let start = segment.size.get();
        let aligned = align_down(start);
        assert_eq!(aligned + self.tail.len() as u64, start);
        let data: usize = batches.iter().map(Bytes::len).sum();
        let end = start + data as u64;
        let write_len = (align_up(end) - aligned) as usize;
        assert!(write_len as u64 <= WRITE_BYTES_MAX);
        self.ensure_allocated(align_up(end)).await?;
        assert!(aligned + write_len as u64 <= self.allocated, "a write never grows the file");
        let mut buf = segment.file.alloc_dma_buffer(write_len);
        let bytes = buf.as_bytes_mut();
        let mut at = self.tail.len();
        bytes[..at].copy_from_slice(&self.tail);
        for batch in batches {
            bytes[at..at + batch.len()].copy_from_slice(batch);
            at += batch.len();
        }
        bytes[at..].fill(0);
        let new_tail = bytes[(align_down(end) - aligned) as usize..at].to_vec();
        #[cfg(test)]
        self.shared.faults.held_write().await;
        #[cfg(test)]
        if let Some(fault) = self.shared.faults.on_write(write_len) {
            return Err(inject_write_fault(fault, &segment, bytes, aligned).await);
        }
        self.plain_unsynced |= !segment.dsync;
        let written = segment.file.write_at(buf, aligned).await;
        let written = written.map_err(|e| StorageError::io("write", &segment.path, e))?;
        if written != write_len {
            let short = std::io::Error::new(std::io::ErrorKind::WriteZero, "short write");
            return Err(StorageError::io("write", &segment.path, short));
        }
        self.after_write(batches, start, end, new_tail);
        self.grow_ahead(align_up(end));
        Ok(())
    }

    fn after_write(&mut self, batches: &[Bytes], start: u64, end: u64, tail: Vec<u8>) {
        let interval = self.shared.config.borrow().index_interval_bytes;
        let mut position = start;
        let mut next_offset = self.shared.written.get();
        let mut index = self.segment.index.borrow_mut();
        for header in batches.iter().filter_map(|b| header_of(b)) {
            assert!(header.base_offset >= next_offset);
            index.on_batch(&header, position, interval);
            position += header.total_bytes() as u64;
            self.unsynced_records += header.record_count.max(0) as u64;
            next_offset = header.last_offset() + 1;
        }
        assert_eq!(position, end);
        self.segment.size.set(end);
        self.tail = tail;
        self.shared.written.set(next_offset);
        self.first_write.get_or_insert_with(Instant::now);
    }

    /// `(prealloc_min_bytes, prealloc_bytes, the active segment's largest size)`.
    fn prealloc_limits(&self) -> (u64, u64, u64) {
        let config = self.shared.config.borrow();
        let cap = align_up(config.segment_bytes).max(align_up(self.segment.size.get()));
        (config.prealloc_min_bytes, config.prealloc_bytes, cap)
    }

    /// Makes sure the file is allocated up to `needed_end` before a write ends there: takes
    /// a background growth's result (waiting for it if the write needs it), else grows the
    /// file by one extent past `needed_end` now.
    pub(crate) async fn ensure_allocated(&mut self, needed_end: u64) -> Result<(), StorageError> {
        self.collect_growth(false).await;
        if needed_end <= self.allocated {
            return Ok(());
        }
        self.collect_growth(true).await;
        if needed_end <= self.allocated {
            return Ok(());
        }
        let (min, max, cap) = self.prealloc_limits();
        let extent = self.prealloc.next_extent(min, max, Instant::now());
        let target = (needed_end + extent).min(cap).max(needed_end);
        let segment = self.segment.clone();
        grow(&self.shared, &segment, target).await?;
        self.allocated = target;
        Ok(())
    }

    /// After a write ending at `end`: starts a background growth when less than half an
    /// extent is left ahead.
    fn grow_ahead(&mut self, end: u64) {
        if self.growing.is_some() {
            return;
        }
        let (min, max, cap) = self.prealloc_limits();
        if !self.prealloc.want_ahead(end, self.allocated, cap, min, max) {
            return;
        }
        let extent = self.prealloc.next_extent(min, max, Instant::now());
        let target = (self.allocated.max(end) + extent).min(cap);
        // Nothing is written at or past `allocated` until this growth is collected, so the
        // zeros can never land on data.
        let zero_from = self.allocated.max(end);
        let prezero = self.shared.config.borrow().prezero;
        let (shared, segment) = (self.shared.clone(), self.segment.clone());
        let task = glommio::spawn_local(async move {
            grow(&shared, &segment, target)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if prezero {
                if let Err(e) = zero_range(&segment.path, zero_from, target).await {
                    // Only the fast path is lost: the extent stays unwritten, as without.
                    crate::log_limited!(
                        WARN,
                        path = %segment.path.display(),
                        "writing zeros ahead of the log failed: {e}"
                    );
                }
            }
            Ok(())
        });
        self.growing = Some(Growth { segment: self.segment.clone(), target, task });
    }

    /// Takes the result of a background growth if it finished (or, with `wait`, once it
    /// does). A failed growth is only logged: the next write that needs the space grows the
    /// file itself, and fails then.
    async fn collect_growth(&mut self, wait: bool) {
        let Some(mut growth) = self.growing.take() else { return };
        let result = if wait {
            Some((&mut growth.task).await)
        } else {
            futures::FutureExt::now_or_never(&mut growth.task)
        };
        match result {
            None => self.growing = Some(growth),
            Some(Ok(())) if Rc::ptr_eq(&growth.segment, &self.segment) => {
                self.allocated = self.allocated.max(growth.target);
            }
            Some(Ok(())) => {}
            Some(Err(e)) => crate::log_limited!(
                WARN,
                dir = %self.shared.dir.display(),
                "preallocating ahead of the log failed: {e}"
            ),
        }
    }

    /// Waits for a background growth to end: before the file is truncated, rolled or
    /// reloaded, none may extend it afterwards.
    pub(crate) async fn settle_growth(&mut self) {
        self.collect_growth(true).await;
    }

    fn sync_due(&self) -> bool {
        let shared = &self.shared;
        if shared.synced.get() >= shared.written.get() {
            return false;
        }
        let config = shared.config.borrow();
        let policy = &config.flush;
        let by_count = policy.messages.is_some_and(|m| self.unsynced_records >= m);
        // Past what the last collected sync covered (a sync in flight may cover more: the
        // next one starts when it lands, if still due).
        let unsynced_bytes = self.segment.size.get().saturating_sub(self.synced_position);
        let by_bytes = policy.bytes.is_some_and(|b| unsynced_bytes >= b);
        let by_time = policy
            .interval_ms
            .is_some_and(|ms| self.last_sync.elapsed() >= Duration::from_millis(ms));
        let wanted = shared.sync_wanted.get() > shared.synced.get();
        policy.every_append || by_count || by_bytes || by_time || wanted || shared.closing.get()
    }

    /// Whether a due sync may run in the background: a periodic one (acks do not wait for
    /// it), with no `flush` waiting and the directory already synced.
    fn background_sync_allowed(&self) -> bool {
        let shared = &self.shared;
        let every_append = shared.config.borrow().flush.every_append;
        let wanted = shared.sync_wanted.get() > shared.synced.get();
        !every_append && !wanted && !shared.closing.get() && !self.dir_unsynced
    }

    /// Starts a background fdatasync, unless one is in flight: when the shard's turn comes
    /// it covers what is written then. The writer collects it before it rolls, truncates or
    /// reloads the segment, so the segment cannot change under it.
    fn start_sync(&mut self) {
        if self.syncing.is_some() {
            return;
        }
        let (shared, segment) = (self.shared.clone(), self.segment.clone());
        let synced_position = self.synced_position;
        let turn = BACKGROUND_SYNC_TURN.with(Rc::clone);
        let started = Rc::new(Cell::new(false));
        shared.sync_landed.set(false);
        let task_started = started.clone();
        let task = glommio::spawn_local(async move {
            // Never closed: an error would only mean syncing without waiting.
            let _turn = turn.acquire_permit(1).await;
            task_started.set(true);
            let covered = Covered { written: shared.written.get(), size: segment.size.get() };
            let result = fdatasync(&shared, &segment, synced_position, false).await;
            shared.sync_landed.set(true);
            shared.wake_writer();
            result.map(|()| covered)
        });
        self.syncing = Some(BackgroundSync { started, task });
        self.unsynced_records = 0;
        self.last_sync = Instant::now();
    }

    /// Takes the background sync's outcome: waits for it if `wait`, else only if it landed.
    /// A failed sync is returned (the writer poisons the log and recovers).
    pub(crate) async fn collect_sync(&mut self, wait: bool) -> Result<(), StorageError> {
        if !wait && !self.shared.sync_landed.get() {
            return Ok(());
        }
        let Some(sync) = self.syncing.take() else {
            self.shared.sync_landed.set(false);
            return Ok(());
        };
        if wait && !sync.started.get() {
            // Still waiting for the shard's turn: rather than queue behind the other
            // partitions' syncs (at max rate up to 15, ~7 ms each), cancel it. Every caller
            // that waits syncs in the foreground next (a roll, a flush, closing, recovery) or
            // cuts the log (truncation), after which the next due sync covers what is left.
            drop(sync.task);
            return Ok(());
        }
        let result = sync.task.await;
        self.shared.sync_landed.set(false);
        let covered = result?;
        // A foreground sync always collects this one first: nothing newer was synced since.
        assert!(covered.written >= self.shared.synced.get());
        self.shared.synced.set(covered.written);
        self.synced_position = covered.size;
        Ok(())
    }

    pub(crate) async fn sync(&mut self) -> Result<(), StorageError> {
        self.collect_sync(true).await?;
        let written = self.shared.written.get();
        let size = self.segment.size.get();
        let segment = self.segment.clone();
        if self.dir_unsynced {
            let dir = self.shared.dir.clone();
            segment::sync_dir(&dir).await?;
            if let Some(parent) = dir.parent() {
                segment::sync_dir(parent).await?;
            }
            self.dir_unsynced = false;
        }
        // Every write since the last fdatasync returned durable (O_DSYNC): nothing to sync.
        let written_durable = segment.dsync && !self.plain_unsynced;
        fdatasync(&self.shared, &segment, self.synced_position, written_durable).await?;
        self.plain_unsynced = false;
        self.shared.synced.set(written);
        self.synced_position = size;
        self.unsynced_records = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Seals the active segment (sync, truncate to its data, index files) and starts the next.
    /// Each step may be retried after a failure.
    async fn roll(&mut self) -> Result<(), StorageError> {
        let next_offset = self.shared.written.get();
        let old = self.segment.clone();
        self.sync().await?;
        self.settle_growth().await;
        self.allocated = self.allocated.min(old.size.get());
        truncate_and_sync(&old).await?;
        old.index.borrow_mut().seal(next_offset);
        let dir = self.shared.dir.clone();
        segment::persist_index(&dir, &old).await?;
        self.shared.publish();
        write_producer_snapshot(&self.shared, &dir, next_offset);
        let (min, max, cap) = self.prealloc_limits();
        let allocated = self.prealloc.extent(min, max).min(cap);
        let (new, allocated) = create_segment(&self.shared, &dir, next_offset, allocated).await?;
        segment::sync_dir(&dir).await?;
        tracing::debug!(dir = %dir.display(), next_offset, "rolled segment");
        self.shared.segments.borrow_mut().push(new.clone());
        self.segment = new;
        self.allocated = allocated;
        self.synced_position = 0;
        self.tail.clear();
        self.first_write = None;
        Ok(())
    }

    /// On close: sync, and give back preallocated space after the data when it is more than
    /// the first extent (a busy partition's). The cut needs no fdatasync: the active segment
    /// is scanned at the next open whatever its size. A quiet log keeps its small extent, as
    /// it would running, so closing it costs no I/O (an ftruncate costs milliseconds; 10,000
    /// partitions close in well under a second).
    async fn finish(&mut self) -> Result<(), StorageError> {
        if self.shared.synced.get() < self.shared.written.get() {
            self.sync().await?;
        }
        self.settle_growth().await;
        let size = self.segment.size.get();
        let (min, _, _) = self.prealloc_limits();
        if self.allocated > align_up(size) + min {
            let (file, path) = (&self.segment.file, &self.segment.path);
            file.truncate(size).await.map_err(|e| StorageError::io("truncate", path, e))?;
            self.allocated = size;
        }
        self.shared.publish();
        Ok(())
    }

    // ---- recovery ----------------------------------------------------------------------

    /// Retries [`Writer::try_recover`] with backoff until it succeeds (true) or the log is
    /// closing (false: it stays poisoned).
    async fn recover(&mut self) -> bool {
        // Recovery reads back what was written since the last good sync: a sync still in
        // flight lands first (its failure is what recovery handles anyway).
        let _ = self.collect_sync(true).await;
        // What the failed write or sync left is read back and synced with an fdatasync.
        self.plain_unsynced = true;
        let mut delay = RECOVERY_RETRY_MIN;
        loop {
            if self.shared.closing.get() {
                return false;
            }
            let sleep = pin!(glommio::timer::sleep(delay));
            futures::future::select(sleep, pin!(Closing { shared: &self.shared })).await;
            if self.shared.closing.get() {
                return false;
            }
            match self.try_recover().await {
                Ok(()) => {
                    tracing::info!(dir = %self.shared.dir.display(), "partition log recovered");
                    self.shared.poisoned.set(false);
                    self.shared.publish();
                    return true;
                }
                Err(e) => {
                    crate::log_limited!(WARN, dir = %self.shared.dir.display(),
                        "partition log still failing, retrying: {e}");
                    delay = (delay * 2).min(RECOVERY_RETRY_MAX);
                }
            }
        }
    }

    /// One recovery attempt: verify and sync what was written since the last good sync (or
    /// reload from disk), then make sure the next queued write has its space.
    async fn try_recover(&mut self) -> Result<(), StorageError> {
        self.settle_growth().await;
        if self.reload_needed || !self.unsynced_data_verifies().await? {
            self.reload().await?;
            self.reload_needed = false;
        } else if self.shared.synced.get() < self.shared.written.get() {
            self.sync().await?;
        }
        let next_end = {
            let pending = self.shared.pending.borrow();
            let size = self.segment.size.get();
            pending
                .front()
                .filter(|batch| !self.needs_roll(size, batch))
                .map(|batch| align_up(size + batch.len() as u64))
        };
        if let Some(end) = next_end {
            self.ensure_allocated(end).await?;
        }
        Ok(())
    }

    /// Reads back `[synced_position, size)` of the active segment: whether it holds exactly
    /// the batches written there (valid CRCs, offsets up to `written`).
    async fn unsynced_data_verifies(&self) -> Result<bool, StorageError> {
        let (from, end) = (self.synced_position, self.segment.size.get());
        if from >= end {
            return Ok(true);
        }
        let interval = self.shared.config.borrow().index_interval_bytes;
        let segment = &self.segment;
        let start = (from, self.shared.synced.get());
        let (file, path, base) = (&segment.file, &segment.path, segment.base_offset);
        let scan = recovery::scan_from(file, path, base, start, end, interval).await?;
        let intact = scan.end == end && scan.next_offset == self.shared.written.get();
        if !intact {
            tracing::error!(
                path = %segment.path.display(),
                position = scan.end,
                "data written before a failed fdatasync does not read back intact: reloading"
            );
        }
        Ok(intact)
    }

    /// Rebuilds the log from disk as a restart would and adopts it: what is not verifiably
    /// on disk is dropped (queued appends included; their waiters fail).
    async fn reload(&mut self) -> Result<(), StorageError> {
        let config = self.shared.config.borrow().clone();
        let loaded = recovery::load(&self.shared.dir, &config).await?;
        self.adopt(loaded);
        Ok(())
    }

    fn adopt(&mut self, loaded: Loaded) {
        let shared = self.shared.clone();
        let end = loaded.active.next_offset;
        if end < shared.durable.get() {
            tracing::error!(dir = %shared.dir.display(), end, acknowledged = shared.durable.get(),
                "acknowledged records are no longer on disk after an I/O failure");
        }
        tracing::warn!(dir = %shared.dir.display(), end, dropped = shared.leo.get() - end,
            "reloaded the log from disk");
        shared.pending.borrow_mut().clear();
        shared.reloads.borrow_mut().push(end);
        for offset in [&shared.leo, &shared.written, &shared.synced, &shared.durable] {
            offset.set(end);
        }
        shared.sync_wanted.set(shared.sync_wanted.get().min(end));
        shared.high_watermark.set(shared.high_watermark.get().min(end));
        let first = loaded.segments.first().map_or(end, |s| s.base_offset);
        let checkpoint = loaded.log_start.unwrap_or(first).max(shared.log_start.get());
        shared.log_start.set(checkpoint.clamp(first, end));
        shared.cache.borrow_mut().clear();
        shared.forget_reads();
        shared.compacted.set(None);
        let Loaded { segments, active, .. } = loaded;
        *shared.producers.borrow_mut() = active.producers;
        *shared.segments.borrow_mut() = segments;
        super::replica::trim_epochs(&shared, end);
        super::replica::checkpoint_hw(&shared, true);
        if let Some(t) = shared.truncation.borrow_mut().as_mut() {
            t.result.get_or_insert(Err(StorageError::Poisoned));
        }
        self.segment = active.segment;
        self.allocated = active.allocated;
        self.tail = active.tail;
        self.synced_position = self.segment.size.get();
        self.unsynced_records = 0;
        self.first_write = None;
        self.dir_unsynced |= active.dir_unsynced;
        shared.progress.wake_all();
    }
}

/// Grows `segment`'s file to `target` bytes (`fallocate`, the size set: see `prealloc`).
async fn grow(shared: &Shared, segment: &Segment, target: u64) -> Result<(), StorageError> {
    #[cfg(test)]
    if let Some(e) = shared.faults.on_grow() {
        return Err(StorageError::io("fallocate", &segment.path, e));
    }
    let _ = shared;
    segment
        .file
        .pre_allocate(target, false)
        .await
        .map_err(|e| StorageError::io("fallocate", &segment.path, e))
}

/// Largest write of [`zero_range`].
const ZERO_WRITE_BYTES: usize = 1 << 20;

/// Writes zeros over `[from, to)` (block-aligned) of the file at `path`, turning the
/// unwritten extents `fallocate` left there into written ones before the log's data reaches
/// them, so a write + fdatasync there syncs no extent conversion. Runs on glommio's
/// blocking thread with plain O_DIRECT `pwrite`s of one static zeroed buffer: the shard's
/// thread neither fills nor submits anything. Not synced: the next fdatasync of the log
/// carries the conversion, and after a crash an unsynced conversion reads as zeros anyway.
/// (Linux 6.17's FALLOC_FL_WRITE_ZEROES does this in one call, but needs device support
/// the reference machine's virtio disk lacks: perf/results/2026-12-05-prezero.md.)
async fn zero_range(path: &std::path::Path, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    debug_assert!(from.is_multiple_of(BLOCK_BYTES) && to.is_multiple_of(BLOCK_BYTES));
    if from >= to {
        return Ok(());
    }
    let path = path.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            let file =
                std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path)?;
            let zeros = zero_buffer();
            let mut at = from;
            while at < to {
                let n = (to - at).min(ZERO_WRITE_BYTES as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            Ok(())
        })
        .await
}

/// [`ZERO_WRITE_BYTES`] of zeros at a block-aligned address (O_DIRECT), allocated once.
fn zero_buffer() -> &'static [u8] {
    static ZEROS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let block = BLOCK_BYTES as usize;
    let zeros = ZEROS.get_or_init(|| vec![0; ZERO_WRITE_BYTES + block]);
    let skip = zeros.as_ptr().align_offset(block);
    &zeros[skip..skip + ZERO_WRITE_BYTES]
}

pub(crate) async fn truncate_and_sync(segment: &Segment) -> Result<(), StorageError> {
    let file = &segment.file;
    let path = &segment.path;
    file.truncate(segment.size.get()).await.map_err(|e| StorageError::io("truncate", path, e))?;
    file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", path, e))
}

/// A new empty segment at `base_offset`, its file allocated to at least `allocated` bytes
/// (none when 0: the writer grows it before its first write); returns it and the bytes
/// allocated. The partition's recycled file (see `LogConfig::recycle`), when there is one,
/// becomes it: what it held stays after the data (offsets below `base_offset`: recovery
/// stops there) until the segment is sealed and cut to its data.
pub(crate) async fn create_segment(
    shared: &Shared,
    dir: &std::path::Path,
    base_offset: i64,
    allocated: u64,
) -> Result<(Rc<Segment>, u64), StorageError> {
    let path = segment::file_path(dir, base_offset, "log");
    let recycled = match std::fs::rename(segment::recycled_path(dir), &path) {
        Ok(()) => {
            super::recycle::forget_kept(shared);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not reuse a segment file");
            false
        }
    };
    let dsync = wants_dsync(&shared.config.borrow());
    let file = open_active_file(&path, dsync).await?;
    let written = match recycled {
        true => align_down(recovery::file_size(&file, &path).await?),
        false => {
            file.truncate(0).await.map_err(|e| StorageError::io("truncate", &path, e))?;
            0
        }
    };
    let segment = Rc::new(Segment { dsync, ..Segment::new(base_offset, file, path, 0) });
    if allocated > written {
        grow(shared, &segment, allocated).await?;
    }
    Ok((segment, allocated.max(written)))
}

/// Opens the file of a partition's active segment, with O_DSYNC if `dsync` ([`wants_dsync`]).
///
/// Why: with a write then an fdatasync, the write completes to the shard, which then submits
/// the sync; while the shard is busy receiving produce requests that round trip leaves the
/// disk without this partition's next request. With O_DSYNC the kernel syncs right after the
/// write (in the same io_uring worker when the write converts unwritten extents), with the
/// same guarantee. Measured with 16 partitions on the reference machine
/// (perf/results/2026-12-06-dsync.md): 1 KiB max-rate produce +20-25% (broker CPU per
/// message -20%), e2e p99 at 1M msgs/s of 100 B -16 to -30%.
///
/// The same descriptor serves reads (O_DSYNC only changes writes), so it costs no file
/// descriptor: a second one per written partition ran 10,000 partitions out of them. The
/// mode is chosen when the segment is opened: after a topic's flush policy changes it
/// follows from its next segment, and either mode is correct under either policy (under a
/// periodic flush an O_DSYNC segment's writes are durable anyway, only slower; under
/// fdatasync per append a plain one is fdatasync'ed).
pub(crate) async fn open_active_file(
    path: &std::path::Path,
    dsync: bool,
) -> Result<glommio::io::DmaFile, StorageError> {
    segment::open_log_file_with(path, if dsync { libc::O_DSYNC } else { 0 }).await
}

/// Whether a new active segment is opened with O_DSYNC: while every append is fdatasync'ed
/// and `LogConfig::write_dsync` is on.
pub(crate) fn wants_dsync(config: &super::LogConfig) -> bool {
    config.write_dsync && config.flush.every_append
}

/// Saves the idempotent-producer state below `next_offset` as the new active segment's
/// snapshot (see `producers`). Earlier segments keep theirs (removed with the segment), so a
/// truncation into a closed segment rebuilds the state from its snapshot. Small and rare
/// (once per roll), so plain blocking file calls; a failure only costs deduplication across a
/// restart (or a rescan on truncation): logged.
pub(crate) fn write_producer_snapshot(shared: &Shared, dir: &std::path::Path, next_offset: i64) {
    let bytes = shared.producers.borrow().snapshot_below(next_offset);
    let path = segment::file_path(dir, next_offset, "producers");
    let tmp = path.with_extension("producers.tmp");
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        let path = path.display();
        crate::log_limited!(WARN, path = %path, "producer state snapshot not written: {e}");
    }
}

/// Test-only: does what `fault` says instead of the write of `bytes` at `aligned`, and
/// returns the error the write fails with.
#[cfg(test)]
async fn inject_write_fault(
    fault: super::faults::WriteFault,
    segment: &Segment,
    bytes: &[u8],
    aligned: u64,
) -> StorageError {
    let error = match fault {
        super::faults::WriteFault::Fail(error) => error,
        super::faults::WriteFault::Short(kept) => {
            let mut prefix = segment.file.alloc_dma_buffer(kept);
            prefix.as_bytes_mut().copy_from_slice(&bytes[..kept]);
            let _ = segment.file.write_at(prefix, aligned).await;
            std::io::Error::new(std::io::ErrorKind::WriteZero, "injected short write")
        }
    };
    StorageError::io("write", &segment.path, error)
}

/// Test-only: a failed fdatasync; with `lose`, one byte written since `synced_position`
/// is flipped on disk first (a device that dropped part of the unsynced data).
#[cfg(test)]
async fn inject_sync_fault(
    shared: &Shared,
    segment: &Segment,
    synced_position: u64,
    lose: bool,
) -> StorageError {
    let size = segment.size.get();
    if lose && size > synced_position {
        let at = synced_position + shared.faults.below(size - synced_position);
        let block = align_down(at);
        if let Ok(read) = segment.file.read_at(block, BLOCK_BYTES as usize).await {
            if read.len() == BLOCK_BYTES as usize {
                let mut buf = segment.file.alloc_dma_buffer(BLOCK_BYTES as usize);
                buf.as_bytes_mut().copy_from_slice(&read);
                buf.as_bytes_mut()[(at - block) as usize] ^= 0x5a;
                let _ = segment.file.write_at(buf, block).await;
            }
        }
    }
    let error = std::io::Error::from_raw_os_error(libc::EIO);
    StorageError::io("fdatasync", &segment.path, error)
}

/// fdatasync of `segment`, skipped when `written_durable` (every write since the last one
/// was an O_DSYNC write). Test builds: the fault plan may fail it, damaging what was written
/// after `synced_position`, or hold it, either way (for O_DSYNC writes an injected failure
/// stands for the sync half of the last write failing).
async fn fdatasync(
    shared: &Shared,
    segment: &Segment,
    synced_position: u64,
    written_durable: bool,
) -> Result<(), StorageError> {
    #[cfg(test)]
    {
        shared.faults.held_sync().await;
        if let Some(lose) = shared.faults.on_sync() {
            return Err(inject_sync_fault(shared, segment, synced_position, lose).await);
        }
    }
    #[cfg(not(test))]
    let _ = (shared, synced_position);
    if written_durable {
        return Ok(());
    }
    let synced = segment.file.fdatasync().await;
    synced.map_err(|e| StorageError::io("fdatasync", &segment.path, e))
}

/// Ready when the writer has something to do.
struct WorkReady<'a> {
    shared: &'a Shared,
}

impl Future for WorkReady<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let s = self.shared;
        let sync_wanted = s.sync_wanted.get() > s.synced.get() && s.written.get() > s.synced.get();
        let has_pending = !s.pending.borrow().is_empty();
        let truncation = s.truncation.borrow().as_ref().is_some_and(|t| t.result.is_none());
        let landed = s.sync_landed.get();
        if has_pending || truncation || sync_wanted || landed || s.closing.get() {
            return Poll::Ready(());
        }
        s.writer_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Ready once the log is closing (cuts a recovery pause short).
struct Closing<'a> {
    shared: &'a Shared,
}

impl Future for Closing<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.closing.get() {
            return Poll::Ready(());
        }
        self.shared.writer_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

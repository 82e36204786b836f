//! State shared by the log handles, the writer task and waiting futures (one executor).

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Waker;

use bytes::Bytes;

use super::cache::TailCache;
use super::producers::ProducerTable;
use super::readahead::NextRead;
use super::recycle::{Kept, RecyclePool};
use super::segment::Segment;
use super::wait::WaitList;
use super::LogConfig;

/// Offsets obey `log_start <= high_watermark <= durable <= written <= leo` and
/// `synced <= written`; the writer alone advances `written`, `synced` and `durable`, appends
/// alone advance `leo`, `set_high_watermark` alone advances `high_watermark`. Only a
/// truncation (the writer, on request) moves them back.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) config: RefCell<LogConfig>,
    pub(crate) log_start: Cell<i64>,
    /// Next offset to assign.
    pub(crate) leo: Cell<i64>,
    /// Offsets below are written to their segment file.
    pub(crate) written: Cell<i64>,
    /// Offsets below are fdatasync'ed.
    pub(crate) synced: Cell<i64>,
    /// Offsets below are acknowledged (per the flush policy); readable when not replicated.
    pub(crate) durable: Cell<i64>,
    /// Replication mode: consumers see only offsets below `high_watermark`.
    pub(crate) replicated: Cell<bool>,
    /// The replicated high watermark (`<= durable`), set by the leader or from its fetches.
    pub(crate) high_watermark: Cell<i64>,
    /// The last high watermark checkpointed (or loaded), and when it was written.
    pub(crate) hw_checkpoint: Cell<Option<i64>>,
    pub(crate) hw_checkpoint_at: Cell<Option<std::time::Instant>>,
    /// partitionLeaderEpoch stamped on appended batches.
    pub(crate) leader_epoch: Cell<i32>,
    /// The leader epoch cache: (epoch, start offset), both increasing.
    pub(crate) epochs: RefCell<Vec<(i32, i64)>>,
    /// A truncation asked of the writer, and its outcome once done.
    pub(crate) truncation: RefCell<Option<Box<Truncation>>>,
    /// `flush` wants `synced >= sync_wanted`.
    pub(crate) sync_wanted: Cell<i64>,
    pub(crate) poisoned: Cell<bool>,
    /// No more appends; the writer drains the queue and exits.
    pub(crate) closing: Cell<bool>,
    /// The writer exited (after closing or poisoning).
    pub(crate) writer_done: Cell<bool>,
    /// `close` finished; reads fail.
    pub(crate) closed: Cell<bool>,
    /// Appended batches not yet handed to a write, in offset order.
    pub(crate) pending: RefCell<VecDeque<Bytes>>,
    pub(crate) cache: RefCell<TailCache>,
    /// Where the batch after the last one read from disk is, and its read-ahead (see
    /// `readahead`).
    pub(crate) next_read: RefCell<Option<NextRead>>,
    /// Bumped by every change that can make a next read stale, see [`Shared::forget_reads`].
    pub(crate) read_epoch: Cell<u64>,
    /// Idempotent producers' last batches, as of `leo`.
    pub(crate) producers: RefCell<ProducerTable>,
    /// Every segment in offset order; the last one is active.
    pub(crate) segments: RefCell<Vec<Rc<Segment>>>,
    pub(crate) writer_waker: Cell<Option<Waker>>,
    /// A background fdatasync of the writer finished (it wakes the writer to collect it).
    pub(crate) sync_landed: Cell<bool>,
    /// Woken when `hw`, `synced`, `poisoned` or `writer_done` change.
    pub(crate) progress: WaitList,
    /// Held while the log start checkpoint or the segment list is changed by retention,
    /// DeleteRecords or compaction (never by appends or the writer).
    pub(crate) checkpoint_lock: glommio::sync::Semaphore,
    /// (last base offset, count) of the segments the last compaction pass left with nothing
    /// to do later (no tombstones kept); `None` when the next pass must look again.
    pub(crate) compacted: Cell<Option<(i64, usize)>>,
    /// The log end after each reload from disk (see `writer`), oldest first: an append made
    /// before reload `i` whose offsets reach `reloads[i..]`'s lowest end was dropped.
    pub(crate) reloads: RefCell<Vec<i64>>,
    /// The shard's budget for kept segment files, once the log joined it (see `recycle`).
    pub(crate) recycle_pool: OnceCell<Rc<RecyclePool>>,
    /// The kept segment file (`segment::recycled_path`), if any.
    pub(crate) kept: Cell<Option<Kept>>,
    #[cfg(test)]
    pub(crate) faults: super::faults::Faults,
}

impl Shared {
    /// A log whose data ends (and is durable) at `next_offset`.
    pub(crate) fn new(
        dir: PathBuf,
        config: LogConfig,
        segments: Vec<Rc<Segment>>,
        next_offset: i64,
        producers: ProducerTable,
    ) -> Shared {
        let log_start = segments.first().map_or(next_offset, |s| s.base_offset);
        assert!(log_start <= next_offset);
        let cache = TailCache::new();
        let kept = std::fs::metadata(super::segment::recycled_path(&dir)).ok();
        let kept = kept.map(|m| Kept::now(m.len()));
        Shared {
            dir,
            config: RefCell::new(config),
            log_start: Cell::new(log_start),
            leo: Cell::new(next_offset),
            written: Cell::new(next_offset),
            synced: Cell::new(next_offset),
            durable: Cell::new(next_offset),
            replicated: Cell::new(false),
            high_watermark: Cell::new(next_offset),
            hw_checkpoint: Cell::new(None),
            hw_checkpoint_at: Cell::new(None),
            leader_epoch: Cell::new(0),
            epochs: RefCell::new(Vec::new()),
            truncation: RefCell::new(None),
            sync_wanted: Cell::new(next_offset),
            poisoned: Cell::new(false),
            closing: Cell::new(false),
            writer_done: Cell::new(false),
            closed: Cell::new(false),
            pending: RefCell::new(VecDeque::new()),
            cache: RefCell::new(cache),
            next_read: RefCell::new(None),
            read_epoch: Cell::new(0),
            producers: RefCell::new(producers),
            segments: RefCell::new(segments),
            writer_waker: Cell::new(None),
            sync_landed: Cell::new(false),
            progress: WaitList::default(),
            checkpoint_lock: glommio::sync::Semaphore::new(1),
            compacted: Cell::new(None),
            reloads: RefCell::new(Vec::new()),
            recycle_pool: OnceCell::new(),
            kept: Cell::new(kept),
            #[cfg(test)]
            faults: super::faults::Faults::default(),
        }
    }

    /// Queues offset-assigned batches (consecutive, starting at `leo`) and wakes the writer.
    /// `pinned`: the size of the allocation the batches are slices of when larger than
    /// theirs (see `TailCache::push`), else 0.
    pub(crate) fn enqueue(&self, batches: Vec<Bytes>, next_offset: i64, pinned: usize) {
        assert!(next_offset > self.leo.get());
        {
            let mut pending = self.pending.borrow_mut();
            let mut cache = self.cache.borrow_mut();
            for batch in batches {
                cache.push(batch.clone(), pinned);
                pending.push_back(batch);
            }
        }
        self.leo.set(next_offset);
        self.wake_writer();
        if self.replicated.get() {
            // Followers' long-poll fetches wait for appended data (`wait_for_appended`).
            self.progress.wake_all();
        }
    }

    /// Forgets the next read and drops its read-ahead (cancelled if in flight), and bumps
    /// the read epoch so that reads begun before remember nothing. Called by every change
    /// that can cut, rewrite or remove bytes of a segment: truncation and reset, a reload
    /// after an I/O failure, a compaction swap, retention, close.
    pub(crate) fn forget_reads(&self) {
        self.read_epoch.set(self.read_epoch.get() + 1);
        let next = self.next_read.borrow_mut().take();
        drop(next);
    }

    /// Asks the writer to fdatasync everything below `offset`.
    pub(crate) fn request_sync(&self, offset: i64) {
        if offset > self.sync_wanted.get() {
            self.sync_wanted.set(offset);
        }
        self.wake_writer();
    }

    pub(crate) fn wake_writer(&self) {
        if let Some(waker) = self.writer_waker.take() {
            waker.wake();
        }
    }

    /// Marks the log poisoned after a failed write or fdatasync and wakes every waiter (the
    /// writer then tries to recover it).
    pub(crate) fn poison(&self, error: &super::StorageError) {
        crate::log_limited!(ERROR, dir = %self.dir.display(),
            "partition log poisoned, refusing appends until it recovers: {error}");
        self.poisoned.set(true);
        self.progress.wake_all();
    }

    /// End of what consumers may read: the high watermark when replicated, else `durable`.
    pub(crate) fn visible_end(&self) -> i64 {
        if self.replicated.get() {
            self.high_watermark.get()
        } else {
            self.durable.get()
        }
    }

    /// Moves `durable` to what the flush policy allows and wakes waiters if anything moved.
    pub(crate) fn publish(&self) {
        let every_append = self.config.borrow().flush.every_append;
        let acked = if every_append { self.synced.get() } else { self.written.get() };
        assert!(self.synced.get() <= self.written.get());
        assert!(self.written.get() <= self.leo.get());
        if acked > self.durable.get() {
            self.durable.set(acked);
        }
        let cap = self.config.borrow().tail_cache_bytes;
        let over_budget = {
            let mut cache = self.cache.borrow_mut();
            cache.evict(cap, self.written.get());
            cache.pool_over_budget()
        };
        if let Some(pool) = over_budget {
            pool.reclaim();
        }
        self.progress.wake_all();
    }
}

/// What a truncation request asks of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TruncateKind {
    /// Drop every record at or above the offset.
    To(i64),
    /// Drop everything; the log restarts empty at the offset.
    Reset(i64),
}

/// A truncation request and, once the writer did it, its outcome.
pub(crate) struct Truncation {
    pub(crate) kind: TruncateKind,
    pub(crate) result: Option<Result<(), super::StorageError>>,
}

//! State shared by the log handles, the writer task and waiting futures (one executor).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::Waker;

use bytes::Bytes;

use super::cache::TailCache;
use super::producers::ProducerTable;
use super::segment::Segment;
use super::wait::WaitList;
use super::LogConfig;

/// Offsets obey `log_start <= hw <= written <= leo` and `synced <= written`; the writer alone
/// advances `written`, `synced` and `hw`, appends alone advance `leo`.
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
    /// Offsets below are acknowledged and readable.
    pub(crate) hw: Cell<i64>,
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
    /// Idempotent producers' last batches, as of `leo`.
    pub(crate) producers: RefCell<ProducerTable>,
    /// Every segment in offset order; the last one is active.
    pub(crate) segments: RefCell<Vec<Rc<Segment>>>,
    pub(crate) writer_waker: Cell<Option<Waker>>,
    /// Woken when `hw`, `synced`, `poisoned` or `writer_done` change.
    pub(crate) progress: WaitList,
    /// Held while the log start checkpoint or the segment list is changed by retention,
    /// DeleteRecords or compaction (never by appends or the writer).
    pub(crate) checkpoint_lock: glommio::sync::Semaphore,
    /// (last base offset, count) of the segments the last compaction pass left with nothing
    /// to do later (no tombstones kept); `None` when the next pass must look again.
    pub(crate) compacted: Cell<Option<(i64, usize)>>,
    #[cfg(test)]
    pub(crate) fail_writes: Cell<bool>,
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
        let cache = TailCache::new(config.tail_cache_bytes);
        Shared {
            dir,
            config: RefCell::new(config),
            log_start: Cell::new(log_start),
            leo: Cell::new(next_offset),
            written: Cell::new(next_offset),
            synced: Cell::new(next_offset),
            hw: Cell::new(next_offset),
            sync_wanted: Cell::new(next_offset),
            poisoned: Cell::new(false),
            closing: Cell::new(false),
            writer_done: Cell::new(false),
            closed: Cell::new(false),
            pending: RefCell::new(VecDeque::new()),
            cache: RefCell::new(cache),
            producers: RefCell::new(producers),
            segments: RefCell::new(segments),
            writer_waker: Cell::new(None),
            progress: WaitList::default(),
            checkpoint_lock: glommio::sync::Semaphore::new(1),
            compacted: Cell::new(None),
            #[cfg(test)]
            fail_writes: Cell::new(false),
        }
    }

    /// Queues offset-assigned batches (consecutive, starting at `leo`) and wakes the writer.
    pub(crate) fn enqueue(&self, batches: Vec<Bytes>, next_offset: i64) {
        assert!(next_offset > self.leo.get());
        {
            let mut pending = self.pending.borrow_mut();
            let mut cache = self.cache.borrow_mut();
            for batch in batches {
                cache.push(batch.clone());
                pending.push_back(batch);
            }
        }
        self.leo.set(next_offset);
        self.wake_writer();
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

    /// Marks the log poisoned after a failed write or fdatasync and wakes every waiter.
    pub(crate) fn poison(&self, error: &super::StorageError) {
        tracing::error!(dir = %self.dir.display(), "partition log poisoned: {error}");
        self.poisoned.set(true);
        self.progress.wake_all();
    }

    /// Moves `hw` to what the flush policy allows and wakes waiters if anything moved.
    pub(crate) fn publish(&self) {
        let every_append = self.config.borrow().flush.every_append;
        let acked = if every_append { self.synced.get() } else { self.written.get() };
        assert!(self.synced.get() <= self.written.get());
        assert!(self.written.get() <= self.leo.get());
        if acked > self.hw.get() {
            self.hw.set(acked);
        }
        let cap = self.config.borrow().tail_cache_bytes;
        self.cache.borrow_mut().evict(cap, self.written.get());
        self.progress.wake_all();
    }
}

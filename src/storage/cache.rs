//! Tail cache: the most recent batches, as appended (offset-assigned `Bytes`), per
//! partition up to `tail_cache_bytes`, and over all the partitions of a shard up to the
//! shard's [`CachePool`] budget (`tail_cache_max_bytes` / shards).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};

use super::header_of;
use super::shared::Shared;

struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
    /// What it counts against the budgets: its length, or more when it is a slice of a
    /// larger buffer it keeps allocated (see [`TailCache::push`]).
    charge: usize,
}

/// Recent batches in increasing offset order (contiguous, except where a follower copied a
/// leader's compacted batches). Bounded by a byte budget, except that batches
/// not yet written to disk are never evicted (they are the only copy).
pub(crate) struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    /// The shard's budget this cache counts against, once the log joined it.
    pool: Option<Rc<CachePool>>,
    /// The pool's clock at the latest push or read hit: the least recently used caches give
    /// their batches back first.
    touched: Cell<u64>,
}

impl Drop for TailCache {
    fn drop(&mut self) {
        self.sub(self.bytes);
    }
}

impl TailCache {
    pub(crate) fn new() -> TailCache {
        TailCache { batches: VecDeque::new(), bytes: 0, pool: None, touched: Cell::new(0) }
    }

    /// Counts this cache against `pool` from now on.
    fn join(&mut self, pool: &Rc<CachePool>) {
        self.sub(self.bytes);
        self.pool = Some(pool.clone());
        self.add(self.bytes);
        self.touch();
    }

    fn add(&self, bytes: usize) {
        if let Some(pool) = &self.pool {
            pool.used.set(pool.used.get() + bytes);
        }
    }

    fn sub(&self, bytes: usize) {
        if let Some(pool) = &self.pool {
            pool.used.set(pool.used.get() - bytes);
        }
    }

    fn touch(&self) {
        if let Some(pool) = &self.pool {
            pool.clock.set(pool.clock.get() + 1);
            self.touched.set(pool.clock.get());
        }
    }

    /// The shard's pool this cache counts against, once the log joined one.
    pub(crate) fn pool(&self) -> Option<Rc<CachePool>> {
        self.pool.clone()
    }

    /// Bytes cached.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the shard's caches together are over their budget.
    pub(crate) fn pool_over_budget(&self) -> Option<Rc<CachePool>> {
        self.pool.as_ref().filter(|p| p.used.get() > p.reclaim_at.get()).cloned()
    }

    /// Evicts the oldest batches below `written_below` until `want` bytes are freed (or no
    /// written batch is left); the bytes freed.
    fn shed(&mut self, want: usize, written_below: i64) -> usize {
        let mut freed = 0;
        while freed < want {
            match self.batches.front() {
                Some(front) if front.last_offset < written_below => {
                    freed += front.charge;
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
        self.bytes -= freed;
        self.sub(freed);
        freed
    }

    /// Adds the next batch (its base offset is past the previous batch's last offset).
    /// Batches whose header does not parse are not cached (cannot happen after `validate`).
    /// `pinned`: the bytes of the allocation the batch is a slice of (a produce request's
    /// frame, when its records were taken over in place), 0 when it owns its allocation. The
    /// batch counts as the larger of the two, so the memory the cache keeps alive stays
    /// within its budgets however the other slices of that frame come and go.
    pub(crate) fn push(&mut self, bytes: Bytes, pinned: usize) {
        let Some(header) = header_of(&bytes) else {
            return;
        };
        if let Some(back) = self.batches.back() {
            assert!(back.last_offset < header.base_offset);
        }
        let charge = bytes.len().max(pinned);
        self.bytes += charge;
        self.add(charge);
        self.touch();
        self.batches.push_back(CachedBatch {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            bytes,
            charge,
        });
    }

    /// Evicts the oldest batches while above `capacity`, keeping any batch at or above
    /// `written_below` (not yet on disk).
    pub(crate) fn evict(&mut self, capacity: usize, written_below: i64) {
        let over = self.bytes.saturating_sub(capacity);
        if over > 0 {
            self.shed(over, written_below);
        }
    }

    /// Forgets every batch below `offset` (all written: they are in closed segments), so
    /// reads of a compacted range go to the rewritten segments.
    pub(crate) fn drop_below(&mut self, offset: i64) {
        while let Some(front) = self.batches.front() {
            if front.last_offset >= offset {
                break;
            }
            self.bytes -= front.charge;
            self.sub(front.charge);
            self.batches.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.batches.clear();
        self.sub(self.bytes);
        self.bytes = 0;
    }

    /// First offset served from the cache, if any.
    pub(crate) fn first_offset(&self) -> Option<i64> {
        self.batches.front().map(|b| b.base_offset)
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (at least one), only
    /// batches below `hw`. `None` if `offset` is not cached or not below `hw`.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize, hw: i64) -> Option<Bytes> {
        if offset >= hw || self.first_offset()? > offset {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let first = self.batches.get(start)?;
        self.touch();
        let mut end = start + 1;
        let mut total = first.bytes.len();
        while let Some(next) = self.batches.get(end) {
            if next.base_offset >= hw || total + next.bytes.len() > max_bytes {
                break;
            }
            total += next.bytes.len();
            end += 1;
        }
        if end == start + 1 {
            return Some(first.bytes.clone());
        }
        let mut out = BytesMut::with_capacity(total);
        for batch in self.batches.range(start..end) {
            out.extend_from_slice(&batch.bytes);
        }
        Some(out.freeze())
    }
}

/// Read-aheads may hold at most this fraction (1 / N) of a [`CachePool`]'s budget.
pub(crate) const READ_AHEAD_SHARE: usize = 4;

/// Bytes a read-ahead holds in a [`CachePool`], given back when dropped.
pub(crate) struct Reservation {
    pool: Rc<CachePool>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let pool = &self.pool;
        pool.read_ahead.set(pool.read_ahead.get() - self.bytes);
        pool.used.set(pool.used.get() - self.bytes);
    }
}

/// The byte budget the tail caches of one shard's logs share (`tail_cache_shard_bytes`).
/// `tail_cache_bytes` caps each partition's cache; this caps their sum, so the memory the
/// caches hold does not grow with the number of partitions (10,000 partitions × 8 MiB would
/// be 80 GiB). When the sum passes the budget, the least recently used caches (by their
/// latest append or read hit) give back their oldest written batches until it is 7/8 of the
/// budget: busy partitions keep their tails, idle ones go to disk for a read. Batches not
/// yet written are never evicted (they are the only copy), so the sum can pass the budget
/// by what is in flight to disk, which the request memory budget bounds.
///
/// The logs' read-aheads (see `readahead`) count here too, up to a quarter of the budget
/// ([`READ_AHEAD_SHARE`]); they are taken only when they fit under the budget, so they never
/// make a tail cache give batches back, and they are not reclaimed (used or dropped soon).
///
/// One per shard (`Rc`, no locks): logs join it when the shard opens them.
pub struct CachePool {
    budget: usize,
    /// Bytes of the member caches and of the read-aheads reserved here.
    used: Cell<usize>,
    /// Bytes of `used` reserved by read-aheads.
    read_ahead: Cell<usize>,
    /// Reclaim when `used` passes this: the budget, or above it after a reclaim that could
    /// not get under (only unwritten batches left), so a burst does not sort the members at
    /// every write.
    reclaim_at: Cell<usize>,
    clock: Cell<u64>,
    members: RefCell<Vec<Weak<Shared>>>,
}

impl CachePool {
    /// A pool of `budget` bytes.
    pub fn new(budget: usize) -> Rc<CachePool> {
        Rc::new(CachePool {
            budget,
            used: Cell::new(0),
            read_ahead: Cell::new(0),
            reclaim_at: Cell::new(budget),
            clock: Cell::new(0),
            members: RefCell::new(Vec::new()),
        })
    }

    /// Bytes the member caches and read-aheads hold now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Reserves `bytes` for a read-ahead when the pool has room for them: the read-aheads
    /// stay within their share and everything within the budget.
    pub(crate) fn reserve(self: &Rc<Self>, bytes: usize) -> Option<Reservation> {
        let read_ahead = self.read_ahead.get().checked_add(bytes)?;
        let used = self.used.get().checked_add(bytes)?;
        if read_ahead > self.budget / READ_AHEAD_SHARE || used > self.budget {
            return None;
        }
        self.read_ahead.set(read_ahead);
        self.used.set(used);
        Some(Reservation { pool: self.clone(), bytes })
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Makes `shared`'s cache count against this pool.
    pub(crate) fn join(self: &Rc<Self>, shared: &Rc<Shared>) {
        let mut members = self.members.borrow_mut();
        if members.len() == members.capacity() {
            members.retain(|m| m.strong_count() > 0);
        }
        members.push(Rc::downgrade(shared));
        drop(members);
        shared.cache.borrow_mut().join(self);
    }

    /// Evicts written batches of the least recently used member caches until the sum is at
    /// most 7/8 of the budget (or nothing written is left to evict). A member whose cache
    /// is borrowed right now (the caller's) is skipped.
    pub(crate) fn reclaim(&self) {
        let target = self.budget - self.budget / 8;
        let mut lru: Vec<(u64, Rc<Shared>)> = Vec::new();
        self.members.borrow_mut().retain(|m| {
            let Some(shared) = m.upgrade() else { return false };
            if let Ok(cache) = shared.cache.try_borrow() {
                if cache.bytes > 0 {
                    lru.push((cache.touched.get(), shared.clone()));
                }
            }
            true
        });
        lru.sort_unstable_by_key(|(touched, _)| *touched);
        for (_, shared) in &lru {
            let over = self.used.get().saturating_sub(target);
            if over == 0 {
                break;
            }
            if let Ok(mut cache) = shared.cache.try_borrow_mut() {
                cache.shed(over, shared.written.get());
            }
        }
        drop(lru);
        let used = self.used.get();
        let step = (self.budget / 8).max(1);
        self.reclaim_at.set(if used > target { used + step } else { self.budget });
    }
}

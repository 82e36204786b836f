//! The shard's budget for kept segment files (see `LogConfig::recycle`).
//!
//! Retention keeps the file of a segment it deletes as the partition's next segment: its
//! blocks are written, so nothing is freed (on a filesystem mounted with `discard`, nothing
//! is discarded, which stalls every fdatasync behind it) and the next segment converts no
//! unwritten extents. A kept file is disk space beyond retention until the partition's next
//! roll, so the files kept on a shard share a byte budget ([`RecyclePool`]): retention keeps
//! a file only when it fits. A kept file goes back to the budget when its partition's next
//! segment takes it, and is deleted when it waited longer than [`KEPT_IDLE`] (an idle
//! partition must not pin the budget) or when the disk's free space falls below the
//! broker's headroom ([`RecyclePool::set_space_low`]).

use std::cell::Cell;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::shared::Shared;
use super::StorageError;

/// A kept file not taken by a new segment within this time is deleted at the next retention
/// pass: its partition rolls too rarely for the reuse to matter.
pub(crate) const KEPT_IDLE: Duration = Duration::from_secs(600);

/// One per shard (`Rc`, no locks): logs join it when the shard opens them.
pub struct RecyclePool {
    budget: u64,
    held: Cell<u64>,
    space_low: Cell<bool>,
}

impl RecyclePool {
    /// A pool of `budget` bytes.
    pub fn new(budget: u64) -> Rc<RecyclePool> {
        Rc::new(RecyclePool { budget, held: Cell::new(0), space_low: Cell::new(false) })
    }

    /// Bytes of the files kept on this shard.
    pub fn held_bytes(&self) -> u64 {
        self.held.get()
    }

    /// Whether the disk is below its headroom: no file is kept, and retention deletes the
    /// kept ones (the shard also does at once: `PartitionLog::release_kept_file`).
    pub fn set_space_low(&self, low: bool) {
        self.space_low.set(low);
    }

    pub(crate) fn space_low(&self) -> bool {
        self.space_low.get()
    }

    /// Counts a file of `bytes` against the budget if it fits.
    pub(crate) fn try_take(&self, bytes: u64) -> bool {
        let held = self.held.get().saturating_add(bytes);
        let fits = held <= self.budget && !self.space_low.get();
        if fits {
            self.held.set(held);
        }
        fits
    }

    pub(crate) fn give_back(&self, bytes: u64) {
        self.held.set(self.held.get().saturating_sub(bytes));
    }
}

/// A partition's kept file: its size in KiB (rounded up; what the pool counts once the log
/// joined one) and since when it waits, in seconds of [`clock_s`]. Eight bytes, `Option`
/// included: every partition's state has it, and a broker holds 10,000 partitions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kept {
    kib: u32,
    since_s: NonZeroU32,
}

impl Kept {
    pub(crate) fn now(bytes: u64) -> Kept {
        Kept { kib: u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX), since_s: clock_s() }
    }

    /// The bytes counted against the pool.
    pub(crate) fn bytes(self) -> u64 {
        u64::from(self.kib) * 1024
    }
}

/// Seconds since this process first asked, from 1.
fn clock_s() -> NonZeroU32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_secs().saturating_add(1);
    NonZeroU32::new(u32::try_from(elapsed).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MAX)
}

/// Counts a kept file of `bytes` for `shared` if its pool allows (a log in no pool: always).
pub(crate) fn try_keep(shared: &Shared, bytes: u64) -> bool {
    let kept = Kept::now(bytes);
    let fits = shared.recycle_pool.get().is_none_or(|pool| pool.try_take(kept.bytes()));
    if fits {
        shared.kept.set(Some(kept));
    }
    fits
}

/// The kept file is gone (a new segment took it, or it was deleted): its bytes go back.
pub(crate) fn forget_kept(shared: &Shared) {
    if let (Some(kept), Some(pool)) = (shared.kept.take(), shared.recycle_pool.get()) {
        pool.give_back(kept.bytes());
    }
}

/// Joins the shard's pool (once; later calls change nothing): a file kept before (found at
/// open) counts against it, or goes at the next retention pass if it does not fit.
pub(crate) fn join(shared: &Shared, pool: &Rc<RecyclePool>) {
    if shared.recycle_pool.set(pool.clone()).is_err() {
        return;
    }
    if let Some(kept) = shared.kept.get() {
        if !pool.try_take(kept.bytes()) {
            shared.kept.set(None);
        }
    }
}

/// Whether the partition's kept file (if there is one on disk) should be deleted now:
/// recycling is off, the disk is below its headroom, it waited longer than [`KEPT_IDLE`],
/// or it is not counted (it did not fit in the pool when the log joined it).
pub(crate) fn kept_file_expired(shared: &Shared) -> bool {
    let low = shared.recycle_pool.get().is_some_and(|pool| pool.space_low());
    let waited = |kept: Kept| u64::from(clock_s().get() - kept.since_s.get());
    let idle = shared.kept.get().is_none_or(|kept| waited(kept) > KEPT_IDLE.as_secs());
    !shared.config.borrow().recycle || low || idle
}

/// Deletes the partition's kept file, if any (off the shard's thread), and gives its bytes
/// back to the pool.
pub(crate) async fn release(shared: &Shared) -> Result<(), StorageError> {
    let path = super::segment::recycled_path(&shared.dir);
    super::retention::remove_paths(vec![path]).await?;
    forget_kept(shared);
    Ok(())
}

//! Test-only fault injection into the writer's I/O (compiled only with `cfg(test)`, so the
//! production path carries no hook): seeded failures of writes (EIO or ENOSPC), short writes
//! (a prefix of the buffer reaches the file, then the write fails), failed fdatasyncs that may
//! also lose unsynced data (a byte written since the last good sync is flipped, as a device
//! that dropped the write), and ENOSPC from preallocation. Rates are per mille.

use std::cell::Cell;

/// How often each fault happens, per mille of the calls concerned.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FaultRates {
    /// A write fails before anything reaches the file (EIO or ENOSPC).
    pub(crate) write_fail: u32,
    /// A write stores only a block-aligned prefix, then fails.
    pub(crate) short_write: u32,
    /// An fdatasync fails.
    pub(crate) sync_fail: u32,
    /// When an fdatasync fails, the data written since the last good one is damaged.
    pub(crate) lose_unsynced: u32,
    /// A preallocation fails with ENOSPC.
    pub(crate) grow_enospc: u32,
}

/// What the writer must do instead of a write.
pub(crate) enum WriteFault {
    /// Fail without writing.
    Fail(std::io::Error),
    /// Write only this many leading bytes (block aligned, less than the buffer), then fail.
    Short(usize),
}

/// The fault plan of one log (see the module docs).
#[derive(Default)]
pub(crate) struct Faults {
    rng: Cell<u64>,
    rates: Cell<FaultRates>,
    fail_next_write: Cell<bool>,
    /// While set, every fdatasync waits before it starts (a slow disk): tests see data that
    /// is written but not yet durable.
    pub(crate) hold_syncs: Cell<bool>,
    /// While set, every write waits before it starts: tests see data that is appended but
    /// not yet written.
    pub(crate) hold_writes: Cell<bool>,
    /// Faults injected so far.
    pub(crate) injected: Cell<u64>,
    /// fdatasyncs started so far (held or not).
    pub(crate) syncs_started: Cell<u64>,
}

impl Faults {
    /// Starts injecting at `rates`, drawing from `seed`.
    pub(crate) fn set(&self, seed: u64, rates: FaultRates) {
        self.rng.set(seed);
        self.rates.set(rates);
    }

    /// Stops injecting (the one-shot failure included).
    pub(crate) fn clear(&self) {
        self.rates.set(FaultRates::default());
        self.fail_next_write.set(false);
    }

    /// The next write fails with EIO.
    pub(crate) fn fail_next_write(&self) {
        self.fail_next_write.set(true);
    }

    fn next(&self) -> u64 {
        // splitmix64
        let state = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn hit(&self, per_mille: u32) -> bool {
        let hit = per_mille > 0 && self.next() % 1000 < u64::from(per_mille);
        if hit {
            self.injected.set(self.injected.get() + 1);
        }
        hit
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// The fault for a write of `len` bytes, if any.
    pub(crate) fn on_write(&self, len: usize) -> Option<WriteFault> {
        if self.fail_next_write.take() {
            return Some(WriteFault::Fail(std::io::Error::other("injected write failure")));
        }
        let rates = self.rates.get();
        if self.hit(rates.write_fail) {
            let errno = if self.next().is_multiple_of(2) { libc::ENOSPC } else { libc::EIO };
            return Some(WriteFault::Fail(std::io::Error::from_raw_os_error(errno)));
        }
        let blocks = len as u64 / super::BLOCK_BYTES;
        if blocks > 1 && self.hit(rates.short_write) {
            let kept = self.below(blocks - 1) + 1;
            return Some(WriteFault::Short((kept * super::BLOCK_BYTES) as usize));
        }
        None
    }

    /// Counts an fdatasync, then waits while [`Faults::hold_syncs`] is set.
    pub(crate) async fn held_sync(&self) {
        self.syncs_started.set(self.syncs_started.get() + 1);
        held(&self.hold_syncs).await;
    }

    /// Waits while [`Faults::hold_writes`] is set.
    pub(crate) async fn held_write(&self) {
        held(&self.hold_writes).await;
    }

    /// For an fdatasync: `Some(lose)` to fail it, `lose` saying whether to damage the data
    /// written since the last good one.
    pub(crate) fn on_sync(&self) -> Option<bool> {
        let rates = self.rates.get();
        if !self.hit(rates.sync_fail) {
            return None;
        }
        Some(self.next() % 1000 < u64::from(rates.lose_unsynced))
    }

    /// Whether a preallocation fails with ENOSPC.
    pub(crate) fn on_grow(&self) -> Option<std::io::Error> {
        let hit = self.hit(self.rates.get().grow_enospc);
        hit.then(|| std::io::Error::from_raw_os_error(libc::ENOSPC))
    }
}

/// Waits while `flag` is set (polled: test-only, a stand-in for a slow device, not a
/// synchronisation).
async fn held(flag: &Cell<bool>) {
    while flag.get() {
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

//! Adaptive preallocation of the active segment.
//!
//! `fallocate` reserves real blocks, so a fixed 64 MiB extent per partition fills disks with
//! idle partitions. Instead each log grows its active segment by an extent that follows its
//! write rate: a new log reserves nothing until its first write, the first extent is
//! `prealloc_min_bytes`, and each growth doubles the extent when the previous one was used
//! within [`FAST_GROWTH`], or halves it when that took longer than [`SLOW_GROWTH`], within
//! `[prealloc_min_bytes, prealloc_bytes]`. A busy partition reaches the maximum after a few
//! growths, an idle one stays at the minimum.
//!
//! The writer keeps the fast path's property (a DMA write never grows the file, see the
//! platform notes): it grows the file with `pre_allocate(size, false)` before writing past
//! it, and tracks the logical end itself. A growth starts in the background once less than
//! half an extent is left ahead of the data ([`Prealloc::want_ahead`]), so a writer at a
//! steady rate never waits for one; the writer waits only when a write would pass the
//! allocated size, and settles any growth before it truncates or rolls the file.

use std::time::{Duration, Instant};

/// A growth that used its extent faster than this doubles the next one.
pub(crate) const FAST_GROWTH: Duration = Duration::from_secs(1);
/// A growth that took longer than this to use halves the next one.
pub(crate) const SLOW_GROWTH: Duration = Duration::from_secs(60);

/// The adaptive extent of one log (kept across rolls: it measures the partition's rate).
#[derive(Debug, Clone)]
pub(crate) struct Prealloc {
    extent: u64,
    grown_at: Option<Instant>,
}

impl Prealloc {
    /// Starts at the minimum extent.
    pub(crate) fn new(min_bytes: u64) -> Prealloc {
        Prealloc { extent: min_bytes, grown_at: None }
    }

    /// The current extent, clamped to `[min, max]`.
    pub(crate) fn extent(&self, min: u64, max: u64) -> u64 {
        self.extent.clamp(min, max.max(min))
    }

    /// Called when a growth starts: adapts the extent to how long the last one lasted and
    /// returns the extent to grow by.
    pub(crate) fn next_extent(&mut self, min: u64, max: u64, now: Instant) -> u64 {
        let extent = self.extent(min, max);
        let next = match self.grown_at.map(|at| now.saturating_duration_since(at)) {
            Some(took) if took < FAST_GROWTH => extent.saturating_mul(2),
            Some(took) if took > SLOW_GROWTH => extent / 2,
            _ => extent,
        };
        self.extent = super::segment::align_up(next).clamp(min, max.max(min));
        self.grown_at = Some(now);
        self.extent
    }

    /// Whether a background growth should start: less than half an extent is left between
    /// `end` (the data written) and `allocated`, and the segment may still grow (`cap`).
    pub(crate) fn want_ahead(
        &self,
        end: u64,
        allocated: u64,
        cap: u64,
        min: u64,
        max: u64,
    ) -> bool {
        allocated < cap && end + self.extent(min, max) / 2 > allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 64 << 10;
    const MAX: u64 = 64 << 20;

    #[test]
    fn a_busy_log_doubles_up_to_the_maximum_and_an_idle_one_shrinks() {
        let mut p = Prealloc::new(MIN);
        let start = Instant::now();
        assert_eq!(p.next_extent(MIN, MAX, start), MIN, "the first growth is the minimum");
        let mut now = start;
        let mut extents = Vec::new();
        for _ in 0..12 {
            now += Duration::from_millis(10);
            extents.push(p.next_extent(MIN, MAX, now));
        }
        assert_eq!(extents[0], 2 * MIN);
        assert_eq!(*extents.last().unwrap(), MAX, "capped at the maximum: {extents:?}");
        now += Duration::from_secs(5);
        assert_eq!(p.next_extent(MIN, MAX, now), MAX, "a moderate rate keeps the extent");
        now += SLOW_GROWTH * 2;
        assert_eq!(p.next_extent(MIN, MAX, now), MAX / 2, "a slow one halves it");
        for _ in 0..20 {
            now += SLOW_GROWTH * 2;
            p.next_extent(MIN, MAX, now);
        }
        assert_eq!(p.extent(MIN, MAX), MIN, "never below the minimum");
    }

    #[test]
    fn growth_starts_when_less_than_half_an_extent_is_left() {
        let p = Prealloc::new(MIN);
        assert!(p.want_ahead(0, 0, MAX, MIN, MAX));
        assert!(!p.want_ahead(0, MIN, MAX, MIN, MAX));
        assert!(p.want_ahead(MIN / 2 + 1, MIN, MAX, MIN, MAX));
        assert!(!p.want_ahead(MAX - 1, MAX, MAX, MIN, MAX), "never past the segment's cap");
    }
}

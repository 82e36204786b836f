//! The Java client's default partitioning: `toPositive(murmur2(key)) % partitions` for keyed
//! records (from [`crate::record_batch::partition`]), and a sticky partition for null keys
//! that moves on when its batch is closed.

pub use crate::record_batch::partition::{murmur2, partition_for_key, to_positive};

/// A small, fast, seedable PRNG (SplitMix64); not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next uniformly distributed `u64`.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Sticky partition choice for null-keyed records (Java's sticky partitioner): all null-keyed
/// records go to one partition until its batch is closed, then a different random partition.
#[derive(Debug)]
pub struct Sticky {
    current: i32,
    partitions: i32,
}

impl Sticky {
    /// Starts on a random partition.
    pub fn new(partitions: i32, rng: &mut Rng) -> Self {
        assert!(partitions > 0);
        let current = (rng.next_u64() % partitions as u64) as i32;
        Sticky { current, partitions }
    }

    /// The partition for the next null-keyed record.
    #[inline]
    pub fn current(&self) -> i32 {
        self.current
    }

    /// Called when the batch of `closed` partition closes: moves on if it was the sticky one.
    pub fn on_batch_closed(&mut self, closed: i32, rng: &mut Rng) {
        if closed != self.current || self.partitions == 1 {
            return;
        }
        let step = 1 + (rng.next_u64() % (self.partitions as u64 - 1)) as i32;
        self.current = (self.current + step) % self.partitions;
        assert!(self.current != closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_moves_only_when_its_batch_closes() {
        let mut rng = Rng::new(7);
        let mut sticky = Sticky::new(4, &mut rng);
        let first = sticky.current();
        sticky.on_batch_closed((first + 1) % 4, &mut rng);
        assert_eq!(sticky.current(), first);
        sticky.on_batch_closed(first, &mut rng);
        assert_ne!(sticky.current(), first);
        let mut single = Sticky::new(1, &mut rng);
        single.on_batch_closed(0, &mut rng);
        assert_eq!(single.current(), 0);
    }
}

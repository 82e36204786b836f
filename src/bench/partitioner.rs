//! The Java client's default partitioning: `toPositive(murmur2(key)) % partitions` for keyed
//! records, and a sticky partition for null keys that moves on when its batch is closed.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`).
#[inline]
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// Partition of a keyed record, as the Java client computes it.
#[inline]
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    to_positive(murmur2(key)) % partitions
}

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

    /// Reference values from Apache Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_java() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{:?}", std::str::from_utf8(key));
        }
    }

    #[test]
    fn keyed_partition_is_positive_modulo() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 16 = 12.
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 16), 12);
        for n in 1..50 {
            let p = partition_for_key(format!("key-{n}").as_bytes(), 7);
            assert!((0..7).contains(&p));
        }
    }

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

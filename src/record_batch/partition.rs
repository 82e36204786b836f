//! The Java client's partitioning of keyed records: `toPositive(murmur2(key)) % partitions`.
//!
//! Pure functions shared by every client in the crate (`bench`, `client`), so that records
//! with the same key land where the Java client would put them.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let [a, b, c, d] = *chunk else { continue };
        let mut k = u32::from_le_bytes([a, b, c, d]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match *chunks.remainder() {
        [a, b, c] => {
            h = (h ^ u32::from(c) << 16 ^ u32::from(b) << 8 ^ u32::from(a)).wrapping_mul(M)
        }
        [a, b] => h = (h ^ u32::from(b) << 8 ^ u32::from(a)).wrapping_mul(M),
        [a] => h = (h ^ u32::from(a)).wrapping_mul(M),
        _ => {}
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

/// Partition of a keyed record among `partitions` (at least 1), as the Java client computes it.
#[inline]
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    to_positive(murmur2(key)) % partitions.max(1)
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
}

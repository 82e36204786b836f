//! Entry points for the criterion benches (`benches/fetch.rs`) into storage internals. Not an
//! API: hidden from the docs, and nothing in the broker calls it.
#![allow(clippy::expect_used)] // a bench set up wrong should stop, not measure nothing

use super::index::{SegmentIndex, OFFSET_ENTRY_BYTES};

/// A segment's offset index, to time [`IndexLookup::position_for`] (the lookup every fetch
/// from disk starts with).
pub struct IndexLookup {
    index: SegmentIndex,
}

impl IndexLookup {
    /// An index of `entries` entries over a segment based at `base_offset`: entry `i` maps
    /// offset `base_offset + i * offsets_per_entry` to position `i * bytes_per_entry`.
    pub fn new(
        base_offset: i64,
        entries: u32,
        offsets_per_entry: u32,
        bytes_per_entry: u32,
    ) -> Self {
        let mut offsets = Vec::with_capacity(entries as usize * OFFSET_ENTRY_BYTES);
        for i in 0..entries {
            offsets.extend_from_slice(&(i * offsets_per_entry).to_be_bytes());
            offsets.extend_from_slice(&(i * bytes_per_entry).to_be_bytes());
        }
        // A sealed segment's one time entry (decode wants one whenever there are offsets).
        let mut times = 0i64.to_be_bytes().to_vec();
        times.extend_from_slice(&(entries * offsets_per_entry).to_be_bytes());
        let segment_bytes = u64::from(entries) * u64::from(bytes_per_entry) + 1;
        let index = SegmentIndex::decode(base_offset, &offsets, &times, segment_bytes);
        IndexLookup { index: index.expect("a valid offset index") }
    }

    /// File position to scan from for `offset`.
    pub fn position_for(&self, offset: i64) -> u64 {
        self.index.position_for(offset)
    }
}

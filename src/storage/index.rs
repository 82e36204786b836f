//! Sparse offset index and time index of one segment, kept in memory.
//!
//! Offset index entry: (offset - base u32, file position u32), one every
//! `index_interval_bytes`; the first batch always has one. Time index entry (T, offset - base
//! u32): every record of the segment below that offset has a timestamp ≤ T; entries are added
//! with the offset entries when the running maximum grew, and sealing adds a final entry for
//! the whole segment. Files use Kafka's entry layouts: 8 and 12 bytes, big-endian.

use crate::record_batch::BatchHeader;

/// Bytes of one `.index` entry.
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

/// Indexes of one segment. Entries are strictly increasing in offset and position, and
/// non-decreasing in timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    base_offset: i64,
    offsets: Vec<(u32, u32)>,
    times: Vec<(i64, u32)>,
    /// Largest batch `maxTimestamp` seen; `i64::MIN` if none.
    max_timestamp: i64,
    bytes_since_entry: u64,
}

impl SegmentIndex {
    pub(crate) fn new(base_offset: i64) -> SegmentIndex {
        SegmentIndex {
            base_offset,
            offsets: Vec::new(),
            times: Vec::new(),
            max_timestamp: i64::MIN,
            bytes_since_entry: 0,
        }
    }

    fn relative(&self, offset: i64) -> u32 {
        let relative = offset - self.base_offset;
        assert!(relative >= 0);
        u32::try_from(relative).unwrap_or(u32::MAX)
    }

    /// Records a batch written at `position` (batches come in offset order).
    pub(crate) fn on_batch(&mut self, header: &BatchHeader, position: u64, interval: u32) {
        let interval = u64::from(interval.max(1));
        if self.offsets.is_empty() || self.bytes_since_entry >= interval {
            let relative = self.relative(header.base_offset);
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            if let Some(&(last_relative, last_position)) = self.offsets.last() {
                assert!(relative > last_relative);
                assert!(position > last_position);
            }
            self.offsets.push((relative, position));
            let grew = self.times.last().is_none_or(|&(t, _)| self.max_timestamp > t);
            if self.max_timestamp != i64::MIN && grew {
                self.times.push((self.max_timestamp, relative));
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_bytes() as u64;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
    }

    /// Adds the final time entry covering the segment up to `next_offset` (on roll).
    pub(crate) fn seal(&mut self, next_offset: i64) {
        if self.max_timestamp == i64::MIN {
            return;
        }
        let relative = self.relative(next_offset);
        let last = self.times.last().copied();
        if last.is_some_and(|(t, r)| t == self.max_timestamp || r >= relative) {
            return;
        }
        self.times.push((self.max_timestamp, relative));
    }

    /// Largest record timestamp in the segment, `i64::MIN` if empty.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// File position of the last indexed batch starting at or before `offset`: scanning from
    /// there reaches the batch containing `offset`.
    pub(crate) fn position_for(&self, offset: i64) -> u64 {
        let relative = offset.saturating_sub(self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let after = self.offsets.partition_point(|&(r, _)| r <= relative);
        match after.checked_sub(1).and_then(|i| self.offsets.get(i)) {
            Some(&(_, position)) => u64::from(position),
            None => 0,
        }
    }

    /// Offset to start scanning from for the first record with timestamp ≥ `timestamp_ms`, or
    /// `None` if no record of the segment can have one.
    pub(crate) fn time_start(&self, timestamp_ms: i64) -> Option<i64> {
        if self.max_timestamp < timestamp_ms {
            return None;
        }
        let after = self.times.partition_point(|&(t, _)| t < timestamp_ms);
        let start = match after.checked_sub(1).and_then(|i| self.times.get(i)) {
            Some(&(_, relative)) => self.base_offset + i64::from(relative),
            None => self.base_offset,
        };
        Some(start)
    }

    /// `.index` file contents.
    pub(crate) fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for &(relative, position) in &self.offsets {
            out.extend_from_slice(&relative.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    /// `.timeindex` file contents.
    pub(crate) fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for &(timestamp, relative) in &self.times {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&relative.to_be_bytes());
        }
        out
    }

    /// Loads a sealed segment's indexes, or `None` if they are not valid for a segment of
    /// `segment_bytes` (then the caller rebuilds them by scanning).
    pub(crate) fn decode(
        base_offset: i64,
        offsets: &[u8],
        times: &[u8],
        segment_bytes: u64,
    ) -> Option<SegmentIndex> {
        let mut index = SegmentIndex::new(base_offset);
        if !offsets.len().is_multiple_of(OFFSET_ENTRY_BYTES)
            || !times.len().is_multiple_of(TIME_ENTRY_BYTES)
        {
            return None;
        }
        for entry in offsets.chunks_exact(OFFSET_ENTRY_BYTES) {
            let relative = u32::from_be_bytes(entry.get(0..4)?.try_into().ok()?);
            let position = u32::from_be_bytes(entry.get(4..8)?.try_into().ok()?);
            let ordered = index
                .offsets
                .last()
                .map_or(position == 0 && relative == 0, |l| relative > l.0 && position > l.1);
            if !ordered || u64::from(position) >= segment_bytes {
                return None;
            }
            index.offsets.push((relative, position));
        }
        for entry in times.chunks_exact(TIME_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(entry.get(0..8)?.try_into().ok()?);
            let relative = u32::from_be_bytes(entry.get(8..12)?.try_into().ok()?);
            let ordered = index.times.last().is_none_or(|l| timestamp >= l.0 && relative > l.1);
            if !ordered {
                return None;
            }
            index.times.push((timestamp, relative));
        }
        let empty = index.offsets.is_empty();
        if empty != (segment_bytes == 0) || empty != index.times.is_empty() {
            return None;
        }
        index.max_timestamp = index.times.last().map_or(i64::MIN, |&(t, _)| t);
        Some(index)
    }
}

//! Tail cache: the most recent batches, as appended (offset-assigned `Bytes`).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::header_of;

struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
}

/// Recent batches in increasing offset order (contiguous, except where a follower copied a
/// leader's compacted batches). Bounded by a byte budget, except that batches
/// not yet written to disk are never evicted (they are the only copy).
pub(crate) struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    capacity: usize,
}

impl TailCache {
    pub(crate) fn new(capacity: usize) -> TailCache {
        TailCache { batches: VecDeque::new(), bytes: 0, capacity }
    }

    /// Adds the next batch (its base offset is past the previous batch's last offset).
    /// Batches whose header does not parse are not cached (cannot happen after `validate`).
    pub(crate) fn push(&mut self, bytes: Bytes) {
        let Some(header) = header_of(&bytes) else {
            return;
        };
        if let Some(back) = self.batches.back() {
            assert!(back.last_offset < header.base_offset);
        }
        self.bytes += bytes.len();
        self.batches.push_back(CachedBatch {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            bytes,
        });
    }

    /// Evicts the oldest batches while above `capacity`, keeping any batch at or above
    /// `written_below` (not yet on disk).
    pub(crate) fn evict(&mut self, capacity: usize, written_below: i64) {
        self.capacity = capacity;
        while self.bytes > self.capacity {
            match self.batches.front() {
                Some(front) if front.last_offset < written_below => {
                    self.bytes -= front.bytes.len();
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Forgets every batch below `offset` (all written: they are in closed segments), so
    /// reads of a compacted range go to the rewritten segments.
    pub(crate) fn drop_below(&mut self, offset: i64) {
        while let Some(front) = self.batches.front() {
            if front.last_offset >= offset {
                break;
            }
            self.bytes -= front.bytes.len();
            self.batches.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.batches.clear();
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

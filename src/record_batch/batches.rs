//! Iterating over a buffer of concatenated batches.

use std::ops::Range;

use super::{BatchError, BatchHeader};

/// Iterator over concatenated batches in a buffer, yielding each header and its byte range.
///
/// Checks only framing (header parse and that the declared length fits the buffer); it does
/// not check CRCs, use [`super::validate`] on each range for that. After the first error (for
/// example `Truncated` for a partial trailing batch) the iterator is exhausted.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Batches<'a> {
    /// Iterates over the batches of `buf`, starting at byte 0.
    pub fn new(buf: &'a [u8]) -> Batches<'a> {
        Batches { buf, pos: 0, failed: false }
    }

    /// Byte position of the next batch (the end of the last one yielded).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn next_batch(&mut self) -> Result<(BatchHeader, Range<usize>), BatchError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let header = BatchHeader::parse(rest)?;
        let total = header.total_bytes();
        if total > rest.len() {
            return Err(BatchError::Truncated { needed: total, available: rest.len() });
        }
        let range = self.pos..self.pos + total;
        self.pos = range.end;
        Ok((header, range))
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_batch();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Length of the longest run of whole batches at the start of `buf` within `budget` bytes;
/// with `at_least_one`, the first batch counts even when it alone is larger (KIP-74: a fetch's
/// first partition with data makes progress past a batch larger than its limits).
pub fn whole_batches_within(buf: &[u8], budget: usize, at_least_one: bool) -> usize {
    let mut taken = 0usize;
    for item in Batches::new(buf) {
        let Ok((_, range)) = item else { break };
        if range.end > budget && !(at_least_one && taken == 0) {
            break;
        }
        taken = range.end;
    }
    taken
}

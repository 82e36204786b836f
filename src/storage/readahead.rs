//! Catch-up reads (issue 20, target 3). A consumer behind the tail asks, fetch after fetch,
//! for the batch right after the last one it got. After serving a read from disk the log
//! remembers where that next batch is (segment, file position, offset: the *next read*), so
//! the next read starts there instead of walking batch headers from an index entry (one
//! read instead of two), and while the segment holds more readable data it starts reading
//! that next chunk at once (*read-ahead*): the disk works while the response is written and
//! the consumer asks again.
//!
//! Bounds: one next read per partition, with at most one read-ahead of at most
//! [`READ_AHEAD_BYTES_MAX`] (and never more than the read it follows). A read-ahead starts
//! only when the shard's [`CachePool`](super::CachePool) has room for it under its budget
//! (`tail_cache_max_bytes` / shards): its bytes count there beside the tail caches until it
//! is used or dropped, and it never makes a tail cache give batches back. A log outside a
//! pool never reads ahead.
//!
//! Staleness: a next read is used only for the exact segment (`Rc`) and offset it was made
//! for, and only while the log's read epoch is the one it was made in. Every change that
//! can make known positions or read bytes stale (truncation and reset, a reload after an
//! I/O failure, a compaction swap, retention, close) calls [`Shared::forget_reads`], which
//! bumps the epoch and drops the next read (cancelling a read-ahead in flight); a read that
//! began before the bump remembers nothing, and a read-ahead awaited across one is not used.

use std::rc::Rc;

use futures::stream::{FuturesOrdered, StreamExt};

use super::cache::Reservation;
use super::readbuf::{self, ReadBuf};
use super::segment::{align_down, align_up, Segment};
use super::shared::Shared;
use super::{StorageError, BLOCK_BYTES, WRITE_BYTES_MAX};
use crate::record_batch::BatchHeader;

/// Largest read-ahead of one partition: the largest read (Redpanda's equivalent is
/// `storage_read_buffer_size` × `storage_read_readahead_count`). It is issued, as every read,
/// in [`READ_PIECE_BYTES`] pieces all in flight at once.
pub(crate) const READ_AHEAD_BYTES_MAX: u64 = WRITE_BYTES_MAX;

/// Where the batch after the last one read from disk starts, and maybe its bytes being read.
pub(crate) struct NextRead {
    segment: Rc<Segment>,
    position: u64,
    /// The offset a consumer continuing from the last read asks for: the batch at `position`
    /// is the first of the segment with `last_offset() >= offset`.
    offset: i64,
    epoch: u64,
    /// Bytes of the batch at `position`, when a read that had to fit its budget found it too
    /// large: later such reads answer nothing without touching the disk.
    batch_bytes: Option<u64>,
    ahead: Option<ReadAhead>,
}

impl NextRead {
    /// Whether a read-ahead was started for it.
    #[cfg(test)]
    pub(crate) fn reads_ahead(&self) -> bool {
        self.ahead.is_some()
    }

    /// Bytes of the batch at its position, when known too large for an earlier read.
    #[cfg(test)]
    pub(crate) fn batch_bytes(&self) -> Option<u64> {
        self.batch_bytes
    }
}

struct ReadAhead {
    bytes: AheadBytes,
    /// Given back to the pool when the read-ahead is used or dropped.
    reservation: Reservation,
}

enum AheadBytes {
    Reading(glommio::Task<Result<ReadBuf, StorageError>>),
    /// Read, and kept for a later read: the one that awaited it could not use it.
    Read(ReadBuf),
}

/// A next read taken for use: the batch for the offset starts at `position`; `bytes` are
/// the read-ahead's from there, if one was started and succeeded.
pub(crate) struct Known {
    pub(crate) position: u64,
    pub(crate) bytes: Option<ReadBuf>,
}

/// What the log's next read says about a read of `offset`.
pub(crate) enum Next {
    /// Nothing (another offset or segment, or made stale): locate the batch from the index.
    Unknown,
    /// The batch there is larger than the read may take (see [`take`]'s `fit`).
    TooLarge,
    Known(Known),
}

/// The next read made for `offset` in `segment`, if there is one and it is still valid (it
/// is taken: a read uses it once). Waits for its read-ahead if one is in flight. With `fit`
/// (a read that may return only whole batches within that many bytes) a next read whose
/// first batch is larger is left in place, read-ahead included, for a later read that may
/// take it, and the answer is [`Next::TooLarge`].
pub(crate) async fn take(
    shared: &Shared,
    segment: &Rc<Segment>,
    offset: i64,
    fit: Option<u64>,
) -> Next {
    let epoch = shared.read_epoch.get();
    let wanted =
        |n: &NextRead| Rc::ptr_eq(&n.segment, segment) && n.offset == offset && n.epoch == epoch;
    let too_large = |n: &NextRead| fit.is_some_and(|fit| n.batch_bytes.is_some_and(|b| b > fit));
    match shared.next_read.borrow().as_ref() {
        Some(next) if wanted(next) && too_large(next) => return Next::TooLarge,
        Some(next) if wanted(next) => {}
        _ => return Next::Unknown,
    }
    let Some(mut next) = shared.next_read.borrow_mut().take() else {
        return Next::Unknown;
    };
    let (bytes, reservation) = match next.ahead.take() {
        Some(ReadAhead { bytes: AheadBytes::Reading(task), reservation }) => {
            (task.await.ok(), Some(reservation))
        }
        Some(ReadAhead { bytes: AheadBytes::Read(bytes), reservation }) => {
            (Some(bytes), Some(reservation))
        }
        None => (None, None),
    };
    // A truncation while the read-ahead ran may have cut or rewritten what it read.
    if shared.read_epoch.get() != epoch {
        return Next::Unknown;
    }
    let first = bytes.as_deref().and_then(|b| BatchHeader::parse(b).ok());
    let batch_bytes = first.map(|h| h.total_bytes() as u64);
    if let Some(batch_bytes) = batch_bytes.filter(|&b| fit.is_some_and(|fit| b > fit)) {
        // Put it back, unless another read of the log remembered its own meanwhile.
        next.batch_bytes = Some(batch_bytes);
        if let (Some(bytes), Some(reservation)) = (bytes, reservation) {
            next.ahead = Some(ReadAhead { bytes: AheadBytes::Read(bytes), reservation });
        }
        let mut slot = shared.next_read.borrow_mut();
        if slot.is_none() && !shared.closed.get() {
            *slot = Some(next);
        }
        return Next::TooLarge;
    }
    Next::Known(Known { position: next.position, bytes })
}

/// What a read from disk learnt: the batch after the ones it served starts at `position` of
/// `segment` and is the one a consumer asks `offset` for; `ahead_bytes` is how much to read
/// ahead from there (the size of the read just served). `end` is what the reader may read
/// up to (the high watermark, or the written end for replicas). `epoch` is the read epoch
/// when the read began.
pub(crate) struct Learnt<'a> {
    pub(crate) segment: &'a Rc<Segment>,
    pub(crate) position: u64,
    pub(crate) offset: i64,
    pub(crate) ahead_bytes: u64,
    pub(crate) end: i64,
    pub(crate) epoch: u64,
}

/// Remembers what a read learnt as the log's next read, and starts its read-ahead when the
/// segment has readable data there that the tail cache does not hold and the pool has room.
pub(crate) fn remember(shared: &Shared, learnt: Learnt<'_>) {
    let epoch = shared.read_epoch.get();
    if learnt.epoch != epoch || shared.closed.get() {
        return;
    }
    // Drop the previous next read (and give back its reservation) before reserving again.
    let previous = shared.next_read.borrow_mut().take();
    drop(previous);
    let Learnt { segment, position, offset, ahead_bytes, end, .. } = learnt;
    let available = segment.size.get().saturating_sub(position);
    let len = ahead_bytes.min(available).min(READ_AHEAD_BYTES_MAX);
    let cached = shared.cache.borrow().first_offset().is_some_and(|first| first <= offset);
    let ahead = if len > 0 && offset < end && !cached {
        start(shared, segment, position, len)
    } else {
        None
    };
    let next =
        NextRead { segment: segment.clone(), position, offset, epoch, batch_bytes: None, ahead };
    *shared.next_read.borrow_mut() = Some(next);
}

/// Remembers that the batch a read of `offset` found at `position` of `segment` is
/// `batch_bytes` long, more than that read could take: a later read that must fit a budget
/// answers from this alone, and one that may take it reads it from `position`. A read-ahead
/// of the log made for the same place is kept.
pub(crate) fn remember_too_large(
    shared: &Shared,
    segment: &Rc<Segment>,
    position: u64,
    offset: i64,
    batch_bytes: u64,
    epoch: u64,
) {
    if epoch != shared.read_epoch.get() || shared.closed.get() {
        return;
    }
    let mut slot = shared.next_read.borrow_mut();
    if let Some(next) = slot.as_mut() {
        if Rc::ptr_eq(&next.segment, segment) && next.position == position {
            next.batch_bytes = Some(batch_bytes);
            return;
        }
    }
    let segment = segment.clone();
    let batch_bytes = Some(batch_bytes);
    *slot = Some(NextRead { segment, position, offset, epoch, batch_bytes, ahead: None });
}

fn start(shared: &Shared, segment: &Rc<Segment>, position: u64, len: u64) -> Option<ReadAhead> {
    let pool = shared.cache.borrow().pool()?;
    let reservation = pool.reserve(usize::try_from(len).ok()?)?;
    let segment = segment.clone();
    let task = glommio::spawn_local(async move { read_exact(&segment, position, len).await });
    Some(ReadAhead { bytes: AheadBytes::Reading(task), reservation })
}

/// Size of the pieces a read from disk is issued in, all at once: each fits a block of
/// glommio's registered `io_memory` arena (a buddy allocator, 10 MiB per executor here), so
/// its DMA buffer is reused memory, not a fresh mapping the kernel faults in and clears for
/// the read (`clear_page` and `unmap_page_range` under `io_read`: 11% of the core in the
/// profile of main, perf/results/2026-12-05-catchup.md), and eight in flight keep the disk as
/// busy as fio's 1 MiB reads at queue depth 8.
pub(crate) const READ_PIECE_BYTES: u64 = 1 << 20;
const _: () = assert!(READ_PIECE_BYTES.is_multiple_of(BLOCK_BYTES));

/// `len` bytes of `segment` from `position` (any alignment), copied out of the DMA buffers
/// into memory of their own (glommio's buffers are `Rc`, not `Send`; records may cross
/// shards), recycled (see `readbuf`). Read in aligned pieces of at most
/// [`READ_PIECE_BYTES`], all in flight at once, each copied and given back as soon as it and
/// those before it landed. An error if fewer bytes are there.
pub(crate) async fn read_exact(
    segment: &Segment,
    position: u64,
    len: u64,
) -> Result<ReadBuf, StorageError> {
    let end = position.saturating_add(len);
    let mut pieces = FuturesOrdered::new();
    let mut at = align_down(position);
    while at < end {
        let piece_end = (at / READ_PIECE_BYTES + 1) * READ_PIECE_BYTES;
        let piece_end = piece_end.min(align_up(end));
        let file = &segment.file;
        let piece_len = usize::try_from(piece_end - at).unwrap_or(usize::MAX);
        pieces.push_back(async move { (at, file.read_at_aligned(at, piece_len).await) });
        at = piece_end;
    }
    let mut out = readbuf::with_capacity(usize::try_from(len).unwrap_or(0));
    while let Some((at, read)) = pieces.next().await {
        let read = read.map_err(|e| StorageError::io("read", &segment.path, e))?;
        let from = usize::try_from(position.saturating_sub(at)).unwrap_or(usize::MAX);
        let to = usize::try_from(end - at).unwrap_or(usize::MAX).min(read.len());
        if let Some(part) = read.get(from..to) {
            out.extend_from_slice(part);
        }
        if out.len() as u64 != (at + to as u64).saturating_sub(position) {
            break;
        }
    }
    if (out.len() as u64) < len {
        return Err(StorageError::Corrupt {
            path: segment.path.clone(),
            position,
            reason: format!("short read: {} of {len} bytes", out.len()),
        });
    }
    Ok(out)
}

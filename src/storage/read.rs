//! Read path: tail cache first, else DMA reads: from where the log's next read says the
//! batch is (and its read-ahead, see `readahead`), or located via the offset index.

use std::rc::Rc;

use bytes::Bytes;

use super::readahead;
use super::readbuf::ReadBuf;
use super::segment::Segment;
use super::shared::Shared;
use super::{ReadBatches, ReadError, StorageError, WRITE_BYTES_MAX};
use crate::record_batch::{self, BatchHeader, Batches, HEADER_BYTES};

/// Bytes read per step while walking batch headers from an index entry.
const LOCATE_WINDOW_BYTES: u64 = 64 << 10;
/// Largest single read of batches (a first batch larger than `max_bytes` is still whole).
const READ_BYTES_MAX: u64 = WRITE_BYTES_MAX;
/// Bytes fetched per step of a timestamp search.
const TIME_SCAN_BYTES: usize = 1 << 20;

/// See [`super::PartitionLog::read`], [`super::PartitionLog::read_replica`] when `replica`
/// (up to the durable end instead of the high watermark), and
/// [`super::PartitionLog::read_within`] when `fit` (no first batch larger than `max_bytes`).
pub(crate) async fn read_until(
    shared: &Rc<Shared>,
    offset: i64,
    max_bytes: usize,
    replica: bool,
    fit: bool,
) -> Result<ReadBatches, ReadError> {
    if shared.closed.get() {
        return Err(StorageError::Closed.into());
    }
    let high_watermark = shared.visible_end();
    let end = if replica { shared.leo.get() } else { high_watermark };
    let log_start_offset = shared.log_start.get();
    let out_of_range = ReadError::OffsetOutOfRange { log_start: log_start_offset, high_watermark };
    if offset < log_start_offset || offset > end {
        return Err(out_of_range);
    }
    let done = |records| ReadBatches { records, high_watermark, log_start_offset };
    if offset == end {
        return Ok(done(Bytes::new()));
    }
    let cached = shared.cache.borrow().read(offset, max_bytes, end);
    if let Some(records) = cached {
        let records = match fit {
            true => records.slice(..record_batch::whole_batches_within(&records, max_bytes, false)),
            false => records,
        };
        return Ok(done(records));
    }
    let mut segment = segment_for(shared, offset).ok_or(out_of_range)?;
    loop {
        let want = Want::new(shared, offset, max_bytes, end, fit);
        if let Some(records) = read_segment(shared, &segment, want).await? {
            return Ok(done(records));
        }
        // Compaction removed every batch at or after `offset` from this segment: the next
        // batch is in a later segment.
        match segment_after(shared, segment.base_offset) {
            Some(next) => segment = next,
            None => return Ok(done(Bytes::new())),
        }
    }
}

fn segment_after(shared: &Shared, base_offset: i64) -> Option<Rc<Segment>> {
    let segments = shared.segments.borrow();
    segments.iter().find(|s| s.base_offset > base_offset).cloned()
}

fn segment_for(shared: &Shared, offset: i64) -> Option<Rc<Segment>> {
    let segments = shared.segments.borrow();
    let after = segments.partition_point(|s| s.base_offset <= offset);
    segments.get(after.checked_sub(1)?).cloned()
}

fn corrupt(segment: &Segment, position: u64, reason: impl ToString) -> StorageError {
    StorageError::Corrupt { path: segment.path.clone(), position, reason: reason.to_string() }
}

/// A read's target: serve batches from the one holding `offset` (or the first after it),
/// `budget` bytes but at least one whole batch unless `fit`, none at or above `end`. `epoch`
/// is the log's read epoch when the read began.
#[derive(Clone, Copy)]
struct Want {
    offset: i64,
    budget: u64,
    end: i64,
    epoch: u64,
    fit: bool,
}

impl Want {
    fn new(shared: &Shared, offset: i64, max_bytes: usize, end: i64, fit: bool) -> Want {
        let budget = (max_bytes as u64).min(READ_BYTES_MAX);
        Want { offset, budget, end, epoch: shared.read_epoch.get(), fit }
    }
}

/// Batches of `segment` from the one containing `offset` (or the first after it), `None`
/// when the segment holds no batch at or after `offset`. A consumer continuing from the last
/// read finds its batch from the log's next read (and usually its bytes read ahead), else
/// the batch is located from the index.
async fn read_segment(
    shared: &Rc<Shared>,
    segment: &Rc<Segment>,
    want: Want,
) -> Result<Option<Bytes>, StorageError> {
    let offset = want.offset;
    let fit = want.fit.then_some(want.budget);
    let known = match readahead::take(shared, segment, offset, fit).await {
        readahead::Next::TooLarge => return Ok(Some(Bytes::new())),
        readahead::Next::Known(known) => Some(known),
        readahead::Next::Unknown => None,
    };
    if let Some(known) = known {
        if known.position >= segment.size.get() {
            // The segment has no batch at or after `offset` (compaction left a gap at its
            // end): the next segment has it.
            return Ok(None);
        }
        let served = serve(shared, segment, known.position, known.bytes, want).await?;
        if let Some(records) = served {
            return Ok(Some(records));
        }
        // Cannot happen while every change of the segment forgets the next read; the index
        // still finds the batch.
        tracing::warn!(path = %segment.path.display(), offset, "next read was stale");
    }
    let from = segment.index.borrow().position_for(offset);
    let Some((position, first)) = locate(segment, from, offset).await? else {
        return Ok(None);
    };
    if first.base_offset >= want.end {
        return Ok(Some(Bytes::new()));
    }
    match serve(shared, segment, position, None, want).await? {
        Some(records) => Ok(Some(records)),
        None => Err(corrupt(segment, position, "located batch is not the one wanted")),
    }
}

/// Serves the read from the batch at `position` (the first with `last_offset() >= offset`),
/// from `ahead` when it holds that whole batch, else from a read of the file, and remembers
/// where the next batch is. `None` if the batch there does not end at or after the offset.
async fn serve(
    shared: &Rc<Shared>,
    segment: &Rc<Segment>,
    position: u64,
    ahead: Option<ReadBuf>,
    want: Want,
) -> Result<Option<Bytes>, StorageError> {
    // A read-ahead serves when it holds the first whole batch and as much as this read may
    // take (it was started for a smaller read, or before the active segment grew, if not).
    let available = segment.size.get().saturating_sub(position);
    let covers = |b: &ReadBuf| {
        let whole = first_batch_bytes(b).is_some_and(|n| n <= b.len());
        whole && b.len() as u64 >= want.budget.min(available)
    };
    let buf = match ahead.filter(covers) {
        Some(buf) => buf,
        None => read_batches(segment, position, want.budget, !want.fit).await?,
    };
    let first = BatchHeader::parse(&buf).map_err(|e| corrupt(segment, position, e))?;
    if first.last_offset() < want.offset {
        return Ok(None);
    }
    let mut taken = 0usize;
    let mut next_offset = want.offset;
    for item in Batches::new(&buf) {
        let Ok((header, range)) = item else { break };
        let over = range.end as u64 > want.budget && (taken > 0 || want.fit);
        if header.base_offset >= want.end || over {
            break;
        }
        taken = range.end;
        next_offset = header.last_offset() + 1;
    }
    if taken == 0 && first.base_offset < want.end {
        let batch_bytes = first.total_bytes() as u64;
        if want.fit && batch_bytes > want.budget {
            let offset = want.offset;
            readahead::remember_too_large(
                shared,
                segment,
                position,
                offset,
                batch_bytes,
                want.epoch,
            );
            return Ok(Some(Bytes::new()));
        }
        return Err(corrupt(segment, position, "first batch does not parse"));
    }
    // The read's own memory becomes the records (`read_exact` copied it out of the DMA
    // buffers), and the read-ahead starts once it is out of the way.
    let mut buf = buf;
    buf.truncate(taken);
    let records = buf.into_bytes();
    let learnt = readahead::Learnt {
        segment,
        position: position + taken as u64,
        offset: next_offset,
        ahead_bytes: want.budget,
        end: want.end,
        epoch: want.epoch,
    };
    readahead::remember(shared, learnt);
    Ok(Some(records))
}

/// Bytes of the batch at the start of `buf`, if its header is there.
fn first_batch_bytes(buf: &[u8]) -> Option<usize> {
    BatchHeader::parse(buf).ok().map(|h| h.total_bytes())
}

/// Reads whole batches from `position` (a batch start): `budget` bytes, or more when the
/// first batch is larger and `whole_first` (KIP-74: at least one whole batch), never past
/// the segment's end.
async fn read_batches(
    segment: &Segment,
    position: u64,
    budget: u64,
    whole_first: bool,
) -> Result<ReadBuf, StorageError> {
    let available = segment.size.get().saturating_sub(position);
    let len = budget.max(HEADER_BYTES as u64).min(available);
    let buf = readahead::read_exact(segment, position, len).await?;
    match first_batch_bytes(&buf).map(|n| n as u64) {
        Some(whole) if whole_first && whole > len && whole <= available => {
            readahead::read_exact(segment, position, whole).await
        }
        _ => Ok(buf),
    }
}

/// Walks batch headers from `position` (an index entry) to the batch containing `offset`, or
/// the first one after it (compacted segments have gaps); `None` past the segment's end.
pub(crate) async fn locate(
    segment: &Segment,
    mut position: u64,
    offset: i64,
) -> Result<Option<(u64, BatchHeader)>, StorageError> {
    loop {
        let end = segment.size.get();
        if position >= end {
            return Ok(None);
        }
        let len = LOCATE_WINDOW_BYTES.min(end - position);
        let window = readahead::read_exact(segment, position, len).await?;
        let mut at = 0usize;
        while let Some(Ok(header)) = window.get(at..).map(BatchHeader::parse) {
            if header.last_offset() >= offset {
                return Ok(Some((position + at as u64, header)));
            }
            at += header.total_bytes();
        }
        if at == 0 {
            return Err(corrupt(segment, position, "batch header does not parse"));
        }
        position += at as u64;
    }
}

/// See [`super::PartitionLog::offset_for_timestamp`].
pub(crate) async fn offset_for_timestamp(
    shared: &Rc<Shared>,
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, ReadError> {
    let segments: Vec<Rc<Segment>> = shared.segments.borrow().clone();
    let start = segments.iter().find_map(|s| s.index.borrow().time_start(timestamp_ms));
    let Some(start) = start else {
        return Ok(None);
    };
    let mut offset = start.max(shared.log_start.get());
    while offset < shared.visible_end() {
        let records = read_until(shared, offset, TIME_SCAN_BYTES, false, false).await?.records;
        if records.is_empty() {
            break;
        }
        for item in Batches::new(&records) {
            let (header, range) = item.map_err(|e| log_corrupt(shared, e))?;
            offset = header.last_offset() + 1;
            let batch = records.get(range).unwrap_or_default();
            let found = record_batch::first_offset_with_timestamp_at_or_after(batch, timestamp_ms);
            if let Some(found) = found.map_err(|e| log_corrupt(shared, e))? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// See [`super::PartitionLog::offset_of_max_timestamp`]: the largest timestamp any segment
/// holds (its index tracks it), then the first record at or after it, which is the first one
/// carrying it.
pub(crate) async fn offset_of_max_timestamp(
    shared: &Rc<Shared>,
) -> Result<Option<(i64, i64)>, ReadError> {
    let max = shared.segments.borrow().iter().map(|s| s.index.borrow().max_timestamp()).max();
    match max {
        Some(max) if max != i64::MIN => offset_for_timestamp(shared, max).await,
        _ => Ok(None),
    }
}

fn log_corrupt(shared: &Shared, error: record_batch::BatchError) -> ReadError {
    ReadError::Storage(StorageError::Corrupt {
        path: shared.dir.clone(),
        position: 0,
        reason: error.to_string(),
    })
}

//! Log compaction (`cleanup.policy=compact`): closed segments keep only the latest record of
//! each key; tombstones (null values) go once their batch is older than `delete.retention.ms`.
//!
//! One pass: (1) read every cleanable segment (closed, newest record older than
//! `min.compaction.lag.ms`, never the active one) and map each key to its latest offset;
//! (2) rewrite each segment that has something to drop into `<base>.log.cleaned`, batch by
//! batch (kept batches verbatim, partly kept ones rebuilt with the same base offset and
//! lastOffsetDelta and a new CRC), then swap it in. Offsets never change; gaps appear.
//! Records with a null key are always kept. Compressed batches are kept whole while any of
//! their records is live. Transactions: only segments wholly below the last stable
//! offset are cleaned (an open transaction may still abort), and records of aborted
//! transactions are removed and never count as a key's latest value (as Kafka's cleaner).
//! The work yields to the executor between batches and runs in the shard's low-priority
//! housekeeping queue, so appends on the shard are not held up.
//!
//! Crash safety: the `.cleaned` file is complete and fdatasync'ed before anything else
//! changes; then the old segment's index files are removed (a crash now leaves the old
//! segment, whose index recovery rebuilds), the `.cleaned` file is renamed over the `.log`
//! (atomic: old or new, never neither), the directory is synced, and new index files are
//! written. Recovery deletes leftover `.cleaned` files. The pass itself holds no lock, so
//! DeleteRecords is never held up by it; the swap takes the log's checkpoint lock and first
//! checks that retention has not removed the segment meanwhile.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use futures::AsyncWriteExt;
use glommio::io::DmaStreamWriterBuilder;

use super::index::SegmentIndex;
use super::retention::{release, remove_paths};
use super::segment::{self, file_path, Segment};
use super::shared::Shared;
use super::{AbortedTxn, CleanupConfig, StorageError};
use crate::record_batch::{self, BatchHeader, Batches, Compacted, RecordKey};

/// Suffix of a segment being rewritten by compaction.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Bytes read from a segment per step.
const CHUNK_BYTES: u64 = 1 << 20;
/// Buffer of the `.cleaned` file writer.
const WRITE_BUFFER_BYTES: usize = 512 << 10;

/// What a compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments rewritten.
    pub segments: usize,
    /// Records removed.
    pub records: u64,
}

/// Runs one compaction pass; see the module docs.
pub(crate) async fn compact(
    shared: &Rc<Shared>,
    now_ms: i64,
) -> Result<CompactionStats, StorageError> {
    let config = shared.config.borrow().cleanup.clone();
    if !config.compact || shared.closing.get() || shared.closed.get() {
        return Ok(CompactionStats::default());
    }
    let candidates = cleanable(shared, &config, now_ms);
    let Some((last, _)) = candidates.last() else {
        return Ok(CompactionStats::default());
    };
    let signature = (last.base_offset, candidates.len());
    if shared.compacted.get() == Some(signature) {
        return Ok(CompactionStats::default());
    }
    if let Some((_, first_dirty)) = candidates.last() {
        // The cache holds batches as appended; compacted ranges must be read from disk.
        shared.cache.borrow_mut().drop_below(*first_dirty);
    }
    let aborted = shared.producers.borrow().aborted_between(0, i64::MAX);
    let latest = latest_offsets(&candidates, &aborted).await?;
    let lag = i64::try_from(config.delete_retention_ms).unwrap_or(i64::MAX);
    let horizon = now_ms.saturating_sub(lag);
    let mut stats = CompactionStats::default();
    let mut tombstones_left = false;
    for (segment, next_base) in candidates {
        if shared.closing.get() || shared.closed.get() {
            return Ok(stats);
        }
        let plan = Plan { latest: &latest, horizon, next_base, aborted: &aborted };
        let outcome = rewrite(shared, segment, &plan).await?;
        tombstones_left |= outcome.tombstones_left;
        if outcome.removed > 0 {
            stats.segments += 1;
            stats.records += outcome.removed;
        }
    }
    shared.compacted.set(if tombstones_left { None } else { Some(signature) });
    Ok(stats)
}

/// The leading closed segments old enough to compact, each with the next segment's base.
fn cleanable(shared: &Shared, config: &CleanupConfig, now_ms: i64) -> Vec<(Rc<Segment>, i64)> {
    let lag = i64::try_from(config.min_compaction_lag_ms).unwrap_or(i64::MAX);
    let newest_allowed = now_ms.saturating_sub(lag);
    let stable = shared.producers.borrow().first_unstable_offset().unwrap_or(i64::MAX);
    let stable = stable.min(shared.visible_end());
    let segments = shared.segments.borrow();
    segments
        .windows(2)
        .map_while(|pair| match pair {
            [segment, next]
                if segment.index.borrow().max_timestamp() <= newest_allowed
                    && next.base_offset <= stable =>
            {
                Some((segment.clone(), next.base_offset))
            }
            _ => None,
        })
        .collect()
}

/// Reads a segment in chunks of whole batches.
struct Chunks {
    segment: Rc<Segment>,
    position: u64,
}

impl Chunks {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        let segment = &self.segment;
        let end = segment.size.get();
        if self.position >= end {
            return Ok(None);
        }
        let mut len = CHUNK_BYTES.min(end - self.position);
        loop {
            let buf = read_at(segment, self.position, len).await?;
            let mut batches = Batches::new(&buf);
            let mut taken = 0;
            let mut needed = None;
            for item in batches.by_ref() {
                match item {
                    Ok((_, range)) => taken = range.end,
                    Err(record_batch::BatchError::Truncated { needed: n, .. }) => needed = Some(n),
                    Err(e) => return Err(corrupt(segment, self.position + taken as u64, e)),
                }
            }
            if taken > 0 {
                self.position += taken as u64;
                return Ok(Some(buf.get(..taken).unwrap_or_default().to_vec()));
            }
            let needed = needed.map_or(len, |n| n as u64);
            if needed <= len || self.position + needed > end {
                return Err(corrupt(segment, self.position, "batch beyond the segment end"));
            }
            len = needed;
        }
    }
}

async fn read_at(segment: &Segment, position: u64, len: u64) -> Result<Vec<u8>, StorageError> {
    let read = segment.file.read_at(position, len as usize).await;
    let read = read.map_err(|e| StorageError::io("read", &segment.path, e))?;
    Ok(read.to_vec())
}

fn corrupt(segment: &Segment, position: u64, reason: impl ToString) -> StorageError {
    StorageError::Corrupt { path: segment.path.clone(), position, reason: reason.to_string() }
}

fn keys_of(segment: &Segment, batch: &[u8]) -> Result<Vec<RecordKey>, StorageError> {
    record_batch::record_keys(batch).map_err(|e| corrupt(segment, 0, e))
}

/// Whether `header`'s batch belongs to one of the `aborted` transactions.
fn in_aborted(header: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    let at = header.base_offset;
    header.is_transactional()
        && !header.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == header.producer_id && a.first_offset <= at && at <= a.last_offset
        })
}

/// Key → offset of its latest record over `candidates` (aborted records do not count).
async fn latest_offsets(
    candidates: &[(Rc<Segment>, i64)],
    aborted: &[AbortedTxn],
) -> Result<HashMap<Vec<u8>, i64>, StorageError> {
    let mut latest = HashMap::new();
    for (segment, _) in candidates {
        let mut chunks = Chunks { segment: segment.clone(), position: 0 };
        while let Some(chunk) = chunks.next().await? {
            for item in Batches::new(&chunk) {
                let (header, range) = item.map_err(|e| corrupt(segment, 0, e))?;
                if in_aborted(&header, aborted) {
                    continue;
                }
                let batch = chunk.get(range).unwrap_or_default();
                for record in keys_of(segment, batch)? {
                    if let Some(key) = record.key {
                        latest.insert(key, record.offset);
                    }
                }
                glommio::executor().yield_if_needed().await;
            }
        }
    }
    Ok(latest)
}

/// What decides which records stay.
struct Plan<'a> {
    latest: &'a HashMap<Vec<u8>, i64>,
    /// Tombstones in batches whose newest timestamp is below this go.
    horizon: i64,
    /// First offset of the following segment.
    next_base: i64,
    /// Aborted transactions: their records go.
    aborted: &'a [AbortedTxn],
}

impl Plan<'_> {
    fn keep(&self, header: &BatchHeader, record: &RecordKey) -> bool {
        if in_aborted(header, self.aborted) {
            return false;
        }
        let Some(key) = &record.key else {
            return true;
        };
        if self.latest.get(key).is_some_and(|&l| l > record.offset) {
            return false;
        }
        !(record.tombstone && header.max_timestamp < self.horizon)
    }
}

struct Rewrite {
    removed: u64,
    tombstones_left: bool,
}

/// Rewrites one segment per `plan` and swaps it in if anything was removed.
async fn rewrite(
    shared: &Rc<Shared>,
    segment: Rc<Segment>,
    plan: &Plan<'_>,
) -> Result<Rewrite, StorageError> {
    let target = cleaned_path(shared, segment.base_offset);
    let file = segment::open_log_file(&target).await?;
    let path = &target;
    let io = |op| move |e: std::io::Error| StorageError::io(op, path, e);
    let glommio_io = |op| move |e: glommio::GlommioError<()>| StorageError::io(op, path, e);
    file.truncate(0).await.map_err(glommio_io("truncate"))?;
    let size = segment.size.get().max(1);
    file.pre_allocate(size, false).await.map_err(glommio_io("fallocate"))?;
    let mut writer = DmaStreamWriterBuilder::new(file)
        .with_buffer_size(WRITE_BUFFER_BYTES)
        .with_write_behind(2)
        .build();
    let interval = shared.config.borrow().index_interval_bytes;
    let mut index = SegmentIndex::new(segment.base_offset);
    let mut outcome = Rewrite { removed: 0, tombstones_left: false };
    let mut written: u64 = 0;
    let mut chunks = Chunks { segment: segment.clone(), position: 0 };
    while let Some(chunk) = chunks.next().await? {
        for item in Batches::new(&chunk) {
            let (header, range) = item.map_err(|e| corrupt(&segment, 0, e))?;
            let batch = chunk.get(range).unwrap_or_default();
            let records = keys_of(&segment, batch)?;
            let keep: Vec<bool> = records.iter().map(|r| plan.keep(&header, r)).collect();
            let kept = keep.iter().zip(&records).filter(|(k, _)| **k);
            outcome.tombstones_left |= kept.clone().any(|(_, r)| r.tombstone);
            outcome.removed += keep.iter().filter(|k| !**k).count() as u64;
            let compacted = record_batch::retain(batch, &records, &keep);
            let bytes = match compacted.map_err(|e| corrupt(&segment, 0, e))? {
                Compacted::Dropped => continue,
                Compacted::Unchanged => batch.to_vec(),
                Compacted::Rebuilt(bytes) => bytes,
            };
            let stored = record_batch::validate_stored(&bytes, usize::MAX);
            let stored = stored.map_err(|e| corrupt(&segment, written, e))?;
            index.on_batch(&stored, written, interval);
            writer.write_all(&bytes).await.map_err(io("write"))?;
            written += bytes.len() as u64;
            glommio::executor().yield_if_needed().await;
        }
    }
    writer.close().await.map_err(io("close"))?;
    drop(chunks);
    if outcome.removed == 0 {
        // A whole segment's blocks: freed (and discarded) off the shard's thread.
        remove_paths(vec![target]).await?;
        return Ok(outcome);
    }
    index.seal(plan.next_base);
    swap(shared, segment, target, written, index).await?;
    Ok(outcome)
}

fn cleaned_path(shared: &Shared, base: i64) -> PathBuf {
    let mut name = file_path(&shared.dir, base, "log").into_os_string();
    name.push(CLEANED_SUFFIX);
    PathBuf::from(name)
}

/// Makes the `.cleaned` file the segment: see the module docs for the order of steps.
async fn swap(
    shared: &Rc<Shared>,
    old: Rc<Segment>,
    cleaned: PathBuf,
    size: u64,
    index: SegmentIndex,
) -> Result<(), StorageError> {
    let dir = shared.dir.clone();
    let base = old.base_offset;
    // Retention (or a log close) may have removed the segment while it was rewritten; the
    // lock keeps the segment list still from this check to the swap.
    let _permit = shared.checkpoint_lock.acquire_permit(1).await;
    let present = shared.segments.borrow().iter().any(|s| Rc::ptr_eq(s, &old));
    if !present || shared.closing.get() || shared.closed.get() {
        // Leave the old segment (or none); a leftover .cleaned file goes at recovery.
        let _ = remove_paths(vec![cleaned]).await;
        return Ok(());
    }
    let file = segment::open_log_file(&cleaned).await?;
    // The stream writer truncates only after a write; an emptied segment is still preallocated.
    file.truncate(size).await.map_err(|e| StorageError::io("truncate", &cleaned, e))?;
    file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", &cleaned, e))?;
    let actual = file.file_size().await.map_err(|e| StorageError::io("stat", &cleaned, e))?;
    if actual != size {
        let reason = format!("cleaned segment has {actual} bytes, {size} were written");
        return Err(StorageError::Corrupt { path: cleaned, position: actual, reason });
    }
    super::retention::remove_files(&dir, base, &["index", "timeindex"])?;
    segment::sync_dir(&dir).await?;
    let path = old.path.clone();
    glommio::io::rename(&cleaned, &path).await.map_err(|e| StorageError::io("rename", &path, e))?;
    segment::sync_dir(&dir).await?;
    let new = Segment::new(base, file, path, size);
    *new.index.borrow_mut() = index;
    segment::persist_index(&dir, &new).await?;
    let new = Rc::new(new);
    if let Some(slot) = shared.segments.borrow_mut().iter_mut().find(|s| Rc::ptr_eq(s, &old)) {
        *slot = new;
    }
    shared.forget_reads();
    // The rename unlinked the old file: its last close frees its blocks.
    release(old, Vec::new()).await
}

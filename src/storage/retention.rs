//! Retention: deleting whole closed segments (by age, by total size, or because they lie below
//! the log start offset), and the persisted log start offset.
//!
//! The log start offset moves forward only. It is checkpointed in `<dir>/log-start-offset`
//! (decimal, replaced atomically) BEFORE segments are unlinked, so a crash between the two
//! leaves segments that recovery knows to be below the log start: the next pass deletes them.
//! The active (last) segment is never deleted. Only the shard's housekeeping task deletes or
//! replaces segments, so retention and compaction never race; appends only push new segments
//! at the end, and readers holding an `Rc<Segment>` keep reading an unlinked file safely.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::recycle;
use super::segment::{self, file_path, Segment};
use super::shared::Shared;
use super::{CleanupConfig, ReadError, StorageError};

/// File holding the log start offset.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";

/// Reads the checkpointed log start offset, if any (an unreadable file counts as none).
pub(crate) async fn load_log_start(dir: &Path) -> Result<Option<i64>, StorageError> {
    let bytes = segment::read_file(&dir.join(LOG_START_FILE)).await?;
    Ok(bytes.and_then(|b| String::from_utf8(b).ok()?.trim().parse().ok()))
}

pub(crate) async fn store_log_start(shared: &Shared, offset: i64) -> Result<(), StorageError> {
    let path = shared.dir.join(LOG_START_FILE);
    segment::write_file_atomic(&path, offset.to_string().into_bytes()).await
}

/// Moves the log start offset to `offset` (DeleteRecords); `-1` means the high watermark.
/// Returns the new log start. Offsets above the high watermark are out of range.
pub(crate) async fn delete_records(shared: &Rc<Shared>, offset: i64) -> Result<i64, ReadError> {
    if shared.closed.get() || shared.closing.get() {
        return Err(StorageError::Closed.into());
    }
    let _permit = shared.checkpoint_lock.acquire_permit(1).await;
    let high_watermark = shared.visible_end();
    let log_start = shared.log_start.get();
    let target = if offset == -1 { high_watermark } else { offset };
    if target < 0 || target > high_watermark {
        return Err(ReadError::OffsetOutOfRange { log_start, high_watermark });
    }
    if target > log_start {
        store_log_start(shared, target).await?;
        shared.log_start.set(target);
        tracing::info!(dir = %shared.dir.display(), log_start = target, "deleted records");
    }
    Ok(shared.log_start.get())
}

/// How many leading closed segments may go: those below the log start, and under the delete
/// policy those expired by `retention_ms` or beyond `retention_bytes`.
/// Only segments wholly below `hw` (the high watermark) ever go.
fn deletable(
    segments: &[Rc<Segment>],
    log_start: i64,
    hw: i64,
    config: &CleanupConfig,
    now: i64,
) -> usize {
    let closed = segments.len().saturating_sub(1);
    let mut total: u64 = segments.iter().map(|s| s.size.get()).sum();
    let mut count = 0;
    while count < closed {
        let segment = &segments[count];
        let next_base = segments[count + 1].base_offset;
        let below_start = next_base <= log_start;
        let expired = config.delete
            && config.retention_ms.is_some_and(|ms| {
                let newest = segment.index.borrow().max_timestamp();
                newest < now.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            });
        let size = segment.size.get();
        let oversize = config.delete
            && config.retention_bytes.is_some_and(|cap| total.saturating_sub(size) >= cap);
        if next_base > hw || !(below_start || expired || oversize) {
            break;
        }
        total -= size;
        count += 1;
    }
    count
}

/// Deletes what [`deletable`] allows, advancing the log start. Returns segments deleted.
pub(crate) async fn enforce(shared: &Rc<Shared>, now_ms: i64) -> Result<usize, StorageError> {
    if shared.closed.get() || shared.closing.get() {
        return Ok(0);
    }
    let _permit = shared.checkpoint_lock.acquire_permit(1).await;
    let recycled = segment::recycled_path(&shared.dir);
    if recycle::kept_file_expired(shared) && recycled.exists() {
        recycle::release(shared).await?;
    }
    let config = shared.config.borrow().cleanup.clone();
    let doomed: Vec<Rc<Segment>> = {
        let segments = shared.segments.borrow();
        let (start, hw) = (shared.log_start.get(), shared.visible_end());
        let count = deletable(&segments, start, hw, &config, now_ms);
        segments.iter().take(count).cloned().collect()
    };
    let Some(last) = doomed.last() else {
        return Ok(0);
    };
    let first_kept = {
        let segments = shared.segments.borrow();
        segments.get(doomed.len()).map_or(shared.leo.get(), |s| s.base_offset)
    };
    assert!(first_kept > last.base_offset);
    let new_start = shared.log_start.get().max(first_kept);
    if new_start > shared.log_start.get() {
        store_log_start(shared, new_start).await?;
        shared.log_start.set(new_start);
    }
    shared.segments.borrow_mut().retain(|s| !doomed.iter().any(|d| Rc::ptr_eq(s, d)));
    shared.forget_reads();
    let mut keep = shared.config.borrow().recycle && !recycled.exists();
    let deleted = doomed.len();
    for segment in doomed {
        // The oldest one's file is kept for the next segment if the shard's budget allows,
        // unless a read still holds it (it would read the new data at the old positions).
        if keep && Rc::strong_count(&segment) == 1 && recycle::try_keep(shared, segment.size.get())
        {
            keep = false;
            if let Err(e) = std::fs::rename(&segment.path, &recycled) {
                tracing::warn!(path = %segment.path.display(), error = %e,
                    "could not keep a segment file for reuse");
                recycle::forget_kept(shared);
            }
        }
        tracing::info!(path = %segment.path.display(), log_start = new_start,
            "retention deleted segment");
        remove_segment(&shared.dir, segment).await?;
    }
    segment::sync_dir(&shared.dir).await?;
    Ok(deleted)
}

/// Removes a segment no longer in the log: unlinks its files (see [`segment_paths`]), then
/// closes its `.log` file (see [`release`]).
pub(crate) async fn remove_segment(dir: &Path, segment: Rc<Segment>) -> Result<(), StorageError> {
    let paths = segment_paths(dir, segment.base_offset);
    release(segment, paths).await
}

/// Unlinks `paths` (missing files are fine), then closes `segment`'s file when nothing else
/// holds it (no read in flight), off the shard's thread (see [`unlink_then_close`]).
pub(crate) async fn release(segment: Rc<Segment>, paths: Vec<PathBuf>) -> Result<(), StorageError> {
    let files = owned_file(segment).into_iter().collect();
    unlink_then_close(files, move || paths.iter().try_for_each(|p| remove(p))).await
}

/// Runs `unlink` on glommio's blocking thread, then closes `files` there. Freeing a file's
/// blocks (its last link gone, by `unlink` of a closed file or by the last close of an
/// unlinked one) on ext4 mounted with `discard` (without a journal) discards them and waits
/// for the device; on the shard's thread that wait stalls every partition of the shard.
/// Traced on the reference machine under 1 KiB produce with retention deleting 64 MiB
/// segments: the shard blocked in `blkdev_issue_discard` under `unlink`
/// (perf/results/2026-12-06-io-workers.md) and, once the unlink had moved, under `__fput`
/// from glommio's `io_uring_submit` (perf/results/2026-12-06-close-off-shard.md). The files
/// move as `OwnedDmaFile`s, whose drop is a plain `close`.
pub(crate) async fn unlink_then_close<F>(
    files: Vec<glommio::io::OwnedDmaFile>,
    unlink: F,
) -> Result<(), StorageError>
where
    F: FnOnce() -> Result<(), StorageError> + Send + 'static,
{
    glommio::executor()
        .spawn_blocking(move || {
            let unlinked = unlink();
            drop(files);
            unlinked
        })
        .await
}

/// The segment's file, to be closed on another thread, when nothing else holds it.
pub(crate) fn owned_file(segment: Rc<Segment>) -> Option<glommio::io::OwnedDmaFile> {
    let file = Rc::try_unwrap(segment).ok().and_then(|s| Rc::try_unwrap(s.file).ok());
    file.map(glommio::io::OwnedDmaFile::from)
}

/// Unlinks a segment's files (see [`segment_paths`]) off the shard's thread (see
/// [`remove_paths`]), leaving its open file, if any, to its holders; missing files are fine.
pub(crate) async fn remove_segment_files(dir: &Path, base: i64) -> Result<(), StorageError> {
    remove_paths(segment_paths(dir, base)).await
}

/// A segment's `.log`, `.index`, `.timeindex` and `.producers` (the idempotent-producer
/// snapshot written at its creation, not always present).
fn segment_paths(dir: &Path, base: i64) -> Vec<PathBuf> {
    ["log", "index", "timeindex", "producers"].map(|e| file_path(dir, base, e)).into()
}

/// Unlinks `paths` in order, off the shard's thread (see [`unlink_then_close`]); missing
/// files are fine.
pub(crate) async fn remove_paths(paths: Vec<PathBuf>) -> Result<(), StorageError> {
    unlink_then_close(Vec::new(), move || paths.iter().try_for_each(|p| remove(p))).await
}

/// Unlinks the files of segment `base` with these extensions on the calling thread (small
/// files: indexes); missing files are fine.
pub(crate) fn remove_files(dir: &Path, base: i64, extensions: &[&str]) -> Result<(), StorageError> {
    extensions.iter().try_for_each(|extension| remove(&file_path(dir, base, extension)))
}

/// Unlinks `path`; a missing file is fine.
fn remove(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StorageError::io("remove", path, e))
        }
        _ => Ok(()),
    }
}

//! Truncation (a follower dropping a divergent suffix) and reset (a follower restarting its
//! log at the leader's log start), done by the writer task between two rounds: it owns the
//! active segment and its partial tail block, and nothing is queued (appends are refused
//! while a truncation is asked for).
//!
//! Truncation works on whole batches: the batch holding the target offset goes entirely and
//! the log then ends at its base offset. Offsets and the high watermark are lowered first
//! (so no reader goes past the cut), then the files change in a crash-safe order:
//!
//! - Within the active segment: `ftruncate` to the cut position and fdatasync (bytes beyond
//!   read as zeros afterwards: no stale batch can follow later appends), preallocate again,
//!   and rebuild its index, tail block and producer state by the recovery scan.
//! - Into a closed segment `k`: the active segment is first truncated to its data (so it is
//!   a valid closed segment if a crash stops us), `k`'s index files go and `k` is cut (or
//!   removed if the cut is at its start), an empty active segment is created at the new end,
//!   then every later segment is removed, newest first. A crash at any point leaves segments
//!   that recovery opens, all data below the target intact (a crash before the removals
//!   only leaves some of the dropped suffix). `k`'s index is rebuilt and persisted, and the
//!   producer state is rebuilt from the newest producer snapshot at or below `k` plus scans.
//! - Reset: segments at or above the offset go, an empty active segment is created at it,
//!   the log start checkpoint moves there, then every older segment goes.
//!
//! The removed segments' files are closed last, off the shard's thread: the last close of an
//! unlinked file frees its blocks, a synchronous discard on this disk (see
//! [`retention::unlink_then_close`]).

use std::rc::Rc;
use std::time::Instant;

use super::producers::ProducerTable;
use super::recovery;
use super::retention::{self, remove_segment_files, store_log_start};
use super::segment::{self, align_down, file_path, Segment};
use super::shared::{Shared, TruncateKind};
use super::writer::{truncate_and_sync, write_producer_snapshot, Writer};
use super::{read, replica, StorageError};

impl Writer {
    /// The truncation asked for, once nothing is queued.
    pub(crate) fn truncation_wanted(&self) -> Option<TruncateKind> {
        if !self.shared.pending.borrow().is_empty() {
            return None;
        }
        let truncation = self.shared.truncation.borrow();
        truncation.as_ref().filter(|t| t.result.is_none()).map(|t| t.kind)
    }

    /// Runs a truncation or reset; see the module docs.
    pub(crate) async fn truncate(&mut self, kind: TruncateKind) -> Result<(), StorageError> {
        if self.shared.synced.get() < self.shared.written.get() {
            self.sync().await?;
        }
        let done = match kind {
            TruncateKind::To(offset) if offset >= self.shared.leo.get() => Ok(Vec::new()),
            TruncateKind::To(offset) if offset < self.shared.log_start.get() => {
                self.reset(offset).await
            }
            TruncateKind::To(offset) => self.truncate_to(offset).await,
            TruncateKind::Reset(offset) => self.reset(offset).await,
        };
        // Again once the files are cut: a read between the lowered offsets and the cut may
        // have remembered a position in bytes that went.
        self.shared.forget_reads();
        // A segment a read still holds is closed when that read drops it.
        let files = done?.into_iter().filter_map(retention::owned_file).collect();
        retention::unlink_then_close(files, || Ok(())).await
    }

    /// Lowers every offset to `end` (the new log end), clears the tail cache and trims the
    /// epoch cache and the high watermark.
    fn lower_offsets(&mut self, end: i64) {
        let shared = &self.shared;
        shared.leo.set(end);
        shared.written.set(end);
        shared.synced.set(end);
        shared.durable.set(end);
        shared.sync_wanted.set(shared.sync_wanted.get().min(end));
        shared.high_watermark.set(shared.high_watermark.get().min(end));
        if shared.log_start.get() > end {
            shared.log_start.set(end);
        }
        shared.cache.borrow_mut().clear();
        shared.forget_reads();
        shared.compacted.set(None);
        self.unsynced_records = 0;
        replica::trim_epochs(shared, end);
        replica::checkpoint_hw(shared, true);
    }

    /// Cuts the log at `offset`; the old handles of the segments it removed or reopened.
    async fn truncate_to(&mut self, offset: i64) -> Result<Vec<Rc<Segment>>, StorageError> {
        let segments: Vec<Rc<Segment>> = self.shared.segments.borrow().clone();
        let after = segments.partition_point(|s| s.base_offset <= offset);
        let Some((k, target)) = after.checked_sub(1).and_then(|k| Some((k, segments.get(k)?)))
        else {
            return self.reset(offset).await;
        };
        let target = target.clone();
        let from = target.index.borrow().position_for(offset);
        let (position, end) = match read::locate(&target, from, offset).await? {
            Some((position, header)) => (position, header.base_offset.min(offset)),
            None => (target.size.get(), offset),
        };
        tracing::info!(dir = %self.shared.dir.display(), offset, end, "truncating log");
        self.lower_offsets(end);
        if Rc::ptr_eq(&target, &self.segment) {
            self.cut_active(position, end).await?;
            Ok(Vec::new())
        } else {
            drop(target);
            self.cut_closed(segments, k, position, end).await
        }
    }

    async fn cut_active(&mut self, position: u64, end: i64) -> Result<(), StorageError> {
        let segment = self.segment.clone();
        let (file, path) = (&segment.file, &segment.path);
        self.settle_growth().await;
        self.allocated = self.allocated.min(position);
        file.truncate(position).await.map_err(|e| StorageError::io("truncate", path, e))?;
        file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", path, e))?;
        segment.size.set(position);
        self.synced_position = position;
        let interval = self.shared.config.borrow().index_interval_bytes;
        let base = segment.base_offset;
        let mut scan = recovery::scan(file, path, base, position, interval).await?;
        // The cut may fall in a gap (compacted batches copied from a leader): the data then
        // ends below `end`, never above.
        if scan.end != position || scan.next_offset > end {
            let reason = format!("rescan after truncation ended at offset {}", scan.next_offset);
            return Err(StorageError::Corrupt { path: path.clone(), position: scan.end, reason });
        }
        let tail_start = align_down(position);
        let len = (position - tail_start) as usize;
        self.tail = recovery::read_exact(file, path, tail_start, len).await?;
        *segment.index.borrow_mut() = scan.index;
        let producers = recovery::producers_at(&self.shared.dir, base, &mut scan.producers);
        *self.shared.producers.borrow_mut() = producers;
        Ok(())
    }

    /// Cuts closed segment `k` of `segments` (the log's); the old handles of `k` and every
    /// later segment, for [`Writer::truncate`] to close.
    async fn cut_closed(
        &mut self,
        mut segments: Vec<Rc<Segment>>,
        k: usize,
        position: u64,
        end: i64,
    ) -> Result<Vec<Rc<Segment>>, StorageError> {
        let dir = self.shared.dir.clone();
        let target = &segments[k];
        let base = target.base_offset;
        self.allocated = self.allocated.min(self.segment.size.get());
        truncate_and_sync(&self.segment).await?;
        let keep_target = position > 0;
        if keep_target {
            remove_index_files(&dir, base)?;
            let (file, path) = (&target.file, &target.path);
            file.truncate(position).await.map_err(|e| StorageError::io("truncate", path, e))?;
            file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", path, e))?;
        } else {
            remove_segment_files(&dir, base).await?;
        }
        let new = create_empty(&self.shared, end).await?;
        segment::sync_dir(&dir).await?;
        for later in segments[k + 1..].iter().rev() {
            remove_segment_files(&dir, later.base_offset).await?;
        }
        segment::sync_dir(&dir).await?;
        let mut kept: Vec<Rc<Segment>> = segments[..k].to_vec();
        let interval = self.shared.config.borrow().index_interval_bytes;
        let mut target_producers = None;
        if keep_target {
            // A new handle: a compaction pass that read the uncut segment must not swap it in.
            let path = target.path.clone();
            let file = segment::open_log_file(&path).await?;
            let scan = recovery::scan(&file, &path, base, position, interval).await?;
            if scan.end != position {
                let reason = scan.stop.unwrap_or_default();
                return Err(StorageError::Corrupt { path, position: scan.end, reason });
            }
            let cut = Segment::new(base, file, path, position);
            let mut index = scan.index;
            index.seal(end);
            *cut.index.borrow_mut() = index;
            segment::persist_index(&dir, &cut).await?;
            target_producers = Some(scan.producers);
            kept.push(Rc::new(cut));
        }
        let producers = rebuild_producers(&dir, &kept, target_producers, interval).await?;
        *self.shared.producers.borrow_mut() = producers;
        write_producer_snapshot(&self.shared, &dir, end);
        self.start_active(new, kept).await?;
        Ok(segments.split_off(k))
    }

    /// Makes `new` (empty) the active segment after `kept`.
    async fn start_active(
        &mut self,
        new: Rc<Segment>,
        mut kept: Vec<Rc<Segment>>,
    ) -> Result<(), StorageError> {
        // Nothing preallocated: the writer grows the file before its first write.
        kept.push(new.clone());
        *self.shared.segments.borrow_mut() = kept;
        self.segment = new;
        self.allocated = 0;
        self.synced_position = 0;
        self.tail.clear();
        self.first_write = None;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Empties the log at `offset`; its old segments (their files unlinked, still open).
    async fn reset(&mut self, offset: i64) -> Result<Vec<Rc<Segment>>, StorageError> {
        tracing::info!(dir = %self.shared.dir.display(), offset, "resetting log");
        let dir = self.shared.dir.clone();
        // A kept file holds batches below the old log start, which may be above the new one:
        // gone (durably, by the directory sync below) before the log start goes down.
        super::recycle::release(&self.shared).await?;
        let segments: Vec<Rc<Segment>> = self.shared.segments.borrow().clone();
        self.lower_offsets(offset.min(self.shared.leo.get()));
        let shared = &self.shared;
        for s in [&shared.leo, &shared.written, &shared.synced, &shared.durable] {
            s.set(offset);
        }
        shared.sync_wanted.set(offset);
        shared.high_watermark.set(offset);
        shared.log_start.set(offset);
        shared.epochs.borrow_mut().clear();
        replica::store_epochs(shared);
        replica::checkpoint_hw(shared, true);
        *shared.producers.borrow_mut() = ProducerTable::default();
        self.allocated = self.allocated.min(self.segment.size.get());
        truncate_and_sync(&self.segment).await?;
        let (above, below): (Vec<_>, Vec<_>) =
            segments.iter().partition(|s| s.base_offset >= offset);
        for segment in above.iter().rev() {
            remove_segment_files(&dir, segment.base_offset).await?;
        }
        let _ = std::fs::remove_file(file_path(&dir, offset, "producers"));
        let new = create_empty(&self.shared, offset).await?;
        segment::sync_dir(&dir).await?;
        store_log_start(&self.shared, offset).await?;
        for segment in &below {
            remove_segment_files(&dir, segment.base_offset).await?;
        }
        segment::sync_dir(&dir).await?;
        self.start_active(new, Vec::new()).await?;
        Ok(segments)
    }
}

/// An empty active segment file at `base` in the log's directory (size 0: a valid closed
/// segment should a crash leave it before later ones are removed).
async fn create_empty(shared: &Shared, base: i64) -> Result<Rc<Segment>, StorageError> {
    let path = file_path(&shared.dir, base, "log");
    let dsync = super::writer::wants_dsync(&shared.config.borrow());
    let file = super::writer::open_active_file(&path, dsync).await?;
    file.truncate(0).await.map_err(|e| StorageError::io("truncate", &path, e))?;
    Ok(Rc::new(Segment { dsync, ..Segment::new(base, file, path, 0) }))
}

fn remove_index_files(dir: &std::path::Path, base: i64) -> Result<(), StorageError> {
    super::retention::remove_files(dir, base, &["index", "timeindex"])
}

/// Producer state at the end of `kept`: the newest producer snapshot of a kept segment, then
/// scans of the segments from it on; the last segment's scan is `last_scan` if given.
async fn rebuild_producers(
    dir: &std::path::Path,
    kept: &[Rc<Segment>],
    last_scan: Option<ProducerTable>,
    interval: u32,
) -> Result<ProducerTable, StorageError> {
    let has_snapshot = |s: &Rc<Segment>| file_path(dir, s.base_offset, "producers").exists();
    let from = kept.iter().rposition(has_snapshot).unwrap_or(0);
    let Some(first) = kept.get(from) else {
        return Ok(ProducerTable::default());
    };
    let mut table = recovery::producers_at(dir, first.base_offset, &mut ProducerTable::for_scan());
    let scanned = if last_scan.is_some() { kept.len() - 1 } else { kept.len() };
    for segment in kept.iter().take(scanned).skip(from) {
        let size = segment.size.get();
        let (file, path, base) = (&segment.file, &segment.path, segment.base_offset);
        let scan = recovery::scan(file, path, base, size, interval).await?;
        table.absorb(scan.producers);
    }
    if let Some(last) = last_scan {
        table.absorb(last);
    }
    Ok(table)
}

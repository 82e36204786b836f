//! The writer task: the only code that writes segment files.
//!
//! Loop: wait for work; write every batch queued at that moment in DMA writes of at most
//! `WRITE_BYTES_MAX` starting at the aligned end (re-writing the partial last block from a
//! copy), one write in flight; fdatasync per policy; publish the new high watermark. Appends
//! that arrive meanwhile are written by the next round: group commit. Any write, fdatasync,
//! truncate or roll failure poisons the log and ends the task.

use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::segment::{self, align_down, align_up, Segment};
use super::shared::Shared;
use super::{header_of, StorageError, BLOCK_BYTES, WRITE_BYTES_MAX};

/// Data bytes of one write besides the rewritten partial block.
const WRITE_DATA_BYTES_MAX: usize = (WRITE_BYTES_MAX - BLOCK_BYTES) as usize;
const _: () = assert!(super::BATCH_BYTES_MAX <= WRITE_DATA_BYTES_MAX);

/// State owned by the writer task for the active segment.
pub(crate) struct Writer {
    pub(crate) shared: Rc<Shared>,
    pub(crate) segment: Rc<Segment>,
    /// File size set by preallocation; writes never go beyond it.
    pub(crate) allocated: u64,
    /// Copy of the bytes `[align_down(size), size)` of the active segment.
    pub(crate) tail: Vec<u8>,
    pub(crate) unsynced_records: u64,
    pub(crate) last_sync: Instant,
    /// When the first batch went into the active segment (this process), for `segment_ms`.
    pub(crate) first_write: Option<Instant>,
}

/// Runs the writer until the log closes or is poisoned.
pub(crate) async fn run(mut writer: Writer) {
    let result = writer.work().await;
    let shared = writer.shared.clone();
    if let Err(error) = result {
        if !matches!(error, StorageError::Poisoned) {
            shared.poison(&error);
        }
    }
    drop(writer);
    shared.writer_done.set(true);
    shared.progress.wake_all();
}

impl Writer {
    async fn work(&mut self) -> Result<(), StorageError> {
        loop {
            self.wait_for_work().await;
            if self.shared.poisoned.get() {
                return Err(StorageError::Poisoned);
            }
            let count = self.shared.pending.borrow().len();
            self.write_queued(count).await?;
            if self.sync_due() {
                self.sync().await?;
            }
            self.shared.publish();
            if let Some(kind) = self.truncation_wanted() {
                let result = self.truncate(kind).await;
                self.shared.publish();
                let failed = result.as_ref().err().map(ToString::to_string);
                if let Some(t) = self.shared.truncation.borrow_mut().as_mut() {
                    t.result = Some(result);
                }
                self.shared.progress.wake_all();
                if let Some(error) = failed {
                    // The files may be half cut: accept nothing more.
                    let error = StorageError::Io {
                        op: "truncate log",
                        path: self.shared.dir.clone(),
                        source: std::io::Error::other(error),
                    };
                    self.shared.poison(&error);
                    return Err(StorageError::Poisoned);
                }
            }
            if self.shared.closing.get() && self.shared.pending.borrow().is_empty() {
                return self.finish().await;
            }
        }
    }

    async fn wait_for_work(&self) {
        let ready = WorkReady { shared: &self.shared };
        let deadline = {
            let config = self.shared.config.borrow();
            let unsynced = self.shared.synced.get() < self.shared.written.get();
            match config.flush.interval_ms {
                Some(ms) if unsynced && !config.flush.every_append => {
                    Some(self.last_sync + Duration::from_millis(ms))
                }
                _ => None,
            }
        };
        match deadline {
            None => ready.await,
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                let sleep = pin!(glommio::timer::sleep(wait));
                futures::future::select(pin!(ready), sleep).await;
            }
        }
    }

    /// Writes the first `count` queued batches, rolling segments as needed.
    async fn write_queued(&mut self, mut count: usize) -> Result<(), StorageError> {
        while count > 0 {
            let Some(batches) = self.gather(count) else {
                self.roll().await?;
                continue;
            };
            count -= batches.len();
            self.write(&batches).await?;
            self.shared.publish();
        }
        Ok(())
    }

    /// Takes up to `count` queued batches for one write, or `None` if the first one needs a
    /// roll first.
    fn gather(&self, count: usize) -> Option<Vec<Bytes>> {
        let mut pending = self.shared.pending.borrow_mut();
        let mut batches: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        while batches.len() < count {
            let Some(next) = pending.front() else { break };
            let size = self.segment.size.get() + bytes as u64;
            if self.needs_roll(size, next) {
                if batches.is_empty() {
                    return None;
                }
                break;
            }
            if !batches.is_empty() && bytes + next.len() > WRITE_DATA_BYTES_MAX {
                break;
            }
            bytes += next.len();
            batches.extend(pending.pop_front());
        }
        Some(batches)
    }

    fn needs_roll(&self, size: u64, batch: &Bytes) -> bool {
        if size == 0 {
            return false;
        }
        let config = self.shared.config.borrow();
        let full = size + batch.len() as u64 > config.segment_bytes;
        let aged = match (config.segment_ms, self.first_write) {
            (Some(ms), Some(first)) => first.elapsed() >= Duration::from_millis(ms),
            _ => false,
        };
        let span = header_of(batch).map_or(0, |h| h.last_offset() - self.segment.base_offset);
        full || aged || span >= i64::from(u32::MAX)
    }

    /// One DMA write of `batches` at the segment's aligned end.
    async fn write(&mut self, batches: &[Bytes]) -> Result<(), StorageError> {
        let segment = self.segment.clone();
        let start = segment.size.get();
        let aligned = align_down(start);
        assert_eq!(aligned + self.tail.len() as u64, start);
        let data: usize = batches.iter().map(Bytes::len).sum();
        let end = start + data as u64;
        let write_len = (align_up(end) - aligned) as usize;
        assert!(write_len as u64 <= WRITE_BYTES_MAX);
        self.ensure_allocated(align_up(end)).await?;
        let mut buf = segment.file.alloc_dma_buffer(write_len);
        let bytes = buf.as_bytes_mut();
        let mut at = self.tail.len();
        bytes[..at].copy_from_slice(&self.tail);
        for batch in batches {
            bytes[at..at + batch.len()].copy_from_slice(batch);
            at += batch.len();
        }
        bytes[at..].fill(0);
        let new_tail = bytes[(align_down(end) - aligned) as usize..at].to_vec();
        self.check_injected_failure(&segment)?;
        let written = segment.file.write_at(buf, aligned).await;
        let written = written.map_err(|e| StorageError::io("write", &segment.path, e))?;
        if written != write_len {
            let short = std::io::Error::new(std::io::ErrorKind::WriteZero, "short write");
            return Err(StorageError::io("write", &segment.path, short));
        }
        self.after_write(batches, start, end, new_tail);
        Ok(())
    }

    fn after_write(&mut self, batches: &[Bytes], start: u64, end: u64, tail: Vec<u8>) {
        let interval = self.shared.config.borrow().index_interval_bytes;
        let mut position = start;
        let mut next_offset = self.shared.written.get();
        let mut index = self.segment.index.borrow_mut();
        for header in batches.iter().filter_map(|b| header_of(b)) {
            assert!(header.base_offset >= next_offset);
            index.on_batch(&header, position, interval);
            position += header.total_bytes() as u64;
            self.unsynced_records += header.record_count.max(0) as u64;
            next_offset = header.last_offset() + 1;
        }
        assert_eq!(position, end);
        self.segment.size.set(end);
        self.tail = tail;
        self.shared.written.set(next_offset);
        self.first_write.get_or_insert_with(Instant::now);
    }

    #[cfg(test)]
    fn check_injected_failure(&self, segment: &Segment) -> Result<(), StorageError> {
        if self.shared.fail_writes.take() {
            let error = std::io::Error::other("injected write failure");
            return Err(StorageError::io("write", &segment.path, error));
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn check_injected_failure(&self, _segment: &Segment) -> Result<(), StorageError> {
        Ok(())
    }

    /// Preallocates ahead so that a write ending at `needed_end` never grows the file: when
    /// less than half an extent is left, extend by one extent, capped at the segment size
    /// (but always covering `needed_end`).
    async fn ensure_allocated(&mut self, needed_end: u64) -> Result<(), StorageError> {
        let (extent, segment_bytes) = {
            let config = self.shared.config.borrow();
            (config.prealloc_bytes, config.segment_bytes)
        };
        if needed_end + extent / 2 <= self.allocated {
            return Ok(());
        }
        let cap = align_up(segment_bytes).max(needed_end);
        let target = (needed_end + extent).min(cap);
        if target <= self.allocated {
            return Ok(());
        }
        let segment = &self.segment;
        segment
            .file
            .pre_allocate(target, false)
            .await
            .map_err(|e| StorageError::io("fallocate", &segment.path, e))?;
        self.allocated = target;
        Ok(())
    }

    fn sync_due(&self) -> bool {
        let shared = &self.shared;
        if shared.synced.get() >= shared.written.get() {
            return false;
        }
        let config = shared.config.borrow();
        let policy = &config.flush;
        let by_count = policy.messages.is_some_and(|m| self.unsynced_records >= m);
        let by_time = policy
            .interval_ms
            .is_some_and(|ms| self.last_sync.elapsed() >= Duration::from_millis(ms));
        let wanted = shared.sync_wanted.get() > shared.synced.get();
        policy.every_append || by_count || by_time || wanted || shared.closing.get()
    }

    pub(crate) async fn sync(&mut self) -> Result<(), StorageError> {
        let written = self.shared.written.get();
        let segment = &self.segment;
        segment
            .file
            .fdatasync()
            .await
            .map_err(|e| StorageError::io("fdatasync", &segment.path, e))?;
        self.shared.synced.set(written);
        self.unsynced_records = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Seals the active segment (sync, truncate to its data, index files) and starts the next.
    async fn roll(&mut self) -> Result<(), StorageError> {
        let next_offset = self.shared.written.get();
        let old = self.segment.clone();
        self.sync().await?;
        truncate_and_sync(&old).await?;
        old.index.borrow_mut().seal(next_offset);
        let dir = self.shared.dir.clone();
        segment::persist_index(&dir, &old).await?;
        self.shared.publish();
        write_producer_snapshot(&self.shared, &dir, next_offset);
        let (extent, segment_bytes) = {
            let config = self.shared.config.borrow();
            (config.prealloc_bytes, config.segment_bytes)
        };
        let allocated = extent.min(align_up(segment_bytes));
        let new = create_segment(&dir, next_offset, allocated).await?;
        segment::sync_dir(&dir).await?;
        tracing::debug!(dir = %dir.display(), next_offset, "rolled segment");
        self.shared.segments.borrow_mut().push(new.clone());
        self.segment = new;
        self.allocated = allocated;
        self.tail.clear();
        self.first_write = None;
        Ok(())
    }

    /// On close: sync and truncate the active segment to its data size.
    async fn finish(&mut self) -> Result<(), StorageError> {
        if self.shared.synced.get() < self.shared.written.get() {
            self.sync().await?;
        }
        truncate_and_sync(&self.segment).await?;
        self.shared.publish();
        Ok(())
    }
}

pub(crate) async fn truncate_and_sync(segment: &Segment) -> Result<(), StorageError> {
    let file = &segment.file;
    let path = &segment.path;
    file.truncate(segment.size.get()).await.map_err(|e| StorageError::io("truncate", path, e))?;
    file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", path, e))
}

/// Creates an empty segment file at `base_offset`, preallocated to `allocated` bytes.
pub(crate) async fn create_segment(
    dir: &std::path::Path,
    base_offset: i64,
    allocated: u64,
) -> Result<Rc<Segment>, StorageError> {
    let path = segment::file_path(dir, base_offset, "log");
    let file = segment::open_log_file(&path).await?;
    let setup = async {
        file.truncate(0).await?;
        file.pre_allocate(allocated, false).await
    };
    setup.await.map_err(|e| StorageError::io("preallocate", &path, e))?;
    Ok(Rc::new(Segment::new(base_offset, file, path, 0)))
}

/// Saves the idempotent-producer state below `next_offset` as the new active segment's
/// snapshot (see `producers`). Earlier segments keep theirs (removed with the segment), so a
/// truncation into a closed segment rebuilds the state from its snapshot. Small and rare
/// (once per roll), so plain blocking file calls; a failure only costs deduplication across a
/// restart (or a rescan on truncation): logged.
pub(crate) fn write_producer_snapshot(shared: &Shared, dir: &std::path::Path, next_offset: i64) {
    let bytes = shared.producers.borrow().snapshot_below(next_offset);
    let path = segment::file_path(dir, next_offset, "producers");
    let tmp = path.with_extension("producers.tmp");
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), "producer state snapshot not written: {e}");
    }
}

/// Ready when the writer has something to do.
struct WorkReady<'a> {
    shared: &'a Shared,
}

impl Future for WorkReady<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let s = self.shared;
        let sync_wanted = s.sync_wanted.get() > s.synced.get() && s.written.get() > s.synced.get();
        let has_pending = !s.pending.borrow().is_empty();
        let truncation = s.truncation.borrow().as_ref().is_some_and(|t| t.result.is_none());
        if has_pending || truncation || sync_wanted || s.closing.get() || s.poisoned.get() {
            return Poll::Ready(());
        }
        s.writer_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

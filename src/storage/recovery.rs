//! Opening a partition directory: list segments, load or rebuild closed segments' indexes,
//! recover the active (last) segment by scanning it, then start the writer. The same load
//! ([`load`]) is what the writer runs to rebuild a log after an I/O failure it cannot verify
//! its way out of.
//!
//! Active segment recovery stops at the first batch that is invalid: a zero header
//! (preallocated space), bad magic, bad CRC, a length beyond the file, or a base offset below
//! the expected next offset (offsets go up; a follower's active segment has gaps where it
//! copied a leader's compacted batches). The logical end is set there. Non-zero bytes in the
//! `RECOVERY_ZERO_BYTES` after the end (a torn or corrupt tail, reported with
//! `tracing::warn!`) are cut off by truncating the file at the end, so stale bytes of an
//! earlier, longer tail can never be mistaken for data after later appends. Recovery
//! preallocates nothing and writes nothing else, so a log opens on a full disk; the writer
//! grows the file before its first write. Closed segments are trusted up to their file size;
//! an index that cannot be saved (a full disk) is kept in memory and rebuilt at next open.

use std::path::Path;
use std::rc::Rc;

use glommio::io::DmaFile;
use glommio::TaskQueueHandle;

use super::index::SegmentIndex;
use super::producers::ProducerTable;
use super::segment::{self, align_down, file_path, Segment};
use super::shared::Shared;
use super::writer::{self, Writer};
use super::{LogConfig, StorageError, BATCH_BYTES_MAX, RECOVERY_ZERO_BYTES};
use crate::record_batch::{self, BatchHeader, HEADER_BYTES};

/// Bytes read per step of a recovery scan.
const SCAN_CHUNK_BYTES: u64 = 1 << 20;
const _: () = assert!(SCAN_CHUNK_BYTES.is_multiple_of(super::BLOCK_BYTES));

/// Result of scanning a segment from its start.
pub(crate) struct Scan {
    /// Base offset of the segment scanned: offsets past `base + u32::MAX` do not fit it.
    pub(crate) base: i64,
    /// Position after the last valid batch.
    pub(crate) end: u64,
    /// Offset after the last valid batch.
    pub(crate) next_offset: i64,
    pub(crate) index: SegmentIndex,
    /// Idempotent producers' batches seen by the scan.
    pub(crate) producers: ProducerTable,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) stop: Option<String>,
}

enum Walk {
    /// The chunk was consumed; read on.
    Consumed,
    /// The next batch needs this many bytes from the current end.
    NeedMore(u64),
    Stop(String),
}

/// A log as found on disk.
pub(crate) struct Loaded {
    /// Every segment, the active one last.
    pub(crate) segments: Vec<Rc<Segment>>,
    pub(crate) active: ActiveParts,
    /// The checkpointed log start offset, if any.
    pub(crate) log_start: Option<i64>,
}

/// Opens or creates the log in `dir` and spawns its writer (on `queue` if given).
pub(crate) async fn open(
    dir: std::path::PathBuf,
    config: LogConfig,
    queue: Option<TaskQueueHandle>,
) -> Result<Rc<Shared>, StorageError> {
    let Loaded { segments, mut active, log_start } = load(&dir, &config).await?;
    let next_offset = active.next_offset;
    let producers = std::mem::take(&mut active.producers);
    let shared = Rc::new(Shared::new(dir, config, segments, next_offset, producers));
    if let Some(start) = log_start {
        let start = start.clamp(shared.log_start.get(), next_offset);
        shared.log_start.set(start);
    }
    *shared.epochs.borrow_mut() = super::replica::load_epochs(&shared.dir, next_offset);
    shared.hw_checkpoint.set(super::replica::load_hw(&shared.dir));
    let writer = Writer::new(shared.clone(), &active);
    let task = match queue {
        Some(queue) => glommio::spawn_local_into(writer::run(writer), queue)
            .map_err(|e| StorageError::io("spawn writer", &shared.dir, e))?,
        None => glommio::spawn_local(writer::run(writer)),
    };
    task.detach();
    Ok(shared)
}

/// Reads the log in `dir` (created if missing) as recovery leaves it: closed segments, the
/// recovered active segment (cut at its last valid batch), the log start checkpoint.
pub(crate) async fn load(dir: &Path, config: &LogConfig) -> Result<Loaded, StorageError> {
    let fresh = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
    segment::prime_dma_probe(dir).await?;
    let (bases, removed) = list_segments(dir)?;
    // Names created (a new directory, a first segment) or removed (leftovers) here are made
    // durable by the writer before its first fdatasync acknowledges anything: opening many
    // partitions then costs no directory fsync each.
    let dir_unsynced = fresh || removed || bases.is_empty();
    let (last_base, closed) = match bases.split_last() {
        Some((last, closed)) => (*last, closed),
        None => (0, &[][..]),
    };
    let mut segments = Vec::with_capacity(bases.len().max(1));
    for &base in closed {
        segments.push(open_closed(dir, base, config).await?);
    }
    let mut active = recover_active(dir, last_base, config).await?;
    active.dir_unsynced = dir_unsynced;
    segments.push(active.segment.clone());
    let log_start = super::retention::load_log_start(dir).await?;
    Ok(Loaded { segments, active, log_start })
}

/// Base offsets of the `.log` files in `dir`, ascending, and whether leftover `.tmp` files
/// were removed.
fn list_segments(dir: &Path) -> Result<(Vec<i64>, bool), StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io("list dir", dir, e))?;
    let mut bases = Vec::new();
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list dir", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") || name.ends_with(super::compact::CLEANED_SUFFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
            removed = true;
        } else if let Some(base) = segment::parse_log_name(name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok((bases, removed))
}

/// A closed segment: size from the file, indexes from their files or rebuilt by a scan.
async fn open_closed(
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<Rc<Segment>, StorageError> {
    let path = file_path(dir, base, "log");
    let file = segment::open_log_file(&path).await?;
    let size = file_size(&file, &path).await?;
    let offsets = segment::read_file(&file_path(dir, base, "index")).await?;
    let times = segment::read_file(&file_path(dir, base, "timeindex")).await?;
    let loaded = match (offsets, times) {
        (Some(o), Some(t)) => SegmentIndex::decode(base, &o, &t, size),
        _ => None,
    };
    let segment = Segment::new(base, file, path, size);
    let index = match loaded {
        Some(index) => index,
        None => rebuild_index(dir, &segment, config).await?,
    };
    *segment.index.borrow_mut() = index;
    Ok(Rc::new(segment))
}

async fn rebuild_index(
    dir: &Path,
    segment: &Segment,
    config: &LogConfig,
) -> Result<SegmentIndex, StorageError> {
    let path = &segment.path;
    tracing::warn!(path = %path.display(), "index missing or invalid, rebuilding");
    let size = segment.size.get();
    let interval = config.index_interval_bytes;
    let scan = scan(&segment.file, path, segment.base_offset, size, interval).await?;
    if scan.end != size {
        return Err(StorageError::Corrupt {
            path: path.clone(),
            position: scan.end,
            reason: scan.stop.unwrap_or_default(),
        });
    }
    let mut index = scan.index;
    index.seal(scan.next_offset);
    *segment.index.borrow_mut() = index.clone();
    if let Err(e) = segment::persist_index(dir, segment).await {
        // Kept in memory; rebuilt again at the next open (a full disk must not stop it).
        crate::log_limited!(WARN, path = %path.display(), "rebuilt index not saved: {e}");
    }
    Ok(index)
}

pub(crate) async fn file_size(file: &DmaFile, path: &Path) -> Result<u64, StorageError> {
    file.file_size().await.map_err(|e| StorageError::io("stat", path, e))
}

/// What the writer needs to continue the active segment.
pub(crate) struct ActiveParts {
    pub(crate) segment: Rc<Segment>,
    pub(crate) next_offset: i64,
    /// The file's size: what is allocated (preallocated space included).
    pub(crate) allocated: u64,
    pub(crate) tail: Vec<u8>,
    pub(crate) producers: ProducerTable,
    /// Names in the log directory changed at open: sync it before acknowledging anything.
    pub(crate) dir_unsynced: bool,
}

/// Scans the active segment and cuts it at the last valid batch (truncating the file there
/// if non-zero bytes follow, see the module docs).
async fn recover_active(
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<ActiveParts, StorageError> {
    let path = file_path(dir, base, "log");
    let dsync = super::writer::wants_dsync(config);
    let file = super::writer::open_active_file(&path, dsync).await?;
    let file_bytes = file_size(&file, &path).await?;
    let interval = config.index_interval_bytes;
    let mut scan = scan(&file, &path, base, file_bytes, interval).await?;
    let end = scan.end;
    let tail_start = align_down(end);
    let tail = read_exact(&file, &path, tail_start, (end - tail_start) as usize).await?;
    let stale_end = file_bytes.min(tail_start + RECOVERY_ZERO_BYTES);
    let garbage = garbage_after(&file, &path, end, stale_end).await?;
    let mut allocated = file_bytes;
    if garbage > 0 {
        tracing::warn!(
            path = %path.display(),
            end,
            dropped_bytes = garbage,
            reason = scan.stop.as_deref().unwrap_or(""),
            "truncated a torn or corrupt tail of the active segment"
        );
        file.truncate(end).await.map_err(|e| StorageError::io("truncate", &path, e))?;
        file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", &path, e))?;
        allocated = end;
    }
    let segment = Segment { dsync, ..Segment::new(base, file, path, end) };
    *segment.index.borrow_mut() = scan.index;
    let producers = producers_at(dir, base, &mut scan.producers);
    let next_offset = scan.next_offset;
    let segment = Rc::new(segment);
    Ok(ActiveParts { segment, next_offset, allocated, tail, producers, dir_unsynced: false })
}

/// Producer state at the end of the log: the snapshot taken when segment `base` became active
/// (state below `base`), then the active segment's batches, `scanned`, replayed on top.
pub(crate) fn producers_at(dir: &Path, base: i64, scanned: &mut ProducerTable) -> ProducerTable {
    let path = file_path(dir, base, "producers");
    let mut table = match std::fs::read(&path) {
        Ok(bytes) => ProducerTable::from_snapshot(&bytes).unwrap_or_else(|| {
            tracing::warn!(path = %path.display(), "ignoring a damaged producer state snapshot");
            ProducerTable::default()
        }),
        Err(_) => ProducerTable::default(),
    };
    table.absorb(std::mem::take(scanned));
    table
}

pub(crate) async fn read_exact(
    file: &DmaFile,
    path: &Path,
    position: u64,
    len: usize,
) -> Result<Vec<u8>, StorageError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let read = file.read_at(position, len).await;
    let read = read.map_err(|e| StorageError::io("read", path, e))?;
    if read.len() != len {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: format!("short read: {} of {len} bytes", read.len()),
        });
    }
    Ok(read.to_vec())
}

/// Bytes from `from` up to and including the last non-zero byte before `to` (0 if all zero).
async fn garbage_after(
    file: &DmaFile,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<u64, StorageError> {
    if to <= from {
        return Ok(0);
    }
    let region = file.read_at(from, (to - from) as usize).await;
    let region = region.map_err(|e| StorageError::io("read", path, e))?;
    Ok(region.iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1))
}

/// Scans `[0, file_bytes)` batch by batch, validating each (CRC included) and checking that
/// offsets increase from `base` (gaps allowed: compaction leaves them in closed segments,
/// and followers copy them into their active segment). Stops at the first invalid batch.
pub(crate) async fn scan(
    file: &DmaFile,
    path: &Path,
    base: i64,
    file_bytes: u64,
    interval: u32,
) -> Result<Scan, StorageError> {
    let index = SegmentIndex::new(base);
    let producers = ProducerTable::for_scan();
    let scan = Scan { base, end: 0, next_offset: base, index, producers, stop: None };
    scan_on(file, path, scan, file_bytes, interval).await
}

/// As [`scan`] of the segment at `base`, from `start` = (position, next offset) of a batch
/// boundary; the index it returns covers only the batches from there.
pub(crate) async fn scan_from(
    file: &DmaFile,
    path: &Path,
    base: i64,
    start: (u64, i64),
    file_bytes: u64,
    interval: u32,
) -> Result<Scan, StorageError> {
    let (end, next_offset) = start;
    let index = SegmentIndex::new(next_offset);
    let producers = ProducerTable::for_scan();
    let scan = Scan { base, end, next_offset, index, producers, stop: None };
    scan_on(file, path, scan, file_bytes, interval).await
}

async fn scan_on(
    file: &DmaFile,
    path: &Path,
    mut scan: Scan,
    file_bytes: u64,
    interval: u32,
) -> Result<Scan, StorageError> {
    let mut read_len = SCAN_CHUNK_BYTES;
    while scan.end < file_bytes {
        let len = read_len.min(file_bytes - scan.end);
        let chunk = file.read_at(scan.end, len as usize).await;
        let chunk = chunk.map_err(|e| StorageError::io("read", path, e))?;
        let start = scan.end;
        if chunk.is_empty() {
            scan.stop = Some("short read".into());
            break;
        }
        match walk(&chunk, &mut scan, interval, file_bytes) {
            Walk::Consumed => read_len = SCAN_CHUNK_BYTES,
            Walk::NeedMore(bytes) if scan.end == start && read_len >= bytes => {
                scan.stop = Some("short read".into());
                break;
            }
            Walk::NeedMore(bytes) => read_len = SCAN_CHUNK_BYTES.max(bytes),
            Walk::Stop(reason) => {
                scan.stop = Some(reason);
                break;
            }
        }
        glommio::executor().yield_if_needed().await;
    }
    Ok(scan)
}

/// Walks the batches of `chunk`, which starts at `scan.end`.
fn walk(chunk: &[u8], scan: &mut Scan, interval: u32, file_bytes: u64) -> Walk {
    let mut at = 0usize;
    loop {
        let rest = chunk.get(at..).unwrap_or_default();
        if rest.is_empty() {
            return Walk::Consumed;
        }
        let remaining_in_file = file_bytes - scan.end;
        if rest.len() < HEADER_BYTES {
            if remaining_in_file < HEADER_BYTES as u64 {
                return Walk::Stop("partial header at end of file".into());
            }
            return Walk::NeedMore(HEADER_BYTES as u64);
        }
        let header = match BatchHeader::parse(rest) {
            Ok(header) => header,
            Err(e) => return Walk::Stop(e.to_string()),
        };
        let total = header.total_bytes();
        if total > BATCH_BYTES_MAX || total as u64 > remaining_in_file {
            return Walk::Stop(format!("batch of {total} bytes beyond the file or limit"));
        }
        let Some(batch) = rest.get(..total) else {
            return Walk::NeedMore(total as u64);
        };
        if header.base_offset < scan.next_offset {
            let expected = scan.next_offset;
            return Walk::Stop(format!("base offset {} below {expected}", header.base_offset));
        }
        if header.last_offset() - scan.base > i64::from(u32::MAX) {
            return Walk::Stop(format!("offset {} beyond the segment", header.last_offset()));
        }
        if let Err(e) = record_batch::validate_stored(batch, BATCH_BYTES_MAX) {
            return Walk::Stop(e.to_string());
        }
        scan.index.on_batch(&header, scan.end, interval);
        let marker = record_batch::marker_kind(batch, &header);
        scan.producers.record(&header, marker, header.base_offset, 0);
        scan.end += total as u64;
        scan.next_offset = header.last_offset() + 1;
        at += total;
    }
}

//! One segment: its `.log` file, logical size and indexes; file naming and index files.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, DmaFile, OpenOptions};

use super::index::SegmentIndex;
use super::{StorageError, BLOCK_BYTES};

/// Digits of the zero-padded base offset in segment file names.
pub(crate) const NAME_DIGITS: usize = 20;

/// A segment of the log. `size` is the logical data size: bytes of whole batches written
/// (for the active segment the file is preallocated beyond it).
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) file: Rc<DmaFile>,
    pub(crate) path: PathBuf,
    pub(crate) size: Cell<u64>,
    pub(crate) index: RefCell<SegmentIndex>,
    /// `file` was opened with O_DSYNC (an active segment under fdatasync per append, see
    /// `writer::open_active_file`): a write to it returns durable.
    pub(crate) dsync: bool,
}

impl Segment {
    pub(crate) fn new(base_offset: i64, file: DmaFile, path: PathBuf, size: u64) -> Segment {
        Segment {
            base_offset,
            file: Rc::new(file),
            path,
            size: Cell::new(size),
            index: RefCell::new(SegmentIndex::new(base_offset)),
            dsync: false,
        }
    }
}

/// `<dir>/<20-digit base offset>.<extension>`.
pub(crate) fn file_path(dir: &Path, base_offset: i64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:0width$}.{extension}", width = NAME_DIGITS))
}

/// The file a partition keeps for its next segment when `LogConfig::recycle` is on: the
/// `.log` file of a segment retention deleted, renamed (not a `.log` name: recovery does not
/// list it as a segment).
pub(crate) fn recycled_path(dir: &Path) -> PathBuf {
    dir.join("recycled.segment")
}

/// Base offset encoded in a `.log` file name, if it is one of ours.
pub(crate) fn parse_log_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Name of the file used to prime glommio's io_poll probe, see [`prime_dma_probe`].
pub const DMA_PROBE_FILE: &str = ".strata-dma-probe";

thread_local! {
    /// Devices whose probe this thread already primed.
    static PRIMED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Works around a glommio 0.9 bug: the first `DmaFile` a thread opens on a device runs a
/// 512-byte read at offset 0 on the io_poll ring to decide if the device supports polling, and
/// caches the answer per thread and device. If that file is empty or unwritten at offset 0 the
/// read "succeeds" without device I/O, the device is marked pollable, and every later O_DIRECT
/// read of real data fails with EOPNOTSUPP on devices without poll queues (virtio here).
/// Opening a file with real data at offset 0 first makes the probe answer correctly.
/// Idempotent and cheap after the first call per thread and device; `PartitionLog::open`
/// calls it, but an executor that opens other `DmaFile`s first should call it at start.
pub async fn prime_dma_probe(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(dir).map_err(|e| StorageError::io("stat", dir, e))?.dev();
    if PRIMED_DEVICES.with(|p| p.borrow().contains(&device)) {
        return Ok(());
    }
    let path = dir.join(DMA_PROBE_FILE);
    let has_data = std::fs::metadata(&path).is_ok_and(|m| m.len() >= BLOCK_BYTES);
    if !has_data {
        std::fs::write(&path, [0xa5u8; BLOCK_BYTES as usize])
            .and_then(|()| std::fs::File::open(&path)?.sync_all())
            .map_err(|e| StorageError::io("write probe", &path, e))?;
    }
    let file = DmaFile::open(&path).await.map_err(|e| StorageError::io("open probe", &path, e))?;
    let _ = file.close().await;
    PRIMED_DEVICES.with(|p| p.borrow_mut().push(device));
    Ok(())
}

/// Opens (creating if missing) a segment file for O_DIRECT reads and writes and checks that
/// its DMA alignment divides `BLOCK_BYTES`.
pub(crate) async fn open_log_file(path: &Path) -> Result<DmaFile, StorageError> {
    open_log_file_with(path, 0).await
}

/// [`open_log_file`] with extra `open(2)` flags (`O_DSYNC` for an active segment).
pub(crate) async fn open_log_file_with(path: &Path, flags: i32) -> Result<DmaFile, StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(flags)
        .dma_open(path)
        .await
        .map_err(|e| StorageError::io("open segment", path, e))?;
    if file.alignment() == 0 || !BLOCK_BYTES.is_multiple_of(file.alignment()) {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason: format!("unsupported O_DIRECT alignment {}", file.alignment()),
        });
    }
    Ok(file)
}

/// Writes `bytes` to `path` atomically: a `.tmp` file, fdatasync, rename.
pub(crate) async fn write_file_atomic(path: &Path, bytes: Vec<u8>) -> Result<(), StorageError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = BufferedFile::create(&tmp).await.map_err(|e| StorageError::io("create", &tmp, e))?;
    let len = bytes.len();
    if len > 0 {
        let written = file.write_at(bytes, 0).await;
        let written = written.map_err(|e| StorageError::io("write", &tmp, e))?;
        if written != len {
            let short = std::io::Error::new(std::io::ErrorKind::WriteZero, "short write");
            return Err(StorageError::io("write", &tmp, short));
        }
    }
    file.fdatasync().await.map_err(|e| StorageError::io("fdatasync", &tmp, e))?;
    file.close().await.map_err(|e| StorageError::io("close", &tmp, e))?;
    glommio::io::rename(&tmp, path).await.map_err(|e| StorageError::io("rename", path, e))
}

/// Reads a whole small file, `None` if it does not exist.
pub(crate) async fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    if !path.exists() {
        return Ok(None);
    }
    let file = BufferedFile::open(path).await.map_err(|e| StorageError::io("open", path, e))?;
    let size = file.file_size().await.map_err(|e| StorageError::io("stat", path, e))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let bytes = file.read_at(0, size).await.map_err(|e| StorageError::io("read", path, e))?;
    let out = bytes.to_vec();
    let _ = file.close().await;
    Ok(Some(out))
}

/// Persists a sealed segment's `.index` and `.timeindex`.
pub(crate) async fn persist_index(dir: &Path, segment: &Segment) -> Result<(), StorageError> {
    let (offsets, times) = {
        let index = segment.index.borrow();
        (index.encode_offsets(), index.encode_times())
    };
    let base = segment.base_offset;
    write_file_atomic(&file_path(dir, base, "index"), offsets).await?;
    write_file_atomic(&file_path(dir, base, "timeindex"), times).await
}

/// fsyncs the directory so created, renamed and removed names are durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| StorageError::io("open dir", dir, e))?;
    handle.sync().await.map_err(|e| StorageError::io("fsync dir", dir, e))?;
    handle.close().await.map_err(|e| StorageError::io("close dir", dir, e))
}

pub(crate) fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

pub(crate) fn align_down(value: u64) -> u64 {
    value / BLOCK_BYTES * BLOCK_BYTES
}

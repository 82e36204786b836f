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
}

impl Segment {
    pub(crate) fn new(base_offset: i64, file: DmaFile, path: PathBuf, size: u64) -> Segment {
        Segment {
            base_offset,
            file: Rc::new(file),
            path,
            size: Cell::new(size),
            index: RefCell::new(SegmentIndex::new(base_offset)),
        }
    }
}

/// `<dir>/<20-digit base offset>.<extension>`.
pub(crate) fn file_path(dir: &Path, base_offset: i64, extension: &str) -> PathBuf {
    dir.join(format!(
        "{base_offset:0width$}.{extension}",
        width = NAME_DIGITS
    ))
}

/// Base offset encoded in a `.log` file name, if it is one of ours.
pub(crate) fn parse_log_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Opens (creating if missing) a segment file for O_DIRECT reads and writes and checks that
/// its DMA alignment divides `BLOCK_BYTES`.
pub(crate) async fn open_log_file(path: &Path) -> Result<DmaFile, StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(|e| StorageError::io("open segment", path, e))?;
    if BLOCK_BYTES % file.alignment() != 0 {
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
    let file = BufferedFile::create(&tmp)
        .await
        .map_err(|e| StorageError::io("create", &tmp, e))?;
    let len = bytes.len();
    if len > 0 {
        let written = file.write_at(bytes, 0).await;
        let written = written.map_err(|e| StorageError::io("write", &tmp, e))?;
        if written != len {
            let short = std::io::Error::new(std::io::ErrorKind::WriteZero, "short write");
            return Err(StorageError::io("write", &tmp, short));
        }
    }
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io("fdatasync", &tmp, e))?;
    file.close()
        .await
        .map_err(|e| StorageError::io("close", &tmp, e))?;
    glommio::io::rename(&tmp, path)
        .await
        .map_err(|e| StorageError::io("rename", path, e))
}

/// Reads a whole small file, `None` if it does not exist.
pub(crate) async fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    if !path.exists() {
        return Ok(None);
    }
    let file = BufferedFile::open(path)
        .await
        .map_err(|e| StorageError::io("open", path, e))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| StorageError::io("stat", path, e))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let bytes = file
        .read_at(0, size)
        .await
        .map_err(|e| StorageError::io("read", path, e))?;
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
    handle
        .sync()
        .await
        .map_err(|e| StorageError::io("fsync dir", dir, e))?;
    handle
        .close()
        .await
        .map_err(|e| StorageError::io("close dir", dir, e))
}

pub(crate) fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

pub(crate) fn align_down(value: u64) -> u64 {
    value / BLOCK_BYTES * BLOCK_BYTES
}

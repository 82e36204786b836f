//! TEMPORARY in-memory stand-in with the storage API, so the server can be built and tested
//! while the real segment log is written on the `storage` branch. Replaced at merge.
#![allow(missing_docs, clippy::missing_errors_doc)]

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushPolicy {
    pub every_append: bool,
    pub messages: Option<u64>,
    pub interval_ms: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: Option<u64>,
    pub prealloc_bytes: u64,
    pub index_interval_bytes: u32,
    pub max_batch_bytes: usize,
    pub timestamp_type: TimestampType,
    pub flush: FlushPolicy,
    pub tail_cache_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: None,
            prealloc_bytes: 64 << 20,
            index_interval_bytes: 4096,
            max_batch_bytes: 1 << 20,
            timestamp_type: TimestampType::CreateTime,
            flush: FlushPolicy { every_append: true, messages: None, interval_ms: None },
            tail_cache_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("closed")]
    Closed,
}
impl StorageError {
    pub fn kafka_error_code(&self) -> i16 {
        56
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("corrupt batch")]
    Corrupt,
}
impl AppendError {
    pub fn kafka_error_code(&self) -> i16 {
        2
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset out of range")]
    OffsetOutOfRange { log_start: i64, high_watermark: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

pub struct ReadBatches {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Default)]
struct Inner {
    batches: Vec<(i64, i64, Bytes)>,
    next: i64,
    waiters: Vec<Waker>,
}

#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<RefCell<Inner>>,
}

pub struct PendingAppend {
    base: i64,
    last: i64,
}

impl PendingAppend {
    pub fn base_offset(&self) -> i64 {
        self.base
    }
    pub fn last_offset(&self) -> i64 {
        self.last
    }
    pub fn log_append_time(&self) -> i64 {
        -1
    }
    pub async fn durable(self) -> Result<AppendInfo, StorageError> {
        Ok(AppendInfo {
            base_offset: self.base,
            last_offset: self.last,
            log_append_time: -1,
            log_start_offset: 0,
        })
    }
}

impl PartitionLog {
    pub async fn open(_dir: PathBuf, _config: LogConfig) -> Result<PartitionLog, StorageError> {
        Ok(PartitionLog { inner: Rc::default() })
    }
    pub fn log_start_offset(&self) -> i64 {
        0
    }
    pub fn log_end_offset(&self) -> i64 {
        self.inner.borrow().next
    }
    pub fn high_watermark(&self) -> i64 {
        self.inner.borrow().next
    }
    pub fn set_config(&self, _config: LogConfig) {}
    pub fn append(&self, records: &[u8]) -> Result<PendingAppend, AppendError> {
        let mut inner = self.inner.borrow_mut();
        let base = inner.next;
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < records.len() {
            let b = records.get(pos..).ok_or(AppendError::Corrupt)?;
            if b.len() < 61 {
                return Err(AppendError::Corrupt);
            }
            let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize + 12;
            let count = i32::from_be_bytes([b[57], b[58], b[59], b[60]]) as i64;
            let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
            if len > b.len() || b[16] != 2 || crc32c::crc32c(&b[21..len]) != crc || count < 1 {
                return Err(AppendError::Corrupt);
            }
            out.push((len, count));
            pos += len;
        }
        let mut pos = 0;
        for (len, count) in out {
            let mut batch = BytesMut::from(&records[pos..pos + len]);
            let first = inner.next;
            batch[0..8].copy_from_slice(&first.to_be_bytes());
            inner.next += count;
            let last = inner.next - 1;
            inner.batches.push((first, last, batch.freeze()));
            pos += len;
        }
        for w in inner.waiters.drain(..) {
            w.wake();
        }
        Ok(PendingAppend { base, last: inner.next - 1 })
    }
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        let inner = self.inner.borrow();
        if offset < 0 || offset > inner.next {
            return Err(ReadError::OffsetOutOfRange { log_start: 0, high_watermark: inner.next });
        }
        let mut out = BytesMut::new();
        for (_, last, b) in inner.batches.iter().filter(|(_, last, _)| *last >= offset) {
            let _ = last;
            if !out.is_empty() && out.len() + b.len() > max_bytes {
                break;
            }
            out.extend_from_slice(b);
        }
        Ok(ReadBatches { records: out.freeze(), high_watermark: inner.next, log_start_offset: 0 })
    }
    pub fn wait_for_data(&self, offset: i64) -> impl Future<Output = ()> {
        let inner = self.inner.clone();
        std::future::poll_fn(move |cx| {
            let mut i = inner.borrow_mut();
            if i.next > offset {
                Poll::Ready(())
            } else {
                i.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
    pub async fn offset_for_timestamp(&self, _ts: i64) -> Result<Option<(i64, i64)>, ReadError> {
        Ok(None)
    }
    pub async fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
    pub async fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }
    pub async fn delete(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

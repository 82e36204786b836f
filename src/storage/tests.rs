use std::cell::Cell;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;

use super::index::SegmentIndex;
use super::*;
use crate::record_batch::testing::batch;
use crate::record_batch::{self, BatchTimestampType, Batches};

const RECORDS_PER_BATCH: usize = 5;

pub(super) fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::default().io_memory(1 << 20).spawn(f).unwrap().join().unwrap();
}

pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 10,
        prealloc_bytes: 1 << 20,
        index_interval_bytes: 1024,
        tail_cache_bytes: 4 << 10,
        ..LogConfig::default()
    }
}

/// Batch `i` of the tests: 5 records, timestamps 1000 * i + j.
pub(super) fn test_batch(i: i64) -> Bytes {
    batch(RECORDS_PER_BATCH, 100, 1000 * i)
}

pub(super) async fn append_batches(log: &PartitionLog, from: i64, to: i64) -> Option<AppendInfo> {
    let mut last = None;
    for i in from..to {
        last = Some(log.append(&test_batch(i)).unwrap());
    }
    match last {
        Some(pending) => Some(pending.durable().await.unwrap()),
        None => None,
    }
}

/// A periodic policy that only the size makes due within a test: the count and the interval
/// never come due.
pub(super) fn flush_by_size(bytes: u64) -> FlushPolicy {
    FlushPolicy {
        every_append: false,
        messages: Some(1_000_000),
        interval_ms: Some(3_600_000),
        bytes: Some(bytes),
    }
}

/// Waits until `done()` holds (what the background tasks do lands on its own), polling every
/// millisecond; panics naming `what` if it has not after 30 s.
pub(super) async fn until(what: &str, done: impl Fn() -> bool) {
    let polled = glommio::timer::timeout(Duration::from_secs(30), async {
        while !done() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    });
    polled.await.unwrap_or_else(|_| panic!("{what}"));
}

/// Every batch from the log start to the high watermark, validated.
pub(super) async fn read_all(log: &PartitionLog) -> Vec<(record_batch::BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 64 << 10).await.unwrap();
        assert!(!read.records.is_empty());
        for item in Batches::new(&read.records) {
            let (_, range) = item.unwrap();
            let bytes = read.records.slice(range);
            let header = record_batch::validate(&bytes, 1 << 20).unwrap();
            assert_eq!(header.base_offset, offset);
            offset = header.last_offset() + 1;
            out.push((header, bytes));
        }
    }
    out
}

/// This process's open descriptors of files under `dir`: (descriptor number, link target;
/// an unlinked file's target ends in " (deleted)").
fn descriptors_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), std::fs::read_link(e.path()).ok()?))
        })
        .filter(|(_, target)| target.to_string_lossy().starts_with(&prefix))
        .collect()
}

/// Files under `dir` this process still holds open though they are unlinked: their blocks
/// are freed (and discarded) only by the last close, which must not be left to the shard.
pub(super) fn deleted_but_open(dir: &Path) -> Vec<PathBuf> {
    descriptors_under(dir)
        .into_iter()
        .map(|(_, target)| target)
        .filter(|target| target.to_string_lossy().ends_with(" (deleted)"))
        .collect()
}

/// Files under `dir` this process holds open with O_DSYNC (/proc/self/fdinfo: `flags:` in
/// octal).
fn dsync_descriptors(dir: &Path) -> Vec<PathBuf> {
    let dsync = |fd: &str| {
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            return false; // closed meanwhile
        };
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        u32::from_str_radix(flags, 8).unwrap() & libc::O_DSYNC as u32 != 0
    };
    descriptors_under(dir).into_iter().filter(|(fd, _)| dsync(fd)).map(|(_, t)| t).collect()
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn append_read_round_trip_across_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p0");
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        let info = append_batches(&log, 0, 100).await.unwrap();
        assert_eq!(info.last_offset, 499);
        assert_eq!(log.log_end_offset(), 500);
        assert_eq!(log.high_watermark(), 500);
        assert!(log_files(&dir).len() > 3, "segments rolled");
        for offset in 0..500 {
            let read = log.read(offset, 1).await.unwrap();
            let header = record_batch::validate(&read.records, 1 << 20).unwrap();
            assert!(header.base_offset <= offset && offset <= header.last_offset());
            assert_eq!(header.base_offset, offset / 5 * 5);
            let more = log.read(offset, 3000).await.unwrap();
            let count = Batches::new(&more.records).count();
            assert!(count >= 1 && more.records.len() <= 3000.max(read.records.len()));
            assert_eq!(more.high_watermark, 500);
        }
        assert_eq!(read_all(&log).await.len(), 100);
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 0)));
        let ts = 1000 * 37 + 2;
        assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), Some((37 * 5 + 2, ts)));
        let gap = 1000 * 37 + 900;
        assert_eq!(log.offset_for_timestamp(gap).await.unwrap(), Some((38 * 5, 38_000)));
        assert_eq!(log.offset_for_timestamp(1_000_000).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn closed_segments_are_truncated_and_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        append_batches(&log, 0, 60).await;
        let files = log_files(&dir);
        for file in &files[..files.len() - 1] {
            let bytes = std::fs::read(file).unwrap();
            let batches: Vec<_> = Batches::new(&bytes).collect::<Result<_, _>>().unwrap();
            assert!(!batches.is_empty());
            assert!(file.with_extension("index").exists());
            assert!(file.with_extension("timeindex").exists());
        }
        log.close().await.unwrap();
        // A missing index is rebuilt on open.
        std::fs::remove_file(files[0].with_extension("index")).unwrap();
        std::fs::write(files[1].with_extension("timeindex"), b"garbage").unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert!(files[0].with_extension("index").exists());
        assert_eq!(read_all(&log).await.len(), 60);
        let ts = 1000 * 3 + 4;
        assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), Some((19, ts)));
        log.close().await.unwrap();
    });
}

#[test]
fn restart_after_close_keeps_offsets_and_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        append_batches(&log, 0, 30).await;
        let before = read_all(&log).await;
        log.close().await.unwrap();
        assert!(matches!(log.read(0, 100).await, Err(ReadError::Storage(StorageError::Closed))));
        assert!(matches!(log.append(&test_batch(0)), Err(AppendError::Closed)));

        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 150);
        assert_eq!(log.high_watermark(), 150);
        assert_eq!(read_all(&log).await, before);
        let info = append_batches(&log, 30, 31).await.unwrap();
        assert_eq!(info.base_offset, 150);
        log.close().await.unwrap();
    });
}

#[test]
fn durable_data_survives_a_crash_without_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let dir2 = dir.clone();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        append_batches(&log, 0, 23).await;
        let active = log_files(&dir).pop().unwrap();
        let len = std::fs::metadata(&active).unwrap().len();
        assert!(len >= 16 << 10, "active segment preallocated, {len}");
        // kill -9: no close, no drop of the log; the executor just goes away.
        std::mem::forget(log);
    });
    run(move || async move {
        let log = PartitionLog::open(dir2.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 115);
        let all = read_all(&log).await;
        assert_eq!(all.len(), 23);
        assert_eq!(all[22].1, {
            let mut b = test_batch(22).to_vec();
            record_batch::set_base_offset(&mut b, 110).unwrap();
            record_batch::set_partition_leader_epoch(&mut b, 0).unwrap();
            Bytes::from(b)
        });
        log.close().await.unwrap();
    });
}

/// Appends `garbage` at the logical end of the active segment (which `close` truncated to).
fn torn_tail_case(garbage: Vec<u8>, after_crash: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (d1, d2, d3) = (dir.clone(), dir.clone(), dir.clone());
    run(move || async move {
        let log = PartitionLog::open(d1.clone(), small_config()).await.unwrap();
        append_batches(&log, 0, 12).await;
        let active = log_files(&d1).pop().unwrap();
        let logical: u64 = {
            let segments = log.shared().segments.borrow();
            segments.last().unwrap().size.get()
        };
        if after_crash {
            std::mem::forget(log);
        } else {
            log.close().await.unwrap();
        }
        let file = std::fs::OpenOptions::new().write(true).open(active).unwrap();
        file.write_all_at(&garbage, logical).unwrap();
    });
    run(move || async move {
        let log = PartitionLog::open(d2.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 60);
        let info = append_batches(&log, 12, 13).await.unwrap();
        assert_eq!(info.base_offset, 60);
        log.close().await.unwrap();
    });
    run(move || async move {
        let log = PartitionLog::open(d3.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 65);
        let all = read_all(&log).await;
        assert_eq!(all.len(), 13);
        log.close().await.unwrap();
    });
}

fn next_batch_bytes(base_offset: i64) -> Vec<u8> {
    let mut b = test_batch(99).to_vec();
    record_batch::set_base_offset(&mut b, base_offset).unwrap();
    b
}

#[test]
fn torn_tail_of_random_garbage_is_dropped() {
    let garbage: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    torn_tail_case(garbage.clone(), false);
    torn_tail_case(garbage, true);
}

#[test]
fn torn_tail_half_batch_is_dropped() {
    let batch = next_batch_bytes(60);
    torn_tail_case(batch[..batch.len() / 2].to_vec(), false);
    torn_tail_case(batch[..batch.len() / 2].to_vec(), true);
}

#[test]
fn torn_tail_bad_crc_is_dropped() {
    let mut batch = next_batch_bytes(60);
    let last = batch.len() - 1;
    batch[last] ^= 1;
    torn_tail_case(batch.clone(), false);
    torn_tail_case(batch, true);
}

#[test]
fn stale_longer_tail_never_resurfaces() {
    // A valid batch at the expected offset followed by a long tail; recovery cuts after the
    // first batch (bad CRC in the second) and must zero what follows, so the old third batch
    // is never read back after later, shorter appends.
    let mut tail = next_batch_bytes(60);
    let mut bad = next_batch_bytes(65);
    bad[70] ^= 0xff;
    tail.extend_from_slice(&bad);
    tail.extend_from_slice(&next_batch_bytes(70));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (d1, d2) = (dir.clone(), dir.clone());
    run(move || async move {
        let log = PartitionLog::open(d1.clone(), small_config()).await.unwrap();
        append_batches(&log, 0, 12).await;
        let logical = log.shared().segments.borrow().last().unwrap().size.get();
        let active = log_files(&d1).pop().unwrap();
        std::mem::forget(log);
        let file = std::fs::OpenOptions::new().write(true).open(active).unwrap();
        file.write_all_at(&tail, logical).unwrap();
    });
    run(move || async move {
        let log = PartitionLog::open(d2.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 65, "the valid batch at 60 is kept");
        std::mem::forget(log);
    });
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 65);
        let info = append_batches(&log, 40, 41).await.unwrap();
        assert_eq!(info.base_offset, 65);
        assert_eq!(read_all(&log).await.len(), 14);
        log.close().await.unwrap();
    });
}

#[test]
fn offsets_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir, small_config()).await.unwrap();
        let empty = log.read(0, 100).await.unwrap();
        assert!(empty.records.is_empty());
        append_batches(&log, 0, 2).await;
        let at_hw = log.read(10, 100).await.unwrap();
        assert!(at_hw.records.is_empty());
        assert_eq!(at_hw.high_watermark, 10);
        let err = log.read(11, 100).await.unwrap_err();
        assert_eq!(err.kafka_error_code(), OFFSET_OUT_OF_RANGE);
        assert!(matches!(err, ReadError::OffsetOutOfRange { log_start: 0, high_watermark: 10 }));
        assert!(log.read(-1, 100).await.is_err());
        log.close().await.unwrap();
    });
}

#[test]
fn bad_batch_rejects_the_whole_call() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir, small_config()).await.unwrap();
        let mut records = test_batch(0).to_vec();
        let mut bad = test_batch(1).to_vec();
        bad[30] ^= 1;
        records.extend_from_slice(&bad);
        let err = log.append(&records).unwrap_err();
        assert_eq!(err.kafka_error_code(), 2);
        assert!(matches!(log.append(&[]), Err(AppendError::Batch(BatchError::Empty))));
        let big = batch(1, 2 << 20, 0);
        let err = log.append(&big).unwrap_err();
        assert_eq!(err.kafka_error_code(), 10);
        assert_eq!(log.log_end_offset(), 0);
        let mut two = test_batch(0).to_vec();
        two.extend_from_slice(&test_batch(1));
        let info = log.append(&two).unwrap().durable().await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 9));
        assert_eq!(read_all(&log).await.len(), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn wait_for_data_wakes_on_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir, small_config()).await.unwrap();
        let woke = Rc::new(Cell::new(false));
        let waiter = {
            let wait = log.wait_for_data(0);
            let woke = woke.clone();
            glommio::spawn_local(async move {
                wait.await;
                woke.set(true);
            })
        };
        glommio::yield_if_needed().await;
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        assert!(!woke.get());
        // Dropped waiters release their slots.
        for _ in 0..100 {
            let mut wait = std::pin::pin!(log.wait_for_data(0));
            let poll = futures::poll!(wait.as_mut());
            assert!(poll.is_pending());
        }
        assert!(log.shared().progress.slot_count() <= 2);
        append_batches(&log, 0, 1).await;
        waiter.await;
        assert!(woke.get());
        log.wait_for_data(4).await;
        let closed = log.wait_for_data(5);
        log.close().await.unwrap();
        closed.await;
    });
}

#[test]
fn log_append_time_is_stamped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let config = LogConfig { timestamp_type: TimestampType::LogAppendTime, ..small_config() };
        let log = PartitionLog::open(dir, config).await.unwrap();
        let before = now_ms();
        let pending = log.append(&test_batch(0)).unwrap();
        let stamped = pending.log_append_time();
        assert!(stamped >= before);
        let info = pending.durable().await.unwrap();
        assert_eq!(info.log_append_time, stamped);
        let (header, _) = read_all(&log).await.pop().unwrap();
        assert_eq!(header.timestamp_type(), BatchTimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, stamped);
        assert_eq!(log.offset_for_timestamp(stamped).await.unwrap(), Some((0, stamped)));
        log.close().await.unwrap();
    });
}

#[test]
fn failed_write_poisons_the_log_until_it_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir, small_config()).await.unwrap();
        append_batches(&log, 0, 1).await;
        log.fail_next_write();
        let pending = log.append(&test_batch(1)).unwrap();
        assert!(matches!(pending.durable().await, Err(StorageError::Poisoned)));
        assert!(log.is_poisoned());
        let err = log.append(&test_batch(2)).unwrap_err();
        assert!(matches!(err, AppendError::Poisoned));
        assert_eq!(err.kafka_error_code(), KAFKA_STORAGE_ERROR);
        assert!(matches!(log.flush().await, Err(StorageError::Poisoned)));
        assert_eq!(log.high_watermark(), 5);
        // The failed write is retried once the log recovered: batch 1 was kept.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.is_poisoned() {
            assert!(std::time::Instant::now() < deadline, "the log never recovered");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let info = append_batches(&log, 2, 3).await.unwrap();
        assert_eq!(info.base_offset, 10);
        assert_eq!(read_all(&log).await.len(), 3);
        log.close().await.unwrap();
    });
}

#[test]
fn a_poisoned_log_closes_without_recovering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir, small_config()).await.unwrap();
        append_batches(&log, 0, 1).await;
        log.faults().set(1, super::faults::FaultRates { write_fail: 1000, ..Default::default() });
        let pending = log.append(&test_batch(1)).unwrap();
        assert!(matches!(pending.durable().await, Err(StorageError::Poisoned)));
        assert!(matches!(log.close().await, Err(StorageError::Poisoned)));
    });
}

#[test]
fn relaxed_flush_policy_acks_after_write_and_flush_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            flush: FlushPolicy {
                every_append: false,
                messages: Some(1_000_000),
                interval_ms: Some(60_000),
                bytes: None,
            },
            ..small_config()
        };
        let log = PartitionLog::open(dir, config).await.unwrap();
        append_batches(&log, 0, 40).await;
        assert_eq!(log.high_watermark(), 200);
        assert!(log.shared().synced.get() < 200);
        log.flush().await.unwrap();
        assert_eq!(log.shared().synced.get(), 200);
        log.flush().await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn a_periodic_policy_also_syncs_in_the_background_by_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        // No roll either: only the size comes due (a test batch is ~600 bytes).
        let config =
            LogConfig { flush: flush_by_size(4096), segment_bytes: 1 << 20, ..small_config() };
        let log = PartitionLog::open(dir.clone(), config).await.unwrap();
        append_batches(&log, 0, 2).await;
        assert_eq!(log.shared().synced.get(), 0, "less than a slice: nothing synced");
        for i in 2..20 {
            append_batches(&log, i, i + 1).await;
        }
        // The background sync lands on its own; the writer publishes it on its next turn.
        until("a slice was synced without a flush, the interval or a roll", || {
            log.shared().synced.get() >= 30
        })
        .await;
        assert_eq!(log_files(&dir).iter().filter(|p| p.extension().unwrap() == "log").count(), 1);
        log.close().await.unwrap();
    });
}

#[test]
fn pipelined_appends_are_group_committed_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
        let pendings: Vec<_> = (0..200).map(|i| log.append(&test_batch(i)).unwrap()).collect();
        for (i, pending) in pendings.into_iter().enumerate() {
            let info = pending.durable().await.unwrap();
            assert_eq!(info.base_offset, i as i64 * 5);
        }
        assert_eq!(read_all(&log).await.len(), 200);
        log.delete().await.unwrap();
        assert!(!log.dir().exists());
        assert_eq!(deleted_but_open(log.dir()), Vec::<PathBuf>::new(), "files left open");
    });
}

/// Background growths write zeros ahead of the data while the writer keeps writing below
/// them: nothing written may be overwritten, before or after a crash.
#[test]
fn zeros_written_ahead_never_touch_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let dir2 = dir.clone();
    let config = || LogConfig {
        segment_bytes: 96 << 10,
        prealloc_bytes: 32 << 10,
        prealloc_min_bytes: 4 << 10,
        prezero: true,
        ..small_config()
    };
    let before = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = before.clone();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
        for wave in 0..40 {
            let pendings: Vec<_> =
                (0..15).map(|i| log.append(&test_batch(wave * 15 + i)).unwrap()).collect();
            for pending in pendings {
                pending.durable().await.unwrap();
            }
        }
        assert!(log_files(&dir).len() > 2, "segments rolled");
        *kept.lock().unwrap() = read_all(&log).await;
        std::mem::forget(log);
    });
    let before = std::mem::take(&mut *before.lock().unwrap());
    assert_eq!(before.len(), 600);
    run(move || async move {
        let log = PartitionLog::open(dir2, config()).await.unwrap();
        assert_eq!(log.log_end_offset(), 3000);
        assert_eq!(read_all(&log).await, before);
        log.close().await.unwrap();
    });
}

#[test]
fn segment_index_lookups_and_files() {
    let mut index = SegmentIndex::new(100);
    let mut position = 0u64;
    for i in 0..50i64 {
        let mut bytes = test_batch(i).to_vec();
        record_batch::set_base_offset(&mut bytes, 100 + i * 5).unwrap();
        let header = record_batch::BatchHeader::parse(&bytes).unwrap();
        index.on_batch(&header, position, 2000);
        position += bytes.len() as u64;
    }
    index.seal(350);
    assert_eq!(index.position_for(100), 0);
    assert_eq!(index.position_for(50), 0);
    let mid = index.position_for(200);
    assert!(mid > 0 && mid < position);
    assert!(index.position_for(349) >= mid);
    assert_eq!(index.time_start(0), Some(100));
    let start = index.time_start(49_004).unwrap();
    assert!((300..=345).contains(&start), "{start}");
    assert_eq!(index.time_start(49_005), None);
    let decoded =
        SegmentIndex::decode(100, &index.encode_offsets(), &index.encode_times(), position);
    assert_eq!(decoded.as_ref().map(|d| d.max_timestamp()), Some(49_004));
    assert_eq!(decoded.map(|d| d.position_for(200)), Some(mid));
    assert!(SegmentIndex::decode(100, &[1, 2, 3], &index.encode_times(), position).is_none());
    assert!(SegmentIndex::decode(100, &index.encode_offsets(), &[], position).is_none());
}

#[test]
fn segment_age_rolls_and_interval_flush_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_ms: Some(5),
            flush: FlushPolicy {
                every_append: false,
                messages: None,
                interval_ms: Some(10),
                bytes: None,
            },
            ..small_config()
        };
        let log = PartitionLog::open(dir.clone(), config).await.unwrap();
        append_batches(&log, 0, 1).await;
        assert_eq!(log.shared().synced.get(), 0);
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(log.shared().synced.get(), 5, "the interval timer synced");
        append_batches(&log, 1, 2).await;
        assert_eq!(log_files(&dir).len(), 2, "the aged segment rolled");
        log.set_config(small_config());
        append_batches(&log, 2, 3).await;
        assert_eq!(log.shared().synced.get(), 15, "every_append again");
        assert_eq!(read_all(&log).await.len(), 3);
        log.close().await.unwrap();
    });
}

#[test]
fn idempotent_retries_are_answered_from_the_log_across_rolls_and_restarts() {
    use crate::record_batch::testing::idempotent_batch;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        let mut firsts = Vec::new();
        for i in 0..5 {
            let pending = log.append(&idempotent_batch(9, 0, i * 5, 5)).unwrap();
            firsts.push(pending.durable().await.unwrap());
        }
        let retry = log.append(&idempotent_batch(9, 0, 15, 5)).unwrap().durable().await.unwrap();
        assert_eq!(retry, AppendInfo { log_start_offset: 0, ..firsts[3] });
        assert_eq!(log.log_end_offset(), 25, "a retry writes nothing");
        let gap = log.append(&idempotent_batch(9, 0, 30, 5)).unwrap_err();
        assert_eq!(gap.kafka_error_code(), 45);
        let two = [idempotent_batch(9, 0, 25, 5), idempotent_batch(9, 0, 30, 5)].concat();
        assert_eq!(log.append(&two).unwrap_err().kafka_error_code(), 87);
        // Another producer fills two segments: producer 9's batches are now only in closed
        // segments, so after a restart only the roll-time snapshot remembers them.
        for i in 0..60 {
            log.append(&idempotent_batch(10, 0, i * 5, 5)).unwrap();
        }
        append_batches(&log, 0, 1).await;
        assert!(log_files(&dir).iter().filter(|p| p.extension().unwrap() == "log").count() >= 3);
        log.close().await.unwrap();

        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        let end = log.log_end_offset();
        let retry = log.append(&idempotent_batch(9, 0, 20, 5)).unwrap().durable().await.unwrap();
        assert_eq!((retry.base_offset, retry.last_offset), (firsts[4].base_offset, 24));
        let retry = log.append(&idempotent_batch(10, 0, 295, 5)).unwrap().durable().await.unwrap();
        assert_eq!(retry.last_offset, end - 6, "the active segment's producers too");
        assert_eq!(log.log_end_offset(), end);
        let fenced = log.append(&idempotent_batch(10, 1, 300, 5)).unwrap_err();
        assert_eq!(fenced.kafka_error_code(), 45, "a new epoch starts at sequence 0");
        log.append(&idempotent_batch(10, 1, 0, 5)).unwrap().durable().await.unwrap();
        let zombie = log.append(&idempotent_batch(10, 0, 300, 5)).unwrap_err();
        assert_eq!(zombie.kafka_error_code(), 47);
        log.close().await.unwrap();
    });
}

#[test]
fn transaction_state_survives_rolls_and_restarts() {
    use crate::record_batch::testing::{idempotent_batch, transactional_batch};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        log.append(&transactional_batch(1, 0, 0, 5)).unwrap();
        // Another producer fills segments: producer 1's transaction spans rolls.
        for i in 0..40 {
            log.append(&idempotent_batch(2, 0, i * 5, 5)).unwrap();
        }
        let abort = log.append_marker(1, 0, false, 0).unwrap().durable().await.unwrap();
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        let open = log.append(&transactional_batch(3, 0, 0, 5)).unwrap();
        let open_at = open.base_offset();
        for i in 40..80 {
            log.append(&idempotent_batch(2, 0, i * 5, 5)).unwrap();
        }
        append_batches(&log, 0, 1).await;
        assert!(log_files(&dir).iter().filter(|p| p.extension().unwrap() == "log").count() >= 3);
        assert_eq!(log.last_stable_offset(), open_at);
        assert!(log.append_marker(3, -1, true, 0).is_err(), "a marker from an older epoch");
        log.close().await.unwrap();

        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        let aborted = log.aborted_transactions(0, log.high_watermark());
        let want = AbortedTxn { producer_id: 1, first_offset: 0, last_offset: abort.base_offset };
        assert_eq!(aborted, vec![want]);
        assert_eq!(log.open_transactions(), vec![(3, open_at)]);
        assert_eq!(log.last_stable_offset(), open_at);
        log.append_marker(3, 0, true, 0).unwrap().durable().await.unwrap();
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert_eq!(log.aborted_transactions(0, log.high_watermark()).len(), 1, "a commit");
        let control = crate::record_batch::marker_batch(3, 0, true, 0, 0);
        assert_eq!(log.append(&control).unwrap_err().kafka_error_code(), 87);
        log.close().await.unwrap();
    });
}

/// Reads every record from `from` to the high watermark: (offset, key, value).
async fn read_records(log: &PartitionLog, from: i64) -> Vec<(i64, Option<Vec<u8>>, bool)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.high_watermark() {
        let read = log.read(offset, 64 << 10).await.unwrap();
        assert!(!read.records.is_empty(), "a read below the high watermark returns data");
        for item in Batches::new(&read.records) {
            let (header, range) = item.unwrap();
            let bytes = read.records.slice(range);
            record_batch::validate_stored(&bytes, 1 << 20).unwrap();
            for r in record_batch::record_keys(&bytes).unwrap() {
                if r.offset >= offset {
                    out.push((r.offset, r.key, r.tombstone));
                }
            }
            offset = header.last_offset() + 1;
        }
    }
    out
}

#[test]
fn compaction_drops_aborted_records_and_stops_at_open_transactions() {
    use crate::record_batch::testing::{keyed_batch, keyed_transactional_batch};
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup: CleanupConfig { compact: true, delete: false, ..CleanupConfig::default() },
            ..small_config()
        };
        let log = PartitionLog::open(dir.path().to_path_buf(), config).await.unwrap();
        let v = "value-value-value-value";
        log.append(&keyed_batch(&[(Some("k"), Some("committed"))], 1_000)).unwrap();
        log.append(&keyed_transactional_batch(7, 0, 0, "k", "aborted")).unwrap();
        log.append_marker(7, 0, false, 0).unwrap();
        let mut last = None;
        for i in 0..1000 {
            let key = format!("filler-{}", i % 10);
            last = Some(log.append(&keyed_batch(&[(Some(&key), Some(v))], 1_000)).unwrap());
        }
        // An open transaction from here on: nothing at or after it may be cleaned.
        let open = log.append(&keyed_transactional_batch(8, 0, 0, "k", "open")).unwrap();
        for i in 0..400 {
            let key = format!("filler-{}", i % 10);
            last = Some(log.append(&keyed_batch(&[(Some(&key), Some(v))], 1_000)).unwrap());
        }
        last.unwrap().durable().await.unwrap();
        let logs = log_files(dir.path()).iter().filter(|p| p.extension().unwrap() == "log").count();
        assert!(logs >= 4, "several closed segments");
        // Markers carry the broker's clock.
        log.compact(now_ms() + 1_000).await.unwrap();
        let records = read_records(&log, 0).await;
        assert!(records.iter().any(|r| r.0 == 0), "the committed value of k stays");
        assert!(!records.iter().any(|r| r.0 == 1), "the aborted value of k is gone");
        assert!(records.iter().any(|r| r.0 == open.base_offset()), "the open value stays");
        let after_open = records.iter().filter(|r| r.0 > open.base_offset()).count();
        assert_eq!(after_open, 400, "nothing at or after the last stable offset was cleaned");
        log.close().await.unwrap();
    });
}

#[test]
fn compaction_keeps_latest_per_key_and_survives_reopen_without_indexes() {
    use crate::record_batch::testing::keyed_batch;
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup: CleanupConfig { compact: true, delete: false, ..CleanupConfig::default() },
            ..small_config()
        };
        let log = PartitionLog::open(dir.path().to_path_buf(), config.clone()).await.unwrap();
        let keys = ["a", "b", "c", "d"];
        let mut last = None;
        for i in 0..1000usize {
            // Key b's last record is the tombstone at 501, early enough to be in a closed
            // segment; after it, "e" takes b's turns.
            let key = if i > 501 && i % keys.len() == 1 { "e" } else { keys[i % keys.len()] };
            let value = if i == 501 { None } else { Some("value-value-value-value") };
            last = Some(log.append(&keyed_batch(&[(Some(key), value)], 1_000)).unwrap());
        }
        last.unwrap().durable().await.unwrap();
        assert!(log_files(dir.path()).len() > 3, "several closed segments");
        let stats = log.compact(2_000).await.unwrap();
        assert!(stats.records > 600, "{stats:?}");
        assert_eq!(deleted_but_open(dir.path()), Vec::<PathBuf>::new(), "swapped-out files");
        let records = read_records(&log, 0).await;
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(offsets.last(), Some(&999));
        // Tombstones younger than delete.retention.ms stay.
        assert!(records.iter().any(|r| r.0 == 501 && r.2));
        assert!(!records.iter().any(|r| r.0 == 497), "older record of key b is gone");
        assert!(!records.iter().any(|r| r.0 == 0), "older record of key a is gone");
        log.close().await.unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "index" || e == "timeindex") {
                std::fs::remove_file(path).unwrap();
            }
        }
        std::fs::write(dir.path().join("00000000000000000000.log.cleaned"), b"junk").unwrap();
        let log = PartitionLog::open(dir.path().to_path_buf(), config).await.unwrap();
        assert!(!dir.path().join("00000000000000000000.log.cleaned").exists());
        assert_eq!(read_records(&log, 0).await, records);
        assert_eq!(log.high_watermark(), 1000);
        // A tombstone older than delete.retention.ms goes, and so does its key.
        let far_future = 1_000 + 2 * 24 * 3600 * 1000;
        log.compact(far_future).await.unwrap();
        let after = read_records(&log, 0).await;
        let b = Some(b"b".to_vec());
        assert!(!after.iter().any(|r| r.1 == b), "the expired tombstone is gone");
        assert!(after.len() < records.len());
        log.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_closed_segments_and_persists_the_log_start() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            cleanup: CleanupConfig { retention_ms: Some(1_000), ..CleanupConfig::default() },
            ..small_config()
        };
        let log = PartitionLog::open(dir.path().to_path_buf(), config.clone()).await.unwrap();
        append_batches(&log, 0, 100).await;
        let segments = log_files(dir.path()).len();
        assert!(segments > 2);
        // Batch i has timestamps around 1000 * i: at now = 50_000 the first ones expired.
        let deleted = log.enforce_retention(50_000).await.unwrap();
        assert!(deleted > 0 && deleted < segments);
        assert_eq!(deleted_but_open(dir.path()), Vec::<PathBuf>::new(), "deleted segments closed");
        let start = log.log_start_offset();
        assert!(start > 0);
        assert!(matches!(log.read(0, 1024).await, Err(ReadError::OffsetOutOfRange { .. })));
        assert_eq!(log.delete_records(start + 3).await.unwrap(), start + 3);
        assert!(log.delete_records(log.high_watermark() + 1).await.is_err());
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.path().to_path_buf(), config).await.unwrap();
        assert_eq!(log.log_start_offset(), start + 3);
        // Never the active segment, whatever the time.
        log.enforce_retention(i64::MAX).await.unwrap();
        assert_eq!(log_files(dir.path()).len(), 1);
        assert_eq!(log.high_watermark(), 500);
        log.close().await.unwrap();
    });
}

/// Copies the log directory's files as they are now (what a crash at this instant leaves,
/// for data already durable).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_segment_file_retention_deleted_is_reused_and_its_stale_batches_never_come_back() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            recycle: true,
            cleanup: CleanupConfig { retention_ms: Some(1_000), ..CleanupConfig::default() },
            ..small_config()
        };
        let log = PartitionLog::open(dir.path().to_path_buf(), config.clone()).await.unwrap();
        append_batches(&log, 0, 100).await;
        assert!(log.enforce_retention(50_000).await.unwrap() > 0);
        let kept = super::segment::recycled_path(dir.path());
        assert!(kept.exists(), "the oldest deleted segment's file is kept");
        // Append until the log rolls into it, then a little: the active segment is the old
        // file, new batches first, the old ones after them.
        let mut next = 100;
        while kept.exists() {
            append_batches(&log, next, next + 1).await;
            next += 1;
        }
        append_batches(&log, next, next + 2).await;
        next += 2;
        let expected = read_all(&log).await;
        assert_eq!(log.high_watermark(), next * RECORDS_PER_BATCH as i64);
        let active = log_files(dir.path()).pop().unwrap();
        let bytes = Bytes::from(std::fs::read(&active).unwrap());
        let end = Batches::new(&bytes).map_while(Result::ok).map(|(_, r)| r.end).last().unwrap();
        let stale = bytes.get(end.next_multiple_of(4096)..).unwrap_or_default();
        assert!(stale.iter().any(|&b| b != 0), "the old file's bytes after the data");
        // A crash now: recovery takes the new batches and none of the old ones.
        let crashed = tempfile::tempdir().unwrap();
        let copy = crashed.path().join("log");
        copy_dir(dir.path(), &copy);
        let again = PartitionLog::open(copy.clone(), config.clone()).await.unwrap();
        assert_eq!(again.high_watermark(), log.high_watermark());
        assert_eq!(read_all(&again).await, expected);
        append_batches(&again, next, next + 1).await;
        assert_eq!(again.high_watermark(), (next + 1) * RECORDS_PER_BATCH as i64);
        again.close().await.unwrap();
        // A reset may lower the log start below the kept file's offsets: it goes first.
        assert!(log.enforce_retention(i64::MAX).await.unwrap() > 0);
        assert!(kept.exists());
        log.reset_to(0).await.unwrap();
        assert!(!kept.exists(), "a reset deletes the kept file");
        log.close().await.unwrap();
    });
}

#[test]
fn kept_segment_files_share_the_shards_budget_and_go_when_the_disk_is_low() {
    use super::RecyclePool;
    run(|| async {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = LogConfig {
            recycle: true,
            cleanup: CleanupConfig { retention_ms: Some(1_000), ..CleanupConfig::default() },
            ..small_config()
        };
        // Room for one sealed segment (16 KiB of data at most), not two.
        let pool = RecyclePool::new(24 << 10);
        // What the pool counts for a file: its size in whole KiB.
        let counted = |path: &Path| std::fs::metadata(path).unwrap().len().div_ceil(1024) * 1024;
        let mut logs = Vec::new();
        for dir in [&a, &b] {
            let log = PartitionLog::open(dir.path().to_path_buf(), config.clone()).await.unwrap();
            log.join_recycle_pool(&pool);
            append_batches(&log, 0, 100).await;
            assert!(log.enforce_retention(50_000).await.unwrap() > 0);
            logs.push(log);
        }
        let kept = [a.path(), b.path()].map(|d| super::segment::recycled_path(d).exists());
        assert_eq!(kept, [true, false], "the second file does not fit");
        let held = pool.held_bytes();
        assert_eq!(held, counted(&super::segment::recycled_path(a.path())));
        // A restart counts the kept file again; one that does not fit goes at retention.
        logs[0].close().await.unwrap();
        assert_eq!(pool.held_bytes(), 0);
        let full = RecyclePool::new(held - 1);
        let log = PartitionLog::open(a.path().to_path_buf(), config.clone()).await.unwrap();
        log.join_recycle_pool(&full);
        assert_eq!(full.held_bytes(), 0);
        log.enforce_retention(50_000).await.unwrap();
        assert!(!super::segment::recycled_path(a.path()).exists(), "not counted: deleted");
        log.close().await.unwrap();
        // The log whose file was not kept keeps the next one once the budget has room.
        let log = &logs[1];
        append_batches(log, 100, 200).await;
        assert!(log.enforce_retention(150_000).await.unwrap() > 0);
        let kept = super::segment::recycled_path(b.path());
        assert!(kept.exists());
        assert_eq!(pool.held_bytes(), counted(&kept));
        // Taken by the next segment: the bytes go back.
        let mut next = 200;
        while kept.exists() {
            append_batches(log, next, next + 1).await;
            next += 1;
        }
        assert_eq!(pool.held_bytes(), 0);
        // Below the disk's headroom a kept file goes at once (the shard asks) or at the next
        // retention pass, and nothing is kept.
        append_batches(log, next, next + 100).await;
        assert!(log.enforce_retention(i64::MAX).await.unwrap() > 0);
        assert!(kept.exists());
        pool.set_space_low(true);
        log.release_kept_file().await.unwrap();
        assert!(!kept.exists());
        assert_eq!(pool.held_bytes(), 0);
        pool.set_space_low(false);
        append_batches(log, next + 100, next + 200).await;
        assert!(log.enforce_retention(i64::MAX).await.unwrap() > 0);
        assert!(kept.exists());
        pool.set_space_low(true);
        log.enforce_retention(i64::MAX).await.unwrap();
        assert!(!kept.exists(), "a retention pass deletes it");
        append_batches(log, next + 200, next + 300).await;
        assert!(log.enforce_retention(i64::MAX).await.unwrap() > 0);
        assert!(!kept.exists(), "deleted, and nothing kept while the disk is low");
        assert_eq!(pool.held_bytes(), 0);
        log.close().await.unwrap();
    });
}

/// 10,000 partitions live on one broker: what each costs in memory at rest stays bounded
/// (the writer task's future holds only the states of an idle writer; rare steps are boxed).
#[test]
fn an_idle_partition_log_stays_small_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let config = small_config();
        let loaded = super::recovery::load(&dir, &config).await.unwrap();
        let next = loaded.active.next_offset;
        let shared = Rc::new(super::shared::Shared::new(
            dir.clone(),
            config,
            loaded.segments.clone(),
            next,
            Default::default(),
        ));
        let writer = super::writer::Writer::new(shared.clone(), &loaded.active);
        let future = super::writer::run(writer);
        let (task, state) = (std::mem::size_of_val(&future), std::mem::size_of_val(&*shared));
        eprintln!("writer future {task} bytes, shared state {state} bytes");
        assert!(task <= 1536, "the writer's future is {task} bytes");
        assert!(state <= 1024, "a log's shared state is {state} bytes");
    });
}

#[test]
fn the_shard_cache_budget_is_shared_and_the_least_recently_used_logs_give_back_first() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        // Each log may cache 64 KiB; the three together 64 KiB.
        let config = LogConfig { tail_cache_bytes: 64 << 10, ..small_config() };
        let pool = CachePool::new(64 << 10);
        let mut logs = Vec::new();
        for i in 0..3 {
            let log = PartitionLog::open(root.join(format!("p{i}")), config.clone()).await;
            let log = log.unwrap();
            log.join_cache_pool(&pool);
            logs.push(log);
        }
        let batch_bytes = test_batch(0).len();
        // About 40 KiB into each log, one after the other: log 0 is then the least recently
        // used, log 2 the most.
        let per_log = (40 << 10) / batch_bytes as i64;
        for log in &logs {
            append_batches(log, 0, per_log).await.unwrap();
            assert!(pool.used() <= pool.budget(), "{} > {}", pool.used(), pool.budget());
        }
        let cached: Vec<usize> = logs.iter().map(PartitionLog::cached_bytes).collect();
        assert_eq!(cached.iter().sum::<usize>(), pool.used());
        assert!(cached[2] >= (40 << 10) - batch_bytes, "the latest log keeps its tail: {cached:?}");
        assert!(cached[0] < cached[1] || cached[0] == 0, "the oldest gave back first: {cached:?}");
        // Everything is still readable, from the cache or the disk.
        for log in &logs {
            assert_eq!(read_all(log).await.len(), per_log as usize);
        }
        // A read hit makes log 1 recently used: the next reclaim takes from log 2 first.
        let before = logs[1].cached_bytes();
        if before > 0 {
            let last = logs[1].log_end_offset() - 1;
            logs[1].read(last, 1).await.unwrap();
            append_batches(&logs[0], per_log, per_log + per_log / 2).await.unwrap();
            assert_eq!(logs[1].cached_bytes(), before, "the read hit kept log 1's tail");
        }
        // Closed logs give their bytes back.
        for log in &logs {
            log.close().await.unwrap();
        }
        assert_eq!(pool.used(), 0);
    });
}

/// A batch that is a slice of a larger buffer (a produce frame taken over in place) counts as
/// that buffer against the cache's budget, and gives it all back when evicted.
#[test]
fn a_cached_slice_counts_as_the_buffer_it_keeps_alive() {
    let mut cache = super::cache::TailCache::new();
    let mut first = test_batch(0).to_vec();
    record_batch::set_base_offset(&mut first, 0).unwrap();
    let mut second = test_batch(1).to_vec();
    record_batch::set_base_offset(&mut second, 5).unwrap();
    let (first, second) = (Bytes::from(first), Bytes::from(second));
    let (len, frame) = (first.len(), 64 << 10);
    cache.push(first.clone(), frame);
    assert_eq!(cache.bytes(), frame);
    cache.push(second.clone(), 0);
    assert_eq!(cache.bytes(), frame + second.len(), "a batch in its own allocation: its length");
    cache.evict(second.len(), i64::MAX);
    assert_eq!(cache.bytes(), second.len(), "the oldest went, with all it counted");
    assert_eq!(cache.read(5, 1 << 20, 10), Some(second));
    assert!(len < frame);
}

#[test]
fn the_active_segment_is_opened_with_o_dsync_only_under_fdatasync_per_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p0");
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        let active = |dir: &Path| log_files(dir).pop().unwrap();
        let is_dsync = |dir: &Path| dsync_descriptors(dir).contains(&active(dir));
        let next = Cell::new(3);
        // Appends until a roll: the new active segment is opened with the config then in force.
        let append_until_roll = async |log: &PartitionLog| {
            let before = active(log.dir());
            while active(log.dir()) == before {
                append_batches(log, next.get(), next.get() + 1).await;
                next.set(next.get() + 1);
            }
        };
        append_batches(&log, 0, 3).await;
        assert!(is_dsync(&dir), "opened by the first open");
        append_until_roll(&log).await;
        assert!(is_dsync(&dir), "opened by a roll");
        // A periodic flush: the next segment is plain (written, then fdatasync'ed).
        let periodic =
            FlushPolicy { every_append: false, messages: None, interval_ms: Some(5), bytes: None };
        log.set_config(LogConfig { flush: periodic, ..small_config() });
        append_until_roll(&log).await;
        assert!(!is_dsync(&dir), "periodic flush");
        log.set_config(LogConfig { write_dsync: false, ..small_config() });
        append_until_roll(&log).await;
        assert!(!is_dsync(&dir), "write_dsync off");
        log.set_config(small_config());
        append_until_roll(&log).await;
        assert!(is_dsync(&dir), "back on");
        // A reset starts an empty active segment: opened the same way.
        let last = append_batches(&log, next.get(), next.get() + 2).await.unwrap();
        log.reset_to(last.last_offset + 100).await.unwrap();
        assert!(is_dsync(&dir), "after a reset");
        append_batches(&log, 0, 2).await;
        log.close().await.unwrap();
        // Recovery opens the active segment per the config too; what was written reads back.
        let plain = LogConfig { write_dsync: false, ..small_config() };
        let log = PartitionLog::open(dir.clone(), plain).await.unwrap();
        assert!(!is_dsync(&dir), "recovered with write_dsync off");
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert!(is_dsync(&dir), "recovered with write_dsync on");
        let batches = read_all(&log).await;
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].0.base_offset, last.last_offset + 100);
        log.close().await.unwrap();
    });
}

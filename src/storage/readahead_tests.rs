//! Tests of catch-up reads (`readahead`): the next read and its read-ahead give the same
//! batches as the files hold, across segments, compaction gaps, fetches from mid-batch,
//! truncation, reset and compaction, and read-aheads stay within the shard's pool.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use super::readahead::NextRead;
use super::tests::{append_batches, run, small_config, test_batch};
use super::*;
use crate::record_batch::{self, BatchHeader, Batches};

/// Nothing served from the tail cache: every read below goes to the disk.
fn disk_config() -> LogConfig {
    LogConfig { tail_cache_bytes: 0, segment_bytes: 64 << 10, ..small_config() }
}

async fn open_in_pool(dir: &Path, config: LogConfig, pool: &Rc<CachePool>) -> PartitionLog {
    let log = PartitionLog::open(dir.to_path_buf(), config).await.unwrap();
    log.join_cache_pool(pool);
    log
}

/// Every whole batch of the `.log` files, in offset order, read with std::fs: the truth the
/// reads are checked against.
fn file_batches(dir: &Path) -> Vec<Bytes> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let mut out = Vec::new();
    for path in logs {
        let bytes = Bytes::from(std::fs::read(path).unwrap());
        for item in Batches::new(&bytes) {
            // Preallocated zeros after the active segment's data end the walk.
            let Ok((_, range)) = item else { break };
            out.push(bytes.slice(range));
        }
    }
    out
}

/// Reads from `from` to `end` as a consumer does, `max_bytes` per read, asking each time for
/// the offset after the last batch it got; every read's first batch holds the offset asked
/// for (or is the first after it). Returns the batches read.
async fn read_on(
    log: &PartitionLog,
    from: i64,
    end: i64,
    max_bytes: usize,
    replica: bool,
) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < end {
        let read = if replica {
            log.read_replica(offset, max_bytes).await.unwrap()
        } else {
            log.read(offset, max_bytes).await.unwrap()
        };
        if read.records.is_empty() {
            break;
        }
        let mut first = true;
        for item in Batches::new(&read.records) {
            let (header, range) = item.unwrap();
            assert!(header.last_offset() >= offset, "batch {header:?} is below {offset}");
            if first {
                assert!(read.records.len() <= max_bytes.max(range.len()), "over max_bytes");
            }
            first = false;
            offset = header.last_offset() + 1;
            out.push(read.records.slice(range));
        }
    }
    out
}

fn pool() -> Rc<CachePool> {
    CachePool::new(64 << 20)
}

#[test]
fn sequential_reads_across_segments_match_the_files_and_read_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let pool = pool();
        let log = open_in_pool(&dir, disk_config(), &pool).await;
        append_batches(&log, 0, 400).await.unwrap();
        assert!(log.segment_count() > 2, "several segments");
        let truth = file_batches(&dir);
        let first = log.read(0, 3000).await.unwrap();
        assert!(!first.records.is_empty());
        assert!(pool.used() > 0, "the first read from disk started a read-ahead");
        assert!(log.shared().next_read.borrow().is_some());
        // Several sizes: reads that end inside a segment, at its end, and larger than one.
        for max_bytes in [1, 3000, 10_000, 100 << 10] {
            let hw = log.high_watermark();
            assert_eq!(read_on(&log, 0, hw, max_bytes, false).await, truth, "max {max_bytes}");
        }
        log.close().await.unwrap();
        assert_eq!(pool.used(), 0, "closing gave the read-ahead back");
    });
}

#[test]
fn a_read_from_mid_batch_or_elsewhere_is_located_and_the_next_read_still_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let pool = pool();
        let log = open_in_pool(&dir, disk_config(), &pool).await;
        append_batches(&log, 0, 100).await.unwrap();
        let truth = file_batches(&dir);
        let header = |b: &Bytes| record_batch::BatchHeader::parse(b).unwrap();
        let read = log.read(0, 2000).await.unwrap();
        let next = Batches::new(&read.records).map(|i| i.unwrap().0.last_offset() + 1).last();
        let next = next.unwrap();
        // Another consumer, from the middle of batch 30 (5 records a batch).
        let mid = log.read(30 * 5 + 2, 1).await.unwrap();
        assert_eq!(mid.records, truth[30], "the batch holding offset 152");
        // The first consumer continues.
        let more = log.read(next, 1).await.unwrap();
        let expected = truth.iter().find(|b| header(b).last_offset() >= next).unwrap();
        assert_eq!(&more.records, expected);
        log.close().await.unwrap();
    });
}

/// Appends batches `first..` (timestamps of `round`) until the log ends at `end`, durably.
async fn fill_to(log: &PartitionLog, end: i64, round: i64) {
    let mut last = None;
    let mut i = 0;
    while log.log_end_offset() < end {
        last = Some(log.append(&test_batch(round * 10_000 + i)).unwrap());
        i += 1;
    }
    if let Some(pending) = last {
        pending.durable().await.unwrap();
    }
}

#[test]
fn truncation_and_reset_forget_the_next_read_and_its_read_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let pool = pool();
        let log = open_in_pool(&dir, disk_config(), &pool).await;
        fill_to(&log, 2000, 0).await;
        // Cut inside the active segment, then into a closed one. Each time the next read
        // (and its read-ahead) is at the cut, whose bytes new batches with other timestamps
        // replace.
        for (round, cut) in [(1i64, 1700i64), (2, 300)] {
            let read = log.read(cut - 5, 700).await.unwrap();
            assert_eq!(read.records.len(), test_batch(0).len(), "one batch");
            assert!(pool.used() > 0, "a read-ahead is held");
            log.truncate_to(cut).await.unwrap();
            assert_eq!(log.log_end_offset(), cut);
            assert_eq!(pool.used(), 0, "the truncation dropped the read-ahead");
            assert!(log.shared().next_read.borrow().is_none());
            fill_to(&log, 2000, round).await;
            let truth = file_batches(&dir);
            let at_cut = truth.iter().find(|b| BatchHeader::parse(b).unwrap().base_offset == cut);
            assert_eq!(&log.read(cut, 700).await.unwrap().records, at_cut.unwrap());
            let from = log.log_start_offset();
            assert_eq!(read_on(&log, from, log.high_watermark(), 2000, false).await, truth);
        }
        log.read(1000, 2000).await.unwrap();
        assert!(pool.used() > 0, "a read-ahead is held");
        log.reset_to(5000).await.unwrap();
        assert_eq!(pool.used(), 0, "the reset dropped the read-ahead");
        fill_to(&log, 6000, 3).await;
        let truth = file_batches(&dir);
        assert_eq!(read_on(&log, 5000, log.high_watermark(), 2000, false).await, truth);
        log.close().await.unwrap();
    });
}

#[test]
fn reads_of_compacted_segments_follow_their_gaps_and_compaction_forgets_the_next_read() {
    use crate::record_batch::testing::keyed_batch;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let cleanup = CleanupConfig { compact: true, delete: false, ..CleanupConfig::default() };
        let config = LogConfig { cleanup, ..disk_config() };
        let pool = pool();
        let log = open_in_pool(&dir, config, &pool).await;
        let mut last = None;
        for i in 0..3000usize {
            let key = format!("key-{}", i % 7);
            let value = format!("value-{i:08}");
            let batch = keyed_batch(&[(Some(&key), Some(&value))], 1_000);
            last = Some(log.append(&batch).unwrap());
        }
        last.unwrap().durable().await.unwrap();
        assert!(log.segment_count() > 3, "several segments");
        // A next read and its read-ahead in the first segment, which compaction rewrites.
        log.read(0, 500).await.unwrap();
        assert!(pool.used() > 0, "a read-ahead is held");
        let stats = log.compact(2_000).await.unwrap();
        assert!(stats.records > 0, "{stats:?}");
        assert_eq!(pool.used(), 0, "the compaction dropped the read-ahead");
        let truth = file_batches(&dir);
        assert!(truth.len() < 3000, "compaction left gaps");
        let hw = log.high_watermark();
        for max_bytes in [1, 500, 5000, 100 << 10] {
            assert_eq!(read_on(&log, 0, hw, max_bytes, false).await, truth, "max {max_bytes}");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn replica_reads_past_the_high_watermark_and_consumer_reads_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let pool = pool();
        let log = open_in_pool(&dir, disk_config(), &pool).await;
        log.set_replicated(true);
        fill_to(&log, 2000, 0).await;
        log.set_high_watermark(1000);
        let truth = file_batches(&dir);
        let below: Vec<Bytes> = truth
            .iter()
            .filter(|b| BatchHeader::parse(b).unwrap().base_offset < 1000)
            .cloned()
            .collect();
        let written = log.durable_end();
        assert_eq!(read_on(&log, 0, written, 3000, true).await, truth);
        assert_eq!(read_on(&log, 0, 1000, 3000, false).await, below);
        // A replica's next read (and read-ahead, made up to the written end) just below the
        // high watermark: a consumer taking it over gets nothing at or above the mark.
        log.read_replica(985, 700).await.unwrap();
        let read = log.read(990, 100 << 10).await.unwrap();
        let last = Batches::new(&read.records).map(|i| i.unwrap().0.last_offset()).last();
        assert_eq!(last, Some(999));
        log.close().await.unwrap();
    });
}

#[test]
fn read_ahead_stays_within_its_share_of_the_pool_and_without_it_the_position_still_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        // Room for a read-ahead of 1 KiB, not of 2000 bytes.
        let pool = CachePool::new(4 << 10);
        let log = open_in_pool(&dir, disk_config(), &pool).await;
        fill_to(&log, 2000, 0).await;
        let truth = file_batches(&dir);
        log.read(0, 2000).await.unwrap();
        assert_eq!(pool.used(), 0, "no room: no read-ahead");
        assert!(log.shared().next_read.borrow().is_some(), "the position is kept");
        assert_eq!(read_on(&log, 0, log.high_watermark(), 2000, false).await, truth);
        log.read(0, 1000).await.unwrap();
        assert!(pool.used() > 0 && pool.used() <= pool.budget() / 4, "{}", pool.used());
        // A log outside any pool never reads ahead.
        let alone = PartitionLog::open(dir.join("alone"), disk_config()).await.unwrap();
        fill_to(&alone, 100, 0).await;
        alone.read(0, 1000).await.unwrap();
        let kept = alone.shared().next_read.borrow().as_ref().map(NextRead::reads_ahead);
        assert_eq!(kept, Some(false), "a position, no read-ahead");
        alone.close().await.unwrap();
        log.close().await.unwrap();
        assert_eq!(pool.used(), 0);
    });
}

#[test]
fn a_read_within_a_budget_the_next_batch_exceeds_answers_nothing_and_keeps_the_read_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let pool = pool();
        let log = open_in_pool(&dir, disk_config(), &pool).await;
        append_batches(&log, 0, 100).await.unwrap();
        let truth = file_batches(&dir);
        let header = |b: &Bytes| BatchHeader::parse(b).unwrap();
        let batch_at = |offset: i64| truth.iter().find(|b| header(b).last_offset() >= offset);
        let read = log.read(0, 2000).await.unwrap();
        let next = Batches::new(&read.records).map(|i| i.unwrap().0.last_offset() + 1).last();
        let next = next.unwrap();
        let used = pool.used();
        assert!(used > 0, "a read-ahead from `next`");
        let expected = batch_at(next).unwrap().clone();
        let size = expected.len();
        // The first awaits the read-ahead and puts it back; the second answers from the
        // remembered size alone.
        for _ in 0..2 {
            let read = log.read_within(next, size - 1).await.unwrap();
            assert!(read.records.is_empty(), "the next batch does not fit");
            assert_eq!(pool.used(), used, "the read-ahead is kept");
            let known = log.shared().next_read.borrow().as_ref().and_then(NextRead::batch_bytes);
            assert_eq!(known, Some(size as u64));
        }
        // Room for that batch and less than the one after it: exactly that batch, from the
        // read-ahead; then a consumer reading on gets what the files hold.
        let two = size + batch_at(header(&expected).last_offset() + 1).unwrap().len();
        let read = log.read_within(next, two - 1).await.unwrap();
        assert_eq!(read.records, expected);
        let after = header(&expected).last_offset() + 1;
        let first_after = truth.iter().position(|b| header(b).base_offset == after).unwrap();
        let rest = read_on(&log, after, log.high_watermark(), 3000, false).await;
        assert_eq!(rest, truth[first_after..]);
        // Located from the index (no next read there): nothing when the batch does not fit,
        // whole batches within the budget when it does, and a plain read takes it whole.
        let far = &truth[50];
        let offset = header(far).base_offset;
        assert!(log.read_within(offset, far.len() - 1).await.unwrap().records.is_empty());
        let known = log.shared().next_read.borrow().as_ref().and_then(NextRead::batch_bytes);
        assert_eq!(known, Some(far.len() as u64));
        let within = log.read_within(offset, far.len() + truth[51].len() - 1).await.unwrap();
        assert_eq!(within.records, *far);
        assert_eq!(log.read(offset, 1).await.unwrap().records, *far);
        log.close().await.unwrap();
        assert_eq!(pool.used(), 0);
    });
}

#[test]
fn a_read_within_from_the_tail_cache_returns_whole_batches_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let config = LogConfig { tail_cache_bytes: 1 << 20, ..small_config() };
        let log = PartitionLog::open(dir.clone(), config).await.unwrap();
        append_batches(&log, 0, 10).await.unwrap();
        assert_eq!(log.shared().cache.borrow().first_offset(), Some(0), "all in the cache");
        let truth = file_batches(&dir);
        let (a, b) = (truth[0].len(), truth[1].len());
        assert!(log.read_within(0, a - 1).await.unwrap().records.is_empty());
        assert_eq!(log.read_within(0, a + b - 1).await.unwrap().records, truth[0]);
        let two = log.read_within(0, a + b).await.unwrap().records;
        assert_eq!(two, [truth[0].clone(), truth[1].clone()].concat());
        assert_eq!(log.read(0, 1).await.unwrap().records, truth[0], "at least one batch");
        log.close().await.unwrap();
    });
}

//! Tests of the replication primitives: replica appends, the high watermark, the leader
//! epoch cache, truncation and reset.

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;

use super::tests::{append_batches, deleted_but_open, read_all, run, small_config};
use super::*;
use crate::record_batch::testing::idempotent_batch;
use crate::record_batch::{self, Batches};

/// Every batch from the log start to the durable end (replica reads).
async fn replica_bytes(log: &PartitionLog) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.durable_end() {
        let read = log.read_replica(offset, 64 << 10).await.unwrap();
        if read.records.is_empty() {
            // A log truncated inside a gap of compacted batches ends past its last batch.
            assert!(!out.is_empty() && log.log_end_offset() > offset);
            break;
        }
        for item in Batches::new(&read.records) {
            let (header, range) = item.unwrap();
            offset = header.last_offset() + 1;
            out.push(read.records.slice(range));
        }
    }
    out
}

fn bytes_of(batches: &[(record_batch::BatchHeader, Bytes)]) -> Vec<Bytes> {
    batches.iter().map(|(_, b)| b.clone()).collect()
}

#[test]
fn append_replica_keeps_offsets_epochs_and_bytes_and_never_goes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (leader_dir, follower_dir) = (tmp.path().join("l"), tmp.path().join("f"));
    run(move || async move {
        let leader = PartitionLog::open(leader_dir, small_config()).await.unwrap();
        leader.set_leader_epoch(3);
        append_batches(&leader, 0, 4).await;
        leader.set_leader_epoch(4);
        append_batches(&leader, 4, 8).await;
        let marker = leader.append_marker(7, 0, false, 0).unwrap();
        marker.durable().await.unwrap();
        let batches = replica_bytes(&leader).await;
        assert_eq!(batches.len(), 9);
        let epochs: Vec<i32> =
            batches.iter().map(|b| header_of(b).unwrap().partition_leader_epoch).collect();
        assert_eq!(epochs, [3, 3, 3, 3, 4, 4, 4, 4, 4]);

        let follower = PartitionLog::open(follower_dir, small_config()).await.unwrap();
        let first = batches[..3].concat();
        let pending = follower.append_replica(&first).unwrap();
        assert_eq!((pending.base_offset(), pending.last_offset()), (0, 14));
        pending.durable().await.unwrap();
        let again = follower.append_replica(&batches[0]).unwrap_err();
        assert!(matches!(again, AppendError::OffsetBehind { expected: 15, got: 0 }));
        let back = follower.append_replica(&[batches[4].clone(), batches[3].clone()].concat());
        assert!(matches!(back.unwrap_err(), AppendError::OffsetBehind { expected: 25, got: 15 }));
        assert_eq!(follower.log_end_offset(), 15, "a refused call appends nothing");
        let mut bad = batches[3].to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(follower.append_replica(&bad), Err(AppendError::Batch(_))));
        let rest = batches[3..].concat();
        follower.append_replica(&rest).unwrap().durable().await.unwrap();
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(replica_bytes(&follower).await, batches, "stored verbatim");
        assert_eq!(follower.epoch_entries(), vec![(3, 0), (4, 20)]);
        assert_eq!(follower.aborted_transactions(0, 100), leader.aborted_transactions(0, 100));
        leader.close().await.unwrap();
        follower.close().await.unwrap();
    });
}

#[test]
fn a_follower_copies_a_compacted_leader_gaps_included() {
    use crate::record_batch::testing::keyed_batch;
    let tmp = tempfile::tempdir().unwrap();
    let (leader_dir, follower_dir) = (tmp.path().join("l"), tmp.path().join("f"));
    run(move || async move {
        let config = LogConfig {
            cleanup: CleanupConfig { compact: true, delete: false, ..CleanupConfig::default() },
            ..small_config()
        };
        let leader = PartitionLog::open(leader_dir, config.clone()).await.unwrap();
        let mut last = None;
        for i in 0..400usize {
            // Every third record has a key of its own and stays; the others are overwritten.
            let key = if i % 3 == 0 { format!("k{i}") } else { ["a", "b"][i % 2].to_string() };
            let batch = keyed_batch(&[(Some(&key), Some("value-value-value-value"))], 1_000);
            last = Some(leader.append(&batch).unwrap());
        }
        last.unwrap().durable().await.unwrap();
        leader.compact(2_000).await.unwrap();
        let batches = replica_bytes(&leader).await;
        let bases: Vec<i64> = batches.iter().map(|b| header_of(b).unwrap().base_offset).collect();
        // Where at least two offsets are missing before batch i.
        let gaps: Vec<usize> = (1..bases.len()).filter(|&i| bases[i] > bases[i - 1] + 2).collect();
        assert!(gaps.len() > 1, "compaction left gaps: {bases:?}");

        // Copied a fetch response at a time, gaps and all, into the follower's active segment
        // (one segment holds it all); offsets still never go back.
        let config = LogConfig { segment_bytes: 1 << 20, ..config };
        let follower = PartitionLog::open(follower_dir.clone(), config.clone()).await.unwrap();
        for chunk in batches.chunks(7) {
            follower.append_replica(&chunk.concat()).unwrap().durable().await.unwrap();
        }
        assert_eq!(follower.log_end_offset(), 400);
        assert_eq!(follower.segment_count(), 1);
        assert_eq!(replica_bytes(&follower).await, batches);
        let behind = follower.append_replica(&batches[0]).unwrap_err();
        assert!(matches!(behind, AppendError::OffsetBehind { expected: 400, got: 0 }));
        follower.close().await.unwrap();

        // Recovery scans the gaps in the active segment as data, not as a torn tail.
        let follower = PartitionLog::open(follower_dir.clone(), config.clone()).await.unwrap();
        assert_eq!(follower.log_end_offset(), 400);
        assert_eq!(replica_bytes(&follower).await, batches);

        // Truncating to an offset inside a gap (past the end of the batch before it) keeps
        // every batch below it; the copy resumes with the batch after the gap.
        for &i in [gaps[gaps.len() - 1], gaps[0]].iter() {
            let inside = bases[i] - 1;
            follower.truncate_to(inside).await.unwrap();
            assert_eq!(follower.log_end_offset(), inside);
            assert_eq!(replica_bytes(&follower).await, batches[..i]);
        }
        follower.append_replica(&batches[gaps[0]..].concat()).unwrap().durable().await.unwrap();
        assert_eq!(replica_bytes(&follower).await, batches);
        follower.close().await.unwrap();
        let follower = PartitionLog::open(follower_dir, config).await.unwrap();
        assert_eq!(replica_bytes(&follower).await, batches);
        follower.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

/// A follower may copy what the leader appended before the leader's write and fdatasync of
/// it end, but the high watermark (what consumers read and `acks=all` waits for) never
/// passes the leader's durable end.
#[test]
fn followers_read_appended_data_before_it_is_written_but_the_high_watermark_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        log.set_replicated(true);
        append_batches(&log, 0, 2).await;
        log.set_high_watermark(10);
        assert_eq!(log.durable_end(), 10);

        log.faults().hold_writes.set(true);
        log.faults().hold_syncs.set(true);
        let waiting = log.wait_for_appended(10);
        let pending = log.append(&super::tests::test_batch(2)).unwrap();
        waiting.await;
        assert_eq!(log.shared().written.get(), 10, "the write is held");
        let copied = log.read_replica(10, 1 << 20).await.unwrap();
        assert_eq!(Batches::new(&copied.records).count(), 1, "appended, not yet written");
        log.set_high_watermark(15);
        assert_eq!(log.high_watermark(), 10, "capped by the durable end");
        assert!(log.read(10, 1 << 20).await.unwrap().records.is_empty(), "consumers wait");

        log.faults().hold_writes.set(false);
        log.wait_for_written(14).await;
        assert_eq!(log.durable_end(), 10, "the sync is held");
        log.set_high_watermark(15);
        assert_eq!(log.high_watermark(), 10, "still capped by the durable end");

        log.faults().hold_syncs.set(false);
        pending.durable().await.unwrap();
        log.set_high_watermark(15);
        assert_eq!(log.high_watermark(), 15);
        assert_eq!(Batches::new(&log.read(10, 1 << 20).await.unwrap().records).count(), 1);
        log.close().await.unwrap();
    });
}

#[test]
fn high_watermark_caps_reads_clamps_never_goes_back_and_wakes_waiters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        append_batches(&log, 0, 2).await;
        log.set_replicated(true);
        assert_eq!(log.high_watermark(), 0, "no checkpoint: the log start");
        append_batches(&log, 2, 6).await;
        assert_eq!(log.durable_end(), 30);
        let read = log.read(0, 1 << 20).await.unwrap();
        assert!(read.records.is_empty());
        assert!(log.read(5, 1 << 20).await.is_err(), "above the high watermark");
        let replica = log.read_replica(0, 1 << 20).await.unwrap();
        assert_eq!(Batches::new(&replica.records).count(), 6);
        assert_eq!(replica.high_watermark, 0);

        let woken = Rc::new(Cell::new(false));
        let waiter = {
            let (wait, woken) = (log.wait_for_data(9), woken.clone());
            glommio::spawn_local(async move {
                wait.await;
                woken.set(true);
            })
        };
        let hw_waiter = glommio::spawn_local(log.wait_for_high_watermark(12));
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!woken.get());
        log.set_high_watermark(10);
        waiter.await;
        assert!(woken.get());
        assert_eq!(log.high_watermark(), 10);
        let read = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(Batches::new(&read.records).count(), 2, "only batches below the HW");
        assert_eq!(read.high_watermark, 10);
        log.set_high_watermark(5);
        assert_eq!(log.high_watermark(), 10, "never backwards");
        log.set_high_watermark(1000);
        assert_eq!(log.high_watermark(), 30, "clamped to the durable end");
        hw_waiter.await;
        log.wait_for_durable(29).await;
        assert_eq!(log.last_stable_offset(), 30);
        log.close().await.unwrap();

        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert_eq!(log.high_watermark(), 30, "not replicated: the durable end");
        log.set_replicated(true);
        assert_eq!(log.high_watermark(), 30, "the checkpoint");
        log.set_replicated(false);
        append_batches(&log, 6, 7).await;
        assert_eq!(log.high_watermark(), 35);
        log.close().await.unwrap();
    });
}

#[test]
fn high_watermark_checkpoint_is_clamped_and_bounds_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let mut config = small_config();
        config.cleanup.retention_ms = Some(0);
        let log = PartitionLog::open(dir.clone(), config.clone()).await.unwrap();
        log.set_replicated(true);
        append_batches(&log, 0, 80).await;
        assert!(log.segment_count() >= 3);
        let second_base = log.shared().segments.borrow()[1].base_offset;
        log.set_high_watermark(second_base);
        let deleted = log.enforce_retention(now_ms()).await.unwrap();
        assert_eq!(deleted, 1, "only segments wholly below the high watermark");
        assert_eq!(log.log_start_offset(), second_base);
        log.close().await.unwrap();
        std::fs::write(dir.join("high-watermark"), "100000").unwrap();
        let log = PartitionLog::open(dir.clone(), config).await.unwrap();
        log.set_replicated(true);
        assert_eq!(log.high_watermark(), 400, "clamped to the recovered end");
        log.close().await.unwrap();
    });
}

#[test]
fn epoch_cache_answers_like_kafka_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert_eq!(log.latest_epoch(), None);
        assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
        append_batches(&log, 0, 1).await;
        log.set_leader_epoch(1);
        append_batches(&log, 1, 3).await;
        log.set_leader_epoch(2);
        log.set_leader_epoch(2);
        append_batches(&log, 3, 5).await;
        log.set_leader_epoch(1);
        log.set_leader_epoch(5);
        append_batches(&log, 5, 6).await;
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(log.epoch_entries(), vec![(1, 5), (2, 15), (5, 25)]);
        let epochs: Vec<i32> =
            read_all(&log).await.iter().map(|(h, _)| h.partition_leader_epoch).collect();
        assert_eq!(epochs, [0, 1, 1, 2, 2, 5]);
        let check = |log: &PartitionLog| {
            assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
            assert_eq!(log.end_offset_for_epoch(1), (1, 15));
            assert_eq!(log.end_offset_for_epoch(2), (2, 25));
            assert_eq!(log.end_offset_for_epoch(4), (2, 25));
            assert_eq!(log.end_offset_for_epoch(5), (5, 30));
            assert_eq!(log.end_offset_for_epoch(9), (5, 30));
        };
        check(&log);
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        check(&log);
        log.close().await.unwrap();
        std::fs::write(dir.join("leader-epoch-checkpoint"), "0\n4\n1 5\n2 15\n5 25\n6 31\n")
            .unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert_eq!(log.epoch_entries(), vec![(1, 5), (2, 15), (5, 25)], "beyond the LEO");
        log.close().await.unwrap();
    });
}

/// A log with batches `0..keep` then `more`, appended directly: the reference for a log that
/// had a longer suffix truncated.
async fn reference(dir: std::path::PathBuf, keep: i64, more: std::ops::Range<i64>) -> Vec<Bytes> {
    let log = PartitionLog::open(dir, small_config()).await.unwrap();
    append_batches(&log, 0, keep).await;
    append_batches(&log, more.start, more.end).await;
    let out = bytes_of(&read_all(&log).await);
    log.close().await.unwrap();
    out
}

async fn check_truncation(dir: std::path::PathBuf, total: i64, cut_batch: i64, mid: i64) {
    let log = PartitionLog::open(dir.join("t"), small_config()).await.unwrap();
    log.set_leader_epoch(1);
    append_batches(&log, 0, total / 2).await;
    log.set_leader_epoch(2);
    append_batches(&log, total / 2, total).await;
    let cut = cut_batch * 5;
    log.truncate_to(cut + mid).await.unwrap();
    assert_eq!(deleted_but_open(log.dir()), Vec::<std::path::PathBuf>::new(), "closed");
    assert_eq!(log.log_end_offset(), cut);
    assert_eq!(log.durable_end(), cut);
    assert_eq!(log.high_watermark(), cut);
    let expected_epochs =
        if cut_batch > total / 2 { vec![(1, 0), (2, total / 2 * 5)] } else { vec![(1, 0)] };
    assert_eq!(log.epoch_entries(), expected_epochs);
    log.set_leader_epoch(0);
    append_batches(&log, 100, 130).await;
    let want = reference(dir.join("r"), cut_batch, 100..130).await;
    let epochs_of = |batches: &[Bytes]| -> Vec<Bytes> {
        // The truncated log's first batches carry epochs 1 and 2: compare with epoch 0.
        batches
            .iter()
            .map(|b| {
                let mut b = bytes::BytesMut::from(&b[..]);
                record_batch::set_partition_leader_epoch(&mut b, 0).unwrap();
                b.freeze()
            })
            .collect()
    };
    let got = bytes_of(&read_all(&log).await);
    assert_eq!(epochs_of(&got), want);
    let middle = (cut_batch + 10) * 5 + 2;
    let read = log.read(middle, 1).await.unwrap();
    let header = header_of(&read.records).unwrap();
    assert_eq!(header.base_offset, middle - 2);
    let found = log.offset_for_timestamp(1000 * 110 + 3).await.unwrap();
    assert_eq!(found, Some(((cut_batch + 10) * 5 + 3, 1000 * 110 + 3)));
    let found = log.offset_for_timestamp(1000 * (cut_batch - 1)).await.unwrap();
    assert_eq!(found, Some(((cut_batch - 1) * 5, 1000 * (cut_batch - 1))));
    log.close().await.unwrap();

    let log = PartitionLog::open(dir.join("t"), small_config()).await.unwrap();
    assert_eq!(epochs_of(&bytes_of(&read_all(&log).await)), want);
    assert_eq!(log.log_end_offset(), (cut_batch + 30) * 5);
    let found = log.offset_for_timestamp(1000 * 115).await.unwrap();
    assert_eq!(found, Some(((cut_batch + 15) * 5, 1000 * 115)));
    append_batches(&log, 200, 201).await;
    log.close().await.unwrap();
}

#[test]
fn truncate_within_the_active_segment_then_append_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        check_truncation(dir.join("a"), 10, 6, 0).await;
        check_truncation(dir.join("b"), 10, 7, 3).await;
    });
}

#[test]
fn truncate_across_segments_then_append_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        check_truncation(dir.join("a"), 90, 12, 2).await;
        check_truncation(dir.join("b"), 90, 50, 0).await;
    });
}

#[test]
fn truncate_at_a_segment_base_and_no_op_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.join("t"), small_config()).await.unwrap();
        append_batches(&log, 0, 90).await;
        log.truncate_to(1000).await.unwrap();
        assert_eq!(log.log_end_offset(), 450);
        let base = log.shared().segments.borrow()[2].base_offset;
        let count = log.segment_count();
        log.truncate_to(base).await.unwrap();
        assert_eq!(log.log_end_offset(), base);
        assert_eq!(log.segment_count(), 3, "two kept, a new active one");
        assert!(count > 3);
        append_batches(&log, 300, 310).await;
        let got = bytes_of(&read_all(&log).await);
        log.close().await.unwrap();
        let want = reference(dir.join("r"), base / 5, 300..310).await;
        assert_eq!(got, want);
        let log = PartitionLog::open(dir.join("t"), small_config()).await.unwrap();
        assert_eq!(bytes_of(&read_all(&log).await), want);
        log.close().await.unwrap();
    });
}

#[test]
fn a_no_op_truncation_drops_an_epoch_that_led_no_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.join("t"), small_config()).await.unwrap();
        log.set_leader_epoch(0);
        append_batches(&log, 0, 2).await;
        // Led epoch 1 without appending, then the new leader (epoch 2) says the log
        // diverges at its end: the cut is a no-op, but epoch 1 must go.
        log.set_leader_epoch(1);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 10)]);
        log.truncate_to(10).await.unwrap();
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.epoch_entries(), vec![(0, 0)]);
        assert_eq!(log.latest_epoch(), Some(0));
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.join("t"), small_config()).await.unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0)], "persisted");
        log.close().await.unwrap();
    });
}

#[test]
fn reset_to_empties_the_log_at_an_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        log.set_leader_epoch(3);
        append_batches(&log, 0, 60).await;
        log.append(&idempotent_batch(9, 0, 0, 5)).unwrap().durable().await.unwrap();
        assert!(log.segment_count() > 1, "old segments to remove");
        log.reset_to(1000).await.unwrap();
        assert_eq!(deleted_but_open(&dir), Vec::<std::path::PathBuf>::new(), "files closed");
        assert_eq!(log.log_start_offset(), 1000);
        assert_eq!(log.log_end_offset(), 1000);
        assert_eq!(log.high_watermark(), 1000);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.latest_epoch(), None);
        assert!(log.producers().is_empty());
        assert!(log.read(1000, 100).await.unwrap().records.is_empty());
        assert!(log.read(999, 100).await.is_err());
        let info = append_batches(&log, 0, 2).await.unwrap();
        assert_eq!(info.base_offset, 1005);
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        assert_eq!(log.log_start_offset(), 1000);
        assert_eq!(log.log_end_offset(), 1010);
        assert_eq!(read_all(&log).await.len(), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn producer_state_follows_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        for i in 0..5 {
            log.append(&idempotent_batch(9, 0, i * 5, 5)).unwrap();
        }
        append_batches(&log, 0, 1).await;
        // In the active segment: batches 3 and 4 go, sequence 15 is next again.
        log.truncate_to(15).await.unwrap();
        let dup = log.append(&idempotent_batch(9, 0, 10, 5)).unwrap();
        assert_eq!(dup.base_offset(), 10, "a retry of a kept batch");
        let gap = log.append(&idempotent_batch(9, 0, 20, 5)).unwrap_err();
        assert_eq!(gap.kafka_error_code(), 45);
        let next = log.append(&idempotent_batch(9, 0, 15, 5)).unwrap();
        assert_eq!(next.base_offset(), 15);
        next.durable().await.unwrap();
        // Another producer fills segments, then producer 9's last batch is cut from a closed
        // segment.
        let at = log.append(&idempotent_batch(9, 0, 20, 5)).unwrap().base_offset();
        for i in 0..60 {
            log.append(&idempotent_batch(10, 0, i * 5, 5)).unwrap();
        }
        let open = log.append(&record_batch::testing::transactional_batch(11, 0, 0, 5)).unwrap();
        append_batches(&log, 0, 1).await;
        assert!(log.segment_count() >= 3);
        assert_eq!(log.last_stable_offset(), open.base_offset());
        log.truncate_to(at).await.unwrap();
        assert!(log.segment_count() >= 2);
        assert_eq!(log.last_stable_offset(), at, "the open transaction went");
        assert!(log.producers().iter().all(|p| p.producer_id == 9));
        let gap = log.append(&idempotent_batch(9, 0, 25, 5)).unwrap_err();
        assert_eq!(gap.kafka_error_code(), 45);
        let next = log.append(&idempotent_batch(9, 0, 20, 5)).unwrap();
        assert_eq!(next.base_offset(), at);
        next.durable().await.unwrap();
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        let retry = log.append(&idempotent_batch(9, 0, 20, 5)).unwrap();
        assert_eq!(retry.base_offset(), at, "a retry after the restart");
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_survives_a_crash_and_interrupted_truncations_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (dir2, dir3) = (dir.clone(), dir.clone());
    run(move || async move {
        for (name, cut) in [("active", 88), ("closed", 20)] {
            let log = PartitionLog::open(dir.join(name), small_config()).await.unwrap();
            append_batches(&log, 0, 90).await;
            log.truncate_to(cut * 5).await.unwrap();
            append_batches(&log, 100, 103).await;
            // kill -9: no close.
            std::mem::forget(log);
        }
    });
    run(move || async move {
        for (name, cut) in [("active", 88), ("closed", 20)] {
            let log = PartitionLog::open(dir2.join(name), small_config()).await.unwrap();
            let want = reference(dir2.join(format!("{name}-ref")), cut, 100..103).await;
            assert_eq!(bytes_of(&read_all(&log).await), want, "{name}");
            log.close().await.unwrap();
        }
    });
    // The state a crash leaves in the middle of a truncation into closed segment 1: it is cut
    // (index files gone), an empty segment starts at the new end, later segments remain.
    run(move || async move {
        let log = PartitionLog::open(dir3.join("mid"), small_config()).await.unwrap();
        append_batches(&log, 0, 90).await;
        let (base, next_base) = {
            let segments = log.shared().segments.borrow();
            (segments[1].base_offset, segments[2].base_offset)
        };
        log.close().await.unwrap();
        let dir = dir3.join("mid");
        let path = |base: i64, ext: &str| super::segment::file_path(&dir, base, ext);
        let bytes = std::fs::read(path(base, "log")).unwrap();
        let (mut position, mut end) = (0usize, base);
        for item in Batches::new(&bytes).take(3) {
            let (header, range) = item.unwrap();
            (position, end) = (range.end, header.last_offset() + 1);
        }
        assert!(end < next_base);
        std::fs::remove_file(path(base, "index")).unwrap();
        std::fs::remove_file(path(base, "timeindex")).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(path(base, "log")).unwrap();
        file.set_len(position as u64).unwrap();
        std::fs::File::create(path(end, "log")).unwrap();
        let log = PartitionLog::open(dir.clone(), small_config()).await.unwrap();
        // A hole from `end` to the next segment: the dropped suffix, partly still there.
        let offsets: Vec<i64> =
            replica_bytes(&log).await.iter().map(|b| header_of(b).unwrap().base_offset).collect();
        let kept: Vec<i64> = offsets.iter().copied().take_while(|&o| o < end).collect();
        assert_eq!(offsets.get(kept.len()), Some(&next_base));
        assert_eq!(kept, (0..end / 5).map(|i| i * 5).collect::<Vec<_>>());
        log.truncate_to(end).await.unwrap();
        assert_eq!(log.log_end_offset(), end);
        append_batches(&log, 100, 101).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(dir, small_config()).await.unwrap();
        assert_eq!(read_all(&log).await.len() as i64, end / 5 + 1);
        log.close().await.unwrap();
    });
}

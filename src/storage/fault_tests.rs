//! Storage under an I/O layer that fails (see `faults`): writes fail (EIO, ENOSPC) or stop
//! short, fdatasyncs fail and may lose what was written since the last good one,
//! preallocations hit ENOSPC, at points drawn from a seed, with the active segment opened
//! with O_DSYNC or not (`seeded_config`). For many seeds, a workload of
//! pipelined appends runs while copies of the partition directory are taken at random points
//! (a kill -9 at that moment) and recovered. Checked every time: no acknowledged batch is
//! lost or changed, every batch served passes validation (CRC included), offsets are
//! contiguous, and the live log recovers by itself once the faults stop.
//!
//! `STRATA_STORAGE_FAULT_SEED=n` replays one seed; `STRATA_STORAGE_FAULT_SEEDS=n` runs n.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::faults::FaultRates;
use super::tests::{flush_by_size, read_all, run, until};
use super::*;
use crate::record_batch::testing::batch;

/// Bytes of a stored batch compared with what was appended: from the magic byte on (the
/// base offset and leader epoch before it are rewritten by the log).
const COMPARED_FROM: usize = 16;
const SEEDS_DEFAULT: u64 = 16;
const OPERATIONS: usize = 160;

fn seeds() -> Vec<u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(seed) = env("STRATA_STORAGE_FAULT_SEED") {
        return vec![seed];
    }
    (1..=env("STRATA_STORAGE_FAULT_SEEDS").unwrap_or(SEEDS_DEFAULT)).collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn config(every_append: bool) -> LogConfig {
    let flush = if every_append {
        FlushPolicy::default()
    } else {
        FlushPolicy { every_append: false, messages: Some(3), interval_ms: Some(5), bytes: None }
    };
    LogConfig {
        segment_bytes: 48 << 10,
        prealloc_bytes: 32 << 10,
        prealloc_min_bytes: 4 << 10,
        index_interval_bytes: 1024,
        tail_cache_bytes: 4 << 10,
        flush,
        ..LogConfig::default()
    }
}

/// Odd seeds open active segments with O_DSYNC (`LogConfig::write_dsync`), even ones
/// write then fdatasync: both ways meet every fault (for O_DSYNC writes a failed fdatasync
/// stands for the sync half of the last write failing).
fn seeded_config(every_append: bool, seed: u64) -> LogConfig {
    LogConfig { write_dsync: seed % 2 == 1, ..config(every_append) }
}

/// Acknowledged batches by base offset: the compared bytes.
type Acked = BTreeMap<i64, Bytes>;

/// Every acknowledged batch is served, unchanged, at its offset (and `read_all` checked that
/// every served batch validates and that offsets are contiguous).
async fn check(log: &PartitionLog, acked: &Acked, seed: u64, what: &str) {
    let served: BTreeMap<i64, Bytes> =
        read_all(log).await.into_iter().map(|(h, b)| (h.base_offset, b)).collect();
    for (offset, expected) in acked {
        let Some(got) = served.get(offset) else {
            panic!("seed {seed}: {what}: the acknowledged batch at offset {offset} is lost");
        };
        assert_eq!(&got[COMPARED_FROM..], &expected[..], "seed {seed}: {what}: batch {offset}");
    }
}

async fn wait_recovered(log: &PartitionLog, seed: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.is_poisoned() {
        assert!(Instant::now() < deadline, "seed {seed}: the log never recovered");
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// Flushes once the faults stopped. A fault drawn before they stopped may still land: a
/// periodic policy's background fdatasync that drew one is still injecting it (reading and
/// damaging a block) when the test clears the plan, and the flush that collects it meets a
/// freshly poisoned log. At most one such sync and one growth are in flight per log, so a
/// few rounds of recovery end it.
async fn flush_once_recovered(log: &PartitionLog, seed: u64) {
    for _ in 0..3 {
        wait_recovered(log, seed).await;
        match log.flush().await {
            Err(StorageError::Poisoned) => continue,
            result => return result.unwrap(),
        }
    }
    panic!("seed {seed}: the log was poisoned again after the faults stopped");
}

/// Copies the partition directory as a kill -9 at this instant would leave it, opens the
/// copy (no faults) and checks it holds every batch acknowledged so far.
async fn crash_copy(dir: &Path, copy: &Path, acked: &Acked, seed: u64, every_append: bool) {
    let _ = std::fs::remove_dir_all(copy);
    std::fs::create_dir_all(copy).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    let log =
        PartitionLog::open(copy.to_path_buf(), seeded_config(every_append, seed)).await.unwrap();
    check(&log, acked, seed, "after a crash").await;
    log.close().await.unwrap();
}

/// A batch of 1..4 records of 10..3000 bytes, made unique by its timestamp.
fn random_batch(rng: &mut Rng, i: usize) -> Bytes {
    let count = 1 + rng.below(4) as usize;
    let value_bytes = 10 + rng.below(3000) as usize;
    batch(count, value_bytes, 1_000_000 * i as i64 + rng.below(1000) as i64)
}

fn run_seed(seed: u64, every_append: bool, rates: FaultRates) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, copy) = (tmp.path().join("log"), tmp.path().join("crash"));
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), seeded_config(every_append, seed)).await.unwrap();
        log.faults().set(seed, rates);
        let mut rng = Rng(seed ^ 0x5eed);
        let mut acked = Acked::new();
        let mut i = 0;
        while i < OPERATIONS {
            if rng.below(12) == 0 {
                crash_copy(&dir, &copy, &acked, seed, every_append).await;
            }
            let mut pending = Vec::new();
            for _ in 0..=rng.below(4) {
                let batch = random_batch(&mut rng, i);
                i += 1;
                match log.append(&batch) {
                    Ok(append) => pending.push((append, batch)),
                    Err(AppendError::Poisoned) => break,
                    Err(e) => panic!("seed {seed}: append refused: {e}"),
                }
            }
            for (append, batch) in pending {
                if let Ok(info) = append.durable().await {
                    acked.insert(info.base_offset, batch.slice(COMPARED_FROM..));
                }
            }
            wait_recovered(&log, seed).await;
        }
        let injected = log.faults().injected.get();
        log.faults().clear();
        flush_once_recovered(&log, seed).await;
        assert_eq!(log.faults().injected.get(), injected, "seed {seed}: a fault after clear");
        check(&log, &acked, seed, "live").await;
        let last = log.append(&random_batch(&mut rng, i)).unwrap().durable().await.unwrap();
        assert!(last.base_offset >= acked.keys().next_back().map_or(0, |o| o + 1));
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.clone(), seeded_config(every_append, seed)).await.unwrap();
        check(&log, &acked, seed, "after a clean restart").await;
        log.close().await.unwrap();
        assert!(injected > 0, "seed {seed}: no fault was injected");
        eprintln!("seed {seed}: {} acknowledged, {injected} faults injected", acked.len());
    });
}

#[test]
fn acknowledged_batches_survive_seeded_io_faults_and_crashes() {
    let rates = FaultRates {
        write_fail: 40,
        short_write: 40,
        sync_fail: 60,
        lose_unsynced: 500,
        grow_enospc: 80,
    };
    for seed in seeds() {
        run_seed(seed, true, rates);
    }
}

#[test]
fn written_batches_survive_seeded_faults_under_a_periodic_flush() {
    // Under a periodic flush an append is acknowledged once written, before any fdatasync:
    // a device that drops unsynced writes loses acknowledged data by design (Kafka's
    // flush.ms has the same contract), so no fault here damages written data.
    let rates = FaultRates {
        write_fail: 40,
        short_write: 40,
        sync_fail: 60,
        grow_enospc: 80,
        ..Default::default()
    };
    for seed in seeds().into_iter().take(8) {
        run_seed(seed, false, rates);
    }
}

#[test]
fn a_failed_fsync_that_lost_data_reloads_and_drops_only_unacknowledged_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), config(true)).await.unwrap();
        let first = log.append(&random_batch(&mut Rng(1), 0)).unwrap().durable().await.unwrap();
        // Every fdatasync fails and damages what it should have synced.
        let always = FaultRates { sync_fail: 1000, lose_unsynced: 1000, ..Default::default() };
        log.faults().set(7, always);
        let lost = log.append(&random_batch(&mut Rng(2), 1)).unwrap();
        assert!(matches!(lost.durable().await, Err(StorageError::Poisoned)));
        assert!(log.is_poisoned());
        assert!(matches!(log.append(&random_batch(&mut Rng(3), 2)), Err(AppendError::Poisoned)));
        log.faults().clear();
        wait_recovered(&log, 0).await;
        // The damaged batch was dropped; its offsets are used again by the next append.
        assert_eq!(log.log_end_offset(), first.last_offset + 1);
        let next = log.append(&random_batch(&mut Rng(4), 3)).unwrap().durable().await.unwrap();
        assert_eq!(next.base_offset, first.last_offset + 1);
        assert_eq!(read_all(&log).await.len(), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn enospc_while_preallocating_refuses_appends_until_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(dir.clone(), config(true)).await.unwrap();
        assert_eq!(std::fs::metadata(dir.join(format!("{:020}.log", 0))).unwrap().len(), 0);
        log.faults().set(3, FaultRates { grow_enospc: 1000, ..Default::default() });
        let first = random_batch(&mut Rng(1), 0);
        let refused = log.append(&first).unwrap();
        assert!(matches!(refused.durable().await, Err(StorageError::Poisoned)));
        // Still full: the writer keeps retrying (each retry fails) and the log refuses.
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.faults().injected.get() < 3 {
            assert!(Instant::now() < deadline, "the writer does not retry");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert!(log.is_poisoned());
        assert!(matches!(log.append(&first), Err(AppendError::Poisoned)));
        log.faults().clear();
        wait_recovered(&log, 0).await;
        // The queued batch was kept and written once space returned.
        let info = log.append(&random_batch(&mut Rng(2), 1)).unwrap().durable().await.unwrap();
        let header = crate::record_batch::BatchHeader::parse(&first).unwrap();
        assert_eq!(info.base_offset, i64::from(header.last_offset_delta) + 1);
        assert_eq!(read_all(&log).await.len(), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn a_periodic_fdatasync_in_flight_does_not_hold_acknowledgements() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    run(move || async move {
        // A sync is due every 3 records (or 5 ms); from now on every fdatasync hangs.
        let log = PartitionLog::open(dir.clone(), config(false)).await.unwrap();
        let mut rng = Rng(1);
        // The first sync after opening also syncs the directory, in the foreground.
        log.append(&random_batch(&mut rng, 0)).unwrap().durable().await.unwrap();
        log.flush().await.unwrap();
        log.faults().hold_syncs.set(true);
        let mut last = -1;
        for i in 1..9 {
            // Acknowledged once written, while the sync an earlier append started is held.
            let durable = log.append(&random_batch(&mut rng, i)).unwrap().durable();
            let deadline = glommio::timer::sleep(Duration::from_secs(10));
            let acked = match futures::future::select(Box::pin(durable), Box::pin(deadline)).await {
                futures::future::Either::Left((acked, _)) => acked.unwrap(),
                futures::future::Either::Right(_) => panic!("append {i} waits for a held sync"),
            };
            assert!(acked.base_offset > last);
            last = acked.last_offset;
        }
        let shared = log.shared();
        assert!(shared.synced.get() < shared.written.get(), "the syncs were held");
        // An explicit flush waits for the sync in flight and syncs the rest.
        log.faults().hold_syncs.set(false);
        log.flush().await.unwrap();
        assert_eq!(log.shared().synced.get(), log.log_end_offset());
        log.close().await.unwrap();
    });
}

#[test]
fn a_shard_runs_one_background_sync_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    run(move || async move {
        // Due by size only (a test batch is ~600 bytes; no roll either).
        let config =
            LogConfig { flush: flush_by_size(4096), segment_bytes: 1 << 20, ..config(false) };
        let mut logs = Vec::new();
        for dir in dirs {
            let log = PartitionLog::open(dir, config.clone()).await.unwrap();
            // The first sync after opening also syncs the directory, in the foreground.
            log.append(&batch(5, 100, 0)).unwrap().durable().await.unwrap();
            log.flush().await.unwrap();
            log.faults().hold_syncs.set(true);
            log.faults().syncs_started.set(0);
            logs.push(log);
        }
        let started = |logs: &[PartitionLog]| {
            logs.iter().map(|l| l.faults().syncs_started.get()).sum::<u64>()
        };
        // Each log starts its background sync before it acknowledges the append past 4 KiB.
        for log in &logs {
            for i in 0..10 {
                log.append(&batch(5, 100, i)).unwrap().durable().await.unwrap();
            }
        }
        // Both sync tasks were spawned; once they had a turn to run, one syncs, one waits.
        glommio::timer::sleep(Duration::from_millis(1)).await;
        assert_eq!(started(&logs), 1, "one background sync in flight per shard");
        let first = usize::from(logs[1].faults().syncs_started.get() == 1);
        logs[first].faults().hold_syncs.set(false);
        until("the waiting sync got its turn when the first landed", || started(&logs) >= 2).await;
        for log in &logs {
            log.faults().hold_syncs.set(false);
            log.flush().await.unwrap();
            assert_eq!(log.shared().synced.get(), log.log_end_offset());
        }
        for log in logs {
            log.close().await.unwrap();
        }
    });
}

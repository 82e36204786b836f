//! Adaptive preallocation against a real broker: a new partition reserves (almost) no disk,
//! a busy one preallocates ahead of its data in extents that grow with its write rate; a
//! segment file retention deleted becomes the next segment (`--segment-recycle`, on by
//! default), and its old batches never come back, not even after a kill -9.

mod common;

use std::path::Path;
use std::process::Command;

use common::{batch, create, fetch_all, fetch_one, http_get, poll, produce, Broker, Conn};

/// Disk used by `path` and everything under it, in bytes (`du`: allocated blocks).
fn du(path: &Path) -> u64 {
    let out = Command::new("du").args(["-s", "-B1"]).arg(path).output().expect("du runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().and_then(|n| n.parse().ok()).expect("du's figure")
}

fn active_segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment file")
}

#[test]
fn a_new_partition_reserves_little_and_a_busy_one_grows_its_extents() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "idle", 8, 1).0, 0);
    assert_eq!(create(&mut conn, "busy", 1, 1).0, 0);
    for partition in 0..8 {
        let path = broker.data_dir.join(format!("idle-{partition}"));
        let used = du(&path);
        // The directory's own block and small files; no preallocated extent.
        assert!(used <= 16 << 10, "a new partition uses {used} bytes of disk");
    }
    // 4 MiB quickly: the extent doubles from 64 KiB up to the maximum (1 MiB in tests).
    let value = vec![b'v'; 1000];
    let records: Vec<(&[u8], &[u8])> = (0..64).map(|_| (&b"k"[..], &value[..])).collect();
    let one = batch(&records);
    let mut written = 0u64;
    for _ in 0..64 {
        let (code, _) = produce(&mut conn, "busy", 0, one.clone(), 1);
        assert_eq!(code, 0);
        written += one.len() as u64;
    }
    let segment = active_segment(&broker.data_dir.join("busy-0"));
    let allocated = std::fs::metadata(&segment).unwrap().len();
    assert!(allocated >= written, "the data is inside the preallocated file");
    let ahead = allocated - written;
    assert!(ahead > 64 << 10, "a busy partition preallocates more than the first extent: {ahead}");
    assert!(ahead <= 2 << 20, "and at most about the maximum extent ahead: {ahead}");
    // The idle partitions still reserve nothing.
    let idle = du(&broker.data_dir.join("idle-0"));
    assert!(idle <= 16 << 10, "{idle}");
}

/// Every record from the log start to the high watermark, with no gap: (log start, high
/// watermark, (offset, value) of each).
fn read_all(conn: &mut Conn, topic: &str) -> (i64, i64, Vec<(i64, Vec<u8>)>) {
    let first = fetch_one(conn, topic, 0, 0);
    let (start, hw) = (first.log_start_offset, first.high_watermark);
    let out = fetch_all(conn, topic, start);
    let end = out.last().map_or(start, |(o, _)| o + 1);
    assert_eq!(end, hw, "records up to the high watermark");
    (start, hw, out)
}

/// Produces batch `next` (60 records of 1000 bytes, every value naming its batch), acks=all.
fn send(conn: &mut Conn, next: &mut u32) {
    let value = format!("{next:08}").repeat(125).into_bytes();
    let records: Vec<(&[u8], &[u8])> = (0..60).map(|_| (&b"k"[..], &value[..])).collect();
    let (code, base) = produce(conn, "r", 0, batch(&records), -1);
    assert_eq!((code, base), (0, i64::from(*next) * 60));
    *next += 1;
}

#[test]
fn a_recycled_segment_file_serves_only_new_batches_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--segment-bytes",
        "1048576",
        "--retention-bytes",
        "2097152",
        "--retention-check-ms",
        "100",
    ];
    let mut broker = Broker::start(dir.path(), &args);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "r", 1, 1).0, 0);
    let log_dir = broker.data_dir.join("r-0");
    let kept = log_dir.join("recycled.segment");
    let mut next = 0u32;
    for _ in 0..60 {
        send(&mut conn, &mut next);
    }
    // Retention deletes the oldest segments and keeps one file, counted in the metrics.
    poll("a segment file kept for reuse", || kept.exists().then_some(()));
    let metrics = http_get(broker.admin.unwrap(), "/metrics");
    let held: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("strata_segment_recycle_bytes{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let size = std::fs::metadata(&kept).unwrap().len();
    assert_eq!(held, size.div_ceil(1024) * 1024, "counted in whole KiB: {metrics}");
    // A roll takes it (a segment holds about 17 batches): the active segment is that file,
    // a few new batches at its start and the old ones after them.
    let mut rolls = 0;
    while kept.exists() {
        assert!(rolls < 40, "no roll took the kept file");
        send(&mut conn, &mut next);
        rolls += 1;
    }
    send(&mut conn, &mut next);
    let before = read_all(&mut conn, "r");
    assert_eq!(before.1, i64::from(next) * 60);
    broker.kill9();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    let after = read_all(&mut conn, "r");
    assert_eq!(after, before, "the same records, no old batch among them");
    for (offset, value) in &after.2 {
        let batch = offset / 60;
        assert_eq!(&value[..8], format!("{batch:08}").as_bytes(), "offset {offset}");
    }
    // And the log goes on from there.
    send(&mut conn, &mut next);
    assert_eq!(fetch_one(&mut conn, "r", 0, 0).high_watermark, i64::from(next) * 60);
}

//! Adaptive preallocation against a real broker: a new partition reserves (almost) no disk,
//! a busy one preallocates ahead of its data in extents that grow with its write rate.

mod common;

use std::path::Path;
use std::process::Command;

use common::{batch, create, produce, Broker, Conn};

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

//! Disk full (issue 15, finding 9), against real brokers whose data directory is on a small
//! tmpfs (a few MiB of memory, never the machine's disk), filled with filler files and emptied
//! again:
//! - a partition log that hit ENOSPC recovers by itself once space returns, keeping every
//!   acknowledged record;
//! - a broker starts on a full disk and serves reads, refuses produce (KAFKA_STORAGE_ERROR)
//!   and new topics (POLICY_VIOLATION) below its headroom, and takes them again after;
//! - an idempotent producer gets its producer id on a full disk and produces once space
//!   returns;
//! - a cluster node whose disk fills keeps its controller: it refuses controller changes
//!   meanwhile, then catches up with what the others committed and takes changes again.
//!
//! The tmpfs is mounted without root: a holder process (`unshare --user --map-root-user
//! --mount`) mounts it in its own mount namespace and waits; the test and the brokers reach it
//! through `/proc/<holder>/root/...`. When the holder ends (the test drops it, or dies and
//! closes the holder's stdin), the namespace and the filesystem go with it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{batch, create, fetch_all, idempotent_batch, poll, Broker, Cluster, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata::storage::space;

const KAFKA_STORAGE_ERROR: i16 = 56;
const POLICY_VIOLATION: i16 = 44;

/// A small tmpfs mounted by a holder process in its own user and mount namespaces (see the
/// module docs); unmounted when dropped.
struct SmallFs {
    /// The mount point as this process (and the brokers) reach it.
    mount: PathBuf,
    holder: Child,
    fillers: std::cell::Cell<usize>,
    _dir: tempfile::TempDir,
}

/// `fallocate -l <len> <path>`: whether it took the space.
fn fallocate(len: u64, path: &Path) -> bool {
    let status = Command::new("fallocate")
        .args(["-l", &len.to_string()])
        .arg(path)
        .stderr(Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

impl SmallFs {
    fn mount(size_mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("mnt");
        std::fs::create_dir(&inside).unwrap();
        // The holder ends when its stdin closes: with this process, whatever ends it.
        let script = format!(
            "mount -t tmpfs -o size={size_mib}m strata-test \"$0\" && echo mounted && exec cat >/dev/null"
        );
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--propagation", "private"])
            .args(["sh", "-c", &script])
            .arg(&inside)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut line = String::new();
        let stdout = holder.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "mounted",
            "could not mount a tmpfs in a user namespace (are unprivileged user namespaces \
             disabled? see /proc/sys/user/max_user_namespaces)"
        );
        let relative = inside.strip_prefix("/").unwrap();
        let mount = PathBuf::from(format!("/proc/{}/root", holder.id())).join(relative);
        let fs = SmallFs { mount, holder, fillers: std::cell::Cell::new(0), _dir: dir };
        let total = space::usage(&fs.mount).unwrap().total_bytes;
        assert_eq!(total, size_mib << 20, "the data directory is on the small tmpfs");
        fs
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    fn available(&self) -> u64 {
        space::usage(&self.mount).unwrap().available_bytes
    }

    fn filler(&self) -> PathBuf {
        let n = self.fillers.get();
        self.fillers.set(n + 1);
        self.mount.join(format!("filler-{n}"))
    }

    /// Takes every free block with filler files.
    fn fill(&self) {
        let mut want = self.available();
        while want >= 4096 {
            let filler = self.filler();
            if !fallocate(want, &filler) {
                let _ = std::fs::remove_file(&filler);
                want /= 2;
                continue;
            }
            want = self.available();
        }
        // The last blocks, one at a time, until the filesystem refuses.
        for _ in 0..64 {
            let filler = self.filler();
            if !fallocate(4096, &filler) {
                let _ = std::fs::remove_file(&filler);
                break;
            }
        }
        assert_eq!(self.available(), 0, "the filesystem is full");
    }

    /// Removes the filler files and waits until their blocks are free.
    fn empty(&self) {
        for n in 0..self.fillers.get() {
            let _ = std::fs::remove_file(self.mount.join(format!("filler-{n}")));
        }
        poll("the filler's blocks to be free", || (self.available() > 32 << 20).then_some(()));
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Closing its stdin ends the holder (and with it the namespace and the tmpfs).
        drop(self.holder.stdin.take());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

/// Produce v9 of one batch: (error code, error message, base offset).
fn produce(conn: &mut Conn, topic: &str, records: bytes::Bytes) -> (i16, String, i64) {
    let data =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![data]);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    let message = p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
    (p.error_code, message, p.base_offset)
}

/// A batch of 16 records of 1 KiB, the values tagged with `n`.
fn kib_batch(n: usize) -> bytes::Bytes {
    let values: Vec<Vec<u8>> = (0..16).map(|i| format!("{n:06}-{i:02}-").into_bytes()).collect();
    let values: Vec<Vec<u8>> = values
        .into_iter()
        .map(|mut v| {
            v.resize(1024, b'x');
            v
        })
        .collect();
    let records: Vec<(&[u8], &[u8])> = values.iter().map(|v| (&b"k"[..], &v[..])).collect();
    batch(&records)
}

/// Acknowledged batches: (base offset, the batch's 16 values).
type Acked = Vec<(i64, usize)>;

fn assert_acked_present(conn: &mut Conn, topic: &str, acked: &Acked) {
    let all = fetch_all(conn, topic, 0);
    let by_offset: std::collections::BTreeMap<i64, Vec<u8>> = all.into_iter().collect();
    for &(base, n) in acked {
        for i in 0..16 {
            let value = by_offset.get(&(base + i)).unwrap_or_else(|| {
                panic!("acknowledged record {n}/{i} at offset {} is lost", base + i)
            });
            assert!(value.starts_with(format!("{n:06}-{i:02}-").as_bytes()), "record {n}/{i}");
        }
    }
}

#[test]
fn a_poisoned_log_recovers_once_space_returns() {
    let fs = SmallFs::mount(128);
    // No headroom: the log itself must meet ENOSPC.
    let args = ["--storage-min-free-bytes", "0"];
    let mut broker = Broker::start(fs.path(), &args);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "t", 1, 1).0, 0);
    let mut acked: Acked = Vec::new();
    let (code, _, base) = produce(&mut conn, "t", kib_batch(0));
    assert_eq!(code, 0);
    acked.push((base, 0));
    fs.fill();
    // Produce until the log runs out of its preallocated space and fails.
    let mut n = 1;
    let refused = poll("a produce refused for lack of space", || {
        let (code, message, base) = produce(&mut conn, "t", kib_batch(n));
        n += 1;
        match code {
            0 => {
                acked.push((base, n - 1));
                None
            }
            code => Some((code, message)),
        }
    });
    assert_eq!(refused.0, KAFKA_STORAGE_ERROR, "{refused:?}");
    assert_eq!(produce(&mut conn, "t", kib_batch(n)).0, KAFKA_STORAGE_ERROR, "still full");
    n += 1;
    fs.empty();
    let base = poll("the poisoned log to take produce again", || {
        let (code, _, base) = produce(&mut conn, "t", kib_batch(n));
        (code == 0).then_some(base)
    });
    acked.push((base, n));
    assert_acked_present(&mut conn, "t", &acked);
    // Idle connections closed: a shutdown waits (up to a timeout) for open ones.
    drop(conn);
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    assert_acked_present(&mut conn, "t", &acked);
}

#[test]
fn a_broker_starts_on_a_full_disk_serves_reads_and_refuses_writes() {
    let fs = SmallFs::mount(128);
    let mut broker = Broker::start(fs.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "t", 1, 1).0, 0);
    let mut acked: Acked = Vec::new();
    for n in 0..20 {
        let (code, message, base) = produce(&mut conn, "t", kib_batch(n));
        assert_eq!(code, 0, "{message}");
        acked.push((base, n));
    }
    drop(conn);
    broker.stop();
    fs.fill();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    assert_acked_present(&mut conn, "t", &acked);
    let (code, message, _) = produce(&mut conn, "t", kib_batch(99));
    assert_eq!(code, KAFKA_STORAGE_ERROR, "{message}");
    assert!(message.contains("storage-min-free-bytes"), "{message}");
    let (code, message) = create(&mut conn, "new", 4, 1);
    assert_eq!(code, POLICY_VIOLATION, "{message:?}");
    assert!(message.unwrap_or_default().contains("disk space"));
    fs.empty();
    let base = poll("produce to be taken once space returned", || {
        let (code, _, base) = produce(&mut conn, "t", kib_batch(100));
        (code == 0).then_some(base)
    });
    acked.push((base, 100));
    assert_eq!(create(&mut conn, "new", 4, 1).0, 0);
    assert_acked_present(&mut conn, "t", &acked);
}

fn init_producer_id(conn: &mut Conn) -> (i16, i64) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let ResponseKind::InitProducerId(r) =
        conn.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(req))
    else {
        panic!("not an InitProducerId response")
    };
    (r.error_code, r.producer_id.0)
}

#[test]
fn an_idempotent_producer_starts_on_a_full_disk_and_produces_once_space_returns() {
    let fs = SmallFs::mount(128);
    let broker = Broker::start(fs.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(create(&mut conn, "idem", 1, 1).0, 0);
    assert_eq!(create(&mut conn, "probe", 1, 1).0, 0);
    fs.fill();
    poll("the broker to refuse produce on the full disk", || {
        (produce(&mut conn, "probe", kib_batch(0)).0 == KAFKA_STORAGE_ERROR).then_some(())
    });
    let (code, pid) = init_producer_id(&mut conn);
    assert_eq!(code, 0, "InitProducerId on a full disk");
    assert!(pid >= 0);
    let first = idempotent_batch(pid, 0, 0, &[b"a", b"b", b"c"]);
    assert_eq!(produce(&mut conn, "idem", first.clone()).0, KAFKA_STORAGE_ERROR);
    fs.empty();
    let base = poll("the idempotent producer's retry to be taken", || {
        let (code, _, base) = produce(&mut conn, "idem", first.clone());
        (code == 0).then_some(base)
    });
    assert_eq!(base, 0);
    let (code, _, base) = produce(&mut conn, "idem", idempotent_batch(pid, 0, 3, &[b"d"]));
    assert_eq!((code, base), (0, 3));
    // The retry of the first batch is answered from the log, not stored twice.
    assert_eq!(produce(&mut conn, "idem", first).2, 0);
    let values: Vec<Vec<u8>> =
        fetch_all(&mut conn, "idem", 0).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, [&b"a"[..], b"b", b"c", b"d"]);
}

#[test]
fn a_cluster_node_whose_disk_fills_keeps_its_controller_and_catches_up() {
    let fs = SmallFs::mount(256);
    let dir = tempfile::tempdir().unwrap();
    // Node 3's data directory is on the small filesystem.
    let on_small = fs.path().join("data3");
    std::fs::create_dir(&on_small).unwrap();
    std::os::unix::fs::symlink(&on_small, dir.path().join("data3")).unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--storage-min-free-bytes", "0"]);
    let mut one = Conn::connect(cluster.node(1).addr);
    assert_eq!(create(&mut one, "before", 3, 2).0, 0);
    fs.fill();
    // A change committed by nodes 1 and 2 while node 3 cannot write it.
    poll("a topic to be created while node 3's disk is full", || {
        let (code, _) = create(&mut one, "during", 3, 2);
        (code == 0 || code == 36).then_some(())
    });
    cluster.node(3).wait_for_log("controller store: disk full");
    let mut three = Conn::connect(cluster.node(3).addr);
    let (code, message) = create(&mut three, "refused", 1, 1);
    assert_eq!(code, KAFKA_STORAGE_ERROR, "node 3 refuses changes while full: {message:?}");
    fs.empty();
    poll("node 3 to catch up with the topic created meanwhile", || {
        common::layout(&mut three, "during").map(drop)
    });
    poll("node 3's controller to take changes again", || {
        let (code, _) = create(&mut three, "after", 1, 1);
        (code == 0 || code == 36).then_some(())
    });
    poll("node 1 to see the topic node 3 created", || common::layout(&mut one, "after").map(drop));
    assert!(common::layout(&mut three, "before").is_some());
}

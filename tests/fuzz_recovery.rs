//! Fuzz target `recovery`: the recovery scan (`storage/recovery.rs`) over corrupted segment
//! files. The committed corpus (`tests/fuzz/corpus/recovery/`) holds small real segment files
//! written by `PartitionLog` (plain, compressed, idempotent and transactional batches, a
//! transaction marker, a preallocated zero tail); the harness mutates them (torn tails,
//! flipped bits, lying sizes and counts, splices).
//!
//! For each input, written as the active segment of a partition directory (or, for a third of
//! the inputs, as a closed segment without index before an empty active one), opening the log
//! must not panic, and when it opens:
//! - what it serves is a prefix of the file, batch by batch, every batch with a valid CRC-32C
//!   (checked here independently of the broker's code) and offsets going up;
//! - that prefix never extends past the longest run of whole, valid leading batches (a torn
//!   or corrupt tail is cut);
//! - a batch appended after recovery, and the recovered prefix, are all a restart serves: no
//!   stale byte of the old tail comes back.
//!
//! `torn_tails_are_cut_at_the_last_whole_batch` also cuts every corpus file at many points and
//! checks the recovered end exactly. `STRATA_FUZZ_RECOVERY_SEED_CORPUS=1` rewrites the corpus.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::{Bytes, BytesMut};
use strata::storage::{LogConfig, PartitionLog};

const TARGET: &str = "recovery";
const ACTIVE: &str = "00000000000000000000.log";
/// Base offset of the empty active segment placed after a fuzzed closed segment.
const LATER_BASE: i64 = 1 << 40;

/// A batch as this test reads it, independently of the broker's code: (base offset, last
/// offset, total bytes), if its framing, magic and CRC-32C are right.
fn checked_batch(bytes: &[u8]) -> Option<(i64, i64, usize)> {
    let be_i64 = |at: usize| Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let be_i32 = |at: usize| Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let length = usize::try_from(be_i32(8)?).ok()?;
    let total = 12usize.checked_add(length)?;
    let batch = bytes.get(..total)?;
    if total < 61 || *batch.get(16)? != 2 {
        return None;
    }
    let crc = u32::from_be_bytes(batch.get(17..21)?.try_into().ok()?);
    if crc32c::crc32c(batch.get(21..)?) != crc {
        return None;
    }
    let base = be_i64(0)?;
    let delta = be_i32(23)?;
    let last = base.checked_add(i64::from(delta)).filter(|_| delta >= 0)?;
    Some((base, last, total))
}

/// End of the longest run of valid leading batches with offsets going up from `base`.
fn valid_prefix(file: &[u8], base: i64) -> usize {
    let (mut at, mut next) = (0usize, base);
    while let Some((first, last, total)) = file.get(at..).and_then(checked_batch) {
        if first < next {
            break;
        }
        at += total;
        let Some(after) = last.checked_add(1) else { break };
        next = after;
    }
    at
}

fn config() -> LogConfig {
    LogConfig { prealloc_bytes: 64 << 10, prealloc_min_bytes: 4 << 10, ..LogConfig::default() }
}

/// Every batch the log serves, from its start to its high watermark, concatenated (an
/// empty read ends it: the rest of the log is a gap).
async fn served(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let mut previous_last = -1;
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 20).await.expect("reading the recovered log");
        if read.records.is_empty() {
            break;
        }
        let mut at = 0;
        while at < read.records.len() {
            let (first, last, total) = checked_batch(&read.records[at..])
                .expect("the log served a batch whose framing or CRC-32C is wrong");
            assert!(first > previous_last && last >= offset, "offsets go up");
            previous_last = last;
            offset = last.saturating_add(1);
            at += total;
        }
        out.extend_from_slice(&read.records);
    }
    out
}

/// A new batch of one record, with its CRC (built with kafka-protocol's encoder).
fn new_batch() -> Bytes {
    use kafka_protocol::records::*;
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"after recovery")),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &[record], &options).unwrap();
    out.freeze()
}

/// The step the recovery thread is at, named when an input hangs it.
static STEP: std::sync::Mutex<&str> = std::sync::Mutex::new("between inputs");

fn step(name: &'static str) {
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = name;
}

/// Recovers `file` as the active segment and checks the properties of the module docs.
async fn check_active(dir: &Path, file: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(ACTIVE), file).unwrap();
    step("opening the fuzzed active segment");
    let Ok(log) = PartitionLog::open(dir.to_path_buf(), config()).await else {
        return;
    };
    step("reading the recovered log");
    let kept = served(&log).await;
    assert!(file.starts_with(&kept), "recovery served bytes that are not a prefix of the file");
    assert!(kept.len() <= valid_prefix(file, 0), "recovery kept an invalid batch");
    step("closing the recovered log");
    log.close().await.expect("closing the recovered log");
    // A quiet log keeps its small preallocated extent at close: after what was served, the
    // file holds nothing but zeros as far as the next recovery looks.
    let closed = std::fs::read(dir.join(ACTIVE)).unwrap();
    assert!(closed.starts_with(&kept), "closing kept what was served");
    let window = (kept.len() as u64 / 4096 * 4096 + strata::storage::RECOVERY_ZERO_BYTES) as usize;
    let after = &closed[kept.len()..closed.len().min(window)];
    assert!(after.iter().all(|&b| b == 0), "closing left stale bytes after the served data");
    step("reopening and reading");
    let log = PartitionLog::open(dir.to_path_buf(), config()).await.expect("reopening");
    assert_eq!(served(&log).await, kept, "a clean restart serves the same");
    let appended = new_batch();
    step("appending after recovery");
    let pending = log.append(&appended).expect("appending after recovery");
    pending.durable().await.expect("the append after recovery is durable");
    step("closing after the append");
    log.close().await.expect("closing the recovered log");
    step("reopening after the append");
    let log = PartitionLog::open(dir.to_path_buf(), config()).await.expect("reopening");
    let again = served(&log).await;
    log.close().await.expect("closing");
    assert!(again.starts_with(&kept), "the restart lost recovered data");
    let tail = &again[kept.len()..];
    let (_, _, total) = checked_batch(tail).expect("the appended batch after a restart");
    assert_eq!(total, tail.len(), "bytes of the old tail came back after the appended batch");
    assert_eq!(&tail[16..], &appended[16..], "the appended batch changed");
}

/// Recovers `file` as a closed segment (no index: it is rebuilt by a scan) before an empty
/// active segment: the log either refuses to open or serves only valid batches.
async fn check_closed(dir: &Path, file: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(ACTIVE), file).unwrap();
    std::fs::write(dir.join(format!("{LATER_BASE:020}.log")), b"").unwrap();
    step("opening the fuzzed closed segment");
    let Ok(log) = PartitionLog::open(dir.to_path_buf(), config()).await else {
        return;
    };
    step("reading the closed segment");
    let kept = served(&log).await;
    assert!(file.starts_with(&kept), "a closed segment served bytes not in the file");
    log.close().await.expect("closing");
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// Runs checks on one glommio executor thread: inputs go in, one result comes back for
/// each. A panic inside (the broker's code or a failed check) ends the thread, and the
/// caller sees it as a closed channel.
struct Recoverer {
    inputs: Option<mpsc::Sender<Vec<u8>>>,
    done: mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recoverer {
    fn start(root: PathBuf) -> Recoverer {
        let (inputs, receive) = mpsc::channel::<Vec<u8>>();
        let (finished, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let executor = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make();
            executor.expect("a glommio executor").run(async move {
                let mut n = 0u64;
                // Blocking between inputs is fine: this executor runs nothing else then.
                while let Ok(input) = receive.recv() {
                    n += 1;
                    let dir = root.join(n.to_string());
                    if fnv1a(&input).is_multiple_of(3) {
                        check_closed(&dir, &input).await;
                    } else {
                        check_active(&dir, &input).await;
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                    step("between inputs");
                    if finished.send(()).is_err() {
                        return;
                    }
                }
            });
        });
        Recoverer { inputs: Some(inputs), done, thread: Some(thread) }
    }

    fn check(&self, input: &[u8]) {
        let sent = self.inputs.as_ref().map(|i| i.send(input.to_vec()));
        assert!(matches!(sent, Some(Ok(()))), "the recovery thread died on an earlier input");
        // One input takes milliseconds; a recovery that never returns is a bug like a panic
        // (a broker that hangs at start), so it fails here with the input saved and the seed
        // printed, instead of hanging the test run.
        match self.done.recv_timeout(HANG) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let step = *STEP.lock().unwrap_or_else(|e| e.into_inner());
                panic!("recovery did not return within {HANG:?} on this input ({step})")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("recovery panicked on this input (see the panic above)")
            }
        }
    }
}

/// How long one input may take before it counts as a hang.
const HANG: std::time::Duration = std::time::Duration::from_secs(120);

impl Drop for Recoverer {
    fn drop(&mut self) {
        self.inputs.take();
        // A hung recovery thread is left behind (it ends with the process).
        if std::thread::panicking() {
            return;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fast directory for the many small logs (tmpfs supports O_DIRECT on recent kernels),
/// else the default temporary directory.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            let probe = dir.path().join("probe");
            let direct = std::fs::write(&probe, [0u8; 4096]).is_ok() && o_direct_works(&probe);
            if direct {
                return dir;
            }
        }
    }
    tempfile::tempdir().unwrap()
}

fn o_direct_works(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).is_ok()
}

#[test]
fn fuzz_recovery() {
    if std::env::var("STRATA_FUZZ_RECOVERY_SEED_CORPUS").is_ok() {
        seed_corpus();
    }
    assert!(!fuzz::corpus(TARGET).is_empty(), "the recovery corpus is committed");
    let scratch = scratch();
    let recoverer = Recoverer::start(scratch.path().to_path_buf());
    fuzz::run(TARGET, |input| recoverer.check(input));
}

#[test]
fn torn_tails_are_cut_at_the_last_whole_batch() {
    let scratch = scratch();
    let root = scratch.path().to_path_buf();
    let corpus = fuzz::corpus(TARGET);
    assert!(!corpus.is_empty(), "the recovery corpus is committed");
    let (results, receive) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make();
        executor.expect("a glommio executor").run(async move {
            for (i, file) in corpus.iter().enumerate() {
                let whole = valid_prefix(file, 0);
                for cut in (0..=file.len()).step_by(97).chain([whole, whole.saturating_sub(1)]) {
                    let dir = root.join(format!("{i}-{cut}"));
                    let torn = &file[..cut.min(file.len())];
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(dir.join(ACTIVE), torn).unwrap();
                    let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
                    let kept = served(&log).await;
                    log.close().await.unwrap();
                    results.send((i, cut, kept.len(), valid_prefix(torn, 0))).unwrap();
                    std::fs::remove_dir_all(&dir).unwrap();
                }
            }
        });
    });
    let mut checked = 0;
    for (file, cut, kept, expected) in receive {
        assert_eq!(kept, expected, "corpus file {file} cut at {cut}");
        checked += 1;
    }
    thread.join().expect("the recovery thread");
    assert!(checked > 10);
}

/// Writes the corpus: small segment files made by `PartitionLog` itself.
fn seed_corpus() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().to_path_buf();
    std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make();
        executor.unwrap().run(async move {
            let cases: [(&str, Vec<Bytes>); 4] = [
                ("plain", (0..3).map(|i| plain_batch(i, 3, 40)).collect()),
                ("many-small", (0..40).map(|i| plain_batch(i, 1, 8)).collect()),
                ("large-records", vec![plain_batch(0, 2, 3000), plain_batch(1, 1, 5000)]),
                ("compressed", vec![compressed_batch(), plain_batch(1, 2, 10)]),
            ];
            for (name, batches) in cases {
                let dir = root.join(name);
                let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
                for batch in batches {
                    log.append(&batch).unwrap().durable().await.unwrap();
                }
                log.close().await.unwrap();
                fuzz::save(TARGET, name, &std::fs::read(dir.join(ACTIVE)).unwrap());
            }
            let dir = root.join("transactional");
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            log.append(&producer_batch(7, 0, false)).unwrap().durable().await.unwrap();
            log.append(&producer_batch(8, 0, true)).unwrap().durable().await.unwrap();
            log.append_marker(8, 0, true, 0).unwrap().durable().await.unwrap();
            log.append(&producer_batch(7, 3, false)).unwrap().durable().await.unwrap();
            log.close().await.unwrap();
            let bytes = std::fs::read(dir.join(ACTIVE)).unwrap();
            fuzz::save(TARGET, "transactional", &bytes);
            // An active segment as a crash leaves it: data, then preallocated zeros.
            let mut zero_tail = bytes;
            zero_tail.resize(zero_tail.len().next_multiple_of(4096) + 8192, 0);
            fuzz::save(TARGET, "zero-tail", &zero_tail);
        });
    })
    .join()
    .unwrap();
}

fn encode(
    records: Vec<kafka_protocol::records::Record>,
    compression: kafka_protocol::records::Compression,
) -> Bytes {
    use kafka_protocol::records::*;
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
    out.freeze()
}

fn record(
    i: usize,
    value_bytes: usize,
    producer: (i64, i16, i32),
    transactional: bool,
) -> kafka_protocol::records::Record {
    use kafka_protocol::records::*;
    Record {
        transactional,
        control: false,
        partition_leader_epoch: 0,
        producer_id: producer.0,
        producer_epoch: producer.1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: if producer.0 >= 0 { producer.2 + i as i32 } else { i as i32 - 1 },
        timestamp: 1_700_000_000_000 + i as i64,
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; value_bytes])),
        headers: Default::default(),
        delete_horizon: false,
    }
}

fn plain_batch(seed: usize, count: usize, value_bytes: usize) -> Bytes {
    let records = (0..count).map(|i| record(seed * 10 + i, value_bytes, (-1, -1, -1), false));
    encode(records.collect(), kafka_protocol::records::Compression::None)
}

fn compressed_batch() -> Bytes {
    let records = (0..4).map(|i| record(i, 200, (-1, -1, -1), false)).collect();
    encode(records, kafka_protocol::records::Compression::Gzip)
}

fn producer_batch(producer_id: i64, sequence: i32, transactional: bool) -> Bytes {
    let records = (0..3).map(|i| record(i, 30, (producer_id, 0, sequence), transactional));
    encode(records.collect(), kafka_protocol::records::Compression::None)
}

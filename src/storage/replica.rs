//! Replication state kept next to the log: the leader epoch cache and the high watermark
//! checkpoint.
//!
//! `<dir>/leader-epoch-checkpoint` is Kafka's format: a version line (`0`), an entry count
//! line, then one `epoch start_offset` line per entry, both increasing. It is replaced
//! atomically (tmp, fdatasync, rename) on every change. Loading drops entries that start
//! beyond the recovered log end (a torn tail) and stops at the first malformed line.
//!
//! `<dir>/high-watermark` holds the replicated high watermark in decimal, replaced atomically
//! at most every [`HW_CHECKPOINT_INTERVAL`] while it advances, on truncation and on close.
//! It is a lower bound of the real high watermark: opening clamps it to the recovered end.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::shared::Shared;
use super::StorageError;

/// File of the leader epoch cache.
pub(crate) const EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// File of the high watermark checkpoint.
pub(crate) const HW_FILE: &str = "high-watermark";
/// Least time between two high watermark checkpoints while it advances.
pub(crate) const HW_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// Parses an epoch cache file; entries starting after `log_end` are dropped.
pub(crate) fn parse_epochs(text: &str, log_end: i64) -> Vec<(i32, i64)> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Vec::new();
    }
    let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let mut out: Vec<(i32, i64)> = Vec::with_capacity(count.min(1024));
    for line in lines.take(count) {
        let mut parts = line.split_whitespace();
        let epoch = parts.next().and_then(|p| p.parse::<i32>().ok());
        let start = parts.next().and_then(|p| p.parse::<i64>().ok());
        let (Some(epoch), Some(start)) = (epoch, start) else { break };
        if out.last().is_some_and(|&(e, s)| epoch <= e || start < s) || start > log_end {
            break;
        }
        out.push((epoch, start));
    }
    out
}

fn encode_epochs(epochs: &[(i32, i64)]) -> Vec<u8> {
    let mut out = format!("0\n{}\n", epochs.len());
    for (epoch, start) in epochs {
        out.push_str(&format!("{epoch} {start}\n"));
    }
    out.into_bytes()
}

/// Loads the epoch cache of `dir` (empty if missing or unreadable).
pub(crate) fn load_epochs(dir: &Path, log_end: i64) -> Vec<(i32, i64)> {
    match std::fs::read_to_string(dir.join(EPOCH_FILE)) {
        Ok(text) => parse_epochs(&text, log_end),
        Err(_) => Vec::new(),
    }
}

/// Replaces `path` with `bytes` atomically (tmp, fdatasync if `sync`, rename). Blocking: for
/// small, rare writes only.
pub(crate) fn write_small_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| StorageError::io("write checkpoint", path, e))
}

/// Persists the epoch cache; a failure is logged (the cache is rebuilt from batches' epochs
/// only as far as a follower re-fetches them).
pub(crate) fn store_epochs(shared: &Shared) {
    let bytes = encode_epochs(&shared.epochs.borrow());
    if let Err(e) = write_small_file(&shared.dir.join(EPOCH_FILE), &bytes, true) {
        tracing::warn!(dir = %shared.dir.display(), "leader epoch cache not persisted: {e}");
    }
}

/// Adds `(epoch, start)` if `epoch` is newer than every cached one; persists. Returns
/// whether it was added.
pub(crate) fn add_epoch(shared: &Shared, epoch: i32, start: i64) -> bool {
    {
        let mut epochs = shared.epochs.borrow_mut();
        if epochs.last().is_some_and(|&(e, _)| epoch <= e) {
            return false;
        }
        epochs.push((epoch, start));
    }
    store_epochs(shared);
    true
}

/// Drops the cached epochs that start at or after `end` (Kafka's `truncateFromEnd`);
/// persists if any went.
pub(crate) fn trim_epochs(shared: &Shared, end: i64) {
    let trimmed = {
        let mut epochs = shared.epochs.borrow_mut();
        let before = epochs.len();
        epochs.retain(|&(_, start)| start < end);
        epochs.len() != before
    };
    if trimmed {
        store_epochs(shared);
    }
}

/// Kafka's OffsetForLeaderEpoch answer, see `PartitionLog::end_offset_for_epoch`.
pub(crate) fn end_offset_for(epochs: &[(i32, i64)], epoch: i32, log_end: i64) -> (i32, i64) {
    let after = epochs.partition_point(|&(e, _)| e <= epoch);
    let Some(index) = after.checked_sub(1) else { return (-1, -1) };
    let Some(&(found, _)) = epochs.get(index) else { return (-1, -1) };
    match epochs.get(after) {
        Some(&(_, next_start)) => (found, next_start),
        None => (found, log_end),
    }
}

/// Loads the high watermark checkpoint of `dir`, if any.
pub(crate) fn load_hw(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(HW_FILE)).ok()?;
    text.trim().parse().ok()
}

/// Writes the high watermark checkpoint of a replicated log if it changed (unless `force`,
/// only if the last write is older than the interval). Forced writes (truncation, flush,
/// close) are fdatasync'ed; periodic ones are not, to keep fsyncs off the executor: a lost
/// or torn one only restarts the high watermark lower, which is safe. Failures are logged.
pub(crate) fn checkpoint_hw(shared: &Shared, force: bool) {
    if !shared.replicated.get() {
        return;
    }
    let hw = shared.high_watermark.get();
    if shared.hw_checkpoint.get() == Some(hw) {
        return;
    }
    let recent =
        shared.hw_checkpoint_at.get().is_some_and(|at| at.elapsed() < HW_CHECKPOINT_INTERVAL);
    if recent && !force {
        return;
    }
    match write_small_file(&shared.dir.join(HW_FILE), hw.to_string().as_bytes(), force) {
        Ok(()) => {
            shared.hw_checkpoint.set(Some(hw));
            shared.hw_checkpoint_at.set(Some(Instant::now()));
        }
        Err(e) => tracing::warn!(dir = %shared.dir.display(), "high watermark not saved: {e}"),
    }
}

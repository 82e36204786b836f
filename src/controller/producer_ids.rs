//! Producer ids for idempotent producers (InitProducerId), handed out by shard 0.
//!
//! Ids are reserved in blocks of [`PRODUCER_ID_BLOCK`]: before handing out the first id of a
//! block, the end of the block is stored durably in `<data>/producer_ids`, so after a restart
//! (clean or not) allocation resumes past every id that may have been given out, and no id is
//! ever given to two producers. The cost is one small durable write per block.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

/// File name of the reserved-block mark inside the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer_ids";
/// Ids reserved per durable write.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// The allocator. Lives on shard 0.
pub struct ProducerIds {
    data_dir: PathBuf,
    next: Cell<i64>,
    /// Ids below are reserved on disk.
    reserved: Cell<i64>,
    /// One reservation at a time.
    lock: Semaphore,
}

impl ProducerIds {
    /// Resumes after the block reserved last (0 if none was).
    pub fn load(data_dir: &Path) -> anyhow::Result<ProducerIds> {
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                anyhow::anyhow!("{}: not a producer id: {text:?}", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        Ok(ProducerIds {
            data_dir: data_dir.to_path_buf(),
            next: Cell::new(start),
            reserved: Cell::new(start),
            lock: Semaphore::new(1),
        })
    }

    /// A producer id no producer had before.
    pub async fn allocate(&self) -> std::io::Result<i64> {
        let _permit = (self.lock.acquire_permit(1).await)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if self.next.get() >= self.reserved.get() {
            let end = self.next.get() + PRODUCER_ID_BLOCK;
            super::replace_file(&self.data_dir, PRODUCER_IDS_FILE, end.to_string().into_bytes())
                .await?;
            self.reserved.set(end);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        Ok(id)
    }
}

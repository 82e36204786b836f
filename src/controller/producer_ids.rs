//! Producer ids for idempotent producers (InitProducerId), handed out by shard 0.
//!
//! Ids are reserved in blocks of [`PRODUCER_ID_BLOCK`]: before handing out the first id of a
//! block, the end of the block is stored durably in `<data>/producer_ids`, so after a restart
//! (clean or not) allocation resumes past every id that may have been given out, and no id is
//! ever given to two producers. The cost is one small durable write per block.
//!
//! The mark lives in a [`slots`] file, overwritten in place: reserving a block needs no new
//! disk space, so idempotent producers can start on a full disk. The file is created (which
//! does need a few blocks) when the broker starts ([`ProducerIds::prepare`]) or at the first
//! reservation; should that fail for lack of space, InitProducerId answers a retriable error
//! and the next request tries again. A file in the older text format (a decimal number) is
//! read and converted.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

use super::slots::{self, Slots};

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
    /// The mark's slot file, once it exists in that format.
    slots: RefCell<Option<Slots>>,
    /// One reservation at a time.
    lock: Semaphore,
}

fn decode_mark(payload: &[u8]) -> Option<i64> {
    let value = i64::from_be_bytes(payload.try_into().ok()?);
    (value >= 0).then_some(value)
}

impl ProducerIds {
    /// Resumes after the block reserved last (0 if none was).
    pub fn load(data_dir: &Path) -> anyhow::Result<ProducerIds> {
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let (start, found) = match std::fs::read(&path) {
            Ok(bytes) if slots::is_slot_file(&bytes) => {
                let found = slots::read(&bytes);
                let start = found.as_ref().and_then(|s| decode_mark(&s.payload));
                let start = start.ok_or_else(|| {
                    anyhow::anyhow!("{}: no valid producer id mark", path.display())
                })?;
                (start, found)
            }
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let start = text.trim().parse::<i64>().ok().filter(|v| *v >= 0);
                let start = start.ok_or_else(|| {
                    anyhow::anyhow!("{}: not a producer id: {text:?}", path.display())
                })?;
                (start, None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        Ok(ProducerIds {
            data_dir: data_dir.to_path_buf(),
            next: Cell::new(start),
            reserved: Cell::new(start),
            slots: RefCell::new(found),
            lock: Semaphore::new(1),
        })
    }

    /// Creates the slot file now (while there is space), so that later reservations are
    /// rewrites in place.
    pub async fn prepare(&self) -> std::io::Result<()> {
        let _permit = (self.lock.acquire_permit(1).await)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if self.slots.borrow().is_some() {
            return Ok(());
        }
        self.store(self.reserved.get()).await
    }

    /// A producer id no producer had before.
    pub async fn allocate(&self) -> std::io::Result<i64> {
        let _permit = (self.lock.acquire_permit(1).await)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if self.next.get() >= self.reserved.get() {
            let end = self.next.get() + PRODUCER_ID_BLOCK;
            self.store(end).await?;
            self.reserved.set(end);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        Ok(id)
    }

    /// Durably stores `end` as the reserved mark: in place when the slot file exists, else by
    /// creating it.
    async fn store(&self, end: i64) -> std::io::Result<()> {
        let payload = end.to_be_bytes();
        let current = self.slots.borrow().clone();
        let Some(current) = current else {
            let bytes = slots::initial(&payload).ok_or_else(too_large)?;
            let state = slots::read(&bytes);
            super::replace_file(&self.data_dir, PRODUCER_IDS_FILE, bytes).await?;
            *self.slots.borrow_mut() = state;
            return Ok(());
        };
        let (offset, slot, after) = current.next(&payload).ok_or_else(too_large)?;
        let path = self.data_dir.join(PRODUCER_IDS_FILE);
        let file = glommio::io::OpenOptions::new().write(true).buffered_open(&path).await?;
        let written = file.write_at(slot.to_vec(), offset).await;
        let synced = match written {
            Ok(n) if n == slot.len() => file.fdatasync().await.map_err(Into::into),
            Ok(_) => Err(std::io::Error::other("short write of the producer id mark")),
            Err(e) => Err(e.into()),
        };
        let _ = file.close().await;
        synced?;
        *self.slots.borrow_mut() = Some(after);
        Ok(())
    }
}

fn too_large() -> std::io::Error {
    std::io::Error::other("producer id mark does not fit its slot")
}

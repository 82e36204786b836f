//! Free space of the filesystem holding the logs, and the headroom the broker keeps on it.
//!
//! [`Headroom`] is the space below which the broker stops taking data (Redpanda's
//! `storage_min_free_bytes`): the smaller of a byte count and a percentage of the filesystem.
//! [`FreeSpace`] remembers the last [`usage`] reading of one shard; callers refresh it
//! periodically (a `statvfs`, no I/O) and read [`FreeSpace::low`] on the produce path, which
//! is one `Cell` load. A write that fails with ENOSPC marks the space low at once
//! ([`FreeSpace::saw_enospc`]) until the next reading says otherwise.

use std::cell::Cell;
use std::path::Path;

/// Bytes total and available to unprivileged users (`f_bavail`) on one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// Bytes an unprivileged writer may still allocate.
    pub available_bytes: u64,
}

/// `statvfs(path)`.
pub fn usage(path: &Path) -> std::io::Result<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; statvfs writes nothing else.
    #[allow(unsafe_code)]
    let (rc, stat) = unsafe {
        let rc = libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr());
        (rc, stat.assume_init())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // 64-bit Linux: every field is a u64 already.
    let (fragment, blocks, available): (u64, u64, u64) =
        (stat.f_frsize, stat.f_blocks, stat.f_bavail);
    Ok(Usage {
        total_bytes: blocks.saturating_mul(fragment),
        available_bytes: available.saturating_mul(fragment),
    })
}

/// Whether an I/O error means the filesystem is full (ENOSPC, or EDQUOT for a quota).
pub fn is_no_space(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || error.kind() == std::io::ErrorKind::StorageFull
}

/// The free space the broker keeps: the smaller of `min_free_bytes` and `min_free_percent`
/// of the filesystem (either 0 turns the headroom off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// `storage_min_free_bytes`.
    pub min_free_bytes: u64,
    /// `storage_min_free_percent`, 0..=100.
    pub min_free_percent: u8,
}

impl Headroom {
    /// Bytes to keep free on a filesystem of `total_bytes`.
    pub fn bytes(&self, total_bytes: u64) -> u64 {
        let percent = total_bytes / 100 * u64::from(self.min_free_percent.min(100));
        self.min_free_bytes.min(percent)
    }

    /// Whether taking `more_bytes` would leave less than the headroom free.
    pub fn exceeded_by(&self, usage: Usage, more_bytes: u64) -> bool {
        usage.available_bytes.saturating_sub(more_bytes) < self.bytes(usage.total_bytes)
    }
}

/// One shard's view of the data directory's free space (see the module docs).
#[derive(Debug)]
pub struct FreeSpace {
    headroom: Headroom,
    last: Cell<Option<Usage>>,
    low: Cell<bool>,
}

impl FreeSpace {
    /// No reading yet: not low.
    pub fn new(headroom: Headroom) -> FreeSpace {
        FreeSpace { headroom, last: Cell::new(None), low: Cell::new(false) }
    }

    /// The configured headroom.
    pub fn headroom(&self) -> Headroom {
        self.headroom
    }

    /// Reads the free space of `dir` again; returns whether it is below the headroom. A
    /// failed `statvfs` keeps the previous state (and is returned).
    pub fn refresh(&self, dir: &Path) -> std::io::Result<bool> {
        let reading = usage(dir)?;
        self.last.set(Some(reading));
        let low = self.headroom.exceeded_by(reading, 0);
        self.low.set(low);
        Ok(low)
    }

    /// A write just failed with ENOSPC: low until the next reading.
    pub fn saw_enospc(&self) {
        self.low.set(true);
    }

    /// Whether the free space is below the headroom (as of the last reading).
    pub fn low(&self) -> bool {
        self.low.get()
    }

    /// The last reading, if any.
    pub fn last(&self) -> Option<Usage> {
        self.last.get()
    }

    /// Whether `more_bytes` may be taken without going below the headroom, by the last
    /// reading (true when there is none).
    pub fn allows(&self, more_bytes: u64) -> bool {
        match self.last.get() {
            Some(usage) => !self.low.get() && !self.headroom.exceeded_by(usage, more_bytes),
            None => !self.low.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_is_the_smaller_of_bytes_and_percent() {
        let headroom = Headroom { min_free_bytes: 1 << 30, min_free_percent: 5 };
        assert_eq!(headroom.bytes(256 << 20), (256 << 20) / 100 * 5);
        assert_eq!(headroom.bytes(1 << 40), 1 << 30);
        let off = Headroom { min_free_bytes: 0, min_free_percent: 5 };
        assert_eq!(off.bytes(1 << 40), 0);
        let usage = Usage { total_bytes: 100 << 20, available_bytes: 10 << 20 };
        let tight = Headroom { min_free_bytes: 8 << 20, min_free_percent: 100 };
        assert!(!tight.exceeded_by(usage, 0));
        assert!(tight.exceeded_by(usage, 3 << 20));
    }

    #[test]
    fn usage_reads_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let usage = usage(dir.path()).unwrap();
        assert!(usage.total_bytes > 0);
        assert!(usage.available_bytes <= usage.total_bytes);
        let space = FreeSpace::new(Headroom { min_free_bytes: 0, min_free_percent: 0 });
        assert!(!space.refresh(dir.path()).unwrap());
        space.saw_enospc();
        assert!(space.low());
        assert!(!space.allows(1));
        assert!(!space.refresh(dir.path()).unwrap());
        assert!(space.allows(1));
        assert!(is_no_space(&std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!is_no_space(&std::io::Error::from_raw_os_error(libc::EIO)));
    }
}

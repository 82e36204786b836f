//! Memory for reads from disk, recycled. A read copies glommio's DMA buffers (`Rc`, not
//! `Send`: the records may be answered on another shard) into memory of its own. A fresh
//! allocation of a catch-up read's size (up to 8 MiB) is a new mapping that the copy faults
//! in page by page, which the kernel clears and charges to the cgroup first, and that is
//! unmapped again once the response is sent: 29% of the broker in the catch-up profile
//! (perf/results/2026-12-06-read-within.md), more than the copy itself. So large read buffers
//! go back, when their last `Bytes` is dropped, to a small free list of the dropping thread,
//! and the next large read reuses one whose pages are already mapped.
//!
//! Hand-written (about forty lines) rather than a pool crate: the free list is per thread
//! (no lock, no atomics: a buffer dropped on another shard joins that shard's list), and the
//! buffers must become `Bytes` without a copy (`Bytes::from_owner`).
//!
//! Bounds: at most [`FREE_MAX`] buffers per thread, each of at most [`RECYCLED_BYTES_MAX`]
//! capacity (16 MiB per thread in all); smaller reads (headers, index walks) use plain
//! allocations, and a read reuses only a buffer at most twice its size. Once a burst's memory
//! is given back, the broker frees the lists too ([`release`]).

use std::cell::RefCell;

use bytes::Bytes;

use super::readahead::READ_AHEAD_BYTES_MAX;

/// Reads below this size are not recycled (malloc serves them from warm memory).
const RECYCLED_BYTES_MIN: usize = 256 << 10;
/// Largest buffer kept for reuse: a whole read-ahead.
const RECYCLED_BYTES_MAX: usize = READ_AHEAD_BYTES_MAX as usize;
/// Free buffers kept per thread: one being answered while the next is read.
const FREE_MAX: usize = 2;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `len` bytes, reused when one is free.
pub(crate) fn with_capacity(len: usize) -> ReadBuf {
    if (RECYCLED_BYTES_MIN..=RECYCLED_BYTES_MAX).contains(&len) {
        let reused = FREE.with_borrow_mut(|free| {
            // At most twice the size asked for: a small read's bytes may be held long (an
            // unread response counts its length against the memory budget, not the buffer's).
            let fits = |v: &Vec<u8>| v.capacity() >= len && v.capacity() <= len.saturating_mul(2);
            let at = free.iter().position(fits)?;
            Some(free.swap_remove(at))
        });
        if let Some(vec) = reused {
            return ReadBuf { vec };
        }
    }
    ReadBuf { vec: Vec::with_capacity(len) }
}

/// Frees this thread's free buffers: the broker calls it when a burst's memory was given back
/// (`server::budget::trim_when_released`), before it returns free memory to the system.
pub fn release() {
    let free = FREE.try_with(|free| free.try_borrow_mut().map(|mut f| std::mem::take(&mut *f)));
    drop(free);
}

/// A read's bytes; its memory goes back to the free list when dropped.
pub(crate) struct ReadBuf {
    vec: Vec<u8>,
}

impl ReadBuf {
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.vec.extend_from_slice(bytes);
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.vec.capacity()
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.vec.truncate(len);
    }

    /// The bytes as `Bytes`, without a copy; the memory is recycled when the last clone
    /// or slice is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.vec
    }
}

impl AsRef<[u8]> for ReadBuf {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        let capacity = self.vec.capacity();
        if !(RECYCLED_BYTES_MIN..=RECYCLED_BYTES_MAX).contains(&capacity) {
            return;
        }
        let mut vec = std::mem::take(&mut self.vec);
        vec.clear();
        // `try_with`: a buffer dropped while its thread exits is simply freed.
        let _ = FREE.try_with(|free| {
            let Ok(mut free) = free.try_borrow_mut() else { return };
            if free.len() < FREE_MAX {
                free.push(vec);
            } else if let Some(smallest) = free.iter_mut().min_by_key(|v| v.capacity()) {
                // Keep the larger ones: a small buffer cannot serve a large read.
                if smallest.capacity() < capacity {
                    *smallest = vec;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_reused_after_their_bytes_are_dropped_and_small_ones_are_not() {
        let mut buf = with_capacity(1 << 20);
        buf.extend_from_slice(&[7u8; 1000]);
        let first = buf.as_ptr();
        let bytes = buf.into_bytes();
        let slice = bytes.slice(10..20);
        drop(bytes);
        // A slice still holds the memory: a new buffer is another allocation.
        let other = with_capacity(1 << 20);
        assert_ne!(other.as_ptr(), first);
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        drop(other);
        // Both went back; a read of at least half their size reuses one, empty.
        let again = with_capacity(600 << 10);
        assert!(again.is_empty());
        assert_eq!(FREE.with_borrow(|free| free.len()), 1, "one reused");
        let smaller = with_capacity(400 << 10);
        assert!(smaller.capacity() < 1 << 20, "not a buffer of more than twice its size");
        drop(smaller);
        let small = with_capacity(4 << 10);
        drop(small);
        let sizes = || FREE.with_borrow(|free| free.iter().map(Vec::capacity).collect::<Vec<_>>());
        assert_eq!(sizes().len(), 2, "the 400 KiB one joined; small buffers are not kept");
        drop(again);
        let third = with_capacity(RECYCLED_BYTES_MAX);
        drop(third);
        // At most FREE_MAX, the smallest making room for larger ones.
        let sizes = sizes();
        assert_eq!(sizes.len(), FREE_MAX);
        assert!(sizes.contains(&RECYCLED_BYTES_MAX) && sizes.iter().all(|&c| c >= 1 << 20));
        release();
        assert_eq!(FREE.with_borrow(|free| free.len()), 0, "released");
    }
}

//! The io_uring worker pool's size limit for the calling thread.
//!
//! An io_uring request the kernel cannot complete without blocking runs on a worker thread
//! (`iou-wrk-*`) of a pool that belongs to the submitting thread and is shared by all its
//! rings. Every fdatasync goes there, and so does every O_DIRECT write that converts
//! unwritten (fallocated) extents. The pool's "bounded" class, which regular-file work uses,
//! is capped by the kernel (traced here: two workers for a shard pinned to one CPU), so a shard
//! syncing 16 partitions ran at most two fdatasyncs at a time while fio's 16 jobs ran 16.
//! [`set_max_workers`] raises the cap with `IORING_REGISTER_IOWQ_MAX_WORKERS`.
//!
//! glommio 0.9 does not expose its rings, and the limit is per thread, not per ring, so this
//! sets it through a one-entry ring of our own, created and closed on the shard's thread
//! after glommio's rings exist. No crate in the dependency tree offers the call (the
//! `io-uring` crate does, but would be a second io_uring binding for one syscall); it is two
//! raw syscalls.

use std::io;

/// `IORING_REGISTER_IOWQ_MAX_WORKERS` (Linux 5.15).
const IORING_REGISTER_IOWQ_MAX_WORKERS: libc::c_uint = 19;

/// The current thread's io_uring worker limits, `[bounded, unbounded]`, after setting them
/// to `limits` (0 leaves a class unchanged, so `[0, 0]` reads them). The thread must already
/// have an io_uring instance (a glommio executor's thread does).
pub fn set_max_workers(limits: [u32; 2]) -> io::Result<[u32; 2]> {
    // struct io_uring_params is 120 bytes of integers; zero means "defaults".
    let mut params = [0u64; 15];
    let mut values = limits;
    // SAFETY: io_uring_setup writes at most sizeof(io_uring_params) = 120 bytes into
    // `params`; io_uring_register(IOWQ_MAX_WORKERS) reads and writes exactly two u32s at
    // `values`; the fd is ours and closed once.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr());
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = fd as libc::c_int;
        let rc = libc::syscall(
            libc::SYS_io_uring_register,
            fd,
            IORING_REGISTER_IOWQ_MAX_WORKERS,
            values.as_mut_ptr(),
            2u32,
        );
        let error = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(error);
        }
    }
    // The kernel returns the previous limits; read back the ones now in force.
    if limits == [0, 0] {
        return Ok(values);
    }
    set_max_workers([0, 0])
}

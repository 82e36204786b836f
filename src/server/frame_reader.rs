//! Reads request frames off a client stream, allocating only for bytes that arrived.
//!
//! The read path, in three calls the connection sequences with its budget and deadlines:
//! [`FrameReader::wait_for_data`] (something arrived), [`FrameReader::read_size`] (the 4-byte
//! size prefix), then, once the memory budget admitted [`body_bytes`] for the frame,
//! [`FrameReader::read_body`]. Contract:
//! - Nothing past the prefix of a frame is read before the caller asks for its body, except a
//!   read-ahead of at most [`READ_AHEAD_BYTES`] (several small pipelined frames per read).
//! - A body of up to [`BODY_POOLED_BYTES_MAX`] is read by the socket straight into a reused,
//!   already initialised buffer of its size class (no copy, no zero-fill, no allocation once
//!   the shard's pool is warm); the frame's `Bytes` owns that buffer and gives it back to the
//!   shard's pool when dropped. The budget admits the class size ([`body_bytes`]), so what
//!   it counts is what the frame holds. Idle pooled buffers are bounded by
//!   [`POOL_IDLE_BYTES_MAX`] per shard.
//! - A larger body (or one the caller admitted less room for) grows with the bytes that
//!   arrive, never to the claimed size up front, and is never zero-filled: each read lands
//!   in a per-thread scratch buffer (initialised once) and is appended to the body, which is
//!   at most twice the bytes received so far.
//! - An idle reader holds no buffer at all; a frame's `Bytes` never shares its allocation with
//!   bytes of a later frame.
//!
//! Generic over `AsyncRead`, so a TLS stream reads frames the same way.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt};

use crate::protocol::FRAME_PREFIX_BYTES;

/// Bytes read beyond the frame being read (its prefix or its body), before they are admitted.
pub const READ_AHEAD_BYTES: usize = 8 * 1024;
/// Largest single read (the per-thread scratch buffer's size).
const SCRATCH_BYTES: usize = 256 * 1024;
/// First allocation for a body that did not arrive whole with its prefix.
const BODY_FIRST_BYTES: usize = 64 * 1024;
/// Smallest pooled body buffer (size class).
const BODY_POOLED_BYTES_MIN: usize = 64 * 1024;
/// Largest pooled body buffer; larger frames take the growing path. Produce requests of
/// real clients are at most a few MiB (librdkafka's `message.max.bytes` is 1 MB per batch).
pub const BODY_POOLED_BYTES_MAX: usize = 8 << 20;
/// Bytes of idle body buffers a shard's pool keeps; buffers given back beyond it are freed.
pub const POOL_IDLE_BYTES_MAX: usize = 32 << 20;

thread_local! {
    /// Where reads land before they are appended to a frame: one per shard thread, zeroed
    /// once, so frame buffers need no zeroing. Borrowed only inside one `poll_read`.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// Idle body buffers of this shard, each of a size class, initialised once.
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { idle: Vec::new(), bytes: 0 }) };
}

/// Body buffers given back by dropped frames (see the module docs).
struct Pool {
    idle: Vec<Vec<u8>>,
    /// Sum of the idle buffers' lengths, at most [`POOL_IDLE_BYTES_MAX`].
    bytes: usize,
}

/// Size class of a pooled body of `size` bytes: the next power of two or 1.5 times a power
/// of two (at most half more than `size`), at least [`BODY_POOLED_BYTES_MIN`].
fn size_class(size: usize) -> usize {
    let power = size.max(BODY_POOLED_BYTES_MIN).next_power_of_two();
    let between = power / 4 * 3;
    if between >= size && between >= BODY_POOLED_BYTES_MIN {
        between
    } else {
        power
    }
}

/// Bytes a frame of `size` bytes holds while it is read and used: what the memory budget
/// should admit for it (its size class when pooled, else `size`).
pub fn body_bytes(size: usize) -> usize {
    let class = size_class(size);
    if class <= BODY_POOLED_BYTES_MAX {
        class
    } else {
        size
    }
}

/// A pooled body buffer: the frame's bytes are its first `len`. Given back to the pool of
/// the thread that drops it (bounded there too).
struct PooledBody {
    buf: Vec<u8>,
    len: usize,
}

impl PooledBody {
    /// An initialised buffer of `class` bytes, from the pool if one is idle. A new one is
    /// `calloc`ed: large ones come as fresh zero pages, so even that costs no memset.
    fn take(class: usize) -> PooledBody {
        let reused = POOL.with(|pool| {
            let mut pool = pool.try_borrow_mut().ok()?;
            // The most recently given back first: the one most likely still in the cache.
            let at = pool.idle.iter().rposition(|buf| buf.len() == class)?;
            let buf = pool.idle.remove(at);
            pool.bytes -= buf.len();
            Some(buf)
        });
        PooledBody { buf: reused.unwrap_or_else(|| vec![0; class]), len: 0 }
    }
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // `try_`: at thread exit the pool may be gone, and a drop must never panic.
        let _ = POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.bytes + buf.len() <= POOL_IDLE_BYTES_MAX {
                    pool.bytes += buf.len();
                    pool.idle.push(buf);
                }
            }
        });
    }
}

/// Bytes of idle buffers in this thread's pool.
#[cfg(test)]
fn pool_idle_bytes() -> usize {
    POOL.with(|pool| pool.borrow().bytes)
}

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection (`inside_frame`: in the middle of a frame).
    #[error("connection closed{}", if *.inside_frame { " inside a frame" } else { "" })]
    Closed {
        /// Whether bytes of an unfinished frame were received.
        inside_frame: bool,
    },
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// Frames from one stream. See the module docs.
pub struct FrameReader<R> {
    reader: R,
    /// Bytes received and not yet part of a returned frame (at most a prefix plus read-ahead).
    pending: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `reader`, holding no buffer yet.
    pub fn new(reader: R) -> Self {
        FrameReader { reader, pending: BytesMut::new() }
    }

    /// Bytes received beyond the last frame returned.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Waits until at least one byte of the next frame is here.
    pub async fn wait_for_data(&mut self) -> Result<(), ReadError> {
        while self.pending.is_empty() {
            self.receive_pending(READ_AHEAD_BYTES).await?;
        }
        Ok(())
    }

    /// Reads the next frame's size prefix (the frame's raw `i32`, unchecked).
    pub async fn read_size(&mut self) -> Result<i32, ReadError> {
        while self.pending.len() < FRAME_PREFIX_BYTES {
            self.receive_pending(READ_AHEAD_BYTES).await?;
        }
        Ok(self.pending.get_i32())
    }

    /// Reads a body of `size` bytes (after [`FrameReader::read_size`]), holding at most
    /// `room` bytes for it (what the budget admitted: [`body_bytes`] of `size` lets it use
    /// a pooled buffer).
    pub async fn read_body(&mut self, size: usize, room: usize) -> Result<Bytes, ReadError> {
        if self.pending.len() >= size {
            let frame = self.pending.split_to(size).freeze();
            if self.pending.is_empty() {
                // Do not keep the frame's allocation alive through an empty view of it.
                self.pending = BytesMut::new();
            }
            return Ok(frame);
        }
        let class = size_class(size);
        if class <= BODY_POOLED_BYTES_MAX && class <= room {
            return self.read_pooled(size, class).await;
        }
        self.read_growing(size).await
    }

    /// The body read straight into a pooled buffer. Saves, per body byte, the copy from the
    /// scratch buffer and the copies of the growing buffer's reallocations (11.7% of the
    /// broker core's samples at 100 B max-rate produce) and the allocation per frame; but the
    /// kernel's socket copy into these larger, colder buffers cost 4.9 points more, so CPU per
    /// message was unchanged within the noise (perf/results/2026-12-05-perf2.md).
    async fn read_pooled(&mut self, size: usize, class: usize) -> Result<Bytes, ReadError> {
        let mut body = PooledBody::take(class);
        let mut filled = self.pending.len();
        if let Some(head) = body.buf.get_mut(..filled) {
            head.copy_from_slice(&self.pending);
        }
        self.pending = BytesMut::new();
        // Read on into the class's slack (at most READ_AHEAD_BYTES), so the next frame's
        // prefix usually comes with this frame's last read, as on the growing path.
        let end = class.min(size + READ_AHEAD_BYTES);
        while filled < size {
            let Some(room) = body.buf.get_mut(filled..end) else {
                return Err(ReadError::Closed { inside_frame: true });
            };
            let n = self.reader.read(room).await?;
            if n == 0 {
                return Err(ReadError::Closed { inside_frame: true });
            }
            filled += n;
        }
        self.pending.extend_from_slice(body.buf.get(size..filled).unwrap_or_default());
        body.len = size;
        Ok(Bytes::from_owner(body))
    }

    /// The body grown with what arrives, through the scratch buffer (see the module docs).
    async fn read_growing(&mut self, size: usize) -> Result<Bytes, ReadError> {
        let mut body = Vec::with_capacity(size.min(BODY_FIRST_BYTES).max(self.pending.len()));
        body.extend_from_slice(&self.pending);
        self.pending = BytesMut::new();
        while body.len() < size {
            let missing = size - body.len();
            let room = body.capacity() - body.len();
            if room < missing.min(SCRATCH_BYTES) {
                // Double with what arrived, never past the frame's size.
                let target = (body.capacity() * 2).max(body.len() + missing.min(SCRATCH_BYTES));
                body.reserve_exact(target.min(size) - body.len());
            }
            let n = receive(&mut self.reader, missing + READ_AHEAD_BYTES, |bytes| {
                let (mine, after) = bytes.split_at(bytes.len().min(missing));
                body.extend_from_slice(mine);
                self.pending.extend_from_slice(after);
            })
            .await?;
            if n == 0 {
                return Err(ReadError::Closed { inside_frame: true });
            }
        }
        Ok(Bytes::from(body))
    }

    /// Reads once, up to `max` bytes, into `pending`.
    async fn receive_pending(&mut self, max: usize) -> Result<(), ReadError> {
        let inside_frame = !self.pending.is_empty();
        let pending = &mut self.pending;
        let n = receive(&mut self.reader, max, |bytes| pending.extend_from_slice(bytes)).await?;
        if n == 0 {
            return Err(ReadError::Closed { inside_frame });
        }
        Ok(())
    }
}

/// One read of at most `max` bytes through the scratch buffer; `deliver` gets what arrived.
/// 0 at end of stream.
async fn receive(
    reader: &mut (impl AsyncRead + Unpin),
    max: usize,
    mut deliver: impl FnMut(&[u8]),
) -> io::Result<usize> {
    futures::future::poll_fn(|cx| {
        SCRATCH.with(|scratch| {
            let mut fallback = [0u8; 4096];
            // The borrow lasts for this poll only; `try_` because a re-entrant poll must not
            // panic (it would read through the small stack buffer instead).
            let mut borrowed = scratch.try_borrow_mut().ok();
            let buf: &mut [u8] = match borrowed.as_deref_mut() {
                Some(scratch) => {
                    if scratch.is_empty() {
                        scratch.resize(SCRATCH_BYTES, 0);
                    }
                    scratch
                }
                None => &mut fallback,
            };
            let len = buf.len().min(max);
            let Some(buf) = buf.get_mut(..len) else {
                return Poll::Ready(Ok(0));
            };
            match Pin::new(&mut *reader).poll_read(cx, buf) {
                Poll::Ready(Ok(n)) => {
                    deliver(buf.get(..n).unwrap_or_default());
                    Poll::Ready(Ok(n))
                }
                other => other,
            }
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for body in bodies {
            out.extend_from_slice(&(body.len() as i32).to_be_bytes());
            out.extend_from_slice(body);
        }
        out
    }

    #[test]
    fn pipelined_frames_come_out_whole_and_in_order() {
        let big = vec![7u8; 300_000];
        let bytes = framed(&[b"first", &big, b"third"]);
        let mut reader = FrameReader::new(Cursor::new(bytes));
        block_on(async {
            for want in [&b"first"[..], &big, b"third"] {
                reader.wait_for_data().await.unwrap();
                let size = reader.read_size().await.unwrap();
                assert_eq!(size as usize, want.len());
                let size = size as usize;
                let body = reader.read_body(size, body_bytes(size)).await.unwrap();
                assert_eq!(&body[..], want);
            }
            assert!(matches!(
                reader.wait_for_data().await,
                Err(ReadError::Closed { inside_frame: false })
            ));
        });
    }

    #[test]
    fn a_claimed_size_allocates_only_what_arrived() {
        let mut bytes = (100i32 << 20).to_be_bytes().to_vec();
        bytes.push(1);
        let mut reader = FrameReader::new(Cursor::new(bytes));
        block_on(async {
            assert_eq!(reader.read_size().await.unwrap(), 100 << 20);
            assert_eq!(reader.buffered(), 1);
            let err = reader.read_body(100 << 20, 100 << 20).await.unwrap_err();
            assert!(matches!(err, ReadError::Closed { inside_frame: true }), "{err}");
        });
    }

    #[test]
    fn read_ahead_is_bounded() {
        let bytes = framed(&[&[1u8; 100], &[2u8; 50_000]]);
        let mut reader = FrameReader::new(Cursor::new(bytes));
        block_on(async {
            let size = reader.read_size().await.unwrap();
            assert!(reader.buffered() <= READ_AHEAD_BYTES);
            let body = reader.read_body(size as usize, 100).await.unwrap();
            assert_eq!(body.len(), 100);
            assert!(reader.buffered() <= READ_AHEAD_BYTES);
        });
    }

    #[test]
    fn size_classes_hold_at_most_half_more() {
        for size in [1, 5000, 65_536, 65_537, 98_304, 98_305, 1 << 20, (1 << 20) + 1, 8 << 20] {
            let class = size_class(size);
            assert!(class >= size, "{size} -> {class}");
            assert!(class >= BODY_POOLED_BYTES_MIN);
            assert!(size < BODY_POOLED_BYTES_MIN || class <= size + size / 2, "{size}");
        }
        assert_eq!(body_bytes(100 << 20), 100 << 20);
    }

    #[test]
    fn pooled_bodies_are_reused_not_reallocated() {
        let big = vec![9u8; 200_000];
        let bytes = framed(&[&big, &big, b"tail"]);
        let mut reader = FrameReader::new(Cursor::new(bytes));
        block_on(async {
            let idle = pool_idle_bytes();
            let size = reader.read_size().await.unwrap() as usize;
            let first = reader.read_body(size, body_bytes(size)).await.unwrap();
            assert_eq!(&first[..], &big[..]);
            // The read-ahead beyond the body went to `pending`, not into the frame.
            assert!(reader.buffered() <= READ_AHEAD_BYTES);
            let first_at = first.as_ptr();
            drop(first);
            assert_eq!(pool_idle_bytes(), idle + size_class(size));
            let size = reader.read_size().await.unwrap() as usize;
            let second = reader.read_body(size, body_bytes(size)).await.unwrap();
            assert_eq!(pool_idle_bytes(), idle);
            assert_eq!(second.as_ptr(), first_at, "the second frame reuses the buffer");
            assert_eq!(&second[..], &big[..]);
            let size = reader.read_size().await.unwrap() as usize;
            assert_eq!(&reader.read_body(size, body_bytes(size)).await.unwrap()[..], b"tail");
        });
    }
}

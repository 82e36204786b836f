//! Reads request frames off a client stream, allocating only for bytes that arrived.
//!
//! The read path, in three calls the connection sequences with its budget and deadlines:
//! [`FrameReader::wait_for_data`] (something arrived), [`FrameReader::read_size`] (the 4-byte
//! size prefix), then, once the memory budget admitted the frame, [`FrameReader::read_body`].
//! Contract:
//! - Nothing past the prefix of a frame is read before the caller asks for its body, except a
//!   read-ahead of at most [`READ_AHEAD_BYTES`] (several small pipelined frames per read).
//! - A body buffer grows with the bytes that arrive, never to the claimed size up front, and
//!   is never zero-filled: each read lands in a per-thread scratch buffer (initialised once)
//!   and is appended to the body, which is at most twice the bytes received so far.
//! - An idle reader holds no buffer at all; a frame's `Bytes` never shares its allocation with
//!   bytes of a later frame.
//!
//! Generic over `AsyncRead`, so a TLS stream reads frames the same way. A Produce frame's
//! body is not reused: its records become the log's batches in place (see `take_records` in
//! handlers/produce.rs). What this file still costs on that path, the copy out of the scratch
//! buffer and the body's doubling, is measured in perf/results/2026-12-05-produce-copies.md.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use futures::io::AsyncRead;

use crate::protocol::FRAME_PREFIX_BYTES;

/// Bytes read beyond the frame being read (its prefix or its body), before they are admitted.
pub const READ_AHEAD_BYTES: usize = 8 * 1024;
/// Largest single read (the per-thread scratch buffer's size).
const SCRATCH_BYTES: usize = 256 * 1024;
/// First allocation for a body that did not arrive whole with its prefix.
const BODY_FIRST_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where reads land before they are appended to a frame: one per shard thread, zeroed
    /// once, so frame buffers need no zeroing. Borrowed only inside one `poll_read`.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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

    /// Reads a body of `size` bytes (after [`FrameReader::read_size`]).
    pub async fn read_body(&mut self, size: usize) -> Result<Bytes, ReadError> {
        if self.pending.len() >= size {
            let frame = self.pending.split_to(size).freeze();
            if self.pending.is_empty() {
                // Do not keep the frame's allocation alive through an empty view of it.
                self.pending = BytesMut::new();
            }
            return Ok(frame);
        }
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
                let body = reader.read_body(size as usize).await.unwrap();
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
            let err = reader.read_body(100 << 20).await.unwrap_err();
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
            let body = reader.read_body(size as usize).await.unwrap();
            assert_eq!(body.len(), 100);
            assert!(reader.buffered() <= READ_AHEAD_BYTES);
        });
    }
}

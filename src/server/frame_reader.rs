//! Reads request frames off a client stream, allocating only for bytes that arrived.
//!
//! The read path, in three calls the connection sequences with its budget and deadlines:
//! [`FrameReader::wait_for_data`] (something arrived), [`FrameReader::read_size`] (the 4-byte
//! size prefix), then, once the memory budget admitted the frame, [`FrameReader::read_body`].
//! Contract:
//! - Nothing past the prefix of a frame is read before the caller asks for its body, except a
//!   read-ahead of at most [`READ_AHEAD_BYTES`] (several small pipelined frames per read).
//! - A body of at most [`BODY_DIRECT_MAX`] (1 MiB, Kafka producers' default
//!   `max.request.size`: almost every Produce frame), which the caller's memory budget has
//!   already admitted whole, is allocated once at its size and read straight from the stream
//!   into place: no copy and no growth. On a plain TCP connection
//!   ([`FrameReader::with_socket`]) it is received from the socket into the allocation as it
//!   is, never zero-filled; over TLS it is zero-filled first (Rust's read traits take
//!   initialised memory). A larger one never to the claimed size
//!   up front: it grows with the bytes that arrive, is never zero-filled (each read lands in a
//!   per-thread scratch buffer, initialised once, and is appended to the body) and is at most
//!   twice the bytes received so far.
//! - An idle reader holds no buffer at all; a frame's `Bytes` never shares its allocation with
//!   bytes of a later frame.
//!
//! Generic over `AsyncRead`, so a TLS stream reads frames the same way. A Produce frame's
//! body is not reused: its records become the log's batches in place (see `take_records` in
//! handlers/produce.rs). What the scratch copy and the body's doubling cost that path before
//! bodies up to 1 MiB were read in place is in perf/results/2026-12-05-produce-copies.md.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use futures::io::AsyncRead;

use crate::protocol::FRAME_PREFIX_BYTES;

/// Bytes read beyond the frame being read (its prefix or its body), before they are admitted.
pub const READ_AHEAD_BYTES: usize = 8 * 1024;
/// Largest single read (the per-thread scratch buffer's size).
const SCRATCH_BYTES: usize = 256 * 1024;
/// A body of at most this that did not arrive whole with its prefix is allocated at its size
/// and read in place (see the module docs): no copy out of the scratch buffer and no
/// `realloc`s of doubling (9.2% and 5.4% of the broker's samples in the 1 KiB produce
/// profile, perf/results/2026-12-05-frame-direct.md). Received from the socket it is not
/// zero-filled either (the `memset`, 9.3%, is gone; the first touch of the cold memory moved
/// into the kernel's copy: perf/results/2026-12-06-recv-in-place.md).
const BODY_DIRECT_MAX: usize = 1024 * 1024;
/// When a body received straight from the socket waits for more data, the wait goes through
/// the stream (which registers the wake-up with the reactor) with at most this much
/// zero-filled room: whatever the stream reads there is the body's, nothing more is zeroed.
const WAIT_READ_BYTES: usize = 4096;
/// First allocation for a larger body that did not arrive whole with its prefix.
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
    /// The socket `reader` reads, when it is plain TCP: bodies read in place are received
    /// from it directly (see [`FrameReader::with_socket`]).
    socket: Option<RawFd>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `reader`, holding no buffer yet.
    pub fn new(reader: R) -> Self {
        FrameReader { reader, pending: BytesMut::new(), socket: None }
    }

    /// A reader of `reader`, which reads the socket `socket` without buffering (glommio's
    /// plain `TcpStream`, or a half of it): bodies read in place are received from `socket`
    /// straight into their unfilled allocation, and only a wait for more data goes through
    /// `reader`. `socket` must stay open as long as `reader` (it is `reader`'s own).
    pub fn with_socket(reader: R, socket: RawFd) -> Self {
        FrameReader { reader, pending: BytesMut::new(), socket: Some(socket) }
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
        if size <= BODY_DIRECT_MAX {
            return self.read_body_in_place(size).await;
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

    /// [`FrameReader::read_body`] of a body that fits [`BODY_DIRECT_MAX`] and is not all here:
    /// reads it from the stream straight into its own buffer, never past its end.
    async fn read_body_in_place(&mut self, size: usize) -> Result<Bytes, ReadError> {
        let Some(socket) = self.socket else {
            return self.read_body_zero_filled(size).await;
        };
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(&self.pending);
        self.pending = BytesMut::new();
        // A receive that got less than it asked for emptied the socket: the next read waits
        // through the stream at once (as glommio arms its readiness poll after a short read)
        // rather than first asking the socket again for nothing.
        let mut emptied = false;
        while body.len() < size {
            let reader = &mut self.reader;
            let n = futures::future::poll_fn(|cx| {
                let missing = size - body.len();
                let filled = body.len();
                let room = body.spare_capacity_mut().get_mut(..missing).unwrap_or_default();
                let received =
                    if std::mem::take(&mut emptied) { None } else { recv_into(socket, room) };
                if let Some(received) = received {
                    let n = received?;
                    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity
                    // (`n` <= `missing`, which fits it: the capacity is `size`).
                    #[allow(unsafe_code)]
                    unsafe {
                        body.set_len(filled + n.min(missing));
                    }
                    emptied = n < missing;
                    return Poll::Ready(Ok(n));
                }
                // Nothing there: wait through the stream, with a little zero-filled room.
                body.resize(filled + missing.min(WAIT_READ_BYTES), 0);
                let read = match body.get_mut(filled..) {
                    Some(room) => Pin::new(&mut *reader).poll_read(cx, room),
                    None => Poll::Ready(Ok(0)),
                };
                let n = match &read {
                    Poll::Ready(Ok(n)) => *n,
                    _ => 0,
                };
                body.truncate(filled + n);
                read
            })
            .await?;
            if n == 0 {
                return Err(ReadError::Closed { inside_frame: true });
            }
        }
        Ok(Bytes::from(body))
    }

    /// [`FrameReader::read_body_in_place`] through the stream (TLS, tests): the body is
    /// zero-filled once, then read into.
    async fn read_body_zero_filled(&mut self, size: usize) -> Result<Bytes, ReadError> {
        let mut body = vec![0u8; size];
        let mut filled = self.pending.len();
        let Some(head) = body.get_mut(..filled) else {
            // Unreachable: the caller checked that less than `size` bytes are pending.
            return Err(ReadError::Closed { inside_frame: true });
        };
        head.copy_from_slice(&self.pending);
        self.pending = BytesMut::new();
        while let Some(rest) = body.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            let reader = &mut self.reader;
            let n =
                futures::future::poll_fn(|cx| Pin::new(&mut *reader).poll_read(cx, rest)).await?;
            if n == 0 {
                return Err(ReadError::Closed { inside_frame: true });
            }
            filled += n;
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

/// One `recv(2)` from `socket` that does not wait, into memory not yet initialised: `None`
/// when nothing is there. Written by hand because Rust's read traits (and glommio's streams)
/// take `&mut [u8]`, initialised memory, which would mean zero-filling every body first.
fn recv_into(socket: RawFd, room: &mut [MaybeUninit<u8>]) -> Option<io::Result<usize>> {
    loop {
        // SAFETY: the kernel writes at most `room.len()` bytes at `room`'s address, memory the
        // caller lent us mutably; it reads none of it. A wrong descriptor is an error, not UB.
        #[allow(unsafe_code)]
        let n =
            unsafe { libc::recv(socket, room.as_mut_ptr().cast(), room.len(), libc::MSG_DONTWAIT) };
        if let Ok(n) = usize::try_from(n) {
            return Some(Ok(n));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => return None,
            io::ErrorKind::Interrupted => {}
            _ => return Some(Err(error)),
        }
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

    /// A stream that hands out at most `step` bytes per read.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step).min(self.bytes.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn bodies_read_in_place_come_out_whole_from_small_reads() {
        let exact = (0..BODY_DIRECT_MAX).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        let larger = vec![9u8; BODY_DIRECT_MAX + 1];
        let bodies: [&[u8]; 4] = [b"small", &exact, &larger, &[3u8; 70_000]];
        for step in [1_000, 4_099, 65_536] {
            let bytes = framed(&bodies);
            let mut reader = FrameReader::new(Trickle { bytes, at: 0, step });
            block_on(async {
                for want in bodies {
                    reader.wait_for_data().await.unwrap();
                    let size = reader.read_size().await.unwrap();
                    let body = reader.read_body(size as usize).await.unwrap();
                    assert!(body[..] == *want, "step {step}, body of {}", want.len());
                }
                assert!(reader.wait_for_data().await.is_err());
            });
        }
    }

    /// The reading end of a socket pair as a stream that counts what it reads and, when
    /// nothing is there, asks to be polled again.
    struct Socket {
        stream: std::os::unix::net::UnixStream,
        read_through: Vec<usize>,
    }

    impl AsyncRead for Socket {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match io::Read::read(&mut self.stream, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Ok(n) => {
                    self.read_through.push(n);
                    Poll::Ready(Ok(n))
                }
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    }

    #[test]
    fn bodies_received_from_the_socket_come_out_whole_and_zero_fill_only_waits() {
        use std::os::fd::AsRawFd;
        let exact = (0..BODY_DIRECT_MAX).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        let bodies: Vec<Vec<u8>> = vec![b"small".to_vec(), exact, vec![3u8; 70_000]];
        let bytes = framed(&bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let (reading, mut writing) = std::os::unix::net::UnixStream::pair().unwrap();
        reading.set_nonblocking(true).unwrap();
        // Written in pieces from another thread, so the reader also waits for data.
        let writer = std::thread::spawn(move || {
            for piece in bytes.chunks(33_333) {
                io::Write::write_all(&mut writing, piece).unwrap();
            }
        });
        let fd = reading.as_raw_fd();
        let mut reader =
            FrameReader::with_socket(Socket { stream: reading, read_through: vec![] }, fd);
        block_on(async {
            for want in &bodies {
                reader.wait_for_data().await.unwrap();
                let size = reader.read_size().await.unwrap();
                let body = reader.read_body(size as usize).await.unwrap();
                assert!(body[..] == want[..], "body of {}", want.len());
            }
            assert!(reader.wait_for_data().await.is_err());
        });
        writer.join().unwrap();
        // Besides the read-ahead of prefixes (through the scratch buffer), the stream read at
        // most one zero-filled wait's room at a time: the rest went straight into the bodies.
        let through: usize = reader.reader.read_through.iter().sum();
        let total: usize = bodies.iter().map(Vec::len).sum();
        assert!(reader.reader.read_through.iter().all(|&n| n <= SCRATCH_BYTES));
        assert!(through < total / 2, "{through} of {total} bytes read through the stream");
    }

    #[test]
    fn a_body_read_in_place_that_stops_short_is_a_close_inside_the_frame() {
        let mut bytes = framed(&[&[5u8; 200_000]]);
        bytes.truncate(150_000);
        let mut reader = FrameReader::new(Trickle { bytes, at: 0, step: 10_000 });
        block_on(async {
            let size = reader.read_size().await.unwrap();
            let err = reader.read_body(size as usize).await.unwrap_err();
            assert!(matches!(err, ReadError::Closed { inside_frame: true }), "{err}");
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

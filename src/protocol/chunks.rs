//! Responses as a list of buffers, so that fetched record data reaches the socket uncopied.
//!
//! [`encode_response`](super::encode_response) encodes a whole response into one `BytesMut`:
//! for a Fetch that is one more copy of every fetched byte. [`encode_response_chunks`]
//! encodes the same bytes, in the same order, as a [`Chunks`]: owned pieces for the header
//! and the per-partition metadata, and each partition's `records` that is at least
//! [`SPLICE_BYTES_MIN`] long as the very `Bytes` the handler put in the response (the cache's
//! or the segment read's buffer). Smaller record sets are copied into the neighbouring owned
//! piece, so a response of many small partitions stays one buffer and one write.
//!
//! How: the generated encoders write a `records` field with `put_slice` on the buffer they
//! are given. [`SpliceBuf`] is that buffer; it knows, in encoding order, the records to
//! splice, and when `put_slice` is handed the next of them (same pointer, same length, hence
//! the same bytes) it closes the current owned piece and pushes the shared `Bytes` instead of
//! copying. Any slice it does not recognise is copied, so the output is always the bytes
//! `encode_response` gives; recognising fewer records only costs copies.
//!
//! Fetch and ShareFetch responses are spliced (replica fetches are Fetch responses); every
//! other response is one owned chunk.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use super::{body_size, encode_response, response_header_version, FRAME_PREFIX_BYTES};

/// Record sets at least this long are written as their own buffer; shorter ones are copied
/// into the owned piece around them. Each extra buffer is another `send`, and on loopback
/// the receiving side's packet processing also runs on the broker's CPU: with 16 KiB the
/// tail-reading A/B measured about 6% more broker CPU per message at 2 partitions
/// (perf/results/2026-12-05-zero-copy-fetch.md). At 256 KiB the copy saved (tens of µs)
/// is well above a send's cost.
pub const SPLICE_BYTES_MIN: usize = 256 * 1024;

/// One response frame, size prefix included, as buffers to write in order.
#[derive(Clone, Debug, Default)]
pub struct Chunks {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Chunks {
    /// The buffers, in order; none is empty.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Total bytes of the frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame in one buffer (a copy: for tests and callers that need it contiguous).
    pub fn to_contiguous(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.len);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out
    }

    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }
}

impl From<BytesMut> for Chunks {
    fn from(bytes: BytesMut) -> Chunks {
        let mut chunks = Chunks::default();
        chunks.push(bytes.freeze());
        chunks
    }
}

/// Encodes a response frame like [`encode_response`], with the record sets of a Fetch or
/// ShareFetch of at least [`SPLICE_BYTES_MIN`] bytes left in their own buffers.
pub fn encode_response_chunks(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Chunks> {
    encode_response_spliced(key, version, correlation_id, body, SPLICE_BYTES_MIN)
}

/// [`encode_response_chunks`] with the threshold given: record sets of at least
/// `splice_bytes_min` bytes (and at least one byte) are not copied.
pub fn encode_response_spliced(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    splice_bytes_min: usize,
) -> anyhow::Result<Chunks> {
    let shared = shared_records(body, splice_bytes_min.max(1));
    if shared.is_empty() {
        return encode_response(key, version, correlation_id, body).map(Chunks::from);
    }
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = response_header_version(key, version);
    let size = header.compute_size(header_version)? + body_size(body, version)?;
    let shared_bytes: usize = shared.iter().map(Bytes::len).sum();
    let owned_bytes = (FRAME_PREFIX_BYTES + size).saturating_sub(shared_bytes);
    let mut buf = SpliceBuf::new(shared, owned_bytes);
    buf.put_i32(i32::try_from(size)?);
    header.encode(&mut buf, header_version)?;
    match body {
        ResponseKind::Fetch(m) => m.encode(&mut buf, version)?,
        ResponseKind::ShareFetch(m) => m.encode(&mut buf, version)?,
        _ => unreachable!("only fetch responses have shared records"),
    }
    let chunks = buf.finish();
    anyhow::ensure!(
        chunks.len() == FRAME_PREFIX_BYTES + size,
        "spliced frame of {} bytes, {} encoded",
        chunks.len(),
        FRAME_PREFIX_BYTES + size
    );
    Ok(chunks)
}

/// The record sets of `body` of at least `min` bytes, in the order the encoder writes them.
fn shared_records(body: &ResponseKind, min: usize) -> Vec<Bytes> {
    let big = |records: &Option<Bytes>| records.as_ref().filter(|r| r.len() >= min).cloned();
    match body {
        ResponseKind::Fetch(m) => {
            let partitions = m.responses.iter().flat_map(|t| &t.partitions);
            partitions.filter_map(|p| big(&p.records)).collect()
        }
        ResponseKind::ShareFetch(m) => {
            let partitions = m.responses.iter().flat_map(|t| &t.partitions);
            partitions.filter_map(|p| big(&p.records)).collect()
        }
        _ => Vec::new(),
    }
}

/// The encoder's output buffer: copies what it is given into an owned piece, except the
/// shared record sets, which become chunks of their own.
struct SpliceBuf {
    done: Chunks,
    /// The owned piece being filled; `split` hands its bytes to `done` and keeps the rest of
    /// its capacity, so all owned pieces share one allocation.
    owned: BytesMut,
    shared: Vec<Bytes>,
    /// Index in `shared` of the next record set the encoder will write.
    next: usize,
}

impl SpliceBuf {
    fn new(shared: Vec<Bytes>, owned_bytes: usize) -> SpliceBuf {
        let owned = BytesMut::with_capacity(owned_bytes);
        SpliceBuf { done: Chunks::default(), owned, shared, next: 0 }
    }

    /// The chunks. A shared record set not recognised was copied: correct, only slower.
    fn finish(mut self) -> Chunks {
        debug_assert_eq!(self.next, self.shared.len(), "every shared record set was spliced");
        let last = self.owned.split().freeze();
        self.done.push(last);
        self.done
    }

    /// Whether `src` is the next shared record set: the same memory, so the same bytes.
    fn is_next_shared(&self, src: &[u8]) -> bool {
        let Some(next) = self.shared.get(self.next) else {
            return false;
        };
        next.as_ptr() == src.as_ptr() && next.len() == src.len()
    }
}

// SAFETY: every method of the BufMut contract (`remaining_mut`, `chunk_mut`, `advance_mut`)
// is delegated unchanged to the owned `BytesMut`, which upholds it; `put_slice` either
// delegates too or leaves `owned` untouched (the bytes go to `done` as a shared chunk).
unsafe impl BufMut for SpliceBuf {
    fn remaining_mut(&self) -> usize {
        self.owned.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (`cnt` bytes of `chunk_mut` initialised) is about
        // `owned`'s chunk, which is what `chunk_mut` returned.
        unsafe { self.owned.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.owned.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if !self.is_next_shared(src) {
            return self.owned.put_slice(src);
        }
        let piece = self.owned.split().freeze();
        self.done.push(piece);
        let records = std::mem::take(&mut self.shared[self.next]);
        self.next += 1;
        self.done.push(records);
    }
}

/// Offsets count every byte written, spliced or not. The message encoders never go back
/// (only record batch encoders use gaps), so going back into a finished piece is a bug.
impl ByteBufMut for SpliceBuf {
    fn offset(&self) -> usize {
        self.done.len() + self.owned.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(offset >= self.done.len(), "seek into a finished piece");
        self.owned.resize(offset - self.done.len(), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        assert!(r.start >= self.done.len(), "range in a finished piece");
        let base = self.done.len();
        &mut self.owned[r.start - base..r.end - base]
    }
}

#[cfg(test)]
mod tests;

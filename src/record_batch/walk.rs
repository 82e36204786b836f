//! Walking every record of one batch, as Kafka's `DefaultRecord.readFrom` does, checking each
//! length, count, offset delta and timestamp on the way.
//!
//! The walker reads from any `BufRead`: a `&[u8]` for an uncompressed batch (every record is
//! then checked in place, with no copy and no allocation) or a decompressor (records are
//! checked in the decompressor's buffer when they fit in it, else assembled in one scratch
//! buffer that grows only with bytes that actually arrive). `max_bytes` bounds the bytes the
//! walk will take from the reader, so a zip bomb costs at most that much work and memory.
//!
//! Record layout (v2): length varint, attributes i8, timestampDelta varlong, offsetDelta
//! varint, keyLength varint, key, valueLength varint, value, header count varint, then per
//! header: keyLength varint (≥ 0), key (UTF-8), valueLength varint, value. Varints are zigzag
//! LEB128, at most 5 bytes (10 for varlongs), decoded with Java's rules (`ByteUtils`).
//!
//! Structural faults end the walk at once ([`WalkError::Structure`]); a keyless record on a
//! compacted topic or a timestamp outside the allowed window is noted per record
//! ([`Walked::flagged`]) and the walk goes on, so that every such record can be listed.

use std::io::{self, BufRead};

use super::BatchHeader;

/// `-1`: a record without a timestamp (never checked against the window).
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// What the walk checks besides structure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalkRules {
    /// A record without a key is flagged (`cleanup.policy` contains `compact`).
    pub compacted: bool,
    /// Timestamps outside `[low, high]` are flagged (CreateTime topics only).
    pub window: Option<(i64, i64)>,
    /// Most bytes (length varints included) the records may occupy.
    pub max_bytes: usize,
}

/// Why one record was flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flag {
    /// No key, on a compacted topic.
    Keyless,
    /// Its timestamp lies outside the window.
    Timestamp(i64),
}

/// What a complete walk found.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Largest record timestamp (`-1` when no record has one).
    pub max_timestamp: i64,
    /// Flagged records: (index in the batch, why). Empty (and unallocated) for good batches.
    pub flagged: Vec<(i32, Flag)>,
    /// Record bytes walked (length varints included).
    pub bytes: usize,
}

/// Why the walk stopped.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// A record does not parse; `index` is its position in the batch.
    Structure { index: i32, reason: &'static str },
    /// The records would exceed [`WalkRules::max_bytes`].
    TooLarge { max: usize },
    /// The reader failed (for a decompressor: the compressed data is corrupt).
    Io(io::Error),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

/// Where each record's raw bytes go (its length varint included), for recompression.
pub(crate) trait Sink {
    /// Takes the bytes of one record.
    fn put(&mut self, record: &[u8]) -> io::Result<()>;
}

/// No sink: validation only.
impl Sink for () {
    #[inline(always)]
    fn put(&mut self, _record: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// Walks the `header.record_count` records that `reader` yields, then checks the reader is
/// exhausted. Offset deltas must be `0, 1, …, count-1` (Kafka's v2 rule), timestamps
/// `baseTimestamp + delta` must not overflow.
pub(crate) fn walk<R: BufRead, S: Sink>(
    reader: &mut R,
    header: &BatchHeader,
    rules: &WalkRules,
    sink: &mut S,
) -> Result<Walked, WalkError> {
    let count = header.record_count.max(0);
    let mut walked = Walked { max_timestamp: NO_TIMESTAMP, ..Walked::default() };
    let mut scratch = Vec::new();
    for index in 0..count {
        let available = reader.fill_buf()?;
        let fields = match in_place(available, index) {
            InPlace::Whole { bytes, fields } => {
                let fields = fields.map_err(|reason| WalkError::Structure { index, reason })?;
                walked.bytes = add_bytes(walked.bytes, bytes, rules.max_bytes)?;
                let record = available.get(..bytes).unwrap_or_default();
                sink.put(record)?;
                reader.consume(bytes);
                fields
            }
            InPlace::Split => {
                let (bytes, fields) = assemble(reader, index, &mut scratch, &walked, rules)?;
                walked.bytes = add_bytes(walked.bytes, bytes, rules.max_bytes)?;
                sink.put(&scratch)?;
                fields
            }
        };
        note(&mut walked, header, rules, index, fields)?;
    }
    if !reader.fill_buf()?.is_empty() {
        return Err(WalkError::Structure { index: count, reason: "bytes after the last record" });
    }
    Ok(walked)
}

fn add_bytes(total: usize, bytes: usize, max: usize) -> Result<usize, WalkError> {
    match total.checked_add(bytes) {
        Some(sum) if sum <= max => Ok(sum),
        _ => Err(WalkError::TooLarge { max }),
    }
}

/// Records what one record's fields mean for the batch: timestamp, flags.
fn note(
    walked: &mut Walked,
    header: &BatchHeader,
    rules: &WalkRules,
    index: i32,
    fields: Fields,
) -> Result<(), WalkError> {
    let timestamp = header
        .base_timestamp
        .checked_add(fields.timestamp_delta)
        .ok_or(WalkError::Structure { index, reason: "timestamp delta overflows" })?;
    walked.max_timestamp = walked.max_timestamp.max(timestamp);
    if rules.compacted && !fields.has_key {
        walked.flagged.push((index, Flag::Keyless));
    } else if let Some((low, high)) = rules.window {
        if timestamp != NO_TIMESTAMP && !(low..=high).contains(&timestamp) {
            walked.flagged.push((index, Flag::Timestamp(timestamp)));
        }
    }
    Ok(())
}

/// The fields of one record that matter beyond its structure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub timestamp_delta: i64,
    pub has_key: bool,
}

enum InPlace {
    /// The record (length varint + body, `bytes` in all) lies in the buffer.
    Whole { bytes: usize, fields: Result<Fields, &'static str> },
    /// It does not (or its length varint does not): assemble it.
    Split,
}

#[inline(always)]
fn in_place(buf: &[u8], index: i32) -> InPlace {
    let mut at = 0;
    let Some(length) = varint(buf, &mut at) else {
        // A varint takes at most 5 bytes: with 5 at hand it is malformed, else maybe cut by
        // the end of the buffer (`assemble` reads on and tells).
        if buf.len() >= 5 {
            return InPlace::Whole { bytes: 0, fields: Err("malformed record length varint") };
        }
        return InPlace::Split;
    };
    let Ok(length) = usize::try_from(length) else {
        return InPlace::Whole { bytes: 0, fields: Err("negative record length") };
    };
    match at.checked_add(length).and_then(|end| buf.get(at..end)) {
        Some(body) => InPlace::Whole { bytes: at + length, fields: parse_body(body, index) },
        None => InPlace::Split,
    }
}

/// Slow path: reads the length varint byte by byte, then the body into `scratch`, which ends
/// up holding the whole record (varint included).
fn assemble<R: BufRead>(
    reader: &mut R,
    index: i32,
    scratch: &mut Vec<u8>,
    walked: &Walked,
    rules: &WalkRules,
) -> Result<(usize, Fields), WalkError> {
    let structure = |reason| WalkError::Structure { index, reason };
    scratch.clear();
    let length = loop {
        let byte = match reader.fill_buf()?.first() {
            Some(&b) => b,
            None if scratch.is_empty() => return Err(structure("fewer records than the count")),
            None => return Err(structure("record length varint cut short")),
        };
        reader.consume(1);
        scratch.push(byte);
        if byte & 0x80 == 0 || scratch.len() == 5 {
            let mut at = 0;
            let value =
                varint(scratch, &mut at).ok_or(structure("malformed record length varint"))?;
            break value;
        }
    };
    let length = usize::try_from(length).map_err(|_| structure("negative record length"))?;
    let total = scratch.len().saturating_add(length);
    if walked.bytes.saturating_add(total) > rules.max_bytes {
        return Err(WalkError::TooLarge { max: rules.max_bytes });
    }
    let head = scratch.len();
    while scratch.len() < total {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Err(structure("record cut short"));
        }
        let take = available.len().min(total - scratch.len());
        scratch.extend_from_slice(available.get(..take).unwrap_or_default());
        reader.consume(take);
    }
    let fields = parse_body(scratch.get(head..).unwrap_or_default(), index).map_err(structure)?;
    Ok((total, fields))
}

/// Checks one record body (after its length varint) and returns its fields. The body must be
/// consumed exactly (Kafka: "Invalid record size").
#[inline(always)]
pub(crate) fn parse_body(body: &[u8], index: i32) -> Result<Fields, &'static str> {
    let mut at = 1; // attributes: no bits are used in v2
    if body.is_empty() {
        return Err("empty record");
    }
    let timestamp_delta = varlong(body, &mut at).ok_or("malformed timestamp delta")?;
    let offset_delta = varint(body, &mut at).ok_or("malformed offset delta")?;
    if offset_delta != index {
        return Err("offset deltas are not 0, 1, 2, … in order");
    }
    let key = varint(body, &mut at).ok_or("malformed key length")?;
    skip(body, &mut at, key, "key length below -1", "key past the record end")?;
    let value = varint(body, &mut at).ok_or("malformed value length")?;
    skip(body, &mut at, value, "value length below -1", "value past the record end")?;
    let headers = varint(body, &mut at).ok_or("malformed header count")?;
    if headers < 0 {
        return Err("negative header count");
    }
    for _ in 0..headers {
        let key_len = varint(body, &mut at).ok_or("malformed header key length")?;
        if key_len < 0 {
            return Err("negative header key length");
        }
        let start = at;
        skip(body, &mut at, key_len, "", "header key past the record end")?;
        let key_bytes = body.get(start..at).unwrap_or_default();
        if std::str::from_utf8(key_bytes).is_err() {
            return Err("header key is not UTF-8");
        }
        let value_len = varint(body, &mut at).ok_or("malformed header value length")?;
        skip(
            body,
            &mut at,
            value_len,
            "header value length below -1",
            "header value past the record end",
        )?;
    }
    if at != body.len() {
        return Err("record length does not match its fields");
    }
    Ok(Fields { timestamp_delta, has_key: key >= 0 })
}

/// Skips a length-prefixed field: -1 is null, below that is `negative`.
#[inline(always)]
fn skip(
    body: &[u8],
    at: &mut usize,
    len: i32,
    negative: &'static str,
    past_end: &'static str,
) -> Result<(), &'static str> {
    if len < 0 {
        return if len == -1 { Ok(()) } else { Err(negative) };
    }
    let end = at.checked_add(len as usize).ok_or(past_end)?;
    if end > body.len() {
        return Err(past_end);
    }
    *at = end;
    Ok(())
}

/// A zigzag varint (Java `ByteUtils.readVarint`: at most 5 bytes, 4 bits used of the 5th).
#[inline(always)]
pub(crate) fn varint(buf: &[u8], at: &mut usize) -> Option<i32> {
    let first = *buf.get(*at)?;
    if first & 0x80 == 0 {
        *at += 1;
        return Some(unzigzag32(u32::from(first)));
    }
    // Two bytes (values up to 2^14: the lengths of records under 8 KiB, offset deltas under
    // 8192) are as common as one in produce data: decoded inline too.
    if let Some(&second) = buf.get(*at + 1) {
        if second & 0x80 == 0 {
            *at += 2;
            return Some(unzigzag32(u32::from(first & 0x7f) | (u32::from(second) << 7)));
        }
    }
    varint_long_form(buf, at)
}

#[inline(never)]
fn varint_long_form(buf: &[u8], at: &mut usize) -> Option<i32> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let byte = *buf.get(*at + i)?;
        if i == 4 && byte & 0xf0 != 0 {
            return None;
        }
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *at += i + 1;
            return Some(unzigzag32(value));
        }
    }
    None
}

/// A zigzag varlong (Java `ByteUtils.readVarlong`: at most 10 bytes, 1 bit used of the 10th).
#[inline(always)]
pub(crate) fn varlong(buf: &[u8], at: &mut usize) -> Option<i64> {
    let first = *buf.get(*at)?;
    if first & 0x80 == 0 {
        *at += 1;
        return Some(unzigzag64(u64::from(first)));
    }
    if let Some(&second) = buf.get(*at + 1) {
        if second & 0x80 == 0 {
            *at += 2;
            return Some(unzigzag64(u64::from(first & 0x7f) | (u64::from(second) << 7)));
        }
    }
    varlong_long_form(buf, at)
}

#[inline(never)]
fn varlong_long_form(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *buf.get(*at + i)?;
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *at += i + 1;
            return Some(unzigzag64(value));
        }
    }
    None
}

#[inline(always)]
fn unzigzag32(v: u32) -> i32 {
    (v >> 1) as i32 ^ -((v & 1) as i32)
}

#[inline(always)]
fn unzigzag64(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    fn encode(v: i64) -> Vec<u8> {
        let mut z = zigzag(v);
        let mut out = Vec::new();
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        out
    }

    #[test]
    fn varints_round_trip_and_refuse_overlong_forms() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64] {
            let bytes = encode(v);
            let mut at = 0;
            assert_eq!(varint(&bytes, &mut at), Some(v as i32), "{v}");
            assert_eq!(at, bytes.len());
        }
        for v in [0i64, -1, i64::MAX, i64::MIN, 1 << 40] {
            let bytes = encode(v);
            let mut at = 0;
            assert_eq!(varlong(&bytes, &mut at), Some(v), "{v}");
            assert_eq!(at, bytes.len());
        }
        // Six bytes, or a 5th byte using more than 4 bits: Java refuses both.
        assert_eq!(varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut 0), None);
        assert_eq!(varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut 0), None);
        assert_eq!(varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut 0), Some(i32::MIN));
        assert_eq!(varlong(&[0xff; 10], &mut 0), None);
        assert_eq!(varint(&[0x80], &mut 0), None, "cut short");
    }
}

//! Transaction markers: the control batches a transaction coordinator writes to end a
//! transaction in each partition (Kafka's `EndTransactionMarker`).
//!
//! A marker batch has attributes transactional + control, the producer's id and epoch,
//! base sequence -1 and ONE record whose key is `version i16 = 0, type i16` (0 = abort,
//! 1 = commit) and whose value is `version i16 = 0, coordinator epoch i32`.

use super::{
    compute_crc, BatchError, BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL, CRC_AT, HEADER_BYTES,
    LOG_OVERHEAD_BYTES, MAGIC_V2,
};

/// Control record type of an abort marker.
pub const MARKER_ABORT: i16 = 0;
/// Control record type of a commit marker.
pub const MARKER_COMMIT: i16 = 1;

/// Bytes of the one record of a marker batch: length varint (1 byte) + 16 bytes of body.
const MARKER_RECORD_BYTES: usize = 17;
/// Bytes of a whole marker batch.
pub const MARKER_BATCH_BYTES: usize = HEADER_BYTES + MARKER_RECORD_BYTES;

/// Encodes a marker batch at base offset 0 (the log assigns the real offset).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind = if commit { MARKER_COMMIT } else { MARKER_ABORT };
    let mut out = Vec::with_capacity(MARKER_BATCH_BYTES);
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let length = (MARKER_BATCH_BYTES - LOG_OVERHEAD_BYTES) as i32;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
    out.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&1i32.to_be_bytes()); // record count
    debug_assert_eq!(out.len(), HEADER_BYTES);
    // Record: length 16 (zigzag 32), attributes 0, timestamp delta 0, offset delta 0,
    // key length 4 (zigzag 8), key, value length 6 (zigzag 12), value, 0 headers.
    out.extend_from_slice(&[32, 0, 0, 0, 8]);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(12);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&coordinator_epoch.to_be_bytes());
    out.push(0);
    assert_eq!(out.len(), MARKER_BATCH_BYTES);
    let crc = compute_crc(&out).unwrap_or(0);
    if let Some(field) = out.get_mut(CRC_AT..CRC_AT + 4) {
        field.copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// For a control batch, whether it is a commit marker (`Some(true)`), an abort marker
/// (`Some(false)`), or neither (`None`: not a control batch, or a control type we do not
/// know). Never panics on malformed input.
pub fn marker_kind(batch: &[u8], header: &BatchHeader) -> Option<bool> {
    if !header.is_control() {
        return None;
    }
    // Control batches are never compressed; the key of the first record is at a fixed place
    // only when every varint before it is one byte, which Kafka's markers always are: parse
    // generally anyway.
    let mut at = HEADER_BYTES;
    let _length = varint(batch, &mut at)?;
    at += 1; // attributes
    let _timestamp_delta = varint(batch, &mut at)?;
    let _offset_delta = varint(batch, &mut at)?;
    let key_len = varint(batch, &mut at)?;
    if key_len < 4 {
        return None;
    }
    let kind = batch.get(at + 2..at + 4)?;
    match i16::from_be_bytes([*kind.first()?, *kind.get(1)?]) {
        MARKER_ABORT => Some(false),
        MARKER_COMMIT => Some(true),
        _ => None,
    }
}

fn varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// What a read_committed reader leaves out of batches read in log order (Kafka's consumer
/// filter, `CompletedFetch`): every control batch, and the transactional batches of a
/// producer from the first offset of one of its aborted transactions up to its next marker.
/// `aborted` holds (producer id, first offset) of the aborted transactions with data in the
/// range read, as Fetch answers them; each one applies once, so a later transaction of the
/// same producer that committed is kept.
#[derive(Debug)]
pub struct AbortedFilter {
    /// Aborted transactions not yet reached, latest first (popped from the back).
    pending: Vec<(i64, i64)>,
    /// Producers inside an aborted transaction at the current batch.
    aborting: std::collections::HashSet<i64>,
}

impl AbortedFilter {
    /// A filter over the aborted transactions `(producer id, first offset)`.
    pub fn new(aborted: impl IntoIterator<Item = (i64, i64)>) -> AbortedFilter {
        let mut pending: Vec<(i64, i64)> = aborted.into_iter().collect();
        pending.sort_by_key(|(_, first)| std::cmp::Reverse(*first));
        AbortedFilter { pending, aborting: std::collections::HashSet::new() }
    }

    /// Takes the next batch (batches must come in offset order): whether a read_committed
    /// reader skips it.
    pub fn skips(&mut self, header: &BatchHeader) -> bool {
        while let Some((producer, first)) = self.pending.last().copied() {
            if first > header.last_offset() {
                break;
            }
            self.pending.pop();
            self.aborting.insert(producer);
        }
        if header.is_control() {
            // A marker ends its producer's transaction, aborted or not.
            self.aborting.remove(&header.producer_id);
            return true;
        }
        header.is_transactional() && self.aborting.contains(&header.producer_id)
    }
}

/// Why a batch may not come from a client.
pub fn check_client_batch(header: &BatchHeader) -> Result<(), BatchError> {
    if header.is_control() {
        return Err(BatchError::ControlFromClient);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn markers_validate_decode_and_say_their_kind() {
        for commit in [false, true] {
            let batch = marker_batch(42, 3, commit, 7, 1_000);
            let header = super::super::validate(&batch, 1 << 20).unwrap();
            assert!(header.is_control());
            assert!(header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(marker_kind(&batch, &header), Some(commit));
            // kafka-protocol (the clients' view) decodes it as a control record.
            let mut buf = bytes::Bytes::from(batch.clone());
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 1);
            assert!(set.records[0].control);
            let key = set.records[0].key.clone().unwrap();
            assert_eq!(&key[..], &[0, 0, 0, u8::from(commit)]);
        }
    }

    fn header(base_offset: i64, producer_id: i64, attributes: i16) -> BatchHeader {
        let mut batch = marker_batch(producer_id, 0, true, 0, 0);
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        BatchHeader::parse(&batch).unwrap()
    }

    #[test]
    fn the_aborted_filter_skips_markers_and_aborted_batches_once() {
        let txn = ATTR_TRANSACTIONAL;
        let marker = ATTR_TRANSACTIONAL | ATTR_CONTROL;
        // Producer 7 aborts 0-1 (marker 2) and commits 4 (marker 5); producer 8 commits 3
        // (marker 6); 9 writes outside transactions at 7.
        let mut filter = AbortedFilter::new([(7, 0)]);
        let skipped: Vec<bool> = [
            header(0, 7, txn),
            header(1, 7, txn),
            header(2, 7, marker),
            header(3, 8, txn),
            header(4, 7, txn),
            header(5, 7, marker),
            header(6, 8, marker),
            header(7, 9, 0),
        ]
        .iter()
        .map(|h| filter.skips(h))
        .collect();
        assert_eq!(skipped, [true, true, true, false, false, true, true, false]);
        // A read starting inside the aborted transaction still skips its batches.
        let mut filter = AbortedFilter::new([(7, 0)]);
        assert!(filter.skips(&header(1, 7, txn)));
    }

    #[test]
    fn marker_kind_never_panics_on_garbage() {
        let batch = marker_batch(1, 0, true, 0, 0);
        let header = BatchHeader::parse(&batch).unwrap();
        for cut in 0..batch.len() {
            let _ = marker_kind(&batch[..cut], &header);
        }
    }
}

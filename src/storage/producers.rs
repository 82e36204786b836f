//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges and offsets of its last [`BATCHES_KEPT`] batches, as Kafka's
//! `ProducerStateManager` keeps them.
//!
//! `append` checks every batch that carries a producer id: a retry of one of the last five
//! batches is answered with the offsets it got the first time and is not written again; a gap
//! in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is INVALID_PRODUCER_EPOCH.
//! The table is rebuilt on start-up from the snapshot written when the active segment was
//! created (state below its base offset) plus the recovery scan of the active segment, so a
//! retry that crosses a broker restart is still recognised.
//!
//! Snapshot file `<20-digit base offset>.producers`: magic u32, entry count u32, entries of
//! (producer id i64, epoch i16, first seq i32, last seq i32, base offset i64, last offset
//! i64), then CRC-32C u32 of everything before it; all big-endian. A snapshot that fails its
//! CRC is ignored (it is written at roll time without fdatasync: losing it only weakens
//! deduplication of batches older than the active segment, never correctness of the log).

use std::collections::{HashMap, VecDeque};

use crate::record_batch::BatchHeader;

/// Batches remembered per producer (Kafka's max.in.flight.requests.per.connection limit for
/// idempotence).
pub const BATCHES_KEPT: usize = 5;
/// How long a producer that appends nothing stays known (Kafka's producer.id.expiration.ms
/// default): after that its retries are no longer recognised, as in Kafka.
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
/// OUT_OF_ORDER_SEQUENCE_NUMBER.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// INVALID_PRODUCER_EPOCH.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;

const SNAPSHOT_MAGIC: u32 = 0x5354_5031; // "STP1"
const ENTRY_BYTES: usize = 8 + 2 + 4 + 4 + 8 + 8;

/// Why a producer's batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The batch does not continue the producer's sequence.
    #[error("producer {producer_id}: sequence {got}, expected {expected}")]
    OutOfOrder {
        /// Producer id.
        producer_id: i64,
        /// First sequence of the batch.
        got: i32,
        /// Next sequence the broker expects.
        expected: i32,
    },
    /// The batch comes from an epoch older than the producer's current one (a zombie).
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    StaleEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch of the batch.
        got: i16,
        /// Current epoch.
        current: i16,
    },
}

impl ProducerError {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45) or INVALID_PRODUCER_EPOCH (47).
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ProducerError::OutOfOrder { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
            ProducerError::StaleEpoch { .. } => INVALID_PRODUCER_EPOCH,
        }
    }
}

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchRecord {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    /// Wall-clock time of its last append here (0 when loaded from a snapshot or a scan:
    /// those producers expire one expiration period after the restart at the earliest).
    last_append_ms: i64,
    /// Oldest first.
    batches: VecDeque<BatchRecord>,
}

/// What to do with a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate(BatchRecord),
}

/// Every producer's state in one partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, Producer>,
}

fn last_seq(header: &BatchHeader) -> i32 {
    header.base_sequence.wrapping_add(header.last_offset_delta) & i32::MAX
}

impl ProducerTable {
    /// Kafka's `checkSequence`, for a batch about to be appended.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<Verdict, ProducerError> {
        if header.producer_id < 0 || header.is_control() {
            return Ok(Verdict::Append);
        }
        let producer_id = header.producer_id;
        // An unknown producer (new, or its state aged out of the log) may start anywhere,
        // as in Kafka 2.5+.
        let Some(p) = self.producers.get(&producer_id) else { return Ok(Verdict::Append) };
        let got = header.base_sequence;
        if header.producer_epoch < p.epoch {
            let (current, got) = (p.epoch, header.producer_epoch);
            return Err(ProducerError::StaleEpoch { producer_id, got, current });
        }
        if header.producer_epoch > p.epoch {
            if got != 0 {
                return Err(ProducerError::OutOfOrder { producer_id, got, expected: 0 });
            }
            return Ok(Verdict::Append);
        }
        let last = last_seq(header);
        if let Some(b) = p.batches.iter().find(|b| b.first_seq == got && b.last_seq == last) {
            return Ok(Verdict::Duplicate(*b));
        }
        let expected = p.batches.back().map_or(got, |b| b.last_seq.wrapping_add(1) & i32::MAX);
        if got != expected {
            return Err(ProducerError::OutOfOrder { producer_id, got, expected });
        }
        Ok(Verdict::Append)
    }

    /// Records a batch appended at `base_offset` (after [`ProducerTable::check`], or replayed
    /// from the log by recovery).
    pub(crate) fn record(&mut self, header: &BatchHeader, base_offset: i64, now_ms: i64) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let p = self.producers.entry(header.producer_id).or_default();
        p.last_append_ms = now_ms;
        if header.producer_epoch != p.epoch {
            p.epoch = header.producer_epoch;
            p.batches.clear();
        }
        if p.batches.len() == BATCHES_KEPT {
            p.batches.pop_front();
        }
        p.batches.push_back(BatchRecord {
            first_seq: header.base_sequence,
            last_seq: last_seq(header),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
        });
    }

    /// Forgets producers that appended nothing for `max_age_ms`, so the table does not grow
    /// with every producer id ever seen. Returns how many were dropped.
    pub(crate) fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| {
            if p.last_append_ms == 0 {
                // Loaded at start-up: start its clock now.
                p.last_append_ms = now_ms;
            }
            now_ms - p.last_append_ms < max_age_ms
        });
        before - self.producers.len()
    }

    /// Replays `later` (state from batches after this table's) on top of this table.
    pub(crate) fn absorb(&mut self, later: ProducerTable) {
        for (id, p) in later.producers {
            let entry = self.producers.entry(id).or_default();
            if entry.epoch != p.epoch {
                *entry = p;
                continue;
            }
            for b in p.batches {
                if entry.batches.len() == BATCHES_KEPT {
                    entry.batches.pop_front();
                }
                entry.batches.push_back(b);
            }
        }
    }

    /// The state as of `offset`: every batch that ends below it.
    pub(crate) fn snapshot_below(&self, offset: i64) -> Vec<u8> {
        let mut entries = Vec::new();
        for (&id, p) in &self.producers {
            for b in p.batches.iter().filter(|b| b.last_offset < offset) {
                entries.push((id, p.epoch, *b));
            }
        }
        let mut out = Vec::with_capacity(12 + entries.len() * ENTRY_BYTES);
        out.extend_from_slice(&SNAPSHOT_MAGIC.to_be_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (id, epoch, b) in entries {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// A table from a snapshot written by [`ProducerTable::snapshot_below`]; `None` if the
    /// bytes are not a whole, intact snapshot.
    pub(crate) fn from_snapshot(bytes: &[u8]) -> Option<ProducerTable> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader(body);
        if r.u32()? != SNAPSHOT_MAGIC {
            return None;
        }
        let count = r.u32()? as usize;
        if r.0.len() != count.checked_mul(ENTRY_BYTES)? {
            return None;
        }
        let mut table = ProducerTable::default();
        for _ in 0..count {
            let (id, epoch) = (r.i64()?, r.i16()?);
            let b = BatchRecord {
                first_seq: r.u32()? as i32,
                last_seq: r.u32()? as i32,
                base_offset: r.i64()?,
                last_offset: r.i64()?,
            };
            let p = table.producers.entry(id).or_default();
            p.epoch = epoch;
            if p.batches.len() == BATCHES_KEPT {
                p.batches.pop_front();
            }
            p.batches.push_back(b);
        }
        Some(table)
    }

    /// Number of producers known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    fn append(
        t: &mut ProducerTable,
        h: &BatchHeader,
        offset: i64,
    ) -> Result<Verdict, ProducerError> {
        let v = t.check(h)?;
        if v == Verdict::Append {
            t.record(h, offset, 1_000);
        }
        Ok(v)
    }

    #[test]
    fn retries_of_the_last_five_batches_are_duplicates() {
        let mut t = ProducerTable::default();
        for i in 0..6 {
            assert_eq!(
                append(&mut t, &header(7, 0, i * 10, 10), i64::from(i) * 10),
                Ok(Verdict::Append)
            );
        }
        let dup = append(&mut t, &header(7, 0, 10, 10), 999).unwrap();
        let want = BatchRecord { first_seq: 10, last_seq: 19, base_offset: 10, last_offset: 19 };
        assert_eq!(dup, Verdict::Duplicate(want));
        // The first batch fell out of the window: not a duplicate any more, and out of order.
        let err = t.check(&header(7, 0, 0, 10)).unwrap_err();
        assert_eq!(err.kafka_error_code(), OUT_OF_ORDER_SEQUENCE_NUMBER);
    }

    #[test]
    fn gaps_stale_epochs_and_new_epochs() {
        let mut t = ProducerTable::default();
        append(&mut t, &header(1, 3, 0, 5), 0).unwrap();
        let gap = t.check(&header(1, 3, 6, 1)).unwrap_err();
        assert_eq!(gap, ProducerError::OutOfOrder { producer_id: 1, got: 6, expected: 5 });
        let stale = t.check(&header(1, 2, 5, 1)).unwrap_err();
        assert_eq!(stale.kafka_error_code(), INVALID_PRODUCER_EPOCH);
        assert!(t.check(&header(1, 4, 3, 1)).is_err(), "a new epoch starts at 0");
        assert_eq!(append(&mut t, &header(1, 4, 0, 1), 5), Ok(Verdict::Append));
        assert!(t.check(&header(1, 3, 5, 1)).is_err(), "the old epoch is fenced now");
        // Unknown producers and non-idempotent batches are never refused.
        assert_eq!(t.check(&header(2, 0, 42, 1)), Ok(Verdict::Append));
        assert_eq!(t.check(&header(-1, -1, -1, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn idle_producers_expire() {
        let mut t = ProducerTable::default();
        append(&mut t, &header(1, 0, 0, 1), 0).unwrap();
        t.record(&header(2, 0, 0, 1), 1, 5_000);
        assert_eq!(t.expire(1_000 + PRODUCER_EXPIRATION_MS, PRODUCER_EXPIRATION_MS), 1);
        assert_eq!(t.len(), 1);
        // Producer 1 is forgotten: its old sequence is accepted as a new producer's.
        assert_eq!(t.check(&header(1, 0, 0, 1)), Ok(Verdict::Append));
        assert!(matches!(t.check(&header(2, 0, 0, 1)), Ok(Verdict::Duplicate(_))));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut t = ProducerTable::default();
        append(&mut t, &header(1, 0, i32::MAX - 1, 2), 0).unwrap();
        assert_eq!(append(&mut t, &header(1, 0, 0, 1), 2), Ok(Verdict::Append));
    }

    #[test]
    fn snapshots_round_trip_below_an_offset_and_reject_damage() {
        let mut t = ProducerTable::default();
        append(&mut t, &header(1, 0, 0, 5), 0).unwrap();
        append(&mut t, &header(2, 1, 0, 5), 5).unwrap();
        append(&mut t, &header(1, 0, 5, 5), 10).unwrap();
        let bytes = t.snapshot_below(10);
        let back = ProducerTable::from_snapshot(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        // The batch at offset 10 is above the snapshot point: not in it.
        assert!(back.check(&header(1, 0, 5, 5)).is_ok_and(|v| v == Verdict::Append));
        assert!(matches!(back.check(&header(1, 0, 0, 5)), Ok(Verdict::Duplicate(_))));
        let mut torn = bytes.clone();
        torn[9] ^= 1;
        assert!(ProducerTable::from_snapshot(&torn).is_none());
        assert!(ProducerTable::from_snapshot(&bytes[..bytes.len() - 1]).is_none());
        assert!(ProducerTable::from_snapshot(&[]).is_none());
    }
}

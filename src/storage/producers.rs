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
//! Transactions: the table also keeps each producer's open transaction (the offset of its
//! first transactional batch here) and the list of aborted transactions (first offset and the
//! offset of the abort marker), which give the last stable offset and the aborted-transaction
//! lists of read_committed fetches. A commit or abort marker (control batch) closes the
//! producer's open transaction and fences older epochs.
//!
//! Snapshot file `<20-digit base offset>.producers`: magic u32, entry count u32, entries of
//! (producer id i64, epoch i16, first seq i32, last seq i32, base offset i64, last offset
//! i64); from magic "STP2" on, then open-transaction count u32 with (producer id i64, first
//! offset i64) each and aborted-transaction count u32 with (producer id i64, first offset
//! i64, last offset i64) each; then CRC-32C u32 of everything before it; all big-endian.
//! A snapshot that fails its CRC is ignored (it is written at roll time without fdatasync:
//! losing it only weakens deduplication of batches older than the active segment, and the
//! transaction state of those segments).

use std::collections::{HashMap, VecDeque};

use crate::record_batch::BatchHeader;

/// Batches remembered per producer (Kafka's max.in.flight.requests.per.connection limit for
/// idempotence).
pub const BATCHES_KEPT: usize = 5;
/// How long a producer that appends nothing stays known by default (Kafka's
/// producer.id.expiration.ms default; the broker's `--producer-id-expiration-ms` overrides
/// it): after that its retries are no longer recognised, as in Kafka.
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
/// OUT_OF_ORDER_SEQUENCE_NUMBER.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// INVALID_PRODUCER_EPOCH.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;

const SNAPSHOT_MAGIC_V1: u32 = 0x5354_5031; // "STP1": no transaction sections
const SNAPSHOT_MAGIC: u32 = 0x5354_5032; // "STP2"
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

/// What DescribeProducers reports of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// Last sequence appended, or -1.
    pub last_sequence: i32,
    /// Wall-clock time of its last append (0 when only known from a restart).
    pub last_append_ms: i64,
    /// First offset of its open transaction, or -1.
    pub txn_start_offset: i64,
}

/// What to do with a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate(BatchRecord),
}

/// A transaction aborted in this partition (Kafka's `AbortedTxn` of the `.txnindex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer that ran it.
    pub producer_id: i64,
    /// Offset of its first batch in this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
}

/// Every producer's state in one partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    producers: HashMap<i64, Producer>,
    /// Producer id → offset of the first batch of its open transaction.
    ongoing: HashMap<i64, i64>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
    /// Recovery scans only (`Some`): markers whose transaction began before the scanned
    /// range, as (producer id, commit, marker offset), resolved by [`ProducerTable::absorb`].
    unmatched: Option<Vec<(i64, bool, i64)>>,
    /// [`ProducerTable::expire`] forgot some producer since the log was opened.
    forgot: bool,
}

fn last_seq(header: &BatchHeader) -> i32 {
    header.base_sequence.wrapping_add(header.last_offset_delta) & i32::MAX
}

impl ProducerTable {
    /// An empty table for a recovery scan (it remembers markers it cannot match).
    pub(crate) fn for_scan() -> ProducerTable {
        ProducerTable { unmatched: Some(Vec::new()), ..ProducerTable::default() }
    }

    /// Kafka's `checkSequence`, for a batch about to be appended. Batches without a sequence
    /// (written by a coordinator, like transactional offset commits) are not checked.
    /// `log_start`: the log's start offset (above 0, the log may have dropped the batches of
    /// producers it no longer knows).
    pub(crate) fn check(
        &self,
        header: &BatchHeader,
        log_start: i64,
    ) -> Result<Verdict, ProducerError> {
        if header.producer_id < 0 || header.is_control() || header.base_sequence < 0 {
            return Ok(Verdict::Append);
        }
        let producer_id = header.producer_id;
        let got = header.base_sequence;
        let Some(p) = self.producers.get(&producer_id) else {
            // A producer this log has no state for. When the log may have forgotten it (its
            // batches deleted by retention or DeleteRecords, or its state expired), it may
            // start anywhere, as in Kafka 2.5+ (KIP-360). Otherwise it is new here and must
            // start at 0: a later batch arriving first means the earlier ones were refused
            // (typically NOT_LEADER_OR_FOLLOWER an instant before this broker took the
            // leadership, with the next request already in flight on the same connection).
            // Kafka accepts it, and librdkafka then takes the success as proof that the
            // refused batches were written too ("implicit ack") and never resends them:
            // acknowledged records lost. OUT_OF_ORDER_SEQUENCE_NUMBER makes the client
            // retry in order (or, with no refusal pending, bump its epoch and start at 0).
            let forgotten = self.forgot || log_start > 0;
            if got != 0 && !forgotten {
                return Err(ProducerError::OutOfOrder { producer_id, got, expected: 0 });
            }
            return Ok(Verdict::Append);
        };
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

    /// A marker's epoch check: markers from an epoch older than the producer's are refused.
    pub(crate) fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(p) if epoch < p.epoch => {
                Err(ProducerError::StaleEpoch { producer_id, got: epoch, current: p.epoch })
            }
            _ => Ok(()),
        }
    }

    /// Records a batch appended at `base_offset` (after [`ProducerTable::check`], or replayed
    /// from the log by recovery). `marker` is the batch's [`crate::record_batch::marker_kind`].
    pub(crate) fn record(
        &mut self,
        header: &BatchHeader,
        marker: Option<bool>,
        base_offset: i64,
        now_ms: i64,
    ) {
        if header.producer_id < 0 {
            return;
        }
        if header.is_control() {
            self.end_txn(header, marker, base_offset, now_ms);
            return;
        }
        let producer_id = header.producer_id;
        if header.is_transactional() {
            self.ongoing.entry(producer_id).or_insert(base_offset);
        }
        let p = self.producers.entry(producer_id).or_default();
        p.last_append_ms = now_ms;
        if header.producer_epoch != p.epoch {
            p.epoch = header.producer_epoch;
            p.batches.clear();
        }
        if header.base_sequence < 0 {
            return;
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

    /// A marker at `offset`: closes the producer's open transaction (an abort is listed) and
    /// moves the producer to the marker's epoch.
    fn end_txn(&mut self, header: &BatchHeader, marker: Option<bool>, offset: i64, now_ms: i64) {
        let producer_id = header.producer_id;
        let p = self.producers.entry(producer_id).or_default();
        p.last_append_ms = now_ms;
        if header.producer_epoch > p.epoch {
            p.epoch = header.producer_epoch;
            p.batches.clear();
        }
        let Some(commit) = marker else { return };
        match self.ongoing.remove(&producer_id) {
            Some(first_offset) if !commit => {
                self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset: offset })
            }
            Some(_) => {}
            None => {
                if let Some(unmatched) = self.unmatched.as_mut() {
                    unmatched.push((producer_id, commit, offset));
                }
            }
        }
    }

    /// First offset of the oldest open transaction, if any.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().copied().min()
    }

    /// Aborted transactions overlapping offsets `[from, to)`, oldest first.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }

    /// Open transactions: (producer id, first offset).
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i64)> {
        let mut open: Vec<(i64, i64)> = self.ongoing.iter().map(|(p, o)| (*p, *o)).collect();
        open.sort_by_key(|(_, offset)| *offset);
        open
    }

    /// Every known producer: (id, epoch, last sequence, last timestamp ms, open txn start).
    pub(crate) fn describe(&self) -> Vec<ProducerInfo> {
        let mut out: Vec<ProducerInfo> = self
            .producers
            .iter()
            .map(|(id, p)| ProducerInfo {
                producer_id: *id,
                epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_seq),
                last_append_ms: p.last_append_ms,
                txn_start_offset: self.ongoing.get(id).copied().unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Drops aborted-transaction entries wholly below `log_start`.
    pub(crate) fn prune_aborted(&mut self, log_start: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }

    /// Forgets producers that appended nothing for `max_age_ms`, so the table does not grow
    /// with every producer id ever seen. Returns how many were dropped.
    pub(crate) fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        let ongoing = &self.ongoing;
        self.producers.retain(|id, p| {
            if ongoing.contains_key(id) {
                return true;
            }
            if p.last_append_ms == 0 {
                // Loaded at start-up: start its clock now.
                p.last_append_ms = now_ms;
            }
            now_ms - p.last_append_ms < max_age_ms
        });
        let forgotten = before - self.producers.len();
        self.forgot |= forgotten > 0;
        forgotten
    }

    /// Replays `later` (state from batches after this table's) on top of this table.
    pub(crate) fn absorb(&mut self, later: ProducerTable) {
        for (producer_id, commit, last_offset) in later.unmatched.unwrap_or_default() {
            if let Some(first_offset) = self.ongoing.remove(&producer_id) {
                if !commit {
                    self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset });
                }
            }
        }
        self.ongoing.extend(later.ongoing);
        self.aborted.extend(later.aborted);
        self.aborted.sort_by_key(|a| a.last_offset);
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
        // Open at `offset`: transactions still open that began below it, and aborted ones
        // whose marker is at or after it (the scan from `offset` will see that marker).
        let mut open: Vec<(i64, i64)> =
            self.ongoing.iter().filter(|(_, f)| **f < offset).map(|(p, f)| (*p, *f)).collect();
        let spanning = self.aborted.iter().filter(|a| a.first_offset < offset);
        open.extend(
            spanning.filter(|a| a.last_offset >= offset).map(|a| (a.producer_id, a.first_offset)),
        );
        out.extend_from_slice(&(open.len() as u32).to_be_bytes());
        for (producer_id, first) in open {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        let aborted: Vec<&AbortedTxn> =
            self.aborted.iter().filter(|a| a.last_offset < offset).collect();
        out.extend_from_slice(&(aborted.len() as u32).to_be_bytes());
        for a in aborted {
            out.extend_from_slice(&a.producer_id.to_be_bytes());
            out.extend_from_slice(&a.first_offset.to_be_bytes());
            out.extend_from_slice(&a.last_offset.to_be_bytes());
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
        let magic = r.u32()?;
        if magic != SNAPSHOT_MAGIC && magic != SNAPSHOT_MAGIC_V1 {
            return None;
        }
        let count = r.u32()? as usize;
        let entries_bytes = count.checked_mul(ENTRY_BYTES)?;
        let exact = r.0.len() == entries_bytes;
        if (magic == SNAPSHOT_MAGIC_V1 && !exact) || r.0.len() < entries_bytes {
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
        if magic == SNAPSHOT_MAGIC {
            table.read_transactions(&mut r)?;
        }
        Some(table)
    }

    fn read_transactions(&mut self, r: &mut Reader<'_>) -> Option<()> {
        let open = r.u32()? as usize;
        if r.0.len() < open.checked_mul(16)? {
            return None;
        }
        for _ in 0..open {
            let (producer_id, first) = (r.i64()?, r.i64()?);
            self.ongoing.insert(producer_id, first);
        }
        let aborted = r.u32()? as usize;
        if r.0.len() != aborted.checked_mul(24)? {
            return None;
        }
        for _ in 0..aborted {
            let (producer_id, first_offset, last_offset) = (r.i64()?, r.i64()?, r.i64()?);
            self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset });
        }
        Some(())
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
        let v = t.check(h, 0)?;
        if v == Verdict::Append {
            t.record(h, None, offset, 1_000);
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
        let err = t.check(&header(7, 0, 0, 10), 0).unwrap_err();
        assert_eq!(err.kafka_error_code(), OUT_OF_ORDER_SEQUENCE_NUMBER);
    }

    #[test]
    fn gaps_stale_epochs_and_new_epochs() {
        let mut t = ProducerTable::default();
        append(&mut t, &header(1, 3, 0, 5), 0).unwrap();
        let gap = t.check(&header(1, 3, 6, 1), 0).unwrap_err();
        assert_eq!(gap, ProducerError::OutOfOrder { producer_id: 1, got: 6, expected: 5 });
        let stale = t.check(&header(1, 2, 5, 1), 0).unwrap_err();
        assert_eq!(stale.kafka_error_code(), INVALID_PRODUCER_EPOCH);
        assert!(t.check(&header(1, 4, 3, 1), 0).is_err(), "a new epoch starts at 0");
        assert_eq!(append(&mut t, &header(1, 4, 0, 1), 5), Ok(Verdict::Append));
        assert!(t.check(&header(1, 3, 5, 1), 0).is_err(), "the old epoch is fenced now");
        // Non-idempotent batches are never refused; an unknown producer starts at 0, unless
        // the log may have forgotten it (its start moved).
        assert_eq!(t.check(&header(-1, -1, -1, 1), 0), Ok(Verdict::Append));
        assert_eq!(t.check(&header(2, 0, 0, 1), 0), Ok(Verdict::Append));
        let unknown = t.check(&header(2, 0, 42, 1), 0).unwrap_err();
        assert_eq!(unknown, ProducerError::OutOfOrder { producer_id: 2, got: 42, expected: 0 });
        assert_eq!(t.check(&header(2, 0, 42, 1), 100), Ok(Verdict::Append));
    }

    #[test]
    fn idle_producers_expire() {
        let mut t = ProducerTable::default();
        append(&mut t, &header(1, 0, 0, 1), 0).unwrap();
        t.record(&header(2, 0, 0, 1), None, 1, 5_000);
        assert_eq!(t.expire(1_000 + PRODUCER_EXPIRATION_MS, PRODUCER_EXPIRATION_MS), 1);
        assert_eq!(t.len(), 1);
        // Producer 1 is forgotten: its next sequence is accepted as a new producer's, since the
        // table knows it forgot some.
        assert_eq!(t.check(&header(1, 0, 1, 1), 0), Ok(Verdict::Append));
        assert!(matches!(t.check(&header(2, 0, 0, 1), 0), Ok(Verdict::Duplicate(_))));
    }

    #[test]
    fn the_broker_default_is_the_constant() {
        let configured = crate::config::BrokerConfig::default().producer_id_expiration_ms;
        assert_eq!(i64::try_from(configured), Ok(PRODUCER_EXPIRATION_MS));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut t = ProducerTable::default();
        // A producer whose state the log kept from before its start (retention) may be anywhere.
        assert_eq!(t.check(&header(1, 0, i32::MAX - 1, 2), 1), Ok(Verdict::Append));
        t.record(&header(1, 0, i32::MAX - 1, 2), None, 0, 1_000);
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
        assert!(back.check(&header(1, 0, 5, 5), 0).is_ok_and(|v| v == Verdict::Append));
        assert!(matches!(back.check(&header(1, 0, 0, 5), 0), Ok(Verdict::Duplicate(_))));
        let mut torn = bytes.clone();
        torn[9] ^= 1;
        assert!(ProducerTable::from_snapshot(&torn).is_none());
        assert!(ProducerTable::from_snapshot(&bytes[..bytes.len() - 1]).is_none());
        assert!(ProducerTable::from_snapshot(&[]).is_none());
    }

    fn txn_header(producer_id: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader { attributes: 1 << 4, ..header(producer_id, epoch, seq, records) }
    }

    fn marker(producer_id: i64, epoch: i16) -> BatchHeader {
        BatchHeader { attributes: (1 << 4) | (1 << 5), ..header(producer_id, epoch, -1, 1) }
    }

    #[test]
    fn transactions_open_close_and_list_aborts() {
        let mut t = ProducerTable::default();
        t.record(&txn_header(1, 0, 0, 5), None, 10, 1);
        t.record(&txn_header(2, 0, 0, 5), None, 15, 1);
        t.record(&txn_header(1, 0, 5, 5), None, 20, 1);
        assert_eq!(t.first_unstable_offset(), Some(10));
        t.record(&marker(1, 0), Some(false), 25, 1);
        assert_eq!(t.first_unstable_offset(), Some(15));
        t.record(&marker(2, 0), Some(true), 26, 1);
        assert_eq!(t.first_unstable_offset(), None);
        let aborted = AbortedTxn { producer_id: 1, first_offset: 10, last_offset: 25 };
        assert_eq!(t.aborted_between(0, 100), vec![aborted]);
        assert_eq!(t.aborted_between(26, 100), vec![]);
        assert_eq!(t.aborted_between(0, 10), vec![]);
        // A marker at a newer epoch fences the old one.
        t.record(&marker(2, 1), Some(false), 27, 1);
        assert!(t.check(&txn_header(2, 0, 5, 1), 0).is_err());
        assert!(t.check_marker(2, 0).is_err());
        assert!(t.check_marker(2, 1).is_ok());
    }

    #[test]
    fn transaction_state_survives_snapshot_and_scan() {
        let mut t = ProducerTable::default();
        t.record(&txn_header(1, 0, 0, 5), None, 0, 1);
        t.record(&txn_header(2, 0, 0, 5), None, 5, 1);
        t.record(&marker(2, 0), Some(false), 10, 1);
        let bytes = t.snapshot_below(11);
        let mut back = ProducerTable::from_snapshot(&bytes).unwrap();
        assert_eq!(back.first_unstable_offset(), Some(0));
        assert_eq!(back.aborted_between(0, 100).len(), 1);
        // The active segment (scanned from 11) aborts producer 1's transaction.
        let mut scan = ProducerTable::for_scan();
        scan.record(&marker(1, 0), Some(false), 11, 0);
        scan.record(&txn_header(3, 0, 0, 1), None, 12, 0);
        back.absorb(scan);
        assert_eq!(back.first_unstable_offset(), Some(12));
        let firsts: Vec<i64> =
            back.aborted_between(0, 100).iter().map(|a| a.first_offset).collect();
        assert_eq!(firsts, vec![5, 0]);
        // A snapshot taken between the first batch and the abort keeps it open.
        let spanning = t.snapshot_below(7);
        let back = ProducerTable::from_snapshot(&spanning).unwrap();
        assert_eq!(back.open_transactions(), vec![(1, 0), (2, 5)]);
    }
}

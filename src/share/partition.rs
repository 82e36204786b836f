//! One share-partition: the delivery state of one partition's records for one share group
//! (KIP-932), as a pure state machine.
//!
//! Offsets below the share-partition start offset (SPSO) are done: acknowledged or archived.
//! Offsets at or past the share-partition end offset (SPEO) were never acquired. In between,
//! every offset is *in flight*: available, acquired by one member until its acquisition lock
//! expires, acknowledged (accepted), or archived (rejected, a gap, or past the delivery limit).
//! Acknowledged and archived are final: such a record is never acquired again. A renew
//! (KIP-1222) restarts an acquired record's lock for the member holding it and changes nothing
//! else: not its state, not its delivery count, nothing to persist.
//!
//! Nothing here reads a clock or does I/O: every call takes `now_ms`, and the calls that change
//! what must survive a restart return the [`StateBatch`]es to persist (the caller writes them to
//! `__share_group_state` before it answers). Invariants, checked by `tests/fuzz_share.rs`:
//! the SPSO only moves forward; a record's delivery count never decreases; a final record is
//! never acquired; at most `max_record_locks` records are acquired at once.

use std::collections::BTreeMap;

/// The settings a share-partition runs under (Kafka's group configs of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `group.share.record.lock.duration.ms`: how long an acquisition lock holds.
    pub lock_duration_ms: i64,
    /// `group.share.delivery.count.limit`: deliveries before a record is archived.
    pub delivery_count_limit: i16,
    /// `group.share.partition.max.record.locks`: records acquired at once, at most.
    pub max_record_locks: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { lock_duration_ms: 30_000, delivery_count_limit: 5, max_record_locks: 2_000 }
    }
}

/// The state of one in-flight record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// May be acquired.
    Available,
    /// Held by `member` until `deadline_ms`.
    Acquired {
        /// The member holding the lock.
        member: String,
        /// When the lock expires.
        deadline_ms: i64,
    },
    /// Accepted: delivered for good.
    Acknowledged,
    /// Rejected, a gap, or past the delivery limit: never delivered again.
    Archived,
}

impl RecordState {
    /// Acknowledged or archived: the record never changes again.
    pub fn is_final(&self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }

    /// Kafka's persisted delivery state (0 available, 2 acknowledged, 4 archived); an
    /// acquired record persists as available (its lock does not survive a restart).
    pub fn persisted(&self) -> i8 {
        match self {
            RecordState::Available | RecordState::Acquired { .. } => STATE_AVAILABLE,
            RecordState::Acknowledged => STATE_ACKNOWLEDGED,
            RecordState::Archived => STATE_ARCHIVED,
        }
    }
}

/// Persisted delivery state: available.
pub const STATE_AVAILABLE: i8 = 0;
/// Persisted delivery state: acknowledged.
pub const STATE_ACKNOWLEDGED: i8 = 2;
/// Persisted delivery state: archived.
pub const STATE_ARCHIVED: i8 = 4;

/// KIP-1226's share-partition lag: the records from the start offset up to the partition's
/// high watermark whose delivery is not complete, `high_watermark - start_offset -
/// delivery_complete` (Kafka's `GroupCoordinatorService` computes it so from the partition's
/// end offset and ReadShareGroupStateSummary). -1 when any of the three is unknown (negative);
/// never below 0 (a log truncated under the start offset).
pub fn lag(high_watermark: i64, start_offset: i64, delivery_complete: i64) -> i64 {
    if high_watermark < 0 || start_offset < 0 || delivery_complete < 0 {
        return -1;
    }
    high_watermark.saturating_sub(start_offset).saturating_sub(delivery_complete).max(0)
}

/// One in-flight record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its state.
    pub state: RecordState,
    /// How many times it was acquired.
    pub delivery_count: i16,
}

/// A run of offsets in one persisted state (Kafka's `StateBatch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateBatch {
    /// First offset.
    pub first_offset: i64,
    /// Last offset (inclusive).
    pub last_offset: i64,
    /// 0 available, 2 acknowledged, 4 archived.
    pub delivery_state: i8,
    /// Deliveries so far.
    pub delivery_count: i16,
}

impl StateBatch {
    /// Whether its records' delivery is complete (acknowledged or archived: KIP-1226's
    /// delivery-complete count counts them).
    pub fn delivery_complete(&self) -> bool {
        self.delivery_state == STATE_ACKNOWLEDGED || self.delivery_state == STATE_ARCHIVED
    }
}

/// A run of acquired offsets, as ShareFetch answers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// First offset.
    pub first_offset: i64,
    /// Last offset (inclusive).
    pub last_offset: i64,
    /// The delivery count of every offset in the run.
    pub delivery_count: i16,
}

/// What one read of the log returned, for [`SharePartition::acquire_read`].
#[derive(Clone, Copy, Debug)]
pub struct Read<'a> {
    /// First offset read.
    pub from: i64,
    /// The offset after the last one read.
    pub to: i64,
    /// Runs of offsets (first, last inclusive; sorted, disjoint) that hold nothing to
    /// deliver: archived instead of acquired.
    pub archive: &'a [(i64, i64)],
}

impl Read<'_> {
    /// Whether `offset` is in an [`Read::archive`] run.
    fn archives(&self, offset: i64) -> bool {
        let at = self.archive.partition_point(|(_, last)| *last < offset);
        self.archive.get(at).is_some_and(|(first, _)| *first <= offset)
    }
}

/// An acknowledgement type of ShareFetch/ShareAcknowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckType {
    /// 0: the offset holds no record the client saw (a gap): done with it.
    Gap,
    /// 1: processed.
    Accept,
    /// 2: give it back for another delivery.
    Release,
    /// 3: unprocessable: archive it.
    Reject,
    /// 4: still being processed: restart the acquisition lock (KIP-1222, ShareFetch and
    /// ShareAcknowledge v2+ only; the handlers refuse it in v1).
    Renew,
}

impl AckType {
    /// The wire value's type, if it is one.
    pub fn from_wire(value: i8) -> Option<AckType> {
        Some(match value {
            0 => AckType::Gap,
            1 => AckType::Accept,
            2 => AckType::Release,
            3 => AckType::Reject,
            4 => AckType::Renew,
            _ => return None,
        })
    }
}

/// Why an acknowledgement was refused (nothing of it was applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckError {
    /// A malformed batch: last before first, or a type list of the wrong length or with an
    /// unknown type (Kafka's INVALID_REQUEST).
    Invalid,
    /// An offset not acquired by this member (its lock expired, say): INVALID_RECORD_STATE.
    NotAcquired,
}

/// The delivery state of one partition for one share group. See the module docs.
#[derive(Clone, Debug)]
pub struct SharePartition {
    start_offset: i64,
    end_offset: i64,
    records: BTreeMap<i64, InFlight>,
    acquired: usize,
    limits: Limits,
}

impl SharePartition {
    /// A share-partition starting at `start_offset` (from `share.auto.offset.reset`, or a
    /// recovered snapshot), with nothing in flight.
    pub fn new(start_offset: i64, limits: Limits) -> SharePartition {
        let start_offset = start_offset.max(0);
        SharePartition {
            start_offset,
            end_offset: start_offset,
            records: BTreeMap::new(),
            acquired: 0,
            limits,
        }
    }

    /// The share-partition start offset: every offset below it is done.
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// The share-partition end offset: the first offset never acquired.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Records acquired now.
    pub fn acquired_count(&self) -> usize {
        self.acquired
    }

    /// The settings.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the settings (a group config changed); current locks keep their deadlines.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The in-flight record at `offset`, if any.
    pub fn record(&self, offset: i64) -> Option<&InFlight> {
        self.records.get(&offset)
    }

    /// Every in-flight record, by offset.
    pub fn in_flight(&self) -> impl Iterator<Item = (i64, &InFlight)> {
        self.records.iter().map(|(o, r)| (*o, r))
    }

    /// The earliest lock deadline, if any record is acquired.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.records
            .values()
            .filter_map(|r| match &r.state {
                RecordState::Acquired { deadline_ms, .. } => Some(*deadline_ms),
                _ => None,
            })
            .min()
    }

    /// Where the next read of the log should start: the first available in-flight offset, or
    /// the end offset; `None` when no more record may be acquired now (the lock limit).
    pub fn next_fetch_offset(&self) -> Option<i64> {
        if self.acquired >= self.limits.max_record_locks {
            return None;
        }
        let available =
            self.records.iter().find(|(_, r)| r.state == RecordState::Available).map(|(o, _)| *o);
        Some(available.unwrap_or(self.end_offset))
    }

    /// Acquires for `member`, until `now_ms + lock duration`, up to `max_records` records
    /// of the offsets `[from, to)` that the log just returned: available in-flight ones and
    /// new ones past the end offset (offsets below the start offset are skipped). Returns the
    /// runs acquired, each with one delivery count.
    pub fn acquire(
        &mut self,
        member: &str,
        from: i64,
        to: i64,
        max_records: usize,
        now_ms: i64,
    ) -> Vec<Acquired> {
        let read = Read { from, to, archive: &[] };
        self.acquire_read(member, &read, max_records, now_ms)
    }

    /// [`SharePartition::acquire`] over `read`, whose `archive` runs are never delivered: the
    /// available and new offsets in them become archived (done, so the start offset moves
    /// past them) without counting against `max_records`, as Kafka's share-partition does
    /// with aborted transactions under `read_committed`.
    pub fn acquire_read(
        &mut self,
        member: &str,
        read: &Read<'_>,
        max_records: usize,
        now_ms: i64,
    ) -> Vec<Acquired> {
        let deadline_ms = now_ms.saturating_add(self.limits.lock_duration_ms);
        let room = self.limits.max_record_locks.saturating_sub(self.acquired);
        let mut budget = max_records.min(room);
        let mut runs: Vec<Acquired> = Vec::new();
        let (from, to) = (read.from.max(self.start_offset), read.to);
        // In flight: only the available ones (walk the map, not the offsets: a compacted log
        // may leave wide gaps).
        let known_end = to.min(self.end_offset);
        if from < known_end {
            for (offset, r) in self.records.range_mut(from..known_end) {
                if budget == 0 {
                    break;
                }
                if r.state != RecordState::Available {
                    continue;
                }
                if read.archives(*offset) {
                    r.state = RecordState::Archived;
                    continue;
                }
                r.delivery_count = r.delivery_count.saturating_add(1);
                r.state = RecordState::Acquired { member: member.to_owned(), deadline_ms };
                self.acquired += 1;
                budget -= 1;
                push_run(&mut runs, *offset, r.delivery_count);
            }
        }
        // Never acquired before: from the end offset on, at most `budget` of them.
        let mut offset = from.max(self.end_offset);
        while offset < to && budget > 0 {
            self.end_offset = offset + 1;
            if read.archives(offset) {
                let state = RecordState::Archived;
                self.records.insert(offset, InFlight { state, delivery_count: 0 });
                offset += 1;
                continue;
            }
            let state = RecordState::Acquired { member: member.to_owned(), deadline_ms };
            self.records.insert(offset, InFlight { state, delivery_count: 1 });
            self.acquired += 1;
            budget -= 1;
            push_run(&mut runs, offset, 1);
            offset += 1;
        }
        if !read.archive.is_empty() {
            self.advance();
        }
        debug_assert!(self.acquired <= self.limits.max_record_locks);
        runs
    }

    /// Applies one acknowledgement batch of `member` at `now_ms`: `types` holds one type for
    /// the whole range or one per offset. All or nothing: every offset must be acquired by
    /// `member`. A renew restarts the offset's lock at `now_ms` (Kafka's `SharePartition`
    /// renews only records the member holds: anything else is INVALID_RECORD_STATE). Returns
    /// the state batches to persist (a renew adds none).
    pub fn acknowledge(
        &mut self,
        member: &str,
        first_offset: i64,
        last_offset: i64,
        types: &[i8],
        now_ms: i64,
    ) -> Result<Vec<StateBatch>, AckError> {
        let span = last_offset.checked_sub(first_offset).and_then(|d| d.checked_add(1));
        let Some(span) = span.filter(|s| *s > 0) else { return Err(AckError::Invalid) };
        let per_offset = types.len() != 1;
        if types.is_empty() || (per_offset && i64::try_from(types.len()) != Ok(span)) {
            return Err(AckError::Invalid);
        }
        let mut parsed = Vec::with_capacity(types.len());
        for t in types {
            parsed.push(AckType::from_wire(*t).ok_or(AckError::Invalid)?);
        }
        // Bounded by the lock limit: more offsets than that cannot all be acquired.
        if span > self.limits.max_record_locks as i64 {
            return Err(AckError::NotAcquired);
        }
        for offset in first_offset..=last_offset {
            let held = self.records.get(&offset).is_some_and(
                |r| matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member),
            );
            if !held {
                return Err(AckError::NotAcquired);
            }
        }
        let mut changed = Vec::new();
        for (i, offset) in (first_offset..=last_offset).enumerate() {
            let ack = if per_offset { parsed[i] } else { parsed[0] };
            if ack == AckType::Renew {
                self.renew(offset, now_ms);
                continue;
            }
            self.settle(offset, ack);
            self.note_change(offset, &mut changed);
        }
        Ok(changed)
    }

    /// Restarts the lock of the acquired record at `offset`: it now expires the lock
    /// duration after `now_ms` (as Kafka replaces the record's timer task); its holder and
    /// delivery count stay.
    fn renew(&mut self, offset: i64, now_ms: i64) {
        let renewed_ms = now_ms.saturating_add(self.limits.lock_duration_ms);
        let r = self.records.get_mut(&offset);
        // `acknowledge` checked that the member holds every offset first.
        let held = r.as_ref().is_some_and(|r| matches!(r.state, RecordState::Acquired { .. }));
        debug_assert!(held, "renew of offset {offset}, not acquired");
        if let Some(RecordState::Acquired { deadline_ms, .. }) = r.map(|r| &mut r.state) {
            *deadline_ms = renewed_ms;
        }
    }

    /// Releases every lock of `member` (it left the group or its share session closed):
    /// its records become available again, or archived past the delivery limit.
    pub fn release_member(&mut self, member: &str) -> Vec<StateBatch> {
        let offsets: Vec<i64> = self
            .records
            .iter()
            .filter(
                |(_, r)| matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member),
            )
            .map(|(o, _)| *o)
            .collect();
        let mut changed = Vec::new();
        for offset in offsets {
            self.settle(offset, AckType::Release);
            self.note_change(offset, &mut changed);
        }
        changed
    }

    /// Expires the locks whose deadline is at or before `now_ms`: the records become
    /// available again, or archived past the delivery limit. Returns the batches to persist.
    pub fn expire(&mut self, now_ms: i64) -> Vec<StateBatch> {
        let offsets: Vec<i64> = self
            .records
            .iter()
            .filter(|(_, r)| match r.state {
                RecordState::Acquired { deadline_ms, .. } => deadline_ms <= now_ms,
                _ => false,
            })
            .map(|(o, _)| *o)
            .collect();
        let mut changed = Vec::new();
        for offset in offsets {
            self.settle(offset, AckType::Release);
            self.note_change(offset, &mut changed);
        }
        changed
    }

    /// Moves the start offset up to at least `offset` (the log's start moved past records
    /// never delivered, or an admin reset it): everything below is dropped.
    pub fn move_start(&mut self, offset: i64) {
        if offset <= self.start_offset {
            return;
        }
        let kept = self.records.split_off(&offset);
        for r in self.records.values() {
            if matches!(r.state, RecordState::Acquired { .. }) {
                self.acquired -= 1;
            }
        }
        self.records = kept;
        self.start_offset = offset;
        self.end_offset = self.end_offset.max(offset);
        self.advance();
    }

    /// Sets a recovered run (from `__share_group_state`) over what is known. Acquired records
    /// are not touched by recovery: it runs before any acquisition.
    pub fn restore(&mut self, batch: &StateBatch) {
        if batch.last_offset < batch.first_offset {
            return;
        }
        let first = batch.first_offset.max(self.start_offset);
        // A batch is at most the lock limit long when written; bound it anyway.
        let last = batch.last_offset.min(first.saturating_add(1 << 20));
        let state = match batch.delivery_state {
            STATE_ACKNOWLEDGED => RecordState::Acknowledged,
            STATE_ARCHIVED => RecordState::Archived,
            _ => RecordState::Available,
        };
        for offset in first..=last {
            let count = self.records.get(&offset).map_or(0, |r| r.delivery_count);
            if let Some(r) = self.records.get(&offset) {
                // Final stays final: a later record cannot undo an acknowledgement.
                if matches!(r.state, RecordState::Acquired { .. }) || r.state.is_final() {
                    continue;
                }
            }
            let delivery_count = count.max(batch.delivery_count);
            // Delivered as often as allowed, its last lock lost in a restart: archived.
            let state = match state {
                RecordState::Available if delivery_count >= self.limits.delivery_count_limit => {
                    RecordState::Archived
                }
                ref other => other.clone(),
            };
            self.records.insert(offset, InFlight { state, delivery_count });
        }
        self.end_offset = self.end_offset.max(last + 1);
        self.advance();
    }

    /// Everything a snapshot holds: the in-flight records as runs of one persisted state and
    /// count (acquired ones as available).
    pub fn state_batches(&self) -> Vec<StateBatch> {
        let mut out: Vec<StateBatch> = Vec::new();
        for (offset, r) in &self.records {
            push_batch(&mut out, *offset, r.state.persisted(), r.delivery_count);
        }
        out
    }

    /// Counts of in-flight records: (available, acquired, acknowledged, archived).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for r in self.records.values() {
            match r.state {
                RecordState::Available => c.0 += 1,
                RecordState::Acquired { .. } => c.1 += 1,
                RecordState::Acknowledged => c.2 += 1,
                RecordState::Archived => c.3 += 1,
            }
        }
        c
    }

    /// Gives an acquired record its next state for `ack` (not a renew: see `renew`), and
    /// moves the start offset.
    fn settle(&mut self, offset: i64, ack: AckType) {
        debug_assert_ne!(ack, AckType::Renew, "a renew does not settle a record");
        let limit = self.limits.delivery_count_limit;
        let Some(r) = self.records.get_mut(&offset) else { return };
        if !matches!(r.state, RecordState::Acquired { .. }) {
            return;
        }
        let next = match ack {
            AckType::Accept => RecordState::Acknowledged,
            AckType::Gap | AckType::Reject => RecordState::Archived,
            AckType::Release if r.delivery_count >= limit => RecordState::Archived,
            AckType::Release => RecordState::Available,
            AckType::Renew => return,
        };
        self.acquired -= 1;
        r.state = next;
        self.advance();
    }

    /// Adds `offset`'s persisted state to `changed` (merged with the last run when it extends
    /// it); a record already below the start offset persists as the start offset itself.
    fn note_change(&self, offset: i64, changed: &mut Vec<StateBatch>) {
        let (state, count) = match self.records.get(&offset) {
            Some(r) => (r.state.persisted(), r.delivery_count),
            // Done and dropped: the start offset that moved past it says so.
            None => return,
        };
        push_batch(changed, offset, state, count);
    }

    /// Drops the done records at the front and moves the start offset past them.
    fn advance(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if !entry.get().state.is_final() {
                break;
            }
            let offset = *entry.key();
            entry.remove();
            self.start_offset = offset + 1;
        }
        if self.records.is_empty() {
            self.start_offset = self.start_offset.max(self.end_offset);
        }
        self.end_offset = self.end_offset.max(self.start_offset);
    }
}

fn push_run(runs: &mut Vec<Acquired>, offset: i64, count: i16) {
    if let Some(last) = runs.last_mut() {
        if last.last_offset + 1 == offset && last.delivery_count == count {
            last.last_offset = offset;
            return;
        }
    }
    runs.push(Acquired { first_offset: offset, last_offset: offset, delivery_count: count });
}

fn push_batch(out: &mut Vec<StateBatch>, offset: i64, state: i8, count: i16) {
    if let Some(last) = out.last_mut() {
        let same = last.delivery_state == state && last.delivery_count == count;
        if same && last.last_offset + 1 == offset {
            last.last_offset = offset;
            return;
        }
    }
    out.push(StateBatch {
        first_offset: offset,
        last_offset: offset,
        delivery_state: state,
        delivery_count: count,
    });
}

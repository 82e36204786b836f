//! One transactional id's metadata and its transitions (Kafka's `TransactionMetadata`).

use std::collections::BTreeSet;

use crate::protocol::ResponseError as E;

/// Where a transaction is (Kafka's `TransactionState`, with its on-disk codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions were added; the producer may write.
    Ongoing,
    /// EndTxn(commit) is durable; markers are being written.
    PrepareCommit,
    /// EndTxn(abort) or a timeout is durable; markers are being written.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
}

impl TxnState {
    /// The state's code in `__transaction_state` records.
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    /// The state of a record code (`None` for codes we do not know, like Dead).
    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Whether markers are being written (the transaction is between prepare and complete).
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// The metadata of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    /// Producer id.
    pub producer_id: i64,
    /// Current epoch.
    pub epoch: i16,
    /// Transaction timeout.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions in the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (first partition added), or -1.
    pub start_ms: i64,
    /// Last change.
    pub update_ms: i64,
    /// The epoch before the coordinator bumped it to abort a timed-out transaction, or -1
    /// (KIP-360: that producer may re-initialise with it instead of being fenced). Kept in
    /// memory only (TransactionLogValue v0 has no field for it).
    pub last_epoch: i16,
}

impl TxnMeta {
    /// A new transactional id's metadata.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMeta {
        TxnMeta {
            producer_id,
            epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now_ms,
            last_epoch: -1,
        }
    }

    /// Whether `(producer_id, epoch)` may re-initialise: the current epoch, or the one a
    /// timeout abort replaced.
    pub fn may_reinit(&self, producer_id: i64, epoch: i16) -> bool {
        producer_id == self.producer_id && (epoch == self.epoch || epoch == self.last_epoch)
    }

    /// Checks the producer id and epoch a request carries: INVALID_PRODUCER_ID_MAPPING for
    /// another producer id, PRODUCER_FENCED for another epoch.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), E> {
        if producer_id != self.producer_id {
            return Err(E::InvalidProducerIdMapping);
        }
        if epoch != self.epoch {
            return Err(E::ProducerFenced);
        }
        Ok(())
    }

    /// The metadata after adding `partitions` (AddPartitionsToTxn / AddOffsetsToTxn), or why
    /// not. `None` when nothing changes (every partition already in an ongoing transaction).
    pub fn add_partitions(
        &self,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<TxnMeta>, E> {
        if self.state.is_prepare() {
            return Err(E::ConcurrentTransactions);
        }
        let known = partitions.iter().all(|p| self.partitions.contains(p));
        if self.state == TxnState::Ongoing && known {
            return Ok(None);
        }
        let mut next = self.clone();
        if next.state != TxnState::Ongoing {
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        if next.partitions.len() > super::TXN_PARTITIONS_MAX {
            return Err(E::InvalidRequest);
        }
        next.state = TxnState::Ongoing;
        next.update_ms = now_ms;
        Ok(Some(next))
    }

    /// What EndTxn does: `Ok(Some(prepared))` to write markers, `Ok(None)` for a retry of an
    /// EndTxn that already completed, or the error (INVALID_TXN_STATE, CONCURRENT_TRANSACTIONS).
    pub fn end(&self, commit: bool, now_ms: i64) -> Result<Option<TxnMeta>, E> {
        match (self.state, commit) {
            (TxnState::Ongoing, _) => Ok(Some(self.prepare(commit, now_ms))),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(E::ConcurrentTransactions)
            }
            _ => Err(E::InvalidTxnState),
        }
    }

    /// The PrepareCommit / PrepareAbort metadata.
    pub fn prepare(&self, commit: bool, now_ms: i64) -> TxnMeta {
        let mut next = self.clone();
        next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        next.update_ms = now_ms;
        next
    }

    /// The PrepareAbort that fences the producer of this Ongoing transaction (InitProducerId
    /// from a new producer instance): the abort is written at the next epoch (the same one
    /// when the epoch is exhausted).
    pub fn fence(&self, now_ms: i64) -> TxnMeta {
        let mut next = self.prepare(false, now_ms);
        next.epoch = self.next_epoch().unwrap_or(self.epoch);
        next
    }

    /// The PrepareAbort of an Ongoing transaction past its timeout: as [`TxnMeta::fence`],
    /// remembering the producer's epoch so that it may re-initialise with it (KIP-360).
    pub fn timeout_abort(&self, now_ms: i64) -> TxnMeta {
        let mut next = self.fence(now_ms);
        next.last_epoch = self.epoch;
        next
    }

    /// InitProducerId of an id with no transaction open or ending: the next epoch, Empty, the
    /// new timeout. `None` when the epoch is exhausted: the id then needs a new producer id
    /// ([`TxnMeta::new`]).
    pub fn initialized(&self, timeout_ms: i32, now_ms: i64) -> Option<TxnMeta> {
        let epoch = self.next_epoch()?;
        let mut next = TxnMeta::new(self.producer_id, timeout_ms, now_ms);
        next.epoch = epoch;
        Some(next)
    }

    /// The CompleteCommit / CompleteAbort metadata after a prepare's markers are written.
    pub fn complete(&self, now_ms: i64) -> TxnMeta {
        let mut next = self.clone();
        next.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        next.partitions.clear();
        next.start_ms = -1;
        next.update_ms = now_ms;
        next
    }

    /// Whether the id may be forgotten at `now_ms` (Kafka's transactional id expiration): no
    /// transaction is open or ending (Empty, CompleteCommit, CompleteAbort) and its last
    /// update (Kafka's `txnLastUpdateTimestamp`) is at least `expiration_ms` old.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        let idle = matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        );
        idle && self.update_ms <= now_ms.saturating_sub(expiration_ms)
    }

    /// Whether the open transaction outlived its timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && now_ms > self.start_ms + i64::from(self.timeout_ms)
    }

    /// The next epoch, or `None` when the epoch is exhausted (a new producer id is needed).
    pub fn next_epoch(&self) -> Option<i16> {
        self.epoch.checked_add(1).filter(|e| *e < i16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_owned(), partition)
    }

    #[test]
    fn a_transaction_goes_ongoing_prepare_complete() {
        let meta = TxnMeta::new(7, 60_000, 0);
        assert_eq!(meta.end(true, 1), Err(E::InvalidTxnState));
        let ongoing = meta.add_partitions(&[p("t", 0)], 5).unwrap().unwrap();
        assert_eq!((ongoing.state, ongoing.start_ms), (TxnState::Ongoing, 5));
        assert_eq!(ongoing.add_partitions(&[p("t", 0)], 6), Ok(None));
        let more = ongoing.add_partitions(&[p("t", 1)], 6).unwrap().unwrap();
        assert_eq!(more.partitions.len(), 2);
        assert_eq!(more.start_ms, 5, "adding partitions keeps the start");
        let prepared = more.end(true, 7).unwrap().unwrap();
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(prepared.add_partitions(&[p("t", 2)], 8), Err(E::ConcurrentTransactions));
        assert_eq!(prepared.end(false, 8), Err(E::InvalidTxnState));
        let done = prepared.complete(9);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert_eq!(done.end(true, 10), Ok(None), "a retried commit succeeds");
        assert_eq!(done.end(false, 10), Err(E::InvalidTxnState));
    }

    #[test]
    fn only_ids_without_a_transaction_expire_once_idle_long_enough() {
        let empty = TxnMeta::new(7, 60_000, 1_000);
        assert!(!empty.expired(1_999, 1_000), "updated less than the expiration ago");
        assert!(empty.expired(2_000, 1_000));
        let ongoing = empty.add_partitions(&[p("t", 0)], 1_000).unwrap().unwrap();
        let prepared = ongoing.end(true, 1_000).unwrap().unwrap();
        let aborting = ongoing.end(false, 1_000).unwrap().unwrap();
        for open in [&ongoing, &prepared, &aborting] {
            assert!(!open.expired(i64::MAX, 1_000), "{:?} never expires", open.state);
        }
        let committed = prepared.complete(1_000);
        let aborted = aborting.complete(1_000);
        for done in [&committed, &aborted] {
            assert!(!done.expired(1_999, 1_000));
            assert!(done.expired(2_000, 1_000), "{:?} expires", done.state);
        }
        assert!(!committed.expired(i64::MIN, i64::MAX), "no overflow");
    }

    #[test]
    fn producers_are_checked_and_timeouts_found() {
        let mut meta = TxnMeta::new(7, 1_000, 0);
        meta.epoch = 3;
        assert_eq!(meta.check_producer(8, 3), Err(E::InvalidProducerIdMapping));
        assert_eq!(meta.check_producer(7, 2), Err(E::ProducerFenced));
        assert!(meta.check_producer(7, 3).is_ok());
        let ongoing = meta.add_partitions(&[p("t", 0)], 100).unwrap().unwrap();
        assert!(!ongoing.timed_out(1_100));
        assert!(ongoing.timed_out(1_101));
        assert!(!meta.timed_out(i64::MAX / 2), "only ongoing transactions time out");
        meta.epoch = i16::MAX - 1;
        assert_eq!(meta.next_epoch(), None);
    }
}

//! Fuzz targets of transactions.
//!
//! * `txn`: one transactional id's metadata (`strata::txn::state::TxnMeta`) driven through
//!   the transitions the coordinator (`server::txn`) makes, in an order decoded from the
//!   input: InitProducerId (new ids, re-initialisation by the current, a timed-out or a stale
//!   producer), AddPartitionsToTxn, EndTxn commit/abort and retries, markers written now or
//!   later, timeouts, expiration, and restarts through the `__transaction_state` record.
//!   After every step the invariants of [`check`] hold: a producer's epoch never goes back, a
//!   new producer id only replaces an exhausted epoch, states and partitions agree, a record
//!   round-trips.
//! * `txn_records`: the `__transaction_state` decoders (`txn::records`), read at start-up:
//!   anything decodes or fails with an error, and what decodes re-encodes the same.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::collections::BTreeSet;

use bytes::Bytes;
use fuzz::Choices;
use kafka_protocol::error::ResponseError as E;
use strata::txn::records;
use strata::txn::state::{TxnMeta, TxnState};

const TOPICS: &[&str] = &["a", "b"];
const STEPS_MS: &[i64] = &[0, 1, 999, 1_000, 60_001, 900_001, 604_800_001];
const TIMEOUTS_MS: &[i32] = &[1, 1_000, 60_000, 900_000];
const EXPIRATION_MS: i64 = 604_800_000;

/// One transactional id as its coordinator sees it.
struct Model {
    meta: Option<TxnMeta>,
    now: i64,
    next_producer_id: i64,
    /// (producer id, epoch) after the last step, to check the epoch never goes back.
    last: Option<(i64, i16)>,
}

impl Model {
    /// A producer id and epoch a client may send: the current ones, a stale or a future
    /// epoch, another producer id, or none (-1).
    fn producer(&self, c: &mut Choices) -> Option<(i64, i16)> {
        let (id, epoch) = self.meta.as_ref().map_or((-1, -1), |m| (m.producer_id, m.epoch));
        Some(match c.below(6)? {
            0 | 1 => (id, epoch),
            2 => (id, epoch.saturating_sub(1)),
            3 => (id, epoch.saturating_add(1)),
            4 => (id + 1, epoch),
            _ => (-1, -1),
        })
    }

    fn new_producer_id(&mut self) -> i64 {
        self.next_producer_id += 1;
        self.next_producer_id
    }

    /// The markers of a Prepare* transaction are written: it completes.
    fn complete(&mut self) {
        if let Some(meta) = &self.meta {
            if meta.state.is_prepare() {
                self.meta = Some(meta.complete(self.now));
            }
        }
    }

    /// InitProducerId, as `TxnCoordinator::init_producer` does it.
    fn init(&mut self, c: &mut Choices) -> Option<()> {
        let timeout_ms = *c.pick(TIMEOUTS_MS)?;
        let (asked_id, asked_epoch) = self.producer(c)?;
        let Some(mut meta) = self.meta.clone() else {
            self.meta = Some(TxnMeta::new(self.new_producer_id(), timeout_ms, self.now));
            return Some(());
        };
        if asked_id >= 0 && !meta.may_reinit(asked_id, asked_epoch) {
            return Some(()); // PRODUCER_FENCED
        }
        if meta.state.is_prepare() {
            meta = meta.complete(self.now);
        }
        if meta.state == TxnState::Ongoing {
            let fenced = meta.fence(self.now);
            assert!(fenced.epoch >= meta.epoch);
            assert_eq!(fenced.state, TxnState::PrepareAbort);
            meta = fenced.complete(self.now);
            assert_eq!(meta.state, TxnState::CompleteAbort);
        }
        let next = match meta.initialized(timeout_ms, self.now) {
            Some(next) => {
                assert_eq!((next.producer_id, next.epoch), (meta.producer_id, meta.epoch + 1));
                next
            }
            None => TxnMeta::new(self.new_producer_id(), timeout_ms, self.now),
        };
        assert_eq!(next.state, TxnState::Empty);
        assert!(next.partitions.is_empty());
        self.meta = Some(next);
        Some(())
    }

    fn step(&mut self, c: &mut Choices) -> Option<()> {
        match c.below(9)? {
            0 | 1 => self.init(c)?,
            2 | 3 => {
                let (id, epoch) = self.producer(c)?;
                let mut partitions = Vec::new();
                for _ in 0..c.below(4)? {
                    partitions.push(((*c.pick(TOPICS)?).to_owned(), i32::from(c.byte()? % 3)));
                }
                let Some(meta) = self.meta.clone() else { return Some(()) };
                if meta.check_producer(id, epoch).is_err() {
                    return Some(());
                }
                match meta.add_partitions(&partitions, self.now) {
                    Ok(Some(next)) => {
                        assert_eq!(next.state, TxnState::Ongoing);
                        assert!(partitions.iter().all(|p| next.partitions.contains(p)));
                        if meta.state == TxnState::Ongoing {
                            assert_eq!(next.start_ms, meta.start_ms, "adding keeps the start");
                            assert!(meta.partitions.is_subset(&next.partitions));
                        }
                        self.meta = Some(next);
                    }
                    Ok(None) => assert_eq!(meta.state, TxnState::Ongoing),
                    Err(e) => assert!(meta.state.is_prepare() && e == E::ConcurrentTransactions),
                }
            }
            4 => {
                let (id, epoch) = self.producer(c)?;
                let commit = c.flag()?;
                let Some(meta) = self.meta.clone() else { return Some(()) };
                if meta.check_producer(id, epoch).is_err() {
                    return Some(());
                }
                match meta.end(commit, self.now) {
                    Ok(Some(prepared)) => {
                        assert_eq!(meta.state, TxnState::Ongoing);
                        assert_eq!(prepared.partitions, meta.partitions);
                        self.meta = Some(prepared);
                        if c.flag()? {
                            self.complete();
                        }
                    }
                    Ok(None) => {
                        let done =
                            if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
                        assert_eq!(
                            meta.state, done,
                            "only a retry of a finished end succeeds idly"
                        );
                    }
                    Err(_) => assert_ne!(meta.state, TxnState::Ongoing),
                }
            }
            5 => self.complete(),
            6 => {
                // Time passes; the periodic task aborts a timed-out transaction.
                self.now += *c.pick(STEPS_MS)?;
                if let Some(meta) = self.meta.clone() {
                    if meta.timed_out(self.now) {
                        assert_eq!(meta.state, TxnState::Ongoing);
                        let aborting = meta.timeout_abort(self.now);
                        assert_eq!(aborting.state, TxnState::PrepareAbort);
                        assert_eq!(aborting.last_epoch, meta.epoch);
                        // The old producer may re-initialise with its own epoch (KIP-360).
                        assert!(aborting.may_reinit(meta.producer_id, meta.epoch));
                        self.meta = Some(aborting);
                        if c.flag()? {
                            self.complete();
                        }
                    }
                    if self.meta.as_ref().is_some_and(|m| m.expired(self.now, EXPIRATION_MS)) {
                        self.meta = None;
                    }
                }
            }
            7 => {
                // A restart: the id comes back from its record (without last_epoch).
                if let Some(meta) = &self.meta {
                    let (key, value) = records::encode("txn", meta);
                    let (id, back) = records::decode(&key, Some(&value)).expect("decodes");
                    assert_eq!(id, "txn");
                    let expected = TxnMeta { last_epoch: -1, ..meta.clone() };
                    assert_eq!(back.as_ref(), Some(&expected));
                    self.meta = back;
                }
            }
            _ => {
                // A transactional produce is verified against the open transaction.
                let Some(meta) = &self.meta else { return Some(()) };
                let p = ((*c.pick(TOPICS)?).to_owned(), i32::from(c.byte()? % 3));
                let may_write = meta.state == TxnState::Ongoing && meta.partitions.contains(&p);
                assert!(!may_write || meta.check_producer(meta.producer_id, meta.epoch).is_ok());
            }
        }
        check(self);
        Some(())
    }
}

/// What must hold after every step.
fn check(m: &mut Model) {
    let Some(meta) = &m.meta else {
        m.last = None;
        return;
    };
    if let Some((id, epoch)) = m.last {
        if id == meta.producer_id {
            assert!(meta.epoch >= epoch, "epoch went back: {epoch} -> {}", meta.epoch);
        } else {
            assert!(meta.producer_id > id, "producer id went back");
            assert_eq!(meta.epoch, 0, "a new producer id starts at epoch 0");
        }
    }
    match meta.state {
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            assert!(meta.partitions.is_empty(), "{:?} with partitions", meta.state);
            assert_eq!(meta.start_ms, -1);
            assert!(!meta.timed_out(i64::MAX), "only an open transaction times out");
        }
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => {
            assert!(meta.start_ms >= 0, "an open transaction without a start");
            assert!(!meta.expired(i64::MAX, 0), "an open transaction expired");
        }
    }
    let distinct: BTreeSet<&(String, i32)> = meta.partitions.iter().collect();
    assert_eq!(distinct.len(), meta.partitions.len());
    assert!(meta.epoch >= 0 && meta.epoch < i16::MAX);
    m.last = Some((meta.producer_id, meta.epoch));
}

fn run_txn(input: &[u8]) {
    let mut c = Choices::new(input);
    // Some runs start near the end of the epochs, to reach their exhaustion.
    let Some(late) = c.flag() else { return };
    let mut model = Model { meta: None, now: 1_000_000, next_producer_id: 0, last: None };
    if late {
        let mut meta = TxnMeta::new(1, 60_000, model.now);
        meta.epoch = i16::MAX - 3;
        model.meta = Some(meta);
        model.next_producer_id = 1;
        check(&mut model);
    }
    while model.step(&mut c).is_some() {}
}

#[test]
fn fuzz_txn_state_machine() {
    fuzz::run("txn", run_txn);
}

// ---- __transaction_state records -----------------------------------------------------------

/// Input: a mode byte, then for modes 0/1 a key length (u16) and key, and the value (mode 0)
/// or a tombstone (mode 1); for modes 2/3 record batches (mode 3 fixes their CRCs first).
fn decode_records(input: &[u8]) {
    let mut c = Choices::new(input);
    let Some(mode) = c.below(4) else { return };
    if mode >= 2 {
        let mut data = c.rest().to_vec();
        if mode == 3 {
            fuzz::fix_batch_crcs(&mut data);
        }
        let _ = records::decode_batches(&Bytes::from(data));
        return;
    }
    let Some(key_len) = c.u16() else { return };
    let key = c.take(usize::from(key_len));
    let value = (mode == 0).then(|| c.rest());
    let Ok((id, meta)) = records::decode(key, value) else { return };
    let Some(meta) = meta else { return };
    assert_eq!(meta.last_epoch, -1, "last_epoch is not persisted");
    let (key, value) = records::encode(&id, &meta);
    let again = records::decode(&key, Some(&value)).expect("a re-encoded record decodes");
    assert_eq!(again, (id.clone(), Some(meta.clone())), "a record changed on a round trip");
    let batch = records::encode_batch(&id, &meta, 1).expect("encodes");
    let decoded = records::decode_batches(&batch).expect("its batch decodes");
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].1.as_ref().ok(), Some(&(id, Some(meta))));
}

#[test]
fn fuzz_txn_records() {
    fuzz::run("txn_records", decode_records);
}

/// Writes the seed corpus of `txn_records`. Run by hand (`-- --ignored`), commit the files.
#[test]
#[ignore]
fn write_the_txn_records_corpus() {
    let mut meta = TxnMeta::new(42, 60_000, 1_000);
    meta.epoch = 3;
    meta.state = TxnState::Ongoing;
    meta.start_ms = 900;
    meta.partitions.insert(("a".into(), 0));
    meta.partitions.insert(("a".into(), 2));
    meta.partitions.insert(("b".into(), 1));
    let (key, value) = records::encode("txn-1", &meta);
    for (name, mode, value) in [("record", 0u8, &value[..]), ("tombstone", 1, &[][..])] {
        let mut input = vec![mode];
        input.extend_from_slice(&(key.len() as u16).to_be_bytes());
        input.extend_from_slice(&key);
        input.extend_from_slice(value);
        fuzz::save("txn_records", name, &input);
    }
    let batch = records::encode_batch("txn-1", &meta, 5).unwrap();
    let tombstone = records::encode_tombstone_batch("txn-1", 6).unwrap();
    for (name, mode, data) in
        [("batch", 2u8, &batch), ("batch-fixed", 3, &batch), ("tombstone-batch", 3, &tombstone)]
    {
        let mut input = vec![mode];
        input.extend_from_slice(data);
        fuzz::save("txn_records", name, &input);
    }
}

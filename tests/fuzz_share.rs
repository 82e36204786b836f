//! Fuzz targets of share groups (KIP-932).
//!
//! * `share`: one share-partition (`strata::share::partition::SharePartition`) driven by
//!   random acquire / accept / release / reject / gap / renew / lock-expiry / member-leave /
//!   log-start-moves / restart-from-persisted-state sequences decoded from the input (reads
//!   with runs never to deliver, as read_committed has them, among them). After
//!   every step: a record is never both acquired and final (acknowledged or archived), and a
//!   final record is never acquired again (not even after a restart from what was persisted);
//!   delivery counts never decrease; the start offset only moves forward; the number of
//!   acquired records respects `max_record_locks`; every acquired run lies in the offsets the
//!   log returned, outside the runs never to deliver; no lock (renewed or not) holds past the
//!   lock duration from now.
//! * `share_group`: one share group's membership driven by random heartbeats (join, leave,
//!   stale and future epochs, subscription changes) and session expiry: every partition of a
//!   subscribed topic is assigned to some member while any member subscribes to it, and no
//!   member holds a partition that does not exist.
//! * `share_records`: the `__share_group_state` decoders (read at start-up): anything decodes
//!   or fails cleanly, and what decodes re-encodes the same.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::collections::{BTreeMap, BTreeSet};

use fuzz::Choices;
use strata::share::group::{Heartbeat, ShareGroup};
use strata::share::partition::{Limits, Read, RecordState, SharePartition};
use strata::share::records;

const MEMBERS: &[&str] = &["a", "b", "c", "d"];

/// Up to three sorted, disjoint runs of `[from, to)`: markers and aborted transactions.
fn unreadable(c: &mut Choices, from: i64, to: i64) -> Option<Vec<(i64, i64)>> {
    let mut runs = Vec::new();
    let mut at = from;
    for _ in 0..c.below(4)? {
        let first = at + c.below(8)? as i64;
        let last = first + c.below(8)? as i64;
        if last >= to {
            break;
        }
        runs.push((first, last));
        at = last + 2;
    }
    Some(runs)
}

/// The share-partition and what the checks remember of it.
struct Model {
    p: SharePartition,
    now: i64,
    /// The log's end (records exist in `[0, log_end)`).
    log_end: i64,
    /// Highest delivery count seen per offset.
    counts: BTreeMap<i64, i16>,
    /// Offsets seen final (acknowledged or archived), and which of them were persisted.
    finals: BTreeSet<i64>,
    start: i64,
    /// What a restart recovers: start offset and state batches, as last persisted.
    persisted: (i64, Vec<strata::share::partition::StateBatch>),
}

impl Model {
    fn new(limits: Limits) -> Model {
        Model {
            p: SharePartition::new(0, limits),
            now: 0,
            log_end: 0,
            counts: BTreeMap::new(),
            finals: BTreeSet::new(),
            start: 0,
            persisted: (0, Vec::new()),
        }
    }

    fn persist(&mut self) {
        self.persisted = (self.p.start_offset(), self.p.state_batches());
    }

    fn step(&mut self, c: &mut Choices) -> Option<()> {
        let member = *c.pick(MEMBERS)?;
        match c.below(9)? {
            0 => self.log_end += i64::from(c.byte()?),
            1 | 2 => {
                let Some(from) = self.p.next_fetch_offset() else { return Some(()) };
                let to = (from + i64::from(c.byte()?)).min(self.log_end);
                let max = usize::from(c.byte()?);
                // Under read_committed some runs of the read are never delivered.
                let archive = if c.flag()? { unreadable(c, from, to)? } else { Vec::new() };
                let read = Read { from, to, archive: &archive };
                for run in self.p.acquire_read(member, &read, max, self.now) {
                    assert!(run.first_offset >= from && run.last_offset < to);
                    for o in run.first_offset..=run.last_offset {
                        assert!(!self.finals.contains(&o), "final record {o} acquired again");
                        assert!(o >= self.start, "offset {o} below the start acquired");
                        let hidden =
                            archive.iter().any(|(first, last)| (*first..=*last).contains(&o));
                        assert!(!hidden, "offset {o} of an aborted transaction acquired");
                    }
                }
            }
            3 | 4 => {
                let first = self.start + i64::from(c.byte()?);
                let last = first + c.below(8)? as i64 - 1;
                // 0-4 are the types (4 renews the lock), 5 is none.
                let types: Vec<i8> = if c.flag()? {
                    vec![c.below(6)? as i8]
                } else {
                    (first..=last).map(|_| c.below(5).unwrap_or(1) as i8).collect()
                };
                if self.p.acknowledge(member, first, last, &types, self.now).is_ok() {
                    self.persist();
                }
            }
            5 => {
                self.now += i64::from(c.u16()?);
                if !self.p.expire(self.now).is_empty() {
                    self.persist();
                }
            }
            6 => {
                self.p.release_member(member);
                self.persist();
            }
            7 => {
                let to = self.start + c.below(16)? as i64;
                self.p.move_start(to);
                self.persist();
            }
            _ => self.restart(),
        }
        self.check();
        Some(())
    }

    /// The broker restarts: only what was persisted survives, locks are gone.
    fn restart(&mut self) {
        let (start, batches) = self.persisted.clone();
        let mut p = SharePartition::new(start, self.p.limits());
        for b in &batches {
            p.restore(b);
        }
        // Finals not persisted may come back: forget them (at-least-once), keep the rest.
        let kept: BTreeSet<i64> = p
            .in_flight()
            .filter(|(_, r)| r.state.is_final())
            .map(|(o, _)| o)
            .chain(self.finals.iter().copied().filter(|o| *o < p.start_offset()))
            .collect();
        self.finals = kept;
        // Delivery counts of records acquired but not persisted may come back lower.
        self.counts = p.in_flight().map(|(o, r)| (o, r.delivery_count)).collect();
        assert!(p.start_offset() >= start);
        self.start = self.start.min(p.start_offset());
        self.p = p;
    }

    fn check(&mut self) {
        let p = &self.p;
        assert!(p.start_offset() >= self.start, "the start offset went back");
        self.start = p.start_offset();
        assert!(p.end_offset() >= p.start_offset());
        assert!(p.acquired_count() <= p.limits().max_record_locks);
        let mut acquired = 0;
        for (offset, r) in p.in_flight() {
            assert!(offset >= p.start_offset() && offset < p.end_offset());
            let before = self.counts.insert(offset, r.delivery_count).unwrap_or(0);
            assert!(r.delivery_count >= before, "delivery count of {offset} went down");
            match &r.state {
                RecordState::Acquired { deadline_ms, .. } => {
                    acquired += 1;
                    let latest = self.now + p.limits().lock_duration_ms;
                    assert!(*deadline_ms <= latest, "lock of {offset} past the lock duration");
                    assert!(!self.finals.contains(&offset), "{offset} acquired and final");
                    assert!(r.delivery_count <= p.limits().delivery_count_limit);
                }
                RecordState::Available => {
                    assert!(!self.finals.contains(&offset), "{offset} available after final");
                    assert!(r.delivery_count < p.limits().delivery_count_limit);
                }
                RecordState::Acknowledged | RecordState::Archived => {
                    self.finals.insert(offset);
                }
            }
        }
        assert_eq!(acquired, p.acquired_count());
        for o in self.finals.iter().filter(|o| **o >= p.start_offset()) {
            let state = p.record(*o).map(|r| r.state.clone());
            assert!(state.is_some_and(|s| s.is_final()), "final {o} forgotten");
        }
    }
}

fn run_partition(input: &[u8]) {
    let mut c = Choices::new(input);
    let (Some(lock), Some(limit), Some(locks)) = (c.u16(), c.below(6), c.below(64)) else {
        return;
    };
    let limits = Limits {
        lock_duration_ms: i64::from(lock),
        delivery_count_limit: limit as i16 + 1,
        max_record_locks: locks + 1,
    };
    let mut model = Model::new(limits);
    while model.step(&mut c).is_some() {}
}

#[test]
fn fuzz_share_partition() {
    fuzz::run("share", run_partition);
}

// ---- share group membership ---------------------------------------------------------------

fn partitions(topic: &str) -> Option<i32> {
    match topic {
        "t1" => Some(1),
        "t3" => Some(3),
        _ => None,
    }
}

fn run_group(input: &[u8]) {
    let mut c = Choices::new(input);
    let mut g = ShareGroup::new("g", 3);
    let mut epochs: BTreeMap<&str, i32> = BTreeMap::new();
    let mut now = 0i64;
    let mut group_epoch = 0;
    while let (Some(member), Some(op)) = (c.pick(MEMBERS), c.below(6)) {
        let known = epochs.get(member).copied().unwrap_or(0);
        let (epoch, subscribed) = match op {
            0 => (0, Some(vec!["t1".to_owned(), "t3".to_owned(), "nope".to_owned()])),
            1 => (0, Some(vec!["t3".to_owned()])),
            2 => (-1, None),
            3 => (known - 1, None),
            4 => {
                now += i64::from(c.u16().unwrap_or(0)) * 10;
                g.expire(now, 45_000, &partitions);
                (i32::MIN, None)
            }
            _ => (known, None),
        };
        if epoch != i32::MIN {
            let hb = Heartbeat {
                member_id: member.to_string(),
                member_epoch: epoch,
                subscribed,
                ..Heartbeat::default()
            };
            if let Ok(reply) = g.heartbeat(&hb, now, &partitions) {
                assert!(reply.member_epoch == -1 || reply.member_epoch == g.epoch);
                epochs.insert(member, reply.member_epoch);
            }
        }
        assert!(g.epoch >= group_epoch, "the group epoch went back");
        group_epoch = g.epoch;
        assert!(g.members.len() <= 3);
        for topic in g.subscribed_topics() {
            let Some(n) = partitions(&topic) else { continue };
            for p in 0..n {
                let held = g
                    .members
                    .values()
                    .any(|m| m.assignment.get(&topic).is_some_and(|a| a.contains(&p)));
                assert!(held, "{topic}-{p} assigned to nobody");
            }
        }
        for m in g.members.values() {
            for (topic, ps) in &m.assignment {
                let n = partitions(topic).unwrap_or(0);
                assert!(ps.iter().all(|p| *p >= 0 && *p < n));
                assert!(m.subscribed.contains(topic));
            }
        }
    }
}

#[test]
fn fuzz_share_group_membership() {
    fuzz::run("share_group", run_group);
}

// ---- __share_group_state records ----------------------------------------------------------

fn decode_records(input: &[u8]) {
    let mut c = Choices::new(input);
    let Some(split) = c.byte() else { return };
    let rest = c.rest();
    let (key, value) = rest.split_at(usize::from(split).min(rest.len()));
    if let Ok((kind, k)) = records::decode_key(key) {
        assert_eq!(records::encode_key(kind, &k).as_ref(), key);
        if let Ok(state) = records::decode_value(kind, value) {
            let again = records::encode_value(&state);
            assert_eq!(records::decode_value(kind, &again).ok(), Some(state));
        }
    }
    let _ = records::decode_value(records::SNAPSHOT, value);
    let _ = records::decode_value(records::UPDATE, rest);
}

#[test]
fn fuzz_share_records() {
    fuzz::run("share_records", decode_records);
}

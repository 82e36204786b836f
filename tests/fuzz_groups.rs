//! Fuzz targets of consumer groups.
//!
//! * `groups`: the pure group state machine (`strata::group::state::Group`) driven by a
//!   sequence of operations decoded from the input: joins (new and known members, static
//!   members, v4+ and older, protocols and timeouts of every kind, negative rebalance timeouts
//!   included), syncs with assignments, heartbeats, leaves, time passing, commits checks,
//!   deletes, a restart (the snapshot through its `__consumer_offsets` record and back) and
//!   the reset the coordinator does after a contained panic. After every step the invariants
//!   of [`check_invariants`] must hold, and time passing never leaves a deadline due (a timer
//!   that would fire again at once).
//! * `offsets_records`: the `__consumer_offsets` decoders (`group::records`), read at
//!   start-up: anything must decode or fail with an error, and what decodes re-encodes to the
//!   same record.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::collections::BTreeSet;

use bytes::Bytes;
use fuzz::Choices;
use kafka_protocol::error::ResponseError as E;
use strata::group::records::{self, OffsetsRecord};
use strata::group::state::*;

const MEMBERS: &[&str] = &["", "stranger", "c-1"];
const INSTANCES: &[Option<&str>] = &[None, None, Some("i1"), Some("i2")];
const PROTOCOL_TYPES: &[&str] = &["consumer", "consumer", "consumer", "connect", ""];
const PROTOCOLS: &[&str] = &["range", "roundrobin", "cooperative-sticky"];
const SESSION_MS: &[i32] = &[6_000, 10_000, 45_000];
const REBALANCE_MS: &[i32] = &[-1, 0, 100, 6_000, 300_000];
const STEPS_MS: &[i64] = &[0, 1, 100, 2_999, 3_000, 6_001, 10_001, 45_001, 300_001];
const INITIAL_DELAYS_MS: &[i64] = &[0, 0, 3_000];

/// The group under test and what a coordinator would know around it.
struct Model {
    group: Group,
    initial_delay_ms: i64,
    now: i64,
    /// Member ids handed out so far (new ones are picked from these).
    known: Vec<String>,
    /// Members whose JoinGroup / SyncGroup waits for an answer (`Reply::Later`).
    waiting_join: BTreeSet<String>,
    waiting_sync: BTreeSet<String>,
    generation: i32,
    fresh: u32,
    /// The group metadata last persisted (the coordinator persists when the outbox says so).
    persisted: Option<GroupSnapshot>,
    /// The generation whose assignment is being written (the leader synced); the write lands
    /// or fails when time passes.
    unwritten: Option<i32>,
}

impl Model {
    fn new(initial_delay_ms: i64) -> Model {
        let now = 1_000_000;
        Model {
            group: Group::new("g", now).with_initial_delay(initial_delay_ms),
            initial_delay_ms,
            now,
            known: Vec::new(),
            waiting_join: BTreeSet::new(),
            waiting_sync: BTreeSet::new(),
            generation: 0,
            fresh: 0,
            persisted: None,
            unwritten: None,
        }
    }

    fn member(&mut self, c: &mut Choices) -> Option<String> {
        if !self.known.is_empty() && c.below(4)? != 0 {
            return Some(self.known[c.below(self.known.len())?].clone());
        }
        Some((*c.pick(MEMBERS)?).to_owned())
    }

    fn instance(c: &mut Choices) -> Option<Option<String>> {
        Some(c.pick(INSTANCES)?.map(str::to_owned))
    }

    fn learn(&mut self, id: &str) {
        if !id.is_empty() && !self.known.iter().any(|k| k == id) {
            self.known.push(id.to_owned());
        }
    }

    /// One operation decoded from `c`; `None` when the input is used up.
    fn step(&mut self, c: &mut Choices) -> Option<()> {
        let mut out = Outbox::default();
        match c.below(10)? {
            0..=2 => self.join(c, &mut out)?,
            3 | 4 => self.sync(c, &mut out)?,
            5 => {
                let (id, instance) = (self.member(c)?, Self::instance(c)?);
                let generation = self.group.generation + i32::from(c.byte()? % 3) - 1;
                let code = self.group.heartbeat(&id, instance.as_deref(), generation, self.now);
                if code == 0 {
                    assert!(self.group.members.contains_key(&id), "a stranger's heartbeat passed");
                }
            }
            6 => {
                let mut leaving = Vec::new();
                for _ in 0..=c.below(3)? {
                    leaving.push((self.member(c)?, Self::instance(c)?));
                }
                let codes = self.group.leave(&leaving, self.now, &mut out);
                assert_eq!(codes.len(), leaving.len());
            }
            7 => return self.time_passes(c),
            8 => {
                let (id, instance) = (self.member(c)?, Self::instance(c)?);
                let generation = self.group.generation + i32::from(c.byte()? % 4) - 2;
                let transactional = c.byte()? % 2 == 0;
                let (instance, now) = (instance.as_deref(), self.now);
                let _ = self.group.check_commit(&id, instance, generation, transactional, now);
            }
            _ => return self.restart_reset_or_delete(c),
        }
        self.deliver(out);
        Some(())
    }

    fn join(&mut self, c: &mut Choices, out: &mut Outbox) -> Option<()> {
        let member_id = self.member(c)?;
        let mask = c.byte()?;
        let mut protocols: Vec<(String, Bytes)> = PROTOCOLS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, p)| (p.to_string(), Bytes::from(format!("sub-{p}-{}", mask >> 4))))
            .collect();
        if mask & 0x08 != 0 {
            protocols.reverse();
        }
        let args = JoinArgs {
            member_id,
            instance_id: Self::instance(c)?,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: *c.pick(SESSION_MS)?,
            rebalance_timeout_ms: *c.pick(REBALANCE_MS)?,
            protocol_type: (*c.pick(PROTOCOL_TYPES)?).to_owned(),
            protocols,
            require_known_member_id: c.flag()?,
            supports_skip_assignment: c.flag()?,
        };
        self.fresh += 1;
        match self.group.join(args, self.now, &self.fresh.to_string(), out) {
            Reply::Now(outcome) => {
                self.learn(&outcome.member_id);
                if outcome.error == 0 {
                    self.check_join_answer(&outcome.member_id, &outcome);
                }
            }
            Reply::Later(id) => {
                self.learn(&id);
                self.waiting_join.insert(id);
            }
        }
        Some(())
    }

    fn sync(&mut self, c: &mut Choices, out: &mut Outbox) -> Option<()> {
        let member_id = self.member(c)?;
        let generation = self.group.generation + i32::from(c.byte()? % 3) - 1;
        let named = c.byte()?;
        // Each member's assignment is its own id, so a member given another's is caught.
        let mut assignments: Vec<(String, Bytes)> = self
            .known
            .iter()
            .filter(|_| c.flag().unwrap_or(false))
            .map(|id| (id.clone(), Bytes::from(id.clone())))
            .collect();
        assignments.push(("stranger".into(), Bytes::from_static(b"stranger")));
        let args = SyncArgs {
            member_id,
            instance_id: Self::instance(c)?,
            generation,
            protocol_type: (named & 1 != 0).then(|| self.group.protocol_type.clone()).flatten(),
            protocol_name: match named % 3 {
                0 => None,
                1 => self.group.protocol.clone(),
                _ => Some("other".into()),
            },
            assignments,
        };
        match self.group.sync(args, self.now, out) {
            Reply::Now(outcome) if outcome.error == 0 => {
                assert_eq!(self.group.state, GroupState::Stable, "an assignment outside Stable");
            }
            Reply::Now(_) => {}
            Reply::Later(id) => {
                self.waiting_sync.insert(id);
            }
        }
        Some(())
    }

    /// Time passes and the coordinator's timer fires: every deadline due is consumed.
    fn time_passes(&mut self, c: &mut Choices) -> Option<()> {
        if let Some(generation) = self.unwritten.take() {
            // The assignment's write lands, or fails (one in four).
            let written = c.below(4)? != 0;
            let syncs = self.group.assignment_written(generation, written, self.now);
            self.deliver(Outbox { syncs, ..Outbox::default() });
        }
        self.now += *c.pick(STEPS_MS)?;
        let mut out = Outbox::default();
        self.group.tick(self.now, &mut out);
        self.deliver(out);
        // A rebalance timeout of 0 may leave further phases due at the same instant (seen: four
        // ticks in a row, seed 1796508565838751718); a bounded number, never a deadline that
        // stays due however often the group is ticked.
        for _ in 0..8 {
            if self.group.next_deadline_ms().is_none_or(|at| at > self.now) {
                return Some(());
            }
            let mut out = Outbox::default();
            self.group.tick(self.now, &mut out);
            self.deliver(out);
        }
        let due = self.group.next_deadline_ms();
        if due.is_none_or(|at| at > self.now) {
            return Some(());
        }
        panic!("a deadline stays due after ticks at {}: {due:?}\n{:#?}", self.now, self.group);
    }

    fn restart_reset_or_delete(&mut self, c: &mut Choices) -> Option<()> {
        match c.below(3)? {
            0 => {
                // A restart: the metadata last persisted, through its record, is restored.
                // (It may be a generation behind one whose join phase completed but whose
                // sync did not: as in Kafka, a new coordinator starts from what was stored.)
                let mut group = Group::new("g", self.now).with_initial_delay(self.initial_delay_ms);
                if let Some(persisted) = self.persisted.clone() {
                    let value = Some(persisted.clone());
                    let (key, value) = OffsetsRecord::Group { group: "g".into(), value }.encode();
                    let decoded = OffsetsRecord::decode(&key, value.as_deref()).expect("decodes");
                    let OffsetsRecord::Group { value: Some(snapshot), .. } = decoded else {
                        panic!("not the group's metadata: {decoded:?}")
                    };
                    check_snapshot(&persisted, &snapshot);
                    group.restore(snapshot, self.now);
                }
                self.group = group;
                self.generation = self.group.generation;
                self.forget_waiters();
            }
            1 => {
                // What `Coordinator::reset_group` keeps after a contained panic.
                let mut group = Group::new("g", self.now).with_initial_delay(self.initial_delay_ms);
                group.generation = self.group.generation;
                group.protocol_type = self.group.protocol_type.clone();
                group.offsets = std::mem::take(&mut self.group.offsets);
                self.group = group;
                self.forget_waiters();
            }
            _ => {
                if self.group.check_delete().is_ok() {
                    assert!(self.group.members.is_empty(), "deleted a group with members");
                    self.group.mark_dead(self.now);
                    assert_eq!(self.group.check_delete(), Err(E::GroupIdNotFound));
                    // The coordinator forgets it; a later join creates a new group.
                    *self = Model { known: std::mem::take(&mut self.known), ..Model::new(0) };
                }
            }
        }
        check_invariants(self);
        Some(())
    }

    /// Requests waiting on the coordinator fail when it restarts or resets the group.
    fn forget_waiters(&mut self) {
        self.waiting_join.clear();
        self.waiting_sync.clear();
        self.unwritten = None;
    }

    /// Persists when asked, and hands the outbox's answers to the members waiting for them.
    fn deliver(&mut self, out: Outbox) {
        if out.persist {
            self.persisted = Some(self.group.snapshot());
        }
        if let Some(generation) = out.sync_completed {
            self.unwritten = Some(generation);
        }
        let mut answered = BTreeSet::new();
        for (id, outcome) in &out.joins {
            assert!(answered.insert(("join", id.clone())), "two join answers for {id}");
            assert!(self.waiting_join.remove(id), "a join answer for {id}, who was not waiting");
            if outcome.error == 0 {
                self.check_join_answer(id, outcome);
            }
        }
        for (id, outcome) in &out.syncs {
            assert!(answered.insert(("sync", id.clone())), "two sync answers for {id}");
            assert!(self.waiting_sync.remove(id), "a sync answer for {id}, who was not waiting");
            if outcome.error == 0 {
                assert_eq!(self.group.state, GroupState::Stable);
                let member = self.group.members.get(id).expect("an assignment for a member");
                assert_eq!(outcome.assignment, member.assignment);
                assert!(member.assignment.is_empty() || member.assignment == id.as_bytes());
            }
        }
        check_invariants(self);
    }

    fn check_join_answer(&self, id: &str, outcome: &JoinOutcome) {
        let g = &self.group;
        assert_eq!(outcome.member_id, id);
        assert_eq!(outcome.generation, g.generation, "an answer for another generation");
        assert_eq!(outcome.protocol_name, g.protocol);
        if Some(outcome.leader.as_str()) != g.leader.as_deref() {
            // KIP-814 before JoinGroup v9: a static leader that rejoined a Stable group is told
            // its old id leads, so that it keeps the assignment as a follower would.
            assert_eq!(g.leader.as_deref(), Some(id), "another member named leader");
            assert!(!g.members.contains_key(&outcome.leader), "a member named leader");
            assert!(outcome.members.is_empty() && !outcome.skip_assignment);
            return;
        }
        if outcome.skip_assignment {
            assert_eq!(g.state, GroupState::Stable, "KIP-814 skip outside Stable");
        }
        if outcome.leader == id {
            // The leader assigns to exactly the members of this generation.
            let told: BTreeSet<&str> =
                outcome.members.iter().map(|m| m.member_id.as_str()).collect();
            let members: BTreeSet<&str> = g.members.keys().map(String::as_str).collect();
            assert_eq!(told, members, "the leader's member list is not the group");
        } else {
            assert!(outcome.members.is_empty(), "a follower was told the members");
        }
    }
}

fn check_snapshot(before: &GroupSnapshot, after: &GroupSnapshot) {
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.protocol, before.protocol);
    assert_eq!(after.leader, before.leader);
    assert_eq!(after.protocol_type, before.protocol_type.clone().filter(|t| !t.is_empty()));
    let ids = |s: &GroupSnapshot| -> Vec<(String, Option<String>, Bytes)> {
        s.members
            .iter()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.assignment.clone()))
            .collect()
    };
    assert_eq!(ids(after), ids(before));
}

/// What must hold between any two operations.
fn check_invariants(m: &Model) {
    let g = &m.group;
    assert!(
        g.generation >= m.generation,
        "generation went back: {} < {}",
        g.generation,
        m.generation
    );
    for id in g.members.keys() {
        assert!(!g.pending.contains_key(id), "{id} is both a member and pending");
    }
    for (id, member) in &g.members {
        assert_eq!(&member.id, id);
        assert_eq!(member.awaiting_join, m.waiting_join.contains(id), "{id}: awaiting_join");
        assert_eq!(member.awaiting_sync, m.waiting_sync.contains(id), "{id}: awaiting_sync");
        assert!(!(member.awaiting_join && member.awaiting_sync), "{id} waits for both");
    }
    for id in m.waiting_join.iter().chain(&m.waiting_sync) {
        assert!(g.members.contains_key(id), "{id} waits for an answer that will never come");
    }
    let instances: Vec<&str> =
        g.members.values().filter_map(|m| m.instance_id.as_deref()).collect();
    let distinct: BTreeSet<&str> = instances.iter().copied().collect();
    assert_eq!(distinct.len(), instances.len(), "two members share a group.instance.id");
    match g.state {
        GroupState::Empty => {
            assert!(g.members.is_empty(), "an Empty group with members");
            assert!(g.leader.is_none());
        }
        GroupState::PreparingRebalance => assert!(g.phase_deadline_ms.is_some()),
        GroupState::CompletingRebalance | GroupState::Stable => {
            let leader = g.leader.as_ref().expect("a leader");
            assert!(g.members.contains_key(leader), "the leader is not a member");
            let protocol = g.protocol.as_ref().expect("a protocol");
            assert!(g.protocol_type.is_some());
            for member in g.members.values() {
                assert!(
                    member.protocols.iter().any(|(n, _)| n == protocol),
                    "{protocol} unsupported"
                );
                assert!(!member.awaiting_join, "{} still joining", member.id);
                if g.state == GroupState::Stable && g.assignment_unwritten.is_none() {
                    assert!(!member.awaiting_sync, "{} still syncing in Stable", member.id);
                }
            }
            if g.state == GroupState::Stable {
                assert!(g.phase_deadline_ms.is_none());
            }
        }
        GroupState::Dead => {}
    }
    if g.members.is_empty() {
        assert!(matches!(
            g.state,
            GroupState::Empty | GroupState::PreparingRebalance | GroupState::Dead
        ));
    }
}

fn run_group(input: &[u8]) {
    let mut c = Choices::new(input);
    let Some(delay) = c.pick(INITIAL_DELAYS_MS) else { return };
    let mut model = Model::new(*delay);
    while model.step(&mut c).is_some() {
        model.generation = model.group.generation;
    }
}

#[test]
fn fuzz_group_state_machine() {
    fuzz::run("groups", run_group);
}

// ---- __consumer_offsets records ----------------------------------------------------------------

/// Input: a mode byte, then for modes 0/1 a key length (u16) and key, and the value (mode 0)
/// or a tombstone (mode 1); for modes 2/3 record batches (mode 3 fixes their CRCs first, to
/// reach the record decoders behind the checksum).
fn decode_records(input: &[u8]) {
    let mut c = Choices::new(input);
    let Some(mode) = c.below(4) else { return };
    if mode >= 2 {
        let mut data = c.rest().to_vec();
        if mode == 3 {
            fuzz::fix_batch_crcs(&mut data);
        }
        let _ = records::decode_log(&Bytes::from(data.clone()));
        let _ = records::decode_batches(&Bytes::from(data));
        return;
    }
    let Some(key_len) = c.u16() else { return };
    let key = c.take(usize::from(key_len));
    let value = (mode == 0).then(|| c.rest());
    let Ok(record) = OffsetsRecord::decode(key, value) else { return };
    let (key, value) = record.encode();
    let again = OffsetsRecord::decode(&key, value.as_deref()).expect("a re-encoded record decodes");
    assert_eq!(again, record, "a record changed on a round trip");
    let batch = records::encode_batch(std::slice::from_ref(&record), 1).expect("encodes");
    let decoded = records::decode_batches(&batch).expect("its batch decodes");
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].1.as_ref().ok(), Some(&record));
}

#[test]
fn fuzz_offsets_records() {
    fuzz::run("offsets_records", decode_records);
}

/// A share group's ShareGroupStatePartitionMetadata with a topic in each state.
fn share_partitions() -> strata::group::share_meta::SharePartitions {
    use strata::group::share_meta::{SharePartitions, ShareTopic};
    let topic = |name: &str, partitions: &[i32]| ShareTopic {
        name: name.into(),
        partitions: partitions.iter().copied().collect(),
        create_timestamp_ms: 1_700_000_000_000,
    };
    let mut v = SharePartitions::default();
    v.initializing.insert(uuid::Uuid::from_u128(2), topic("b", &[3]));
    v.initialized.insert(uuid::Uuid::from_u128(1), topic("a", &[0, 1]));
    v.deleting.insert(uuid::Uuid::from_u128(3), "c".into());
    v
}

/// Writes the seed corpus of `offsets_records`: records of every kind and version, and a
/// batch. Run by hand (`-- --ignored`) and commit the files.
#[test]
#[ignore]
fn write_the_offsets_records_corpus() {
    use strata::group::state::{Committed, GroupSnapshot, Member};
    let committed =
        Committed { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp_ms: 7 };
    let member = Member {
        id: "c-1".into(),
        instance_id: Some("i1".into()),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 300_000,
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        assignment: Bytes::from_static(b"assigned"),
        awaiting_join: false,
        awaiting_sync: false,
        heartbeat_deadline_ms: 0,
    };
    let snapshot = GroupSnapshot {
        protocol_type: Some("consumer".into()),
        generation: 5,
        protocol: Some("range".into()),
        leader: Some("c-1".into()),
        state_timestamp_ms: 9,
        members: vec![member.clone(), Member { id: "c-2".into(), instance_id: None, ..member }],
    };
    let all = [
        OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
            value: Some(committed),
        },
        OffsetsRecord::Offset { group: "g".into(), topic: "t".into(), partition: 2, value: None },
        OffsetsRecord::Group { group: "g".into(), value: Some(snapshot) },
        OffsetsRecord::Group { group: "g".into(), value: None },
        OffsetsRecord::SharePartitions { group: "s".into(), value: Some(share_partitions()) },
        OffsetsRecord::SharePartitions { group: "s".into(), value: None },
        OffsetsRecord::ShareGroup {
            group: "s".into(),
            value: Some(strata::group::share_meta::ShareGroupMeta { epoch: 4, metadata_hash: 0 }),
        },
        OffsetsRecord::ShareGroup { group: "s".into(), value: None },
    ];
    for (i, record) in all.iter().enumerate() {
        let (key, value) = record.encode();
        let mut input = vec![if value.is_some() { 0 } else { 1 }];
        input.extend_from_slice(&(key.len() as u16).to_be_bytes());
        input.extend_from_slice(&key);
        input.extend_from_slice(value.as_deref().unwrap_or_default());
        fuzz::save("offsets_records", &format!("record-{i}"), &input);
    }
    let batch = records::encode_batch(&all, 1).unwrap();
    let txn = records::encode_batch_for(&all[..1], 1, Some((7, 1))).unwrap();
    for (name, mode, data) in
        [("batch", 2u8, &batch), ("batch-fixed", 3, &batch), ("txn-batch", 3, &txn)]
    {
        let mut input = vec![mode];
        input.extend_from_slice(data);
        fuzz::save("offsets_records", name, &input);
    }
}

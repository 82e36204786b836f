//! Fuzz target `consumer_group`: the pure KIP-848 consumer group state machine
//! (`strata::group::consumer::ConsumerGroup`) driven by a sequence of operations decoded from
//! the input: joins (dynamic and static members, either assignor, names or a regex), full and
//! partial heartbeats that report the partitions a member owns (honestly, a stale view, or
//! nothing), leaves (-1 and static -2), fenced and stale epochs, time passing (session and
//! revocation timeouts), topics created, deleted and grown, and a restart through the group's
//! `__consumer_offsets` records (and a restart from a damaged record, which must fail cleanly),
//! and classic-protocol members inside the group (online migration): JoinGroup with a
//! ConsumerProtocolSubscription that reports what the member owns (cooperative: its current
//! partitions; eager: nothing), SyncGroup, Heartbeat and LeaveGroup with right or wrong
//! generations.
//!
//! After every step: no partition is owned (assigned or pending revocation) by two members,
//! no member's epoch goes down except when it is fenced and rejoins, every owned and every
//! target partition exists in the topics the group last saw, and the records of the group
//! restore to the same members, epochs and assignments.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::collections::BTreeMap;

use fuzz::Choices;
use strata::group::consumer::records;
use strata::group::consumer::*;

const MEMBERS: &[&str] = &["m1", "m2", "m3", "m4", "m5", ""];
const INSTANCES: &[Option<&str>] = &[None, None, None, Some("i1"), Some("i2"), Some("")];
const TOPICS: &[&str] = &["a", "b", "c"];
const REGEXES: &[&str] = &["a|b", "[bc]", ".*", "(", ""];
const ASSIGNORS: &[Option<&str>] = &[None, Some("uniform"), Some("range"), Some("sticky")];
const STEPS_MS: &[i64] = &[0, 1, 500, 5_000, 10_001, 45_001, 300_001];
const REBALANCE_MS: &[i32] = &[-1, 0, 1_000, 60_000];

struct Model {
    group: ConsumerGroup,
    topics: Topics,
    /// Topic ids handed out so far (a topic re-created gets a new id).
    next_id: u128,
    now: i64,
    /// What each member believes it owns (its last answer's assignment).
    owns: BTreeMap<String, Assignment>,
    /// Highest epoch each member id was answered with while it stayed a member.
    epochs: BTreeMap<String, i32>,
}

impl Model {
    fn new() -> Model {
        let settings = Settings {
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 500,
            assignors: vec!["uniform".into(), "range".into()],
            max_size: 4,
            migration: Migration::Bidirectional,
        };
        let mut m = Model {
            group: ConsumerGroup::new("g", settings),
            topics: Topics::new(),
            next_id: 1,
            now: 1_000_000,
            owns: BTreeMap::new(),
            epochs: BTreeMap::new(),
        };
        m.create("a", 3);
        m.create("b", 2);
        m
    }

    fn create(&mut self, name: &str, partitions: i32) {
        let id = uuid::Uuid::from_u128(self.next_id);
        self.next_id += 1;
        self.topics.insert(name.to_owned(), (id, partitions));
    }

    fn step(&mut self, c: &mut Choices) -> Option<()> {
        match c.below(12)? {
            0 | 1 => self.join(c)?,
            2..=5 => self.heartbeat(c)?,
            6 => self.leave(c)?,
            7 => {
                self.now += c.pick(STEPS_MS)?;
                let fenced = self.group.tick(self.now);
                for id in fenced {
                    self.forget(&id);
                }
                if let Some(d) = self.group.next_deadline_ms() {
                    assert!(d > self.now, "a deadline due right after the tick");
                }
            }
            8 => self.topics_change(c)?,
            10 => self.classic_join(c)?,
            11 => self.classic_other(c)?,
            _ if c.flag()? => self.restart(),
            _ => self.corrupt_record(c)?,
        }
        self.check();
        Some(())
    }

    fn forget(&mut self, id: &str) {
        self.owns.remove(id);
        self.epochs.remove(id);
    }

    fn subscription(c: &mut Choices) -> Option<(Option<Vec<String>>, Option<String>)> {
        Some(if c.flag()? {
            let mask = c.byte()?;
            let names = TOPICS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, t)| (*t).to_owned())
                .collect();
            (Some(names), None)
        } else {
            (None, Some((*c.pick(REGEXES)?).to_owned()))
        })
    }

    fn join(&mut self, c: &mut Choices) -> Option<()> {
        let member_id = (*c.pick(MEMBERS)?).to_owned();
        let (topic_names, topic_regex) = Self::subscription(c)?;
        let args = HeartbeatArgs {
            member_id: member_id.clone(),
            epoch: 0,
            instance_id: c.pick(INSTANCES)?.map(str::to_owned),
            rebalance_timeout_ms: *c.pick(REBALANCE_MS)?,
            topic_names,
            topic_regex,
            server_assignor: c.pick(ASSIGNORS)?.map(str::to_owned),
            owned: if c.below(8)? == 0 { None } else { Some(Assignment::default()) },
            ..HeartbeatArgs::default()
        };
        let before = self.group.clone();
        match self.group.heartbeat(args, &self.topics, self.now) {
            Ok(reply) => {
                // Rejoining with epoch 0 starts over (a static member may take over).
                self.epochs.remove(&member_id);
                self.answered(&reply);
            }
            Err(_) => self.unchanged_on_refusal(&before, &member_id),
        }
        Some(())
    }

    fn heartbeat(&mut self, c: &mut Choices) -> Option<()> {
        let ids: Vec<String> = self.group.members.keys().cloned().collect();
        let member_id = if !ids.is_empty() && c.below(5)? != 0 {
            ids[c.below(ids.len())?].clone()
        } else {
            (*c.pick(MEMBERS)?).to_owned()
        };
        let epoch = self.group.members.get(&member_id).map_or(1, |m| m.epoch);
        let epoch = match c.below(8)? {
            0 => epoch + 1,
            1 => epoch - 1,
            _ => epoch,
        };
        let owned = match c.below(6)? {
            0 => None,
            // A stale view: what the member had before the last answer, plus garbage.
            1 => {
                Some(Assignment::from_tps([(uuid::Uuid::from_u128(1), 0), (uuid::Uuid::nil(), 9)]))
            }
            _ => Some(self.owns.get(&member_id).cloned().unwrap_or_default()),
        };
        let (topic_names, topic_regex) =
            if c.below(6)? == 0 { Self::subscription(c)? } else { (None, None) };
        let instance_id = self.group.members.get(&member_id).and_then(|m| m.instance_id.clone());
        let args = HeartbeatArgs {
            member_id: member_id.clone(),
            epoch,
            instance_id,
            rebalance_timeout_ms: -1,
            topic_names,
            topic_regex,
            owned: owned.clone(),
            ..HeartbeatArgs::default()
        };
        let before = self.group.clone();
        match self.group.heartbeat(args, &self.topics, self.now) {
            Ok(reply) => {
                if let (Some(m), Some(o)) = (before.members.get(&member_id), &owned) {
                    if epoch < m.epoch {
                        assert!(o.is_subset(&m.assigned), "a stale epoch passed without a subset");
                    }
                }
                self.answered(&reply)
            }
            Err(_) => self.unchanged_on_refusal(&before, &member_id),
        }
        Some(())
    }

    fn leave(&mut self, c: &mut Choices) -> Option<()> {
        let ids: Vec<String> = self.group.members.keys().cloned().collect();
        let Some(member_id) = ids.get(c.below(ids.len().max(1))?).cloned() else {
            return Some(());
        };
        let instance_id = self.group.members.get(&member_id).and_then(|m| m.instance_id.clone());
        let epoch =
            if instance_id.is_some() && c.flag()? { STATIC_LEAVE_EPOCH } else { LEAVE_EPOCH };
        let args = HeartbeatArgs {
            member_id: member_id.clone(),
            epoch,
            instance_id,
            ..Default::default()
        };
        let reply = self.group.heartbeat(args, &self.topics, self.now);
        assert!(reply.is_ok(), "a member's own leave was refused: {reply:?}");
        if epoch == LEAVE_EPOCH {
            assert!(!self.group.members.contains_key(&member_id));
            self.forget(&member_id);
        } else {
            self.epochs.remove(&member_id);
        }
        Some(())
    }

    /// A classic member's JoinGroup: a ConsumerProtocolSubscription naming some topics and
    /// what the member owns (cooperative: what it was last given; eager: nothing).
    fn classic_join(&mut self, c: &mut Choices) -> Option<()> {
        let member_id = (*c.pick(&MEMBERS[..5])?).to_owned();
        let mask = c.byte()?;
        let names: Vec<&str> = TOPICS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, t)| *t)
            .collect();
        let owned = if c.flag()? {
            self.owns.get(&member_id).cloned().unwrap_or_default()
        } else {
            Assignment::default()
        };
        let ids: BTreeMap<uuid::Uuid, &str> =
            self.topics.iter().map(|(n, (id, _))| (*id, n.as_str())).collect();
        let owned_names: Vec<(String, Vec<i32>)> = owned
            .to_wire()
            .into_iter()
            .filter_map(|(id, ps)| ids.get(&id).map(|n| ((*n).to_owned(), ps)))
            .collect();
        let join = classic::ClassicJoin {
            member_id: member_id.clone(),
            session_timeout_ms: *c.pick(&[6_000, 10_000, 45_000])?,
            rebalance_timeout_ms: *c.pick(&REBALANCE_MS[1..])?,
            protocols: vec![("range".into(), subscription(&names, &owned_names))],
            ..classic::ClassicJoin::default()
        };
        let before = self.group.clone();
        match self.group.classic_join(join, &self.topics, self.now) {
            Ok(joined) => {
                let last = self.epochs.entry(member_id.clone()).or_insert(joined.generation);
                assert!(joined.generation >= *last, "a classic member's generation went down");
                *last = joined.generation;
                // Its SyncGroup hands it what it owns now.
                let sync = self.group.classic_sync(&member_id, None, joined.generation, self.now);
                if let Ok(a) = sync {
                    self.owns.insert(member_id, a);
                }
            }
            Err(_) => self.unchanged_on_refusal(&before, &member_id),
        }
        Some(())
    }

    /// A classic member's Heartbeat, SyncGroup or LeaveGroup, with its generation or another.
    fn classic_other(&mut self, c: &mut Choices) -> Option<()> {
        let ids: Vec<String> = self.group.members.keys().cloned().collect();
        let Some(member_id) = ids.get(c.below(ids.len().max(1))?).cloned() else {
            return Some(());
        };
        let epoch = self.group.members[&member_id].epoch + i32::from(c.below(3)? == 0);
        match c.below(3)? {
            0 => {
                let _ = self.group.classic_heartbeat(&member_id, None, epoch, self.now);
            }
            1 => {
                if let Ok(a) = self.group.classic_sync(&member_id, None, epoch, self.now) {
                    assert!(self.group.members[&member_id].classic.is_some());
                    self.owns.insert(member_id, a);
                }
            }
            _ => {
                if self.group.classic_leave(&member_id, None).is_ok() {
                    assert!(!self.group.members.contains_key(&member_id));
                    self.forget(&member_id);
                }
            }
        }
        Some(())
    }

    fn topics_change(&mut self, c: &mut Choices) -> Option<()> {
        let name = *c.pick(TOPICS)?;
        match c.below(3)? {
            0 => {
                self.topics.remove(name);
            }
            1 => {
                let partitions = i32::from(c.byte()? % 5);
                self.create(name, partitions);
            }
            _ => {
                if let Some((_, count)) = self.topics.get_mut(name) {
                    *count += 1;
                }
            }
        }
        Some(())
    }

    fn restart(&mut self) {
        let image = records::image(&self.group);
        let settings = self.group.settings.clone();
        let restored = records::restore("g", settings, &image, self.now).expect("own records");
        let restored = restored.expect("the group metadata record");
        assert_eq!(restored.epoch, self.group.epoch);
        assert_eq!(restored.assignment_epoch, self.group.assignment_epoch);
        assert_eq!(restored.target, self.group.target);
        for (id, m) in &self.group.members {
            let r = &restored.members[id];
            assert_eq!((r.epoch, r.previous_epoch, r.state), (m.epoch, m.previous_epoch, m.state));
            assert_eq!((&r.assigned, &r.pending_revocation), (&m.assigned, &m.pending_revocation));
            assert_eq!((&r.topic_names, &r.topic_regex), (&m.topic_names, &m.topic_regex));
            assert_eq!(r.classic, m.classic, "classic member metadata lost in the records");
        }
        assert_eq!(records::image(&restored), image, "records of the restored group differ");
        self.group = restored;
    }

    /// Start-up replay of a damaged record: one value replaced by input bytes must restore
    /// or fail with an error, never panic.
    fn corrupt_record(&mut self, c: &mut Choices) -> Option<()> {
        let mut image = records::image(&self.group);
        let keys: Vec<records::Key> = image.keys().cloned().collect();
        let key = keys.get(c.below(keys.len().max(1))?)?.clone();
        let len = c.below(64)?;
        image.insert(key, bytes::Bytes::copy_from_slice(c.take(len)));
        let _ = records::restore("g", self.group.settings.clone(), &image, self.now);
        Some(())
    }

    fn answered(&mut self, reply: &HeartbeatReply) {
        if let Some(a) = &reply.assignment {
            self.owns.insert(reply.member_id.clone(), a.clone());
        }
        if reply.epoch >= 0 {
            let last = self.epochs.entry(reply.member_id.clone()).or_insert(reply.epoch);
            assert!(reply.epoch >= *last, "member epoch went down: {} after {last}", reply.epoch);
            *last = reply.epoch;
        }
    }

    fn unchanged_on_refusal(&self, before: &ConsumerGroup, member_id: &str) {
        // A refused heartbeat leaves the members' assignments as they were.
        for (id, m) in &before.members {
            if id == member_id {
                continue;
            }
            if let Some(now) = self.group.members.get(id) {
                assert_eq!(now.assigned, m.assigned, "a refused heartbeat moved another member");
            }
        }
    }

    fn check(&self) {
        let mut owner: BTreeMap<(uuid::Uuid, i32), &str> = BTreeMap::new();
        for m in self.group.members.values() {
            for tp in m.assigned.iter_tps().chain(m.pending_revocation.iter_tps()) {
                if let Some(other) = owner.insert(tp, &m.id) {
                    panic!("partition {tp:?} owned by {other} and {}", m.id);
                }
            }
            assert!(m.epoch <= self.group.epoch, "member epoch ahead of the group epoch");
            if m.epoch == self.group.assignment_epoch {
                // Converged members own only partitions of their target (which exist).
                let target = self.group.target.get(&m.id).cloned().unwrap_or_default();
                assert!(m.assigned.is_subset(&target), "{} owns beyond its target", m.id);
            }
        }
        for (id, target) in &self.group.target {
            assert!(self.group.members.contains_key(id), "a target for a non-member");
            let Some(meta) = &self.group.metadata else { continue };
            if self.group.assignment_epoch != self.group.epoch {
                continue;
            }
            for tp in target.iter_tps() {
                let exists =
                    meta.values().any(|(tid, count)| *tid == tp.0 && tp.1 >= 0 && tp.1 < *count);
                assert!(exists, "target partition {tp:?} does not exist");
            }
        }
        assert!(self.group.assignment_epoch <= self.group.epoch);
    }
}

/// A ConsumerProtocolSubscription (version 1: topics, user data, owned partitions) with its
/// version prefix, as a classic consumer sends it in JoinGroup.
fn subscription(topics: &[&str], owned: &[(String, Vec<i32>)]) -> bytes::Bytes {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let owned = owned
        .iter()
        .map(|(t, ps)| {
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_string(t.clone())))
                .with_partitions(ps.clone())
        })
        .collect();
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from_string((*t).to_owned())).collect())
        .with_owned_partitions(owned);
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut buf, 1).expect("encodes");
    buf.freeze()
}

#[test]
fn consumer_group() {
    fuzz::run("consumer_group", |input| {
        let mut model = Model::new();
        let mut c = Choices::new(input);
        while model.step(&mut c).is_some() {}
    });
}

/// Writes the seed corpus (run once with `--ignored` to refresh it).
#[test]
#[ignore]
fn write_consumer_group_corpus() {
    // Three joins, heartbeats with honest owned lists, a fourth join, time, a restart.
    let seeds: &[&[u8]] = &[
        &[0, 0, 1, 3, 0, 0, 2, 1, 1, 1, 3, 0, 0, 2, 1, 2, 3, 2, 0, 3, 2, 3, 2, 0, 3],
        &[0, 3, 1, 7, 3, 2, 1, 0, 1, 0, 3, 1, 7, 3, 2, 1, 6, 0, 1, 7, 3, 9, 7, 5, 2, 3, 4],
        &[1, 0, 0, 2, 1, 0, 1, 2, 1, 0, 1, 1, 0, 2, 1, 2, 3, 0, 2, 2, 8, 0, 1, 3, 2, 3, 9],
        // Two classic members join (one cooperative, one eager), a consumer member joins,
        // the classic ones heartbeat and rejoin, one leaves, a restart.
        &[
            10, 0, 3, 1, 1, 2, 10, 1, 3, 0, 0, 1, 0, 0, 1, 3, 0, 0, 2, 1, 11, 0, 1, 0, 10, 0, 3, 1,
            1, 2, 2, 1, 1, 1, 11, 1, 1, 2, 9, 1,
        ],
    ];
    for (i, seed) in seeds.iter().enumerate() {
        fuzz::save("consumer_group", &format!("seed-{i}"), seed);
    }
}

//! Unit tests of the online migration (no clock, no I/O): a classic group with members
//! converted into a consumer group and the refusals of Kafka 4.0, members waiting in a join
//! phase answered, the JoinGroup checks of a classic member joining a consumer group, the
//! converted group through its records, and the way back to a classic group.

use bytes::Bytes;
use futures::channel::oneshot;
use uuid::Uuid;

use super::{check_classic_join, to_classic, to_consumer, upgrade};
use crate::group::consumer::classic::{decode_assignment, encode_assignment, ClassicJoin};
// A consumer-protocol member's first heartbeat, and topic `t`: the consumer group tests'.
use crate::group::consumer::tests::{join as consumer_join, topics};
use crate::group::consumer::{records, Assignment, ConsumerGroup, GroupState, HeartbeatArgs};
use crate::group::consumer::{Migration, Settings};
use crate::group::coordinator::Slot;
use crate::group::state::{Committed, Group, GroupSnapshot, GroupState as ClassicState};
use crate::group::state::{JoinArgs, Member, Outbox, Reply};
use crate::protocol::ResponseError as E;

const GENERATION: i32 = 4;
const SESSION_MS: i32 = 10_000;

/// A ConsumerProtocolSubscription v1 of topic `t` (version prefix first), owning nothing.
fn subscription() -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let sub =
        ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("t")]);
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut buf, 1).unwrap();
    buf.freeze()
}

fn partitions(a: &Assignment) -> Vec<i32> {
    a.iter_tps().map(|(_, p)| p).collect()
}

/// A classic member that was given `parts` of `t` in SyncGroup.
fn classic_member(id: &str, parts: &[i32]) -> Member {
    let given = Assignment::from_tps(parts.iter().map(|p| (Uuid::from_u128(7), *p)));
    Member {
        id: id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: 30_000,
        protocols: vec![("range".into(), subscription())],
        assignment: encode_assignment(&given, &topics()),
        awaiting_join: false,
        awaiting_sync: false,
        heartbeat_deadline_ms: 0,
    }
}

/// A stable classic group of `protocol_type` at generation 4: `a` owns 0-2, `b` 3-5, and
/// an offset is committed.
fn classic_group(protocol_type: &str) -> Group {
    let mut g = Group::new("g", 0);
    g.restore(
        GroupSnapshot {
            protocol_type: Some(protocol_type.into()),
            generation: GENERATION,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            state_timestamp_ms: 0,
            members: vec![classic_member("a", &[0, 1, 2]), classic_member("b", &[3, 4, 5])],
        },
        0,
    );
    let committed =
        Committed { offset: 42, leader_epoch: -1, metadata: String::new(), commit_timestamp_ms: 0 };
    g.offsets.insert(("t".into(), 0), committed);
    g
}

fn join_args(member_id: &str, protocol_type: &str, protocols: &[&str]) -> JoinArgs {
    JoinArgs {
        member_id: member_id.into(),
        client_id: "c".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: 30_000,
        protocol_type: protocol_type.into(),
        protocols: protocols.iter().map(|n| ((*n).to_owned(), subscription())).collect(),
        require_known_member_id: true,
        ..JoinArgs::default()
    }
}

fn converted(settings: Settings) -> ConsumerGroup {
    to_consumer(&classic_group("consumer"), settings, &topics(), 1_000).unwrap()
}

#[test]
fn a_classic_group_converts_keeping_its_members_and_their_assignments() {
    let mut c = converted(Settings::default());
    assert_eq!(
        (c.epoch, c.assignment_epoch, c.state()),
        (GENERATION, GENERATION, GroupState::Stable)
    );
    for (id, parts) in [("a", vec![0, 1, 2]), ("b", vec![3, 4, 5])] {
        let m = &c.members[id];
        assert_eq!((m.epoch, partitions(&m.assigned)), (GENERATION, parts), "{id}");
        assert_eq!(c.target[id], m.assigned, "its assignment is its target");
        assert_eq!(m.topic_names, vec!["t".to_owned()], "subscribed as in its JoinGroup");
        assert_eq!(m.session_deadline_ms, 1_000 + i64::from(SESSION_MS), "its own session");
        assert_eq!(m.classic.as_ref().map(|c| c.protocols.len()), Some(1));
    }
    // Its classic members go on at their generation.
    assert_eq!(c.classic_heartbeat("a", None, GENERATION, 2_000), Ok(()));
    let synced = c.classic_sync("b", None, GENERATION, 2_000).map(|a| partitions(&a));
    assert_eq!(synced, Ok(vec![3, 4, 5]));
    // The consumer member that triggered it joins: it waits for partitions still owned, and
    // the classic members are told to rejoin.
    let reply = c.heartbeat(consumer_join("n"), &topics(), 2_000).unwrap();
    assert_eq!(reply.epoch, GENERATION + 1);
    assert!(reply.assignment.unwrap_or_default().is_empty());
    assert_eq!(c.classic_heartbeat("a", None, GENERATION, 2_000), Err(E::RebalanceInProgress));
    let ahead = c.classic_heartbeat("a", None, GENERATION + 1, 2_000);
    assert_eq!(ahead, Err(E::IllegalGeneration));
    assert_eq!(c.classic_heartbeat("x", None, GENERATION, 2_000), Err(E::UnknownMemberId));
    // A classic member commits with its generation (ILLEGAL_GENERATION otherwise).
    assert_eq!(c.check_commit("b", GENERATION), Ok(()));
    assert_eq!(c.check_commit("b", GENERATION + 1), Err(E::IllegalGeneration));
    // Through its records (a restart): the classic members come back as classic members.
    let image = records::image(&c);
    let back = records::restore("g", Settings::default(), &image, 5_000).unwrap().unwrap();
    assert_eq!(back.members["a"].classic, c.members["a"].classic);
    assert_eq!(back.members["a"].session_deadline_ms, 5_000 + i64::from(SESSION_MS));
    assert!(back.members["n"].classic.is_none());
    assert_eq!(records::image(&back), image);
}

#[test]
fn the_conversion_is_refused_as_kafka_refuses_it() {
    let g = classic_group("consumer");
    let refusal = |g: &Group, settings: Settings| {
        to_consumer(g, settings, &topics(), 0).map(|c| c.members.len()).map_err(|(e, _)| e)
    };
    for policy in [Migration::Disabled, Migration::Downgrade] {
        let settings = Settings { migration: policy, ..Settings::default() };
        assert_eq!(refusal(&g, settings), Err(E::GroupIdNotFound), "{policy:?}");
    }
    let settings = Settings { migration: Migration::Upgrade, ..Settings::default() };
    assert_eq!(refusal(&g, settings), Ok(2));
    // Only groups of Kafka consumers (protocol type "consumer") convert.
    assert_eq!(refusal(&classic_group("connect"), Settings::default()), Err(E::GroupIdNotFound));
    // Larger than group.consumer.max.size: not a consumer group; as large: full.
    let settings = Settings { max_size: 1, ..Settings::default() };
    assert_eq!(refusal(&g, settings), Err(E::GroupIdNotFound));
    let settings = Settings { max_size: 2, ..Settings::default() };
    assert_eq!(refusal(&g, settings), Err(E::GroupMaxSizeReached));
}

#[test]
fn members_waiting_in_a_join_phase_are_told_to_rejoin_and_the_offsets_stay() {
    let mut g = classic_group("consumer");
    // The leader rejoins: a rebalance starts and it waits for `b`.
    let reply = g.join(join_args("a", "consumer", &["range"]), 0, "x", &mut Outbox::default());
    assert_eq!(reply, Reply::Later("a".into()));
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    let mut slot = Slot::new(g, 0);
    let (tx, mut rx) = oneshot::channel();
    slot.joins.insert("a".into(), tx);
    upgrade(&mut slot, Settings::default(), &topics(), Group::new("g", 0)).unwrap();
    let answer = rx.try_recv().unwrap().map(|o| o.error);
    assert_eq!(answer, Some(E::RebalanceInProgress.code()));
    assert!(slot.group.members.is_empty(), "the classic group holds only the offsets");
    assert_eq!(slot.group.offsets[&("t".to_owned(), 0)].offset, 42);
    let c = &slot.consumer.as_ref().unwrap().group;
    assert_eq!(c.members.len(), 2);
    assert!(c.members.values().all(|m| m.classic.is_some()));
    // A refused conversion leaves the slot as it was.
    let mut slot = Slot::new(classic_group("consumer"), 0);
    let settings = Settings { migration: Migration::Disabled, ..Settings::default() };
    assert!(upgrade(&mut slot, settings, &topics(), Group::new("g", 0)).is_err());
    assert!(slot.consumer.is_none());
    assert_eq!(slot.group.members.len(), 2);
}

#[test]
fn a_classic_member_joining_a_consumer_group_is_checked_as_kafka_checks_it() {
    let mut c = converted(Settings { max_size: 3, ..Settings::default() });
    let check = |c: &ConsumerGroup, id: &str, protocol_type: &str, protocols: &[&str]| {
        check_classic_join(c, id, &join_args(id, protocol_type, protocols))
    };
    assert_eq!(check(&c, "", "consumer", &["range"]), Ok(()));
    assert_eq!(check(&c, "", "connect", &["range"]), Err(E::InconsistentGroupProtocol));
    assert_eq!(check(&c, "", "consumer", &[]), Err(E::InconsistentGroupProtocol));
    // One of its protocols must be one every classic member supports.
    let other = check(&c, "", "consumer", &["roundrobin"]);
    assert_eq!(other, Err(E::InconsistentGroupProtocol));
    assert_eq!(check(&c, "", "consumer", &["roundrobin", "range"]), Ok(()));
    // A full group refuses a new member before looking at its protocols; a known one rejoins.
    c.heartbeat(consumer_join("n"), &topics(), 1_000).unwrap();
    assert_eq!(check(&c, "x", "connect", &["range"]), Err(E::GroupMaxSizeReached));
    assert_eq!(check(&c, "a", "consumer", &["range"]), Ok(()));
    // The policy governs conversions only: classic members still join (as in Kafka).
    c.settings.migration = Migration::Disabled;
    assert_eq!(check(&c, "a", "consumer", &["range"]), Ok(()));
}

/// The consumer member `n` leaves the converted group `c` (heartbeat with epoch -1).
fn consumer_leaves(c: &mut ConsumerGroup) {
    let leave = HeartbeatArgs { member_id: "n".into(), epoch: -1, ..HeartbeatArgs::default() };
    c.heartbeat(leave, &topics(), 2_000).unwrap();
}

#[test]
fn the_group_goes_back_to_classic_when_its_last_consumer_member_leaves() {
    let mut c = converted(Settings::default());
    c.heartbeat(consumer_join("n"), &topics(), 1_000).unwrap();
    assert!(to_classic(&c, Group::new("g", 0), 2_000).is_none(), "a consumer member is left");
    consumer_leaves(&mut c);
    for policy in [Migration::Disabled, Migration::Upgrade] {
        let mut d = c.clone();
        d.settings.migration = policy;
        assert!(to_classic(&d, Group::new("g", 0), 2_000).is_none(), "{policy:?}");
    }
    let mut g = to_classic(&c, Group::new("g", 0), 2_000).unwrap();
    assert_eq!(g.generation, c.epoch, "generation = the group epoch");
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    assert_eq!(
        (g.protocol_type.as_deref(), g.protocol.as_deref()),
        (Some("consumer"), Some("range"))
    );
    for (id, parts) in [("a", vec![0, 1, 2]), ("b", vec![3, 4, 5])] {
        let given: Vec<i32> =
            decode_assignment(&g.members[id].assignment).into_iter().map(|(_, p)| p).collect();
        assert_eq!(given, parts, "{id} keeps its assignment until it rejoins");
        assert_eq!(g.members[id].session_timeout_ms, SESSION_MS);
    }
    // The members must rejoin; once both did, a new generation with a leader.
    let generation = g.generation;
    assert_eq!(g.heartbeat("a", None, generation, 2_000), E::RebalanceInProgress.code());
    let mut out = Outbox::default();
    for id in ["a", "b"] {
        let reply = g.join(join_args(id, "consumer", &["range"]), 2_000, "x", &mut out);
        assert_eq!(reply, Reply::Later(id.into()));
    }
    assert_eq!(g.generation, generation + 1);
    assert_eq!(out.joins.len(), 2);
    assert!(g.leader.is_some());
}

#[test]
fn an_empty_consumer_group_is_not_downgraded() {
    let mut c = converted(Settings::default());
    c.heartbeat(consumer_join("n"), &topics(), 1_000).unwrap();
    for id in ["a", "b"] {
        c.classic_leave(id, None).unwrap();
    }
    consumer_leaves(&mut c);
    assert!(c.members.is_empty());
    assert!(to_classic(&c, Group::new("g", 0), 2_000).is_none());
}

/// A converted group whose classic member `a` is static (instance id `i`).
fn with_static_member() -> ConsumerGroup {
    let mut g = classic_group("consumer");
    if let Some(a) = g.members.get_mut("a") {
        a.instance_id = Some("i".into());
    }
    to_consumer(&g, Settings::default(), &topics(), 0).unwrap()
}

#[test]
fn a_static_member_restarting_takes_over_its_place_at_once() {
    // A classic static member restarts: JoinGroup with a new member id and its instance id.
    let mut c = with_static_member();
    let join = ClassicJoin {
        member_id: "a2".into(),
        instance_id: Some("i".into()),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: 30_000,
        protocols: vec![("range".into(), subscription())],
        ..ClassicJoin::default()
    };
    let joined = c.classic_join(join, &topics(), 1_000).unwrap();
    assert_eq!(joined.generation, GENERATION, "nothing moved: the same epoch");
    assert!(!c.members.contains_key("a"));
    assert_eq!(partitions(&c.members["a2"].assigned), vec![0, 1, 2]);
    assert_eq!(c.target.get("a2"), Some(&c.members["a2"].assigned));
    let old = c.classic_heartbeat("a", Some("i"), GENERATION, 1_000);
    assert_eq!(old, Err(E::FencedInstanceId), "the old process is fenced");
    let synced = c.classic_sync("a2", Some("i"), GENERATION, 1_000).map(|a| partitions(&a));
    assert_eq!(synced, Ok(vec![0, 1, 2]));
    assert_eq!(c.state(), GroupState::Stable);

    // It comes back as a consumer-protocol member instead: it takes the place over too.
    let mut c = with_static_member();
    let join = HeartbeatArgs { instance_id: Some("i".into()), ..consumer_join("n") };
    let reply = c.heartbeat(join, &topics(), 1_000).unwrap();
    assert_eq!(reply.epoch, GENERATION, "nothing moved: the same epoch");
    let given = reply.assignment.map(|a| partitions(&a));
    assert_eq!(given, Some(vec![0, 1, 2]));
    assert!(!c.members.contains_key("a"));
    assert!(c.members["n"].classic.is_none(), "it speaks the consumer protocol now");
    assert_eq!(c.members["n"].session_deadline_ms, 1_000 + 45_000);
    let old = c.classic_heartbeat("a", Some("i"), GENERATION, 1_000);
    assert_eq!(old, Err(E::FencedInstanceId), "the old process is fenced");
}

fn classic_joining(member_id: &str, rebalance_timeout_ms: i32) -> ClassicJoin {
    ClassicJoin {
        member_id: member_id.into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms,
        protocols: vec![("range".into(), subscription())],
        ..ClassicJoin::default()
    }
}

#[test]
fn a_classic_member_that_never_syncs_leaves_at_its_rebalance_timeout() {
    // Converted at 1_000: a and b are in sync already (no sync timer), sessions to 11_000.
    let mut c = converted(Settings::default());
    assert!(c.members.values().all(|m| m.sync_deadline_ms.is_none()));
    // x joins at 2_000 with a 5 s rebalance timeout, then only heartbeats: they keep its
    // session, not its sync timer.
    let joined = c.classic_join(classic_joining("x", 5_000), &topics(), 2_000).unwrap();
    assert_eq!(c.next_deadline_ms(), Some(7_000));
    let beat = c.classic_heartbeat("x", None, joined.generation, 6_000);
    assert!(matches!(beat, Ok(()) | Err(E::RebalanceInProgress)), "{beat:?}");
    assert_eq!(c.members["x"].session_deadline_ms, 6_000 + i64::from(SESSION_MS));
    let epoch = c.epoch;
    assert!(c.tick(6_999).is_empty());
    assert_eq!(c.tick(7_000), vec!["x".to_owned()]);
    assert!(!c.members.contains_key("x"));
    assert!(c.epoch > epoch, "its partitions are free: the group epoch moved");
    assert_eq!(c.classic_sync("x", None, joined.generation, 7_000), Err(E::UnknownMemberId));

    // y syncs in time: its sync timer stops, and its session (refreshed by the sync) is what
    // removes it when it never heartbeats after that.
    let joined = c.classic_join(classic_joining("y", 5_000), &topics(), 7_000).unwrap();
    assert_eq!(c.members["y"].sync_deadline_ms, Some(12_000));
    assert!(c.classic_sync("y", None, joined.generation, 8_000).is_ok());
    assert_eq!(c.members["y"].sync_deadline_ms, None);
    let session_end = 8_000 + i64::from(SESSION_MS);
    assert_eq!(c.members["y"].session_deadline_ms, session_end);
    assert!(!c.tick(session_end - 1).contains(&"y".to_owned()), "a and b went at 11_000");
    assert_eq!(c.tick(session_end), vec!["y".to_owned()]);

    // z's JoinGroup is answered and then it is never heard of again: with a rebalance
    // timeout longer than its session, the session timeout removes it.
    c.classic_join(classic_joining("z", 60_000), &topics(), 20_000).unwrap();
    assert_eq!(c.next_deadline_ms(), Some(20_000 + i64::from(SESSION_MS)));
    assert_eq!(c.tick(20_000 + i64::from(SESSION_MS)), vec!["z".to_owned()]);
    assert!(c.members.is_empty());
}

//! Unit tests of the group state machine and record formats (no clock, no I/O).

use bytes::Bytes;

use super::records::{decode_batches, encode_batch, OffsetsRecord};
use super::state::*;
use super::{java_string_hash, partition_for};
use crate::protocol::ResponseError as E;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn args(member_id: &str) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_owned(),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
        require_known_member_id: true,
        supports_skip_assignment: true,
        ..JoinArgs::default()
    }
}

/// Joins a new member the v4+ way (MEMBER_ID_REQUIRED, then rejoin); returns its id.
fn join_new(g: &mut Group, fresh: &str, now: i64, out: &mut Outbox) -> String {
    let Reply::Now(first) = g.join(args(""), now, fresh, out) else { panic!("expected an answer") };
    assert_eq!(first.error, E::MemberIdRequired.code());
    let id = first.member_id;
    assert_eq!(g.join(args(&id), now, "unused", out), Reply::Later(id.clone()));
    id
}

/// JoinGroup of static member `i1` (known member id not required).
fn static_args(id: &str) -> JoinArgs {
    JoinArgs { instance_id: Some("i1".into()), require_known_member_id: false, ..args(id) }
}

fn sync_args(id: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncArgs {
    SyncArgs { member_id: id.into(), generation, assignments, ..SyncArgs::default() }
}

/// A stable group with one member `a` at generation 1.
fn stable_one() -> (Group, String) {
    let mut g = Group::new("g", 0);
    let mut out = Outbox::default();
    let a = join_new(&mut g, "1", 0, &mut out);
    assert_eq!(out.joins.len(), 1);
    assert_eq!(out.joins[0].1.members.len(), 1, "the leader sees the members");
    let assignment = vec![(a.clone(), Bytes::from_static(b"p0"))];
    let mut out = Outbox::default();
    assert_eq!(g.sync(sync_args(&a, 1, assignment), 0, &mut out), Reply::Later(a.clone()));
    assert!(out.persist);
    assert_eq!(out.syncs[0].1.assignment, Bytes::from_static(b"p0"));
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(out.sync_completed, Some(1));
    assert!(g.assignment_written(1, true, 0).is_empty(), "nobody synced during the write");
    (g, a)
}

#[test]
fn first_member_becomes_leader_and_gets_its_assignment() {
    let (mut g, a) = stable_one();
    assert_eq!(g.leader.as_deref(), Some(a.as_str()));
    assert_eq!(g.generation, 1);
    assert_eq!(g.heartbeat(&a, None, 1, 1_000), 0);
    assert_eq!(g.heartbeat(&a, None, 0, 1_000), E::IllegalGeneration.code());
    assert_eq!(g.heartbeat("nobody", None, 1, 1_000), E::UnknownMemberId.code());
}

#[test]
fn a_new_member_triggers_a_rebalance_that_the_old_one_joins() {
    let (mut g, a) = stable_one();
    let mut out = Outbox::default();
    let b = join_new(&mut g, "2", 100, &mut out);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(out.joins.is_empty(), "waits for the old member");
    assert_eq!(g.heartbeat(&a, None, 1, 200), E::RebalanceInProgress.code());
    assert_eq!(g.join(args(&a), 300, "x", &mut out), Reply::Later(a.clone()));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.generation, 2);
    assert_eq!(out.joins.len(), 2);
    let leader = out.joins.iter().find(|(id, _)| *id == a).map(|(_, o)| o.members.len());
    assert_eq!(leader, Some(2));
    let follower = out.joins.iter().find(|(id, _)| *id == b).map(|(_, o)| o.members.len());
    assert_eq!(follower, Some(0));
    let mut out = Outbox::default();
    assert_eq!(g.sync(sync_args(&b, 2, vec![]), 400, &mut out), Reply::Later(b.clone()));
    assert!(out.syncs.is_empty(), "the follower waits for the leader");
    let assignments =
        vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
    assert_eq!(g.sync(sync_args(&a, 2, assignments), 500, &mut out), Reply::Later(a.clone()));
    assert_eq!(out.syncs.len(), 2);
    assert_eq!(g.state, GroupState::Stable);
}

/// Two members `a` (the leader) and `b` at generation 2, both joined, neither synced.
fn completing_two() -> (Group, String, String) {
    let (mut g, a) = stable_one();
    let mut out = Outbox::default();
    let b = join_new(&mut g, "2", 100, &mut out);
    assert_eq!(g.join(args(&a), 300, "x", &mut out), Reply::Later(a.clone()));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    (g, a, b)
}

fn leader_syncs(g: &mut Group, a: &str, b: &str) {
    let assignments =
        vec![(a.to_owned(), Bytes::from_static(b"A")), (b.to_owned(), Bytes::from_static(b"B"))];
    let mut out = Outbox::default();
    assert_eq!(g.sync(sync_args(a, 2, assignments), 500, &mut out), Reply::Later(a.to_owned()));
    assert_eq!(out.syncs.len(), 1, "only the leader was waiting");
    assert!(out.persist);
    assert_eq!(out.sync_completed, Some(2));
}

/// As Kafka's `validateOffsetCommit`: committer and generation first, then the state.
#[test]
fn a_commit_during_a_rebalance_is_checked_for_its_generation_first() {
    let (mut g, a, _b) = completing_two();
    assert_eq!(g.check_commit(&a, None, 1, false, 400), Err(E::IllegalGeneration));
    assert_eq!(g.check_commit("nobody", None, 2, false, 400), Err(E::UnknownMemberId));
    assert_eq!(g.check_commit(&a, None, 2, false, 400), Err(E::RebalanceInProgress));
    assert_eq!(g.check_commit(&a, None, 2, true, 400), Ok(()), "transactional: no state check");
}

/// As Kafka's `validateMember`: a static member replaced by a newer instance is fenced,
/// whatever the request (Heartbeat, SyncGroup, OffsetCommit).
#[test]
fn a_replaced_static_member_hears_fenced_instance_id() {
    let mut g = Group::new("g", 0);
    let mut out = Outbox::default();
    let Reply::Later(old) = g.join(static_args(""), 0, "1", &mut out) else { panic!() };
    let mut out = Outbox::default();
    g.sync(sync_args(&old, 1, vec![(old.clone(), Bytes::new())]), 0, &mut out);
    g.assignment_written(1, true, 0);
    let Reply::Now(new) = g.join(static_args(""), 100, "2", &mut out) else { panic!() };
    assert_ne!(new.member_id, old);
    let fenced = E::FencedInstanceId;
    assert_eq!(g.heartbeat(&old, Some("i1"), 1, 200), fenced.code());
    let Reply::Now(synced) = g.sync(
        SyncArgs { instance_id: Some("i1".into()), ..sync_args(&old, 1, vec![]) },
        200,
        &mut out,
    ) else {
        panic!()
    };
    assert_eq!(synced.error, fenced.code());
    assert_eq!(g.check_commit(&old, Some("i1"), 1, false, 200), Err(fenced));
    assert_eq!(g.heartbeat(&new.member_id, Some("i1"), 1, 200), 0);
    assert_eq!(g.heartbeat(&new.member_id, Some("i2"), 1, 200), E::UnknownMemberId.code());
    assert_eq!(g.heartbeat("nobody", None, 1, 200), E::UnknownMemberId.code());
}

/// As in Kafka, a member syncing while the leader's assignment is written waits for the
/// write: it is not answered before the leader, nor told an assignment that was not stored.
#[test]
fn a_member_syncing_while_the_assignment_is_written_waits_for_the_write() {
    let (mut g, a, b) = completing_two();
    leader_syncs(&mut g, &a, &b);
    let mut out = Outbox::default();
    assert_eq!(g.sync(sync_args(&b, 2, vec![]), 501, &mut out), Reply::Later(b.clone()));
    assert!(out.syncs.is_empty() && !out.persist);
    assert_eq!(g.heartbeat(&b, None, 2, 502), 0);
    assert!(g.assignment_written(1, true, 503).is_empty(), "another generation's write");
    let answers = g.assignment_written(2, true, 503);
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].0.as_str(), answers[0].1.error), (b.as_str(), 0));
    assert_eq!(answers[0].1.assignment, Bytes::from_static(b"B"));
    let Reply::Now(again) = g.sync(sync_args(&b, 2, vec![]), 600, &mut out) else { panic!() };
    assert_eq!(again.assignment, Bytes::from_static(b"B"), "after the write: at once");

    // The write fails: those waiting hear what the leader hears, and rejoin.
    let (mut g, a, b) = completing_two();
    leader_syncs(&mut g, &a, &b);
    assert_eq!(g.sync(sync_args(&b, 2, vec![]), 501, &mut out), Reply::Later(b.clone()));
    let answers = g.assignment_written(2, false, 503);
    assert_eq!(answers[0].1.error, E::CoordinatorNotAvailable.code());

    // A rebalance starts during the write: the assignment is stale.
    let (mut g, a, b) = completing_two();
    leader_syncs(&mut g, &a, &b);
    assert_eq!(g.sync(sync_args(&b, 2, vec![]), 501, &mut out), Reply::Later(b.clone()));
    let mut out = Outbox::default();
    join_new(&mut g, "3", 502, &mut out);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(out.syncs.len(), 1);
    assert_eq!(out.syncs[0].1.error, E::RebalanceInProgress.code());
    assert!(g.assignment_written(2, true, 503).is_empty());
}

#[test]
fn the_first_join_phase_waits_the_initial_delay_for_more_members() {
    let mut g = Group::new("g", 0).with_initial_delay(3_000);
    let mut out = Outbox::default();
    let a = join_new(&mut g, "1", 0, &mut out);
    assert!(out.joins.is_empty(), "held for the initial delay");
    assert_eq!(g.next_deadline_ms(), Some(3_000));
    // A second member arriving inside the delay extends it and joins the same generation.
    let b = join_new(&mut g, "2", 2_000, &mut out);
    let mut out = Outbox::default();
    g.tick(3_000, &mut out);
    assert!(out.joins.is_empty(), "extended by the second arrival");
    assert_eq!(g.next_deadline_ms(), Some(5_000));
    g.tick(5_000, &mut out);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.generation, 1, "one rebalance for both arrivals");
    let answered: Vec<&str> = out.joins.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(answered, [a.as_str(), b.as_str()]);
    // Later rebalances of a non-empty group are not delayed.
    let assignments = vec![(a.clone(), Bytes::new()), (b.clone(), Bytes::new())];
    g.sync(sync_args(&a, 1, assignments), 5_000, &mut out);
    g.sync(sync_args(&b, 1, vec![]), 5_000, &mut out);
    let mut out = Outbox::default();
    g.leave(&[(b, None)], 6_000, &mut out);
    assert_eq!(g.join(args(&a), 6_000, "x", &mut out), Reply::Later(a.clone()));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.generation, 2);
}

#[test]
fn the_initial_delay_ends_the_join_phase_without_members_that_never_rejoined() {
    // Issue 15, finding 1: a consumer given its id and closed before rejoining left the held
    // join phase with a deadline already past, and the coordinator's timer re-fired at once.
    let mut g = Group::new("g", 0).with_initial_delay(3_000);
    let mut out = Outbox::default();
    let a = join_new(&mut g, "1", 0, &mut out);
    let Reply::Now(gone) = g.join(args(""), 100, "2", &mut out) else { panic!("an answer") };
    assert_eq!(gone.error, E::MemberIdRequired.code());
    let mut out = Outbox::default();
    g.tick(3_000, &mut out);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(out.joins.len(), 1);
    assert_eq!(out.joins[0].1.members.len(), 1, "only the member that rejoined");
    assert_eq!(out.joins[0].1.leader, a);
    assert!(g.next_deadline_ms().is_some_and(|at| at > 3_000), "every due deadline consumed");
}

#[test]
fn a_pending_member_id_cannot_be_taken_by_a_static_member() {
    // Found by tests/fuzz_groups.rs: a dynamic member's pending id, rejoined with an instance
    // id already in use, made two members of one group.instance.id.
    let mut g = Group::new("g", 0);
    let mut out = Outbox::default();
    let static_args = |id: &str| JoinArgs { instance_id: Some("i1".into()), ..args(id) };
    let Reply::Later(first) = g.join(static_args(""), 0, "1", &mut out) else {
        panic!("a static member joins at once")
    };
    let Reply::Now(given) = g.join(args(""), 0, "2", &mut out) else { panic!("an answer") };
    assert_eq!(given.error, E::MemberIdRequired.code());
    let Reply::Now(refused) = g.join(static_args(&given.member_id), 0, "3", &mut out) else {
        panic!("an answer")
    };
    assert_eq!(refused.error, E::UnknownMemberId.code());
    assert_eq!(g.static_member("i1"), Some(first));
    assert_eq!(g.members.len(), 1);
    // The id still works for the dynamic member it was given to.
    assert!(matches!(g.join(args(&given.member_id), 0, "4", &mut out), Reply::Later(_)));
}

#[test]
fn the_initial_delay_never_outlasts_the_rebalance_timeout() {
    let mut g = Group::new("g", 0).with_initial_delay(20_000);
    let mut out = Outbox::default();
    join_new(&mut g, "1", 0, &mut out);
    join_new(&mut g, "2", 19_000, &mut out);
    assert_eq!(g.next_deadline_ms(), Some(i64::from(REBALANCE_MS)), "capped");
    g.tick(i64::from(REBALANCE_MS), &mut out);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(out.joins.len(), 2);
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout() {
    let (mut g, a) = stable_one();
    let mut out = Outbox::default();
    let b = join_new(&mut g, "2", 0, &mut out);
    assert_eq!(g.join(args(&a), 0, "x", &mut out), Reply::Later(a.clone()));
    let assignments = vec![(a.clone(), Bytes::new()), (b.clone(), Bytes::new())];
    g.sync(sync_args(&a, 2, assignments), 0, &mut out);
    g.assignment_written(2, true, 0);
    g.sync(sync_args(&b, 2, vec![]), 0, &mut out);
    assert_eq!(g.state, GroupState::Stable);
    // a keeps heartbeating, b goes silent.
    assert_eq!(g.heartbeat(&a, None, 2, 6_000), 0);
    assert_eq!(g.next_deadline_ms(), Some(i64::from(SESSION_MS)));
    let mut out = Outbox::default();
    g.tick(i64::from(SESSION_MS), &mut out);
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.join(args(&a), 10_500, "x", &mut out), Reply::Later(a.clone()));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.members.len(), 1);
}

#[test]
fn the_rebalance_timeout_drops_members_that_did_not_rejoin() {
    let (mut g, a) = stable_one();
    let mut out = Outbox::default();
    let b = join_new(&mut g, "2", 0, &mut out);
    // a keeps heartbeating (so its session never expires) but never rejoins.
    for now in (3_000..REBALANCE_MS as i64).step_by(3_000) {
        assert_eq!(g.heartbeat(&a, None, 1, now), E::RebalanceInProgress.code());
    }
    assert_eq!(g.next_deadline_ms(), Some(i64::from(REBALANCE_MS)));
    g.tick(i64::from(REBALANCE_MS), &mut out);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec![&b]);
    assert_eq!(g.leader.as_deref(), Some(b.as_str()));
}

#[test]
fn bad_joins_get_kafka_error_codes() {
    let (mut g, a) = stable_one();
    let mut out = Outbox::default();
    let other_type = JoinArgs { protocol_type: "connect".into(), ..args("") };
    let Reply::Now(o) = g.join(other_type, 0, "z", &mut out) else { panic!() };
    assert_eq!(o.error, E::InconsistentGroupProtocol.code());
    let other_protocol =
        JoinArgs { protocols: vec![("roundrobin".into(), Bytes::new())], ..args("") };
    let Reply::Now(o) = g.join(other_protocol, 0, "z", &mut out) else { panic!() };
    assert_eq!(o.error, E::InconsistentGroupProtocol.code());
    let Reply::Now(o) = g.join(args("ghost"), 0, "z", &mut out) else { panic!() };
    assert_eq!(o.error, E::UnknownMemberId.code());
    let Reply::Now(o) = g.sync(sync_args(&a, 7, vec![]), 0, &mut out) else { panic!() };
    assert_eq!(o.error, E::IllegalGeneration.code());
    let empty_type = JoinArgs { protocol_type: String::new(), ..args("") };
    let Reply::Now(o) = Group::new("h", 0).join(empty_type, 0, "z", &mut out) else { panic!() };
    assert_eq!(o.error, E::InconsistentGroupProtocol.code());
}

#[test]
fn a_static_member_rejoining_keeps_its_assignment_and_fences_the_old_id() {
    let mut g = Group::new("g", 0);
    let mut out = Outbox::default();
    let static_args = |id: &str| JoinArgs { supports_skip_assignment: true, ..static_args(id) };
    let Reply::Later(leader) = g.join(static_args(""), 0, "1", &mut out) else { panic!() };
    let mut out = Outbox::default();
    let b = join_new(&mut g, "2", 0, &mut out);
    assert_eq!(g.join(static_args(&leader), 0, "x", &mut out), Reply::Later(leader.clone()));
    let assignments = vec![(leader.clone(), Bytes::new()), (b.clone(), Bytes::from_static(b"B"))];
    g.sync(sync_args(&leader, 2, assignments), 0, &mut out);
    g.assignment_written(2, true, 0);
    g.sync(sync_args(&b, 2, vec![]), 0, &mut out);
    // The static leader restarts with a new member id: the old id is fenced, and the group
    // stays Stable at generation 2 (KIP-814): the leader gets the members but is told to
    // skip the assignment, and the other member keeps consuming undisturbed.
    let Reply::Now(rejoined) = g.join(static_args(""), 100, "3", &mut out) else { panic!() };
    let new_id = rejoined.member_id.clone();
    assert_ne!(new_id, leader);
    assert_eq!((rejoined.error, rejoined.generation), (0, 2));
    assert!(rejoined.skip_assignment);
    assert_eq!(rejoined.leader, new_id);
    assert_eq!(rejoined.members.len(), 2);
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.heartbeat(&b, None, 2, 150), 0);
    assert_eq!(g.heartbeat(&leader, Some("i1"), 2, 200), E::FencedInstanceId.code());
    assert_eq!(g.static_member("i1"), Some(new_id.clone()));
    // Its SyncGroup gets its old assignment back.
    let Reply::Now(synced) = g.sync(sync_args(&new_id, 2, vec![]), 200, &mut out) else { panic!() };
    assert_eq!(synced.assignment, Bytes::new());
    // Before JoinGroup v9 there is no skip flag: the rejoined leader is named a follower
    // (the old id as leader, no members), so it does not compute an assignment either.
    let old_client = JoinArgs { supports_skip_assignment: false, ..static_args("") };
    let Reply::Now(rejoined) = g.join(old_client, 300, "4", &mut out) else { panic!() };
    assert_eq!((rejoined.generation, rejoined.skip_assignment), (2, false));
    assert_eq!(rejoined.leader, new_id);
    assert!(rejoined.members.is_empty());
    assert_eq!(g.heartbeat(&b, None, 2, 350), 0);
}

#[test]
fn simple_commits_need_an_empty_group_and_members_their_generation() {
    let mut g = Group::new("g", 0);
    assert_eq!(g.check_commit("", None, -1, false, 0), Ok(()));
    let (mut g2, a) = stable_one();
    assert_eq!(g2.check_commit(&a, None, 1, false, 0), Ok(()));
    assert_eq!(g2.check_commit(&a, None, 0, false, 0), Err(E::IllegalGeneration));
    assert_eq!(g2.check_commit("", None, -1, false, 0), Err(E::UnknownMemberId));
    assert_eq!(g2.check_delete(), Err(E::NonEmptyGroup));
    assert_eq!(g.check_delete(), Ok(()));
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let (mut g, a) = stable_one();
    let mut out = Outbox::default();
    assert_eq!(
        g.leave(&[(a.clone(), None), ("ghost".into(), None)], 0, &mut out),
        vec![0, E::UnknownMemberId.code()]
    );
    assert_eq!(g.state, GroupState::Empty);
    assert!(out.persist);
    assert_eq!(g.generation, 2);
}

#[test]
fn records_round_trip_and_garbage_is_an_error() {
    let (g, _) = stable_one();
    let records = vec![
        OffsetsRecord::Group { group: "g".into(), value: Some(g.snapshot()) },
        OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(Committed {
                offset: 42,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp_ms: 7,
            }),
        },
        OffsetsRecord::Offset { group: "g".into(), topic: "t".into(), partition: 4, value: None },
    ];
    let batch = encode_batch(&records, 1).unwrap();
    let decoded: Vec<OffsetsRecord> =
        decode_batches(&batch).unwrap().into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(decoded.len(), 3);
    let OffsetsRecord::Group { value: Some(snapshot), .. } = &decoded[0] else { panic!() };
    assert_eq!(snapshot.generation, 1);
    assert_eq!(snapshot.members.len(), 1);
    assert_eq!(snapshot.members[0].assignment, Bytes::from_static(b"p0"));
    assert_eq!(decoded[1..], records[1..]);
    for cut in 0..12 {
        let key = [0u8, 1, 0, 9, b'g'];
        let _ = OffsetsRecord::decode(&key[..cut.min(key.len())], Some(&[0, 3, 1][..]));
    }
    assert!(OffsetsRecord::decode(&[0, 2, 0, 50, b'g'], None).is_err());
    assert!(OffsetsRecord::decode(&[0, 2, 0, 1, b'g'], Some(&[0, 3, 0, 0, 0x7f, 0xff])).is_err());
}

#[test]
fn groups_hash_like_kafka() {
    assert_eq!(java_string_hash("hello"), 99_162_322);
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's Utils.abs maps it to 0.
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(partition_for("polygenelubricants", 50), 0);
}

//! Unit tests of the consumer group state machine and its assignors.

use super::*;

/// Topic `t`, 6 partitions (the migration tests use it too).
pub(crate) fn topics() -> Topics {
    let mut t = Topics::new();
    t.insert("t".into(), (Uuid::from_u128(7), 6));
    t
}

/// A member's first heartbeat, subscribed to `t`, owning nothing.
pub(crate) fn join(id: &str) -> HeartbeatArgs {
    HeartbeatArgs {
        member_id: id.into(),
        epoch: 0,
        rebalance_timeout_ms: 60_000,
        topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::default()),
        ..HeartbeatArgs::default()
    }
}

fn beat(g: &ConsumerGroup, id: &str, owned: &Assignment) -> HeartbeatArgs {
    HeartbeatArgs {
        member_id: id.into(),
        epoch: g.members[id].epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..HeartbeatArgs::default()
    }
}

/// Heartbeats every member (reporting what it was told) until nothing changes.
fn settle(g: &mut ConsumerGroup, owns: &mut BTreeMap<String, Assignment>, now: i64) {
    for _ in 0..10 {
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let owned = owns.get(&id).cloned().unwrap_or_default();
            let reply = g.heartbeat(beat(g, &id, &owned), &topics(), now).unwrap();
            if let Some(a) = reply.assignment {
                owns.insert(id, a);
            }
        }
    }
}

#[test]
fn three_members_then_a_fourth_moves_only_what_it_takes() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    let mut owns = BTreeMap::new();
    for id in ["a", "b", "c"] {
        let reply = g.heartbeat(join(id), &topics(), 0).unwrap();
        owns.insert(id.to_owned(), reply.assignment.unwrap_or_default());
    }
    settle(&mut g, &mut owns, 0);
    assert_eq!(g.state(), GroupState::Stable);
    let all: BTreeSet<Tp> = owns.values().flat_map(|a| a.iter_tps()).collect();
    assert_eq!(all.len(), 6);
    assert!(owns.values().all(|a| a.len() == 2));
    let before = owns.clone();
    g.heartbeat(join("d"), &topics(), 0).unwrap();
    owns.insert("d".into(), Assignment::default());
    settle(&mut g, &mut owns, 0);
    assert_eq!(g.state(), GroupState::Stable);
    let all: BTreeSet<Tp> = owns.values().flat_map(|a| a.iter_tps()).collect();
    assert_eq!(all.len(), 6);
    assert_eq!(owns["d"].len(), 1);
    let kept = ["a", "b", "c"].iter().filter(|id| owns[**id] == before[**id]).count();
    assert_eq!(kept, 2, "only one member gives up a partition: {owns:?}");
    for id in ["a", "b", "c"] {
        assert!(owns[id].is_subset(&before[id]), "{id} got a new partition");
    }
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    let a = g.heartbeat(join("a"), &topics(), 0).unwrap().assignment.unwrap();
    assert_eq!(a.len(), 6);
    let d = g.heartbeat(join("b"), &topics(), 0).unwrap();
    assert!(d.assignment.unwrap().is_empty(), "b got partitions a still owns");
    // a hears it must revoke, keeps its epoch, then acknowledges.
    let r = g.heartbeat(beat(&g, "a", &a), &topics(), 0).unwrap();
    let kept = r.assignment.unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
    let b = g.heartbeat(beat(&g, "b", &Assignment::default()), &topics(), 0).unwrap();
    assert!(b.assignment.is_none_or(|x| x.is_empty()));
    g.heartbeat(beat(&g, "a", &kept), &topics(), 0).unwrap();
    assert_eq!(g.members["a"].state, MemberState::Stable);
    let b = g.heartbeat(beat(&g, "b", &Assignment::default()), &topics(), 0).unwrap();
    assert_eq!(b.assignment.unwrap().len(), 3);
}

#[test]
fn bad_first_heartbeats_and_epochs_are_refused() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    let code = |r: Result<HeartbeatReply, Refusal>| r.err().map(|(e, _)| e.code());
    let no_timeout = HeartbeatArgs { rebalance_timeout_ms: -1, ..join("a") };
    assert_eq!(code(g.heartbeat(no_timeout, &topics(), 0)), Some(E::InvalidRequest.code()));
    let owned = HeartbeatArgs { owned: None, ..join("a") };
    assert_eq!(code(g.heartbeat(owned, &topics(), 0)), Some(E::InvalidRequest.code()));
    let nothing = HeartbeatArgs { topic_names: None, ..join("a") };
    assert_eq!(code(g.heartbeat(nothing, &topics(), 0)), Some(E::InvalidRequest.code()));
    let assignor = HeartbeatArgs { server_assignor: Some("nope".into()), ..join("a") };
    assert_eq!(code(g.heartbeat(assignor, &topics(), 0)), Some(E::UnsupportedAssignor.code()));
    let regex = HeartbeatArgs { topic_regex: Some("(".into()), ..join("a") };
    assert_eq!(code(g.heartbeat(regex, &topics(), 0)), Some(E::InvalidRegularExpression.code()));
    g.heartbeat(join("a"), &topics(), 0).unwrap();
    let ahead = HeartbeatArgs { epoch: 99, ..beat(&g, "a", &Assignment::default()) };
    assert_eq!(code(g.heartbeat(ahead, &topics(), 0)), Some(E::FencedMemberEpoch.code()));
    let stranger = beat(&g, "a", &Assignment::default());
    let stranger = HeartbeatArgs { member_id: "zz".into(), ..stranger };
    assert_eq!(code(g.heartbeat(stranger, &topics(), 0)), Some(E::UnknownMemberId.code()));
    let mut small = ConsumerGroup::new("g", Settings { max_size: 1, ..Settings::default() });
    small.heartbeat(join("a"), &topics(), 0).unwrap();
    assert_eq!(code(small.heartbeat(join("b"), &topics(), 0)), Some(E::GroupMaxSizeReached.code()));
}

#[test]
fn static_members_leave_temporarily_and_are_replaced() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    let first = HeartbeatArgs { instance_id: Some("i".into()), ..join("a") };
    let a = g.heartbeat(first, &topics(), 0).unwrap();
    let other = HeartbeatArgs { instance_id: Some("i".into()), ..join("b") };
    let refused = g.heartbeat(other.clone(), &topics(), 0).err().map(|(e, _)| e);
    assert_eq!(refused, Some(E::UnreleasedInstanceId));
    let leave = HeartbeatArgs {
        member_id: "a".into(),
        epoch: STATIC_LEAVE_EPOCH,
        instance_id: Some("i".into()),
        ..HeartbeatArgs::default()
    };
    g.heartbeat(leave, &topics(), 0).unwrap();
    assert_eq!(g.state(), GroupState::Stable, "a static leave does not rebalance");
    let b = g.heartbeat(other, &topics(), 0).unwrap();
    assert_eq!(b.epoch, a.epoch);
    assert_eq!(b.assignment, a.assignment);
    assert!(!g.members.contains_key("a"));
}

#[test]
fn sessions_time_out_and_regexes_follow_new_topics() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    let args = HeartbeatArgs { topic_names: None, topic_regex: Some("t.*".into()), ..join("a") };
    let a = g.heartbeat(args, &topics(), 0).unwrap();
    assert_eq!(a.assignment.unwrap().len(), 6);
    let mut more = topics();
    more.insert("t2".into(), (Uuid::from_u128(8), 2));
    more.insert("__internal".into(), (Uuid::from_u128(9), 2));
    let owned = g.members["a"].assigned.clone();
    let r = g.heartbeat(beat(&g, "a", &owned), &more, 1).unwrap();
    assert_eq!(r.assignment.unwrap().len(), 8);
    assert_eq!(g.next_deadline_ms(), Some(1 + 45_000));
    assert!(g.tick(45_000).is_empty());
    assert_eq!(g.tick(45_001), vec!["a".to_owned()]);
    assert_eq!(g.state(), GroupState::Empty);
}

#[test]
fn range_assigns_contiguous_blocks_per_topic() {
    let mut specs = BTreeMap::new();
    for id in ["a", "b"] {
        let mut s = assignor::MemberSpec::default();
        s.topics.insert(Uuid::from_u128(7), 5);
        specs.insert(id.to_owned(), s);
    }
    let out = assignor::assign("range", &specs);
    let parts = |id: &str| out[id].iter_tps().map(|(_, p)| p).collect::<Vec<_>>();
    assert_eq!(parts("a"), vec![0, 1, 2]);
    assert_eq!(parts("b"), vec![3, 4]);
}

#[test]
fn records_round_trip() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    g.heartbeat(HeartbeatArgs { instance_id: Some("i".into()), ..join("a") }, &topics(), 0)
        .unwrap();
    g.heartbeat(join("b"), &topics(), 0).unwrap();
    let image = records::image(&g);
    let back = records::restore("g", Settings::default(), &image, 5).unwrap().unwrap();
    assert_eq!(records::image(&back), image);
    assert_eq!(back.members["a"].assigned, g.members["a"].assigned);
    let gone = records::diff(&image, &records::Image::new());
    assert!(gone.iter().all(|(_, v)| v.is_none()));
    assert_eq!(gone.last().map(|(k, _)| k.1.is_none()), Some(true));
}

/// Found by the fuzzer: a topic deleted while the broker was down must still move the epoch
/// (the subscribed topics' hash is persisted and compared after the restart).
#[test]
fn a_topic_deleted_while_down_moves_the_epoch_after_a_restart() {
    let mut g = ConsumerGroup::new("g", Settings::default());
    g.heartbeat(join("a"), &topics(), 0).unwrap();
    let image = records::image(&g);
    let mut back = records::restore("g", Settings::default(), &image, 5).unwrap().unwrap();
    let epoch = back.epoch;
    let owned = back.members["a"].assigned.clone();
    let r = back.heartbeat(beat(&back, "a", &owned), &Topics::new(), 6).unwrap();
    assert_eq!(back.epoch, epoch + 1);
    assert_eq!(r.assignment.map(|a| a.len()), Some(0), "the deleted topic's partitions go");
}

/// A classic member's JoinGroup metadata: subscription to `t` owning `owned` of it.
fn classic_protocols(owned: &[i32]) -> Vec<(String, bytes::Bytes)> {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let tp = TopicPartition::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(owned.to_vec());
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("t")])
        .with_owned_partitions(vec![tp]);
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut buf, 1).unwrap();
    vec![("cooperative-sticky".into(), buf.freeze())]
}

fn classic_join(id: &str, owned: &[i32]) -> classic::ClassicJoin {
    classic::ClassicJoin {
        member_id: id.into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 60_000,
        protocols: classic_protocols(owned),
        ..classic::ClassicJoin::default()
    }
}

fn ps(a: &Assignment) -> Vec<i32> {
    a.iter_tps().map(|(_, p)| p).collect()
}

#[test]
fn classic_members_converted_hand_over_incrementally() {
    let t = topics();
    // Two classic members, three partitions each, at generation 4.
    let given = |parts: &[i32]| {
        let a = Assignment::from_tps(parts.iter().map(|p| (Uuid::from_u128(7), *p)));
        classic::encode_assignment(&a, &t)
    };
    let members = vec![
        (classic_join("cooperative", &[]), given(&[0, 1, 2])),
        (classic_join("eager", &[]), given(&[3, 4, 5])),
    ];
    let protocol = "cooperative-sticky";
    let mut g = ConsumerGroup::from_classic("g", Settings::default(), 4, protocol, members, &t, 0);
    assert_eq!((g.epoch, g.state()), (4, GroupState::Stable));
    assert_eq!(ps(&g.members["cooperative"].assigned), vec![0, 1, 2]);
    assert_eq!(g.members["eager"].topic_names, vec!["t".to_owned()]);
    assert_eq!(g.classic_heartbeat("eager", None, 4, 0), Ok(()));
    // A consumer member joins: it waits for partitions the classic members still own.
    let reply = g.heartbeat(join("new"), &t, 0).unwrap();
    assert_eq!((reply.epoch, reply.assignment.map(|a| a.len())), (5, Some(0)));
    assert_eq!(g.classic_heartbeat("eager", None, 4, 0), Err(E::RebalanceInProgress));
    assert_eq!(g.classic_heartbeat("eager", None, 3, 0), Err(E::IllegalGeneration));
    // The cooperative member rejoins still owning its three: it keeps two, same generation.
    let j = g.classic_join(classic_join("cooperative", &[0, 1, 2]), &t, 0).unwrap();
    assert_eq!(j.generation, 4);
    let kept = g.classic_sync("cooperative", None, 4, 0).unwrap();
    assert_eq!(kept.len(), 2);
    // The eager one revoked everything before rejoining: it moves on at once.
    let j = g.classic_join(classic_join("eager", &[]), &t, 0).unwrap();
    assert_eq!(j.generation, 5);
    assert_eq!(g.classic_sync("eager", None, 5, 0).unwrap().len(), 2);
    // The new member gets only what was released (the eager one's third partition).
    let reply = g.heartbeat(beat(&g, "new", &Assignment::default()), &t, 0).unwrap();
    assert_eq!(reply.assignment.map(|a| a.len()), Some(1));
    // Once the cooperative one gave up its third, the new member has both.
    let owned: Vec<i32> = ps(&kept);
    let j = g.classic_join(classic_join("cooperative", &owned), &t, 0).unwrap();
    assert_eq!(j.generation, 5);
    assert_eq!(g.classic_heartbeat("cooperative", None, 5, 0), Ok(()));
    let mine = g.members["new"].assigned.clone();
    let reply = g.heartbeat(beat(&g, "new", &mine), &t, 0).unwrap();
    assert_eq!(reply.assignment.map(|a| a.len()), Some(2));
    assert_eq!(g.state(), GroupState::Stable);
    assert!(!g.classic_members_only());
    // The consumer member leaves: only classic members remain.
    g.remove_member("new");
    assert!(g.classic_members_only());
}

//! Unit tests of the share-partition and share-group state machines and the records.

use super::group::{Heartbeat, HeartbeatError, ShareGroup};
use super::partition::*;
use super::records::*;

fn limits() -> Limits {
    Limits { lock_duration_ms: 1_000, delivery_count_limit: 2, max_record_locks: 10 }
}

#[test]
fn acquire_accept_moves_the_start_offset() {
    let mut p = SharePartition::new(0, limits());
    let runs = p.acquire("a", 0, 5, 100, 0);
    assert_eq!(runs, vec![Acquired { first_offset: 0, last_offset: 4, delivery_count: 1 }]);
    assert_eq!(p.acquired_count(), 5);
    assert_eq!(p.next_fetch_offset(), Some(5));
    // Another member cannot acknowledge a's records.
    assert_eq!(p.acknowledge("b", 0, 1, &[1], 0), Err(AckError::NotAcquired));
    let changed = p.acknowledge("a", 0, 1, &[1], 0).unwrap();
    assert_eq!(changed.len(), 0, "records at the start are dropped: the start offset says it");
    assert_eq!(p.start_offset(), 2);
    p.acknowledge("a", 3, 4, &[3, 2], 0).unwrap();
    assert_eq!(p.start_offset(), 2);
    assert_eq!(p.record(3).unwrap().state, RecordState::Archived);
    assert_eq!(p.record(4).unwrap().state, RecordState::Available);
    assert_eq!(p.next_fetch_offset(), Some(4));
}

#[test]
fn expired_locks_redeliver_then_archive_at_the_limit() {
    let mut p = SharePartition::new(10, limits());
    p.acquire("a", 10, 11, 100, 0);
    assert!(p.expire(999).is_empty());
    let changed = p.expire(1_000);
    assert_eq!(changed[0].delivery_state, STATE_AVAILABLE);
    let runs = p.acquire("b", 10, 11, 100, 1_000);
    assert_eq!(runs[0].delivery_count, 2);
    p.expire(5_000);
    assert_eq!(p.start_offset(), 11, "past the delivery limit: archived, and done");
    assert!(p.acquire("c", 10, 11, 100, 5_000).is_empty());
}

#[test]
fn the_lock_limit_bounds_acquisition() {
    let mut p = SharePartition::new(0, limits());
    assert_eq!(p.acquire("a", 0, 100, 100, 0)[0].last_offset, 9);
    assert_eq!(p.next_fetch_offset(), None);
    assert!(p.acquire("a", 10, 20, 100, 0).is_empty());
}

#[test]
fn snapshot_restores() {
    let mut p = SharePartition::new(0, limits());
    p.acquire("a", 0, 6, 100, 0);
    p.acknowledge("a", 2, 3, &[1], 0).unwrap();
    p.acknowledge("a", 5, 5, &[3], 0).unwrap();
    let mut q = SharePartition::new(p.start_offset(), limits());
    for b in p.state_batches() {
        q.restore(&b);
    }
    assert_eq!(q.record(2).unwrap().state, RecordState::Acknowledged);
    assert_eq!(q.record(0).unwrap().state, RecordState::Available);
    assert_eq!(q.record(0).unwrap().delivery_count, 1);
    assert_eq!(q.end_offset(), 6);
    assert_eq!(q.acquire("b", 0, 6, 100, 0).len(), 2, "0-1 and 4 again; 2, 3, 5 never");
}

#[test]
fn bad_acknowledgements_are_refused_whole() {
    let mut p = SharePartition::new(0, limits());
    p.acquire("a", 0, 3, 100, 0);
    assert_eq!(p.acknowledge("a", 2, 1, &[1], 0), Err(AckError::Invalid));
    assert_eq!(p.acknowledge("a", 0, 2, &[1, 1], 0), Err(AckError::Invalid));
    assert_eq!(p.acknowledge("a", 0, 2, &[9], 0), Err(AckError::Invalid));
    assert_eq!(p.acknowledge("a", 0, 3, &[1], 0), Err(AckError::NotAcquired));
    assert_eq!(p.acquired_count(), 3);
}

#[test]
fn records_round_trip() {
    let key = ShareKey { group: "g".into(), topic_id: uuid::Uuid::new_v4(), partition: 3 };
    let state = ShareState {
        snapshot: true,
        snapshot_epoch: 2,
        state_epoch: 1,
        leader_epoch: 0,
        start_offset: 7,
        batches: vec![StateBatch {
            first_offset: 7,
            last_offset: 9,
            delivery_state: 2,
            delivery_count: 1,
        }],
    };
    let k = encode_key(SNAPSHOT, &key);
    assert_eq!(decode_key(&k).unwrap(), (SNAPSHOT, key));
    let v = encode_value(&state);
    assert_eq!(decode_value(SNAPSHOT, &v).unwrap(), state);
    let update = ShareState { snapshot: false, state_epoch: 0, ..state };
    assert_eq!(decode_value(UPDATE, &encode_value(&update)).unwrap(), update);
    assert!(decode_value(UPDATE, &v[..v.len() - 1]).is_err());
}

fn two(topic: &str) -> Option<i32> {
    (topic == "t").then_some(2)
}

fn hb(id: &str, epoch: i32) -> Heartbeat {
    Heartbeat {
        member_id: id.into(),
        member_epoch: epoch,
        subscribed: (epoch == 0).then(|| vec!["t".to_owned()]),
        ..Heartbeat::default()
    }
}

#[test]
fn members_share_partitions_when_there_are_more_of_them() {
    let mut g = ShareGroup::new("g", 10);
    let a = g.heartbeat(&hb("a", 0), 0, &two).unwrap();
    assert_eq!(a.assignment, Some(vec![("t".to_owned(), vec![0, 1])]));
    for m in ["b", "c"] {
        g.heartbeat(&hb(m, 0), 0, &two).unwrap();
    }
    let a = g.heartbeat(&hb("a", a.member_epoch), 1, &two).unwrap();
    assert_eq!(a.assignment, Some(vec![("t".to_owned(), vec![0])]));
    assert_eq!(
        g.heartbeat(&hb("a", a.member_epoch - 1), 1, &two),
        Err(HeartbeatError::FencedEpoch)
    );
    assert_eq!(g.heartbeat(&hb("z", 3), 1, &two), Err(HeartbeatError::UnknownMember));
    let c = &g.members["c"];
    assert_eq!(c.assignment["t"], vec![0], "three members on two partitions: c shares 0");
    assert_eq!(g.expire(100_000, 45_000, &two).len(), 3);
    assert_eq!(g.state(), "Empty");
}

#[test]
fn a_heartbeat_bumps_the_group_epoch_once() {
    let mut g = ShareGroup::new("g", 10);
    // The first join also brings the first subscribed topic: one new epoch, not two.
    assert_eq!(g.heartbeat(&hb("a", 0), 0, &two).unwrap().member_epoch, 1);
    assert_eq!(g.heartbeat(&hb("a", 1), 1, &two).unwrap().member_epoch, 1, "nothing changed");
    // A new subscription that adds a topic: again one bump.
    let both = |t: &str| matches!(t, "t" | "u").then_some(2);
    let mut moved = hb("a", 1);
    moved.subscribed = Some(vec!["t".to_owned(), "u".to_owned()]);
    assert_eq!(g.heartbeat(&moved, 2, &both).unwrap().member_epoch, 2);
    // A topic that grows bumps it by itself.
    let grown = |t: &str| matches!(t, "t" | "u").then_some(3);
    assert_eq!(g.heartbeat(&hb("a", 2), 3, &grown).unwrap().member_epoch, 3);
}

#[test]
fn reads_archive_the_runs_never_to_deliver() {
    let run = |first_offset, last_offset, delivery_count| Acquired {
        first_offset,
        last_offset,
        delivery_count,
    };
    // read_committed: 0-1 committed, 2 a marker, 3-5 aborted, 6 a marker, 7 committed.
    let mut p = SharePartition::new(0, limits());
    let runs = p.acquire_read("a", &Read { from: 0, to: 8, archive: &[(2, 6)] }, 100, 0);
    assert_eq!(runs, vec![run(0, 1, 1), run(7, 7, 1)]);
    assert_eq!((p.acquired_count(), p.end_offset()), (3, 8));
    assert_eq!(p.record(4).unwrap().state, RecordState::Archived);
    p.acknowledge("a", 0, 1, &[1], 0).unwrap();
    assert_eq!(p.start_offset(), 7, "done: accepted, then archived");
    // Archived at the front: the start offset moves at once.
    let mut q = SharePartition::new(0, limits());
    assert!(q.acquire_read("a", &Read { from: 0, to: 3, archive: &[(0, 2)] }, 100, 0).is_empty());
    assert_eq!((q.start_offset(), q.end_offset(), q.next_fetch_offset()), (3, 3, Some(3)));
    // Available records in such a run are archived too; they do not count against max_records.
    let mut r = SharePartition::new(0, limits());
    r.acquire("a", 0, 4, 100, 0);
    r.acknowledge("a", 0, 3, &[2], 0).unwrap();
    let runs = r.acquire_read("b", &Read { from: 0, to: 4, archive: &[(1, 2)] }, 2, 0);
    assert_eq!(runs, vec![run(0, 0, 2), run(3, 3, 2)]);
    assert_eq!(r.record(1).unwrap().state, RecordState::Archived);
}

#[test]
fn a_renew_restarts_the_lock_and_keeps_the_delivery_count() {
    let mut p = SharePartition::new(0, limits());
    p.acquire("a", 0, 3, 100, 0);
    // Renewed at 900: the lock that would have expired at 1_000 now holds until 1_900.
    let changed = p.acknowledge("a", 0, 1, &[4], 900).unwrap();
    assert!(changed.is_empty(), "a renew changes nothing that is persisted");
    assert_eq!(p.expire(1_000).len(), 1, "only offset 2, not renewed, expires");
    let held = RecordState::Acquired { member: "a".into(), deadline_ms: 1_900 };
    assert_eq!(p.record(0).unwrap().state, held);
    assert_eq!(p.record(0).unwrap().delivery_count, 1);
    assert_eq!(p.record(2).unwrap().state, RecordState::Available);
    assert_eq!(p.acquired_count(), 2);
    // Another member takes offset 2 only: 0 and 1 are still a's.
    let runs = p.acquire("b", 0, 3, 100, 1_000);
    assert_eq!(runs, vec![Acquired { first_offset: 2, last_offset: 2, delivery_count: 2 }]);
    // The renewed records settle as any other, their count unchanged.
    p.acknowledge("a", 0, 1, &[2], 1_100).unwrap();
    assert_eq!(p.record(0).unwrap().state, RecordState::Available);
    assert_eq!(p.record(0).unwrap().delivery_count, 1);
    assert!(p.expire(1_899).is_empty(), "b's lock on offset 2 holds until 2_000");
    assert_eq!(p.acquired_count(), 1);
}

#[test]
fn a_renew_needs_the_lock() {
    let mut p = SharePartition::new(0, limits());
    p.acquire("a", 0, 2, 100, 0);
    // Not this member's, never acquired, or already expired: INVALID_RECORD_STATE, and
    // nothing of the batch is applied (offset 0 keeps its lock).
    assert_eq!(p.acknowledge("b", 0, 0, &[4], 10), Err(AckError::NotAcquired));
    assert_eq!(p.acknowledge("a", 0, 2, &[4], 10), Err(AckError::NotAcquired));
    p.expire(1_000);
    assert_eq!(p.acknowledge("a", 0, 1, &[4], 1_000), Err(AckError::NotAcquired));
    // Renew mixes with other types, one per offset.
    p.acquire("a", 0, 2, 100, 1_000);
    p.acknowledge("a", 0, 1, &[1, 4], 1_500).unwrap();
    assert_eq!(p.start_offset(), 1);
    let held = RecordState::Acquired { member: "a".into(), deadline_ms: 2_500 };
    assert_eq!(p.record(1).unwrap().state, held);
    assert_eq!(p.record(1).unwrap().delivery_count, 2);
}

#[test]
fn lag_is_what_is_not_delivery_complete_up_to_the_high_watermark() {
    // 10 records, the first 2 accepted (the start offset moves past them), then 3 of the
    // next 5 accepted or rejected out of order: 8 - 3 remain to deliver.
    let mut p = SharePartition::new(0, limits());
    p.acquire("a", 0, 7, 10, 0);
    p.acknowledge("a", 0, 1, &[1], 0).unwrap();
    p.acknowledge("a", 3, 3, &[1], 0).unwrap();
    p.acknowledge("a", 5, 6, &[3], 0).unwrap();
    assert_eq!(p.start_offset(), 2);
    let (_, _, acknowledged, archived) = p.counts();
    assert_eq!((acknowledged, archived), (1, 2));
    assert_eq!(lag(10, p.start_offset(), (acknowledged + archived) as i64), 5);
    // The persisted batches say the same.
    let state = ShareState {
        snapshot: true,
        snapshot_epoch: 0,
        state_epoch: 0,
        leader_epoch: 0,
        start_offset: p.start_offset(),
        batches: p.state_batches(),
    };
    assert_eq!(state.delivery_complete_count(), 3);
    // Unknown inputs give an unknown lag; a start offset past the high watermark gives 0.
    assert_eq!(lag(-1, 2, 3), -1);
    assert_eq!(lag(10, -1, 0), -1);
    assert_eq!(lag(10, 2, -1), -1);
    assert_eq!(lag(1, 2, 0), 0);
    assert_eq!(ShareState { start_offset: -1, ..state.clone() }.delivery_complete_count(), -1);
    // A batch reaching below the start offset counts from the start offset only.
    let below =
        StateBatch { first_offset: 0, last_offset: 3, delivery_state: 2, delivery_count: 1 };
    let clipped = ShareState { batches: vec![below], ..state };
    assert_eq!(clipped.delivery_complete_count(), 2);
}

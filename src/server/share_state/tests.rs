//! The share coordinator's decisions ([`Stored`]): merging writes, fencing by state epoch and
//! leader epoch, and what a read records; and the persister's request/answer conversions.

use kafka_protocol::messages::read_share_group_state_response as read_resp;

use super::*;

fn batch(first: i64, last: i64, state: i8, count: i16) -> StateBatch {
    StateBatch {
        first_offset: first,
        last_offset: last,
        delivery_state: state,
        delivery_count: count,
    }
}

fn update(state_epoch: i32, leader_epoch: i32, start: i64, batches: Vec<StateBatch>) -> ShareState {
    ShareState {
        snapshot: false,
        snapshot_epoch: 0,
        state_epoch,
        leader_epoch,
        start_offset: start,
        batches,
    }
}

fn stored_at(state_epoch: i32, leader_epoch: i32) -> Stored {
    let first = update(state_epoch, leader_epoch, 0, vec![batch(0, 9, 0, 1)]);
    let state = Stored::default().write(&first).unwrap();
    Stored { leader_epoch: state.leader_epoch, state: Some(state) }
}

#[test]
fn nothing_stored_replays_to_no_state_and_no_leader_epoch() {
    let stored = Stored::replayed(&[]);
    assert_eq!(stored, Stored { state: None, leader_epoch: -1 });
}

#[test]
fn a_first_write_needs_a_start_offset() {
    let refused = Stored { state: None, leader_epoch: -1 }.write(&update(0, 0, -1, vec![]));
    assert_eq!(refused, Err(E::InvalidRequest.code()));
    let written = Stored { state: None, leader_epoch: -1 }.write(&update(0, 3, 5, vec![]));
    let written = written.unwrap();
    assert!(written.snapshot);
    assert_eq!((written.start_offset, written.leader_epoch, written.state_epoch), (5, 3, 0));
}

#[test]
fn a_write_merges_into_the_stored_state() {
    let stored = stored_at(0, 1);
    // Acknowledge 3..=4, keep the start: the rest of the stored run stays.
    let next = stored.write(&update(0, 1, -1, vec![batch(3, 4, 2, 1)])).unwrap();
    assert_eq!(next.start_offset, 0);
    let expected = vec![batch(0, 2, 0, 1), batch(3, 4, 2, 1), batch(5, 9, 0, 1)];
    assert_eq!(next.batches, expected);
    // Acknowledging the head moves the start past it, as the share-partition does.
    let head = stored.write(&update(0, 1, -1, vec![batch(0, 4, 2, 1)])).unwrap();
    assert_eq!((head.start_offset, head.batches), (5, vec![batch(5, 9, 0, 1)]));
    assert_eq!(next.snapshot_epoch, stored.state.as_ref().unwrap().snapshot_epoch + 1);
}

#[test]
fn an_older_state_epoch_is_fenced_and_a_newer_one_starts_afresh() {
    let stored = stored_at(2, 1);
    let older = stored.write(&update(1, 1, 0, vec![]));
    assert_eq!(older, Err(E::FencedStateEpoch.code()));
    let newer = stored.write(&update(3, 1, 20, vec![])).unwrap();
    assert_eq!((newer.state_epoch, newer.start_offset), (3, 20));
    assert!(newer.batches.is_empty(), "a newer state epoch does not merge: {newer:?}");
}

#[test]
fn an_older_leader_epoch_is_fenced_on_write_and_read() {
    let mut stored = stored_at(0, 4);
    assert_eq!(stored.write(&update(0, 3, -1, vec![])), Err(E::FencedLeaderEpoch.code()));
    assert_eq!(stored.read(3), Err(E::FencedLeaderEpoch.code()));
    // -1 is a read that is not a leader's: never fenced, records nothing.
    assert_eq!(stored.read(-1), Ok(None));
    assert_eq!(stored.leader_epoch, 4);
}

#[test]
fn a_read_at_a_newer_leader_epoch_records_it_and_fences_the_old_leader() {
    let mut stored = stored_at(0, 1);
    let before = stored.state.clone().unwrap();
    let to_write = stored.read(2).unwrap().expect("the state to write at the new epoch");
    assert_eq!(to_write.leader_epoch, 2);
    assert_eq!(to_write.batches, before.batches);
    assert_eq!(stored.read(2), Ok(None), "the same epoch again records nothing");
    assert_eq!(stored.write(&update(0, 1, -1, vec![])), Err(E::FencedLeaderEpoch.code()));
}

#[test]
fn a_read_with_no_state_remembers_the_epoch_without_writing() {
    let mut stored = Stored { state: None, leader_epoch: -1 };
    assert_eq!(stored.read(7), Ok(None));
    assert_eq!(stored.leader_epoch, 7);
    assert_eq!(stored.write(&update(0, 6, 0, vec![])), Err(E::FencedLeaderEpoch.code()));
}

#[test]
fn write_requests_and_read_answers_carry_the_state_whole() {
    let key = ShareKey { group: "g".into(), topic_id: uuid::Uuid::from_u128(7), partition: 3 };
    let state = update(2, 5, 10, vec![batch(10, 12, 2, 1), batch(13, 13, 0, 3)]);
    let request = write_request(&key, &state);
    assert_eq!(request.group_id.as_str(), "g");
    let p = &request.topics[0].partitions[0];
    assert_eq!((request.topics[0].topic_id, p.partition), (key.topic_id, 3));
    let back = crate::server::handlers::share_state::update_of(p).unwrap();
    assert_eq!(back, state);
    let answer = read_resp::PartitionResult::default()
        .with_partition(3)
        .with_state_epoch(2)
        .with_start_offset(10)
        .with_state_batches(vec![read_resp::StateBatch::default()
            .with_first_offset(10)
            .with_last_offset(12)
            .with_delivery_state(2)
            .with_delivery_count(1)]);
    let read = from_read(&answer, 5).unwrap();
    assert_eq!((read.state_epoch, read.leader_epoch, read.start_offset), (2, 5, 10));
    assert_eq!(read.batches, vec![batch(10, 12, 2, 1)]);
    // Start offset -1 at state epoch 0: no state; at a later one: initialized from -1.
    let unstarted = from_read(&answer.clone().with_start_offset(-1), 5).unwrap();
    assert_eq!((unstarted.state_epoch, unstarted.start_offset), (2, -1));
    let none = answer.with_start_offset(-1).with_state_epoch(0);
    assert_eq!(from_read(&none, 5), None, "not initialized");
}

#[test]
fn malformed_write_partitions_are_invalid_requests() {
    use kafka_protocol::messages::write_share_group_state_request as w;
    let bad_run = w::PartitionData::default().with_start_offset(0).with_state_batches(vec![
        w::StateBatch::default().with_first_offset(5).with_last_offset(4),
    ]);
    let bad_start = w::PartitionData::default().with_start_offset(-2);
    let negative = w::PartitionData::default().with_state_batches(vec![w::StateBatch::default()
        .with_first_offset(-1)
        .with_last_offset(0)]);
    for p in [bad_run, bad_start, negative] {
        let refused = crate::server::handlers::share_state::update_of(&p);
        assert_eq!(refused, Err(E::InvalidRequest.code()), "{p:?}");
    }
}

#[test]
fn an_initialize_replaces_the_state_and_an_older_state_epoch_is_fenced() {
    let stored = stored_at(1, 4);
    let init = stored.initialize(2, 50).unwrap();
    assert!(init.snapshot && init.batches.is_empty());
    assert_eq!((init.state_epoch, init.leader_epoch, init.start_offset), (2, 4, 50));
    // The same state epoch re-initializes; an older one is fenced, as Kafka's coordinator.
    assert_eq!(stored.initialize(1, 7).map(|s| s.start_offset), Ok(7));
    assert_eq!(stored.initialize(0, 7), Err(E::FencedStateEpoch.code()));
    assert_eq!(stored.initialize(2, -2), Err(E::InvalidRequest.code()));
    // Nothing stored: any state epoch.
    assert_eq!(Stored::replayed(&[]).initialize(0, 3).map(|s| s.leader_epoch), Ok(-1));
}

#[test]
fn a_state_initialized_without_a_start_offset_survives_a_replay_and_a_first_write_replaces_it() {
    let init = Stored::replayed(&[]).initialize(3, -1).unwrap();
    let stored = Stored::replayed(std::slice::from_ref(&init));
    let state = stored.state.clone().unwrap();
    assert_eq!((state.state_epoch, state.start_offset), (3, -1));
    // The leader's first write (its start at share.auto.offset.reset) is not merged into -1.
    let first = stored.write(&update(3, 0, 10, vec![batch(10, 11, 0, 1)])).unwrap();
    assert_eq!((first.start_offset, first.batches), (10, vec![batch(10, 11, 0, 1)]));
    // A merge-only write (start -1) has nothing to merge into.
    assert_eq!(stored.write(&update(3, 0, -1, vec![])), Err(E::InvalidRequest.code()));
}

#[test]
fn a_summary_has_no_batches_records_nothing_and_fences_older_leaders() {
    let stored = stored_at(1, 4);
    let summary = stored.summary(-1).unwrap().unwrap();
    assert!(summary.batches.is_empty());
    assert_eq!(summary.delivery_complete_count(), 0);
    assert_eq!((summary.state_epoch, summary.leader_epoch, summary.start_offset), (1, 4, 0));
    assert_eq!(stored.summary(3), Err(E::FencedLeaderEpoch.code()));
    assert!(stored.summary(9).is_ok());
    assert_eq!(Stored::replayed(&[]).summary(0), Ok(None));
}

#[test]
fn a_tombstone_drops_the_records_before_it() {
    use crate::share::records::{decode_batches, encode_batch, encode_tombstone};
    let key = ShareKey { group: "g".into(), topic_id: uuid::Uuid::from_u128(7), partition: 1 };
    let other = ShareKey { partition: 2, ..key.clone() };
    let state = stored_at(0, 1).state.unwrap();
    let mut log = bytes::BytesMut::new();
    log.extend_from_slice(&encode_batch(&key, &state, 0).unwrap());
    log.extend_from_slice(&encode_batch(&other, &state, 0).unwrap());
    log.extend_from_slice(&encode_tombstone(&key, 0).unwrap());
    let log = log.freeze();
    let found = decode_batches(&log, &key).unwrap();
    assert!(found.deleted && found.states.is_empty());
    assert_eq!(Stored::replayed(&found.states), Stored { state: None, leader_epoch: -1 });
    let untouched = decode_batches(&log, &other).unwrap();
    assert!(!untouched.deleted);
    assert_eq!(untouched.states, vec![state.clone()]);
    // Written again after the tombstone: only the new state.
    let mut again = bytes::BytesMut::from(&log[..]);
    again.extend_from_slice(&encode_batch(&key, &state, 0).unwrap());
    let found = decode_batches(&again.freeze(), &key).unwrap();
    assert_eq!(found.states, vec![state]);
}

#[test]
fn a_summary_keeps_the_delivery_complete_batches_only() {
    // 0-9 available, then 3 acknowledged and 5-6 archived (KIP-1226 counts both).
    let stored = stored_at(1, 4);
    let acked = update(1, 4, -1, vec![batch(3, 3, 2, 1), batch(5, 6, 4, 1)]);
    let state = stored.write(&acked).unwrap();
    let stored = Stored { leader_epoch: state.leader_epoch, state: Some(state) };
    let summary = stored.summary(-1).unwrap().unwrap();
    assert_eq!(summary.batches, vec![batch(3, 3, 2, 1), batch(5, 6, 4, 1)]);
    assert_eq!(summary.delivery_complete_count(), 3);
}

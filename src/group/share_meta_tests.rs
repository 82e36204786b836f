//! Unit tests of the ShareGroupStatePartitionMetadata and ShareGroupMetadata records: their
//! bytes as Kafka's schemas lay them out, round trips, refusal of bad data, and their
//! start-up replay.

use std::collections::BTreeSet;

use bytes::Bytes;
use uuid::Uuid;

use super::coordinator::Coordinator;
use super::records::{decode_batches, encode_batch, OffsetsRecord};
use super::share_meta::{
    decode_group_value, decode_value, encode_group_value, encode_value, ShareGroupMeta,
    SharePartitions, ShareTopic, GROUP_KEY_TYPE, KEY_TYPE,
};

fn topic(name: &str, partitions: &[i32], create_timestamp_ms: i64) -> ShareTopic {
    let partitions = partitions.iter().copied().collect();
    ShareTopic { name: name.into(), partitions, create_timestamp_ms }
}

fn sample() -> SharePartitions {
    let mut v = SharePartitions::default();
    v.initializing.insert(Uuid::from_u128(2), topic("b", &[1], 0x0102_0304_0506_0708));
    v.initialized.insert(Uuid::from_u128(1), topic("a", &[0, 2], 9));
    v.deleting.insert(Uuid::from_u128(3), "c".into());
    v
}

#[test]
fn the_value_is_laid_out_as_kafkas_schema() {
    let mut want = vec![0u8, 0]; // version 0
    want.push(2); // InitializingTopics: one (compact length + 1)
    want.extend_from_slice(Uuid::from_u128(2).as_bytes());
    want.extend_from_slice(&[2, b'b']); // TopicName
    want.extend_from_slice(&[2, 0, 0, 0, 1]); // Partitions [1]
    want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // CreateTimestamp (int64)
    want.push(0); // tagged fields
    want.push(2); // InitializedTopics: one
    want.extend_from_slice(Uuid::from_u128(1).as_bytes());
    want.extend_from_slice(&[2, b'a']);
    want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 2]); // Partitions [0, 2]
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    want.push(0);
    want.push(2); // DeletingTopics: one
    want.extend_from_slice(Uuid::from_u128(3).as_bytes());
    want.extend_from_slice(&[2, b'c']);
    want.push(0);
    want.push(0); // top-level tagged fields
    assert_eq!(encode_value(&sample()), Bytes::from(want));
    let (key, _) = OffsetsRecord::SharePartitions { group: "g".into(), value: None }.encode();
    assert_eq!(&key[..], &[0, KEY_TYPE as u8, 0, 1, b'g']);
}

#[test]
fn records_round_trip_tombstones_included_and_bad_values_are_errors() {
    let records = vec![
        OffsetsRecord::SharePartitions { group: "g".into(), value: Some(sample()) },
        OffsetsRecord::SharePartitions { group: "g".into(), value: None },
    ];
    let batch = encode_batch(&records, 1).unwrap();
    let decoded: Vec<OffsetsRecord> =
        decode_batches(&batch).unwrap().into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(decoded, records);
    let good = encode_value(&sample());
    for cut in 0..good.len() {
        assert!(decode_value(&good[..cut]).is_err(), "a value cut at {cut} decodes");
    }
    let mut trailing = good.to_vec();
    trailing.push(0);
    assert!(decode_value(&trailing).is_err());
    assert!(decode_value(&[0, 1, 1, 1, 1, 0]).is_err(), "an unknown version decodes");
    // A partition count beyond the record is refused before anything is allocated.
    let mut huge = vec![0u8, 0, 2];
    huge.extend_from_slice(&[0; 16]);
    huge.extend_from_slice(&[2, b'a', 0xff, 0xff, 0xff, 0x0f]);
    assert!(decode_value(&huge).is_err());
}

#[test]
fn partitions_move_between_states_and_an_empty_record_is_empty() {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let mut v = SharePartitions::default();
    v.start_initializing(a, "a", &[0, 1, 2], 100);
    assert!(!v.is_initialized(&a, 0));
    v.finish_initializing(a, "a", &[0, 2], 200);
    assert!(v.is_initialized(&a, 0) && !v.is_initialized(&a, 1));
    assert_eq!(v.initializing[&a].partitions, BTreeSet::from([1]));
    // CreateTimestamp: when the topic entered each state; more partitions keep it.
    assert_eq!(v.initializing[&a].create_timestamp_ms, 100);
    assert_eq!(v.initialized[&a].create_timestamp_ms, 200);
    v.finish_initializing(a, "a", &[1], 300);
    assert_eq!(v.initialized[&a].create_timestamp_ms, 200);
    assert!(!v.initializing.contains_key(&a));
    v.finish_initializing(b, "b", &[0], 400);
    let all = v.all();
    assert_eq!(all[&a].partitions, BTreeSet::from([0, 1, 2]));
    v.start_initializing(a, "a", &[1], 500);
    assert_eq!(v.initializing[&a].create_timestamp_ms, 500);
    assert_eq!(all[&b].partitions, BTreeSet::from([0]));
    v.start_deleting(a, "a");
    assert!(!v.initialized.contains_key(&a) && !v.initializing.contains_key(&a));
    assert_eq!(v.deleting[&a], "a");
    v.forget(&a);
    v.forget(&b);
    assert!(v.is_empty());
}

#[test]
fn replay_keeps_the_latest_record_of_each_group_and_a_tombstone_drops_it() {
    let c = Coordinator::new(0);
    let record = |group: &str, value| OffsetsRecord::SharePartitions { group: group.into(), value };
    c.apply_replayed(3, record("g", Some(SharePartitions::default())));
    c.apply_replayed(3, record("g", Some(sample())));
    c.apply_replayed(1, record("h", Some(sample())));
    c.apply_replayed(1, record("h", None));
    let shares = c.share_partitions.borrow();
    assert_eq!(shares.get("g"), Some(&(3, sample())));
    assert!(!shares.contains_key("h"));
    drop(shares);
    // A share group's record is no classic or consumer group.
    assert!(!c.has_group("g"));
}

#[test]
fn the_share_group_metadata_is_laid_out_as_kafkas_schema_and_replays() {
    let v = ShareGroupMeta { epoch: 0x0102_0304, metadata_hash: 0x0506_0708_090a_0b0c };
    let want: &[u8] = &[
        0, 0, // version 0
        1, 2, 3, 4, // Epoch (int32)
        5, 6, 7, 8, 9, 10, 11, 12, // MetadataHash (int64)
        0,  // tagged fields
    ];
    assert_eq!(&encode_group_value(&v)[..], want);
    assert_eq!(decode_group_value(want).unwrap(), v);
    for cut in 0..want.len() {
        assert!(decode_group_value(&want[..cut]).is_err(), "a value cut at {cut} decodes");
    }
    assert!(decode_group_value(&[want, &[0]].concat()).is_err());
    let (key, _) = OffsetsRecord::ShareGroup { group: "g".into(), value: None }.encode();
    assert_eq!(&key[..], &[0, GROUP_KEY_TYPE as u8, 0, 1, b'g']);
    let records = vec![
        OffsetsRecord::ShareGroup { group: "g".into(), value: Some(v) },
        OffsetsRecord::ShareGroup { group: "h".into(), value: Some(v) },
        OffsetsRecord::ShareGroup { group: "h".into(), value: None },
    ];
    let batch = encode_batch(&records, 1).unwrap();
    let decoded: Vec<OffsetsRecord> =
        decode_batches(&batch).unwrap().into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(decoded, records);
    let c = Coordinator::new(0);
    for r in records {
        c.apply_replayed(2, r);
    }
    assert_eq!(c.share_groups.borrow().get("g"), Some(&(2, v)));
    assert!(!c.share_groups.borrow().contains_key("h"));
    assert!(!c.has_group("g"));
}

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::share_fetch_response::{
    self, ShareFetchResponse, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProducerId, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::protocol::encode_response;

/// xorshift64*: a seeded, dependency-free generator for random response shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random record set: none, empty, small, or big; big ones are often slices of one shared
/// buffer (as the cache hands them out), sometimes the very same slice twice in a row.
fn records(rng: &mut Rng, arena: &Bytes, last: &mut Option<Bytes>) -> Option<Bytes> {
    let picked = match rng.below(6) {
        0 => None,
        1 => Some(Bytes::new()),
        2 => Some(Bytes::from(vec![rng.below(256) as u8; 1 + rng.below(100) as usize])),
        3 if last.is_some() => last.clone(),
        3 | 4 => {
            let len = 1 + rng.below(arena.len() as u64 / 2) as usize;
            let start = rng.below((arena.len() - len) as u64) as usize;
            Some(arena.slice(start..start + len))
        }
        _ => Some(Bytes::from(vec![7u8; 1 + rng.below(40_000) as usize])),
    };
    last.clone_from(&picked);
    picked
}

fn aborted(rng: &mut Rng) -> Option<Vec<AbortedTransaction>> {
    match rng.below(3) {
        0 => None,
        n => Some(
            (0..n * rng.below(4))
                .map(|i| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(rng.below(1000) as i64))
                        .with_first_offset(i as i64 * 10)
                })
                .collect(),
        ),
    }
}

/// A random Fetch response that `version` can carry (topic names before v13, ids from v13,
/// a session id from v7).
fn fetch_response(rng: &mut Rng, arena: &Bytes, version: i16) -> FetchResponse {
    let mut last = None;
    let topics = (0..rng.below(5))
        .map(|t| {
            let partitions = (0..rng.below(6))
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p as i32)
                        .with_high_watermark(rng.below(1 << 40) as i64)
                        .with_aborted_transactions(aborted(rng))
                        .with_records(records(rng, arena, &mut last))
                })
                .collect();
            let topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version < 13 {
                topic.with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))))
            } else {
                topic.with_topic_id(uuid::Uuid::from_u128(t as u128 + 1))
            }
        })
        .collect();
    let session_id = if version >= 7 { rng.below(100) as i32 } else { 0 };
    FetchResponse::default().with_session_id(session_id).with_responses(topics)
}

/// Every record set of at least `min` bytes is a chunk of its own, pointing at the same
/// memory (not copied).
fn assert_spliced(chunks: &Chunks, shared: &[Bytes], min: usize) {
    let mut spliced = chunks.chunks().iter();
    for records in shared.iter().filter(|r| r.len() >= min.max(1)) {
        let found = spliced.find(|c| c.as_ptr() == records.as_ptr() && c.len() == records.len());
        assert!(found.is_some(), "a record set of {} bytes was copied", records.len());
    }
}

fn fetch_records(response: &FetchResponse) -> Vec<Bytes> {
    let partitions = response.responses.iter().flat_map(|t| &t.partitions);
    partitions.filter_map(|p| p.records.clone()).collect()
}

#[test]
fn chunked_fetch_responses_are_the_encoded_bytes_and_share_the_records() {
    let arena = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let mut rng = Rng(0x5eed_2026_1205);
    for round in 0..400 {
        let version = 4 + (round % 13) as i16;
        let response = fetch_response(&mut rng, &arena, version);
        let min = [0, 1, 50, 1000, SPLICE_BYTES_MIN][round % 5];
        let body = ResponseKind::Fetch(response.clone());
        let whole = encode_response(ApiKey::Fetch, version, round as i32, &body).unwrap();
        let chunks = encode_response_spliced(ApiKey::Fetch, version, round as i32, &body, min);
        let chunks = chunks.unwrap();
        assert_eq!(chunks.len(), whole.len());
        assert_eq!(chunks.to_contiguous(), whole, "round {round} v{version} min {min}");
        assert!(chunks.chunks().iter().all(|c| !c.is_empty()));
        assert_spliced(&chunks, &fetch_records(&response), min);
    }
}

#[test]
fn small_record_sets_are_coalesced_into_one_chunk() {
    let partitions = (0..1000)
        .map(|p| {
            PartitionData::default()
                .with_partition_index(p)
                .with_records(Some(vec![1; 1024].into()))
        })
        .collect();
    let topic = FetchableTopicResponse::default().with_partitions(partitions);
    let body = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]));
    let chunks = encode_response_chunks(ApiKey::Fetch, 12, 1, &body).unwrap();
    assert_eq!(chunks.chunks().len(), 1);
    assert_eq!(chunks.to_contiguous(), encode_response(ApiKey::Fetch, 12, 1, &body).unwrap());
}

#[test]
fn big_record_sets_are_their_own_chunks() {
    let big = Bytes::from(vec![3u8; 1 << 20]);
    let partitions = (0..16)
        .map(|p| PartitionData::default().with_partition_index(p).with_records(Some(big.clone())))
        .collect();
    let topic = FetchableTopicResponse::default().with_partitions(partitions);
    let body = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]));
    let chunks = encode_response_chunks(ApiKey::Fetch, 16, 9, &body).unwrap();
    // header+topic+partition 0, then records and the next partition's metadata in turn.
    assert_eq!(chunks.chunks().len(), 33);
    assert!(chunks.chunks().iter().skip(1).step_by(2).all(|c| c.as_ptr() == big.as_ptr()));
    assert_eq!(chunks.to_contiguous(), encode_response(ApiKey::Fetch, 16, 9, &body).unwrap());
}

#[test]
fn share_fetch_records_are_spliced_too() {
    let big = Bytes::from(vec![5u8; 40_000]);
    let partitions = (0..3)
        .map(|p| {
            share_fetch_response::PartitionData::default()
                .with_partition_index(p)
                .with_records(Some(big.slice(p as usize * 10..)))
        })
        .collect();
    let topic = ShareFetchableTopicResponse::default().with_partitions(partitions);
    let response = ShareFetchResponse::default().with_responses(vec![topic]);
    let body = ResponseKind::ShareFetch(response.clone());
    let chunks = encode_response_chunks(ApiKey::ShareFetch, 1, 3, &body).unwrap();
    let whole = encode_response(ApiKey::ShareFetch, 1, 3, &body).unwrap();
    assert_eq!(chunks.to_contiguous(), whole);
    let partitions = response.responses.iter().flat_map(|t| &t.partitions);
    let shared: Vec<Bytes> = partitions.filter_map(|p| p.records.clone()).collect();
    assert_spliced(&chunks, &shared, SPLICE_BYTES_MIN);
}

#[test]
fn other_responses_are_one_chunk() {
    let body = ResponseKind::ApiVersions(crate::protocol::api_versions_response(&[], 0));
    let chunks = encode_response_chunks(ApiKey::ApiVersions, 3, 4, &body).unwrap();
    assert_eq!(chunks.chunks().len(), 1);
    assert_eq!(chunks.to_contiguous(), encode_response(ApiKey::ApiVersions, 3, 4, &body).unwrap());
}

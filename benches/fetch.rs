//! Fetch and request path micro-benches: reading pipelined request frames off a stream, the
//! offset index lookup a fetch from disk starts with, and assembling a Fetch response, the
//! old way (one buffer, record data copied in) against chunks (record data shared).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};
use strata::protocol::{encode_response, encode_response_chunks};
use strata::server::bench_api::read_frames;
use strata::storage::bench_api::IndexLookup;

/// Fetch version modern clients use (flexible, topic ids).
const FETCH_VERSION: i16 = 16;

/// `count` frames of `body_bytes` each, back to back with their size prefixes.
fn pipelined_frames(count: usize, body_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (4 + body_bytes));
    for i in 0..count {
        out.extend_from_slice(&(body_bytes as i32).to_be_bytes());
        out.extend(std::iter::repeat_n(i as u8, body_bytes));
    }
    out
}

fn frame_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_read");
    for (count, body_bytes) in [(1024, 100), (64, 16 << 10), (4, 1 << 20)] {
        let stream = pipelined_frames(count, body_bytes);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function(format!("{count}x{body_bytes}b"), |b| {
            b.iter(|| read_frames(black_box(&stream)))
        });
    }
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_lookup");
    // A 1 GiB segment indexed every 4 KiB: 262,144 entries (Kafka's default interval).
    let entries = 1 << 18;
    let index = IndexLookup::new(1_000_000, entries, 40, 4096);
    let last = 1_000_000 + i64::from(entries) * 40;
    group.throughput(Throughput::Elements(1));
    let mut offset = 1_000_000;
    group.bench_function("position_for_262144_entries", |b| {
        b.iter(|| {
            // A stride that visits the whole index, not one cached path.
            offset = if offset + 7919 >= last { 1_000_000 } else { offset + 7919 };
            index.position_for(black_box(offset))
        })
    });
    group.finish();
}

/// A Fetch response of `partitions` partitions with `records_bytes` of records each, every
/// record set its own slice of one buffer (as the tail cache hands them out).
fn fetch_response(partitions: usize, records_bytes: usize) -> ResponseKind {
    let arena = Bytes::from(vec![0x5a; partitions * records_bytes]);
    let partitions = (0..partitions)
        .map(|p| {
            let records = arena.slice(p * records_bytes..(p + 1) * records_bytes);
            PartitionData::default()
                .with_partition_index(p as i32)
                .with_high_watermark(1 << 30)
                .with_records(Some(records))
        })
        .collect();
    let topic = FetchableTopicResponse::default()
        .with_topic_id(uuid::Uuid::from_u128(7))
        .with_partitions(partitions);
    ResponseKind::Fetch(FetchResponse::default().with_responses(vec![topic]))
}

fn fetch_assembly(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_assembly");
    for (partitions, records_bytes, name) in [(16, 1 << 20, "16x1MiB"), (1000, 1024, "1000x1KiB")] {
        let body = fetch_response(partitions, records_bytes);
        group.throughput(Throughput::Bytes((partitions * records_bytes) as u64));
        group.bench_function(format!("{name}/one_buffer"), |b| {
            b.iter(|| encode_response(ApiKey::Fetch, FETCH_VERSION, 1, black_box(&body)).unwrap())
        });
        group.bench_function(format!("{name}/chunks"), |b| {
            b.iter(|| {
                encode_response_chunks(ApiKey::Fetch, FETCH_VERSION, 1, black_box(&body)).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(fetch_benches, frame_read, index_lookup, fetch_assembly);
criterion_main!(fetch_benches);

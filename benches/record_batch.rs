//! Micro benches of the record_batch module: validate (CRC-32C), offset assignment, and the
//! leader's record validation (`validate_produce`) of 100 B and 1 KiB records, uncompressed
//! and in each codec, plus recompression.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata::record_batch;

/// Bytes of the batch the benches use.
const BATCH_BYTES_TARGET: usize = 16 << 10;
/// Value size of each record.
const VALUE_BYTES: usize = 100;

/// One uncompressed batch of about 16 KiB with 100-byte values.
fn batch_16k() -> Bytes {
    batch_of(BATCH_BYTES_TARGET, VALUE_BYTES, Compression::None)
}

/// One batch of about `target` uncompressed bytes of `value_bytes`-byte records whose values
/// are text-like (compressible, not trivially), as `strata bench` sends.
fn batch_of(target: usize, value_bytes: usize, compression: Compression) -> Bytes {
    let count = target / (value_bytes + 10);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut value = || {
        let text: Vec<u8> = (0..value_bytes)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b'a' + (seed % 64) as u8 / 3
            })
            .collect();
        Bytes::from(text)
    };
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(value()),
            headers: IndexMap::new(),
        })
        .collect();
    let options = RecordEncodeOptions { version: 2, compression };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode bench batch");
    buf.freeze()
}

fn benches(c: &mut Criterion) {
    let batch = batch_16k();
    let mut group = c.benchmark_group("record_batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("validate_16k", |b| {
        b.iter(|| record_batch::validate(black_box(&batch), 1 << 20).expect("valid"))
    });
    group.bench_function("assign_offset_16k", |b| {
        let mut offset = 0i64;
        b.iter(|| {
            let mut copy = BytesMut::from(&batch[..]);
            record_batch::set_base_offset(&mut copy, offset).expect("rewrite");
            record_batch::set_partition_leader_epoch(&mut copy, 0).expect("rewrite");
            offset += 100;
            copy.freeze()
        })
    });
    group.bench_function("assign_offset_log_append_time_16k", |b| {
        b.iter(|| {
            let mut copy = BytesMut::from(&batch[..]);
            record_batch::set_base_offset(&mut copy, 42).expect("rewrite");
            record_batch::set_log_append_time(&mut copy, 1_700_000_000_000).expect("rewrite");
            copy.freeze()
        })
    });
    group.bench_function("batches_iter_64x16k", |b| {
        let many: Vec<u8> = (0..64).flat_map(|_| batch.iter().copied()).collect();
        b.iter(|| record_batch::Batches::new(black_box(&many)).count())
    });
    group.finish();
}

fn rules() -> record_batch::Rules<'static> {
    record_batch::Rules {
        topic: "bench",
        partition: 0,
        max_batch_bytes: 1 << 20,
        max_decompressed_bytes: 64 << 20,
        compacted: false,
        log_append_time: false,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        now_ms: 1_700_000_000_000,
        recompress: None,
        zstd_allowed: true,
    }
}

fn codec(name: &str) -> (Compression, record_batch::Compression) {
    match name {
        "gzip" => (Compression::Gzip, record_batch::Compression::Gzip),
        "snappy" => (Compression::Snappy, record_batch::Compression::Snappy),
        "lz4" => (Compression::Lz4, record_batch::Compression::Lz4),
        "zstd" => (Compression::Zstd, record_batch::Compression::Zstd),
        _ => (Compression::None, record_batch::Compression::None),
    }
}

/// The leader's check of one 64 KiB batch (the load tool's batch size), per codec and record
/// size; throughput is in uncompressed bytes. `compacted` adds the key check.
fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_produce");
    for value_bytes in [100, 1024] {
        for name in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let batch = batch_of(64 << 10, value_bytes, codec(name).0);
            let raw = batch_of(64 << 10, value_bytes, Compression::None);
            group.throughput(Throughput::Bytes(raw.len() as u64));
            group.bench_function(format!("{name}_{value_bytes}b_64k"), |b| {
                b.iter(|| {
                    record_batch::validate_produce(black_box(&batch), &rules()).expect("valid")
                })
            });
        }
    }
    let raw = batch_of(64 << 10, 1024, Compression::None);
    group.throughput(Throughput::Bytes(raw.len() as u64));
    for name in ["gzip", "snappy", "lz4", "zstd"] {
        let target = record_batch::Codec { compression: codec(name).1, level: None };
        let to = record_batch::Rules { recompress: Some(target), ..rules() };
        group.bench_function(format!("recompress_none_to_{name}_1024b_64k"), |b| {
            b.iter(|| record_batch::validate_produce(black_box(&raw), &to).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(record_batch_benches, benches, validation);
criterion_main!(record_batch_benches);

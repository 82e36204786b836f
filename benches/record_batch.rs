//! Micro benches of the record_batch module: validate (CRC-32C) and offset assignment.

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
    let count = BATCH_BYTES_TARGET / (VALUE_BYTES + 10);
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
            value: Some(Bytes::from(vec![b'x'; VALUE_BYTES])),
            headers: IndexMap::new(),
        })
        .collect();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
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

criterion_group!(record_batch_benches, benches);
criterion_main!(record_batch_benches);

//! Storage benches on a real glommio executor and the local disk: durable append latency,
//! pipelined (group-committed) append throughput, reads from the tail cache and from disk.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata::storage::{LogConfig, PartitionLog};

/// Records per bench batch (100-byte values, about 16 KiB per batch).
const RECORDS_PER_BATCH: usize = 140;
/// Appends in flight in the pipelined bench.
const PIPELINE_DEPTH: usize = 64;
/// io_memory of the bench executor: within the 8 MiB memlock limit.
const IO_MEMORY_BYTES: usize = 4 << 20;

fn batch() -> Bytes {
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
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
            value: Some(Bytes::from(vec![b'x'; 100])),
            headers: IndexMap::new(),
        })
        .collect();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode bench batch");
    buf.freeze()
}

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::default().io_memory(IO_MEMORY_BYTES).make().expect("bench executor")
}

fn open(ex: &LocalExecutor, dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    let dir = dir.to_path_buf();
    ex.run(async move { PartitionLog::open(dir, config).await.expect("open log") })
}

fn append_benches(c: &mut Criterion) {
    let ex = executor();
    let tmp = tempfile::tempdir().expect("tempdir");
    let batch = batch();
    let log = open(&ex, tmp.path(), LogConfig::default());
    let mut group = c.benchmark_group("storage_append");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("durable_one_at_a_time", |b| {
        b.iter_custom(|iters| {
            ex.run(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let pending = log.append(&batch).expect("append");
                    pending.durable().await.expect("durable");
                }
                start.elapsed()
            })
        })
    });
    group.throughput(Throughput::Bytes((batch.len() * PIPELINE_DEPTH) as u64));
    group.bench_function("pipelined_64", |b| {
        b.iter_custom(|iters| {
            ex.run(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut last = None;
                    for _ in 0..PIPELINE_DEPTH {
                        last = Some(log.append(&batch).expect("append"));
                    }
                    if let Some(pending) = last {
                        pending.durable().await.expect("durable");
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    ex.run(async { log.delete().await.expect("delete") });
}

fn read_benches(c: &mut Criterion) {
    let ex = executor();
    let tmp = tempfile::tempdir().expect("tempdir");
    let batch = batch();
    let config = LogConfig { tail_cache_bytes: 1 << 20, ..LogConfig::default() };
    let log = open(&ex, tmp.path(), config);
    ex.run(async {
        let mut last = None;
        for _ in 0..1024 {
            last = Some(log.append(&batch).expect("append"));
        }
        if let Some(pending) = last {
            pending.durable().await.expect("durable");
        }
    });
    let hw = log.high_watermark();
    let mut group = c.benchmark_group("storage_read");
    group.throughput(Throughput::Bytes(256 << 10));
    let mut bench_read = |name: &str, offset_of: &dyn Fn(u64) -> i64| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                ex.run(async {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let offset = offset_of(i);
                        let start = Instant::now();
                        let read = log.read(offset, 256 << 10).await.expect("read");
                        total += start.elapsed();
                        assert!(!read.records.is_empty());
                    }
                    total
                })
            })
        });
    };
    let span = hw as u64 - 32 * RECORDS_PER_BATCH as u64;
    let batch_records = RECORDS_PER_BATCH as i64;
    bench_read("tail_cache_256k", &|i| hw - 20 * batch_records - (i % 16) as i64 * 10);
    bench_read("disk_256k", &|i| ((i * 7919) % (span / 2)) as i64);
    group.finish();
    ex.run(async { log.delete().await.expect("delete") });
}

criterion_group!(storage_benches, append_benches, read_benches);
criterion_main!(storage_benches);

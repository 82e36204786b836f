//! Fuzz target: the leader's record batch validator (`record_batch::validate_produce`).
//!
//! Corpus (`tests/fuzz/corpus/record_batch/`): real batches written by librdkafka
//! (confluent-kafka) in every codec, with keys, headers, idempotent and transactional, the
//! broker's own transaction markers and recompressed batches (see `make_corpus.py` there).
//!
//! Each input is tried as mutated and again with its CRC made valid (a hostile client computes
//! CRCs too), so mutated records reach the walk, the decompressors and the acceptance path.
//!
//! Properties, for every input and several topic rule sets:
//! - it never panics;
//! - it never allocates more than a bound set by the rules (a counting global allocator
//!   measures the peak while the validator runs), whatever the input claims;
//! - whatever it accepts (and the append's CRC check passes) decodes, record by record, with
//!   kafka-protocol's `RecordBatchDecoder`, the consumer-side decoder: `recordCount` records,
//!   offsets `base..=last`; a rewritten batch carries a valid CRC, the same records, and is
//!   accepted as sent when validated again.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use strata::record_batch::{
    validate, validate_produce, Accepted, BatchHeader, Codec, Compression, Rules,
};

const MAX_BATCH_BYTES: usize = 2 << 20;
const MAX_DECOMPRESSED_BYTES: usize = 4 << 20;
/// What one validation may allocate at most: the decompression bound for a record being
/// assembled or a snappy body, the same again for a rewrite's output, zstd's smallest window
/// cap (8 MiB), lz4's largest block buffers (2 × 4 MiB) and a few fixed buffers.
const ALLOCATION_BOUND: usize = 2 * MAX_DECOMPRESSED_BYTES + (8 << 20) + (9 << 20);

fn rule_sets() -> Vec<Rules<'static>> {
    let base = Rules {
        topic: "fuzz",
        partition: 0,
        max_batch_bytes: MAX_BATCH_BYTES,
        max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
        compacted: false,
        log_append_time: false,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        now_ms: 1_700_000_000_000,
        recompress: None,
        zstd_allowed: true,
    };
    vec![
        base,
        Rules { compacted: true, timestamp_after_max_ms: 0, ..base },
        Rules {
            recompress: Some(Codec { compression: Compression::Zstd, level: Some(1) }),
            ..base
        },
        Rules { recompress: Some(Codec { compression: Compression::None, level: None }), ..base },
        Rules {
            recompress: Some(Codec { compression: Compression::Snappy, level: None }),
            log_append_time: true,
            ..base
        },
    ]
}

/// Decodes `batch` as a consumer would and checks it against its header.
fn decodes(batch: &[u8], what: &str) -> usize {
    let header = BatchHeader::parse(batch).expect("a header");
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: accepted, but the consumer cannot decode it: {e}"));
    assert!(buf.is_empty(), "{what}: one batch");
    assert_eq!(set.records.len(), header.record_count as usize, "{what}: record count");
    for (i, record) in set.records.iter().enumerate() {
        assert_eq!(record.offset, header.base_offset + i as i64, "{what}: offsets");
    }
    set.records.len()
}

static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
static REWRITTEN: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn check(input: &[u8]) {
    check_one(input);
    if input.len() >= 61 {
        let mut fixed = input.to_vec();
        let crc = crc32c::crc32c(&fixed[21..]);
        fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        check_one(&fixed);
    }
}

fn check_one(input: &[u8]) {
    for rules in rule_sets() {
        // The harness's counting allocator measures this thread's peak.
        let (verdict, used) = fuzz::peak_heap(|| validate_produce(input, &rules));
        assert!(
            used <= ALLOCATION_BOUND,
            "allocated {used} bytes for a {} byte input",
            input.len()
        );
        match verdict {
            Ok(Accepted::AsSent) => {
                ACCEPTED.fetch_add(1, Ordering::Relaxed);
                // The append checks the CRC next; only what passes it is stored.
                if validate(input, MAX_BATCH_BYTES).is_ok() {
                    decodes(input, "as sent");
                }
            }
            Ok(Accepted::Rewritten(out)) => {
                REWRITTEN.fetch_add(1, Ordering::Relaxed);
                validate(&out, MAX_BATCH_BYTES).expect("a rewritten batch has a valid CRC");
                let count = decodes(&out, "rewritten");
                let sent = BatchHeader::parse(input).expect("it was accepted");
                assert_eq!(count, sent.record_count as usize);
                let again = validate_produce(&out, &rules).expect("a rewrite is accepted again");
                assert_eq!(again, Accepted::AsSent, "a rewrite is final");
            }
            Err(refusal) => {
                REFUSED.fetch_add(1, Ordering::Relaxed);
                assert!(
                    [2, 10, 32, 43, 76, 87].contains(&refusal.code),
                    "unexpected code {}",
                    refusal.code
                );
            }
        }
    }
}

#[test]
fn fuzz_record_batch() {
    let corpus = fuzz::corpus("record_batch");
    assert!(corpus.len() >= 10, "the committed corpus is missing");
    // Every real batch of the corpus is accepted under the plain rules.
    let plain = rule_sets()[0];
    for (i, batch) in corpus.iter().enumerate() {
        let header = BatchHeader::parse(batch).expect("corpus entries are batches");
        let verdict = validate_produce(batch, &plain);
        if header.is_control() {
            assert!(verdict.is_err(), "entry {i}: clients may not send control batches");
        } else {
            assert!(verdict.is_ok(), "entry {i} ({:?}) refused: {verdict:?}", header.compression());
        }
    }
    fuzz::run("record_batch", check);
    let count = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    eprintln!(
        "fuzz record_batch verdicts: {} accepted as sent, {} rewritten, {} refused",
        count(&ACCEPTED),
        count(&REWRITTEN),
        count(&REFUSED)
    );
}

//! Tests of `validate_produce`: each check refuses what it should with Kafka's code, accepted
//! batches decode with kafka-protocol (the consumers' view), rewrites keep every record.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KpCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};

use super::*;

const NOW: i64 = 1_700_000_000_000;
const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn kp(c: Compression) -> KpCompression {
    match c {
        Compression::None => KpCompression::None,
        Compression::Gzip => KpCompression::Gzip,
        Compression::Snappy => KpCompression::Snappy,
        Compression::Lz4 => KpCompression::Lz4,
        Compression::Zstd => KpCompression::Zstd,
    }
}

fn rules() -> Rules<'static> {
    Rules {
        topic: "t",
        partition: 0,
        max_batch_bytes: 1 << 20,
        max_decompressed_bytes: 64 << 20,
        compacted: false,
        log_append_time: false,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        now_ms: NOW,
        recompress: None,
        zstd_allowed: true,
    }
}

fn record(i: usize, key: Option<&str>, value: &[u8]) -> Record {
    let mut headers = IndexMap::new();
    if i % 2 == 1 {
        headers.insert(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"hv")));
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: i as i32 - 1,
        timestamp: NOW + i as i64,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value)),
        headers,
    }
}

fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let options = RecordEncodeOptions { version: 2, compression: kp(compression) };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
    buf.to_vec()
}

/// `n` keyed records with 100-byte values (headers on odd ones).
fn batch(n: usize, compression: Compression) -> Vec<u8> {
    let records: Vec<Record> =
        (0..n).map(|i| record(i, Some(&format!("k{i}")), &[b'v'; 100])).collect();
    encode(&records, compression)
}

fn recrc(batch: &mut [u8]) {
    let crc = compute_crc(batch).unwrap();
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A decoded record: offset, timestamp, key, value, header count.
type Decoded = (i64, i64, Option<Bytes>, Option<Bytes>, usize);
/// A named way of breaking a batch.
type Tamper = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);

fn decoded(batch: &[u8]) -> Vec<Decoded> {
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode(&mut buf).unwrap();
    set.records
        .into_iter()
        .map(|r| (r.offset, r.timestamp, r.key, r.value, r.headers.len()))
        .collect()
}

fn refused(records: &[u8], rules: &Rules<'_>) -> Refusal {
    validate_produce(records, rules).expect_err("refused")
}

#[test]
fn good_batches_of_every_codec_are_accepted_as_sent() {
    for codec in CODECS {
        let b = batch(50, codec);
        assert_eq!(validate_produce(&b, &rules()), Ok(Accepted::AsSent), "{codec:?}");
        assert!(validate(&b, 1 << 20).is_ok());
    }
}

#[test]
fn every_codec_recompresses_to_every_other_keeping_the_records() {
    for from in CODECS {
        let sent = batch(300, from);
        let expected = decoded(&sent);
        for to in CODECS {
            let r = Rules { recompress: Some(Codec { compression: to, level: None }), ..rules() };
            let result = validate_produce(&sent, &r).unwrap();
            if from == to {
                assert_eq!(result, Accepted::AsSent, "{from:?} → {to:?}: kept as sent");
                continue;
            }
            let Accepted::Rewritten(out) = result else { panic!("{from:?} → {to:?}") };
            let header = validate(&out, 1 << 20).unwrap();
            assert_eq!(header.compression(), Some(to));
            assert_eq!(header.record_count, 300);
            assert_eq!(header.max_timestamp, NOW + 299);
            assert_eq!(decoded(&out), expected, "{from:?} → {to:?}");
            assert_eq!(validate_produce(&out, &rules()), Ok(Accepted::AsSent));
        }
    }
}

#[test]
fn recompression_levels_are_applied() {
    let sent = batch(500, Compression::None);
    let size = |compression, level| {
        let r = Rules { recompress: Some(Codec { compression, level: Some(level) }), ..rules() };
        match validate_produce(&sent, &r).unwrap() {
            Accepted::Rewritten(out) => {
                assert_eq!(decoded(&out).len(), 500);
                out.len()
            }
            Accepted::AsSent => panic!("not recompressed"),
        }
    };
    assert!(size(Compression::Gzip, 1) >= size(Compression::Gzip, 9));
    assert!(size(Compression::Zstd, -5) >= size(Compression::Zstd, 19));
    assert!(size(Compression::Lz4, 1) >= size(Compression::Lz4, 12));
}

#[test]
fn a_gzip_flag_on_garbage_with_a_valid_crc_is_corrupt() {
    let mut b = batch(3, Compression::None);
    b[ATTRIBUTES_AT + 1] |= 1; // gzip
    recrc(&mut b);
    assert!(validate(&b, 1 << 20).is_ok(), "the old check lets it through");
    let r = refused(&b, &rules());
    assert_eq!(r.code, CORRUPT_MESSAGE, "{r:?}");
    for codec in [Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut b = batch(3, Compression::None);
        b[ATTRIBUTES_AT + 1] |= codec.attribute_bits() as u8;
        recrc(&mut b);
        assert_eq!(refused(&b, &rules()).code, CORRUPT_MESSAGE, "{codec:?}");
    }
}

/// Byte offset of record `i`'s length varint in an uncompressed batch from `batch`.
fn record_at(b: &[u8], i: usize) -> usize {
    let mut at = HEADER_BYTES;
    for _ in 0..i {
        let mut p = at;
        let len = walk::varint(b, &mut p).unwrap();
        at = p + len as usize;
    }
    at
}

#[test]
fn lying_lengths_and_counts_are_invalid_records() {
    let good = batch(4, Compression::None);
    let cases: Vec<Tamper> = vec![
        (
            "record length too big",
            Box::new(|b: &mut Vec<u8>| {
                let at = record_at(b, 3);
                b[at] += 2;
            }),
        ),
        (
            "record length too small",
            Box::new(|b: &mut Vec<u8>| {
                let at = record_at(b, 1);
                b[at] -= 2;
            }),
        ),
        (
            "negative record length",
            Box::new(|b: &mut Vec<u8>| {
                let at = record_at(b, 2);
                b[at] = 0x03;
            }),
        ),
        // The key length varint of record 0: 'k0' has length 2 (zigzag 4); claim 60.
        (
            "key length",
            Box::new(|b: &mut Vec<u8>| {
                let at = record_at(b, 0) + 2 + 1 + 1 + 1;
                assert_eq!(b[at], 4);
                b[at] = 120;
            }),
        ),
        (
            "offset deltas",
            Box::new(|b: &mut Vec<u8>| {
                let at = record_at(b, 2) + 2 + 1 + 1;
                assert_eq!(b[at], 4);
                b[at] = 6;
            }),
        ),
        (
            "trailing bytes",
            Box::new(|b: &mut Vec<u8>| {
                b.push(0);
                let len = (b.len() - 12) as i32;
                b[8..12].copy_from_slice(&len.to_be_bytes());
            }),
        ),
        (
            "fewer records than counted",
            Box::new(|b: &mut Vec<u8>| {
                b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&5i32.to_be_bytes());
                b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
                    .copy_from_slice(&4i32.to_be_bytes());
            }),
        ),
        (
            "count against lastOffsetDelta",
            Box::new(|b: &mut Vec<u8>| {
                b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
            }),
        ),
        (
            "negative header count",
            Box::new(|b: &mut Vec<u8>| {
                // Record 0 has no header: its last byte is the header count 0.
                let at = record_at(b, 1) - 1;
                assert_eq!(b[at], 0);
                b[at] = 1; // -1
            }),
        ),
        (
            "header key not UTF-8",
            Box::new(|b: &mut Vec<u8>| {
                // Record 1 ends with: header count 1, key len 1 ('h'), value len 2, "hv".
                let at = record_at(b, 2) - 4;
                assert_eq!(b[at], b'h');
                b[at] = 0xff;
            }),
        ),
    ];
    for (what, tamper) in cases {
        let mut b = good.clone();
        tamper(&mut b);
        recrc(&mut b);
        let r = refused(&b, &rules());
        assert_eq!(r.code, INVALID_RECORD, "{what}: {r:?}");
        assert!(r.record_errors.is_empty(), "{what}");
        // With a stale CRC the same batch is corrupt (clients retry that).
        let mut stale = b.clone();
        stale[CRC_AT] ^= 1;
        assert_eq!(refused(&stale, &rules()).code, CORRUPT_MESSAGE, "{what}");
    }
}

#[test]
fn lying_records_inside_compressed_batches_are_invalid() {
    let mut inner = batch(4, Compression::None);
    let at = record_at(&inner, 3);
    inner[at] += 2;
    let records = inner[HEADER_BYTES..].to_vec();
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut encoder = codec::Encoder::new(
            Codec { compression: codec, level: None },
            inner[..HEADER_BYTES].to_vec(),
        )
        .unwrap();
        walk::Sink::put(&mut encoder, &records).unwrap();
        let mut b = encoder.finish().unwrap();
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[ATTRIBUTES_AT + 1] |= codec.attribute_bits() as u8;
        recrc(&mut b);
        assert_eq!(refused(&b, &rules()).code, INVALID_RECORD, "{codec:?}");
    }
}

#[test]
fn keyless_records_on_a_compacted_topic_are_each_listed() {
    for codec in CODECS {
        let records: Vec<Record> = (0..6)
            .map(|i| {
                let key = (i % 3 != 0).then(|| format!("k{i}"));
                record(i, key.as_deref(), b"v")
            })
            .collect();
        let b = encode(&records, codec);
        let compacted = Rules { compacted: true, ..rules() };
        let r = refused(&b, &compacted);
        assert_eq!(r.code, INVALID_RECORD, "{codec:?}");
        let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, vec![0, 3], "{codec:?}");
        assert!(r.record_errors[0].message.contains("Compacted topic cannot accept message"));
        assert!(r.message.contains("2 record errors"), "{}", r.message);
        assert_eq!(validate_produce(&b, &rules()), Ok(Accepted::AsSent), "not compacted: fine");
    }
}

#[test]
fn timestamps_outside_the_window_are_each_listed() {
    let at = |i: usize, ts: i64| Record { timestamp: ts, ..record(i, Some("k"), b"v") };
    let records = vec![
        at(0, NOW),
        at(1, NOW + 3_600_001), // after.max.ms is one hour
        at(2, NOW - 10_000),
        at(3, -1), // no timestamp: never checked
        at(4, NOW + 3_600_000),
    ];
    let b = encode(&records, Compression::None);
    let r = refused(&b, &rules());
    assert_eq!(r.code, INVALID_TIMESTAMP);
    assert_eq!(r.record_errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![1]);
    let strict = Rules { timestamp_before_max_ms: 1_000, ..rules() };
    let r = refused(&b, &strict);
    assert_eq!(r.record_errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![1, 2]);
    // A LogAppendTime topic stamps the batch itself: no window.
    let stamped = Rules { log_append_time: true, ..strict };
    assert_eq!(validate_produce(&b, &stamped), Ok(Accepted::AsSent));
}

#[test]
fn a_lying_max_timestamp_is_corrected_as_kafka_does() {
    let mut b = batch(5, Compression::Lz4);
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&NOW.to_be_bytes());
    recrc(&mut b);
    let Accepted::Rewritten(out) = validate_produce(&b, &rules()).unwrap() else {
        panic!("not rewritten")
    };
    assert_eq!(BatchHeader::parse(&out).unwrap().max_timestamp, NOW + 4);
    assert!(validate(&out, 1 << 20).is_ok());
    assert_eq!(decoded(&out), decoded(&b));
}

#[test]
fn header_rules_of_client_batches() {
    let mut two = batch(2, Compression::None);
    two.extend_from_slice(&batch(2, Compression::None));
    assert_eq!(refused(&two, &rules()).code, INVALID_RECORD, "two batches");
    assert_eq!(refused(&[], &rules()).code, INVALID_RECORD, "no batch");
    let zstd = batch(2, Compression::Zstd);
    let old = Rules { zstd_allowed: false, ..rules() };
    assert_eq!(refused(&zstd, &old).code, UNSUPPORTED_COMPRESSION_TYPE);
    let big = batch(2_000, Compression::None);
    let small = Rules { max_batch_bytes: 10_000, ..rules() };
    assert_eq!(refused(&big, &small).code, MESSAGE_TOO_LARGE);
    let marker = marker_batch(1, 0, true, 0, NOW);
    assert_eq!(refused(&marker, &rules()).code, INVALID_RECORD, "control batch");
    let mut no_sequence = testing::idempotent_batch(7, 0, 0, 2).to_vec();
    no_sequence[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    recrc(&mut no_sequence);
    assert_eq!(refused(&no_sequence, &rules()).code, INVALID_RECORD, "idempotent without sequence");
    let mut stamped = batch(2, Compression::None);
    stamped[ATTRIBUTES_AT + 1] |= ATTR_TIMESTAMP_TYPE as u8;
    recrc(&mut stamped);
    assert_eq!(refused(&stamped, &rules()).code, INVALID_TIMESTAMP, "LogAppendTime from a client");
    let mut overflow = batch(2, Compression::None);
    overflow[..8].copy_from_slice(&i64::MAX.to_be_bytes());
    assert_eq!(refused(&overflow, &rules()).code, INVALID_RECORD, "offset overflow");
}

#[test]
fn a_zip_bomb_is_refused_within_the_bound() {
    // One record whose 16 MiB value is zeros: each codec shrinks it to a few KiB.
    let records = vec![record(0, Some("k"), &vec![0u8; 16 << 20])];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let b = encode(&records, codec);
        assert!(b.len() < 1 << 20, "{codec:?}: {} bytes", b.len());
        let bounded = Rules { max_decompressed_bytes: 1 << 20, ..rules() };
        let r = refused(&b, &bounded);
        assert_eq!(r.code, MESSAGE_TOO_LARGE, "{codec:?}: {r:?}");
    }
}

#[test]
fn truncated_and_padded_compressed_streams_are_corrupt() {
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd, Compression::Snappy] {
        let good = batch(20, codec);
        // Cut the compressed data short by 3 bytes.
        let mut cut = good[..good.len() - 3].to_vec();
        let len = (cut.len() - 12) as i32;
        cut[8..12].copy_from_slice(&len.to_be_bytes());
        recrc(&mut cut);
        let r = refused(&cut, &rules());
        assert!(matches!(r.code, CORRUPT_MESSAGE | INVALID_RECORD), "{codec:?} cut: {r:?}");
        // Garbage after the compressed data.
        let mut padded = good.clone();
        padded.extend_from_slice(b"garbage!");
        let len = (padded.len() - 12) as i32;
        padded[8..12].copy_from_slice(&len.to_be_bytes());
        recrc(&mut padded);
        let r = refused(&padded, &rules());
        assert!(matches!(r.code, CORRUPT_MESSAGE | INVALID_RECORD), "{codec:?} padded: {r:?}");
    }
}

#[test]
fn records_larger_than_the_stream_buffer_are_assembled() {
    // Values of 200 KiB: larger than the 64 KiB chunks the decompressors are read in.
    let records: Vec<Record> =
        (0..3).map(|i| record(i, Some("k"), &vec![b'a' + i as u8; 200 << 10])).collect();
    for codec in CODECS {
        let b = encode(&records, codec);
        let big = Rules { max_batch_bytes: 4 << 20, ..rules() };
        assert_eq!(validate_produce(&b, &big), Ok(Accepted::AsSent), "{codec:?}");
        let to = Rules {
            recompress: Some(Codec { compression: Compression::Gzip, level: Some(1) }),
            ..big
        };
        if codec != Compression::Gzip {
            let Accepted::Rewritten(out) = validate_produce(&b, &to).unwrap() else { panic!() };
            assert_eq!(decoded(&out), decoded(&b), "{codec:?}");
        }
    }
}

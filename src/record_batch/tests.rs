use kafka_protocol::records::Compression as KCompression;

use super::testing::{batch, batch_with};
use super::*;

const MAX: usize = 1 << 20;

#[test]
fn parse_reads_every_field() {
    let b = batch(10, 100, 1_000);
    let h = BatchHeader::parse(&b).unwrap();
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.total_bytes(), b.len());
    assert_eq!(h.magic, 2);
    assert_eq!(h.record_count, 10);
    assert_eq!(h.last_offset_delta, 9);
    assert_eq!(h.last_offset(), 9);
    assert_eq!(h.base_timestamp, 1_000);
    assert_eq!(h.max_timestamp, 1_009);
    assert_eq!(h.producer_id, -1);
    assert_eq!(h.compression(), Some(Compression::None));
    assert_eq!(h.timestamp_type(), BatchTimestampType::CreateTime);
    assert!(!h.is_transactional());
    assert!(!h.is_control());
}

#[test]
fn validate_accepts_good_batches() {
    let plain = batch(100, 100, 5);
    assert_eq!(validate(&plain, MAX).unwrap().record_count, 100);
    let gz = batch_with(100, 100, 5, KCompression::Gzip);
    assert_eq!(validate(&gz, MAX).unwrap().compression(), Some(Compression::Gzip));
}

#[test]
fn every_flipped_byte_after_magic_is_detected() {
    let good = batch(3, 20, 5);
    for i in CRC_AT..good.len() {
        let mut bad = good.to_vec();
        bad[i] ^= 0x40;
        let err = validate(&bad, MAX).unwrap_err();
        assert_eq!(err.kafka_error_code(), error::CORRUPT_MESSAGE, "byte {i}: {err}");
    }
}

#[test]
fn validate_rejects_framing_errors() {
    let good = batch(3, 20, 5);
    let short = &good[..good.len() - 1];
    assert!(matches!(validate(short, MAX), Err(BatchError::LengthMismatch { .. })));
    assert!(matches!(validate(&good[..40], MAX), Err(BatchError::Truncated { .. })));
    let mut long = good.to_vec();
    long.push(0);
    assert!(matches!(validate(&long, MAX), Err(BatchError::LengthMismatch { .. })));
    let err = validate(&good, good.len() - 1).unwrap_err();
    assert!(matches!(err, BatchError::TooLarge { .. }));
    assert_eq!(err.kafka_error_code(), error::MESSAGE_TOO_LARGE);
    let zeros = vec![0u8; 100];
    assert!(validate(&zeros, MAX).is_err());
}

#[test]
fn validate_rejects_old_magic_and_bad_counts() {
    let mut old = batch(3, 20, 5).to_vec();
    old[MAGIC_AT] = 1;
    let err = validate(&old, MAX).unwrap_err();
    assert_eq!(err, BatchError::UnsupportedMagic { magic: 1 });
    assert_eq!(err.kafka_error_code(), error::UNSUPPORTED_FOR_MESSAGE_FORMAT);

    let mut bad_count = batch(3, 20, 5).to_vec();
    bad_count[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&7i32.to_be_bytes());
    let crc = compute_crc(&bad_count).unwrap();
    bad_count[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let err = validate(&bad_count, MAX).unwrap_err();
    assert!(matches!(err, BatchError::InvalidRecordCount { .. }));
    assert_eq!(err.kafka_error_code(), error::INVALID_RECORD);
}

#[test]
fn rewrites_keep_the_crc_valid() {
    let mut b = batch(5, 10, 5).to_vec();
    set_base_offset(&mut b, 1_000_000).unwrap();
    set_partition_leader_epoch(&mut b, 7).unwrap();
    let h = validate(&b, MAX).unwrap();
    assert_eq!(h.base_offset, 1_000_000);
    assert_eq!(h.last_offset(), 1_000_004);
    assert_eq!(h.partition_leader_epoch, 7);
    assert!(set_base_offset(&mut b[..7], 1).is_err());
}

#[test]
fn log_append_time_rewrite_recomputes_crc() {
    let mut b = batch(5, 10, 5).to_vec();
    set_log_append_time(&mut b, 99_000).unwrap();
    let h = validate(&b, MAX).unwrap();
    assert_eq!(h.timestamp_type(), BatchTimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp, 99_000);
    assert_eq!(first_offset_with_timestamp_at_or_after(&b, 50_000).unwrap(), Some((0, 99_000)));
    assert_eq!(first_offset_with_timestamp_at_or_after(&b, 99_001).unwrap(), None);
    let len = b.len();
    assert!(set_log_append_time(&mut b[..len - 1], 1).is_err());
}

#[test]
fn timestamp_search_decodes_records() {
    let mut b = batch(10, 10, 100).to_vec();
    set_base_offset(&mut b, 50).unwrap();
    assert_eq!(first_offset_with_timestamp_at_or_after(&b, 0).unwrap(), Some((50, 100)));
    assert_eq!(first_offset_with_timestamp_at_or_after(&b, 104).unwrap(), Some((54, 104)));
    assert_eq!(first_offset_with_timestamp_at_or_after(&b, 110).unwrap(), None);
    for codec in [KCompression::Gzip, KCompression::Snappy, KCompression::Lz4, KCompression::Zstd] {
        let compressed = batch_with(10, 10, 100, codec);
        let found = first_offset_with_timestamp_at_or_after(&compressed, 109);
        assert_eq!(found.unwrap(), Some((9, 109)), "{codec:?}");
        let found = first_offset_with_timestamp_at_or_after(&compressed, 103);
        assert_eq!(found.unwrap(), Some((3, 103)), "{codec:?}");
    }
    // A compressed body that does not decompress is an error, not a wrong answer: past the
    // 10-byte gzip header, 0xFF starts a deflate block of the reserved type 3.
    let mut garbage = batch_with(10, 10, 100, KCompression::Gzip).to_vec();
    garbage[HEADER_BYTES + 10..HEADER_BYTES + 20].fill(0xFF);
    assert!(first_offset_with_timestamp_at_or_after(&garbage, 109).is_err());
}

#[test]
fn batches_iterates_and_reports_truncation() {
    let mut buf = Vec::new();
    for i in 0..3 {
        let mut b = batch(2, 10, 5).to_vec();
        set_base_offset(&mut b, i * 2).unwrap();
        buf.extend_from_slice(&b);
    }
    let all: Vec<_> = Batches::new(&buf).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].0.base_offset, 4);
    assert_eq!(all[2].1.end, buf.len());
    let cut = &buf[..buf.len() - 3];
    let items: Vec<_> = Batches::new(cut).collect();
    assert_eq!(items.len(), 3);
    assert!(matches!(items[2], Err(BatchError::Truncated { .. })));
    assert_eq!(Batches::new(&[]).count(), 0);
}

#[test]
fn compaction_keeps_chosen_records_with_their_offsets() {
    use kafka_protocol::records::RecordBatchDecoder;
    let records =
        [(Some("a"), Some("1")), (Some("b"), Some("2")), (Some("a"), Some("3")), (Some("b"), None)];
    let batch = testing::keyed_batch(&records, 1000);
    let keys = record_keys(&batch).unwrap();
    let offsets: Vec<i64> = keys.iter().map(|k| k.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
    assert_eq!(keys[1].key.as_deref(), Some(&b"b"[..]));
    assert!(keys[3].tombstone);
    assert_eq!(retain(&batch, &keys, &[true; 4]).unwrap(), Compacted::Unchanged);
    assert_eq!(retain(&batch, &keys, &[false; 4]).unwrap(), Compacted::Dropped);
    let Compacted::Rebuilt(rebuilt) = retain(&batch, &keys, &[false, false, true, true]).unwrap()
    else {
        panic!("expected a rebuilt batch");
    };
    let header = validate_stored(&rebuilt, usize::MAX).unwrap();
    assert!(validate(&rebuilt, usize::MAX).is_err(), "the count no longer spans the offsets");
    assert_eq!(header.record_count, 2);
    assert_eq!(header.last_offset_delta, 3);
    let mut buf = &rebuilt[..];
    let set = RecordBatchDecoder::decode(&mut buf).unwrap();
    let kept: Vec<(i64, Option<&[u8]>)> =
        set.records.iter().map(|r| (r.offset, r.value.as_deref())).collect();
    assert_eq!(kept, vec![(2, Some(&b"3"[..])), (3, None)]);
}

#[test]
fn record_keys_refuses_garbage_without_panicking() {
    let batch = testing::keyed_batch(&[(Some("k"), Some("v"))], 0);
    for cut in HEADER_BYTES..batch.len() {
        let mut bytes = batch.to_vec();
        bytes[cut] = 0xff;
        let _ = record_keys(&bytes);
    }
}

use bytes::Bytes;
use kafka_protocol::records::{Compression as KpCompression, RecordBatchDecoder};

use super::*;

fn build(compression: Compression, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(4096, compression, 1_700_000_000_000);
    for i in 0..n {
        let key = format!("k{i}");
        let stamp = (i as u64).to_be_bytes();
        let key = (i % 2 == 0).then_some(key.as_bytes());
        b.append(1_700_000_000_000 + i as i64, key, &[&stamp, b"payload-bytes"]);
    }
    assert_eq!(b.count(), n as i32);
    b.finish().expect("finish")
}

#[test]
fn round_trip_through_kafka_protocol_decoder() {
    let codecs = [
        (Compression::None, KpCompression::None),
        (Compression::Gzip, KpCompression::Gzip),
        (Compression::Snappy, KpCompression::Snappy),
        (Compression::Lz4, KpCompression::Lz4),
        (Compression::Zstd, KpCompression::Zstd),
    ];
    for (ours, theirs) in codecs {
        let mut bytes = build(ours, 300);
        let set = RecordBatchDecoder::decode(&mut bytes).expect("decodes");
        assert_eq!(set.compression, theirs);
        assert_eq!(set.records.len(), 300);
        for (i, r) in set.records.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
            let value = r.value.as_ref().expect("value");
            assert_eq!(&value[..8], &(i as u64).to_be_bytes());
            assert_eq!(&value[8..], b"payload-bytes");
            let key = (i % 2 == 0).then(|| Bytes::from(format!("k{i}")));
            assert_eq!(r.key, key);
            // The decoder reports baseSequence + offsetDelta; ours is -1 (no idempotence).
            assert_eq!((r.producer_id, r.sequence), (-1, i as i32 - 1));
        }
        let mut again = build(ours, 3);
        let info = RecordBatchDecoder::decode_batch_info(&mut again).expect("header");
        assert_eq!(info.len(), 1);
        assert_eq!((info[0].record_count, info[0].base_sequence), (3, -1));
    }
}

#[test]
fn size_accounting_matches_encoding() {
    let mut b = BatchBuilder::new(1024, Compression::None, 0);
    let predicted = b.record_size(Some(3), 100);
    b.append(0, Some(b"abc"), &[&[7u8; 100]]);
    assert_eq!(b.size_bytes(), HEADER_BYTES + predicted);
    let bytes = b.finish().expect("finish");
    assert_eq!(bytes.len(), HEADER_BYTES + predicted);
}

#[test]
fn reader_counts_values_and_rejects_corruption() {
    for codec in [Compression::None, Compression::Lz4] {
        let bytes = build(codec, 10);
        let header = read_header(&bytes, true).expect("valid").expect("whole");
        assert_eq!((header.record_count, header.next_offset()), (10, 10));
        assert_eq!(header.size_bytes, bytes.len());
        let mut stamps = Vec::new();
        for_each_value(&header, &bytes, |v| {
            let v = v.expect("value");
            stamps.push(u64::from_be_bytes(v[..8].try_into().expect("8 bytes")));
        })
        .expect("values");
        assert_eq!(stamps, (0..10).collect::<Vec<u64>>());
        assert_eq!(read_header(&bytes[..bytes.len() - 1], true), Ok(None));
    }
    let mut corrupt = build(Compression::None, 3).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(read_header(&corrupt, true), Err(BatchError::Crc));
}

use super::*;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

const APIS: &[ApiRange] = &[
    ApiRange { key: ApiKey::ApiVersions, min: 0, max: 4 },
    ApiRange { key: ApiKey::Metadata, min: 0, max: 12 },
];

fn lookup(key: ApiKey) -> Option<ApiRange> {
    APIS.iter().copied().find(|a| a.key == key)
}

fn frame(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42);
    let mut out = BytesMut::new();
    header.encode(&mut out, key.request_header_version(version)).unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

#[test]
fn parses_flexible_api_versions() {
    let req = ApiVersionsRequest::default();
    let parsed = parse_request(frame(ApiKey::ApiVersions, 3, &req), lookup).unwrap();
    assert_eq!(parsed.key, ApiKey::ApiVersions);
    assert_eq!(parsed.version, 3);
    assert_eq!(parsed.header.correlation_id, 42);
    assert!(matches!(parsed.body, RequestKind::ApiVersions(_)));
}

#[test]
fn unsupported_version_keeps_correlation_id() {
    let req = MetadataRequest::default();
    let err = parse_request(frame(ApiKey::Metadata, 13, &req), lookup).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::UnsupportedVersion {
            key: ApiKey::Metadata,
            version: 13,
            correlation_id: 42
        }
    ));
}

#[test]
fn unknown_and_unimplemented_keys_are_refused() {
    let mut raw = BytesMut::new();
    raw.put_i16(999);
    raw.put_i16(0);
    raw.put_i32(1);
    assert!(matches!(parse_request(raw.freeze(), lookup), Err(ProtocolError::UnsupportedApi(999))));
    let produce = kafka_protocol::messages::ProduceRequest::default();
    assert!(matches!(
        parse_request(frame(ApiKey::Produce, 3, &produce), lookup),
        Err(ProtocolError::UnsupportedApi(0))
    ));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let req = MetadataRequest::default().with_topics(None);
    let full = frame(ApiKey::Metadata, 12, &req);
    for len in 0..full.len() {
        assert!(parse_request(full.slice(..len), lookup).is_err(), "prefix {len}");
    }
    assert!(parse_request(full, lookup).is_ok());
}

#[test]
fn huge_array_length_does_not_allocate() {
    // Metadata v0: header v1, then topics: array of i32 length 0x7fffffff with no elements.
    let mut raw = BytesMut::new();
    raw.put_i16(ApiKey::Metadata as i16);
    raw.put_i16(0);
    raw.put_i32(7);
    raw.put_i16(-1); // null client id
    raw.put_i32(i32::MAX);
    assert!(matches!(parse_request(raw.freeze(), lookup), Err(ProtocolError::Malformed { .. })));
}

#[test]
fn frame_size_limits() {
    assert!(check_frame_size(-1, 1024).is_err());
    assert!(check_frame_size(7, 1024).is_err());
    assert!(check_frame_size(1025, 1024).is_err());
    assert_eq!(check_frame_size(1024, 1024).unwrap(), 1024);
}

#[test]
fn api_versions_v3_response_has_v0_header_and_no_default_tags() {
    let body = api_versions_response(APIS, 0);
    let out = encode_response(ApiKey::ApiVersions, 3, 7, &ResponseKind::ApiVersions(body)).unwrap();
    let size = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    assert_eq!(size + 4, out.len());
    // Header v0: just the correlation id, no tagged-field byte after it.
    assert_eq!(&out[4..8], &7i32.to_be_bytes());
    assert_eq!(&out[8..10], &0i16.to_be_bytes());
    // Kafka omits default-valued top-level tagged fields: the body ends in one empty tag buffer.
    assert_eq!(out[out.len() - 1], 0);
}

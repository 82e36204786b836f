//! Kafka wire framing: request parsing and response encoding, pure and synchronous.
//!
//! A request frame is `i32 size` followed by `size` bytes: a request header (api key, api
//! version, correlation id, client id, tagged fields from header v2) and the request body. The
//! codecs come from the `kafka-protocol` crate; this module decides what is acceptable before
//! handing bytes to them: frame sizes, API keys and versions we implement. Record data stays as
//! the `Bytes` slices the codec cuts out of the frame, never copied or re-encoded here; on the
//! way out a Fetch response's record sets stay the handler's `Bytes` ([`Chunks`]).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub use kafka_protocol::error::ResponseError;

mod chunks;
pub use chunks::{encode_response_chunks, encode_response_spliced, Chunks, SPLICE_BYTES_MIN};

/// Bytes of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// Smallest request body: api key (2) + api version (2) + correlation id (4).
pub const REQUEST_HEADER_BYTES_MIN: usize = 8;

/// Versions of one API that the broker implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// Lowest version implemented.
    pub min: i16,
    /// Highest version implemented.
    pub max: i16,
}

/// Why a request frame was not turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The size prefix is negative, too small for a header, or above the configured maximum.
    #[error("frame of {size} bytes is outside [{min}, {max}]")]
    FrameSize {
        /// Size the client announced.
        size: i64,
        /// Smallest frame accepted.
        min: usize,
        /// Largest frame accepted.
        max: usize,
    },
    /// The API key is not one Kafka defines, or one this broker does not implement.
    #[error("api key {0} is not supported")]
    UnsupportedApi(i16),
    /// The API is implemented but not at this version (ApiVersions gets an answer instead).
    #[error("{key:?} v{version} is not supported")]
    UnsupportedVersion {
        /// The API.
        key: ApiKey,
        /// The version asked for.
        version: i16,
        /// Correlation id, to answer ApiVersions.
        correlation_id: i32,
    },
    /// Header or body did not decode.
    #[error("malformed {key:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        key: ApiKey,
        /// The version.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
}

/// A decoded request: its header and body, and the API key and version they were decoded with.
#[derive(Debug)]
pub struct Request {
    /// The API.
    pub key: ApiKey,
    /// The version of the API.
    pub version: i16,
    /// The decoded header (correlation id, client id).
    pub header: RequestHeader,
    /// The decoded body.
    pub body: RequestKind,
    /// Produce only: the whole frame, of which the body's records are slices. The produce
    /// handler takes the records over without a copy when nothing else holds the frame (the
    /// header's client id is a copy for this reason). `None` for other requests.
    pub frame: Option<Bytes>,
}

/// Checks a frame's size prefix before any buffer is allocated for it.
pub fn check_frame_size(size: i32, max: usize) -> Result<usize, ProtocolError> {
    let size_ok = size >= REQUEST_HEADER_BYTES_MIN as i32 && (size as i64) <= max as i64;
    if !size_ok {
        return Err(ProtocolError::FrameSize {
            size: size.into(),
            min: REQUEST_HEADER_BYTES_MIN,
            max,
        });
    }
    Ok(size as usize)
}

/// Decodes one request frame (without its size prefix).
///
/// `supported` gives the implemented version range of an API, or `None` when the API is not
/// implemented. The frame must hold at least [`REQUEST_HEADER_BYTES_MIN`] bytes, which
/// [`check_frame_size`] guarantees.
pub fn parse_request(
    mut frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<ApiRange>,
) -> Result<Request, ProtocolError> {
    if frame.len() < REQUEST_HEADER_BYTES_MIN {
        return Err(ProtocolError::FrameSize {
            size: frame.len() as i64,
            min: REQUEST_HEADER_BYTES_MIN,
            max: usize::MAX,
        });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| ProtocolError::UnsupportedApi(raw_key))?;
    let range = supported(key).ok_or(ProtocolError::UnsupportedApi(raw_key))?;
    if version < range.min || version > range.max {
        return Err(ProtocolError::UnsupportedVersion { key, version, correlation_id });
    }
    let malformed =
        |e: anyhow::Error| ProtocolError::Malformed { key, version, reason: format!("{e:#}") };
    let whole = (key == ApiKey::Produce).then(|| frame.clone());
    let mut header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(key, &mut frame, version).map_err(malformed)?;
    if whole.is_some() {
        // A slice of the frame would keep the records from being the frame's only users.
        header.client_id = header.client_id.map(|id| StrBytes::from_string(id.to_string()));
    }
    Ok(Request { key, version, header, body, frame: whole })
}

/// The header version of a response. ApiVersions answers always use header v0 (KIP-511), so
/// that a client that sent a version we do not know can still read the answer.
fn response_header_version(key: ApiKey, version: i16) -> i16 {
    if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    }
}

/// Encodes a request frame, size prefix included (the client side: admin commands and
/// broker-to-broker calls).
pub fn encode_request(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<StrBytes>,
    body: &RequestKind,
) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, key.request_header_version(version))?;
    body.encode(&mut frame, version)?;
    let size = i32::try_from(frame.len() - FRAME_PREFIX_BYTES)?;
    frame[..FRAME_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

/// Decodes a response frame (without its size prefix) to the request `key`/`version` with
/// `correlation_id`; an answer to another request is an error.
pub fn decode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> anyhow::Result<ResponseKind> {
    let header = ResponseHeader::decode(&mut frame, response_header_version(key, version))?;
    if header.correlation_id != correlation_id {
        anyhow::bail!("correlation id {} answered request {correlation_id}", header.correlation_id);
    }
    ResponseKind::decode(key, &mut frame, version)
}

/// Encodes a response frame, size prefix included.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<BytesMut> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = response_header_version(key, version);
    let size = header.compute_size(header_version)? + body_size(body, version)?;
    let mut out = BytesMut::with_capacity(FRAME_PREFIX_BYTES + size);
    out.put_i32(i32::try_from(size)?);
    header.encode(&mut out, header_version)?;
    body.encode(&mut out, version)?;
    debug_assert_eq!(out.len(), FRAME_PREFIX_BYTES + size);
    Ok(out)
}

fn body_size(body: &ResponseKind, version: i16) -> anyhow::Result<usize> {
    // ResponseKind has no compute_size; every variant's message has one.
    macro_rules! sizes {
        ($($variant:ident),*) => {
            match body {
                $(ResponseKind::$variant(m) => m.compute_size(version),)*
                _ => anyhow::bail!("no size for this response kind"),
            }
        };
    }
    sizes!(
        ApiVersions,
        Metadata,
        Produce,
        Fetch,
        ListOffsets,
        OffsetForLeaderEpoch,
        CreateTopics,
        DeleteTopics,
        CreatePartitions,
        DescribeConfigs,
        AlterConfigs,
        IncrementalAlterConfigs,
        DeleteRecords,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        DescribeCluster,
        WriteTxnMarkers,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeClientQuotas,
        AlterClientQuotas,
        SaslHandshake,
        SaslAuthenticate,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        // Cluster operations (issue 19).
        ElectLeaders,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        UnregisterBroker,
        BrokerRegistration,
        DescribeQuorum,
        DescribeLogDirs,
        AlterReplicaLogDirs,
        DescribeTopicPartitions,
        ListConfigResources,
        // Share groups (KIP-932).
        ShareGroupHeartbeat,
        ShareGroupDescribe,
        ShareFetch,
        ShareAcknowledge,
        DescribeShareGroupOffsets,
        AlterShareGroupOffsets,
        DeleteShareGroupOffsets,
        ReadShareGroupState,
        WriteShareGroupState,
        InitializeShareGroupState,
        DeleteShareGroupState,
        ReadShareGroupStateSummary,
        // KIP-848 consumer groups.
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe
    )
}

/// The ApiVersions v0 answer to a request for a version we do not implement (KIP-511): error
/// UNSUPPORTED_VERSION plus our ranges, so the client can pick a version and retry.
pub fn unsupported_api_versions(
    correlation_id: i32,
    apis: &[ApiRange],
) -> anyhow::Result<BytesMut> {
    let body = api_versions_response(apis, ResponseError::UnsupportedVersion.code());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(body))
}

/// ApiVersions response listing `apis` with `error_code`.
pub fn api_versions_response(apis: &[ApiRange], error_code: i16) -> ApiVersionsResponse {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    let api_keys = apis
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

#[cfg(test)]
mod tests;

/// Java's `String.hashCode` (over UTF-16 code units, wrapping arithmetic), as Kafka uses to
/// place a coordinator key on a partition of its internal topic.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The partition of an internal topic (`__consumer_offsets`, `__transaction_state`) that
/// coordinates `key` (a group id or a transactional id) among `partitions`: Kafka's
/// `Utils.abs(key.hashCode) % partitions`, where `abs(i32::MIN)` is 0.
pub fn coordinator_partition(key: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let hash = java_string_hash(key);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

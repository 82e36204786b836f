//! Producing and consuming records of one topic, for `strata produce` and `strata consume`.
//!
//! A [`Router`] keeps the topic's partition leaders (from Metadata) and one [`Client`] per
//! leader broker, connected to the address the broker advertises. [`Producer`] sends one
//! Produce per leader, with one RecordBatch v2 per partition (kafka-protocol's encoder);
//! [`Consumer`] long-polls one Fetch per leader and decodes the batches. Both refresh the
//! leaders and retry when a broker answers that it is not (or no longer) the leader.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::admin::{EARLIEST, LATEST};
use super::{protocol, Client, ClientError};
use crate::record_batch::partition::partition_for_key;
use crate::record_batch::{AbortedFilter, Batches};

/// Error codes after which refreshing the leaders and trying again may succeed.
const RETRIABLE: &[i16] = &[
    3,  // UNKNOWN_TOPIC_OR_PARTITION (a broker not yet told about a new topic)
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    7,  // REQUEST_TIMED_OUT
    13, // NETWORK_EXCEPTION
    19, // NOT_ENOUGH_REPLICAS
    20, // NOT_ENOUGH_REPLICAS_AFTER_APPEND
    74, // FENCED_LEADER_EPOCH
    75, // UNKNOWN_LEADER_EPOCH
];
/// OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// How many times a request is tried before its error is returned.
const ATTEMPTS: u32 = 8;
/// Pause before a retry, times the attempt number.
const BACKOFF: Duration = Duration::from_millis(100);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn retriable(e: &ClientError) -> bool {
    match e {
        ClientError::Kafka { code, .. } => RETRIABLE.contains(code),
        ClientError::Io { .. } => true,
        _ => false,
    }
}

/// The Java name of a Kafka error code (`UNKNOWN_TOPIC_OR_PARTITION`), or `code N`.
pub fn error_name(code: i16) -> String {
    let error = kafka_protocol::error::ResponseError::try_from_code(code);
    let Some(error) = error.filter(|e| !format!("{e:?}").contains('(')) else {
        return format!("code {code}");
    };
    let mut name = String::new();
    for (i, c) in format!("{error:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// `e` with a Kafka error code named as the Java client names it.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Kafka { context, code, .. } => {
            format!("{context}: {} (error code {code})", error_name(*code))
        }
        e => e.to_string(),
    }
}

/// Partition of a record: `partition` if given, else murmur2 of the key (the Java client's
/// partitioner), else `sticky` (the caller's choice for records without a key).
pub fn choose_partition(
    partition: Option<i32>,
    key: Option<&[u8]>,
    partitions: i32,
    sticky: i32,
) -> i32 {
    match (partition, key) {
        (Some(p), _) => p,
        (None, Some(key)) => partition_for_key(key, partitions),
        (None, None) => sticky,
    }
}

/// The leaders of one topic's partitions and connections to them.
pub struct Router {
    bootstrap: String,
    client_id: String,
    connector: super::Connector,
    topic: String,
    /// Partition → leader node id (-1 when it has none).
    leaders: BTreeMap<i32, i32>,
    /// Node id → advertised `host:port`.
    brokers: HashMap<i32, String>,
    /// Node id → connection (the bootstrap connection is kept under -1).
    conns: HashMap<i32, Client>,
}

impl Router {
    /// Connects to `bootstrap` and reads `topic`'s leaders; fails if the topic does not exist.
    pub fn connect(bootstrap: &str, client_id: &str, topic: &str) -> Result<Router, ClientError> {
        Router::connect_secure(bootstrap, client_id, topic, &super::Connector::default())
    }

    /// As [`Router::connect`], every connection opened as `connector` says (TLS, SASL).
    pub fn connect_secure(
        bootstrap: &str,
        client_id: &str,
        topic: &str,
        connector: &super::Connector,
    ) -> Result<Router, ClientError> {
        let mut router = Router {
            bootstrap: bootstrap.to_owned(),
            client_id: client_id.to_owned(),
            connector: connector.clone(),
            topic: topic.to_owned(),
            leaders: BTreeMap::new(),
            brokers: HashMap::new(),
            conns: HashMap::new(),
        };
        router.refresh()?;
        Ok(router)
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic's partition numbers, sorted.
    pub fn partitions(&self) -> Vec<i32> {
        self.leaders.keys().copied().collect()
    }

    /// Reads the leaders again (Metadata on the bootstrap broker). A topic-level
    /// LEADER_NOT_AVAILABLE (a topic still being created) is waited out a few times.
    pub fn refresh(&mut self) -> Result<(), ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.metadata() {
                Err(e) if retriable(&e) && attempt < ATTEMPTS && !unknown_topic(&e) => {
                    self.conns.remove(&-1);
                    std::thread::sleep(BACKOFF * attempt);
                }
                other => return other,
            }
        }
    }

    fn metadata(&mut self) -> Result<(), ClientError> {
        let wanted = metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(s(&self.topic))));
        let req = MetadataRequest::default()
            .with_topics(Some(vec![wanted]))
            .with_allow_auto_topic_creation(false);
        let conn = self.bootstrap_conn()?;
        let (_, ResponseKind::Metadata(r)) =
            conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))?
        else {
            return Err(protocol("Metadata answered with another message"));
        };
        let t = r.topics.first().ok_or_else(|| protocol("no topic in Metadata answer"))?;
        ClientError::check(t.error_code, format!("topic {}", self.topic))?;
        if t.partitions.is_empty() {
            return Err(protocol(format!("topic {} has no partitions", self.topic)));
        }
        self.brokers =
            r.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
        self.leaders = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
        Ok(())
    }

    fn bootstrap_conn(&mut self) -> Result<&mut Client, ClientError> {
        if !self.conns.contains_key(&-1) {
            let conn = Client::connect_secure(&self.bootstrap, &self.client_id, &self.connector)?;
            self.conns.insert(-1, conn);
        }
        self.conns.get_mut(&-1).ok_or_else(|| protocol("no bootstrap connection"))
    }

    /// `partitions` grouped by leader node id; a partition without a leader (or an unknown
    /// partition) is an error with the code the broker would give.
    fn by_leader(&self, partitions: &[i32]) -> Result<BTreeMap<i32, Vec<i32>>, ClientError> {
        let mut out: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let what = || format!("{}-{p}", self.topic);
            match self.leaders.get(p) {
                None => ClientError::check(3, what())?,
                Some(leader) if *leader < 0 => ClientError::check(5, what())?,
                Some(leader) => out.entry(*leader).or_default().push(*p),
            }
        }
        Ok(out)
    }

    /// The connection to broker `node`, opened on first use at its advertised address.
    fn conn(&mut self, node: i32) -> Result<&mut Client, ClientError> {
        if !self.conns.contains_key(&node) {
            let addr = self
                .brokers
                .get(&node)
                .ok_or_else(|| protocol(format!("leader {node} is not among the brokers")))?;
            let conn = Client::connect_secure(addr, &self.client_id, &self.connector)?;
            self.conns.insert(node, conn);
        }
        self.conns.get_mut(&node).ok_or_else(|| protocol("no connection"))
    }

    /// Forgets the connection to `node` (after an I/O error).
    fn drop_conn(&mut self, node: i32) {
        self.conns.remove(&node);
    }
}

fn unknown_topic(e: &ClientError) -> bool {
    matches!(e, ClientError::Kafka { code: 3, .. })
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct OutRecord {
    /// Key, or none.
    pub key: Option<Bytes>,
    /// Value, or none (a tombstone).
    pub value: Option<Bytes>,
}

impl OutRecord {
    /// Bytes it adds to a batch, roughly.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + 16
    }
}

/// How a [`Producer`] sends.
#[derive(Debug, Clone, Copy)]
pub struct ProduceOptions {
    /// 0 (no answer), 1 (the leader's) or -1 (all in-sync replicas).
    pub acks: i16,
    /// Batch compression.
    pub compression: Compression,
    /// How long the leader may wait for replicas.
    pub timeout_ms: i32,
}

/// One RecordBatch v2 of `records`, timestamped `timestamp` (ms), without idempotence.
pub fn encode_batch(
    records: &[OutRecord],
    timestamp: i64,
    compression: Compression,
) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where `offset - sequence` changes; the batch's
            // base sequence is the first record's: -1, no idempotence.
            sequence: i as i32 - 1,
            timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression };
    RecordBatchEncoder::encode(&mut out, &records, &options).map_err(protocol)?;
    Ok(out.freeze())
}

/// A partition's answer to Produce: its base offset or its error.
type PartitionAnswer = (i32, Result<i64, ClientError>);

/// Sends batches of records to their partitions' leaders.
pub struct Producer {
    router: Router,
    options: ProduceOptions,
}

impl Producer {
    /// A producer of `router`'s topic.
    pub fn new(router: Router, options: ProduceOptions) -> Producer {
        Producer { router, options }
    }

    /// The topic's routing (partitions, leaders).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Sends each partition's records as one batch, retrying after leader changes, and
    /// returns each partition's base offset (-1 with acks=0, which gets no answer).
    pub fn send(
        &mut self,
        batches: &BTreeMap<i32, Vec<OutRecord>>,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut encoded = BTreeMap::new();
        for (p, records) in batches.iter().filter(|(_, r)| !r.is_empty()) {
            encoded.insert(*p, encode_batch(records, now, self.options.compression)?);
        }
        let mut offsets = BTreeMap::new();
        let mut attempt = 0;
        while !encoded.is_empty() {
            attempt += 1;
            let partitions: Vec<i32> = encoded.keys().copied().collect();
            let mut failure = None;
            for (leader, parts) in self.router.by_leader(&partitions)? {
                match self.send_to(leader, &parts, &encoded) {
                    Ok(answers) => {
                        for (p, result) in answers {
                            match result {
                                Ok(offset) => {
                                    offsets.insert(p, offset);
                                    encoded.remove(&p);
                                }
                                Err(e) => failure = Some(e),
                            }
                        }
                    }
                    Err(e) => {
                        self.router.drop_conn(leader);
                        failure = Some(e);
                    }
                }
            }
            if let Some(e) = failure {
                if !retriable(&e) || attempt >= ATTEMPTS {
                    return Err(e);
                }
                std::thread::sleep(BACKOFF * attempt);
                self.router.refresh()?;
            }
        }
        Ok(offsets)
    }

    /// One Produce of `parts` to `leader`: per partition, its base offset or its error.
    fn send_to(
        &mut self,
        leader: i32,
        parts: &[i32],
        encoded: &BTreeMap<i32, Bytes>,
    ) -> Result<Vec<PartitionAnswer>, ClientError> {
        let data = parts
            .iter()
            .map(|p| {
                produce_request::PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(encoded.get(p).cloned())
            })
            .collect();
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(s(self.router.topic())))
            .with_partition_data(data);
        let req = ProduceRequest::default()
            .with_acks(self.options.acks)
            .with_timeout_ms(self.options.timeout_ms)
            .with_topic_data(vec![topic]);
        let conn = self.router.conn(leader)?;
        if self.options.acks == 0 {
            conn.send_only(ApiKey::Produce, 9, RequestKind::Produce(req))?;
            return Ok(parts.iter().map(|p| (*p, Ok(-1))).collect());
        }
        let (_, ResponseKind::Produce(r)) =
            conn.call(ApiKey::Produce, 9, RequestKind::Produce(req))?
        else {
            return Err(protocol("Produce answered with another message"));
        };
        let topic = self.router.topic();
        let mut out = Vec::new();
        for p in r.responses.iter().flat_map(|t| t.partition_responses.iter()) {
            let what = format!("producing to {topic}-{}", p.index);
            let what = match &p.error_message {
                Some(m) if !m.is_empty() => format!("{what} ({m})"),
                _ => what,
            };
            out.push((p.index, ClientError::check(p.error_code, what).map(|()| p.base_offset)));
        }
        Ok(out)
    }
}

impl Client {
    /// Sends a request that gets no answer (Produce with acks=0).
    fn send_only(
        &mut self,
        key: ApiKey,
        preferred: i16,
        body: RequestKind,
    ) -> Result<(), ClientError> {
        let version = self.version(key, preferred)?;
        self.correlation = self.correlation.wrapping_add(1);
        let client_id = Some(StrBytes::from_string(self.client_id.clone()));
        let frame =
            crate::protocol::encode_request(key, version, self.correlation, client_id, &body)
                .map_err(protocol)?;
        let io = |source| ClientError::Io { context: format!("{key:?} request"), source };
        self.stream.write_all(&frame).map_err(io)
    }
}

/// Where a [`Consumer`] starts, and where it goes back to when its offset is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The log start offset.
    Earliest,
    /// The log end offset: only records produced from now on.
    Latest,
    /// This offset (clamped into the log when out of range).
    Offset(i64),
}

/// A consumed record.
#[derive(Debug, Clone)]
pub struct InRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key, or none.
    pub key: Option<Bytes>,
    /// Value, or none.
    pub value: Option<Bytes>,
}

/// How a [`Consumer`] fetches.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeOptions {
    /// Where to start.
    pub start: StartAt,
    /// 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
    /// How long a Fetch may wait for records.
    pub max_wait_ms: i32,
    /// Bytes per partition per Fetch.
    pub partition_max_bytes: i32,
}

/// Reads partitions of one topic from their leaders, without a consumer group.
pub struct Consumer {
    router: Router,
    options: ConsumeOptions,
    /// Partition → next offset to fetch.
    positions: BTreeMap<i32, i64>,
}

impl Consumer {
    /// A consumer of `partitions` (all when empty) of `router`'s topic, at `options.start`.
    pub fn new(
        router: Router,
        partitions: &[i32],
        options: ConsumeOptions,
    ) -> Result<Consumer, ClientError> {
        let all = router.partitions();
        let partitions = if partitions.is_empty() { all.clone() } else { partitions.to_vec() };
        if let Some(p) = partitions.iter().find(|p| !all.contains(p)) {
            ClientError::check(3, format!("{}-{p}", router.topic()))?;
        }
        let mut consumer = Consumer { router, options, positions: BTreeMap::new() };
        consumer.reset(&partitions)?;
        Ok(consumer)
    }

    /// Next offset to fetch of each partition read.
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// Moves `partitions` to [`ConsumeOptions::start`], clamped into each log.
    fn reset(&mut self, partitions: &[i32]) -> Result<(), ClientError> {
        let earliest = self.list_offsets(partitions, EARLIEST)?;
        let latest = self.list_offsets(partitions, LATEST)?;
        for p in partitions {
            let (low, high) = (earliest.get(p).copied(), latest.get(p).copied());
            let (low, high) = (low.unwrap_or(0).max(0), high.unwrap_or(0).max(0));
            let offset = match self.options.start {
                StartAt::Earliest => low,
                StartAt::Latest => high,
                StartAt::Offset(n) => n.clamp(low, high.max(low)),
            };
            self.positions.insert(*p, offset);
        }
        Ok(())
    }

    /// ListOffsets of `partitions` on their leaders, retried after leader changes.
    fn list_offsets(
        &mut self,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let mut out = BTreeMap::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wanted: Vec<i32> =
                partitions.iter().copied().filter(|p| !out.contains_key(p)).collect();
            if wanted.is_empty() {
                return Ok(out);
            }
            let mut failure = None;
            for (leader, parts) in self.router.by_leader(&wanted)? {
                let topic = self.router.topic().to_owned();
                let result = self
                    .router
                    .conn(leader)
                    .and_then(|conn| conn.list_offsets(&topic, &parts, timestamp));
                match result {
                    Ok(offsets) => out.extend(offsets),
                    Err(e) => {
                        if matches!(e, ClientError::Io { .. }) {
                            self.router.drop_conn(leader);
                        }
                        failure = Some(e);
                    }
                }
            }
            if let Some(e) = failure {
                if !retriable(&e) || attempt >= ATTEMPTS {
                    return Err(e);
                }
                std::thread::sleep(BACKOFF * attempt);
                self.router.refresh()?;
            }
        }
    }

    /// One round of Fetches (one per leader, each waiting up to `max_wait_ms` for records):
    /// the records read, in offset order per partition. Control records and, with
    /// read_committed, records of aborted transactions are left out.
    pub fn poll(&mut self) -> Result<Vec<InRecord>, ClientError> {
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let mut out = Vec::new();
        let mut stale = false;
        let mut out_of_range = Vec::new();
        for (leader, parts) in self.router.by_leader(&partitions)? {
            match self.fetch_from(leader, &parts, &mut out) {
                Ok(errors) => {
                    for (p, e) in errors {
                        match e {
                            ClientError::Kafka { code: OFFSET_OUT_OF_RANGE, .. } => {
                                out_of_range.push(p)
                            }
                            e if retriable(&e) => stale = true,
                            e => return Err(e),
                        }
                    }
                }
                Err(e) if retriable(&e) => {
                    self.router.drop_conn(leader);
                    stale = true;
                }
                Err(e) => return Err(e),
            }
        }
        if !out_of_range.is_empty() {
            self.reset(&out_of_range)?;
        }
        if stale {
            std::thread::sleep(BACKOFF);
            self.router.refresh()?;
        }
        Ok(out)
    }

    /// One Fetch of `parts` from `leader`; appends records to `out`, advances positions and
    /// returns the partitions that answered with an error.
    fn fetch_from(
        &mut self,
        leader: i32,
        parts: &[i32],
        out: &mut Vec<InRecord>,
    ) -> Result<Vec<(i32, ClientError)>, ClientError> {
        let wanted = parts
            .iter()
            .map(|p| {
                fetch_request::FetchPartition::default()
                    .with_partition(*p)
                    .with_fetch_offset(self.positions.get(p).copied().unwrap_or(0))
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(self.options.partition_max_bytes)
            })
            .collect();
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(s(self.router.topic())))
            .with_partitions(wanted);
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(self.options.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(self.options.partition_max_bytes.saturating_mul(4))
            .with_isolation_level(self.options.isolation_level)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let conn = self.router.conn(leader)?;
        let (_, ResponseKind::Fetch(r)) = conn.call(ApiKey::Fetch, 12, RequestKind::Fetch(req))?
        else {
            return Err(protocol("Fetch answered with another message"));
        };
        ClientError::check(r.error_code, "Fetch")?;
        let mut errors = Vec::new();
        for p in r.responses.iter().flat_map(|t| t.partitions.iter()) {
            let index = p.partition_index;
            let what = format!("fetching {}-{index}", self.router.topic());
            if let Err(e) = ClientError::check(p.error_code, what) {
                errors.push((index, e));
                continue;
            }
            let Some(position) = self.positions.get_mut(&index) else { continue };
            let aborted: Vec<(i64, i64)> = p
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            let data = p.records.clone().unwrap_or_default();
            *position = decode(index, &data, *position, &aborted, out)?;
        }
        Ok(errors)
    }
}

/// Decodes the batches of `data` (the last one may be cut short), appending the records at
/// or after `from` to `out` except control records and those of `aborted` transactions
/// ((producer id, first offset), read_committed); returns the next offset to fetch.
fn decode(
    partition: i32,
    data: &Bytes,
    from: i64,
    aborted: &[(i64, i64)],
    out: &mut Vec<InRecord>,
) -> Result<i64, ClientError> {
    let mut next = from;
    let mut filter = AbortedFilter::new(aborted.iter().copied());
    for batch in Batches::new(data) {
        let Ok((header, range)) = batch else { break };
        // Every batch goes through the filter, in order: it tracks the open aborted ones.
        let skipped = filter.skips(&header);
        if header.last_offset() < from {
            continue;
        }
        next = next.max(header.last_offset() + 1);
        if skipped {
            continue;
        }
        let mut bytes = data.slice(range);
        let set = RecordBatchDecoder::decode(&mut bytes).map_err(protocol)?;
        for r in set.records.into_iter().filter(|r| r.offset >= from && !r.control) {
            out.push(InRecord {
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
            });
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: Option<&str>, value: &str) -> OutRecord {
        OutRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
        }
    }

    #[test]
    fn batches_round_trip_and_skip_records_before_the_position() {
        let first = encode_batch(&[rec(Some("k"), "a"), rec(None, "b")], 7, Compression::None);
        let mut first = BytesMut::from(&first.unwrap()[..]);
        crate::record_batch::set_base_offset(&mut first, 10).unwrap();
        let second = encode_batch(&[rec(None, "c")], 8, Compression::Gzip).unwrap();
        let mut second = BytesMut::from(&second[..]);
        crate::record_batch::set_base_offset(&mut second, 12).unwrap();
        let mut data = BytesMut::new();
        data.extend_from_slice(&first);
        data.extend_from_slice(&second);
        // A cut-off trailing batch is ignored.
        data.extend_from_slice(&second[..20]);
        assert_eq!(Batches::new(&first).count(), 1, "one batch per partition and request");
        let mut out = Vec::new();
        let next = decode(0, &data.freeze(), 11, &[], &mut out).unwrap();
        assert_eq!(next, 13);
        let got: Vec<(i64, Option<Bytes>)> = out.into_iter().map(|r| (r.offset, r.value)).collect();
        assert_eq!(got, vec![(11, Some(Bytes::from("b"))), (12, Some(Bytes::from("c")))]);
    }

    #[test]
    fn error_codes_have_their_java_names() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-42), "code -42");
    }

    #[test]
    fn explicit_partition_wins_over_the_key() {
        assert_eq!(choose_partition(Some(2), Some(b"21"), 16, 0), 2);
        assert_eq!(choose_partition(None, Some(b"21"), 16, 0), 12);
        assert_eq!(choose_partition(None, None, 16, 5), 5);
    }
}

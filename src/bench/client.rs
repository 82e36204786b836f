//! Control-plane calls of the bench client: bootstrap through Metadata, topic creation, and
//! ListOffsets. One request at a time on a plain [`Conn`].

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::conn::Conn;

/// Kafka error code: the topic or partition does not exist.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka error code: the topic already exists.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// ListOffsets timestamp asking for the log end offset.
pub const LATEST: i64 = -1;
/// ListOffsets timestamp asking for the log start offset.
pub const EARLIEST: i64 = -2;
/// How long topic creation may take to show leaders in metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the partitions of the bench topic live.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Topic name.
    pub topic: String,
    /// Leader broker id of each partition, indexed by partition id.
    pub leaders: Vec<i32>,
    /// Broker addresses by id.
    pub brokers: HashMap<i32, SocketAddr>,
}

impl Layout {
    /// Number of partitions.
    pub fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    /// Address of the leader of `partition`.
    pub fn leader_addr(&self, partition: i32) -> anyhow::Result<SocketAddr> {
        let leader = self.leaders.get(partition as usize).copied().unwrap_or(-1);
        self.brokers
            .get(&leader)
            .copied()
            .ok_or_else(|| anyhow!("partition {partition} has no known leader ({leader})"))
    }
}

/// Resolves `host:port` strings.
pub fn resolve(brokers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for b in brokers {
        let addr = b
            .to_socket_addrs()
            .with_context(|| format!("resolving {b}"))?
            .next()
            .ok_or_else(|| anyhow!("{b} resolves to nothing"))?;
        out.push(addr);
    }
    Ok(out)
}

/// Connects to the first bootstrap broker that answers.
pub async fn bootstrap(brokers: &[SocketAddr]) -> anyhow::Result<Conn> {
    let mut last = anyhow!("no bootstrap brokers given");
    for addr in brokers {
        match Conn::open(*addr).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = e.context(format!("bootstrap {addr}")),
        }
    }
    Err(last)
}

/// Fetches metadata for `topic`.
pub async fn metadata(conn: &mut Conn, topic: &str) -> anyhow::Result<MetadataResponse> {
    let version = conn.versions.pick(ApiKey::Metadata, 1, 12)?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]))
        .with_allow_auto_topic_creation(false);
    conn.call(&request, version).await
}

/// Makes sure `topic` exists (creating it with `partitions` × `replication_factor` if missing)
/// and returns its layout once every partition has a leader.
pub async fn prepare_topic(
    conn: &mut Conn,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> anyhow::Result<Layout> {
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    let mut created = false;
    loop {
        let response = metadata(conn, topic).await?;
        let entry =
            response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
        let error = entry.map_or(UNKNOWN_TOPIC_OR_PARTITION, |t| t.error_code);
        if error == UNKNOWN_TOPIC_OR_PARTITION && !created {
            create_topic(conn, topic, partitions, replication_factor).await?;
            created = true;
        } else if error == 0 {
            if let Some(layout) = layout_of(&response, topic)? {
                return Ok(layout);
            }
        } else if error != UNKNOWN_TOPIC_OR_PARTITION {
            bail!("metadata for {topic}: error code {error}");
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leaders after {TOPIC_READY_TIMEOUT:?}");
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// The layout if every partition has a leader with a known address.
fn layout_of(response: &MetadataResponse, topic: &str) -> anyhow::Result<Option<Layout>> {
    let mut brokers = HashMap::new();
    for b in &response.brokers {
        let host = format!("{}:{}", b.host.as_str(), b.port);
        let addr = host.to_socket_addrs()?.next().ok_or_else(|| anyhow!("bad host {host}"))?;
        brokers.insert(b.node_id.0, addr);
    }
    let Some(entry) =
        response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    else {
        return Ok(None);
    };
    let count = entry.partitions.len();
    let mut leaders = vec![-1; count];
    for p in &entry.partitions {
        let slot = usize::try_from(p.partition_index)
            .ok()
            .and_then(|i| leaders.get_mut(i))
            .ok_or_else(|| anyhow!("partition index {} out of range", p.partition_index))?;
        *slot = p.leader_id.0;
    }
    let ready = count > 0 && leaders.iter().all(|l| brokers.contains_key(l));
    Ok(ready.then(|| Layout { topic: topic.to_string(), leaders, brokers }))
}

async fn create_topic(
    conn: &mut Conn,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> anyhow::Result<()> {
    let version = conn.versions.pick(ApiKey::CreateTopics, 2, 7)?;
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)])
        .with_timeout_ms(30_000);
    let response = conn.call(&request, version).await?;
    for t in &response.topics {
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            let message = t.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
            bail!("creating topic {topic}: error code {} {message}", t.error_code);
        }
    }
    eprintln!("created topic {topic} ({partitions} partitions, rf {replication_factor})");
    Ok(())
}

/// Offsets of `partitions` at `timestamp` ([`LATEST`] or [`EARLIEST`]).
pub async fn list_offsets(
    conn: &mut Conn,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<HashMap<i32, i64>> {
    let version = conn.versions.pick(ApiKey::ListOffsets, 1, 7)?;
    let parts = partitions
        .iter()
        .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp))
        .collect();
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(parts),
    ]);
    let response = conn.call(&request, version).await?;
    let mut offsets = HashMap::new();
    for t in response.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                bail!("ListOffsets {topic}/{}: error code {}", p.partition_index, p.error_code);
            }
            offsets.insert(p.partition_index, p.offset);
        }
    }
    Ok(offsets)
}

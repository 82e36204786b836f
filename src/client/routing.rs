//! Which broker to ask in a cluster, as Kafka's admin client does: the coordinator of a
//! group or transactional id (FindCoordinator), each partition's leader (Metadata), or every
//! broker (ListGroups and ListTransactions, which a broker answers for what it coordinates).
//! On a single broker every answer is the broker itself.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{protocol, Client, ClientError};

/// Where a partition lives, as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLayout {
    /// The leader's node id (-1 if none).
    pub leader: i32,
    /// Node ids of its replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Node ids of its in-sync replicas.
    pub isr: Vec<i32>,
}

/// A broker (`host:port`) that did not answer, and why.
pub type Unanswered = (String, ClientError);

/// The kind of key FindCoordinator looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinator {
    /// A consumer group id.
    Group,
    /// A transactional id.
    Transaction,
}

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: worth finding
/// the coordinator and asking again (it is being elected, loading, or just moved).
const COORDINATOR_RETRIABLE: [i16; 3] = [14, 15, 16];
/// How often, and how far apart, FindCoordinator is retried.
const COORDINATOR_ATTEMPTS: u32 = 20;
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(250);

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;

fn kafka(code: i16, context: String) -> ClientError {
    let error = kafka_protocol::error::ResponseError::try_from_code(code);
    ClientError::Kafka { context, code, error }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

impl Client {
    /// A new connection to `addr` with this client's id.
    pub fn connect_to(&self, addr: &str) -> Result<Client, ClientError> {
        Client::connect_secure(addr, &self.client_id, &self.connector)
    }

    /// The `host:port` of every broker the cluster's metadata lists, by node id.
    pub fn broker_addresses(&mut self) -> Result<Vec<String>, ClientError> {
        let r = self.metadata(Some(Vec::new()))?;
        let mut brokers: Vec<_> = r.brokers.iter().map(|b| (b.node_id.0, address(b))).collect();
        brokers.sort();
        Ok(brokers.into_iter().map(|(_, addr)| addr).collect())
    }

    /// `call` on a connection to every broker, answers concatenated; the brokers that could
    /// not be reached or failed are returned apart, with their error (a dead broker must not
    /// hide what the others answer).
    pub fn on_every_broker<T>(
        &mut self,
        mut call: impl FnMut(&mut Client) -> Result<Vec<T>, ClientError>,
    ) -> Result<(Vec<T>, Vec<Unanswered>), ClientError> {
        let mut answers = Vec::new();
        let mut failed = Vec::new();
        for addr in self.broker_addresses()? {
            match self.connect_to(&addr).and_then(|mut broker| call(&mut broker)) {
                Ok(found) => answers.extend(found),
                Err(e) => failed.push((addr, e)),
            }
        }
        Ok((answers, failed))
    }

    /// The leader of each partition of `topic`, as `host:port`; an error naming
    /// LEADER_NOT_AVAILABLE if a partition has none.
    pub fn leaders(&mut self, topic: &str) -> Result<BTreeMap<i32, String>, ClientError> {
        let wanted =
            metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))));
        let r = self.metadata(Some(vec![wanted]))?;
        let t = r.topics.first().ok_or_else(|| protocol("no topic in Metadata answer"))?;
        ClientError::check(t.error_code, format!("topic {topic}"))?;
        let brokers: BTreeMap<i32, String> =
            r.brokers.iter().map(|b| (b.node_id.0, address(b))).collect();
        let mut leaders = BTreeMap::new();
        for p in &t.partitions {
            let context = format!("leader of {topic}-{}", p.partition_index);
            ClientError::check(p.error_code, context.clone())?;
            let addr =
                brokers.get(&p.leader_id.0).ok_or_else(|| kafka(LEADER_NOT_AVAILABLE, context))?;
            leaders.insert(p.partition_index, addr.clone());
        }
        Ok(leaders)
    }

    /// The leader, replicas and ISR of each partition of `topic`.
    pub fn layout(&mut self, topic: &str) -> Result<BTreeMap<i32, PartitionLayout>, ClientError> {
        let wanted =
            metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))));
        let r = self.metadata(Some(vec![wanted]))?;
        let t = r.topics.first().ok_or_else(|| protocol("no topic in Metadata answer"))?;
        ClientError::check(t.error_code, format!("topic {topic}"))?;
        let ids = |ids: &[BrokerId]| ids.iter().map(|id| id.0).collect();
        Ok(t.partitions
            .iter()
            .map(|p| {
                let layout = PartitionLayout {
                    leader: p.leader_id.0,
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                };
                (p.partition_index, layout)
            })
            .collect())
    }

    /// A connection to the broker coordinating `key`, retrying while the coordinator is
    /// being elected or loading.
    pub fn coordinator(&mut self, kind: Coordinator, key: &str) -> Result<Client, ClientError> {
        let key_type = match kind {
            Coordinator::Group => 0,
            Coordinator::Transaction => 1,
        };
        let context = format!("finding the coordinator of {key}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = FindCoordinatorRequest::default().with_key(s(key)).with_key_type(key_type);
            let (_, ResponseKind::FindCoordinator(r)) =
                self.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req))?
            else {
                return Err(protocol("FindCoordinator answered with another message"));
            };
            if COORDINATOR_RETRIABLE.contains(&r.error_code) && attempt < COORDINATOR_ATTEMPTS {
                std::thread::sleep(COORDINATOR_BACKOFF);
                continue;
            }
            ClientError::check(r.error_code, context)?;
            return self.connect_to(&format!("{}:{}", r.host, r.port));
        }
    }

    /// `call` on a connection to the coordinator of `key`, found again and retried while the
    /// answer is a coordinator error worth retrying (so `call` should be safe to repeat).
    pub fn with_coordinator<T>(
        &mut self,
        kind: Coordinator,
        key: &str,
        mut call: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut coordinator = self.coordinator(kind, key)?;
            match call(&mut coordinator) {
                Err(ClientError::Kafka { code, .. })
                    if COORDINATOR_RETRIABLE.contains(&code) && attempt < COORDINATOR_ATTEMPTS =>
                {
                    std::thread::sleep(COORDINATOR_BACKOFF);
                }
                other => return other,
            }
        }
    }

    /// [`Client::list_offsets`] asked of each partition's leader.
    pub fn leader_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let leaders = self.leaders(topic)?;
        let mut by_leader: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let unknown = || kafka(UNKNOWN_TOPIC_OR_PARTITION, format!("{topic}-{p}"));
            let leader = leaders.get(p).ok_or_else(unknown)?;
            by_leader.entry(leader.as_str()).or_default().push(*p);
        }
        let mut out = BTreeMap::new();
        for (leader, partitions) in by_leader {
            out.extend(self.connect_to(leader)?.list_offsets(topic, &partitions, timestamp)?);
        }
        Ok(out)
    }

    fn metadata(
        &mut self,
        topics: Option<Vec<metadata_request::MetadataRequestTopic>>,
    ) -> Result<MetadataResponse, ClientError> {
        let req = MetadataRequest::default().with_topics(topics);
        let (_, ResponseKind::Metadata(r)) =
            self.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))?
        else {
            return Err(protocol("Metadata answered with another message"));
        };
        Ok(r)
    }
}

fn address(b: &metadata_response::MetadataResponseBroker) -> String {
    format!("{}:{}", b.host, b.port)
}

//! Cluster description on a [`Client`]: brokers, the controller, under-replicated partitions.

use kafka_protocol::messages::*;

use super::{protocol, Client, ClientError};

/// One broker as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Whether the controller heard from it lately (false: fenced).
    pub alive: bool,
}

/// A partition with fewer in-sync replicas than replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderReplicated {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Leader's node id (-1 if none).
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// What `strata cluster info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// The controller's node id (-1 during an election).
    pub controller: i32,
    /// Every registered broker, by id.
    pub brokers: Vec<BrokerInfo>,
    /// Partitions whose ISR is smaller than their replica set, by topic and partition.
    pub under_replicated: Vec<UnderReplicated>,
}

impl Client {
    /// DescribeCluster plus Metadata of every topic.
    pub fn cluster_info(&mut self) -> Result<ClusterInfo, ClientError> {
        let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let req = RequestKind::DescribeCluster(req);
        let (_, ResponseKind::DescribeCluster(d)) = self.call(ApiKey::DescribeCluster, 2, req)?
        else {
            return Err(protocol("DescribeCluster answered with another message"));
        };
        ClientError::check(d.error_code, "DescribeCluster")?;
        let mut brokers: Vec<BrokerInfo> = d
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                alive: !b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let req = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
        let (_, ResponseKind::Metadata(m)) = self.call(ApiKey::Metadata, 12, req)? else {
            return Err(protocol("Metadata answered with another message"));
        };
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut under_replicated: Vec<UnderReplicated> = m
            .topics
            .iter()
            .flat_map(|t| {
                let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                t.partitions.iter().filter(|p| p.isr_nodes.len() < p.replica_nodes.len()).map(
                    move |p| UnderReplicated {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        replicas: ids(&p.replica_nodes),
                        isr: ids(&p.isr_nodes),
                    },
                )
            })
            .collect();
        under_replicated.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(ClusterInfo {
            cluster_id: d.cluster_id.to_string(),
            controller: d.controller_id.0,
            brokers,
            under_replicated,
        })
    }
}

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

/// One partition's answer to an operation: (topic, partition, error code, message).
pub type PartitionAnswer = (String, i32, i16, Option<String>);

/// A partition's replica set as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Leader (-1 if none).
    pub leader: i32,
    /// Replica node ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// A reassignment in progress (ListPartitionReassignments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Every replica during the move (target first).
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(kafka_protocol::protocol::StrBytes::from_string(name.to_owned()))
}

impl Client {
    /// Every partition of `topics` (every topic when empty), by topic and partition.
    pub fn placements(&mut self, topics: &[String]) -> Result<Vec<Placement>, ClientError> {
        let wanted = (!topics.is_empty()).then(|| {
            topics
                .iter()
                .map(|t| {
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(t)))
                })
                .collect()
        });
        let req = RequestKind::Metadata(MetadataRequest::default().with_topics(wanted));
        let (_, ResponseKind::Metadata(m)) = self.call(ApiKey::Metadata, 12, req)? else {
            return Err(protocol("Metadata answered with another message"));
        };
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out = Vec::new();
        for t in &m.topics {
            let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 && t.error_code != 5 {
                ClientError::check(t.error_code, format!("topic {topic}"))?;
            }
            for p in &t.partitions {
                out.push(Placement {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// ElectLeaders of `partitions` (every partition when `None`): preferred, or `unclean`.
    pub fn elect_leaders(
        &mut self,
        partitions: Option<&[(String, i32)]>,
        unclean: bool,
    ) -> Result<Vec<PartitionAnswer>, ClientError> {
        let topics = partitions.map(|list| {
            let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
            for (topic, p) in list {
                by_topic.entry(topic).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect()
        });
        let req = ElectLeadersRequest::default()
            .with_election_type(i8::from(unclean))
            .with_topic_partitions(topics)
            .with_timeout_ms(30_000);
        let (_, ResponseKind::ElectLeaders(r)) =
            self.call(ApiKey::ElectLeaders, 2, RequestKind::ElectLeaders(req))?
        else {
            return Err(protocol("ElectLeaders answered with another message"));
        };
        ClientError::check(r.error_code, "ElectLeaders")?;
        let mut out = Vec::new();
        for t in r.replica_election_results {
            for p in t.partition_result {
                let message = p.error_message.map(|m| m.to_string());
                out.push((t.topic.0.to_string(), p.partition_id, p.error_code, message));
            }
        }
        Ok(out)
    }

    /// AlterPartitionReassignments: (topic, partition, target replicas or `None` to cancel).
    pub fn alter_reassignments(
        &mut self,
        moves: &[(String, i32, Option<Vec<i32>>)],
    ) -> Result<Vec<PartitionAnswer>, ClientError> {
        use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
        let mut by_topic: std::collections::BTreeMap<&str, Vec<ReassignablePartition>> =
            Default::default();
        for (topic, partition, target) in moves {
            let replicas = target.as_ref().map(|t| t.iter().copied().map(BrokerId).collect());
            let p = ReassignablePartition::default()
                .with_partition_index(*partition)
                .with_replicas(replicas);
            by_topic.entry(topic).or_default().push(p);
        }
        let topics = by_topic
            .into_iter()
            .map(|(t, ps)| {
                ReassignableTopic::default().with_name(topic_name(t)).with_partitions(ps)
            })
            .collect();
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_allow_replication_factor_change(true)
            .with_topics(topics);
        let req = RequestKind::AlterPartitionReassignments(req);
        let (_, ResponseKind::AlterPartitionReassignments(r)) =
            self.call(ApiKey::AlterPartitionReassignments, 1, req)?
        else {
            return Err(protocol("AlterPartitionReassignments answered with another message"));
        };
        ClientError::check(r.error_code, "AlterPartitionReassignments")?;
        let mut out = Vec::new();
        for t in r.responses {
            for p in t.partitions {
                let message = p.error_message.map(|m| m.to_string());
                out.push((t.name.0.to_string(), p.partition_index, p.error_code, message));
            }
        }
        Ok(out)
    }

    /// ListPartitionReassignments of every partition.
    pub fn list_reassignments(&mut self) -> Result<Vec<Reassignment>, ClientError> {
        let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000);
        let req = RequestKind::ListPartitionReassignments(req);
        let (_, ResponseKind::ListPartitionReassignments(r)) =
            self.call(ApiKey::ListPartitionReassignments, 0, req)?
        else {
            return Err(protocol("ListPartitionReassignments answered with another message"));
        };
        ClientError::check(r.error_code, "ListPartitionReassignments")?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out = Vec::new();
        for t in r.topics {
            for p in t.partitions {
                out.push(Reassignment {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                });
            }
        }
        Ok(out)
    }
}

/// The controller quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    /// The Raft leader (-1 while none is known).
    pub leader: i32,
    /// Voting members.
    pub voters: Vec<i32>,
    /// Members that are sent the log and do not vote.
    pub observers: Vec<i32>,
}

/// Where the decommissioning of a broker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecommissionStatus {
    /// Partitions the broker still holds a replica of.
    pub replicas: usize,
    /// Whether it is still a member of the controller's Raft group (voter or observer).
    pub member: bool,
}

impl DecommissionStatus {
    /// Drained and out of the membership: it may be stopped.
    pub fn done(&self) -> bool {
        self.replicas == 0 && !self.member
    }
}

impl Client {
    /// UnregisterBroker: decommissions broker `id` (its replicas move away, then it leaves
    /// the controller membership). A refusal carries the broker's reason.
    pub fn decommission(&mut self, id: i32) -> Result<(), ClientError> {
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        let (_, ResponseKind::UnregisterBroker(r)) =
            self.call(ApiKey::UnregisterBroker, 0, RequestKind::UnregisterBroker(req))?
        else {
            return Err(protocol("UnregisterBroker answered with another message"));
        };
        let why = r.error_message.map(|m| m.to_string()).unwrap_or_default();
        ClientError::check(r.error_code, format!("decommissioning broker {id}: {why}"))
    }

    /// BrokerRegistration of broker `id` from this tool: recommissions it.
    pub fn recommission(&mut self, id: i32) -> Result<(), ClientError> {
        let req = BrokerRegistrationRequest::default().with_broker_id(BrokerId(id));
        let (_, ResponseKind::BrokerRegistration(r)) =
            self.call(ApiKey::BrokerRegistration, 0, RequestKind::BrokerRegistration(req))?
        else {
            return Err(protocol("BrokerRegistration answered with another message"));
        };
        ClientError::check(r.error_code, format!("recommissioning broker {id}"))
    }

    /// DescribeQuorum: the controller's Raft membership.
    pub fn quorum(&mut self) -> Result<QuorumInfo, ClientError> {
        let req = RequestKind::DescribeQuorum(DescribeQuorumRequest::default());
        let (_, ResponseKind::DescribeQuorum(r)) = self.call(ApiKey::DescribeQuorum, 1, req)?
        else {
            return Err(protocol("DescribeQuorum answered with another message"));
        };
        ClientError::check(r.error_code, "DescribeQuorum")?;
        let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
            return Err(protocol("DescribeQuorum answered without the metadata partition"));
        };
        let ids = |v: &[describe_quorum_response::ReplicaState]| {
            v.iter().map(|r| r.replica_id.0).collect::<Vec<i32>>()
        };
        Ok(QuorumInfo {
            leader: p.leader_id.0,
            voters: ids(&p.current_voters),
            observers: ids(&p.observers),
        })
    }

    /// How far the decommissioning of broker `id` went: Metadata and DescribeQuorum.
    pub fn decommission_status(&mut self, id: i32) -> Result<DecommissionStatus, ClientError> {
        let replicas = self.placements(&[])?.iter().filter(|p| p.replicas.contains(&id)).count();
        let quorum = self.quorum()?;
        let member = quorum.voters.contains(&id) || quorum.observers.contains(&id);
        Ok(DecommissionStatus { replicas, member })
    }
}

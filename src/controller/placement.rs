//! Cluster-mode metadata changes: the commands of the replicated state machine and where
//! partitions go.
//!
//! A [`Command`] is proposed by any broker and applied, in log order, by every broker's
//! controller ([`ClusterMetadata::apply`]). Applying must be deterministic: anything random
//! (topic ids, the cluster id) is chosen by the proposer and carried in the command.
//!
//! Placement is rack-unaware round-robin: the registered brokers sorted by id, each new
//! partition's replica list starting one broker further than the previous one's (a cursor
//! kept in the metadata), its first replica the preferred leader. Leaders thus spread
//! evenly over brokers. Inside a broker, [`ClusterMetadata::localize`] spreads the
//! partitions it leads over its shards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    topic_config, validate_partition_count, validate_topic_name, BrokerMeta, ClusterMetadata,
    ControlError, PartitionMeta, TopicMeta, E, NOT_LOCAL,
};

/// A change to the replicated cluster metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker announces itself and the address clients should use for it; also sets the
    /// cluster id when none is set yet.
    RegisterBroker {
        /// The broker.
        broker: BrokerMeta,
        /// Cluster id to adopt if the cluster has none.
        cluster_id: String,
    },
    /// CreateTopics, one topic.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Topic id, chosen by the proposer.
        id: uuid::Uuid,
        /// Partition count.
        partitions: i32,
        /// Replicas per partition.
        replication_factor: i32,
        /// Validated config overrides.
        configs: BTreeMap<String, String>,
    },
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// CreatePartitions, one topic.
    CreatePartitions {
        /// Topic name.
        name: String,
        /// New partition count.
        total: i32,
    },
    /// A topic of a single broker's metadata.json, adopted as it is (same id, partitions and
    /// configs) with that broker as the only replica and leader of every partition.
    ImportTopic {
        /// The topic, as the single broker had it.
        topic: TopicMeta,
        /// The broker whose data directory holds its logs.
        broker: i32,
    },
    /// AlterConfigs / IncrementalAlterConfigs: the topic's complete new overrides.
    SetTopicConfigs {
        /// Topic name.
        name: String,
        /// Every override after the change.
        configs: BTreeMap<String, String>,
    },
}

fn unknown_topic(name: &str) -> ControlError {
    ControlError::new(E::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
}

impl ClusterMetadata {
    /// Returns a copy with `command` applied, or why it is refused. Deterministic.
    pub fn apply(&self, command: &Command) -> Result<ClusterMetadata, ControlError> {
        let mut next = self.clone();
        match command {
            Command::RegisterBroker { broker, cluster_id } => {
                if next.cluster_id.is_empty() {
                    next.cluster_id = cluster_id.clone();
                }
                next.brokers.insert(broker.id, broker.clone());
            }
            Command::CreateTopic { name, id, partitions, replication_factor, configs } => {
                next.check_new_topic(name, *partitions, *replication_factor, configs)?;
                let placed = next.place(*partitions as usize, *replication_factor as usize);
                let topic = TopicMeta {
                    name: name.clone(),
                    id: *id,
                    partitions: placed,
                    configs: configs.clone(),
                };
                next.topics.insert(name.clone(), topic);
            }
            Command::DeleteTopic { name } => {
                next.topics.remove(name).ok_or_else(|| unknown_topic(name))?;
            }
            Command::CreatePartitions { name, total } => {
                validate_partition_count(*total)?;
                let topic = next.topics.get(name).ok_or_else(|| unknown_topic(name))?;
                let (current, rf) = (topic.partitions.len(), replication_factor(topic));
                if *total as usize <= current {
                    let msg =
                        format!("topic has {current} partitions; the new count must be higher");
                    return Err(ControlError::new(E::InvalidPartitions, msg));
                }
                next.check_replication_factor(rf as i32)?;
                let added = next.place(*total as usize - current, rf);
                if let Some(topic) = next.topics.get_mut(name) {
                    topic.partitions.extend(added);
                }
            }
            Command::ImportTopic { topic, broker } => {
                if next.topics.contains_key(&topic.name) {
                    let msg = format!("topic {:?} already exists", topic.name);
                    return Err(ControlError::new(E::TopicAlreadyExists, msg));
                }
                if !next.brokers.contains_key(broker) {
                    let msg = format!("broker {broker} is not registered");
                    return Err(ControlError::new(E::InvalidReplicaAssignment, msg));
                }
                let mut topic = topic.clone();
                for partition in &mut topic.partitions {
                    partition.shard = 0;
                    partition.replicas = vec![*broker];
                    partition.leader = Some(*broker);
                }
                next.topics.insert(topic.name.clone(), topic);
            }
            Command::SetTopicConfigs { name, configs } => {
                topic_config::validate_all(configs)?;
                let topic = next.topics.get_mut(name).ok_or_else(|| unknown_topic(name))?;
                topic.configs = configs.clone();
            }
        }
        next.version += 1;
        Ok(next)
    }

    /// The checks of a CreateTopic command, without applying it (also used for
    /// validate_only requests).
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        validate_topic_name(name)?;
        validate_partition_count(partitions)?;
        topic_config::validate_all(configs)?;
        self.check_replication_factor(replication_factor)?;
        if self.topics.contains_key(name) {
            let msg = format!("topic {name:?} already exists");
            return Err(ControlError::new(E::TopicAlreadyExists, msg));
        }
        Ok(())
    }

    fn check_replication_factor(&self, replication_factor: i32) -> Result<(), ControlError> {
        let brokers = self.brokers.len();
        if replication_factor < 1 || replication_factor as usize > brokers {
            let msg = format!(
                "replication factor {replication_factor} is outside 1..={brokers} \
                 (the registered brokers)"
            );
            return Err(ControlError::new(E::InvalidReplicationFactor, msg));
        }
        Ok(())
    }

    /// Replica lists for `count` new partitions; `replication_factor` must be checked.
    fn place(&mut self, count: usize, replication_factor: usize) -> Vec<PartitionMeta> {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        assert!(!ids.is_empty());
        assert!(replication_factor <= ids.len());
        let first = self.next_broker % ids.len();
        self.next_broker = (first + count) % ids.len();
        (0..count)
            .map(|i| {
                let start = first + i;
                let replicas: Vec<i32> =
                    (0..replication_factor).map(|j| ids[(start + j) % ids.len()]).collect();
                PartitionMeta { shard: 0, leader_epoch: 0, leader: Some(replicas[0]), replicas }
            })
            .collect()
    }

    /// This broker's view of replicated metadata: the partitions `node` leads get a shard
    /// (round-robin inside each topic, starting at a shard derived from the topic id, so the
    /// mapping is the same after a restart), the others [`NOT_LOCAL`].
    pub fn localize(&self, node: i32, shards: usize) -> ClusterMetadata {
        assert!(shards > 0);
        let mut local = self.clone();
        for topic in local.topics.values_mut() {
            let mut next = (topic.id.as_u128() % shards as u128) as usize;
            for partition in &mut topic.partitions {
                partition.shard = if partition.leader == Some(node) {
                    next = (next + 1) % shards;
                    next
                } else {
                    NOT_LOCAL
                };
            }
        }
        local
    }
}

/// Replicas per partition of `topic` (that of its first partition; 1 if it has none).
pub fn replication_factor(topic: &TopicMeta) -> usize {
    topic.partitions.first().map_or(1, |p| p.replicas.len().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(meta: &ClusterMetadata, id: i32) -> ClusterMetadata {
        let broker = BrokerMeta { id, host: "127.0.0.1".into(), port: 9000 + id as u16 };
        meta.apply(&Command::RegisterBroker { broker, cluster_id: "c".into() }).unwrap()
    }

    fn create(name: &str, partitions: i32, replication_factor: i32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::from_u128(7),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn leaders_and_replicas_spread_round_robin() {
        let mut meta = ClusterMetadata::default();
        for id in 1..=3 {
            meta = register(&meta, id);
        }
        let meta = meta.apply(&create("t", 6, 3)).unwrap();
        let leaders: Vec<i32> =
            meta.topics["t"].partitions.iter().map(|p| p.leader.unwrap()).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(meta.topics["t"].partitions[1].replicas, vec![2, 3, 1]);
        assert_eq!(meta.cluster_id, "c");
        let local = meta.localize(2, 2);
        let shards: Vec<usize> = local.topics["t"].partitions.iter().map(|p| p.shard).collect();
        assert_eq!(shards.iter().filter(|&&s| s != NOT_LOCAL).count(), 2);
        assert_ne!(shards[1], shards[4], "the two partitions led by 2 go to different shards");
        assert_eq!(local.shard_of("t", 0), None);
        assert!(local.partition("t", 0).is_some());
    }

    #[test]
    fn a_single_broker_metadata_file_from_before_clusters_still_loads() {
        let old = r#"{"cluster_id":"c","version":3,"next_shard":1,"topics":{"t":{"name":"t",
            "id":"00000000-0000-0000-0000-000000000007","configs":{},
            "partitions":[{"shard":0,"leader_epoch":0}]}}}"#;
        let meta: ClusterMetadata = serde_json::from_str(old).unwrap();
        assert!(meta.brokers.is_empty());
        let partition = meta.partition("t", 0).unwrap();
        assert_eq!((partition.leader, partition.replicas.len()), (None, 0));
        assert_eq!(meta.owner("t", 0), Ok(0));
        // And it is written back in the same shape: no cluster fields on a single broker.
        let written = serde_json::to_string(&meta).unwrap();
        assert!(!written.contains("replicas") && !written.contains("brokers"), "{written}");
    }

    #[test]
    fn refusals_name_the_reason() {
        let meta = register(&ClusterMetadata::default(), 1);
        let err = meta.apply(&create("t", 1, 2)).unwrap_err();
        assert_eq!(err.code, E::InvalidReplicationFactor.code());
        let meta = meta.apply(&create("t", 1, 1)).unwrap();
        let err = meta.apply(&create("t", 1, 1)).unwrap_err();
        assert_eq!(err.code, E::TopicAlreadyExists.code());
        let grown = meta.apply(&Command::CreatePartitions { name: "t".into(), total: 3 }).unwrap();
        assert_eq!(grown.topics["t"].partitions.len(), 3);
        let gone = grown.apply(&Command::DeleteTopic { name: "t".into() }).unwrap();
        assert!(gone.topics.is_empty());
    }
}

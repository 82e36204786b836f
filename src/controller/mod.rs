//! Cluster metadata, kept by the coordinator shard (shard 0).
//!
//! [`ClusterMetadata`] is an immutable snapshot: topics, their ids, partitions, the shard that
//! owns each partition, and topic config overrides. Shard 0 is the only writer: it applies a
//! change to a copy ([`ClusterMetadata::create_topic`] and friends), persists the copy with
//! [`store`], and hands the new snapshot to every shard. The partition-to-shard mapping is
//! chosen once, at creation, round-robin over shards, and kept in the file, so it is stable
//! across restarts (a mapping to a shard that no longer exists is folded with `% shards`).
//!
//! On disk: `<data>/metadata.json`, replaced atomically (write temp, fdatasync, rename, sync
//! the directory).
//!
//! In a cluster (`controller_voters` set) the metadata is instead a Raft-replicated state
//! machine ([`quorum`]), changed by [`placement::Command`]s; shard 0 publishes each applied
//! snapshot, localized ([`ClusterMetadata::localize`]), and metadata.json is not used.

pub mod access;
pub mod broker_config;
pub mod group_config;
pub mod operations;
pub mod placement;
pub mod producer_ids;
pub mod quorum;
pub mod slots;
pub mod topic_config;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::limits;
pub use topic_config::{ConfigChange, TopicConfigError, TOPIC_CONFIGS};

use crate::config::BrokerConfig;

/// File name of the metadata snapshot inside the data directory.
pub const METADATA_FILE: &str = "metadata.json";

/// `PartitionMeta::shard` of a partition whose log this broker does not hold (cluster mode:
/// another broker leads it). [`ClusterMetadata::shard_of`] answers `None` for it.
pub const NOT_LOCAL: usize = usize::MAX;

/// One partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// The shard of this broker that owns the partition's log, or [`NOT_LOCAL`]. In the
    /// replicated (cluster) metadata it is a placeholder: each broker fills it in with
    /// [`ClusterMetadata::localize`].
    pub shard: usize,
    /// Leader epoch, bumped when leadership changes (always 0 on a single broker).
    pub leader_epoch: i32,
    /// Broker ids holding a replica, preferred leader first. Empty on a single broker (whose
    /// metadata.json predates clusters): the one broker holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<i32>,
    /// The leading broker; `None` on a single broker (this one leads everything), and in a
    /// cluster while no in-sync replica is available to lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// In-sync replicas (cluster mode), in the order the leader sent them. Empty in data
    /// written before ISRs existed, which means every replica: [`ClusterMetadata::apply`] and
    /// [`ClusterMetadata::localize`] normalise it to `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isr: Vec<i32>,
    /// Bumped by every leader or ISR change (KIP-497's partition epoch): an AlterPartition
    /// carrying an older one is refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub partition_epoch: i32,
    /// Reassignment in progress (KIP-455): target replicas not in the original set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// Reassignment in progress: original replicas not in the target set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

/// A broker registered with the controller quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    /// Node id.
    pub id: i32,
    /// Host of its inter-broker listener: where other brokers connect.
    pub host: String,
    /// Port of its inter-broker listener.
    pub port: u16,
    /// Kafka's `broker.rack`, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// The broker epoch (KRaft's): set by the controller when this incarnation registered,
    /// the same on every broker; heartbeats carrying another one are refused.
    #[serde(default)]
    pub epoch: i64,
    /// Chosen by the broker process at start-up: a registration of the same incarnation again
    /// (a retry) keeps the epoch, a new one gets a new epoch.
    #[serde(default)]
    pub incarnation: uuid::Uuid,
    /// The advertised address of each of its listeners, which Metadata answers with to a
    /// client of that listener. Empty in registrations made before named listeners: their
    /// one endpoint is `host:port`, on every listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<BrokerEndpoint>,
}

/// One listener's advertised address, as registered by a broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// The listener's name (`PLAINTEXT`, `SECURE`, ...).
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

impl BrokerMeta {
    /// A broker reachable at `host:port` on every listener (tests, old registrations).
    pub fn new(id: i32, host: impl Into<String>, port: u16) -> BrokerMeta {
        BrokerMeta {
            id,
            host: host.into(),
            port,
            rack: None,
            epoch: 0,
            incarnation: uuid::Uuid::nil(),
            endpoints: Vec::new(),
        }
    }

    /// This broker's advertised `(host, port)` on `listener`; `None` if it has no such
    /// listener (Kafka then leaves it out of that listener's Metadata).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        let found = self.endpoints.iter().find(|e| e.listener == listener)?;
        Some((&found.host, found.port))
    }
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (Kafka's topic UUID, used by Fetch v13+ and Metadata v10+).
    pub id: uuid::Uuid,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level config overrides (`name → value`), validated against [`TOPIC_CONFIGS`].
    pub configs: BTreeMap<String, String>,
}

/// The cluster metadata snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Cluster id reported in Metadata responses, generated on first start.
    pub cluster_id: String,
    /// Bumped by every change.
    pub version: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicMeta>,
    /// Round-robin cursor: the shard the next partition goes to.
    pub next_shard: usize,
    /// Registered brokers by id (cluster mode; empty on a single broker).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<i32, BrokerMeta>,
    /// Round-robin cursor over brokers: where the next partition's replica list starts.
    #[serde(default)]
    pub next_broker: usize,
    /// Fenced brokers: registered, but their heartbeats stopped (cluster mode). They lead
    /// nothing and are dropped from ISRs (see [`placement::Command::FenceBroker`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub fenced: BTreeSet<i32>,
    /// SCRAM users and their credentials, by name (KIP-554; see [`users`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, users::UserCredentials>,
    /// The controller's `unclean.leader.election.enable` default, for topics that do not set
    /// it (see [`placement::Command::SetClusterDefaults`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unclean_leader_election: bool,
    /// The broker this snapshot was localized for ([`ClusterMetadata::localize`]); `None` on
    /// a single broker and in the replicated state. Not stored.
    #[serde(skip)]
    pub local_node: Option<i32>,
    /// ACLs, in creation order (see [`access`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<access::AclRule>,
    /// Client quota overrides, sorted by entity (see [`access`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_quotas: Vec<access::ClientQuota>,
    /// Dynamic broker configs by resource name (`""`: the cluster-wide default, else a node
    /// id), each `name → value` (see [`broker_config`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Group config overrides by group id, each `name → value` (see [`group_config`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Decommissioned brokers (see [`placement::Command::DecommissionBroker`]): their
    /// replicas move away, they get no new ones, and once they hold none they leave the
    /// controller's Raft membership, until recommissioned.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub decommissioned: BTreeSet<i32>,
}

/// A refused metadata change, with the Kafka error code to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ControlError {
    /// Kafka error code.
    pub code: i16,
    /// Human-readable reason, sent back as the error message.
    pub message: String,
}

impl ControlError {
    pub(crate) fn new(
        error: kafka_protocol::error::ResponseError,
        message: impl Into<String>,
    ) -> Self {
        ControlError { code: error.code(), message: message.into() }
    }
}

impl From<TopicConfigError> for ControlError {
    fn from(e: TopicConfigError) -> Self {
        ControlError::new(kafka_protocol::error::ResponseError::InvalidConfig, e.to_string())
    }
}

use kafka_protocol::error::ResponseError as E;

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControlError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
    if name.is_empty() || name == "." || name == ".." {
        return Err(ControlError::new(E::InvalidTopicException, "topic name is illegal"));
    }
    if name.len() > limits::TOPIC_NAME_BYTES_MAX {
        return Err(ControlError::new(E::InvalidTopicException, "topic name is too long"));
    }
    if !name.chars().all(legal) {
        let msg = format!("topic name {name:?} has characters outside [a-zA-Z0-9._-]");
        return Err(ControlError::new(E::InvalidTopicException, msg));
    }
    Ok(())
}

fn validate_partition_count(count: i32) -> Result<(), ControlError> {
    if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&count) {
        let msg = format!("partition count {count} is outside 1..=100000");
        return Err(ControlError::new(E::InvalidPartitions, msg));
    }
    Ok(())
}

impl ClusterMetadata {
    /// The metadata of a broker that has never started: no topics, a fresh cluster id.
    pub fn new_cluster() -> Self {
        ClusterMetadata { cluster_id: uuid::Uuid::new_v4().to_string(), ..Default::default() }
    }

    /// Looks a topic up by id.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }

    /// The shard owning `topic`/`partition` on this broker, or `None` if no such partition
    /// exists or this broker does not lead it (see [`ClusterMetadata::partition`]).
    pub fn shard_of(&self, topic: &str, partition: i32) -> Option<usize> {
        self.owner(topic, partition).ok()
    }

    /// The shard holding the log of `topic`/`partition` on this broker, leader or follower;
    /// `None` if no such partition exists or this broker holds no replica of it.
    pub fn hosted_shard(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partition(topic, partition).map(|p| p.shard).filter(|&s| s != NOT_LOCAL)
    }

    /// Whether this broker leads the partition (always, on a single broker).
    pub fn leads(&self, partition: &PartitionMeta) -> bool {
        partition.shard != NOT_LOCAL
            && (self.local_node.is_none() || partition.leader == self.local_node)
    }

    /// The shard owning `topic`/`partition` here, or the error to answer: NOT_LEADER_OR_FOLLOWER
    /// when this broker does not lead it (a follower, or no replica here),
    /// UNKNOWN_TOPIC_OR_PARTITION when it does not exist.
    pub fn owner(&self, topic: &str, partition: i32) -> Result<usize, E> {
        match self.partition(topic, partition) {
            None => Err(E::UnknownTopicOrPartition),
            Some(p) if !self.leads(p) => Err(E::NotLeaderOrFollower),
            Some(p) => Ok(p.shard),
        }
    }

    /// Partitions of `topic` (an internal topic whose keys hash to its partitions), `None`
    /// while it does not exist or has none: its coordinators are not available yet.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        let count = self.topics.get(topic)?.partitions.len();
        i32::try_from(count).ok().filter(|&n| n > 0)
    }

    /// The partition, wherever it is led.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        let topic = self.topics.get(topic)?;
        let index = usize::try_from(partition).ok()?;
        topic.partitions.get(index)
    }

    /// Folds shard numbers that do not exist in a pool of `shards` onto existing ones, so a
    /// data directory written with more shards still opens.
    pub fn fold_shards(&mut self, shards: usize) -> usize {
        let mut moved = 0;
        for partition in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
            if partition.shard >= shards && partition.shard != NOT_LOCAL {
                partition.shard %= shards;
                moved += 1;
            }
        }
        self.next_shard %= shards;
        moved
    }

    fn take_shards(&mut self, count: usize, shards: usize) -> Vec<PartitionMeta> {
        let first = self.next_shard;
        self.next_shard = (first + count) % shards;
        (0..count)
            .map(|i| PartitionMeta {
                shard: (first + i) % shards,
                leader_epoch: 0,
                replicas: Vec::new(),
                leader: None,
                isr: Vec::new(),
                partition_epoch: 0,
                adding: Vec::new(),
                removing: Vec::new(),
            })
            .collect()
    }

    /// Returns a copy with the topic added; `configs` are validated overrides.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        shards: usize,
    ) -> Result<ClusterMetadata, ControlError> {
        validate_topic_name(name)?;
        validate_partition_count(partitions)?;
        topic_config::validate_all(&configs)?;
        if self.topics.contains_key(name) {
            let msg = format!("topic {name:?} already exists");
            return Err(ControlError::new(E::TopicAlreadyExists, msg));
        }
        let mut next = self.clone();
        let partitions = next.take_shards(partitions as usize, shards);
        let topic =
            TopicMeta { name: name.to_owned(), id: uuid::Uuid::new_v4(), partitions, configs };
        next.topics.insert(name.to_owned(), topic);
        next.version += 1;
        Ok(next)
    }

    /// Returns a copy without the topic.
    pub fn delete_topic(&self, name: &str) -> Result<ClusterMetadata, ControlError> {
        let mut next = self.clone();
        if next.topics.remove(name).is_none() {
            let msg = format!("topic {name:?} does not exist");
            return Err(ControlError::new(E::UnknownTopicOrPartition, msg));
        }
        next.version += 1;
        Ok(next)
    }

    /// Returns a copy where the topic has `total` partitions (more than it has now).
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        shards: usize,
    ) -> Result<ClusterMetadata, ControlError> {
        validate_partition_count(total)?;
        let current = match self.topics.get(name) {
            Some(topic) => topic.partitions.len(),
            None => {
                let msg = format!("topic {name:?} does not exist");
                return Err(ControlError::new(E::UnknownTopicOrPartition, msg));
            }
        };
        if total as usize <= current {
            let msg = format!("topic has {current} partitions; the new count must be higher");
            return Err(ControlError::new(E::InvalidPartitions, msg));
        }
        let mut next = self.clone();
        let added = next.take_shards(total as usize - current, shards);
        if let Some(topic) = next.topics.get_mut(name) {
            topic.partitions.extend(added);
        }
        next.version += 1;
        Ok(next)
    }
}

impl ClusterMetadata {
    /// Returns a copy where the topic's overrides are changed by `changes` (see
    /// [`topic_config::apply_changes`]); INVALID_CONFIG with a message for a bad result.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[ConfigChange],
        replace: bool,
        broker: &BrokerConfig,
    ) -> Result<ClusterMetadata, ControlError> {
        let Some(topic) = self.topics.get(name) else {
            let msg = format!("topic {name:?} does not exist");
            return Err(ControlError::new(E::UnknownTopicOrPartition, msg));
        };
        let configs = topic_config::apply_changes(&topic.configs, changes, replace, broker)?;
        let mut next = self.clone();
        if let Some(topic) = next.topics.get_mut(name) {
            topic.configs = configs;
        }
        next.version += 1;
        Ok(next)
    }
}

/// Directory of one partition's log inside the data directory (`<topic>-<partition>`, as Kafka).
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Reads the metadata snapshot; `Ok(None)` when the data directory has none yet.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<ClusterMetadata>> {
    let path = data_dir.join(METADATA_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let meta = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not valid metadata: {e}", path.display()))?;
            Ok(Some(meta))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Durably replaces the metadata snapshot: temp file, fdatasync, rename, directory sync.
pub async fn store(data_dir: &Path, meta: &ClusterMetadata) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    replace_file(data_dir, METADATA_FILE, bytes).await
}

/// As [`store`], but writes nothing when the file already holds exactly this metadata (a
/// broker restarting on a full disk must not need space to say what it already says), and
/// waits for space when the disk is full: a full disk retries every second, with a warning
/// now and then, until the write succeeds. Other errors are returned.
pub async fn store_at_start(data_dir: &Path, meta: &ClusterMetadata) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    if std::fs::read(data_dir.join(METADATA_FILE)).is_ok_and(|stored| stored == bytes) {
        return Ok(());
    }
    loop {
        match replace_file(data_dir, METADATA_FILE, bytes.clone()).await {
            Err(e) if crate::storage::space::is_no_space(&e) => {
                crate::log_limited!(
                    WARN,
                    "cluster metadata not saved, the disk is full \
                    (waiting for space before serving): {e}"
                );
                glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
            }
            result => return result,
        }
    }
}

/// Durably replaces `data_dir/name` with `bytes`: temp file, fdatasync, rename, directory sync.
pub async fn replace_file(data_dir: &Path, name: &str, bytes: Vec<u8>) -> std::io::Result<()> {
    let temp = data_dir.join(format!("{name}.tmp"));
    let file = glommio::io::BufferedFile::create(&temp).await?;
    let len = bytes.len();
    if file.write_at(bytes, 0).await? != len {
        return Err(std::io::Error::other(format!("short write of {name}")));
    }
    file.fdatasync().await?;
    file.close().await?;
    glommio::io::rename(&temp, data_dir.join(name)).await?;
    let dir = glommio::io::Directory::open(data_dir).await?;
    dir.sync().await?;
    dir.close().await?;
    Ok(())
}

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod tests;

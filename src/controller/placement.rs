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
//! partitions it holds a replica of over its shards.
//!
//! Failover (see docs/replication.md): each partition has an ISR and a partition epoch,
//! changed by its leader ([`Command::AlterPartition`]) and by the controller leader's
//! liveness tracker ([`Command::FenceBroker`], [`Command::UnfenceBroker`],
//! [`Command::ElectPreferredLeaders`]). A new leader is always the first replica, in
//! `replicas` order, that is in the ISR and not fenced; without one the partition has no
//! leader (unless the topic allows unclean election) until one comes back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::access::{AclRule, QuotaChange};
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
        /// The client's replica list of each partition (CreateTopics `assignments`), else
        /// empty: placed by the controller.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignment: Vec<Vec<i32>>,
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
        /// The client's replica list of each new partition (CreatePartitions
        /// `assignments`), else empty: placed by the controller.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignment: Vec<Vec<i32>>,
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
    /// A partition leader shrinks or expands its ISR (Kafka's AlterPartition). Refused unless
    /// `leader`, `leader_epoch` and `partition_epoch` are current; bumps `partition_epoch`.
    AlterPartition {
        /// Topic name.
        topic: String,
        /// Partition number.
        partition: i32,
        /// The proposing leader.
        leader: i32,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch its ISR view is based on.
        partition_epoch: i32,
        /// The new ISR (must contain the leader; replicas only).
        isr: Vec<i32>,
    },
    /// The controller leader lost a broker's heartbeats: it leads nothing any more (each of
    /// its partitions gets the first in-sync unfenced replica, or no leader) and leaves every
    /// ISR where it is not the last member.
    FenceBroker {
        /// The broker.
        id: i32,
    },
    /// A fenced broker heartbeats again: partitions without a leader whose ISR holds an
    /// unfenced replica get one.
    UnfenceBroker {
        /// The broker.
        id: i32,
    },
    /// Leadership goes back to each partition's preferred (first) replica when it is in sync,
    /// unfenced and not leading (Kafka's auto.leader.rebalance.enable).
    ElectPreferredLeaders,
    // ---- access settings (see `super::access`) ----
    /// CreateAcls: these checked rules (those already present are skipped).
    CreateAcls {
        /// The rules.
        rules: Vec<AclRule>,
    },
    /// DeleteAcls: exactly these rules, which the proposer matched against the filters.
    DeleteAcls {
        /// The rules.
        rules: Vec<AclRule>,
    },
    /// AlterClientQuotas: these checked changes, in order.
    AlterClientQuotas {
        /// The changes.
        changes: Vec<QuotaChange>,
    },
    /// AlterUserScramCredentials, one user: its upsertions and deletions, all or none.
    AlterScramCredentials {
        /// The user.
        user: String,
        /// The changes, in request order.
        changes: Vec<super::users::ScramChange>,
    },
    // ---- cluster operations (issue 19): see `controller::operations` ----
    /// ElectLeaders (KIP-460) of these partitions: the preferred replica, or with `unclean`
    /// any live replica of a partition without a leader. Partitions where that is not
    /// possible are left as they are.
    ElectLeaders {
        /// (topic, partition) pairs.
        partitions: Vec<(String, i32)>,
        /// Unclean election (any live replica, for leaderless partitions only).
        unclean: bool,
    },
    /// AlterPartitionReassignments (KIP-455): (topic, partition, target replicas), `None`
    /// cancelling the reassignment in progress.
    Reassign {
        /// The moves.
        moves: Vec<(String, i32, Option<Vec<i32>>)>,
    },
    /// AlterConfigs / IncrementalAlterConfigs on a BROKER resource: SETs and DELETEs resolved
    /// by the proposer (see `controller::broker_config`).
    AlterBrokerConfigs {
        /// `""` for the cluster-wide default, else a node id.
        resource: String,
        /// The changes, in request order.
        changes: Vec<topic_config::ConfigChange>,
        /// Drop every value not set by `changes` first (AlterConfigs).
        replace: bool,
    },
    /// IncrementalAlterConfigs / AlterConfigs on a GROUP resource (see
    /// `controller::group_config`).
    AlterGroupConfigs {
        /// The group id.
        group: String,
        /// The changes (SET and DELETE), in request order.
        changes: Vec<topic_config::ConfigChange>,
        /// Drop every value not set by `changes` first (AlterConfigs).
        replace: bool,
    },
    /// The controller leader's cluster-wide defaults for topics that do not override them.
    SetClusterDefaults {
        /// `unclean.leader.election.enable`.
        unclean_leader_election: bool,
    },
    /// Decommission a broker: every replica it holds is reassigned elsewhere, it gets no new
    /// ones, and once it holds none the controller leader removes it from the Raft
    /// membership. Refused when too few brokers would be left for some topic's replication
    /// factor.
    DecommissionBroker {
        /// The broker.
        id: i32,
    },
    /// Undo [`Command::DecommissionBroker`]: the broker may join the membership again and
    /// receive replicas.
    RecommissionBroker {
        /// The broker.
        id: i32,
    },
}

/// The topic config that allows electing an out-of-sync replica when no in-sync one is left.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

fn unknown_topic(name: &str) -> ControlError {
    ControlError::new(E::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
}

impl ClusterMetadata {
    /// Returns a copy with `command` applied, or why it is refused. Deterministic.
    pub fn apply(&self, command: &Command) -> Result<ClusterMetadata, ControlError> {
        let mut next = self.clone();
        next.normalize_isr();
        match command {
            Command::RegisterBroker { broker, cluster_id } => {
                if next.cluster_id.is_empty() {
                    next.cluster_id = cluster_id.clone();
                }
                // A fenced broker stays fenced until the controller hears its heartbeats.
                // A new incarnation gets a new epoch: above every epoch handed out before
                // (`version` only grows), and the same on every broker (log order).
                let mut broker = broker.clone();
                broker.epoch = match next.brokers.get(&broker.id) {
                    Some(old) if old.incarnation == broker.incarnation => old.epoch,
                    _ => i64::try_from(self.version).unwrap_or(i64::MAX - 1) + 1,
                };
                next.brokers.insert(broker.id, broker);
            }
            Command::CreateTopic {
                name,
                id,
                partitions,
                replication_factor,
                configs,
                assignment,
            } => {
                next.check_new_topic(name, *partitions, *replication_factor, configs, assignment)?;
                let placed = if assignment.is_empty() {
                    next.place(*partitions as usize, *replication_factor as usize)
                } else {
                    next.assigned(assignment)
                };
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
            Command::CreatePartitions { name, total, assignment } => {
                validate_partition_count(*total)?;
                let topic = next.topics.get(name).ok_or_else(|| unknown_topic(name))?;
                let (current, rf) = (topic.partitions.len(), replication_factor(topic));
                if *total as usize <= current {
                    let msg =
                        format!("topic has {current} partitions; the new count must be higher");
                    return Err(ControlError::new(E::InvalidPartitions, msg));
                }
                let added = if assignment.is_empty() {
                    next.check_replication_factor(rf as i32)?;
                    next.place(*total as usize - current, rf)
                } else {
                    check_assignment_count(*total as usize - current, assignment)?;
                    next.check_assignment(assignment, rf)?;
                    next.assigned(assignment)
                };
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
                    partition.isr = vec![*broker];
                    partition.partition_epoch = 0;
                }
                next.topics.insert(topic.name.clone(), topic);
            }
            Command::SetTopicConfigs { name, configs } => {
                topic_config::validate_all(configs)?;
                let topic = next.topics.get_mut(name).ok_or_else(|| unknown_topic(name))?;
                topic.configs = configs.clone();
                // Allowing unclean election may give leaderless partitions a leader.
                next.elect_leaderless();
            }
            Command::AlterPartition { .. } => {
                next.alter_partition(command)?;
                next.complete_reassignments();
            }
            Command::FenceBroker { id } => next.fence(*id),
            Command::UnfenceBroker { id } => next.unfence(*id),
            Command::CreateAcls { rules } => next.create_acls(rules)?,
            Command::DeleteAcls { rules } => next.delete_acls(rules),
            Command::AlterClientQuotas { changes } => next.alter_client_quotas(changes)?,
            Command::AlterBrokerConfigs { resource, changes, replace } => {
                next.alter_broker_configs(resource, changes, *replace)?
            }
            Command::AlterGroupConfigs { group, changes, replace } => {
                next.alter_group_configs(group, changes, *replace)?
            }
            Command::ElectLeaders { partitions, unclean } => {
                next.elect_leaders(partitions, *unclean)
            }
            Command::Reassign { moves } => next.reassign(moves),
            Command::SetClusterDefaults { unclean_leader_election } => {
                next.unclean_leader_election = *unclean_leader_election;
                next.elect_leaderless();
            }
            Command::ElectPreferredLeaders => {
                let fenced = next.fenced.clone();
                for partition in next.partitions_mut() {
                    if preferred_eligible(partition, &fenced) {
                        partition.leader = Some(partition.replicas[0]);
                        partition.leader_epoch += 1;
                        partition.partition_epoch += 1;
                    }
                }
            }
            Command::AlterScramCredentials { user, changes } => next.alter_scram(user, changes)?,
            Command::DecommissionBroker { id } => next.decommission(*id)?,
            Command::RecommissionBroker { id } => next.recommission(*id)?,
        }
        next.version += 1;
        Ok(next)
    }

    /// Replaces the empty ISR of data written before ISRs existed with every replica.
    pub fn normalize_isr(&mut self) {
        for partition in self.partitions_mut() {
            if partition.isr.is_empty() && !partition.replicas.is_empty() {
                partition.isr = partition.replicas.clone();
            }
        }
    }

    fn partitions_mut(&mut self) -> impl Iterator<Item = &mut PartitionMeta> {
        self.topics.values_mut().flat_map(|t| t.partitions.iter_mut())
    }

    /// Whether some partition's preferred replica could lead it and does not
    /// ([`Command::ElectPreferredLeaders`] would change something).
    pub fn preferred_leaders_eligible(&self) -> bool {
        let mut partitions = self.topics.values().flat_map(|t| t.partitions.iter());
        partitions.any(|p| preferred_eligible(p, &self.fenced))
    }

    /// The checks of a CreateTopic command, without applying it (also used for
    /// validate_only requests).
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &BTreeMap<String, String>,
        assignment: &[Vec<i32>],
    ) -> Result<(), ControlError> {
        validate_topic_name(name)?;
        validate_partition_count(partitions)?;
        topic_config::validate_all(configs)?;
        if assignment.is_empty() {
            self.check_replication_factor(replication_factor)?;
        } else {
            if assignment.len() != partitions as usize {
                let msg = format!("{} replica lists for {partitions} partitions", assignment.len());
                return Err(ControlError::new(E::InvalidReplicaAssignment, msg));
            }
            self.check_assignment(assignment, replication_factor as usize)?;
        }
        if self.topics.contains_key(name) {
            let msg = format!("topic {name:?} already exists");
            return Err(ControlError::new(E::TopicAlreadyExists, msg));
        }
        Ok(())
    }

    fn check_replication_factor(&self, replication_factor: i32) -> Result<(), ControlError> {
        let brokers = self.placeable().len();
        if replication_factor < 1 || replication_factor as usize > brokers {
            let msg = format!(
                "replication factor {replication_factor} is outside 1..={brokers} \
                 (the registered brokers not decommissioned)"
            );
            return Err(ControlError::new(E::InvalidReplicationFactor, msg));
        }
        Ok(())
    }

    /// [`check_assignment_among`] this cluster's registered and fenced brokers.
    fn check_assignment(
        &self,
        assignment: &[Vec<i32>],
        replication_factor: usize,
    ) -> Result<(), ControlError> {
        let registered = |id| self.brokers.contains_key(&id);
        check_assignment_among(assignment, replication_factor, registered, |id| {
            self.fenced.contains(&id)
        })
    }

    /// Partitions with the replica lists of a checked assignment: in sync are the unfenced
    /// replicas, the leader the first of them (Kafka keeps a manual list's order).
    fn assigned(&self, assignment: &[Vec<i32>]) -> Vec<PartitionMeta> {
        let partition = |replicas: &Vec<i32>| {
            let isr: Vec<i32> =
                replicas.iter().copied().filter(|id| !self.fenced.contains(id)).collect();
            PartitionMeta {
                shard: 0,
                leader_epoch: 0,
                leader: isr.first().copied(),
                isr,
                replicas: replicas.clone(),
                partition_epoch: 0,
                adding: Vec::new(),
                removing: Vec::new(),
            }
        };
        assignment.iter().map(partition).collect()
    }

    /// Replica lists for `count` new partitions; `replication_factor` must be checked.
    /// Round-robin over the registered brokers in rack-alternating order
    /// ([`rack_alternated`]), each replica list skipping brokers of racks it already has
    /// until every rack has one (Kafka's rack-aware assignment); a list whose first broker
    /// is fenced is rotated to start with its first unfenced one (no leader if all are).
    fn place(&mut self, count: usize, replication_factor: usize) -> Vec<PartitionMeta> {
        let ids = rack_alternated(&self.placeable());
        assert!(!ids.is_empty());
        assert!(replication_factor <= ids.len());
        let first = self.next_broker % ids.len();
        self.next_broker = (first + count) % ids.len();
        (0..count)
            .map(|i| {
                let mut replicas = spread(&ids, &self.brokers, first + i, replication_factor);
                if let Some(up) = replicas.iter().position(|id| !self.fenced.contains(id)) {
                    replicas.rotate_left(up);
                }
                let leader = Some(replicas[0]).filter(|id| !self.fenced.contains(id));
                PartitionMeta {
                    shard: 0,
                    leader_epoch: 0,
                    leader,
                    isr: replicas.clone(),
                    replicas,
                    partition_epoch: 0,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }
            })
            .collect()
    }

    /// An ISR change proposed by a partition leader ([`Command::AlterPartition`]).
    fn alter_partition(&mut self, command: &Command) -> Result<(), ControlError> {
        let Command::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        } = command
        else {
            unreachable!("alter_partition applies AlterPartition only");
        };
        let fenced = &self.fenced;
        let Some(current) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(*partition).ok()?))
        else {
            let msg = format!("partition {topic}-{partition} does not exist");
            return Err(ControlError::new(E::UnknownTopicOrPartition, msg));
        };
        if current.leader != Some(*leader) || current.leader_epoch != *leader_epoch {
            let msg = format!(
                "broker {leader} at leader epoch {leader_epoch} does not lead {topic}-{partition} \
                 (leader {:?}, epoch {})",
                current.leader, current.leader_epoch
            );
            return Err(ControlError::new(E::FencedLeaderEpoch, msg));
        }
        if current.partition_epoch != *partition_epoch {
            let msg = format!(
                "partition epoch {partition_epoch} of {topic}-{partition} is not the current {}",
                current.partition_epoch
            );
            return Err(ControlError::new(E::InvalidUpdateVersion, msg));
        }
        let unique: BTreeSet<i32> = isr.iter().copied().collect();
        if !isr.contains(leader) || unique.len() != isr.len() {
            let msg = format!("ISR {isr:?} must list the leader {leader} once, without repeats");
            return Err(ControlError::new(E::InvalidRequest, msg));
        }
        if let Some(stranger) = isr.iter().find(|id| !current.replicas.contains(id)) {
            let msg = format!("broker {stranger} holds no replica of {topic}-{partition}");
            return Err(ControlError::new(E::InvalidRequest, msg));
        }
        let added = isr.iter().filter(|id| !current.isr.contains(id));
        if let Some(id) = added.clone().find(|id| fenced.contains(id)) {
            let msg = format!("broker {id} is fenced and cannot join the ISR");
            return Err(ControlError::new(E::IneligibleReplica, msg));
        }
        current.isr = isr.clone();
        current.partition_epoch += 1;
        Ok(())
    }

    /// Fences broker `id` ([`Command::FenceBroker`]).
    fn fence(&mut self, id: i32) {
        self.fenced.insert(id);
        let fenced = self.fenced.clone();
        let default = self.unclean_leader_election;
        for topic in self.topics.values_mut() {
            let unclean = unclean_allowed(topic, default);
            for partition in &mut topic.partitions {
                let mut changed = false;
                if partition.isr.len() > 1 && partition.isr.contains(&id) {
                    partition.isr.retain(|&r| r != id);
                    changed = true;
                }
                if partition.leader == Some(id) {
                    partition.leader = None;
                    elect(partition, &fenced, unclean);
                    partition.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    partition.partition_epoch += 1;
                }
            }
        }
    }

    /// Unfences broker `id` ([`Command::UnfenceBroker`]).
    fn unfence(&mut self, id: i32) {
        self.fenced.remove(&id);
        self.elect_leaderless();
    }

    /// Gives a leader to every partition without one that can have one: an in-sync unfenced
    /// replica, or any unfenced one where the topic allows unclean election.
    fn elect_leaderless(&mut self) {
        let fenced = self.fenced.clone();
        let default = self.unclean_leader_election;
        for topic in self.topics.values_mut() {
            let unclean = unclean_allowed(topic, default);
            for partition in &mut topic.partitions {
                if partition.leader.is_none()
                    && !partition.replicas.is_empty()
                    && elect(partition, &fenced, unclean)
                {
                    partition.leader_epoch += 1;
                    partition.partition_epoch += 1;
                }
            }
        }
    }

    /// This broker's view of replicated metadata: every partition with a replica on `node`
    /// (led or followed) gets a shard, the others [`NOT_LOCAL`]. Partition `i` of a topic
    /// goes to shard `(h + i + 1) % shards`, `h` derived from the topic id: the same after a
    /// restart, and unchanged when leadership moves or replicas are reassigned (a log never
    /// moves between shards while the broker runs).
    pub fn localize(&self, node: i32, shards: usize) -> ClusterMetadata {
        assert!(shards > 0);
        let mut local = self.clone();
        local.normalize_isr();
        local.local_node = Some(node);
        for topic in local.topics.values_mut() {
            let base = (topic.id.as_u128() % shards as u128) as usize;
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                partition.shard = if partition.replicas.contains(&node) {
                    (base + index + 1) % shards
                } else {
                    NOT_LOCAL
                };
            }
        }
        local
    }
}

/// Brokers ordered so that racks alternate: the first broker (by id) of each rack
/// (racks by name; brokers without one form one rack), then the second of each, and so on.
/// Without racks: the brokers by id.
fn rack_alternated(brokers: &BTreeMap<i32, BrokerMeta>) -> Vec<i32> {
    let mut racks: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for b in brokers.values() {
        racks.entry(b.rack.as_deref().unwrap_or("")).or_default().push(b.id);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|depth| racks.values().filter_map(move |r| r.get(depth).copied()))
        .collect()
}

/// `count` replicas from `ids` starting at `start` (round-robin): a broker of a rack already
/// chosen is skipped while some rack has none.
fn spread(
    ids: &[i32],
    brokers: &BTreeMap<i32, BrokerMeta>,
    start: usize,
    count: usize,
) -> Vec<i32> {
    let rack = |id: &i32| brokers.get(id).and_then(|b| b.rack.clone());
    let racks: BTreeSet<Option<String>> = ids.iter().map(rack).collect();
    let mut chosen: Vec<i32> = Vec::with_capacity(count);
    let mut used: BTreeSet<Option<String>> = BTreeSet::new();
    for pass in 0..2 {
        for k in 0..ids.len() {
            let id = ids[(start + k) % ids.len()];
            if chosen.len() == count || chosen.contains(&id) {
                continue;
            }
            // First pass: new racks only (until all are used); second: whatever is left.
            if pass == 0 && used.len() < racks.len() && used.contains(&rack(&id)) {
                continue;
            }
            used.insert(rack(&id));
            chosen.push(id);
        }
    }
    chosen
}

/// Whether the topic allows electing an out-of-sync replica: its config, else the cluster's
/// default.
fn unclean_allowed(topic: &TopicMeta, default: bool) -> bool {
    topic.configs.get(UNCLEAN_LEADER_ELECTION).map_or(default, |v| v.trim() == "true")
}

/// INVALID_REPLICA_ASSIGNMENT unless CreatePartitions gave one replica list per partition
/// it adds (or none), with Kafka's message.
pub fn check_assignment_count(adding: usize, assignment: &[Vec<i32>]) -> Result<(), ControlError> {
    if assignment.is_empty() || assignment.len() == adding {
        return Ok(());
    }
    let msg = format!(
        "Attempted to add {adding} additional partitions, but only {} assignments were \
         specified.",
        assignment.len()
    );
    Err(ControlError::new(E::InvalidReplicaAssignment, msg))
}

/// Checks replica lists a client gave (CreateTopics or CreatePartitions `assignments`) in
/// the order and with the messages of Kafka's ReplicationControlManager: each list not
/// empty, its brokers (in id order) `registered` and named once, `replication_factor` long,
/// and not every one of them `fenced`. A single broker checks against itself alone.
pub fn check_assignment_among(
    assignment: &[Vec<i32>],
    replication_factor: usize,
    registered: impl Fn(i32) -> bool,
    fenced: impl Fn(i32) -> bool,
) -> Result<(), ControlError> {
    let invalid = |msg: String| Err(ControlError::new(E::InvalidReplicaAssignment, msg));
    for (index, replicas) in assignment.iter().enumerate() {
        if replicas.is_empty() {
            return invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            );
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        for (i, id) in sorted.iter().enumerate() {
            if !registered(*id) {
                return invalid(format!(
                    "The manual partition assignment includes broker {id}, but no such broker \
                     is registered."
                ));
            }
            if i > 0 && sorted[i - 1] == *id {
                return invalid(format!(
                    "The manual partition assignment includes the broker {id} more than once."
                ));
            }
        }
        if replicas.len() != replication_factor {
            return invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but \
                 this is not consistent with previous partitions, which have \
                 {replication_factor} replica(s).",
                replicas.len()
            ));
        }
        if replicas.iter().all(|id| fenced(*id)) {
            return invalid(format!(
                "All brokers specified in the manual partition assignment for partition {index} \
                 are fenced."
            ));
        }
    }
    Ok(())
}

/// Sets the leader of a partition without one: the first replica, in `replicas` order, that
/// is in the ISR and not fenced; failing that, with `unclean`, the first unfenced replica,
/// which becomes the whole ISR. Whether a leader was found (leader epoch not bumped here).
fn elect(partition: &mut PartitionMeta, fenced: &BTreeSet<i32>, unclean: bool) -> bool {
    let replicas = &partition.replicas;
    let in_sync = replicas.iter().find(|r| partition.isr.contains(r) && !fenced.contains(r));
    if let Some(&leader) = in_sync {
        partition.leader = Some(leader);
    } else if let Some(&leader) = replicas.iter().find(|r| !fenced.contains(r)).filter(|_| unclean)
    {
        partition.leader = Some(leader);
        partition.isr = vec![leader];
    }
    partition.leader.is_some()
}

/// Whether the preferred (first) replica is in sync, unfenced and not leading.
fn preferred_eligible(partition: &PartitionMeta, fenced: &BTreeSet<i32>) -> bool {
    partition.replicas.first().is_some_and(|&first| {
        partition.leader != Some(first)
            && partition.isr.contains(&first)
            && !fenced.contains(&first)
    })
}

/// Replicas per partition of `topic` (that of its first partition, without the replicas a
/// move in progress is removing; 1 if it has none).
pub fn replication_factor(topic: &TopicMeta) -> usize {
    let target = |p: &PartitionMeta| p.replicas.len() - p.removing.len();
    topic.partitions.first().map_or(1, |p| target(p).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::failover_tests::{create, register};

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
        assert_eq!(shards.iter().filter(|&&s| s != NOT_LOCAL).count(), 6, "2 holds every one");
        assert_ne!(shards[1], shards[4], "the two partitions led by 2 go to different shards");
        assert_eq!(local.shard_of("t", 0), None, "2 only follows partition 0");
        assert_eq!(local.owner("t", 0), Err(E::NotLeaderOrFollower));
        assert_eq!(local.owner("t", 1), Ok(shards[1]));
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
        let grow = Command::CreatePartitions { name: "t".into(), total: 3, assignment: vec![] };
        let grown = meta.apply(&grow).unwrap();
        assert_eq!(grown.topics["t"].partitions.len(), 3);
        let gone = grown.apply(&Command::DeleteTopic { name: "t".into() }).unwrap();
        assert!(gone.topics.is_empty());
    }

    #[test]
    fn manual_assignments_are_kept_in_order_and_checked_as_kafka_checks_them() {
        let mut meta = ClusterMetadata::default();
        for id in [0, 1, 2] {
            meta = register(&meta, id);
        }
        let assigned = |lists: Vec<Vec<i32>>| Command::CreateTopic {
            name: "m".into(),
            id: uuid::Uuid::from_u128(9),
            partitions: lists.len() as i32,
            replication_factor: lists.first().map_or(0, |l| l.len() as i32),
            configs: BTreeMap::new(),
            assignment: lists,
        };
        let refused = |meta: &ClusterMetadata, command: Command| {
            let e = meta.apply(&command).unwrap_err();
            assert_eq!(e.code, E::InvalidReplicaAssignment.code(), "{}", e.message);
            e.message
        };
        let m = refused(&meta, assigned(vec![vec![0, 10]]));
        assert!(m.contains("broker 10, but no such broker is registered"), "{m}");
        let m = refused(&meta, assigned(vec![vec![1, 1]]));
        assert!(m.contains("broker 1 more than once"), "{m}");
        let mut uneven = assigned(vec![vec![0, 1], vec![2]]);
        if let Command::CreateTopic { replication_factor, .. } = &mut uneven {
            *replication_factor = 2;
        }
        assert!(refused(&meta, uneven).contains("1 replica(s)"));
        let created = meta.apply(&assigned(vec![vec![2, 0], vec![0, 1]])).unwrap();
        let p: Vec<(&[i32], Option<i32>)> = created.topics["m"]
            .partitions
            .iter()
            .map(|p| (p.replicas.as_slice(), p.leader))
            .collect();
        assert_eq!(p, vec![(&[2, 0][..], Some(2)), (&[0, 1][..], Some(0))]);
        // CreatePartitions: one list per new partition, of the topic's replication factor.
        let grow =
            |total, lists| Command::CreatePartitions { name: "m".into(), total, assignment: lists };
        let m = refused(&created, grow(4, vec![vec![1, 2]]));
        assert!(m.contains("add 2 additional partitions, but only 1"), "{m}");
        assert!(refused(&created, grow(3, vec![vec![1]])).contains("1 replica(s)"));
        assert!(refused(&created, grow(3, vec![vec![1, 7]])).contains("broker 7"));
        let grown = created.apply(&grow(3, vec![vec![1, 2]])).unwrap();
        assert_eq!(grown.topics["m"].partitions[2].replicas, vec![1, 2]);
        // Every replica fenced: no leader possible, refused.
        let fenced = grown.apply(&Command::FenceBroker { id: 1 }).unwrap();
        let fenced = fenced.apply(&Command::FenceBroker { id: 2 }).unwrap();
        assert!(refused(&fenced, grow(4, vec![vec![1, 2]])).contains("fenced"));
        // In sync are the unfenced replicas; the first of them leads.
        let part = &fenced.apply(&grow(4, vec![vec![1, 0]])).unwrap().topics["m"].partitions[3];
        assert_eq!((part.leader, part.isr.clone()), (Some(0), vec![0]));
    }
}

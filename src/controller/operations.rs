//! Cluster operations on the replicated metadata (issue 19): leader elections on demand
//! (KIP-460), partition reassignment (KIP-455) and the cluster-wide defaults the controller
//! leader sets. Applied by [`ClusterMetadata::apply`], so everything here is deterministic.
//!
//! Reassignment follows KRaft. Moving a partition from its replicas `R` to a target `T`:
//! the replica list becomes `T` followed by the members of `R` not in `T`, with
//! `adding = T \ R` and `removing = R \ T`. The new replicas start following at once (they
//! hold a replica now) and join the ISR as their leader sees them catch up
//! ([`super::placement::Command::AlterPartition`]). As soon as every member of `T` is in the
//! ISR the move completes, in the same step: the replicas become `T`, the ISR loses the
//! removed ones, and if the leader was removed the first in-sync member of `T` leads (leader
//! epoch + 1). Removed brokers then delete their copy. A cancellation (or a new target equal
//! to the original replicas) puts `R` back. A partition's original replicas are always its
//! replicas minus `adding`.

use std::collections::BTreeSet;

use super::{ClusterMetadata, ControlError, PartitionMeta, E};

/// Why an election of one partition did not happen, as Kafka answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionRefusal {
    /// The wanted leader already leads (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is not in sync or is fenced (PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No live replica can lead (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    NoneEligible,
    /// No such partition (UNKNOWN_TOPIC_OR_PARTITION).
    Unknown,
}

impl ElectionRefusal {
    /// The Kafka error code.
    pub fn code(self) -> i16 {
        match self {
            ElectionRefusal::NotNeeded => E::ElectionNotNeeded.code(),
            ElectionRefusal::PreferredNotAvailable => E::PreferredLeaderNotAvailable.code(),
            ElectionRefusal::NoneEligible => E::EligibleLeadersNotAvailable.code(),
            ElectionRefusal::Unknown => E::UnknownTopicOrPartition.code(),
        }
    }
}

/// The leader an election of `partition` would pick: the preferred replica (`unclean`
/// false) when it is in sync and unfenced; with `unclean`, only for a partition without a
/// leader, the first in-sync unfenced replica, else the first unfenced one.
pub fn election(
    partition: &PartitionMeta,
    fenced: &BTreeSet<i32>,
    unclean: bool,
) -> Result<i32, ElectionRefusal> {
    if unclean {
        if partition.leader.is_some() {
            return Err(ElectionRefusal::NotNeeded);
        }
        let live = |r: &&i32| !fenced.contains(r);
        let in_sync = partition.replicas.iter().filter(live).find(|r| partition.isr.contains(r));
        let any = partition.replicas.iter().find(live);
        return in_sync.or(any).copied().ok_or(ElectionRefusal::NoneEligible);
    }
    let Some(&preferred) = partition.replicas.first() else {
        return Err(ElectionRefusal::Unknown);
    };
    if partition.leader == Some(preferred) {
        return Err(ElectionRefusal::NotNeeded);
    }
    if !partition.isr.contains(&preferred) || fenced.contains(&preferred) {
        return Err(ElectionRefusal::PreferredNotAvailable);
    }
    Ok(preferred)
}

/// Why a reassignment of one partition is refused, with Kafka's error code.
pub type ReassignRefusal = ControlError;

impl ClusterMetadata {
    /// [`super::placement::Command::ElectLeaders`]: elects where [`election`] allows.
    pub(crate) fn elect_leaders(&mut self, partitions: &[(String, i32)], unclean: bool) {
        let fenced = self.fenced.clone();
        for (topic, index) in partitions {
            let Some(partition) = self.partition_mut(topic, *index) else { continue };
            let Ok(leader) = election(partition, &fenced, unclean) else { continue };
            if !partition.isr.contains(&leader) {
                partition.isr = vec![leader]; // unclean: what it has is the truth now
            }
            partition.leader = Some(leader);
            partition.leader_epoch += 1;
            partition.partition_epoch += 1;
        }
    }

    pub(crate) fn partition_mut(&mut self, topic: &str, index: i32) -> Option<&mut PartitionMeta> {
        let index = usize::try_from(index).ok()?;
        self.topics.get_mut(topic)?.partitions.get_mut(index)
    }

    /// Checks a reassignment of `topic`/`index` to `target` (`None`: cancel) against this
    /// metadata, without applying it.
    pub fn check_reassignment(
        &self,
        topic: &str,
        index: i32,
        target: Option<&[i32]>,
    ) -> Result<(), ReassignRefusal> {
        let Some(partition) = self.partition(topic, index) else {
            let msg = format!("partition {topic}-{index} does not exist");
            return Err(ControlError::new(E::UnknownTopicOrPartition, msg));
        };
        let Some(target) = target else {
            if partition.adding.is_empty() && partition.removing.is_empty() {
                let msg = format!("no reassignment of {topic}-{index} is in progress");
                return Err(ControlError::new(E::NoReassignmentInProgress, msg));
            }
            return Ok(());
        };
        let unique: BTreeSet<i32> = target.iter().copied().collect();
        if target.is_empty() || unique.len() != target.len() {
            let msg = format!("target replicas {target:?} must be non-empty, without repeats");
            return Err(ControlError::new(E::InvalidReplicaAssignment, msg));
        }
        if let Some(stranger) = target.iter().find(|id| !self.brokers.contains_key(id)) {
            let msg = format!("broker {stranger} is not registered");
            return Err(ControlError::new(E::InvalidReplicaAssignment, msg));
        }
        Ok(())
    }

    /// [`super::placement::Command::Reassign`]: starts, replaces or cancels the
    /// reassignment of each listed partition (those [`Self::check_reassignment`] refuses are
    /// skipped).
    pub(crate) fn reassign(&mut self, moves: &[(String, i32, Option<Vec<i32>>)]) {
        let fenced = self.fenced.clone();
        for (topic, index, target) in moves {
            if self.check_reassignment(topic, *index, target.as_deref()).is_err() {
                continue;
            }
            let Some(partition) = self.partition_mut(topic, *index) else { continue };
            let original: Vec<i32> = partition
                .replicas
                .iter()
                .copied()
                .filter(|r| !partition.adding.contains(r))
                .collect();
            let target = target.clone().unwrap_or_else(|| original.clone());
            if target == original {
                set_replicas(partition, original, &fenced);
                continue;
            }
            let mut replicas = target.clone();
            replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
            partition.adding = target.iter().copied().filter(|r| !original.contains(r)).collect();
            partition.removing = original.iter().copied().filter(|r| !target.contains(r)).collect();
            partition.isr.retain(|r| replicas.contains(r));
            partition.replicas = replicas;
            partition.partition_epoch += 1;
            complete_reassignment(partition, &fenced);
        }
    }

    /// Completes every reassignment whose target replicas are all in sync.
    pub(crate) fn complete_reassignments(&mut self) {
        let fenced = self.fenced.clone();
        for partition in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
            complete_reassignment(partition, &fenced);
        }
    }

    /// Partitions with a reassignment in progress: (topic, partition, replicas, adding,
    /// removing).
    pub fn reassignments(&self) -> Vec<(String, i32, &PartitionMeta)> {
        let mut out = Vec::new();
        for topic in self.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if !p.adding.is_empty() || !p.removing.is_empty() {
                    out.push((topic.name.clone(), index as i32, p));
                }
            }
        }
        out
    }
}

/// Makes `replicas` the partition's whole replica set (no reassignment in progress): the ISR
/// keeps its members among them, and a leader outside them gives way to the first in-sync
/// unfenced one.
fn set_replicas(partition: &mut PartitionMeta, replicas: Vec<i32>, fenced: &BTreeSet<i32>) {
    partition.isr.retain(|r| replicas.contains(r));
    partition.replicas = replicas;
    partition.adding.clear();
    partition.removing.clear();
    partition.partition_epoch += 1;
    if partition.leader.is_some_and(|l| !partition.replicas.contains(&l)) {
        let next =
            partition.replicas.iter().find(|r| partition.isr.contains(r) && !fenced.contains(r));
        partition.leader = next.copied();
        partition.leader_epoch += 1;
    }
    if partition.isr.is_empty() {
        // Every in-sync replica was removed (only possible by cancelling onto replicas that
        // fell out of sync): keep the leader's view if it still holds a replica.
        partition.isr.extend(partition.leader);
    }
}

/// Finishes the partition's reassignment if every target replica is in the ISR.
fn complete_reassignment(partition: &mut PartitionMeta, fenced: &BTreeSet<i32>) {
    if partition.adding.is_empty() && partition.removing.is_empty() {
        return;
    }
    let target: Vec<i32> =
        partition.replicas.iter().copied().filter(|r| !partition.removing.contains(r)).collect();
    if target.iter().all(|r| partition.isr.contains(r)) {
        set_replicas(partition, target, fenced);
    }
}

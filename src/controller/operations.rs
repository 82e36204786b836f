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
//!
//! Decommissioning broker `N` (Redpanda's word; Kafka's UnregisterBroker) reuses
//! reassignment: each partition whose target holds `N` gets a target with `N` replaced by
//! another broker, chosen as placement would: live first, then one of a rack the other
//! replicas do not have, then the one holding the fewest replicas, then the lowest id. `N`
//! gets no new replicas while decommissioned; once it holds none, the controller leader
//! removes it from the Raft membership (`quorum::membership`). Recommissioning lifts that
//! (moves already started go on).

use std::collections::{BTreeMap, BTreeSet};

use super::placement::replication_factor;
use super::{BrokerMeta, ClusterMetadata, ControlError, PartitionMeta, E};

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
        self.check_reassignment_among(topic, index, target, |id| self.brokers.contains_key(&id))
    }

    /// [`Self::check_reassignment`] with `registered` saying which broker ids exist: a single
    /// broker's metadata registers none, yet it is one (its own id).
    pub fn check_reassignment_among(
        &self,
        topic: &str,
        index: i32,
        target: Option<&[i32]>,
        registered: impl Fn(i32) -> bool,
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
        if let Some(stranger) = target.iter().find(|id| !registered(**id)) {
            let msg = format!("broker {stranger} is not registered");
            return Err(ControlError::new(E::InvalidReplicaAssignment, msg));
        }
        Ok(())
    }

    /// [`super::placement::Command::Reassign`]: starts, replaces or cancels the
    /// reassignment of each listed partition (those [`Self::check_reassignment`] refuses are
    /// skipped).
    pub(crate) fn reassign(&mut self, moves: &[Move]) {
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

/// A partition move: (topic, partition, target replicas or `None` to cancel).
type Move = (String, i32, Option<Vec<i32>>);

impl ClusterMetadata {
    /// Registered brokers that may receive replicas: those not decommissioned.
    pub fn placeable(&self) -> BTreeMap<i32, BrokerMeta> {
        let placeable = self.brokers.iter().filter(|(id, _)| !self.decommissioned.contains(id));
        placeable.map(|(id, b)| (*id, b.clone())).collect()
    }

    /// How many partitions broker `id` holds a replica of (moves in progress included).
    pub fn replica_count(&self, id: i32) -> usize {
        let partitions = self.topics.values().flat_map(|t| t.partitions.iter());
        partitions.filter(|p| p.replicas.contains(&id)).count()
    }

    /// [`super::placement::Command::DecommissionBroker`]. Deciding again on a broker
    /// already decommissioned changes nothing.
    pub(crate) fn decommission(&mut self, id: i32) -> Result<(), ControlError> {
        if !self.brokers.contains_key(&id) {
            let msg = format!("broker {id} is not registered");
            return Err(ControlError::new(E::BrokerIdNotRegistered, msg));
        }
        if self.decommissioned.contains(&id) {
            return Ok(());
        }
        let left = self.placeable().len() - 1;
        if let Some(topic) = self.topics.values().find(|t| replication_factor(t) > left) {
            let msg = format!(
                "decommissioning broker {id} would leave {left} broker(s) for topic {:?}, \
                 whose replication factor is {}",
                topic.name,
                replication_factor(topic)
            );
            return Err(ControlError::new(E::InvalidReplicationFactor, msg));
        }
        self.decommissioned.insert(id);
        let moves = self.drain_moves(id);
        self.reassign(&moves);
        Ok(())
    }

    /// The continuous balancer's next moves (Redpanda's `partition_autobalancing_mode`
    /// `continuous`): none while a reassignment is in progress; otherwise replicas move from
    /// the live broker holding the most to the one holding the fewest (decommissioned and
    /// fenced brokers take no part), one move per partition, until the counts differ by at
    /// most one. A move never takes a partition to fewer racks.
    pub fn balance_moves(&self) -> Vec<Move> {
        if !self.reassignments().is_empty() {
            return Vec::new();
        }
        let placeable = self.placeable();
        let live = placeable.keys().copied().filter(|b| !self.fenced.contains(b));
        let mut load: BTreeMap<i32, usize> = live.map(|b| (b, self.replica_count(b))).collect();
        let mut targets: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
        for topic in self.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                targets.insert((topic.name.clone(), index as i32), p.replicas.clone());
            }
        }
        let mut moved: BTreeSet<(String, i32)> = BTreeSet::new();
        while let Some((most, fewest)) = spread_of(&load) {
            let movable = |&(key, replicas): &(&(String, i32), &Vec<i32>)| {
                !moved.contains(key)
                    && replicas.contains(&most)
                    && !replicas.contains(&fewest)
                    && self.racks_kept(replicas, most, fewest)
            };
            let Some((key, replicas)) = targets.iter().find(movable) else { break };
            let (key, replicas) = (key.clone(), replicas.clone());
            let target = replicas.iter().map(|&r| if r == most { fewest } else { r }).collect();
            targets.insert(key.clone(), target);
            moved.insert(key);
            load.entry(most).and_modify(|n| *n -= 1);
            load.entry(fewest).and_modify(|n| *n += 1);
        }
        moved.into_iter().map(|key| (key.0.clone(), key.1, targets.remove(&key))).collect()
    }

    /// Whether replacing `from` by `to` in `replicas` keeps as many racks.
    fn racks_kept(&self, replicas: &[i32], from: i32, to: i32) -> bool {
        let rack = |b: &i32| self.brokers.get(b).and_then(|m| m.rack.as_deref());
        let before: BTreeSet<Option<&str>> = replicas.iter().map(rack).collect();
        let swapped = replicas.iter().map(|&r| if r == from { to } else { r });
        let after: BTreeSet<Option<&str>> = swapped.map(|r| rack(&r)).collect();
        after.len() >= before.len()
    }

    /// [`super::placement::Command::RecommissionBroker`].
    pub(crate) fn recommission(&mut self, id: i32) -> Result<(), ControlError> {
        if !self.decommissioned.remove(&id) {
            let msg = format!("broker {id} is not decommissioned");
            return Err(ControlError::new(E::InvalidRequest, msg));
        }
        Ok(())
    }

    /// The moves that take every replica off broker `id` (see the module docs).
    fn drain_moves(&self, id: i32) -> Vec<Move> {
        let placeable = self.placeable();
        let rack = |b: &i32| self.brokers.get(b).and_then(|m| m.rack.as_deref());
        let targets = self.topics.values().flat_map(|t| {
            t.partitions.iter().enumerate().map(move |(i, p)| (&t.name, i as i32, target_of(p)))
        });
        let mut load: BTreeMap<i32, usize> = placeable.keys().map(|&b| (b, 0)).collect();
        for (_, _, target) in targets.clone() {
            for r in &target {
                load.entry(*r).and_modify(|n| *n += 1);
            }
        }
        let mut moves = Vec::new();
        for (topic, index, target) in targets.filter(|(_, _, target)| target.contains(&id)) {
            let racks: BTreeSet<Option<&str>> =
                target.iter().filter(|&&r| r != id).map(rack).collect();
            let spare = placeable.keys().copied().filter(|b| !target.contains(b));
            let choice = spare.min_by_key(|&b| {
                (self.fenced.contains(&b), racks.contains(&rack(&b)), load[&b], b)
            });
            // None only without a spare broker, which the replication factor check rules out.
            let Some(choice) = choice else { continue };
            load.entry(choice).and_modify(|n| *n += 1);
            let target = target.iter().map(|&r| if r == id { choice } else { r }).collect();
            moves.push((topic.clone(), index, Some(target)));
        }
        moves
    }
}

/// The brokers holding the most and the fewest replicas when they differ by more than one
/// (ties: the lowest id).
fn spread_of(load: &BTreeMap<i32, usize>) -> Option<(i32, i32)> {
    let (&most, &high) = load.iter().max_by_key(|&(&b, &n)| (n, std::cmp::Reverse(b)))?;
    let (&fewest, &low) = load.iter().min_by_key(|&(&b, &n)| (n, b))?;
    (high > low + 1).then_some((most, fewest))
}

/// The replicas a partition ends with: its replicas minus those a move is removing.
fn target_of(partition: &PartitionMeta) -> Vec<i32> {
    let removing = &partition.removing;
    partition.replicas.iter().copied().filter(|r| !removing.contains(r)).collect()
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

#[cfg(test)]
mod decommission_tests {
    use super::*;
    use crate::controller::failover_tests::create;
    use crate::controller::placement::Command;

    /// Brokers 1..=4 (racks a, b, c, a) and topic "t": 8 partitions, RF 3.
    fn cluster() -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
            let mut broker = BrokerMeta::new(id, "127.0.0.1", 9000 + id as u16);
            broker.rack = Some(rack.into());
            let command = Command::RegisterBroker { broker, cluster_id: "c".into() };
            meta = meta.apply(&command).unwrap();
        }
        meta.apply(&create("t", 8, 3)).unwrap()
    }

    /// Every partition's ISR becomes its whole replica list (the new replicas caught up).
    fn catch_up(meta: &mut ClusterMetadata) {
        for p in meta.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
            p.isr = p.replicas.clone();
        }
        meta.complete_reassignments();
    }

    #[test]
    fn a_decommissioned_broker_is_drained_over_racks_and_gets_nothing_new() {
        let meta = cluster();
        assert!(meta.replica_count(1) > 0);
        let mut meta = meta.apply(&Command::DecommissionBroker { id: 1 }).unwrap();
        assert_eq!(meta.reassignments().len(), meta.replica_count(1), "one move per replica");
        catch_up(&mut meta);
        assert_eq!(meta.replica_count(1), 0);
        for p in &meta.topics["t"].partitions {
            let racks: BTreeSet<_> =
                p.replicas.iter().map(|r| meta.brokers[r].rack.clone()).collect();
            assert_eq!(racks.len(), 3, "replicas {:?} over three racks", p.replicas);
            assert!(p.leader.is_some_and(|l| l != 1));
        }
        let meta = meta.apply(&create("u", 4, 3)).unwrap();
        assert!(meta.topics["u"].partitions.iter().all(|p| !p.replicas.contains(&1)));
        // Recommissioned, it may receive replicas again.
        let meta = meta.apply(&Command::RecommissionBroker { id: 1 }).unwrap();
        let meta = meta.apply(&create("v", 4, 3)).unwrap();
        assert!(meta.topics["v"].partitions.iter().any(|p| p.replicas.contains(&1)));
    }

    #[test]
    fn the_balancer_gives_a_new_broker_its_share() {
        let mut meta = ClusterMetadata::default();
        for id in 1..=3 {
            let broker = BrokerMeta::new(id, "127.0.0.1", 9000 + id as u16);
            meta = meta.apply(&Command::RegisterBroker { broker, cluster_id: "c".into() }).unwrap();
        }
        let meta = meta.apply(&create("t", 6, 3)).unwrap();
        assert!(meta.balance_moves().is_empty(), "balanced already");
        let broker = BrokerMeta::new(4, "127.0.0.1", 9004);
        let meta = meta.apply(&Command::RegisterBroker { broker, cluster_id: "c".into() }).unwrap();
        let moves = meta.balance_moves();
        assert!(!moves.is_empty());
        let mut meta = meta.apply(&Command::Reassign { moves }).unwrap();
        assert!(meta.balance_moves().is_empty(), "nothing more while moves run");
        catch_up(&mut meta);
        let counts: Vec<usize> = (1..=4).map(|b| meta.replica_count(b)).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{counts:?}");
        assert!(meta.balance_moves().is_empty());
    }

    #[test]
    fn decommissioning_below_a_topic_replication_factor_is_refused() {
        let meta = cluster().apply(&Command::DecommissionBroker { id: 1 }).unwrap();
        let err = meta.apply(&Command::DecommissionBroker { id: 2 }).unwrap_err();
        assert_eq!(err.code, E::InvalidReplicationFactor.code());
        assert!(err.message.contains("replication factor is 3"), "{}", err.message);
        let err = meta.apply(&Command::DecommissionBroker { id: 9 }).unwrap_err();
        assert_eq!(err.code, E::BrokerIdNotRegistered.code());
        let err = cluster().apply(&Command::RecommissionBroker { id: 1 }).unwrap_err();
        assert_eq!(err.code, E::InvalidRequest.code());
    }
}

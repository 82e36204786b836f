//! ISR changes, leader failover, fencing and preferred-leader restore in the replicated
//! metadata ([`ClusterMetadata::apply`]).

use std::collections::BTreeMap;

use super::placement::{Command, UNCLEAN_LEADER_ELECTION};
use super::{BrokerMeta, ClusterMetadata, PartitionMeta, E, NOT_LOCAL};

/// `meta` with broker `id` registered (also used by `placement`'s tests).
pub(super) fn register(meta: &ClusterMetadata, id: i32) -> ClusterMetadata {
    let broker = BrokerMeta::new(id, "127.0.0.1", 9000 + id as u16);
    meta.apply(&Command::RegisterBroker { broker, cluster_id: "c".into() }).unwrap()
}

/// CreateTopic of `name` with no configs (also used by `placement`'s tests).
pub(super) fn create(name: &str, partitions: i32, replication_factor: i32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: uuid::Uuid::from_u128(7),
        partitions,
        replication_factor,
        configs: BTreeMap::new(),
        assignment: Vec::new(),
    }
}

/// Brokers 1..=3 and topic "t": 3 partitions, replicas [1,2,3], [2,3,1], [3,1,2].
fn cluster() -> ClusterMetadata {
    let mut meta = ClusterMetadata::default();
    for id in 1..=3 {
        meta = register(&meta, id);
    }
    meta.apply(&create("t", 3, 3)).unwrap()
}

fn part(meta: &ClusterMetadata, index: i32) -> &PartitionMeta {
    meta.partition("t", index).unwrap()
}

fn fence(meta: &ClusterMetadata, id: i32) -> ClusterMetadata {
    meta.apply(&Command::FenceBroker { id }).unwrap()
}

fn unfence(meta: &ClusterMetadata, id: i32) -> ClusterMetadata {
    meta.apply(&Command::UnfenceBroker { id }).unwrap()
}

fn alter(meta: &ClusterMetadata, index: i32, isr: &[i32]) -> Command {
    let p = part(meta, index);
    Command::AlterPartition {
        topic: "t".into(),
        partition: index,
        leader: p.leader.unwrap(),
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: isr.to_vec(),
    }
}

#[test]
fn new_partitions_start_with_every_replica_in_sync() {
    let meta = cluster();
    let p = part(&meta, 1);
    assert_eq!(
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch),
        (Some(2), vec![2, 3, 1], 0, 0)
    );
}

#[test]
fn fencing_a_leader_moves_leadership_to_the_next_in_sync_replica() {
    let meta = cluster();
    // Partition 0: replicas [1,2,3]; 2 left the ISR, so 3 takes over from 1.
    let meta = meta.apply(&alter(&meta, 0, &[1, 3])).unwrap();
    assert_eq!(part(&meta, 0).partition_epoch, 1);
    let fenced = fence(&meta, 1);
    assert!(fenced.fenced.contains(&1));
    let p0 = part(&fenced, 0);
    assert_eq!((p0.leader, p0.isr.clone()), (Some(3), vec![3]));
    assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 2));
    // Partition 1 ([2,3,1]) keeps its leader; 1 leaves its ISR.
    let p1 = part(&fenced, 1);
    assert_eq!((p1.leader, p1.isr.clone()), (Some(2), vec![2, 3]));
    assert_eq!((p1.leader_epoch, p1.partition_epoch), (0, 1));
    // Fencing twice changes nothing more.
    let again = fence(&fenced, 1);
    assert_eq!(again.topics, fenced.topics);
}

#[test]
fn the_last_in_sync_replica_keeps_its_place_and_leads_again_when_unfenced() {
    let meta = cluster();
    let meta = meta.apply(&alter(&meta, 0, &[1])).unwrap();
    let meta = fence(&meta, 1);
    let p0 = part(&meta, 0);
    assert_eq!(
        (p0.leader, p0.isr.clone(), p0.leader_epoch, p0.partition_epoch),
        (None, vec![1], 1, 2)
    );
    assert_eq!(meta.localize(2, 1).owner("t", 0), Err(E::NotLeaderOrFollower));
    // Another broker coming back does not help: it is not in sync.
    let meta = unfence(&fence(&meta, 2), 2);
    assert_eq!(part(&meta, 0).leader, None);
    let meta = unfence(&meta, 1);
    assert!(meta.fenced.is_empty());
    let p0 = part(&meta, 0);
    assert_eq!((p0.leader, p0.isr.clone(), p0.leader_epoch), (Some(1), vec![1], 2));
}

#[test]
fn unclean_election_needs_the_topic_config() {
    let meta = cluster();
    let meta = meta.apply(&alter(&meta, 0, &[1])).unwrap();
    assert_eq!(part(&fence(&meta, 1), 0).leader, None);
    let configs = BTreeMap::from([(UNCLEAN_LEADER_ELECTION.to_string(), "true".to_string())]);
    let unclean = meta.apply(&Command::SetTopicConfigs { name: "t".into(), configs }).unwrap();
    let fenced = fence(&unclean, 1);
    let p0 = part(&fenced, 0);
    assert_eq!((p0.leader, p0.isr.clone(), p0.leader_epoch), (Some(2), vec![2], 1));

    // Allowing it later elects a leader for a partition left without one.
    let stuck = fence(&meta, 1);
    let configs = BTreeMap::from([(UNCLEAN_LEADER_ELECTION.to_string(), "true".to_string())]);
    let set = Command::SetTopicConfigs { name: "t".into(), configs };
    let freed = stuck.apply(&set).unwrap();
    let p0 = part(&freed, 0);
    assert_eq!((p0.leader, p0.isr.clone(), p0.leader_epoch), (Some(2), vec![2], 2));
}

#[test]
fn alter_partition_is_fenced_by_epochs_and_checked() {
    let meta = cluster();
    let code = |command: &Command| meta.apply(command).unwrap_err().code;
    let with = |f: &dyn Fn(&mut Command)| {
        let mut command = alter(&meta, 0, &[1, 2]);
        f(&mut command);
        command
    };
    let stale_leader_epoch = with(&|c| {
        if let Command::AlterPartition { leader_epoch, .. } = c {
            *leader_epoch = -1;
        }
    });
    assert_eq!(code(&stale_leader_epoch), E::FencedLeaderEpoch.code());
    let not_leader = with(&|c| {
        if let Command::AlterPartition { leader, .. } = c {
            *leader = 2;
        }
    });
    assert_eq!(code(&not_leader), E::FencedLeaderEpoch.code());
    let stale_partition_epoch = with(&|c| {
        if let Command::AlterPartition { partition_epoch, .. } = c {
            *partition_epoch = 5;
        }
    });
    assert_eq!(code(&stale_partition_epoch), E::InvalidUpdateVersion.code());
    assert_eq!(code(&alter(&meta, 0, &[2, 3])), E::InvalidRequest.code());
    assert_eq!(code(&alter(&meta, 0, &[1, 4])), E::InvalidRequest.code());
    assert_eq!(code(&alter(&meta, 0, &[1, 1])), E::InvalidRequest.code());
    let unknown = with(&|c| {
        if let Command::AlterPartition { partition, .. } = c {
            *partition = 9;
        }
    });
    assert_eq!(code(&unknown), E::UnknownTopicOrPartition.code());

    // A shrink applies once; the same request again carries a stale partition epoch.
    let shrink = alter(&meta, 0, &[1, 2]);
    let shrunk = meta.apply(&shrink).unwrap();
    assert_eq!((part(&shrunk, 0).isr.clone(), part(&shrunk, 0).partition_epoch), (vec![1, 2], 1));
    assert_eq!(shrunk.apply(&shrink).unwrap_err().code, E::InvalidUpdateVersion.code());
    // A fenced broker cannot join the ISR.
    let fenced = fence(&shrunk, 3);
    let expand = alter(&fenced, 0, &[1, 2, 3]);
    assert_eq!(fenced.apply(&expand).unwrap_err().code, E::IneligibleReplica.code());
    let back = unfence(&fenced, 3);
    let expanded = back.apply(&alter(&back, 0, &[1, 2, 3])).unwrap();
    assert_eq!(part(&expanded, 0).isr, vec![1, 2, 3]);
}

#[test]
fn preferred_leaders_come_back_only_when_eligible() {
    let meta = cluster();
    assert!(!meta.preferred_leaders_eligible());
    // 1 fails: partition 0 goes to 2 and 1 leaves every ISR.
    let meta = fence(&meta, 1);
    assert_eq!(part(&meta, 0).leader, Some(2));
    let meta = unfence(&meta, 1);
    assert!(!meta.preferred_leaders_eligible(), "1 is not in sync yet");
    let unchanged = meta.apply(&Command::ElectPreferredLeaders).unwrap();
    assert_eq!(unchanged.topics, meta.topics);
    // Partition 0's leader (2) adds 1 back to the ISR: now 1 may lead again.
    let meta = meta.apply(&alter(&meta, 0, &[2, 3, 1])).unwrap();
    assert!(meta.preferred_leaders_eligible());
    let elected = meta.apply(&Command::ElectPreferredLeaders).unwrap();
    let p0 = part(&elected, 0);
    assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (Some(1), 2, 3));
    assert_eq!(elected.topics["t"].partitions[1..], meta.topics["t"].partitions[1..]);
    assert!(!elected.preferred_leaders_eligible());
}

#[test]
fn placement_avoids_a_fenced_first_replica() {
    let meta = fence(&cluster(), 1);
    let meta = meta.apply(&create("u", 3, 2)).unwrap();
    for p in &meta.topics["u"].partitions {
        assert_ne!(p.leader, Some(1), "{p:?}");
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(p.isr, p.replicas);
    }
}

#[test]
fn followers_get_shards_that_stay_put_when_leadership_moves() {
    let meta = cluster();
    let meta = meta.apply(&create("big", 8, 2)).unwrap();
    let shards = |meta: &ClusterMetadata, node: i32| -> Vec<usize> {
        let local = meta.localize(node, 3);
        local.topics.values().flat_map(|t| t.partitions.iter().map(|p| p.shard)).collect()
    };
    for node in 1..=3 {
        let local = meta.localize(node, 3);
        for topic in local.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                let hosted = p.replicas.contains(&node);
                assert_eq!(p.shard != NOT_LOCAL, hosted, "{node} {p:?}");
                let owner = local.owner(&topic.name, index as i32);
                let leads = p.leader == Some(node);
                assert_eq!(owner.is_ok(), leads, "only the leader owns it");
                assert_eq!(local.hosted_shard(&topic.name, index as i32).is_some(), hosted);
            }
        }
    }
    let moved = unfence(&fence(&meta, 1), 1);
    assert_ne!(moved.topics, meta.topics, "leadership moved");
    for node in 1..=3 {
        assert_eq!(shards(&meta, node), shards(&moved, node));
    }
}

#[test]
fn data_from_before_isrs_and_fencing_still_loads() {
    let old = r#"{"cluster_id":"c","version":3,"next_shard":0,"next_broker":1,
        "brokers":{"1":{"id":1,"host":"h","port":1},"2":{"id":2,"host":"h","port":2}},
        "topics":{"t":{"name":"t","id":"00000000-0000-0000-0000-000000000007","configs":{},
        "partitions":[{"shard":0,"leader_epoch":0,"replicas":[1,2],"leader":1}]}}}"#;
    let meta: ClusterMetadata = serde_json::from_str(old).unwrap();
    assert!(meta.fenced.is_empty());
    let p = part(&meta, 0);
    assert_eq!((p.isr.len(), p.partition_epoch), (0, 0));
    assert_eq!(part(&meta.localize(1, 1), 0).isr, vec![1, 2], "an empty ISR means all");
    let fenced = fence(&meta, 1);
    let p = part(&fenced, 0);
    assert_eq!((p.leader, p.isr.clone(), p.partition_epoch), (Some(2), vec![2], 1));
    // And an old log entry (a command without the new variants) still reads.
    let command = r#"{"DeleteTopic":{"name":"t"}}"#;
    let command: Command = serde_json::from_str(command).unwrap();
    assert_eq!(command, Command::DeleteTopic { name: "t".into() });
    let written = serde_json::to_string(&fenced).unwrap();
    let read: ClusterMetadata = serde_json::from_str(&written).unwrap();
    assert_eq!(read, fenced);
}

// ---- cluster operations (issue 19) ----

fn reassign(meta: &ClusterMetadata, index: i32, target: Option<Vec<i32>>) -> ClusterMetadata {
    meta.apply(&Command::Reassign { moves: vec![("t".into(), index, target)] }).unwrap()
}

#[test]
fn a_reassignment_adds_waits_for_the_isr_moves_leadership_then_removes() {
    let mut meta = cluster();
    meta = register(&meta, 4);
    // Partition 0: [1,2,3] led by 1, moved to [4,2,3].
    let moving = reassign(&meta, 0, Some(vec![4, 2, 3]));
    let p = part(&moving, 0);
    assert_eq!(
        (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
        (vec![4, 2, 3, 1], vec![4], vec![1])
    );
    assert_eq!((p.leader, p.isr.clone()), (Some(1), vec![1, 2, 3]), "nothing moves yet");
    assert_eq!(moving.reassignments().len(), 1);
    // The leader adds 4 to the ISR once it caught up: the move completes at once.
    let done = moving.apply(&alter(&moving, 0, &[1, 2, 3, 4])).unwrap();
    let p = part(&done, 0);
    assert_eq!((p.replicas.clone(), p.isr.clone()), (vec![4, 2, 3], vec![2, 3, 4]));
    assert_eq!(p.leader, Some(4), "the removed leader hands over to the first in-sync target");
    assert_eq!(p.leader_epoch, 1);
    assert!(p.adding.is_empty() && p.removing.is_empty() && done.reassignments().is_empty());
}

#[test]
fn a_reassignment_can_be_cancelled_or_replaced_and_checks_its_target() {
    let meta = register(&cluster(), 4);
    let moving = reassign(&meta, 1, Some(vec![4, 1]));
    assert_eq!(part(&moving, 1).replicas, vec![4, 1, 2, 3]);
    // Replaced: the original replicas are still 1, 2 and 3 (in the order of the current
    // list, as in KRaft: replicas minus adding), whatever the first target was.
    let replaced = reassign(&moving, 1, Some(vec![2, 4, 1]));
    let p = part(&replaced, 1);
    assert_eq!(
        (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
        (vec![2, 4, 1, 3], vec![4], vec![3])
    );
    let cancelled = reassign(&replaced, 1, None);
    let p = part(&cancelled, 1);
    // Back to 1, 2 and 3, in the order of the replaced move's list.
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2, 1, 3], vec![2, 3, 1], Some(2))
    );
    assert!(cancelled.reassignments().is_empty());
    let none = cancelled.check_reassignment("t", 1, None).unwrap_err();
    assert_eq!(none.code, E::NoReassignmentInProgress.code());
    let stranger = cancelled.check_reassignment("t", 1, Some(&[9])).unwrap_err();
    assert_eq!(stranger.code, E::InvalidReplicaAssignment.code());
    let repeated = cancelled.check_reassignment("t", 1, Some(&[1, 1])).unwrap_err();
    assert_eq!(repeated.code, E::InvalidReplicaAssignment.code());
}

#[test]
fn elect_leaders_preferred_and_unclean_and_the_cluster_default() {
    use crate::controller::operations::{election, ElectionRefusal};
    let meta = cluster();
    // Partition 0 [1,2,3]: 1 fenced, 2 leads; back and in sync, 1 can be elected again.
    let meta = unfence(&fence(&meta, 1), 1);
    let meta = meta.apply(&alter(&meta, 0, &[2, 3, 1])).unwrap();
    assert_eq!(part(&meta, 0).leader, Some(2));
    assert_eq!(election(part(&meta, 0), &meta.fenced, false), Ok(1));
    let elected = meta
        .apply(&Command::ElectLeaders { partitions: vec![("t".into(), 0)], unclean: false })
        .unwrap();
    assert_eq!(part(&elected, 0).leader, Some(1));
    assert_eq!(
        election(part(&elected, 0), &elected.fenced, false),
        Err(ElectionRefusal::NotNeeded)
    );
    // Leaderless: every in-sync replica fenced; the out-of-sync one is alive.
    let meta = elected.apply(&alter(&elected, 0, &[1])).unwrap();
    let meta = fence(&fence(&meta, 2), 1);
    assert_eq!(part(&meta, 0).leader, None);
    assert_eq!(
        election(part(&meta, 0), &meta.fenced, false),
        Err(ElectionRefusal::PreferredNotAvailable)
    );
    let unclean = meta
        .apply(&Command::ElectLeaders { partitions: vec![("t".into(), 0)], unclean: true })
        .unwrap();
    assert_eq!((part(&unclean, 0).leader, part(&unclean, 0).isr.clone()), (Some(3), vec![3]));
    // The controller's default allows it too, for topics that do not say.
    let defaulted =
        meta.apply(&Command::SetClusterDefaults { unclean_leader_election: true }).unwrap();
    assert_eq!(part(&defaulted, 0).leader, Some(3));
}

#[test]
fn replicas_spread_over_racks() {
    let mut meta = ClusterMetadata::default();
    // Six brokers, two per rack, ids not in rack order.
    for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
        let broker =
            BrokerMeta { rack: Some(rack.into()), ..BrokerMeta::new(id, "127.0.0.1", 9000) };
        meta = meta.apply(&Command::RegisterBroker { broker, cluster_id: "c".into() }).unwrap();
    }
    let meta = meta.apply(&create("t", 12, 3)).unwrap();
    let rack = |id: i32| meta.brokers[&id].rack.clone().unwrap();
    let mut leaders = BTreeMap::new();
    for p in &meta.topics["t"].partitions {
        let racks: std::collections::BTreeSet<String> =
            p.replicas.iter().map(|&r| rack(r)).collect();
        assert_eq!(racks.len(), 3, "{:?} spans every rack", p.replicas);
        *leaders.entry(p.leader.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(leaders.len(), 6, "leaders spread over every broker: {leaders:?}");
}

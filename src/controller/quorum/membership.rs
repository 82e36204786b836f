//! The Raft membership follows decommissioning (issue 19): the controller leader removes a
//! decommissioned broker from the membership once it holds no replica (a voter stops
//! voting, a learner stops being sent the log), and puts a recommissioned voter back.
//! A recommissioned observer comes back by itself: its join request ([`super::join`]) is
//! refused while it is decommissioned and answered once it is not.
//!
//! One change at a time, each a joint-consensus membership change of openraft; a change that
//! fails or times out is proposed again at the leader's next tick. A leader that removes
//! itself steps down once the change is committed (openraft), and the next leader carries on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Membership};

use super::store::StateMachine;
use super::{ControllerRaft, NodeId};
use crate::controller::ClusterMetadata;

/// How long one membership change may take before the next tick tries again.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the leader looks.
const TICK: Duration = Duration::from_millis(500);

/// Forever: while this node leads, [`reconcile`] every [`TICK`]. Its own task, so a slow
/// membership change never delays fencing (`liveness`).
pub async fn run(raft: ControllerRaft, machine: StateMachine, voters: BTreeMap<NodeId, BasicNode>) {
    loop {
        let me = raft.metrics().borrow().id;
        if raft.current_leader().await == Some(me) {
            reconcile(&raft, &machine, &voters).await;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Leader: makes the next membership change decommissioning calls for, if any.
pub async fn reconcile(
    raft: &ControllerRaft,
    machine: &StateMachine,
    voters: &BTreeMap<NodeId, BasicNode>,
) {
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    let Some(change) = machine.with_metadata(|meta| wanted(meta, &membership, voters)) else {
        return;
    };
    let what = format!("{change:?}");
    match tokio::time::timeout(CHANGE_TIMEOUT, raft.change_membership(change, false)).await {
        Ok(Ok(written)) => {
            let index = written.log_id.index;
            tracing::info!(change = %what, index, "controller membership changed")
        }
        Ok(Err(e)) => tracing::warn!(change = %what, "controller membership change failed: {e}"),
        Err(_) => tracing::warn!(change = %what, "controller membership change not done in time"),
    }
}

/// The membership change the metadata calls for: first the removal of a decommissioned
/// broker that holds no replica, then the return of a recommissioned voter (one of the
/// configured `voters` missing from the membership's).
fn wanted(
    meta: &ClusterMetadata,
    membership: &Membership<NodeId, BasicNode>,
    voters: &BTreeMap<NodeId, BasicNode>,
) -> Option<ChangeMembers<NodeId, BasicNode>> {
    let voting: BTreeSet<NodeId> = membership.voter_ids().collect();
    let drained = meta.decommissioned.iter().filter(|&&id| meta.replica_count(id) == 0);
    for &id in drained {
        let node = id as NodeId;
        // The last voter stays: without one there is no controller to recommission it.
        if voting.contains(&node) && voting.len() > 1 {
            return Some(ChangeMembers::RemoveVoters(BTreeSet::from([node])));
        }
        if !voting.contains(&node) && membership.get_node(&node).is_some() {
            return Some(ChangeMembers::RemoveNodes(BTreeSet::from([node])));
        }
    }
    let mut back = voters.iter().filter(|(&node, _)| {
        !voting.contains(&node) && !meta.decommissioned.contains(&(node as i32))
    });
    let (&node, address) = back.next()?;
    Some(ChangeMembers::AddVoters(BTreeMap::from([(node, address.clone())])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::placement::Command;
    use crate::controller::BrokerMeta;

    fn node(id: NodeId) -> (NodeId, BasicNode) {
        (id, BasicNode::new(format!("127.0.0.1:{}", 9000 + id)))
    }

    #[test]
    fn a_drained_broker_leaves_and_a_recommissioned_voter_returns() {
        let voters: BTreeMap<NodeId, BasicNode> = [node(1), node(2), node(3)].into();
        let all: BTreeMap<NodeId, BasicNode> = [node(1), node(2), node(3), node(4)].into();
        let full = Membership::new(vec![[1, 2, 3].into()], all.clone());
        let mut meta = ClusterMetadata::default();
        for id in 1..=4 {
            let broker = BrokerMeta::new(id, "127.0.0.1", 9000 + id as u16);
            meta = meta.apply(&Command::RegisterBroker { broker, cluster_id: "c".into() }).unwrap();
        }
        assert!(wanted(&meta, &full, &voters).is_none());
        for id in [1, 4] {
            let drained = meta.apply(&Command::DecommissionBroker { id }).unwrap();
            let change = wanted(&drained, &full, &voters);
            let node = id as NodeId;
            let expected = if id == 1 {
                ChangeMembers::RemoveVoters(BTreeSet::from([node]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node]))
            };
            assert_eq!(change, Some(expected));
        }
        // Voter 1 removed and recommissioned: it is added back.
        let without: BTreeMap<NodeId, BasicNode> = [node(2), node(3), node(4)].into();
        let less = Membership::new(vec![[2, 3].into()], without);
        let gone = meta.apply(&Command::DecommissionBroker { id: 1 }).unwrap();
        assert!(wanted(&gone, &less, &voters).is_none(), "stays out while decommissioned");
        let back = gone.apply(&Command::RecommissionBroker { id: 1 }).unwrap();
        let expected = ChangeMembers::AddVoters([node(1)].into());
        assert_eq!(wanted(&back, &less, &voters), Some(expected));
    }
}

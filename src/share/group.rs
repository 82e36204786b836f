//! One share group's membership (KIP-932), as a pure state machine.
//!
//! Members join with ShareGroupHeartbeat (member epoch 0, with a member id the client chose),
//! heartbeat with the member epoch they were given, and leave with epoch -1. Whenever the
//! members or their subscriptions change, the group epoch goes up and the server-side
//! uniform assignor runs again: a share group's partitions are spread over its members, and
//! when there are more members than partitions several members share one partition (share
//! groups need no exclusive ownership). A member takes its new assignment at its next
//! heartbeat, together with the group epoch as its member epoch; there is no revocation phase.
//! A member not heard from for the session timeout is removed ([`ShareGroup::expire`]).
//!
//! Nothing here reads a clock: every call takes `now_ms`.

use std::collections::BTreeMap;

/// A heartbeat's refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatError {
    /// A member id or epoch outside what the protocol allows (INVALID_REQUEST).
    Invalid,
    /// The member is not in the group (UNKNOWN_MEMBER_ID).
    UnknownMember,
    /// The member's epoch is not the one it was given (FENCED_MEMBER_EPOCH).
    FencedEpoch,
    /// The group is full (GROUP_MAX_SIZE_REACHED).
    Full,
}

/// What a heartbeat sends.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    /// The member id (chosen by the client since ShareGroupHeartbeat v1).
    pub member_id: String,
    /// 0 to join, -1 to leave, otherwise the epoch the member has.
    pub member_epoch: i32,
    /// The topics subscribed to, when they changed (or on joining).
    pub subscribed: Option<Vec<String>>,
    /// The member's rack, if any.
    pub rack: Option<String>,
    /// The client id and host, for describe.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
}

/// What a heartbeat answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member's epoch now (-1 after leaving).
    pub member_epoch: i32,
    /// The member's assignment, when it changed or the member just joined.
    pub assignment: Option<Vec<(String, Vec<i32>)>>,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// The epoch the member was last given.
    pub epoch: i32,
    /// Subscribed topics, sorted.
    pub subscribed: Vec<String>,
    /// Rack.
    pub rack: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// When it was last heard from.
    pub last_seen_ms: i64,
    /// Its assignment: topic name -> partitions, sorted.
    pub assignment: BTreeMap<String, Vec<i32>>,
    /// Whether the member has been sent `assignment` yet.
    sent: bool,
}

/// One share group. See the module docs.
#[derive(Clone, Debug)]
pub struct ShareGroup {
    /// The group id.
    pub id: String,
    /// Goes up whenever the members, their subscriptions or the topics change.
    pub epoch: i32,
    /// The epoch the current assignment was computed for.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Partition counts of the subscribed topics the assignment was computed with.
    topics: BTreeMap<String, i32>,
    members_max: usize,
}

impl ShareGroup {
    /// An empty group holding at most `members_max` members (`group.share.max.size`).
    pub fn new(id: &str, members_max: usize) -> ShareGroup {
        ShareGroup {
            id: id.to_owned(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            topics: BTreeMap::new(),
            members_max,
        }
    }

    /// An empty group at `epoch`, the epoch its coordinator recorded (ShareGroupMetadata):
    /// a group loaded after a restart carries on from it.
    pub fn restored(id: &str, members_max: usize, epoch: i32) -> ShareGroup {
        let mut group = ShareGroup::new(id, members_max);
        group.epoch = epoch;
        group.assignment_epoch = epoch;
        group
    }

    /// "Empty" or "Stable" (KIP-932's states, as ShareGroupDescribe and ListGroups show).
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// Every topic some member subscribes to.
    pub fn subscribed_topics(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.members.values().flat_map(|m| m.subscribed.iter().cloned()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Handles one heartbeat at `now_ms`. `partitions` gives a topic's partition count
    /// (`None`: no such topic).
    pub fn heartbeat(
        &mut self,
        hb: &Heartbeat,
        now_ms: i64,
        partitions: &dyn Fn(&str) -> Option<i32>,
    ) -> Result<HeartbeatReply, HeartbeatError> {
        if hb.member_id.is_empty() || hb.member_id.len() > MEMBER_ID_BYTES_MAX {
            return Err(HeartbeatError::Invalid);
        }
        let epoch_before = self.epoch;
        match hb.member_epoch {
            -1 => {
                if self.members.remove(&hb.member_id).is_none() {
                    return Err(HeartbeatError::UnknownMember);
                }
                self.epoch += 1;
                self.reassign(partitions);
                return Ok(HeartbeatReply { member_epoch: -1, assignment: None });
            }
            0 => self.join(hb, now_ms)?,
            epoch if epoch < 0 => return Err(HeartbeatError::Invalid),
            epoch => {
                let member =
                    self.members.get_mut(&hb.member_id).ok_or(HeartbeatError::UnknownMember)?;
                if epoch != member.epoch {
                    return Err(HeartbeatError::FencedEpoch);
                }
                member.last_seen_ms = now_ms;
                if let Some(topics) = &hb.subscribed {
                    let mut topics = topics.clone();
                    topics.sort();
                    topics.dedup();
                    if topics != member.subscribed {
                        member.subscribed = topics;
                        self.epoch += 1;
                    }
                }
            }
        }
        let counts = self.topic_counts(partitions);
        if counts != self.topics || self.assignment_epoch != self.epoch {
            // One bump per heartbeat, as Kafka's: a join or a new subscription that also
            // changes the subscribed topics' partition counts is one new group epoch.
            if counts != self.topics && self.epoch == epoch_before {
                self.epoch += 1;
            }
            self.reassign(partitions);
        }
        let epoch = self.epoch;
        let member = self.members.get_mut(&hb.member_id).ok_or(HeartbeatError::UnknownMember)?;
        let assignment = (!member.sent || member.epoch != epoch)
            .then(|| member.assignment.iter().map(|(t, p)| (t.clone(), p.clone())).collect());
        member.sent = true;
        member.epoch = epoch;
        Ok(HeartbeatReply { member_epoch: epoch, assignment })
    }

    /// Removes the members not heard from since `now_ms - session_timeout_ms`; returns
    /// their ids.
    pub fn expire(
        &mut self,
        now_ms: i64,
        session_timeout_ms: i64,
        partitions: &dyn Fn(&str) -> Option<i32>,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| now_ms.saturating_sub(m.last_seen_ms) > session_timeout_ms)
            .map(|m| m.id.clone())
            .collect();
        if !gone.is_empty() {
            for id in &gone {
                self.members.remove(id);
            }
            self.epoch += 1;
            self.reassign(partitions);
        }
        gone
    }

    fn join(&mut self, hb: &Heartbeat, now_ms: i64) -> Result<(), HeartbeatError> {
        let known = self.members.contains_key(&hb.member_id);
        if !known && self.members.len() >= self.members_max {
            return Err(HeartbeatError::Full);
        }
        let mut subscribed = hb.subscribed.clone().unwrap_or_default();
        subscribed.sort();
        subscribed.dedup();
        // A member that rejoins (epoch 0 again, after an error) starts over.
        self.members.insert(
            hb.member_id.clone(),
            Member {
                id: hb.member_id.clone(),
                epoch: 0,
                subscribed,
                rack: hb.rack.clone(),
                client_id: hb.client_id.clone(),
                client_host: hb.client_host.clone(),
                last_seen_ms: now_ms,
                assignment: BTreeMap::new(),
                sent: false,
            },
        );
        self.epoch += 1;
        Ok(())
    }

    fn topic_counts(&self, partitions: &dyn Fn(&str) -> Option<i32>) -> BTreeMap<String, i32> {
        self.subscribed_topics()
            .into_iter()
            .filter_map(|t| partitions(&t).map(|n| (t, n)))
            .collect()
    }

    /// The uniform share assignor: for each topic, its partitions round-robin over the
    /// members subscribed to it; with more members than partitions, the members round-robin
    /// over the partitions instead, so every member gets one and partitions are shared.
    fn reassign(&mut self, partitions: &dyn Fn(&str) -> Option<i32>) {
        self.topics = self.topic_counts(partitions);
        for m in self.members.values_mut() {
            m.assignment.clear();
        }
        for (topic, count) in &self.topics {
            let ids: Vec<String> = self
                .members
                .values()
                .filter(|m| m.subscribed.contains(topic))
                .map(|m| m.id.clone())
                .collect();
            let count = (*count).max(0) as usize;
            if ids.is_empty() || count == 0 {
                continue;
            }
            let pairs: Vec<(usize, usize)> = if ids.len() <= count {
                (0..count).map(|p| (p % ids.len(), p)).collect()
            } else {
                (0..ids.len()).map(|m| (m, m % count)).collect()
            };
            for (m, p) in pairs {
                if let Some(member) = self.members.get_mut(&ids[m]) {
                    member.assignment.entry(topic.clone()).or_default().push(p as i32);
                }
            }
        }
        self.assignment_epoch = self.epoch;
    }
}

/// Longest member id accepted (Kafka's client sends a 22-character UUID).
pub const MEMBER_ID_BYTES_MAX: usize = 256;

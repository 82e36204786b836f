//! Share-partition initialization and the group's record of it, as Kafka's group
//! coordinator keeps it (KIP-932, Kafka 4.1): each share group has a
//! ShareGroupStatePartitionMetadata record in `__consumer_offsets`
//! ([`crate::group::share_meta`]) listing the share-partitions it initialized in
//! `__share_group_state`, is initializing, or is deleting.
//!
//! * After a heartbeat, the coordinating shard initializes the partitions of the group's
//!   subscribed topics not initialized yet: it records them as initializing, asks each one's
//!   share coordinator for InitializeShareGroupState (state epoch = group epoch, start offset
//!   -1: the share-partition leader resolves `share.auto.offset.reset`), then records those
//!   that succeeded as initialized. The heartbeat is answered afterwards, so a member never
//!   gets a partition whose initialization is in flight; the first failure ends the round and
//!   what is left is retried at the next heartbeat (Kafka retries stale initializing topics),
//!   so an unreachable share coordinator delays a heartbeat by one call's retries, not by
//!   every partition's. A share-partition that already has
//!   state (written before its group kept this record) is recorded as it is, not reset.
//! * The offset admin APIs and DeleteGroups change the record through
//!   [`super::ShareRequest::Meta`]: alter records partitions initialized, delete moves topics
//!   to deleting, then drops them once their state is deleted (an empty record is written as
//!   a tombstone).
//! * A deleted topic leaves every record, and its share-partitions' state is deleted, when
//!   the coordinating shard sees it leave the cluster metadata ([`Shares::forget_topics`]).
//!
//! Changes of the records on one shard are serialised by `Shares::meta`.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use uuid::Uuid;

use super::{initialize_state, on_state_coordinator, read_summary, MetaChange, Shares};
use crate::group::share_meta::ShareGroupMeta;
use crate::group::share_meta::SharePartitions;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::protocol::ResponseError as E;
use crate::server::shard::Shard;
use crate::server::share_state::StateCall;
use crate::share::records::ShareKey;

/// Partitions of one topic: (topic id, name, partitions).
type TopicPartitions = (uuid::Uuid, String, Vec<i32>);

impl Shares {
    /// Initializes the share-partitions of `group`'s subscribed topics that its record does
    /// not list as initialized (see the module docs). Failures are logged: the next
    /// heartbeat tries again.
    pub(super) async fn initialize_subscribed(&self, shard: &Rc<Shard>, group: &str) {
        let Ok(partition) = offsets_partition(shard, group) else { return };
        if self.uninitialized(shard, group, partition).is_empty() {
            return;
        }
        let Ok(_permit) = self.meta.acquire_permit(1).await else { return };
        let missing = self.uninitialized(shard, group, partition);
        let epoch = self.groups.borrow().get(group).map_or(0, |g| g.epoch);
        let Ok(mut record) = shard.groups.share_partitions(partition, group) else { return };
        if missing.is_empty() {
            return;
        }
        for (id, name, partitions) in &missing {
            record.start_initializing(*id, name, partitions, crate::group::now_ms());
        }
        let write = shard.groups.write_share_partitions(partition, group, record.clone());
        if write.await.is_err() {
            return;
        }
        // The first failure ends this round: each call already retried for seconds, and the
        // heartbeat waits for this, so a share coordinator that is down costs one partition's
        // retries per heartbeat, not every partition's.
        'topics: for (id, name, partitions) in &missing {
            let mut done = Vec::with_capacity(partitions.len());
            for &p in partitions {
                let key = ShareKey { group: group.to_owned(), topic_id: *id, partition: p };
                match initialize_one(shard, &key, epoch).await {
                    Ok(()) => done.push(p),
                    Err(code) => {
                        crate::log_limited!(WARN, group, topic = %name, partition = p, code,
                            "share-partition not initialized; the next heartbeat retries");
                        record.finish_initializing(*id, name, &done, crate::group::now_ms());
                        break 'topics;
                    }
                }
            }
            record.finish_initializing(*id, name, &done, crate::group::now_ms());
        }
        let _ = shard.groups.write_share_partitions(partition, group, record).await;
    }

    /// The partitions of `group`'s subscribed topics its record does not list as initialized.
    fn uninitialized(&self, shard: &Shard, group: &str, partition: i32) -> Vec<TopicPartitions> {
        let topics = self.groups.borrow().get(group).map(|g| g.subscribed_topics());
        let Some(topics) = topics else { return Vec::new() };
        let meta = shard.meta();
        // Read in place: this runs on every heartbeat.
        let missing = shard.groups.with_share_partitions(partition, group, |record| {
            let initialized = |id, p| record.is_some_and(|r| r.is_initialized(id, p));
            topics
                .into_iter()
                .filter_map(|name| {
                    let topic = meta.topics.get(name.as_str())?;
                    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                    let missing: Vec<i32> =
                        (0..count).filter(|p| !initialized(&topic.id, *p)).collect();
                    (!missing.is_empty()).then_some((topic.id, name, missing))
                })
                .collect()
        });
        missing.unwrap_or_default()
    }

    /// Whether `group` has a ShareGroupMetadata record, or a ShareGroupStatePartitionMetadata
    /// record listing anything.
    pub(super) fn recorded(&self, shard: &Shard, group: &str) -> bool {
        let Ok(partition) = offsets_partition(shard, group) else { return false };
        if shard.groups.share_group_epoch(partition, group).is_ok_and(|e| e.is_some()) {
            return true;
        }
        let listed = |r: Option<&SharePartitions>| r.is_some_and(|r| !r.is_empty());
        shard.groups.with_share_partitions(partition, group, listed).unwrap_or(false)
    }

    /// The epoch `group`'s ShareGroupMetadata record holds (`None`: it has none); the
    /// coordinator's error (loading, not coordinating) as a code.
    pub(super) fn recorded_epoch(&self, shard: &Shard, group: &str) -> Result<Option<i32>, i16> {
        let partition = offsets_partition(shard, group)?;
        shard.groups.share_group_epoch(partition, group).map_err(|e| e.code())
    }

    /// Writes the ShareGroupMetadata record of `group` (`None`: of every group here) whose
    /// epoch went past the recorded one, as Kafka writes it with every bump; returns the
    /// first error. Writes are serialised, and each reads the epoch once it may write, so a
    /// recorded epoch only goes up.
    pub(super) async fn record_epochs(
        &self,
        shard: &Rc<Shard>,
        group: Option<&str>,
    ) -> Result<(), i16> {
        let ids: Vec<String> = match group {
            Some(id) => vec![id.to_owned()],
            None => self.groups.borrow().keys().cloned().collect(),
        };
        let _permit =
            self.epochs.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        let mut first = Ok(());
        for id in ids {
            let Some(epoch) = self.groups.borrow().get(&id).map(|g| g.epoch) else { continue };
            let written = async {
                let partition = offsets_partition(shard, &id)?;
                let recorded = shard.groups.share_group_epoch(partition, &id);
                if recorded.map_err(|e| e.code())?.unwrap_or(0) >= epoch {
                    return Ok(());
                }
                let value = ShareGroupMeta { epoch, metadata_hash: 0 };
                let write = shard.groups.write_share_group(partition, &id, Some(value));
                write.await.map_err(|e| e.code())
            };
            if let Err(code) = written.await {
                crate::log_limited!(WARN, group = %id, code, "share group epoch not recorded");
                first = first.and(Err(code));
            }
        }
        first
    }

    /// After DeleteGroups of `group` on this shard answered `code`: writes the tombstone of
    /// its ShareGroupMetadata record when it was deleted, or when only that record knew it
    /// (after a restart). The code to answer.
    pub(super) async fn forget_epoch(&self, shard: &Rc<Shard>, group: &str, code: i16) -> i16 {
        let known = self.recorded_epoch(shard, group).is_ok_and(|e| e.is_some());
        if code != 0 && !(code == E::GroupIdNotFound.code() && known) {
            return code;
        }
        let Ok(_permit) = self.epochs.acquire_permit(1).await else {
            return E::UnknownServerError.code();
        };
        let written = async {
            let partition = offsets_partition(shard, group)?;
            shard.groups.write_share_group(partition, group, None).await.map_err(|e| e.code())
        };
        written.await.err().unwrap_or(0)
    }

    /// Bumps `group`'s epoch and records it (AlterShareGroupOffsets, KAFKA-20910); a group
    /// not in memory carries on from its recorded epoch, or starts at 1. The new epoch.
    pub(super) async fn bump_epoch(&self, shard: &Rc<Shard>, group: &str) -> Result<i32, i16> {
        let epoch = {
            let mut groups = self.groups.borrow_mut();
            let g = self.group_in(&mut groups, shard, group)?;
            if !g.members.is_empty() {
                return Err(E::NonEmptyGroup.code());
            }
            g.epoch = g.epoch.checked_add(1).ok_or(E::InvalidRequest.code())?;
            g.assignment_epoch = g.epoch;
            g.epoch
        };
        self.record_epochs(shard, Some(group)).await?;
        Ok(epoch)
    }

    /// Applies `change` (if any) to `group`'s record, writes it, and returns it.
    pub(super) async fn change_meta(
        &self,
        shard: &Rc<Shard>,
        group: &str,
        change: Option<MetaChange>,
    ) -> Result<SharePartitions, i16> {
        let partition = offsets_partition(shard, group)?;
        let _permit =
            self.meta.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        let mut record = shard.groups.share_partitions(partition, group).map_err(|e| e.code())?;
        let Some(change) = change else { return Ok(record) };
        match change {
            MetaChange::Initializing { topic_id, name, partitions } => {
                record.start_initializing(topic_id, &name, &partitions, crate::group::now_ms());
            }
            MetaChange::Initialized { topic_id, name, partitions } => {
                record.finish_initializing(topic_id, &name, &partitions, crate::group::now_ms());
            }
            MetaChange::Deleting(topics) => {
                for (id, name) in topics {
                    record.start_deleting(id, &name);
                }
            }
            MetaChange::Deleted(topics) => {
                for id in &topics {
                    record.forget(id);
                }
            }
        }
        let write = shard.groups.write_share_partitions(partition, group, record.clone());
        write.await.map_err(|e| e.code())?;
        Ok(record)
    }
}

impl Shares {
    /// After the `deleted` topics (by id) left the cluster metadata, as Kafka's
    /// `GroupCoordinatorService.onPartitionsDeleted` (`maybeCleanupShareGroupState`) and its
    /// share coordinator's `onTopicsDeleted` do: for each share group this shard
    /// coordinates whose record lists one of them, deletes the state of the partitions it
    /// lists (DeleteShareGroupState through the persister, on whichever shard or broker
    /// coordinates it), then writes the record without them. A group whose deletes fail
    /// keeps them listed (logged): DeleteGroups or DeleteShareGroupOffsets deletes them later.
    pub async fn forget_topics(&self, shard: &Rc<Shard>, deleted: &BTreeSet<Uuid>) {
        for group in shard.groups.share_groups_recorded() {
            match self.forget_topics_of(shard, &group, deleted).await {
                Ok(0) => {}
                Ok(topics) => tracing::info!(
                    group,
                    topics,
                    "share state of deleted topics deleted; the group's record forgets them"
                ),
                Err(code) => crate::log_limited!(
                    WARN,
                    group,
                    code,
                    "share state of a deleted topic kept; deleting the group deletes it"
                ),
            }
        }
    }

    /// [`Shares::forget_topics`] of one group: how many topics its record forgot.
    async fn forget_topics_of(
        &self,
        shard: &Rc<Shard>,
        group: &str,
        deleted: &BTreeSet<Uuid>,
    ) -> Result<usize, i16> {
        let partition = offsets_partition(shard, group)?;
        let _permit =
            self.meta.acquire_permit(1).await.map_err(|_| E::UnknownServerError.code())?;
        let mut record = shard.groups.share_partitions(partition, group).map_err(|e| e.code())?;
        let mut gone: BTreeMap<Uuid, BTreeSet<i32>> = BTreeMap::new();
        for (id, topic) in record.initialized.iter().chain(&record.initializing) {
            if deleted.contains(id) {
                gone.entry(*id).or_default().extend(topic.partitions.iter().copied());
            }
        }
        // Deleting entries name no partitions: what they had went with the delete that put
        // them there, or goes with the topic's state below when also listed elsewhere.
        gone.extend(
            record
                .deleting
                .keys()
                .filter(|id| deleted.contains(id))
                .map(|id| (*id, BTreeSet::new())),
        );
        if gone.is_empty() {
            return Ok(0);
        }
        // The state goes first: a record written without the topic would forget which
        // partitions to delete if a delete failed.
        for (id, partitions) in &gone {
            for &p in partitions {
                let key = ShareKey { group: group.to_owned(), topic_id: *id, partition: p };
                on_state_coordinator(shard, &key, StateCall::Delete).await?;
            }
        }
        for id in gone.keys() {
            record.forget(id);
        }
        let write = shard.groups.write_share_partitions(partition, group, record);
        write.await.map_err(|e| e.code())?;
        Ok(gone.len())
    }
}

/// Initializes `key` at `state_epoch` from `share.auto.offset.reset` unless it has state.
async fn initialize_one(shard: &Rc<Shard>, key: &ShareKey, state_epoch: i32) -> Result<(), i16> {
    let stored = read_summary(shard, key, -1).await?;
    if stored.is_some_and(|s| s.start_offset >= 0 || s.state_epoch > 0) {
        return Ok(());
    }
    initialize_state(shard, key, state_epoch, -1).await
}

/// The `__consumer_offsets` partition of `group`.
fn offsets_partition(shard: &Shard, group: &str) -> Result<i32, i16> {
    let count = shard.meta().partition_count(OFFSETS_TOPIC);
    let count = count.ok_or(E::CoordinatorNotAvailable.code())?;
    Ok(partition_for(group, count))
}

//! The share groups' ShareGroupMetadata and ShareGroupStatePartitionMetadata records on the
//! coordinator: read by
//! `server::share` (which runs the share groups on this same shard) and written through
//! the group's `__consumer_offsets` partition, then applied once durable.

use super::coordinator::{append_durable, Coordinator};
use super::records::OffsetsRecord;
use super::share_meta::{ShareGroupMeta, SharePartitions};
use crate::protocol::ResponseError as E;

impl Coordinator {
    /// The share-partitions share group `group` recorded, read from `__consumer_offsets`
    /// partition `partition` (NOT_COORDINATOR if this shard does not own it,
    /// COORDINATOR_LOAD_IN_PROGRESS while it replays). Empty when it has no record.
    pub fn share_partitions(&self, partition: i32, group: &str) -> Result<SharePartitions, E> {
        self.with_share_partitions(partition, group, |v| v.cloned().unwrap_or_default())
    }

    /// `f` of `group`'s record (`None`: it has none) without copying it, under the same
    /// conditions as [`Coordinator::share_partitions`].
    pub fn with_share_partitions<R>(
        &self,
        partition: i32,
        group: &str,
        f: impl FnOnce(Option<&SharePartitions>) -> R,
    ) -> Result<R, E> {
        self.ready_log(partition)?;
        let shares = self.share_partitions.borrow();
        Ok(f(shares.get(group).map(|(_, v)| v)))
    }

    /// The share groups with a record (of either kind) in a partition this shard has
    /// loaded, sorted.
    pub fn share_groups_recorded(&self) -> Vec<String> {
        let partitions = self.partitions.borrow();
        let loaded = |p: &i32| partitions.get(p).is_some_and(|p| p.loaded);
        let shares = self.share_partitions.borrow();
        let epochs = self.share_groups.borrow();
        let listed = shares.iter().map(|(id, (p, _))| (id, p));
        let mut ids: Vec<String> = listed
            .chain(epochs.iter().map(|(id, (p, _))| (id, p)))
            .filter(|(_, p)| loaded(p))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Share group `group`'s epoch as its ShareGroupMetadata record holds it (`None`: it has
    /// none), under the same conditions as [`Coordinator::share_partitions`].
    pub fn share_group_epoch(&self, partition: i32, group: &str) -> Result<Option<i32>, E> {
        self.ready_log(partition)?;
        Ok(self.share_groups.borrow().get(group).map(|(_, v)| v.epoch))
    }

    /// Writes `value` as share group `group`'s ShareGroupMetadata record (`None`: its
    /// tombstone, when it has a record) and applies it once durable.
    pub async fn write_share_group(
        &self,
        partition: i32,
        group: &str,
        value: Option<ShareGroupMeta>,
    ) -> Result<(), E> {
        let log = self.ready_log(partition)?;
        if value.is_none() && !self.share_groups.borrow().contains_key(group) {
            return Ok(());
        }
        let record = OffsetsRecord::ShareGroup { group: group.to_owned(), value };
        append_durable(&log, &[record]).await.map_err(|e| {
            tracing::error!(group, "persisting share group metadata failed: {e}");
            E::CoordinatorNotAvailable
        })?;
        let mut epochs = self.share_groups.borrow_mut();
        match value {
            Some(v) => epochs.insert(group.to_owned(), (partition, v)),
            None => epochs.remove(group),
        };
        Ok(())
    }

    /// Writes `value` as share group `group`'s record (a tombstone when it is empty) and
    /// applies it once durable. The caller serializes the writes of one group.
    pub async fn write_share_partitions(
        &self,
        partition: i32,
        group: &str,
        value: SharePartitions,
    ) -> Result<(), E> {
        let log = self.ready_log(partition)?;
        let had = self.share_partitions.borrow().contains_key(group);
        if value.is_empty() && !had {
            return Ok(());
        }
        let stored = (!value.is_empty()).then(|| value.clone());
        let record = OffsetsRecord::SharePartitions { group: group.to_owned(), value: stored };
        append_durable(&log, &[record]).await.map_err(|e| {
            tracing::error!(group, "persisting share partition metadata failed: {e}");
            E::CoordinatorNotAvailable
        })?;
        let mut shares = self.share_partitions.borrow_mut();
        if value.is_empty() {
            shares.remove(group);
        } else {
            shares.insert(group.to_owned(), (partition, value));
        }
        Ok(())
    }
}

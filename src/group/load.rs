//! Start-up replay of this shard's `__consumer_offsets` partitions.

use std::rc::Rc;

use super::consumer::{self, records::Image};
use super::consumer_ops::ConsumerSlot;
use super::coordinator::{Coordinator, OffsetsPartition, Slot};
use super::now_ms;
use super::records::{self, LogItem, OffsetsRecord};
use crate::storage::PartitionLog;

/// Bytes read per step of the replay.
const REPLAY_READ_BYTES: usize = 1 << 20;

impl Coordinator {
    /// Takes ownership of `partition` of `__consumer_offsets` and replays it in a task; its
    /// groups answer COORDINATOR_LOAD_IN_PROGRESS until the replay finished.
    pub fn add_partition(self: &Rc<Self>, partition: i32, log: PartitionLog) {
        let entry = OffsetsPartition { log: log.clone(), loaded: false };
        if self.partitions.borrow_mut().insert(partition, entry).is_some() {
            tracing::warn!(partition, "offsets partition added twice; replaying again");
        }
        let this = self.clone();
        // A panic while replaying leaves the partition loading (its groups answer
        // COORDINATOR_LOAD_IN_PROGRESS) rather than serving offsets it did not finish reading.
        let what = format!("loading {} partition {partition}", super::OFFSETS_TOPIC);
        crate::runtime::contain::spawn_contained(what, async move {
            let count = this.replay(partition, &log).await;
            this.restore_consumer_groups(partition);
            if let Some(p) = this.partitions.borrow_mut().get_mut(&partition) {
                p.loaded = true;
            }
            this.arm_partition_timers(partition);
            tracing::info!(partition, records = count, "loaded consumer group partition");
        })
        .detach();
    }

    /// Stops coordinating `partition` (its leadership moved to another broker): drops its
    /// groups, whose members find the new coordinator; the new leader replays the log.
    pub fn remove_partition(&self, partition: i32) {
        if self.partitions.borrow_mut().remove(&partition).is_none() {
            return;
        }
        let dropped: Vec<Slot> = {
            let mut groups = self.groups.borrow_mut();
            let ids: Vec<String> = groups
                .iter()
                .filter(|(_, slot)| slot.partition == partition)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter().filter_map(|id| groups.remove(&id)).collect()
        };
        self.pending_txn.borrow_mut().retain(|(p, _), _| *p != partition);
        self.consumer_images.borrow_mut().retain(|_, (p, _)| *p != partition);
        self.share_partitions.borrow_mut().retain(|_, (p, _)| *p != partition);
        self.share_groups.borrow_mut().retain(|_, (p, _)| *p != partition);
        tracing::info!(partition, groups = dropped.len(), "no longer coordinating partition");
    }

    /// Applies every record below the high watermark; returns how many were applied. A
    /// record that does not decode is logged and skipped.
    async fn replay(&self, partition: i32, log: &PartitionLog) -> usize {
        let mut applied = 0;
        log.replay(REPLAY_READ_BYTES, |offset, data| match records::decode_log(data) {
            Ok(items) => applied += self.replay_items(partition, offset, items),
            Err(e) => tracing::warn!(partition, offset, "skipping undecodable batches: {e}"),
        })
        .await;
        applied
    }

    fn replay_items(&self, partition: i32, from: i64, items: Vec<LogItem>) -> usize {
        let mut applied = 0;
        for item in items {
            match item {
                LogItem::Record { offset, .. } | LogItem::Marker { offset, .. }
                    if offset < from => {}
                LogItem::Record { record: Err(e), offset, .. } => {
                    tracing::warn!(partition, offset, "skipping record: {e}")
                }
                LogItem::Record { record: Ok(record), producer: None, .. } => {
                    self.apply_replayed(partition, record);
                    applied += 1;
                }
                LogItem::Record { record: Ok(record), producer: Some(producer), .. } => {
                    let mut pending = self.pending_txn.borrow_mut();
                    pending.entry((partition, producer)).or_default().push(record);
                }
                LogItem::Marker { producer, commit, .. } => {
                    applied += self.complete_txn(partition, producer, commit);
                }
            }
        }
        applied
    }

    /// A transaction marker of `producer` was written to (or replayed from) `partition`:
    /// applies (commit) or drops (abort) the offsets it committed there. Returns how many
    /// records were applied.
    pub fn complete_txn(&self, partition: i32, producer: i64, commit: bool) -> usize {
        let records = self.pending_txn.borrow_mut().remove(&(partition, producer));
        let records = records.unwrap_or_default();
        if !commit {
            return 0;
        }
        let count = records.len();
        for record in records {
            self.apply_replayed(partition, record);
        }
        count
    }

    pub(super) fn apply_replayed(&self, partition: i32, record: OffsetsRecord) {
        let group_id = record.group().to_owned();
        let mut groups = self.groups.borrow_mut();
        match record {
            // A classic group's deletion (its offsets have their own tombstones before it) or
            // its conversion into a consumer group: the classic state goes, offsets stay.
            OffsetsRecord::Group { value: None, .. } => {
                let keep = groups.get(&group_id).is_some_and(|s| !s.group.offsets.is_empty());
                if keep {
                    if let Some(slot) = groups.get_mut(&group_id) {
                        let offsets = std::mem::take(&mut slot.group.offsets);
                        slot.group = self.new_group(&group_id);
                        slot.group.offsets = offsets;
                    }
                } else {
                    groups.remove(&group_id);
                }
            }
            OffsetsRecord::Consumer { kind, member, value, .. } => {
                let mut images = self.consumer_images.borrow_mut();
                let (_, image) =
                    images.entry(group_id).or_insert_with(|| (partition, Image::new()));
                match value {
                    Some(v) => image.insert((kind, member), v),
                    None => image.remove(&(kind, member)),
                };
            }
            OffsetsRecord::ShareGroup { value, .. } => {
                let mut shares = self.share_groups.borrow_mut();
                match value {
                    Some(v) => shares.insert(group_id, (partition, v)),
                    None => shares.remove(&group_id),
                };
            }
            OffsetsRecord::SharePartitions { value, .. } => {
                let mut shares = self.share_partitions.borrow_mut();
                match value {
                    Some(v) => shares.insert(group_id, (partition, v)),
                    None => shares.remove(&group_id),
                };
            }
            OffsetsRecord::Group { value: Some(snapshot), .. } => {
                let slot = groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Slot::new(self.new_group(&group_id), partition));
                slot.group.restore(snapshot, now_ms());
            }
            OffsetsRecord::Offset { topic, partition: p, value, .. } => match value {
                Some(committed) => {
                    let slot = groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Slot::new(self.new_group(&group_id), partition));
                    slot.group.offsets.insert((topic, p), committed);
                }
                None => {
                    if let Some(slot) = groups.get_mut(&group_id) {
                        slot.group.offsets.remove(&(topic, p));
                    }
                }
            },
        }
    }

    /// Turns the consumer group records replayed from `partition` into groups.
    fn restore_consumer_groups(&self, partition: i32) {
        let images: Vec<(String, Image)> = {
            let mut all = self.consumer_images.borrow_mut();
            let ids: Vec<String> = all
                .iter()
                .filter(|(_, (p, _))| *p == partition)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter().filter_map(|id| all.remove(&id).map(|(_, image)| (id, image))).collect()
        };
        let settings = self.consumer_settings.borrow().clone();
        let mut groups = self.groups.borrow_mut();
        for (id, image) in images {
            match consumer::records::restore(&id, settings.clone(), &image, now_ms()) {
                Ok(None) => {}
                Ok(Some(group)) => {
                    let slot = groups
                        .entry(id.clone())
                        .or_insert_with(|| Slot::new(self.new_group(&id), partition));
                    slot.consumer = Some(ConsumerSlot { group, persisted: image });
                }
                Err(e) => {
                    tracing::warn!(group = %id, "skipping an undecodable consumer group: {e}")
                }
            }
        }
    }

    fn arm_partition_timers(&self, partition: i32) {
        let ids: Vec<String> = self
            .groups
            .borrow()
            .iter()
            .filter(|(_, s)| s.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.reschedule(&id);
        }
    }
}

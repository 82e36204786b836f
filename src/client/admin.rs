//! Admin calls on a [`Client`]: topics' partitions, log offsets, consumer groups.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{protocol, Client, ClientError};

/// ListOffsets timestamp meaning "the log start offset".
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset".
pub const LATEST: i64 = -1;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// State name (`Stable`, `Empty`, ...).
    pub state: String,
    /// Protocol type (`consumer`), possibly empty.
    pub protocol_type: String,
    /// Group type (`classic`, `consumer`; ListGroups v5+, else `classic`).
    pub group_type: String,
}

/// A committed offset: (topic, partition) → offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

impl Client {
    /// Partition numbers of `topic`.
    pub fn partitions(&mut self, topic: &str) -> Result<Vec<i32>, ClientError> {
        let wanted =
            metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))));
        let req = MetadataRequest::default().with_topics(Some(vec![wanted]));
        let (_, ResponseKind::Metadata(r)) =
            self.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))?
        else {
            return Err(protocol("Metadata answered with another message"));
        };
        let t = r.topics.first().ok_or_else(|| protocol("no topic in Metadata answer"))?;
        ClientError::check(t.error_code, format!("topic {topic}"))?;
        let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// ListOffsets of `partitions` of `topic` at `timestamp` ([`EARLIEST`], [`LATEST`] or ms);
    /// -1 where no offset has such a timestamp.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let parts = partitions
            .iter()
            .map(|p| {
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)
            })
            .collect();
        let t = list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(parts);
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![t]);
        let (_, ResponseKind::ListOffsets(r)) =
            self.call(ApiKey::ListOffsets, 6, RequestKind::ListOffsets(req))?
        else {
            return Err(protocol("ListOffsets answered with another message"));
        };
        let mut out = BTreeMap::new();
        for p in r.topics.iter().flat_map(|t| t.partitions.iter()) {
            ClientError::check(p.error_code, format!("offsets of {topic}-{}", p.partition_index))?;
            out.insert(p.partition_index, p.offset);
        }
        Ok(out)
    }

    /// Every group of the cluster.
    pub fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        let req = ListGroupsRequest::default();
        let version = self.version(ApiKey::ListGroups, 5)?;
        let (_, ResponseKind::ListGroups(r)) =
            self.call(ApiKey::ListGroups, version, RequestKind::ListGroups(req))?
        else {
            return Err(protocol("ListGroups answered with another message"));
        };
        ClientError::check(r.error_code, "ListGroups")?;
        Ok(r.groups
            .iter()
            .map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                group_type: if version >= 5 {
                    g.group_type.to_string()
                } else {
                    "classic".to_owned()
                },
            })
            .collect())
    }

    /// ConsumerGroupDescribe of one KIP-848 consumer group; `None` when the group is not one
    /// (or the broker does not offer the API).
    pub fn describe_consumer_group(
        &mut self,
        group: &str,
    ) -> Result<Option<consumer_group_describe_response::DescribedGroup>, ClientError> {
        let Ok(version) = self.version(ApiKey::ConsumerGroupDescribe, 1) else {
            return Ok(None);
        };
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
        let body = RequestKind::ConsumerGroupDescribe(req);
        let (_, ResponseKind::ConsumerGroupDescribe(r)) =
            self.call(ApiKey::ConsumerGroupDescribe, version, body)?
        else {
            return Err(protocol("ConsumerGroupDescribe answered with another message"));
        };
        let g = r.groups.into_iter().next().ok_or_else(|| protocol("no group in answer"))?;
        if g.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(None);
        }
        ClientError::check(g.error_code, format!("describing group {group}"))?;
        Ok(Some(g))
    }

    /// DescribeGroups of one group (state `Dead` when it does not exist).
    pub fn describe_group(&mut self, group: &str) -> Result<DescribedGroup, ClientError> {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let (_, ResponseKind::DescribeGroups(r)) =
            self.call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(req))?
        else {
            return Err(protocol("DescribeGroups answered with another message"));
        };
        let g = r.groups.into_iter().next().ok_or_else(|| protocol("no group in answer"))?;
        ClientError::check(g.error_code, format!("describing group {group}"))?;
        Ok(g)
    }

    /// Every committed offset of `group`.
    pub fn committed(&mut self, group: &str) -> Result<Offsets, ClientError> {
        let version = self.version(ApiKey::OffsetFetch, 8)?;
        let req = if version >= 8 {
            let g = offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None);
            OffsetFetchRequest::default().with_groups(vec![g])
        } else {
            OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(None)
        };
        let (_, ResponseKind::OffsetFetch(r)) =
            self.call(ApiKey::OffsetFetch, version, RequestKind::OffsetFetch(req))?
        else {
            return Err(protocol("OffsetFetch answered with another message"));
        };
        let mut out = Offsets::new();
        if version >= 8 {
            for g in &r.groups {
                ClientError::check(g.error_code, format!("offsets of group {group}"))?;
                for t in &g.topics {
                    for p in t.partitions.iter().filter(|p| p.committed_offset >= 0) {
                        out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                    }
                }
            }
        } else {
            ClientError::check(r.error_code, format!("offsets of group {group}"))?;
            for t in &r.topics {
                for p in t.partitions.iter().filter(|p| p.committed_offset >= 0) {
                    out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// Commits `offsets` for `group` outside any generation (the group must be empty).
    pub fn commit(&mut self, group: &str, offsets: &Offsets) -> Result<(), ClientError> {
        let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics.entry(topic).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let topics = topics
            .into_iter()
            .map(|(name, parts)| {
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(name)))
                    .with_partitions(parts)
            })
            .collect();
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let (_, ResponseKind::OffsetCommit(r)) =
            self.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(req))?
        else {
            return Err(protocol("OffsetCommit answered with another message"));
        };
        for t in &r.topics {
            for p in &t.partitions {
                let what = format!("committing {}-{}", t.name.0, p.partition_index);
                ClientError::check(p.error_code, what)?;
            }
        }
        Ok(())
    }

    /// Deletes `group` (it must be empty).
    pub fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        let (_, ResponseKind::DeleteGroups(r)) =
            self.call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(req))?
        else {
            return Err(protocol("DeleteGroups answered with another message"));
        };
        for result in &r.results {
            ClientError::check(result.error_code, format!("deleting group {group}"))?;
        }
        Ok(())
    }
}

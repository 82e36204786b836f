//! DescribeLogDirs and AlterReplicaLogDirs (KIP-113), as `kafka-log-dirs.sh --describe` and
//! the admin clients' `describeLogDirs` / `alterReplicaLogDirs` use them.
//!
//! A broker has one log directory, `--data-dir` (Kafka's `log.dirs` with one entry: Strata
//! has no JBOD). DescribeLogDirs reports it with every partition log the broker holds (each
//! shard reports its own over the mesh): the bytes of data in its segments (not the space
//! preallocated ahead of them), its offset lag (the high watermark minus its log end, 0 once
//! caught up) and, from v4, the filesystem's total and usable bytes. A request naming topics
//! gets only those partitions that are here, as in Kafka. AlterReplicaLogDirs can only
//! "move" a replica to the directory it is in: that is done already (NONE); another path is
//! LOG_DIR_NOT_FOUND, a partition this broker does not hold REPLICA_NOT_AVAILABLE.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::protocol::ResponseError as E;
use crate::server::mesh::{LogDirEntry, ShardMsg};
use crate::server::shard::Shard;

thread_local! {
    /// [`log_dir`]'s answer, with the data directory it is for: resolving symbolic links
    /// touches the file system, so a shard does it once rather than per request.
    static LOG_DIR: std::cell::RefCell<Option<(std::path::PathBuf, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// The data directory as clients name it: absolute, as Kafka reports `log.dirs` entries.
fn log_dir(shard: &Shard) -> String {
    let dir = &shard.config.data_dir;
    LOG_DIR.with_borrow_mut(|cached| match cached {
        Some((for_dir, name)) if for_dir == dir => name.clone(),
        _ => {
            let name = std::fs::canonicalize(dir)
                .or_else(|_| std::path::absolute(dir))
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string();
            *cached = Some((dir.clone(), name.clone()));
            name
        }
    })
}

/// Whether a client's `path` names the data directory: as [`log_dir`] spells it, or as the
/// broker was given it, made absolute (no file system lookup, as Kafka compares absolute
/// paths).
fn names_data_dir(shard: &Shard, path: &str, here: &str) -> bool {
    let Ok(path) = std::path::absolute(path) else { return false };
    let given = std::path::absolute(&shard.config.data_dir).ok();
    path.as_os_str() == here || given.is_some_and(|g| g == path)
}

/// Every partition log of this broker: this shard's directly, the others' over the mesh
/// (a shard that cannot answer, shutting down, is left out).
async fn all_entries(shard: &Rc<Shard>) -> Vec<LogDirEntry> {
    let mut entries = shard.log_dir_entries();
    entries
        .extend(shard.ask_others(|reply| ShardMsg::LogDirs { reply }).await.into_iter().flatten());
    entries
}

/// Handles one DescribeLogDirs request (authorized by the guard: DESCRIBE on the cluster).
pub async fn describe(
    shard: &Rc<Shard>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let wanted: Option<HashSet<(&str, i32)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.as_str(), *p)))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for entry in all_entries(shard).await {
        if wanted.as_ref().is_some_and(|w| !w.contains(&(&*entry.topic, entry.partition))) {
            continue;
        }
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(entry.partition)
            .with_partition_size(i64::try_from(entry.size_bytes).unwrap_or(i64::MAX))
            .with_offset_lag(entry.offset_lag)
            .with_is_future_key(false);
        topics.entry(entry.topic.to_string()).or_default().push(partition);
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = log_dir(shard);
    let mut result =
        DescribeLogDirsResult::default().with_log_dir(str_bytes(&dir)).with_topics(topics);
    if version >= 4 {
        let (total, usable) = match crate::storage::space::usage(Path::new(&dir)) {
            Ok(u) => (u.total_bytes, u.available_bytes),
            Err(e) => {
                crate::log_limited!(WARN, dir = %dir, "statvfs of the data directory: {e}");
                (0, 0)
            }
        };
        let bytes = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        result = result.with_total_bytes(bytes(total)).with_usable_bytes(bytes(usable));
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Handles one AlterReplicaLogDirs request (authorized by the guard: ALTER on the cluster).
pub fn alter(shard: &Rc<Shard>, req: AlterReplicaLogDirsRequest) -> AlterReplicaLogDirsResponse {
    let here = log_dir(shard);
    let meta = shard.meta();
    let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
    for dir in &req.dirs {
        let same_dir = names_data_dir(shard, dir.path.as_str(), &here);
        for topic in &dir.topics {
            let partitions = topic
                .partitions
                .iter()
                .map(|&index| {
                    let hosted = meta.hosted_shard(&topic.name, index).is_some();
                    let code = if !same_dir {
                        E::LogDirNotFound.code()
                    } else if !hosted {
                        E::ReplicaNotAvailable.code()
                    } else {
                        0
                    };
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            results.push(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
    }
    AlterReplicaLogDirsResponse::default().with_results(results)
}

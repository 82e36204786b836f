//! The share-group state APIs, served by this broker's share coordinator
//! ([`crate::server::share_state`], whose persister also sends them):
//! InitializeShareGroupState (83), ReadShareGroupState (84), WriteShareGroupState (85),
//! DeleteShareGroupState (86) and ReadShareGroupStateSummary (87). A share-partition leader
//! reads and writes its state; the group coordinator (AlterShareGroupOffsets,
//! DeleteShareGroupOffsets, DescribeShareGroupOffsets) initializes, deletes and summarizes it.
//!
//! Each partition goes to the shard owning its `__share_group_state` partition. One whose
//! state partition another broker leads answers NOT_COORDINATOR; one with an empty group id,
//! a negative partition or a state batch that is not a run of offsets answers
//! INVALID_REQUEST; the coordinator answers fencing (FENCED_STATE_EPOCH, FENCED_LEADER_EPOCH),
//! UNKNOWN_TOPIC_OR_PARTITION (initializing a partition that does not exist) and its log's
//! errors. A share-partition without state reads (and summarizes) as start offset -1 at
//! state epoch 0. Authorization (CLUSTER_ACTION on the cluster) is in `guard`.

use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::{
    delete_share_group_state_response as delete_resp,
    initialize_share_group_state_response as init_resp, read_share_group_state_request as read_req,
    read_share_group_state_response as read_resp,
    read_share_group_state_summary_response as summary_resp,
    write_share_group_state_request as write_req, write_share_group_state_response as write_resp,
    DeleteShareGroupStateRequest, DeleteShareGroupStateResponse, InitializeShareGroupStateRequest,
    InitializeShareGroupStateResponse, ReadShareGroupStateRequest, ReadShareGroupStateResponse,
    ReadShareGroupStateSummaryRequest, ReadShareGroupStateSummaryResponse,
    WriteShareGroupStateRequest, WriteShareGroupStateResponse,
};

use crate::protocol::ResponseError as E;
use crate::server::shard::Shard;
use crate::server::share::{call, ShareReply, ShareRequest};
use crate::server::share_state::{state_home, StateHome};
use crate::share::partition::StateBatch;
use crate::share::records::{ShareKey, ShareState, BATCHES_MAX};

/// ReadShareGroupState v0.
pub async fn read(
    shard: &Rc<Shard>,
    req: ReadShareGroupStateRequest,
) -> ReadShareGroupStateResponse {
    let group = req.group_id.as_str();
    let results = req.topics.iter().map(|t| async move {
        let partitions = t.partitions.iter().map(|p| read_one(shard, group, t.topic_id, p));
        read_resp::ReadStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(join_all(partitions).await)
    });
    ReadShareGroupStateResponse::default().with_results(join_all(results).await)
}

/// WriteShareGroupState v0.
pub async fn write(
    shard: &Rc<Shard>,
    req: WriteShareGroupStateRequest,
) -> WriteShareGroupStateResponse {
    let group = req.group_id.as_str();
    let results = req.topics.iter().map(|t| async move {
        let partitions = t.partitions.iter().map(|p| async move {
            let code = write_one(shard, group, t.topic_id, p).await;
            write_result(p.partition, code)
        });
        write_resp::WriteStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(join_all(partitions).await)
    });
    WriteShareGroupStateResponse::default().with_results(join_all(results).await)
}

/// InitializeShareGroupState v0.
pub async fn initialize(
    shard: &Rc<Shard>,
    req: InitializeShareGroupStateRequest,
) -> InitializeShareGroupStateResponse {
    let group = req.group_id.as_str();
    let results = req.topics.iter().map(|t| async move {
        let partitions = t.partitions.iter().map(|p| async move {
            let key =
                ShareKey { group: group.to_owned(), topic_id: t.topic_id, partition: p.partition };
            let request = ShareRequest::InitState {
                key: key.clone(),
                state_epoch: p.state_epoch,
                start_offset: p.start_offset,
            };
            init_result(p.partition, written(on_coordinator(shard, &key, request).await))
        });
        init_resp::InitializeStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(join_all(partitions).await)
    });
    InitializeShareGroupStateResponse::default().with_results(join_all(results).await)
}

/// DeleteShareGroupState v0.
pub async fn delete(
    shard: &Rc<Shard>,
    req: DeleteShareGroupStateRequest,
) -> DeleteShareGroupStateResponse {
    let group = req.group_id.as_str();
    let results = req.topics.iter().map(|t| async move {
        let partitions = t.partitions.iter().map(|p| async move {
            let key =
                ShareKey { group: group.to_owned(), topic_id: t.topic_id, partition: p.partition };
            let request = ShareRequest::DeleteState { key: key.clone() };
            delete_result(p.partition, written(on_coordinator(shard, &key, request).await))
        });
        delete_resp::DeleteStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(join_all(partitions).await)
    });
    DeleteShareGroupStateResponse::default().with_results(join_all(results).await)
}

/// ReadShareGroupStateSummary v0-1: start offset, state epoch and leader epoch, and from v1
/// the delivery-complete count (KIP-1226; dropped at v0).
pub async fn summary(
    shard: &Rc<Shard>,
    req: ReadShareGroupStateSummaryRequest,
) -> ReadShareGroupStateSummaryResponse {
    let group = req.group_id.as_str();
    let results = req.topics.iter().map(|t| async move {
        let partitions = t.partitions.iter().map(|p| async move {
            let key =
                ShareKey { group: group.to_owned(), topic_id: t.topic_id, partition: p.partition };
            let request =
                ShareRequest::ReadSummary { key: key.clone(), leader_epoch: p.leader_epoch };
            let state = match on_coordinator(shard, &key, request).await {
                Ok(ShareReply::State(Ok(state))) => state,
                Ok(ShareReply::State(Err(code))) | Err(code) => {
                    return summary_failed(p.partition, code)
                }
                Ok(_) => return summary_failed(p.partition, E::UnknownServerError.code()),
            };
            let found = summary_resp::PartitionResult::default().with_partition(p.partition);
            match state {
                // No state yet: Kafka's "not initialized".
                None => found.with_start_offset(-1).with_state_epoch(0).with_leader_epoch(-1),
                Some(s) => found
                    .with_delivery_complete_count(s.delivery_complete_count())
                    .with_start_offset(s.start_offset)
                    .with_state_epoch(s.state_epoch)
                    .with_leader_epoch(s.leader_epoch),
            }
        });
        summary_resp::ReadStateSummaryResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(join_all(partitions).await)
    });
    ReadShareGroupStateSummaryResponse::default().with_results(join_all(results).await)
}

/// The answer to `req` when every partition fails with `code` (a refused authorization).
pub fn initialize_refused(
    req: &InitializeShareGroupStateRequest,
    code: i16,
) -> InitializeShareGroupStateResponse {
    let results = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| init_result(p.partition, code));
        init_resp::InitializeStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    });
    InitializeShareGroupStateResponse::default().with_results(results.collect())
}

/// The answer to `req` when every partition fails with `code` (a refused authorization).
pub fn delete_refused(
    req: &DeleteShareGroupStateRequest,
    code: i16,
) -> DeleteShareGroupStateResponse {
    let results = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| delete_result(p.partition, code));
        delete_resp::DeleteStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    });
    DeleteShareGroupStateResponse::default().with_results(results.collect())
}

/// The answer to `req` when every partition fails with `code` (a refused authorization).
pub fn summary_refused(
    req: &ReadShareGroupStateSummaryRequest,
    code: i16,
) -> ReadShareGroupStateSummaryResponse {
    let results = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| summary_failed(p.partition, code));
        summary_resp::ReadStateSummaryResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    });
    ReadShareGroupStateSummaryResponse::default().with_results(results.collect())
}

/// The error code of a coordinator's [`ShareReply::Written`] answer.
fn written(reply: Result<ShareReply, i16>) -> i16 {
    match reply {
        Ok(ShareReply::Written(code)) | Err(code) => code,
        Ok(_) => E::UnknownServerError.code(),
    }
}

fn init_result(partition: i32, code: i16) -> init_resp::PartitionResult {
    init_resp::PartitionResult::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_error_message(message(code))
}

fn delete_result(partition: i32, code: i16) -> delete_resp::PartitionResult {
    delete_resp::PartitionResult::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_error_message(message(code))
}

fn summary_failed(partition: i32, code: i16) -> summary_resp::PartitionResult {
    summary_resp::PartitionResult::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_error_message(message(code))
        .with_start_offset(-1)
        .with_leader_epoch(-1)
}

/// The answer to `req` when every partition fails with `code` (a refused authorization).
pub fn read_refused(req: &ReadShareGroupStateRequest, code: i16) -> ReadShareGroupStateResponse {
    let results = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| read_failed(p.partition, code));
        read_resp::ReadStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    });
    ReadShareGroupStateResponse::default().with_results(results.collect())
}

/// The answer to `req` when every partition fails with `code` (a refused authorization).
pub fn write_refused(req: &WriteShareGroupStateRequest, code: i16) -> WriteShareGroupStateResponse {
    let results = req.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| write_result(p.partition, code));
        write_resp::WriteStateResult::default()
            .with_topic_id(t.topic_id)
            .with_partitions(partitions.collect())
    });
    WriteShareGroupStateResponse::default().with_results(results.collect())
}

fn message(code: i16) -> Option<kafka_protocol::protocol::StrBytes> {
    let text = E::try_from_code(code).map_or_else(|| format!("error {code}"), |e| e.to_string());
    (code != 0).then(|| super::str_bytes(&text))
}

fn read_failed(partition: i32, code: i16) -> read_resp::PartitionResult {
    read_resp::PartitionResult::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_error_message(message(code))
        .with_start_offset(-1)
}

fn write_result(partition: i32, code: i16) -> write_resp::PartitionResult {
    write_resp::PartitionResult::default()
        .with_partition(partition)
        .with_error_code(code)
        .with_error_message(message(code))
}

/// Runs `request` about `key` on this broker's shard coordinating it.
async fn on_coordinator(
    shard: &Rc<Shard>,
    key: &ShareKey,
    request: ShareRequest,
) -> Result<ShareReply, i16> {
    if key.group.is_empty() || key.partition < 0 {
        return Err(E::InvalidRequest.code());
    }
    match state_home(shard, key)? {
        StateHome::Here { owner, .. } => {
            call(shard, owner, request).await.ok_or(E::CoordinatorNotAvailable.code())
        }
        StateHome::Broker { .. } => Err(E::NotCoordinator.code()),
    }
}

async fn read_one(
    shard: &Rc<Shard>,
    group: &str,
    topic_id: uuid::Uuid,
    p: &read_req::PartitionData,
) -> read_resp::PartitionResult {
    let key = ShareKey { group: group.to_owned(), topic_id, partition: p.partition };
    let request = ShareRequest::ReadState { key: key.clone(), leader_epoch: p.leader_epoch };
    let state = match on_coordinator(shard, &key, request).await {
        Ok(ShareReply::State(Ok(state))) => state,
        Ok(ShareReply::State(Err(code))) | Err(code) => return read_failed(p.partition, code),
        Ok(_) => return read_failed(p.partition, E::UnknownServerError.code()),
    };
    let found = read_resp::PartitionResult::default().with_partition(p.partition);
    // No state yet: Kafka's "not initialized" start offset.
    let Some(state) = state else { return found.with_start_offset(-1) };
    let batches = state.batches.iter().map(|b| {
        read_resp::StateBatch::default()
            .with_first_offset(b.first_offset)
            .with_last_offset(b.last_offset)
            .with_delivery_state(b.delivery_state)
            .with_delivery_count(b.delivery_count)
    });
    found
        .with_state_epoch(state.state_epoch)
        .with_start_offset(state.start_offset)
        .with_state_batches(batches.collect())
}

/// The state a WriteShareGroupState partition asks to merge, or INVALID_REQUEST.
pub fn update_of(p: &write_req::PartitionData) -> Result<ShareState, i16> {
    let invalid = E::InvalidRequest.code();
    if p.state_batches.len() > BATCHES_MAX || p.start_offset < -1 {
        return Err(invalid);
    }
    let mut batches = Vec::with_capacity(p.state_batches.len());
    for b in &p.state_batches {
        if b.first_offset < 0 || b.last_offset < b.first_offset || b.delivery_count < 0 {
            return Err(invalid);
        }
        batches.push(StateBatch {
            first_offset: b.first_offset,
            last_offset: b.last_offset,
            delivery_state: b.delivery_state,
            delivery_count: b.delivery_count,
        });
    }
    Ok(ShareState {
        snapshot: false,
        snapshot_epoch: 0,
        state_epoch: p.state_epoch,
        leader_epoch: p.leader_epoch,
        start_offset: p.start_offset,
        batches,
    })
}

async fn write_one(
    shard: &Rc<Shard>,
    group: &str,
    topic_id: uuid::Uuid,
    p: &write_req::PartitionData,
) -> i16 {
    let state = match update_of(p) {
        Ok(state) => state,
        Err(code) => return code,
    };
    let key = ShareKey { group: group.to_owned(), topic_id, partition: p.partition };
    let request = ShareRequest::WriteState { key: key.clone(), state };
    written(on_coordinator(shard, &key, request).await)
}

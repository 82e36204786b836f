//! Authorization of the share group APIs (KIP-932), as Kafka 4.x's `KafkaApis`, coarser where
//! said:
//!
//! - ShareGroupHeartbeat: needs READ on the group; a denial answers
//!   GROUP_AUTHORIZATION_FAILED.
//! - ReadShareGroupState, WriteShareGroupState, InitializeShareGroupState,
//!   DeleteShareGroupState, ReadShareGroupStateSummary (broker to broker): CLUSTER_ACTION on
//!   the cluster, as Kafka's other inter-broker APIs; a denial answers
//!   CLUSTER_AUTHORIZATION_FAILED for every partition.
//! - ShareGroupDescribe: needs DESCRIBE on each group; a denial answers
//!   GROUP_AUTHORIZATION_FAILED for that group.
//! - ShareFetch, ShareAcknowledge: need READ on the group, then READ on every topic named;
//!   a denial answers GROUP_ or TOPIC_AUTHORIZATION_FAILED for the whole request (Kafka
//!   answers a denied topic per partition).
//! - DescribeShareGroupOffsets: DESCRIBE on each group; AlterShareGroupOffsets: READ on the
//!   group; DeleteShareGroupOffsets: DELETE on the group. A denial answers
//!   GROUP_AUTHORIZATION_FAILED.

use std::rc::Rc;

use kafka_protocol::messages::*;

use super::{answer, Checked};
use crate::protocol::ResponseError as E;
use crate::security::acl::{Operation, ResourceType};
use crate::server::access::Gate;
use crate::server::handlers::share_state;
use crate::server::shard::Shard;

const GROUP_DENIED: E = E::GroupAuthorizationFailed;
const TOPIC_DENIED: E = E::TopicAuthorizationFailed;

/// The share group APIs. See the module docs.
pub(super) fn check(gate: &Gate, shard: &Rc<Shard>, body: RequestKind) -> Checked {
    let group = |op, id: &str| gate.allowed(op, ResourceType::Group, id);
    let topics_readable = |ids: &mut dyn Iterator<Item = uuid::Uuid>| {
        let meta = shard.meta();
        ids.filter_map(|id| meta.topic_by_id(id).map(|t| t.name.clone()))
            .all(|name| gate.allowed(Operation::Read, ResourceType::Topic, &name))
    };
    match body {
        RequestKind::ShareGroupHeartbeat(req) if !group(Operation::Read, &req.group_id) => {
            let r = ShareGroupHeartbeatResponse::default().with_error_code(GROUP_DENIED.code());
            answer(ResponseKind::ShareGroupHeartbeat(r))
        }
        RequestKind::ShareGroupDescribe(mut req) => {
            let denied: Vec<GroupId> =
                req.group_ids.extract_if(.., |g| !group(Operation::Describe, g)).collect();
            let finish = super::append(denied, |r, denied| {
                let ResponseKind::ShareGroupDescribe(r) = r else { return };
                for id in denied {
                    r.groups.push(
                        share_group_describe_response::DescribedGroup::default()
                            .with_group_id(id)
                            .with_error_code(GROUP_DENIED.code()),
                    );
                }
            });
            Ok((RequestKind::ShareGroupDescribe(req), finish))
        }
        RequestKind::ShareFetch(req) => {
            let id = req.group_id.as_ref().map(|g| g.0.to_string()).unwrap_or_default();
            let code = if !group(Operation::Read, &id) {
                GROUP_DENIED
            } else if !topics_readable(&mut req.topics.iter().map(|t| t.topic_id)) {
                TOPIC_DENIED
            } else {
                return Ok((RequestKind::ShareFetch(req), None));
            };
            answer(ResponseKind::ShareFetch(
                ShareFetchResponse::default().with_error_code(code.code()),
            ))
        }
        RequestKind::ShareAcknowledge(req) => {
            let id = req.group_id.as_ref().map(|g| g.0.to_string()).unwrap_or_default();
            let code = if !group(Operation::Read, &id) {
                GROUP_DENIED
            } else if !topics_readable(&mut req.topics.iter().map(|t| t.topic_id)) {
                TOPIC_DENIED
            } else {
                return Ok((RequestKind::ShareAcknowledge(req), None));
            };
            answer(ResponseKind::ShareAcknowledge(
                ShareAcknowledgeResponse::default().with_error_code(code.code()),
            ))
        }
        RequestKind::DescribeShareGroupOffsets(req)
            if req.groups.iter().any(|g| !group(Operation::Describe, &g.group_id)) =>
        {
            use describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup;
            let groups = req
                .groups
                .into_iter()
                .map(|g| {
                    DescribeShareGroupOffsetsResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(GROUP_DENIED.code())
                })
                .collect();
            answer(ResponseKind::DescribeShareGroupOffsets(
                DescribeShareGroupOffsetsResponse::default().with_groups(groups),
            ))
        }
        RequestKind::AlterShareGroupOffsets(req) if !group(Operation::Read, &req.group_id) => {
            answer(ResponseKind::AlterShareGroupOffsets(
                AlterShareGroupOffsetsResponse::default().with_error_code(GROUP_DENIED.code()),
            ))
        }
        RequestKind::DeleteShareGroupOffsets(req) if !group(Operation::Delete, &req.group_id) => {
            answer(ResponseKind::DeleteShareGroupOffsets(
                DeleteShareGroupOffsetsResponse::default().with_error_code(GROUP_DENIED.code()),
            ))
        }
        RequestKind::ReadShareGroupState(req) if !gate.cluster(Operation::ClusterAction) => {
            let code = E::ClusterAuthorizationFailed.code();
            answer(ResponseKind::ReadShareGroupState(share_state::read_refused(&req, code)))
        }
        RequestKind::WriteShareGroupState(req) if !gate.cluster(Operation::ClusterAction) => {
            let code = E::ClusterAuthorizationFailed.code();
            answer(ResponseKind::WriteShareGroupState(share_state::write_refused(&req, code)))
        }
        RequestKind::InitializeShareGroupState(req) if !gate.cluster(Operation::ClusterAction) => {
            let code = E::ClusterAuthorizationFailed.code();
            let refused = share_state::initialize_refused(&req, code);
            answer(ResponseKind::InitializeShareGroupState(refused))
        }
        RequestKind::DeleteShareGroupState(req) if !gate.cluster(Operation::ClusterAction) => {
            let code = E::ClusterAuthorizationFailed.code();
            answer(ResponseKind::DeleteShareGroupState(share_state::delete_refused(&req, code)))
        }
        RequestKind::ReadShareGroupStateSummary(req) if !gate.cluster(Operation::ClusterAction) => {
            let code = E::ClusterAuthorizationFailed.code();
            let refused = share_state::summary_refused(&req, code);
            answer(ResponseKind::ReadShareGroupStateSummary(refused))
        }
        other => Ok((other, None)),
    }
}

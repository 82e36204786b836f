//! Authorization of every API, in one place: what Kafka's `KafkaApis` checks before each
//! request, with the error codes it answers (TOPIC_, GROUP_, CLUSTER_ and
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED), and the authorized-operation fields.
//!
//! [`check`] runs before the handler. It either answers the request itself (the whole request
//! is denied, e.g. a JoinGroup without READ on the group), or lets the handler run on what
//! may proceed: the items denied (topics of a produce, groups of a DeleteGroups, ...) are
//! taken out of the request, and a [`Finish`] puts their error entries into the handler's
//! response, filters out what the principal may not see (Metadata of all topics, ListGroups,
//! ...) and fills the authorized-operation bit fields. Handlers themselves never check.
//!
//! Each decision is one [`Gate`] call per resource, which costs a cache lookup; with no
//! authorizer configured [`check`] returns at once, except for the APIs that report
//! authorized operations (every supported operation, then).
//!
//! The checks follow Kafka 3.x: see the file of each group of APIs.

mod admin;
mod data;
mod groups;
mod metadata;
mod share;
mod txn;

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::Reply;
use crate::protocol::{Request, ResponseError as E};
use crate::server::access::Gate;
use crate::server::session::Session;
use crate::server::shard::Shard;

/// Completes a handler's reply: denied entries, filtering, authorized operations.
pub type Finish = Box<dyn FnOnce(Reply) -> Reply>;

/// What to do with a request after authorization.
// Moved once per request; boxing the request would allocate on the produce path.
#[allow(clippy::large_enum_variant)]
pub enum Guarded {
    /// Run the handler on this (possibly narrowed) request, then `Finish` its reply.
    Run(Request, Option<Finish>),
    /// Answer this without running the handler.
    Answer(Reply),
}

/// The outcome of one API's checks: the narrowed body and its finish, or the answer.
type Checked = Result<(RequestKind, Option<Finish>), Box<ResponseKind>>;

/// The whole request is answered by the check.
fn answer(response: ResponseKind) -> Checked {
    Err(Box::new(response))
}

/// Which checks an API gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// None: ApiVersions (and the SASL exchange), as in Kafka.
    Open,
    /// Produce: [`data::produce`].
    Produce,
    /// Partition data APIs: [`data::check`].
    Data,
    /// Metadata and the APIs reporting authorized operations: [`metadata::check`].
    Metadata,
    /// Topic and config administration, ACLs, quotas, cluster operations: [`admin::check`].
    Admin,
    /// Transactions and producer ids: [`txn::check`].
    Txn,
    /// Consumer groups and coordinators: [`groups::check`].
    Groups,
    /// Share groups (KIP-932): [`share::check`].
    Share,
    /// An API this module does not know: a test fails while `APIS` offers one.
    Unknown,
}

/// The checks of `key`.
pub fn rule(key: ApiKey) -> Rule {
    use ApiKey::*;
    match key {
        // The SASL exchange is how a client gets a principal: nothing to authorize yet.
        ApiVersions | SaslHandshake | SaslAuthenticate => Rule::Open,
        Produce => Rule::Produce,
        Fetch | ListOffsets | OffsetForLeaderEpoch | DeleteRecords | DescribeProducers
        | WriteTxnMarkers => Rule::Data,
        Metadata | DescribeGroups | DescribeCluster | DescribeTopicPartitions => Rule::Metadata,
        CreateTopics
        | DeleteTopics
        | CreatePartitions
        | DescribeConfigs
        | AlterConfigs
        | IncrementalAlterConfigs
        | DescribeAcls
        | CreateAcls
        | DeleteAcls
        | DescribeClientQuotas
        | AlterClientQuotas
        | ElectLeaders
        | AlterPartitionReassignments
        | ListPartitionReassignments
        | UnregisterBroker
        | BrokerRegistration
        | DescribeQuorum
        | DescribeLogDirs
        | AlterReplicaLogDirs
        | ListConfigResources
        | DescribeUserScramCredentials
        | AlterUserScramCredentials => Rule::Admin,
        InitProducerId | AddPartitionsToTxn | AddOffsetsToTxn | EndTxn | TxnOffsetCommit
        | DescribeTransactions | ListTransactions => Rule::Txn,
        FindCoordinator | JoinGroup | SyncGroup | Heartbeat | LeaveGroup | OffsetCommit
        | OffsetFetch | ListGroups | DeleteGroups | OffsetDelete => Rule::Groups,
        ShareGroupHeartbeat
        | ShareGroupDescribe
        | ShareFetch
        | ShareAcknowledge
        | DescribeShareGroupOffsets
        | AlterShareGroupOffsets
        | DeleteShareGroupOffsets
        | ReadShareGroupState
        | WriteShareGroupState
        | InitializeShareGroupState
        | DeleteShareGroupState
        | ReadShareGroupStateSummary => Rule::Share,
        ConsumerGroupHeartbeat | ConsumerGroupDescribe => Rule::Groups,
        _ => Rule::Unknown,
    }
}

/// Authorizes `request` from `session` on `shard`. See the module docs.
pub fn check(shard: &Rc<Shard>, session: &Rc<Session>, request: Request) -> Guarded {
    let gate = Gate::new(shard, session, request.key);
    let rule = rule(request.key);
    if !gate.authorizing() && rule != Rule::Metadata {
        return Guarded::Run(request, None);
    }
    let Request { key, version, header, body, frame } = request;
    let checked = match rule {
        Rule::Produce => return data::produce(&gate, version, header, body, frame),
        Rule::Data => data::check(&gate, shard, body, version),
        Rule::Metadata => metadata::check(&gate, shard, body, version),
        Rule::Admin => admin::check(&gate, shard, body, version),
        Rule::Txn => txn::check(&gate, shard, body, version),
        Rule::Groups => groups::check(&gate, body, version),
        Rule::Share => share::check(&gate, shard, body),
        Rule::Open | Rule::Unknown => Ok((body, None)),
    };
    match checked {
        Ok((body, finish)) => Guarded::Run(Request { key, version, header, body, frame }, finish),
        Err(response) => Guarded::Answer(Reply::Response(response)),
    }
}

/// A finish that edits the handler's response in place (a reply that is not a response,
/// such as a closed connection, passes unchanged).
fn edit(f: impl FnOnce(&mut ResponseKind) + 'static) -> Option<Finish> {
    Some(Box::new(move |reply| match reply {
        Reply::Response(mut response) => {
            f(&mut response);
            Reply::Response(response)
        }
        other => other,
    }))
}

/// A finish that appends the entries `denied` built, when there are any.
fn append<T: 'static>(
    denied: Vec<T>,
    into: impl FnOnce(&mut ResponseKind, Vec<T>) + 'static,
) -> Option<Finish> {
    if denied.is_empty() {
        return None;
    }
    edit(move |response| into(response, denied))
}

/// Moves the items `allowed` refuses out of `items`, keeping the order of both.
fn deny<T>(items: &mut Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> Vec<T> {
    items.extract_if(.., |item| !allowed(item)).collect()
}

/// Kafka's default message of an error code, for responses that carry one.
fn message(error: E) -> Option<StrBytes> {
    let text = match error {
        E::TopicAuthorizationFailed => "Topic authorization failed.",
        E::GroupAuthorizationFailed => "Group authorization failed.",
        E::ClusterAuthorizationFailed => "Cluster authorization failed.",
        E::TransactionalIdAuthorizationFailed => "Transactional Id authorization failed.",
        _ => return None,
    };
    Some(StrBytes::from_static_str(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_api_has_an_authorization_rule() {
        for api in crate::server::handlers::APIS {
            assert_ne!(rule(api.key), Rule::Unknown, "{:?} has no authorization rule", api.key);
        }
        assert_eq!(rule(ApiKey::ApiVersions), Rule::Open);
        let mut items = vec![1, 2, 3, 4];
        assert_eq!(deny(&mut items, |i| i % 2 == 0), vec![1, 3]);
        assert_eq!(items, vec![2, 4]);
    }
}

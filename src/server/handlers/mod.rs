//! One handler per Kafka API, and the one list of what is implemented.
//!
//! [`APIS`] is the single source of truth: ApiVersions answers from it and the connection
//! refuses anything outside it. Each handler takes the decoded request and the shard the
//! connection lives on, and returns the response body. A handler runs [`contained`]: a panic
//! in it closes that request's connection (the client reconnects and retries), is counted
//! and logged, and the broker keeps serving everyone else.

mod acls;
mod admin;
mod brokers;
mod cluster;
mod config_resources;
mod configs;
mod delete_records;
mod epochs;
mod fetch;
mod group;
pub mod guard;
mod list_offsets;
mod log_dirs;
mod markers;
mod metadata;
mod metering;
mod operations;
mod produce;
mod producer;
mod quotas;
pub(crate) mod sasl;
pub(crate) mod share;
pub(crate) mod share_state;
mod topic_partitions;
mod topic_rules;
pub(crate) mod txn;

use std::future::Future;
use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::session::Session;
use super::shard::{LocalFuture, Shard};
use crate::protocol::{self, ApiRange, Request};

/// Every API and version range the broker implements. Floors follow Kafka 4.0 (KIP-896).
pub const APIS: &[ApiRange] = &[
    ApiRange { key: ApiKey::Produce, min: 3, max: 11 },
    ApiRange { key: ApiKey::Fetch, min: 4, max: 16 },
    // v7: MAX_TIMESTAMP (KIP-734); v8: EARLIEST_LOCAL, v9: LATEST_TIERED (KIP-1005); v10:
    // a timeout for tiered lookups, which there are none of.
    ApiRange { key: ApiKey::ListOffsets, min: 1, max: 10 },
    // v0-1 were removed by Kafka 4.0 (KIP-896).
    ApiRange { key: ApiKey::OffsetForLeaderEpoch, min: 2, max: 4 },
    ApiRange { key: ApiKey::Metadata, min: 0, max: 12 },
    ApiRange { key: ApiKey::ApiVersions, min: 0, max: 4 },
    ApiRange { key: ApiKey::CreateTopics, min: 2, max: 7 },
    ApiRange { key: ApiKey::DeleteTopics, min: 1, max: 6 },
    ApiRange { key: ApiKey::CreatePartitions, min: 0, max: 3 },
    ApiRange { key: ApiKey::DescribeConfigs, min: 1, max: 4 },
    ApiRange { key: ApiKey::AlterConfigs, min: 0, max: 2 },
    ApiRange { key: ApiKey::IncrementalAlterConfigs, min: 0, max: 1 },
    ApiRange { key: ApiKey::DeleteRecords, min: 0, max: 2 },
    ApiRange { key: ApiKey::FindCoordinator, min: 0, max: 6 },
    ApiRange { key: ApiKey::JoinGroup, min: 0, max: 9 },
    ApiRange { key: ApiKey::SyncGroup, min: 0, max: 5 },
    ApiRange { key: ApiKey::Heartbeat, min: 0, max: 4 },
    ApiRange { key: ApiKey::LeaveGroup, min: 0, max: 5 },
    // v10 names topics by id only; not implemented.
    ApiRange { key: ApiKey::OffsetCommit, min: 2, max: 9 },
    ApiRange { key: ApiKey::OffsetFetch, min: 1, max: 9 },
    ApiRange { key: ApiKey::ListGroups, min: 0, max: 5 },
    ApiRange { key: ApiKey::DescribeGroups, min: 0, max: 6 },
    ApiRange { key: ApiKey::DeleteGroups, min: 0, max: 2 },
    ApiRange { key: ApiKey::OffsetDelete, min: 0, max: 0 },
    // KIP-848 consumer groups: every version of Kafka 4.x (v1: the client names members).
    ApiRange { key: ApiKey::ConsumerGroupHeartbeat, min: 0, max: 1 },
    ApiRange { key: ApiKey::ConsumerGroupDescribe, min: 0, max: 1 },
    ApiRange { key: ApiKey::InitProducerId, min: 0, max: 5 },
    // v4+ is the broker-to-broker batched form (KAFKA-15757: not for clients).
    ApiRange { key: ApiKey::AddPartitionsToTxn, min: 0, max: 3 },
    ApiRange { key: ApiKey::AddOffsetsToTxn, min: 0, max: 4 },
    // v5 is transactions v2 (KIP-890 part 2, per-transaction epoch bumps): not implemented.
    ApiRange { key: ApiKey::EndTxn, min: 0, max: 4 },
    ApiRange { key: ApiKey::TxnOffsetCommit, min: 0, max: 4 },
    ApiRange { key: ApiKey::DescribeProducers, min: 0, max: 0 },
    ApiRange { key: ApiKey::DescribeTransactions, min: 0, max: 0 },
    // v2 adds a transactional id pattern: not implemented.
    ApiRange { key: ApiKey::ListTransactions, min: 0, max: 1 },
    ApiRange { key: ApiKey::DescribeCluster, min: 0, max: 2 },
    // KIP-966's paged topic description (Kafka 3.8+ admin clients): see `topic_partitions`.
    ApiRange { key: ApiKey::DescribeTopicPartitions, min: 0, max: 0 },
    // Broker to broker: a transaction coordinator's markers (v1 is the only version).
    ApiRange { key: ApiKey::WriteTxnMarkers, min: 1, max: 1 },
    // v0 was removed by Kafka 4.0 (KIP-896).
    ApiRange { key: ApiKey::DescribeAcls, min: 1, max: 3 },
    ApiRange { key: ApiKey::CreateAcls, min: 1, max: 3 },
    ApiRange { key: ApiKey::DeleteAcls, min: 1, max: 3 },
    ApiRange { key: ApiKey::DescribeClientQuotas, min: 0, max: 1 },
    ApiRange { key: ApiKey::AlterClientQuotas, min: 0, max: 1 },
    // SASL (KIP-43, KIP-152, KIP-368) and SCRAM users (KIP-554).
    ApiRange { key: ApiKey::SaslHandshake, min: 0, max: 1 },
    ApiRange { key: ApiKey::SaslAuthenticate, min: 0, max: 2 },
    ApiRange { key: ApiKey::DescribeUserScramCredentials, min: 0, max: 0 },
    ApiRange { key: ApiKey::AlterUserScramCredentials, min: 0, max: 0 },
    // Cluster operations (issue 19): every version Kafka 4.x and kafka-protocol 0.18 share.
    ApiRange { key: ApiKey::ElectLeaders, min: 0, max: 2 },
    ApiRange { key: ApiKey::AlterPartitionReassignments, min: 0, max: 1 },
    ApiRange { key: ApiKey::ListPartitionReassignments, min: 0, max: 0 },
    // Decommission (UnregisterBroker), recommission (BrokerRegistration from a tool), the
    // controller quorum's membership (DescribeQuorum): see `brokers`.
    ApiRange { key: ApiKey::UnregisterBroker, min: 0, max: 0 },
    ApiRange { key: ApiKey::BrokerRegistration, min: 0, max: 0 },
    ApiRange { key: ApiKey::DescribeQuorum, min: 0, max: 2 },
    // The one log directory (`--data-dir`): see `log_dirs`. v0 was removed by Kafka 4.0.
    ApiRange { key: ApiKey::DescribeLogDirs, min: 1, max: 4 },
    // Which resources have configs (Kafka 4.1, KIP-1142): see `config_resources`.
    ApiRange { key: ApiKey::ListConfigResources, min: 0, max: 1 },
    ApiRange { key: ApiKey::AlterReplicaLogDirs, min: 1, max: 2 },
    // Share groups (KIP-932): v1 is Kafka 4.1's (v0 was the 4.0 preview). ShareFetch and
    // ShareAcknowledge v2 are Kafka 4.2's (KIP-1206 acquire mode, KIP-1222 Renew), and so is
    // DescribeShareGroupOffsets v1 (KIP-1226 lag), patched into the vendored kafka-protocol 0.18
    // (see its STRATA-PATCH.md), which has no v1 of the other offset APIs.
    ApiRange { key: ApiKey::ShareGroupHeartbeat, min: 1, max: 1 },
    ApiRange { key: ApiKey::ShareGroupDescribe, min: 1, max: 1 },
    ApiRange { key: ApiKey::ShareFetch, min: 1, max: 2 },
    ApiRange { key: ApiKey::ShareAcknowledge, min: 1, max: 2 },
    ApiRange { key: ApiKey::DescribeShareGroupOffsets, min: 0, max: 1 },
    ApiRange { key: ApiKey::AlterShareGroupOffsets, min: 0, max: 0 },
    ApiRange { key: ApiKey::DeleteShareGroupOffsets, min: 0, max: 0 },
    // Broker to broker (Kafka lists them on the broker listener, as WriteTxnMarkers): a
    // share-partition leader reads and writes its state on the share coordinator, the group
    // coordinator initializes, deletes and summarizes it. v0 is the only version
    // kafka-protocol 0.18 has; ReadShareGroupStateSummary v1 (Kafka 4.2, KIP-1226's
    // delivery-complete count) is patched in. WriteShareGroupState v1 is not: the share
    // coordinator counts delivery-complete offsets from the batches it stores.
    ApiRange { key: ApiKey::ReadShareGroupState, min: 0, max: 0 },
    ApiRange { key: ApiKey::WriteShareGroupState, min: 0, max: 0 },
    ApiRange { key: ApiKey::InitializeShareGroupState, min: 0, max: 0 },
    ApiRange { key: ApiKey::DeleteShareGroupState, min: 0, max: 0 },
    ApiRange { key: ApiKey::ReadShareGroupStateSummary, min: 0, max: 1 },
];

/// The implemented range of `key`, if any.
pub fn supported(key: ApiKey) -> Option<ApiRange> {
    APIS.iter().copied().find(|a| a.key == key)
}

/// What the connection does after a request.
pub enum Reply {
    /// Send this response.
    Response(Box<ResponseKind>),
    /// Send this response, then close the connection (a refused SASL login).
    Last(Box<ResponseKind>),
    /// Send nothing (produce with acks=0).
    Nothing,
    /// Close the connection, logging why.
    Close(String),
}

/// The handler of one request, for the log line of a panic: `request Metadata`.
struct RequestTask(ApiKey);

impl std::fmt::Display for RequestTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request {:?}", self.0)
    }
}

/// Awaits the handler future of a `key` request with a panic contained: the answer is then
/// to close the connection.
pub async fn contained(key: ApiKey, handling: impl Future<Output = Reply>) -> Reply {
    match crate::runtime::contain::contained(RequestTask(key), handling).await {
        Ok(reply) => reply,
        Err(panic) => Reply::Close(format!("the {key:?} handler panicked: {}", panic.message)),
    }
}

/// Starts handling a request (see [`start`]), with a panic contained: the request's future
/// then answers by closing the connection.
pub async fn dispatch(
    shard: &Rc<Shard>,
    request: Request,
    session: &Rc<Session>,
) -> LocalFuture<Reply> {
    let key = request.key;
    match crate::runtime::contain::contained(RequestTask(key), start(shard, request, session)).await
    {
        Ok(handling) => handling,
        Err(panic) => {
            let why = format!("starting a {key:?} request panicked: {}", panic.message);
            Box::pin(async move { Reply::Close(why) })
        }
    }
}

/// Testing only (`--fault-panic-on-client-id`): whether this request must panic.
fn injected_panic(shard: &Shard, request: &Request) -> bool {
    let Some(faulty) = shard.config.fault_panic_on_client_id.as_deref() else {
        return false;
    };
    request.header.client_id.as_deref() == Some(faulty)
}

/// Starts handling a request. Work that must happen in request order (produce appends, and
/// the forwarding of appends to other shards) is done before this returns; the returned
/// future yields what to answer. The request is authorized first ([`guard`]) and metered
/// against client quotas ([`metering`]).
async fn start(shard: &Rc<Shard>, request: Request, session: &Rc<Session>) -> LocalFuture<Reply> {
    // On a SASL listener nothing but the SASL exchange (and ApiVersions) passes before the
    // client has authenticated: the gate answers first, before any authorization.
    if let Some(refused) = sasl::gate(session, request.key) {
        return Box::pin(async move { refused });
    }
    // With no quota configured the hot path reads no clock: a branch on a flag.
    let started = shard.access.metering_any().then(std::time::Instant::now);
    let (mut request, finish) = match guard::check(shard, session, request) {
        guard::Guarded::Run(request, finish) => (request, finish),
        guard::Guarded::Answer(reply) => return Box::pin(std::future::ready(reply)),
    };
    let metering = metering::Metering::start(shard, session, &mut request);
    let handling = run(shard, request, session).await;
    let handling = match finish {
        None => handling,
        Some(finish) => Box::pin(async move { finish(handling.await) }),
    };
    match metering {
        None => handling,
        Some(metering) => {
            metering.finish(started.unwrap_or_else(std::time::Instant::now), handling)
        }
    }
}

/// Runs the handler of an authorized request (see [`start`]).
async fn run(shard: &Rc<Shard>, request: Request, session: &Rc<Session>) -> LocalFuture<Reply> {
    let version = request.version;
    if injected_panic(shard, &request) {
        // A produce panics while it is started, in the connection's reader; any other
        // request in its handler task: both places a bug could be.
        let key = request.key;
        if key == ApiKey::Produce {
            panic!("fault injection: a panic starting a Produce request");
        }
        return Box::pin(async move { panic!("fault injection: a panic in the {key:?} handler") });
    }
    let shard = shard.clone();
    match request.body {
        RequestKind::Produce(req) => produce::start(&shard, req, request.frame, version).await,
        RequestKind::JoinGroup(req) => {
            let client_id = request.header.client_id.as_deref().unwrap_or("").to_owned();
            let host = session.client_host();
            Box::pin(async move {
                let response = group::join(&shard, req, version, client_id, host).await;
                Reply::Response(Box::new(ResponseKind::JoinGroup(response)))
            })
        }
        RequestKind::ShareFetch(req) => {
            let session = session.clone();
            Box::pin(async move {
                let response = share::fetch_on(&shard, req, &session, version).await;
                Reply::Response(Box::new(ResponseKind::ShareFetch(response)))
            })
        }
        body @ RequestKind::ShareGroupHeartbeat(_) => {
            let client_id = request.header.client_id.as_deref().unwrap_or("").to_owned();
            let client = (client_id, session.client_host());
            Box::pin(async move {
                match share::handle(&shard, body, client, version).await {
                    Ok(response) => Reply::Response(Box::new(response)),
                    Err(other) => Reply::Close(format!("no handler for {other:?}")),
                }
            })
        }
        RequestKind::ConsumerGroupHeartbeat(req) => {
            let client_id = request.header.client_id.as_deref().unwrap_or("").to_owned();
            let host = session.client_host();
            Box::pin(async move {
                let response =
                    group::consumer_heartbeat(&shard, req, version, client_id, host).await;
                Reply::Response(Box::new(ResponseKind::ConsumerGroupHeartbeat(response)))
            })
        }
        RequestKind::SaslHandshake(req) => {
            let reply = sasl::handshake(&shard, session, req, version);
            Box::pin(async move { reply })
        }
        // Awaited here, before the connection reads its next request (see `sasl`).
        RequestKind::SaslAuthenticate(req) => {
            let reply = sasl::authenticate(&shard, session, req, version).await;
            Box::pin(async move { reply })
        }
        RequestKind::ApiVersions(req) => {
            let body = if version >= 3 && !valid_client_software(&req) {
                let (name, software) = (&req.client_software_name, &req.client_software_version);
                let why = "ApiVersions answered INVALID_REQUEST: invalid client software";
                crate::refused!(WARN, "client_software", %name, version = %software, "{why}");
                // Kafka's ApiVersionsRequest.getErrorResponse: the code alone.
                let code = crate::protocol::ResponseError::InvalidRequest.code();
                kafka_protocol::messages::ApiVersionsResponse::default().with_error_code(code)
            } else {
                protocol::api_versions_response(APIS, 0)
            };
            Box::pin(async move { Reply::Response(Box::new(ResponseKind::ApiVersions(body))) })
        }
        body => {
            let session = session.clone();
            Box::pin(async move {
                match handle(&shard, body, version, &session).await {
                    Ok(mut response) => {
                        txn::fenced_as_old_clients_know_it(&mut response, version);
                        Reply::Response(Box::new(response))
                    }
                    Err(other) => Reply::Close(format!("no handler for {other:?}")),
                }
            })
        }
    }
}

/// The APIs whose answer depends on the listener the request came in on (addresses), then
/// every other one.
async fn handle(
    shard: &Rc<Shard>,
    body: RequestKind,
    version: i16,
    session: &Session,
) -> Result<ResponseKind, RequestKind> {
    let listener = session.listener.as_str();
    Ok(match body {
        RequestKind::Metadata(req) => {
            ResponseKind::Metadata(metadata::handle(shard, req, version, listener).await)
        }
        RequestKind::DescribeTopicPartitions(req) => {
            ResponseKind::DescribeTopicPartitions(topic_partitions::handle(shard, req))
        }
        RequestKind::DescribeCluster(req) => {
            ResponseKind::DescribeCluster(cluster::handle(shard, req, version, listener))
        }
        RequestKind::FindCoordinator(req) => {
            ResponseKind::FindCoordinator(group::find_coordinator(shard, req, version, listener))
        }
        other => return handle_any(shard, other, version).await,
    })
}

async fn handle_any(
    shard: &Rc<Shard>,
    body: RequestKind,
    version: i16,
) -> Result<ResponseKind, RequestKind> {
    Ok(match body {
        RequestKind::Fetch(req) => ResponseKind::Fetch(fetch::handle(shard, req, version).await),
        RequestKind::ListOffsets(req) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, req, version).await)
        }
        RequestKind::CreateTopics(req) => {
            ResponseKind::CreateTopics(admin::create_topics(shard, req, version).await)
        }
        RequestKind::DeleteTopics(req) => {
            ResponseKind::DeleteTopics(admin::delete_topics(shard, req, version).await)
        }
        RequestKind::CreatePartitions(req) => {
            ResponseKind::CreatePartitions(admin::create_partitions(shard, req).await)
        }
        RequestKind::DescribeConfigs(req) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(shard, req, version))
        }
        RequestKind::InitProducerId(req) => {
            ResponseKind::InitProducerId(producer::init_producer_id(shard, req).await)
        }
        RequestKind::AlterConfigs(req) => {
            ResponseKind::AlterConfigs(configs::alter_configs(shard, req).await)
        }
        RequestKind::OffsetForLeaderEpoch(req) => {
            ResponseKind::OffsetForLeaderEpoch(epochs::handle(shard, req).await)
        }
        RequestKind::DeleteRecords(req) => {
            ResponseKind::DeleteRecords(delete_records::handle(shard, req).await)
        }
        RequestKind::IncrementalAlterConfigs(req) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(shard, req).await,
        ),
        RequestKind::WriteTxnMarkers(req) => {
            ResponseKind::WriteTxnMarkers(markers::handle(shard, req).await)
        }
        RequestKind::ReadShareGroupState(req) => {
            ResponseKind::ReadShareGroupState(share_state::read(shard, req).await)
        }
        RequestKind::WriteShareGroupState(req) => {
            ResponseKind::WriteShareGroupState(share_state::write(shard, req).await)
        }
        RequestKind::InitializeShareGroupState(req) => {
            ResponseKind::InitializeShareGroupState(share_state::initialize(shard, req).await)
        }
        RequestKind::DeleteShareGroupState(req) => {
            ResponseKind::DeleteShareGroupState(share_state::delete(shard, req).await)
        }
        RequestKind::ReadShareGroupStateSummary(req) => {
            ResponseKind::ReadShareGroupStateSummary(share_state::summary(shard, req).await)
        }
        RequestKind::DescribeAcls(req) => ResponseKind::DescribeAcls(acls::describe(shard, req)),
        RequestKind::CreateAcls(req) => ResponseKind::CreateAcls(acls::create(shard, req).await),
        RequestKind::DeleteAcls(req) => ResponseKind::DeleteAcls(acls::delete(shard, req).await),
        RequestKind::DescribeClientQuotas(req) => {
            ResponseKind::DescribeClientQuotas(quotas::describe(shard, req))
        }
        RequestKind::AlterClientQuotas(req) => {
            ResponseKind::AlterClientQuotas(quotas::alter(shard, req).await)
        }
        RequestKind::DescribeUserScramCredentials(req) => {
            ResponseKind::DescribeUserScramCredentials(sasl::describe_users(shard, req))
        }
        RequestKind::AlterUserScramCredentials(req) => {
            ResponseKind::AlterUserScramCredentials(sasl::alter_users(shard, req).await)
        }
        RequestKind::ElectLeaders(req) => {
            ResponseKind::ElectLeaders(operations::elect_leaders(shard, req, version).await)
        }
        RequestKind::AlterPartitionReassignments(req) => ResponseKind::AlterPartitionReassignments(
            operations::alter_reassignments(shard, req, version).await,
        ),
        RequestKind::ListPartitionReassignments(req) => {
            ResponseKind::ListPartitionReassignments(operations::list_reassignments(shard, req))
        }
        RequestKind::UnregisterBroker(req) => {
            ResponseKind::UnregisterBroker(brokers::unregister(shard, req).await)
        }
        RequestKind::BrokerRegistration(req) => {
            ResponseKind::BrokerRegistration(brokers::register(shard, req).await)
        }
        RequestKind::DescribeQuorum(req) => {
            ResponseKind::DescribeQuorum(brokers::describe_quorum(shard, req, version))
        }
        RequestKind::ListConfigResources(req) => {
            ResponseKind::ListConfigResources(config_resources::handle(shard, req, version))
        }
        RequestKind::DescribeLogDirs(req) => {
            ResponseKind::DescribeLogDirs(log_dirs::describe(shard, req, version).await)
        }
        RequestKind::AlterReplicaLogDirs(req) => {
            ResponseKind::AlterReplicaLogDirs(log_dirs::alter(shard, req))
        }
        // parse_request only lets through what APIS lists; a test checks each has a handler.
        other => match group::handle(shard, other, version).await {
            Ok(response) => response,
            Err(other) => {
                match share::handle(shard, other, (String::new(), String::new()), version).await {
                    Ok(response) => response,
                    Err(other) => return txn::handle(shard, other, version).await,
                }
            }
        },
    })
}

/// A `StrBytes` from a string (for names and messages in responses).
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Kafka's `ApiVersionsRequest.isValid` (v3+): the client software name and version each
/// match `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_client_software(req: &kafka_protocol::messages::ApiVersionsRequest) -> bool {
    let valid = |s: &str| {
        let bytes = s.as_bytes();
        let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
        edge(bytes.first())
            && edge(bytes.last())
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
    };
    valid(&req.client_software_name) && valid(&req.client_software_version)
}

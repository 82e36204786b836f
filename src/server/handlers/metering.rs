//! Client quota enforcement around a request's handling, as Kafka's `KafkaApis` does it:
//!
//! - Produce: the request's record bytes are metered against `producer_byte_rate` when it
//!   is read, so a producer over its quota is muted before its next request is read.
//! - Fetch (consumers): `max_bytes` is capped at what the quota window allows at once; the
//!   answer's record bytes are metered against `consumer_byte_rate`, and a throttled fetch
//!   answers nothing (the bytes are taken back), for the client to ask again later.
//! - Every request but ApiVersions, inter-broker traffic and acks=0 produces: the time its
//!   handling kept this shard busy (the handler's synchronous part plus the time spent
//!   polling its future, not time spent waiting) is metered against `request_percentage`.
//!
//! The response carries the longest of the throttle times in `throttle_time_ms`, and the
//! connection is muted (see `Session::unmuted`) for that long. With no quota configured
//! nothing here runs.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::Reply;
use crate::protocol::Request;
use crate::security::quota::QuotaKind;
use crate::server::access::{fetch_cap, meter, unmeter};
use crate::server::session::Session;
use crate::server::shard::{LocalFuture, Shard};

/// The quota bookkeeping of one request. See the module docs.
pub struct Metering {
    shard: Rc<Shard>,
    session: Rc<Session>,
    client_id: String,
    /// Throttle already decided (produce bytes), ms.
    throttle_ms: u64,
    /// Whether request time counts against `request_percentage`.
    timed: bool,
    /// Whether the answer's bytes count against `consumer_byte_rate`.
    fetch: bool,
}

impl Metering {
    /// Meters what is known before the handler runs (produce bytes, the fetch cap); `None`
    /// when nothing is to be metered for this request.
    pub fn start(
        shard: &Rc<Shard>,
        session: &Rc<Session>,
        request: &mut Request,
    ) -> Option<Metering> {
        let access = &shard.access;
        if !access.metering_any() {
            return None;
        }
        let client_id = request.header.client_id.as_deref().unwrap_or("").to_owned();
        let mut metering = Metering {
            shard: shard.clone(),
            session: session.clone(),
            client_id,
            throttle_ms: 0,
            timed: access.metering(QuotaKind::Request),
            fetch: false,
        };
        match &mut request.body {
            RequestKind::Produce(req) => {
                let bytes: usize = req
                    .topic_data
                    .iter()
                    .flat_map(|t| t.partition_data.iter())
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                metering.throttle_ms = metering.meter(QuotaKind::Produce, bytes as u64);
                metering.timed &= req.acks != 0;
            }
            RequestKind::Fetch(req) => {
                let replica_id = if request.version >= 15 {
                    req.replica_state.replica_id.0
                } else {
                    req.replica_id.0
                };
                if replica_id >= 0 {
                    return None; // replication is not a client's traffic
                }
                if let Some(cap) = fetch_cap(shard, session, &metering.client_id) {
                    // Each partition too: the handler reads every partition up to its own
                    // limit (the first batch whole, KIP-74).
                    let cap = i32::try_from(cap).unwrap_or(i32::MAX).max(1);
                    req.max_bytes = req.max_bytes.min(cap);
                    for p in req.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                        p.partition_max_bytes = p.partition_max_bytes.min(cap);
                    }
                }
                metering.fetch = access.metering(QuotaKind::Fetch);
            }
            // Broker to broker: not a client's traffic (and their answers have no throttle).
            RequestKind::ApiVersions(_)
            | RequestKind::WriteTxnMarkers(_)
            | RequestKind::ReadShareGroupState(_)
            | RequestKind::WriteShareGroupState(_)
            | RequestKind::InitializeShareGroupState(_)
            | RequestKind::DeleteShareGroupState(_)
            | RequestKind::ReadShareGroupStateSummary(_) => return None,
            _ => {}
        }
        Some(metering)
    }

    fn meter(&self, kind: QuotaKind, value: u64) -> u64 {
        meter(&self.shard, &self.session, &self.client_id, kind, value)
    }

    /// Runs `handling` (started at `started`), then meters its answer and time and sets the
    /// response's throttle time.
    pub fn finish(self, started: Instant, handling: LocalFuture<Reply>) -> LocalFuture<Reply> {
        let before = started.elapsed();
        Box::pin(async move {
            let (mut reply, polled) = Timed { inner: handling, spent: Duration::ZERO }.await;
            let mut throttle_ms = self.throttle_ms;
            if let Reply::Response(response) = &mut reply {
                if let (true, ResponseKind::Fetch(r)) = (self.fetch, &mut **response) {
                    let bytes: usize = r
                        .responses
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
                        .sum();
                    let ms = self.meter(QuotaKind::Fetch, bytes as u64);
                    if ms > 0 {
                        // As Kafka: a throttled fetch returns nothing, and is not counted.
                        unmeter(
                            &self.shard,
                            &self.session,
                            &self.client_id,
                            QuotaKind::Fetch,
                            bytes as u64,
                        );
                        r.responses.clear();
                        throttle_ms = throttle_ms.max(ms);
                    }
                }
            }
            if self.timed {
                let busy = u64::try_from((before + polled).as_micros()).unwrap_or(u64::MAX);
                throttle_ms = throttle_ms.max(self.meter(QuotaKind::Request, busy));
            }
            if let (true, Reply::Response(response)) = (throttle_ms > 0, &mut reply) {
                set_throttle_time(response, i32::try_from(throttle_ms).unwrap_or(i32::MAX));
            }
            reply
        })
    }
}

/// A future that adds up the time spent polling it.
struct Timed {
    inner: LocalFuture<Reply>,
    spent: Duration,
}

impl Future for Timed {
    type Output = (Reply, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.spent += start.elapsed();
        polled.map(|reply| (reply, self.spent))
    }
}

/// Sets `throttle_time_ms` in the responses that have it.
fn set_throttle_time(response: &mut ResponseKind, ms: i32) {
    macro_rules! set {
        ($($variant:ident),* $(,)?) => {
            match response {
                $(ResponseKind::$variant(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetForLeaderEpoch,
        CreateTopics,
        DeleteTopics,
        CreatePartitions,
        DescribeConfigs,
        AlterConfigs,
        IncrementalAlterConfigs,
        DeleteRecords,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        DescribeCluster,
        DescribeTopicPartitions,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        ElectLeaders,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        UnregisterBroker,
        BrokerRegistration,
        DescribeLogDirs,
        AlterReplicaLogDirs,
        ListConfigResources,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        ShareGroupHeartbeat,
        ShareGroupDescribe,
        ShareFetch,
        ShareAcknowledge,
        DescribeShareGroupOffsets,
        AlterShareGroupOffsets,
        DeleteShareGroupOffsets,
    );
}

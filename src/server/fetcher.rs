//! Follower fetchers: each shard copies the partitions it follows from their leaders.
//!
//! One fetch session per (shard, leading broker), as Kafka's replica fetcher threads: a task
//! with its own [`PeerConnection`] that long-polls the leader with Fetch v15, topics by id,
//! and this broker's id and broker epoch as `replica_state` (KIP-903: the leader refuses an
//! older incarnation's fetches with STALE_BROKER_EPOCH), for every partition this shard
//! follows there; it does not fetch before this start of the broker registered. Per partition
//! it sends the log end offset, the leader epoch it knows and the epoch of its last batch
//! (`last_fetched_epoch`); the leader answers with records, or with a diverging epoch when
//! this log has a suffix the leader does not (KIP-320), which the follower truncates before
//! fetching on. Records are appended verbatim ([`PartitionLog::append_replica`]) and made
//! durable (every partition of a response at once) before the next fetch, whose offset tells
//! the leader they are here; the leader hands out records as soon as they are appended,
//! while its own write and fdatasync run ([`PartitionLog::wait_for_appended`]). The follower
//! keeps the leader's high watermark, capped at its own log end.
//!
//! The set of partitions changes with the metadata ([`Fetchers::follow`]); a session whose
//! set empties ends.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, RequestKind, ResponseKind};

use super::mesh::PartitionRef;
use super::peer::PeerConnection;
use super::replica::Replica;
use super::shard::Shard;
use crate::protocol::ResponseError as E;
use crate::storage::PartitionLog;

/// Fetch version the followers speak (v15: diverging epochs, topic ids, the broker epoch).
const FETCH_VERSION: i16 = 15;
/// How long the leader may hold a follower's fetch.
const MAX_WAIT_MS: i32 = 500;
/// Most bytes per partition and per response.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 16 << 20;
/// Connect and call timeouts, and the pause after a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF: Duration = Duration::from_millis(200);

/// A partition this shard follows.
#[derive(Clone)]
pub struct Followed {
    /// Its log.
    pub log: PartitionLog,
    /// Its replication state.
    pub replica: Rc<Replica>,
}

struct Session {
    leader: i32,
    /// Whether a task runs the session (it ends once no partition is left).
    running: std::cell::Cell<bool>,
    partitions: RefCell<HashMap<PartitionRef, Followed>>,
}

/// The fetch sessions of one shard.
pub struct Fetchers {
    sessions: RefCell<HashMap<i32, Rc<Session>>>,
    /// This shard's share of `follower_replication_throttled_rate`, for the partitions this
    /// broker is being added to by a reassignment.
    throttle: Option<super::replica::Throttle>,
}

impl Fetchers {
    /// No sessions yet; `throttle` limits the copying of replicas being added.
    pub fn new(throttle: Option<super::replica::Throttle>) -> Fetchers {
        Fetchers { sessions: RefCell::new(HashMap::new()), throttle }
    }

    /// Fetches `partition` from `leader` from now on (from nobody if `None`).
    pub fn follow(
        &self,
        shard: &Rc<Shard>,
        partition: PartitionRef,
        leader: Option<i32>,
        followed: Followed,
    ) {
        self.unfollow(&partition);
        let Some(leader) = leader else { return };
        let existing = self.sessions.borrow().get(&leader).cloned();
        let session = match existing {
            Some(session) => session,
            None => {
                let session = Rc::new(Session {
                    leader,
                    running: std::cell::Cell::new(false),
                    partitions: RefCell::new(HashMap::new()),
                });
                self.sessions.borrow_mut().insert(leader, session.clone());
                session
            }
        };
        session.partitions.borrow_mut().insert(partition, followed);
        if !session.running.replace(true) {
            glommio::spawn_local(run_contained(Rc::downgrade(shard), session)).detach();
        }
    }

    /// Stops fetching `partition`.
    pub fn unfollow(&self, partition: &PartitionRef) {
        for session in self.sessions.borrow().values() {
            session.partitions.borrow_mut().remove(partition);
        }
    }

    fn end(&self, session: &Rc<Session>) {
        let mut sessions = self.sessions.borrow_mut();
        if sessions.get(&session.leader).is_some_and(|s| Rc::ptr_eq(s, session)) {
            sessions.remove(&session.leader);
        }
    }
}

/// [`run`], started again from scratch after [`BACKOFF`] when it panics (the panic is
/// contained: counted and logged, see `runtime::contain`).
async fn run_contained(shard: Weak<Shard>, session: Rc<Session>) {
    let what = format!("the replica fetcher from broker {}", session.leader);
    while crate::runtime::contain::contained(&what, run(shard.clone(), session.clone()))
        .await
        .is_err()
    {
        glommio::timer::sleep(BACKOFF).await;
    }
}

async fn run(shard: Weak<Shard>, session: Rc<Session>) {
    let shard_ref = shard.clone();
    let mut connection: Option<PeerConnection> = None;
    tracing::info!(leader = session.leader, "replica fetcher started");
    loop {
        let Some(shard) = shard.upgrade() else { return };
        if session.partitions.borrow().is_empty() {
            shard.fetchers.end(&session);
            tracing::info!(leader = session.leader, "replica fetcher stopped");
            return;
        }
        if connection.is_none() {
            connection = connect(&shard, session.leader).await;
            if connection.is_none() {
                drop(shard);
                glommio::timer::sleep(BACKOFF).await;
                continue;
            }
        }
        let Some(conn) = connection.as_mut() else { continue };
        // Partitions being added by a reassignment sit out the rounds while their byte-rate
        // limit is in debt; the others (clients' traffic) are fetched as usual.
        let throttled = throttled_partitions(&shard, &session);
        let debt = match &shard.fetchers.throttle {
            Some(throttle) if !throttled.is_empty() => throttle.hold(),
            _ => Duration::ZERO,
        };
        if !debt.is_zero() && session.partitions.borrow().len() == throttled.len() {
            drop(shard);
            glommio::timer::sleep(debt).await;
            continue;
        }
        let skip: &[PartitionRef] = if debt.is_zero() { &[] } else { &throttled };
        let Some(epoch) = shard.quorum.as_ref().and_then(|q| q.broker_epoch()) else {
            // Not registered yet: a fetch without this incarnation's epoch proves nothing.
            drop(shard);
            glommio::timer::sleep(BACKOFF).await;
            continue;
        };
        let (request, sent, names) = build_request(&shard, &session, skip, epoch);
        drop(shard);
        let body = RequestKind::Fetch(request);
        match conn.call(ApiKey::Fetch, FETCH_VERSION, body, CALL_TIMEOUT).await {
            Ok(ResponseKind::Fetch(response)) => {
                if response.error_code != 0 {
                    tracing::warn!(
                        leader = session.leader,
                        code = response.error_code,
                        "replica fetch refused"
                    );
                    glommio::timer::sleep(BACKOFF).await;
                    continue;
                }
                let mut throttled_bytes = 0;
                let mut answers = Vec::new();
                for topic in response.responses {
                    let Some(name) = names.get(&topic.topic_id).cloned() else { continue };
                    for data in topic.partitions {
                        let p =
                            PartitionRef { topic: name.clone(), partition: data.partition_index };
                        if throttled.contains(&p) {
                            throttled_bytes += data.records.as_ref().map_or(0, |r| r.len());
                        }
                        let Some((followed, generation)) = sent.get(&p).cloned() else {
                            continue;
                        };
                        answers.push((p, followed, generation, data));
                    }
                }
                // Every partition's append and fdatasync at once (each partition is its own
                // log): one after the other, a response of 16 partitions cost 16 syncs in a
                // row before the next fetch could tell the leader anything.
                let applied = futures::future::join_all(answers.into_iter().map(
                    |(p, followed, generation, data)| {
                        let session = &session;
                        async move { apply(session, &p, followed, generation, data).await }
                    },
                ))
                .await;
                let stalled = applied.contains(&false);
                if let (Some(shard), true) = (shard_ref.upgrade(), throttled_bytes > 0) {
                    if let Some(throttle) = &shard.fetchers.throttle {
                        throttle.charge(throttled_bytes);
                    }
                }
                if stalled {
                    glommio::timer::sleep(BACKOFF).await;
                }
            }
            Ok(_) => {
                tracing::warn!(leader = session.leader, "Fetch answered with another message");
                connection = None;
            }
            Err(e) => {
                tracing::warn!(leader = session.leader, "replica fetch failed: {e}");
                connection = None;
                glommio::timer::sleep(BACKOFF).await;
            }
        }
    }
}

async fn connect(shard: &Shard, leader: i32) -> Option<PeerConnection> {
    let meta = shard.meta();
    let broker = meta.brokers.get(&leader)?;
    let addr = format!("{}:{}", broker.host, broker.port);
    let client_id = format!("strata-replica-{}", shard.config.node_id);
    match PeerConnection::connect(&addr, &client_id, CONNECT_TIMEOUT).await {
        Ok(connection) => Some(connection),
        Err(e) => {
            tracing::debug!(leader, addr, "cannot reach the leader: {e}");
            None
        }
    }
}

/// The partitions of the session this broker is being added to by a reassignment (their
/// copying counts against `follower_replication_throttled_rate`).
fn throttled_partitions(shard: &Shard, session: &Session) -> Vec<PartitionRef> {
    if shard.fetchers.throttle.is_none() {
        return Vec::new();
    }
    let meta = shard.meta();
    let node = shard.config.node_id;
    let partitions = session.partitions.borrow();
    partitions
        .keys()
        .filter(|p| meta.partition(&p.topic, p.partition).is_some_and(|m| m.adding.contains(&node)))
        .cloned()
        .collect()
}

/// Topic names by id, for the topics of one request.
type TopicNames = HashMap<uuid::Uuid, std::sync::Arc<str>>;

/// What each partition of a request was sent with: its log and replica, and the replica's
/// generation then (an answer is applied only while it is unchanged, see [`apply`]).
type Sent = HashMap<PartitionRef, (Followed, u64)>;

/// The fetch request for every partition of the session, what each was sent with, and the
/// names of the topics it asks for by id. `epoch`: this broker's broker epoch.
fn build_request(
    shard: &Shard,
    session: &Session,
    skip: &[PartitionRef],
    epoch: i64,
) -> (FetchRequest, Sent, TopicNames) {
    let meta = shard.meta();
    let sent: Sent = session
        .partitions
        .borrow()
        .iter()
        // A topic this broker no longer knows (deleted) cannot be asked for by id.
        .filter(|(p, _)| !skip.contains(p) && meta.topics.contains_key(&*p.topic))
        .map(|(p, followed)| (p.clone(), (followed.clone(), followed.replica.generation())))
        .collect();
    let mut names = TopicNames::new();
    let mut by_topic: HashMap<uuid::Uuid, Vec<FetchPartition>> = HashMap::new();
    for (p, (followed, _)) in &sent {
        let log = &followed.log;
        let partition = FetchPartition::default()
            .with_partition(p.partition)
            .with_current_leader_epoch(followed.replica.leader_epoch())
            .with_fetch_offset(log.log_end_offset())
            .with_last_fetched_epoch(log.latest_epoch().unwrap_or(-1))
            .with_log_start_offset(log.log_start_offset())
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        let Some(id) = meta.topics.get(&*p.topic).map(|t| t.id) else { continue };
        names.insert(id, p.topic.clone());
        by_topic.entry(id).or_default().push(partition);
    }
    let topics = by_topic
        .into_iter()
        .map(|(id, partitions)| FetchTopic::default().with_topic_id(id).with_partitions(partitions))
        .collect();
    let replica = ReplicaState::default()
        .with_replica_id(BrokerId(shard.config.node_id))
        .with_replica_epoch(epoch);
    let request = FetchRequest::default()
        .with_replica_state(replica)
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    (request, sent, names)
}

/// Applies one partition's answer. False when the partition cannot progress now (the
/// leader moved, or storage failed): the session pauses before fetching again.
///
/// Nothing of an answer touches the log once the replica's role or epoch changed after the
/// request was sent (`generation`). Before, the check was taken when the answer arrived, and
/// the OFFSET_OUT_OF_RANGE branch did not check at all: a late answer of a broker this one no
/// longer follows could truncate ("ahead of the leader") a replica that had meanwhile become
/// the leader and taken writes.
async fn apply(
    session: &Session,
    p: &PartitionRef,
    followed: Followed,
    generation: u64,
    data: PartitionData,
) -> bool {
    let Followed { log, replica } = followed;
    let still_followed =
        || session.partitions.borrow().contains_key(p) && replica.generation() == generation;
    if !still_followed() {
        return true;
    }
    match E::try_from_code(data.error_code) {
        None => {}
        Some(E::OffsetOutOfRange) => {
            let end = log.log_end_offset();
            let result = if end < data.log_start_offset {
                tracing::info!(topic = %p.topic, partition = p.partition, end,
                    leader_start = data.log_start_offset,
                    "behind the leader's log start; resetting");
                log.reset_to(data.log_start_offset).await
            } else {
                tracing::info!(topic = %p.topic, partition = p.partition, end,
                    hw = data.high_watermark,
                    "ahead of the leader; truncating to its high watermark");
                log.truncate_to(data.high_watermark.max(log.log_start_offset())).await
            };
            if let Err(e) = result {
                tracing::error!(topic = %p.topic, partition = p.partition, "{e}");
                return false;
            }
            return true;
        }
        Some(error) => {
            tracing::debug!(topic = %p.topic, partition = p.partition, ?error, "replica fetch");
            return false;
        }
    }
    if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 {
        let end = data.diverging_epoch.end_offset.min(log.log_end_offset());
        if !still_followed() {
            return true;
        }
        tracing::info!(topic = %p.topic, partition = p.partition, end,
            epoch = data.diverging_epoch.epoch, "log diverged from the leader's; truncating");
        if let Err(e) = log.truncate_to(end.max(0)).await {
            tracing::error!(topic = %p.topic, partition = p.partition, "truncation failed: {e}");
            return false;
        }
        return true;
    }
    let records = data.records.unwrap_or_default();
    if !records.is_empty() {
        if !still_followed() {
            return true;
        }
        let pending = match log.append_replica(&records) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, "replica append: {e}");
                return false;
            }
        };
        if let Err(e) = pending.durable().await {
            tracing::error!(topic = %p.topic, partition = p.partition, "replica append: {e}");
            return false;
        }
    }
    // A late answer from a leader this partition no longer follows says nothing about it.
    if still_followed() {
        log.set_high_watermark(data.high_watermark.min(log.log_end_offset()));
    }
    true
}

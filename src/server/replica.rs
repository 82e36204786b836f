//! One partition's replication state on this broker: its role, and on the leader the
//! followers' progress, the ISR and the high watermark.
//!
//! Kafka's design (docs/replication.md). The controller decides who leads each partition
//! and at which leader epoch, and keeps the ISR; a broker learns both from the metadata it
//! publishes ([`Replica::update`]). Followers fetch from the leader with the Fetch API and a
//! replica id (`server::fetcher`); the leader records each follower's log end offset from
//! its fetch offset ([`Replica::on_follower_fetch`]) and moves the high watermark to the
//! smallest log end offset among the ISR. Consumers read below the high watermark only, and
//! `acks=all` produce requests are acknowledged once it passes their last offset. The leader
//! asks the controller to shrink the ISR when a follower lags longer than
//! `replica.lag.time.max.ms` and to expand it when one caught up (AlterPartition); until a
//! change is committed the high watermark counts the union of the old and proposed ISR
//! (KIP-497), so it never counts on a replica the controller could not elect.
//!
//! Partitions with one replica (and everything on a single broker) are not replicated: their
//! high watermark is the end of durable data, as before clusters existed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::controller::placement::Command;
use crate::controller::{PartitionMeta, TopicMeta};
use crate::storage::PartitionLog;

/// What this broker is for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only replica (single broker, or replication factor 1): no replication.
    Single,
    /// The leader of a replicated partition.
    Leader,
    /// A follower, fetching from `leader` (`None`: no leader elected right now).
    Follower {
        /// The leading broker.
        leader: Option<i32>,
    },
}

/// What changed in [`Replica::update`], for the shard to act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing this broker must act on.
    None,
    /// Now leader (or leader at a new epoch).
    Leader,
    /// Now a follower of this leader at this epoch (or the leader or epoch changed).
    Follower {
        /// The leading broker, if any.
        leader: Option<i32>,
    },
}

/// A follower's progress, as seen by the leader.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// Its log end offset: the offset of its latest fetch.
    leo: i64,
    /// When it was last caught up (Kafka's lastCaughtUpTimeMs).
    caught_up: Instant,
    /// When it last fetched, and the leader's durable end then.
    last_fetch: Instant,
    last_fetch_leader_end: i64,
}

struct State {
    role: Role,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    /// The committed ISR (from the metadata).
    isr: Vec<i32>,
    /// An ISR proposed to the controller and not answered yet.
    proposed: Option<Vec<i32>>,
    followers: HashMap<i32, Progress>,
    min_insync: usize,
    /// Offset at which this broker's current leadership began.
    epoch_start: i64,
}

/// One partition's replication state. See the module docs.
pub struct Replica {
    node: i32,
    /// replica.lag.time.max.ms.
    max_lag: Duration,
    topic: std::sync::Arc<str>,
    partition: i32,
    state: RefCell<State>,
    /// Bumped by every role or epoch change; tasks started for one leadership stop when it
    /// moves on.
    generation: Cell<u64>,
    /// Produce requests waiting for the high watermark, woken (to fail) on a role change.
    role_waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

/// Why an `acks=all` produce cannot be appended or acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReplicated {
    /// This broker does not lead the partition.
    NotLeader,
    /// Fewer in-sync replicas than min.insync.replicas.
    NotEnoughReplicas,
}

/// The topic's min.insync.replicas (1 when unset or unparsable).
pub fn min_insync_replicas(topic: &TopicMeta) -> usize {
    let value = topic.configs.get("min.insync.replicas");
    value.and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1).max(1)
}

impl Replica {
    /// A replica in no role yet (the first [`Replica::update`] sets it).
    pub fn new(
        node: i32,
        max_lag: Duration,
        topic: std::sync::Arc<str>,
        partition: i32,
    ) -> Replica {
        Replica {
            node,
            max_lag,
            topic,
            partition,
            state: RefCell::new(State {
                role: Role::Single,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                proposed: None,
                followers: HashMap::new(),
                min_insync: 1,
                epoch_start: 0,
            }),
            generation: Cell::new(0),
            role_waiters: RefCell::new(Vec::new()),
        }
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.state.borrow().role
    }

    /// The leader epoch this broker knows (-1 before the first update).
    pub fn leader_epoch(&self) -> i32 {
        self.state.borrow().leader_epoch
    }

    /// Changes with every role or epoch change.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Adopts the partition's metadata. `clustered`: the metadata comes from the controller
    /// (a single broker's partitions are always [`Role::Single`]).
    pub fn update(
        &self,
        meta: &PartitionMeta,
        min_insync: usize,
        clustered: bool,
        log: &PartitionLog,
    ) -> Change {
        let mut state = self.state.borrow_mut();
        state.min_insync = min_insync;
        let role = if !clustered || meta.replicas.len() <= 1 {
            if meta.leader == Some(self.node) || !clustered {
                Role::Single
            } else {
                Role::Follower { leader: meta.leader }
            }
        } else if meta.leader == Some(self.node) {
            Role::Leader
        } else {
            Role::Follower { leader: meta.leader }
        };
        let moved = role != state.role || meta.leader_epoch != state.leader_epoch;
        if !moved && state.role == Role::Leader && state.replicas != meta.replicas {
            // Reassignment: new replicas start being tracked (not in the ISR, so they do not
            // hold the high watermark back), removed ones stop.
            let now = Instant::now();
            state.followers.retain(|id, _| meta.replicas.contains(id));
            for &f in meta.replicas.iter().filter(|&&f| f != self.node) {
                state.followers.entry(f).or_insert(Progress {
                    leo: -1,
                    caught_up: now,
                    last_fetch: now,
                    last_fetch_leader_end: 0,
                });
            }
        }
        state.replicas = meta.replicas.clone();
        // Localized metadata always has the ISR filled in (`normalize_isr`).
        state.isr = meta.isr.clone();
        // A new partition epoch answers any proposal in flight: it was applied (perhaps with
        // more, e.g. a reassignment completing and removing replicas, so the ISR differs
        // from the one proposed) or it is now stale and will be refused. Either way the
        // next change may be proposed.
        if meta.partition_epoch != state.partition_epoch
            || state.proposed.as_ref().is_some_and(|p| *p == state.isr)
        {
            state.proposed = None;
        }
        state.partition_epoch = meta.partition_epoch;
        if !moved {
            return Change::None;
        }
        state.role = role;
        state.leader_epoch = meta.leader_epoch;
        state.proposed = None;
        state.followers.clear();
        self.generation.set(self.generation.get() + 1);
        drop(state);
        for waiter in self.role_waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
        match role {
            Role::Single if clustered => {
                log.set_leader_epoch(meta.leader_epoch);
                Change::Leader
            }
            Role::Single => Change::None,
            Role::Leader => {
                log.set_replicated(true);
                log.set_leader_epoch(meta.leader_epoch);
                let mut state = self.state.borrow_mut();
                state.epoch_start = log.log_end_offset();
                // Followers count as caught up when leadership starts: each has
                // `replica.lag.time.max.ms` to show it is, and none counts towards the high
                // watermark before its first fetch.
                let now = Instant::now();
                for &f in meta.replicas.iter().filter(|&&f| f != self.node) {
                    let progress = Progress {
                        leo: -1,
                        caught_up: now,
                        last_fetch: now,
                        last_fetch_leader_end: 0,
                    };
                    state.followers.insert(f, progress);
                }
                Change::Leader
            }
            Role::Follower { leader } => {
                log.set_replicated(true);
                Change::Follower { leader }
            }
        }
    }

    /// This broker no longer holds a replica: ends the role (waiting produces fail, tasks of
    /// the leadership stop).
    pub fn stop(&self) {
        self.state.borrow_mut().role = Role::Follower { leader: None };
        self.generation.set(self.generation.get() + 1);
        let waiters: Vec<_> = self.role_waiters.borrow_mut().drain(..).collect();
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }

    /// Before an `acks=all` append: whether it may go ahead. Counts the ISR members that
    /// are caught up now: a follower lagging past `replica.lag.time.max.ms` is about to
    /// leave the ISR, and while the controller cannot commit that (no quorum) a write it
    /// would have to wait for is refused, not left to time out half-written.
    pub fn check_acks_all(&self) -> Result<(), NotReplicated> {
        let state = self.state.borrow();
        match state.role {
            Role::Single => Ok(()),
            Role::Follower { .. } => Err(NotReplicated::NotLeader),
            Role::Leader => {
                let now = Instant::now();
                let live = state
                    .isr
                    .iter()
                    .filter(|id| {
                        **id == self.node
                            || state
                                .followers
                                .get(id)
                                .is_some_and(|p| now.duration_since(p.caught_up) <= self.max_lag)
                    })
                    .count();
                if live < state.min_insync {
                    Err(NotReplicated::NotEnoughReplicas)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// After the high watermark passed an `acks=all` append: still enough in-sync replicas?
    pub fn check_after_append(&self) -> Result<(), NotReplicated> {
        let state = self.state.borrow();
        match state.role {
            Role::Single => Ok(()),
            Role::Follower { .. } => Err(NotReplicated::NotLeader),
            Role::Leader if state.isr.len() < state.min_insync => {
                Err(NotReplicated::NotEnoughReplicas)
            }
            Role::Leader => Ok(()),
        }
    }

    /// Resolves at the next role or epoch change.
    pub fn role_changed(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.role_waiters.borrow_mut();
        // Every acks=all append registers one; drop those whose produce has been answered,
        // or the list would grow until the next leadership change.
        waiters.retain(|w| !w.is_canceled());
        waiters.push(tx);
        rx
    }

    /// Leader: moves the high watermark to the smallest log end offset among the ISR (and
    /// the proposed additions), capped by this broker's durable end.
    pub fn advance_high_watermark(&self, log: &PartitionLog) {
        let state = self.state.borrow();
        if state.role != Role::Leader {
            return;
        }
        let mut hw = log.durable_end();
        let counted = state.isr.iter().chain(state.proposed.iter().flatten());
        for id in counted.filter(|&&id| id != self.node) {
            match state.followers.get(id) {
                Some(p) if p.leo >= 0 => hw = hw.min(p.leo),
                _ => return,
            }
        }
        log.set_high_watermark(hw);
    }

    /// Leader: a follower fetched at `offset`. Records its progress, moves the high
    /// watermark, and returns an ISR expansion to propose if it caught up.
    pub fn on_follower_fetch(
        &self,
        follower: i32,
        offset: i64,
        log: &PartitionLog,
    ) -> Option<Command> {
        {
            let mut state = self.state.borrow_mut();
            if state.role != Role::Leader {
                return None;
            }
            let now = Instant::now();
            let leader_end = log.durable_end();
            let progress = state.followers.get_mut(&follower)?;
            if offset >= leader_end {
                progress.caught_up = now;
            } else if offset >= progress.last_fetch_leader_end {
                progress.caught_up = progress.caught_up.max(progress.last_fetch);
            }
            progress.leo = offset;
            progress.last_fetch = now;
            progress.last_fetch_leader_end = leader_end;
        }
        self.advance_high_watermark(log);
        let state = self.state.borrow();
        let in_isr = state.isr.contains(&follower)
            || state.proposed.as_ref().is_some_and(|p| p.contains(&follower));
        if in_isr || state.proposed.is_some() {
            return None;
        }
        let caught_up = offset >= log.high_watermark() && offset >= state.epoch_start;
        if !caught_up {
            return None;
        }
        let mut isr = state.isr.clone();
        isr.push(follower);
        drop(state);
        self.propose(isr)
    }

    /// Leader: an ISR shrink to propose when some followers lagged longer than `max_lag`.
    pub fn check_lagging(&self, max_lag: Duration) -> Option<Command> {
        let state = self.state.borrow();
        if state.role != Role::Leader || state.proposed.is_some() {
            return None;
        }
        let now = Instant::now();
        let lagging = |id: &i32| {
            *id != self.node
                && state.followers.get(id).is_none_or(|p| now.duration_since(p.caught_up) > max_lag)
        };
        if !state.isr.iter().any(lagging) {
            return None;
        }
        let isr: Vec<i32> = state.isr.iter().copied().filter(|id| !lagging(id)).collect();
        drop(state);
        self.propose(isr)
    }

    fn propose(&self, isr: Vec<i32>) -> Option<Command> {
        let mut state = self.state.borrow_mut();
        state.proposed = Some(isr.clone());
        Some(Command::AlterPartition {
            topic: self.topic.to_string(),
            partition: self.partition,
            leader: self.node,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr,
        })
    }

    /// What holds the high watermark back, for a log line: the ISR, a proposal in flight,
    /// and each follower's log end offset (-1: no fetch this leadership) and how long ago it
    /// last fetched.
    pub fn describe(&self) -> String {
        let state = self.state.borrow();
        let now = Instant::now();
        let mut followers: Vec<String> = state
            .followers
            .iter()
            .map(|(id, p)| {
                let ago = now.duration_since(p.last_fetch).as_millis();
                format!("{id}: end {} fetched {ago} ms ago", p.leo)
            })
            .collect();
        followers.sort();
        format!(
            "role {:?}, epoch {}, partition epoch {}, ISR {:?}, proposed {:?}, followers [{}]",
            state.role,
            state.leader_epoch,
            state.partition_epoch,
            state.isr,
            state.proposed,
            followers.join(", ")
        )
    }

    /// Leader: the log end offset follower `id` reported with its latest fetch; `None` before
    /// its first fetch of this leadership, or when this broker does not lead.
    pub fn follower_end(&self, id: i32) -> Option<i64> {
        let state = self.state.borrow();
        if state.role != Role::Leader {
            return None;
        }
        state.followers.get(&id).map(|p| p.leo).filter(|&leo| leo >= 0)
    }

    /// The controller refused or lost a proposal: allow the next one.
    pub fn proposal_failed(&self) {
        self.state.borrow_mut().proposed = None;
    }
}

/// A replication byte-rate limit on one shard (Kafka's `leader.replication.throttled.rate`
/// and `follower.replication.throttled.rate`, divided among the shards), for the traffic of
/// replicas being added by a reassignment. A token bucket that may go into debt: a transfer
/// is charged after it happened, and the next one waits until the debt is paid, so a
/// throttled copy proceeds at the rate on average without splitting batches.
pub struct Throttle {
    /// Which side's limit this is, for the metrics.
    follower: bool,
    rate: f64,
    available: Cell<f64>,
    last: Cell<Instant>,
}

impl Throttle {
    /// A limit of `bytes_per_s` (at least 1), with a burst of one second's worth; `follower`
    /// says which side's limit it is (`follower.` or `leader.replication.throttled.rate`).
    pub fn new(bytes_per_s: u64, follower: bool) -> Throttle {
        let rate = bytes_per_s.max(1) as f64;
        let (available, last) = (Cell::new(rate), Cell::new(Instant::now()));
        Throttle { follower, rate, available, last }
    }

    fn refill(&self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last.get()).as_secs_f64();
        self.last.set(now);
        self.available.set((self.available.get() + elapsed * self.rate).min(self.rate));
    }

    /// How long the next transfer must wait (zero when the bucket is not in debt).
    pub fn delay(&self) -> Duration {
        self.refill();
        let debt = -self.available.get();
        if debt <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(debt / self.rate)
        }
    }

    /// [`Throttle::delay`], counting in the metrics a transfer held back by the rate.
    pub fn hold(&self) -> Duration {
        let delay = self.delay();
        if !delay.is_zero() {
            crate::metrics::count_replication_throttle(self.follower, 0, true);
        }
        delay
    }

    /// Records a transfer of `bytes`.
    pub fn charge(&self, bytes: usize) {
        self.refill();
        self.available.set(self.available.get() - bytes as f64);
        crate::metrics::count_replication_throttle(self.follower, bytes as u64, false);
    }

    /// Waits until the next transfer may go.
    pub async fn wait(&self) {
        let delay = self.hold();
        if !delay.is_zero() {
            glommio::timer::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn a_transfer_over_the_rate_makes_the_next_wait_in_proportion() {
        let throttle = Throttle::new(1000, false);
        assert_eq!(throttle.delay(), Duration::ZERO, "a second's burst to start with");
        throttle.charge(1000);
        throttle.charge(2000);
        let delay = throttle.delay();
        assert!(
            delay > Duration::from_millis(1500) && delay <= Duration::from_secs(2),
            "{delay:?}"
        );
    }
}

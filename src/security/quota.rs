//! Client quotas, pure: which quota applies to a client (KIP-55/KIP-257 precedence over user,
//! client-id and user + client-id entities and their defaults), and the rate sensors that
//! meter produce bytes, fetch bytes (KIP-13) and request time (KIP-124) against it.
//!
//! **Resolution** ([`QuotaTable::resolve`]) is Kafka's `DefaultQuotaCallback`, per quota kind:
//! the first of `/users/<u>/clients/<c>`, `/users/<u>/clients/<default>`, `/users/<u>`,
//! `/users/<default>/clients/<c>`, `/users/<default>/clients/<default>`, `/users/<default>`,
//! `/clients/<c>`, `/clients/<default>` that has a quota of that kind decides both the limit
//! and the sensor the traffic is metered by: an entity naming a user (or the default user)
//! meters each user separately, one naming a client id each client id, so every client of
//! `User:alice` shares alice's quota, and each user gets its own copy of the default's.
//!
//! **Metering** is broker-wide: a [`QuotaRegistry`] is shared by every shard of the process,
//! and its [`RateSensor`]s are lock-free (each sample one `AtomicU64` holding a window index
//! and a value, updated by compare-and-swap), so a client whose connections land on several
//! shards still gets one quota per broker, as in Kafka, and a shard meters without locking.
//! A sensor keeps `quota.window.num` samples of `quota.window.size.seconds` each, aligned to
//! multiples of the window size. Its rate is the sum of the samples of the last
//! `quota.window.num` windows over the time they span, counted as at least `num - 1` whole
//! windows (Kafka's `Rate.windowSize`), so a new client may send `num - 1` windows' worth at
//! once before it is throttled. A client over its quota is throttled for
//! `(rate - limit) / limit × window` (Kafka's `QuotaUtils.throttleTime`): the time after which
//! its rate is back at the limit if it sends nothing more; at most one whole window span.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::limits;

/// Entity type of users (`user`).
pub const ENTITY_USER: &str = "user";
/// Entity type of client ids (`client-id`).
pub const ENTITY_CLIENT_ID: &str = "client-id";
/// Entity type of client addresses (`ip`, KIP-612 connection rates: not supported here).
pub const ENTITY_IP: &str = "ip";

/// What a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// Produce request bytes per second (`producer_byte_rate`).
    Produce,
    /// Fetch response bytes per second (`consumer_byte_rate`).
    Fetch,
    /// Time spent handling requests, as a percentage of one shard (`request_percentage`).
    Request,
}

impl QuotaKind {
    /// Every kind.
    pub const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    /// The quota key that sets it (KIP-546).
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
        }
    }

    /// The kind a quota key sets.
    pub fn from_key(key: &str) -> Option<QuotaKind> {
        QuotaKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Short name, for metrics (`produce`, `fetch`, `request`).
    pub fn name(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
            QuotaKind::Request => "request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether the value must be a whole number (the byte rates are Kafka LONG configs).
    fn integral(self) -> bool {
        !matches!(self, QuotaKind::Request)
    }
}

/// Why a quota change or filter is refused (answered with INVALID_REQUEST and this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuota(pub String);

/// Checks an AlterClientQuotas entity: `user`, `client-id` or both, each at most once.
/// `parts` are (entity type, name), `None` for the default entity.
pub fn validate_entity<'a>(
    parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Entity, InvalidQuota> {
    let mut entity = Entity::default();
    let mut seen = 0;
    for (kind, name) in parts {
        seen += 1;
        let name = match name {
            None => Name::Default,
            Some(n) => Name::Named(n.to_owned()),
        };
        let slot = match kind {
            ENTITY_USER => &mut entity.user,
            ENTITY_CLIENT_ID => &mut entity.client_id,
            ENTITY_IP => {
                let msg = "ip quotas (connection_creation_rate, KIP-612) are not supported";
                return Err(InvalidQuota(msg.into()));
            }
            other => return Err(InvalidQuota(format!("unknown entity type {other:?}"))),
        };
        if slot.is_some() {
            return Err(InvalidQuota(format!("entity type {kind} appears more than once")));
        }
        *slot = Some(name);
    }
    if seen == 0 {
        return Err(InvalidQuota("the entity is empty".into()));
    }
    Ok(entity)
}

/// Checks a quota key and value: a known key, a positive finite value, whole for byte rates.
pub fn validate_value(key: &str, value: f64) -> Result<QuotaKind, InvalidQuota> {
    let Some(kind) = QuotaKind::from_key(key) else {
        let known = "producer_byte_rate, consumer_byte_rate, request_percentage";
        return Err(InvalidQuota(format!("unsupported quota key {key:?} (supported: {known})")));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(InvalidQuota(format!("{key} must be a positive number, not {value}")));
    }
    if kind.integral() && value.fract() != 0.0 {
        return Err(InvalidQuota(format!("{key} must be a whole number of bytes per second")));
    }
    Ok(kind)
}

/// A user or client-id component of an entity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Name {
    /// The default entity of this type.
    Default,
    /// A named entity.
    Named(String),
}

/// A quota entity: a user, a client id, or both; `None` where the entity has no such part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    /// The user part.
    pub user: Option<Name>,
    /// The client-id part.
    pub client_id: Option<Name>,
}

impl Entity {
    fn of(user: Option<Name>, client_id: Option<Name>) -> Entity {
        Entity { user, client_id }
    }
}

/// The traffic a sensor meters: a kind, and the user and client id it is kept for (`""`
/// where the deciding entity does not distinguish them), as Kafka's quota metric tags.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensorKey {
    /// The quota kind.
    pub kind: QuotaKind,
    /// The user name, or `""`.
    pub user: String,
    /// The client id, or `""`.
    pub client_id: String,
}

/// The quota overrides in force, per kind. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaTable {
    limits: [HashMap<Entity, f64>; 3],
}

impl QuotaTable {
    /// A table of `(entity, key, value)` overrides; unknown keys are ignored.
    pub fn new<'a>(entries: impl IntoIterator<Item = (Entity, &'a str, f64)>) -> QuotaTable {
        let mut table = QuotaTable::default();
        for (entity, key, value) in entries {
            if let Some(kind) = QuotaKind::from_key(key) {
                table.limits[kind.index()].insert(entity, value);
            }
        }
        table
    }

    /// Whether no quota of `kind` is set for anyone (nothing to meter).
    pub fn is_empty(&self, kind: QuotaKind) -> bool {
        self.limits[kind.index()].is_empty()
    }

    /// Whether no quota at all is set.
    pub fn is_all_empty(&self) -> bool {
        self.limits.iter().all(HashMap::is_empty)
    }

    /// The sensor a client's `kind` traffic is metered by, and its limit; `None` when no quota
    /// applies to it. `user` is the principal's name.
    pub fn resolve(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
    ) -> Option<(SensorKey, f64)> {
        let limits = &self.limits[kind.index()];
        if limits.is_empty() {
            return None;
        }
        let named = |s: &str| Some(Name::Named(s.to_owned()));
        let default = || Some(Name::Default);
        let has = |e: Entity| limits.contains_key(&e);
        // Kafka's `quotaMetricTags`: which parts the deciding entity distinguishes.
        let (by_user, by_client) = if has(Entity::of(named(user), named(client_id)))
            || has(Entity::of(named(user), default()))
        {
            (true, true)
        } else if has(Entity::of(named(user), None)) {
            (true, false)
        } else if has(Entity::of(default(), named(client_id)))
            || has(Entity::of(default(), default()))
        {
            (true, true)
        } else if has(Entity::of(default(), None)) {
            (true, false)
        } else {
            (false, true)
        };
        let user = if by_user { user } else { "" };
        let client_id = if by_client { client_id } else { "" };
        // Kafka's `quotaLimit` for those tags.
        let get = |u: Option<Name>, c: Option<Name>| limits.get(&Entity::of(u, c)).copied();
        let limit = match (user.is_empty(), client_id.is_empty()) {
            (false, false) => get(named(user), named(client_id))
                .or_else(|| get(named(user), default()))
                .or_else(|| get(default(), named(client_id)))
                .or_else(|| get(default(), default())),
            (false, true) => get(named(user), None).or_else(|| get(default(), None)),
            (true, false) => get(None, named(client_id)).or_else(|| get(None, default())),
            (true, true) => None,
        }?;
        let key = SensorKey { kind, user: user.to_owned(), client_id: client_id.to_owned() };
        Some((key, limit))
    }
}

/// Sample settings (Kafka's `quota.window.num` and `quota.window.size.seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Samples kept.
    pub samples: u32,
    /// Length of one sample, ms.
    pub sample_ms: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window { samples: 11, sample_ms: 1000 }
    }
}

impl Window {
    /// The longest span a rate is measured over, ms (also the longest throttle).
    pub fn span_ms(&self) -> u64 {
        self.sample_ms * u64::from(self.samples)
    }

    /// The most that may be recorded at once without certain throttling (Kafka's
    /// `getMaxValueInQuotaWindow`): `limit × (samples - 1)` windows.
    pub fn max_value(&self, limit: f64) -> f64 {
        limit * f64::from(self.samples.saturating_sub(1)) * self.sample_ms as f64 / 1000.0
    }
}

/// Bits of a sample holding its value; the rest hold its window index.
const VALUE_BITS: u32 = 36;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const INDEX_MASK: u64 = (1 << (64 - VALUE_BITS)) - 1;

/// One metered quantity over a sliding window of samples, shared by every shard.
#[derive(Debug)]
pub struct RateSensor {
    window: Window,
    /// Per sample: window index (28 bits, wraps after 2^28 windows) and value (36 bits:
    /// bytes, or µs of request time; saturating).
    samples: Box<[AtomicU64]>,
    /// Start of the process's clock, for window indexes.
    epoch: Instant,
    /// When something was last recorded, ms since `epoch`.
    last_ms: AtomicU64,
}

/// What a sensor measured when recording.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measure {
    /// Sum of the samples in the window.
    pub total: u64,
    /// The span the rate is taken over, ms (Kafka's `windowSize`).
    pub span_ms: u64,
}

impl Measure {
    /// The rate in the unit limits use: per second for bytes; for request time (µs
    /// recorded), percent of one shard.
    pub fn rate(&self, kind: QuotaKind) -> f64 {
        let per_second = self.total as f64 * 1000.0 / self.span_ms.max(1) as f64;
        match kind {
            QuotaKind::Request => per_second / 10_000.0,
            _ => per_second,
        }
    }

    /// How long to throttle a client over `limit` (0 when within it), at most `max_ms`.
    pub fn throttle_ms(&self, kind: QuotaKind, limit: f64, max_ms: u64) -> u64 {
        let rate = self.rate(kind);
        if limit <= 0.0 || rate <= limit {
            return 0;
        }
        let ms = ((rate - limit) / limit * self.span_ms as f64).round();
        (ms as u64).min(max_ms)
    }
}

impl RateSensor {
    fn new(window: Window, epoch: Instant) -> RateSensor {
        let samples = (0..window.samples.max(1)).map(|_| AtomicU64::new(0)).collect();
        RateSensor { window, samples, epoch, last_ms: AtomicU64::new(0) }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds `value` at `now` and returns the measure including it.
    pub fn record(&self, value: u64, now: Instant) -> Measure {
        let now_ms = self.now_ms(now);
        let idle = now_ms.saturating_sub(self.last_ms.swap(now_ms, Ordering::Relaxed));
        if idle >= self.window.span_ms() {
            // Idle for a whole span: no sample can still count (and none can alias later).
            for s in self.samples.iter() {
                s.store(0, Ordering::Relaxed);
            }
        }
        self.add(now_ms, |v| v.saturating_add(value).min(VALUE_MASK));
        self.measure_at(now_ms)
    }

    /// Takes back `value` recorded at `now` (a throttled fetch returns nothing).
    pub fn unrecord(&self, value: u64, now: Instant) {
        self.add(self.now_ms(now), |v| v.saturating_sub(value));
    }

    fn add(&self, now_ms: u64, update: impl Fn(u64) -> u64) {
        let index = (now_ms / self.window.sample_ms) & INDEX_MASK;
        let slot =
            &self.samples[(now_ms / self.window.sample_ms % self.samples.len() as u64) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let value = if current >> VALUE_BITS == index { current & VALUE_MASK } else { 0 };
            let next = (index << VALUE_BITS) | update(value);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// The measure at `now`, without recording.
    pub fn measure(&self, now: Instant) -> Measure {
        self.measure_at(self.now_ms(now))
    }

    fn measure_at(&self, now_ms: u64) -> Measure {
        let sample_ms = self.window.sample_ms;
        let current = (now_ms / sample_ms) & INDEX_MASK;
        let count = self.samples.len() as u64;
        let mut total = 0u64;
        let mut oldest_age = 0u64;
        for s in self.samples.iter() {
            let raw = s.load(Ordering::Relaxed);
            let age = current.wrapping_sub(raw >> VALUE_BITS) & INDEX_MASK;
            let value = raw & VALUE_MASK;
            if age < count && value > 0 {
                total = total.saturating_add(value);
                oldest_age = oldest_age.max(age);
            }
        }
        // Kafka's Rate.windowSize: from the oldest sample's start, at least samples-1 windows.
        let elapsed = oldest_age * sample_ms + now_ms % sample_ms;
        let span_ms = elapsed.max((count - 1) * sample_ms).max(1);
        Measure { total, span_ms }
    }

    fn idle_ms(&self, now: Instant) -> u64 {
        self.now_ms(now).saturating_sub(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Every sensor of the broker process. See the module docs.
#[derive(Debug)]
pub struct QuotaRegistry {
    window: Window,
    epoch: Instant,
    sensors: Mutex<HashMap<SensorKey, Arc<RateSensor>>>,
    /// Shared by new clients once [`limits::QUOTA_SENSORS_MAX`] sensors are all busy.
    overflow: Arc<RateSensor>,
}

impl QuotaRegistry {
    /// A registry whose sensors sample with `window`.
    pub fn new(window: Window) -> QuotaRegistry {
        let epoch = Instant::now();
        QuotaRegistry {
            window,
            epoch,
            sensors: Mutex::new(HashMap::new()),
            overflow: Arc::new(RateSensor::new(window, epoch)),
        }
    }

    /// The sample settings.
    pub fn window(&self) -> Window {
        self.window
    }

    /// The sensor of `key`, created on first use. Called once per connection and quota
    /// change (the connection keeps it), so the lock is off the request path.
    pub fn sensor(&self, key: &SensorKey) -> Arc<RateSensor> {
        let Ok(mut sensors) = self.sensors.lock() else {
            return self.overflow.clone();
        };
        if let Some(found) = sensors.get(key) {
            return found.clone();
        }
        if sensors.len() >= limits::QUOTA_SENSORS_MAX {
            let now = Instant::now();
            let span = self.window.span_ms();
            sensors.retain(|_, s| Arc::strong_count(s) > 1 || s.idle_ms(now) < span);
            if sensors.len() >= limits::QUOTA_SENSORS_MAX {
                return self.overflow.clone();
            }
        }
        let sensor = Arc::new(RateSensor::new(self.window, self.epoch));
        sensors.insert(key.clone(), sensor.clone());
        sensor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn user(n: &str) -> Option<Name> {
        Some(Name::Named(n.into()))
    }

    fn table(entries: &[(Entity, f64)]) -> QuotaTable {
        QuotaTable::new(entries.iter().map(|(e, v)| (e.clone(), "producer_byte_rate", *v)))
    }

    fn resolved(t: &QuotaTable, u: &str, c: &str) -> Option<(String, String, f64)> {
        t.resolve(QuotaKind::Produce, u, c).map(|(k, v)| (k.user, k.client_id, v))
    }

    #[test]
    fn precedence_follows_kafka() {
        let d = || Some(Name::Default);
        let all = [
            (Entity::of(user("alice"), user("app")), 1.0),
            (Entity::of(user("alice"), d()), 2.0),
            (Entity::of(user("alice"), None), 3.0),
            (Entity::of(d(), user("app")), 4.0),
            (Entity::of(d(), d()), 5.0),
            (Entity::of(d(), None), 6.0),
            (Entity::of(None, user("app")), 7.0),
            (Entity::of(None, d()), 8.0),
        ];
        let a = |u: &str, c: &str, v| Some((u.to_owned(), c.to_owned(), v));
        for first in 0..all.len() {
            let t = table(&all[first..]);
            let got = resolved(&t, "alice", "app");
            let want = match first {
                0 | 1 => a("alice", "app", all[first].1),
                2 => a("alice", "", 3.0),
                3 | 4 => a("alice", "app", all[first].1),
                5 => a("alice", "", 6.0),
                _ => a("", "app", all[first].1),
            };
            assert_eq!(got, want, "with entities {first}.. set");
        }
        assert_eq!(resolved(&QuotaTable::default(), "alice", "app"), None);
        // A user quota for someone else: alice falls to the client level, which has none.
        let other = table(&[(Entity::of(user("bob"), None), 1.0)]);
        assert_eq!(resolved(&other, "alice", "app"), None);
        assert_eq!(resolved(&other, "bob", "app"), a("bob", "", 1.0));
        // Kinds are resolved separately.
        assert_eq!(other.resolve(QuotaKind::Fetch, "bob", "app"), None);
    }

    #[test]
    fn entities_and_values_are_checked() {
        let e = validate_entity([("user", Some("alice")), ("client-id", None)]).unwrap();
        assert_eq!(e, Entity::of(user("alice"), Some(Name::Default)));
        assert!(validate_entity([("user", Some("a")), ("user", Some("b"))]).is_err());
        assert!(validate_entity([("ip", Some("10.0.0.1"))]).is_err());
        assert!(validate_entity([("group", Some("g"))]).is_err());
        assert!(validate_entity(std::iter::empty()).is_err());
        assert_eq!(validate_value("producer_byte_rate", 1024.0), Ok(QuotaKind::Produce));
        assert_eq!(validate_value("request_percentage", 12.5), Ok(QuotaKind::Request));
        assert!(validate_value("producer_byte_rate", 10.5).is_err());
        assert!(validate_value("consumer_byte_rate", 0.0).is_err());
        assert!(validate_value("consumer_byte_rate", f64::NAN).is_err());
        assert!(validate_value("controller_mutation_rate", 1.0).is_err());
    }

    #[test]
    fn a_new_sensor_allows_a_burst_then_throttles_to_the_limit() {
        let window = Window { samples: 11, sample_ms: 1000 };
        let registry = QuotaRegistry::new(window);
        let key = SensorKey { kind: QuotaKind::Produce, user: "".into(), client_id: "c".into() };
        let sensor = registry.sensor(&key);
        assert!(Arc::ptr_eq(&sensor, &registry.sensor(&key)));
        let t0 = registry.epoch + Duration::from_millis(5_000);
        // 10 windows' worth at 1000 B/s at once: rate = 10_000 / 10 s, not over.
        let m = sensor.record(10_000, t0);
        assert_eq!(m.span_ms, 10_000);
        assert_eq!(m.throttle_ms(QuotaKind::Produce, 1000.0, window.span_ms()), 0);
        // One more kilobyte: 1100 B/s over 10 s, throttled for a tenth of it.
        let m = sensor.record(1000, t0 + Duration::from_millis(10));
        assert_eq!(m.throttle_ms(QuotaKind::Produce, 1000.0, window.span_ms()), 1000);
        // Waiting out the window forgets it.
        let later = t0 + Duration::from_millis(window.span_ms() + 1000);
        assert_eq!(sensor.measure(later).total, 0);
        let m = sensor.record(500, later);
        assert_eq!(m.total, 500);
        // A throttled fetch is taken back.
        sensor.unrecord(500, later);
        assert_eq!(sensor.measure(later).total, 0);
        // The throttle is capped at the whole span.
        let m = sensor.record(1 << 30, later);
        assert_eq!(m.throttle_ms(QuotaKind::Produce, 1000.0, window.span_ms()), window.span_ms());
    }

    #[test]
    fn steady_senders_converge_to_the_limit() {
        // A client that sends 2000 B every time its throttle ends gets ~limit over time.
        let window = Window { samples: 11, sample_ms: 1000 };
        let sensor = RateSensor::new(window, Instant::now());
        let limit = 100_000.0;
        let mut now = sensor.epoch;
        let mut sent = 0u64;
        let end = now + Duration::from_secs(120);
        let measure_from = sensor.epoch + Duration::from_secs(60);
        let mut measured = 0u64;
        while now < end {
            let m = sensor.record(2000, now);
            sent += 2000;
            if now >= measure_from {
                measured += 2000;
            }
            let wait = m.throttle_ms(QuotaKind::Produce, limit, window.span_ms()).max(1);
            now += Duration::from_millis(wait);
        }
        // A greedy client settles a little under its quota: when the window drops a sample it
        // drops a whole second at once, so the client bursts, and what it sends in the burst
        // window counts for the next `samples` windows (Kafka's samples behave alike).
        let rate = measured as f64 / 60.0;
        assert!(rate <= limit * 1.02, "steady rate {rate} over the limit {limit}");
        assert!(rate >= limit * 0.85, "steady rate {rate} far under the limit {limit}");
        assert!(sent > 0);
    }

    #[test]
    fn request_time_is_a_percentage_of_one_shard() {
        let m = Measure { total: 500_000, span_ms: 10_000 };
        // 0.5 s of work over 10 s: 5% of a shard.
        assert!((m.rate(QuotaKind::Request) - 5.0).abs() < 1e-9);
        assert_eq!(m.throttle_ms(QuotaKind::Request, 10.0, 11_000), 0);
        assert_eq!(m.throttle_ms(QuotaKind::Request, 2.5, 11_000), 10_000);
    }

    #[test]
    fn the_window_caps_what_one_fetch_may_ask_for() {
        let w = Window { samples: 11, sample_ms: 1000 };
        assert_eq!(w.max_value(1000.0), 10_000.0);
        assert_eq!(w.span_ms(), 11_000);
    }
}

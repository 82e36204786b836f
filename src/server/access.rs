//! Access control on one shard: the authorizer over the cluster's ACLs and the client quota
//! table, kept in line with the cluster metadata, and the one way handlers ask about them.
//!
//! Every authorization decision goes through a [`Gate`] (who: the connection's session;
//! where: this shard; for which API): [`Gate::allowed`] for an explicit request (a denial is
//! counted in `strata_authorization_denied_total` and logged, rate-limited, with principal,
//! host, operation and resource, as Kafka's `kafka.authorizer.logger` does at INFO), and
//! [`Gate::permits`] for filtering (Metadata of all topics, ListGroups...), which stays quiet
//! as Kafka's `logIfDenied = false` checks do. With no authorizer configured everything is
//! allowed, and authorized-operation fields list every operation the resource supports.
//!
//! Quotas are metered broker-wide (see `security::quota`): the process's [`QuotaRegistry`]
//! is created by the first shard and shared by all. A connection remembers the sensors it
//! was bound to ([`QuotaBindings`], in its session) until its client id, its principal or
//! the quota table changes, so metering a request is a few atomic operations. With no quota
//! of a kind configured nothing is metered for it.

use std::cell::{Cell, Ref, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use super::session::Session;
use super::shard::Shard;
use crate::config::BrokerConfig;
use crate::controller::access::{AclRule, ClientQuota};
use crate::controller::ClusterMetadata;
use crate::security::acl::{
    AclBinding, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};
use crate::security::authorizer::{Authorizer, AuthorizerConfig};
use crate::security::quota::{
    Entity, Name, QuotaKind, QuotaRegistry, QuotaTable, RateSensor, Window, ENTITY_CLIENT_ID,
    ENTITY_USER,
};
use crate::security::Principal;

/// The broker process's quota sensors, shared by every shard (one broker per process).
static REGISTRY: OnceLock<Arc<QuotaRegistry>> = OnceLock::new();

/// Access state of one shard. See the module docs.
pub struct ShardAccess {
    /// The authorizer's settings; `None` when no authorizer is configured.
    config: Option<AuthorizerConfig>,
    authorizer: RefCell<Option<Authorizer>>,
    /// The rules `authorizer` was built from.
    rules: RefCell<Vec<AclRule>>,
    quotas: RefCell<Rc<QuotaTable>>,
    /// The overrides `quotas` was built from.
    quota_source: RefCell<Vec<ClientQuota>>,
    /// Bumped whenever `quotas` changes: connections re-bind their sensors.
    quota_generation: Cell<u64>,
    /// Per kind: whether any quota of that kind is set.
    metering: Cell<[bool; 3]>,
    registry: Arc<QuotaRegistry>,
}

impl ShardAccess {
    /// The access state of a shard of a broker configured with `config`.
    pub fn new(config: &BrokerConfig) -> ShardAccess {
        let authorizer_config = config.authorizer.then(|| AuthorizerConfig {
            super_users: config.super_users.clone(),
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
        });
        let window = Window {
            samples: config.quota_window_num,
            sample_ms: config.quota_window_size_seconds.saturating_mul(1000),
        };
        let registry = REGISTRY.get_or_init(|| Arc::new(QuotaRegistry::new(window))).clone();
        let authorizer = authorizer_config.clone().map(|c| Authorizer::new(c, &[]));
        ShardAccess {
            config: authorizer_config,
            authorizer: RefCell::new(authorizer),
            rules: RefCell::new(Vec::new()),
            quotas: RefCell::new(Rc::new(QuotaTable::default())),
            quota_source: RefCell::new(Vec::new()),
            quota_generation: Cell::new(0),
            metering: Cell::new([false; 3]),
            registry,
        }
    }

    /// Rebuilds the authorizer and the quota table when `meta` changed them.
    pub fn refresh(&self, meta: &ClusterMetadata) {
        if let Some(config) = &self.config {
            if *self.rules.borrow() != meta.acls {
                let bindings: Vec<AclBinding> = meta.acls.iter().map(binding).collect();
                *self.authorizer.borrow_mut() = Some(Authorizer::new(config.clone(), &bindings));
                *self.rules.borrow_mut() = meta.acls.clone();
            }
        }
        if *self.quota_source.borrow() != meta.client_quotas {
            let table = quota_table(&meta.client_quotas);
            self.metering.set(QuotaKind::ALL.map(|k| !table.is_empty(k)));
            *self.quotas.borrow_mut() = Rc::new(table);
            *self.quota_source.borrow_mut() = meta.client_quotas.clone();
            self.quota_generation.set(self.quota_generation.get() + 1);
        }
    }

    /// Whether an authorizer is configured.
    pub fn authorizing(&self) -> bool {
        self.config.is_some()
    }

    /// The authorizer, when one is configured (borrowed: do not hold across an `.await`).
    pub fn authorizer(&self) -> Option<Ref<'_, Authorizer>> {
        Ref::filter_map(self.authorizer.borrow(), Option::as_ref).ok()
    }

    /// Whether quotas of `kind` are metered.
    pub fn metering(&self, kind: QuotaKind) -> bool {
        self.metering.get()[kind as usize]
    }

    /// Whether any quota is metered.
    pub fn metering_any(&self) -> bool {
        self.metering.get().iter().any(|m| *m)
    }

    /// The quota sample settings.
    pub fn window(&self) -> Window {
        self.registry.window()
    }
}

/// A stored rule as the authorizer's binding.
pub fn binding(rule: &AclRule) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::from_code(rule.resource_type),
        resource_name: rule.resource_name.clone(),
        pattern_type: PatternType::from_code(rule.pattern_type),
        principal: rule.principal.clone(),
        host: rule.host.clone(),
        operation: Operation::from_code(rule.operation),
        permission: Permission::from_code(rule.permission),
    }
}

/// A binding as stored.
pub fn rule(binding: &AclBinding) -> AclRule {
    AclRule {
        resource_type: binding.resource_type.code(),
        resource_name: binding.resource_name.clone(),
        pattern_type: binding.pattern_type.code(),
        principal: binding.principal.clone(),
        host: binding.host.clone(),
        operation: binding.operation.code(),
        permission: binding.permission.code(),
    }
}

/// A stored entity as the quota table's.
pub fn quota_entity(stored: &crate::controller::access::QuotaEntity) -> Entity {
    let part = |kind: &str| {
        stored.get(kind).map(|name| match name {
            None => Name::Default,
            Some(n) => Name::Named(n.clone()),
        })
    };
    Entity { user: part(ENTITY_USER), client_id: part(ENTITY_CLIENT_ID) }
}

fn quota_table(stored: &[ClientQuota]) -> QuotaTable {
    QuotaTable::new(stored.iter().flat_map(|q| {
        let entity = quota_entity(&q.entity);
        q.values.iter().map(move |(k, v)| (entity.clone(), k.as_str(), v.0))
    }))
}

/// Authorization questions of one request: see the module docs.
pub struct Gate<'a> {
    shard: &'a Rc<Shard>,
    session: &'a Rc<Session>,
    api: ApiKey,
}

/// A [`Gate`] that may outlive the request's handling (for checks on a handler's answer).
pub struct OwnedGate {
    shard: Rc<Shard>,
    session: Rc<Session>,
    api: ApiKey,
}

impl OwnedGate {
    /// The gate.
    pub fn gate(&self) -> Gate<'_> {
        Gate::new(&self.shard, &self.session, self.api)
    }
}

impl<'a> Gate<'a> {
    /// The gate of a request of `api` on `session`, handled on `shard`.
    pub fn new(shard: &'a Rc<Shard>, session: &'a Rc<Session>, api: ApiKey) -> Gate<'a> {
        Gate { shard, session, api }
    }

    /// This gate, owned.
    pub fn owned(&self) -> OwnedGate {
        OwnedGate { shard: self.shard.clone(), session: self.session.clone(), api: self.api }
    }

    /// Whether an authorizer decides (else everything is allowed).
    pub fn authorizing(&self) -> bool {
        self.shard.access.authorizing()
    }

    fn host(&self) -> IpAddr {
        self.session.peer.ip()
    }

    /// Whether the request may do `op` on `name` of type `rt`; a denial is audited.
    pub fn allowed(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let Some(authorizer) = self.shard.access.authorizer() else { return true };
        let host = self.host();
        self.session.with_principal(|who| {
            let allowed = authorizer.authorize(who, host, op, rt, name);
            if !allowed {
                audit(who, host, op, rt, name, self.api);
            }
            allowed
        })
    }

    /// As [`Gate::allowed`], without auditing a denial (for filtering what is listed).
    pub fn permits(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let Some(authorizer) = self.shard.access.authorizer() else { return true };
        let host = self.host();
        self.session.with_principal(|who| authorizer.authorize(who, host, op, rt, name))
    }

    /// [`Gate::allowed`] on the cluster.
    pub fn cluster(&self, op: Operation) -> bool {
        self.allowed(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// [`Gate::permits`] on the cluster.
    pub fn cluster_quietly(&self, op: Operation) -> bool {
        self.permits(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Kafka's `authorizeByResourceType` (KIP-679): `op` on some resource of type `rt`.
    pub fn on_some(&self, op: Operation, rt: ResourceType) -> bool {
        let Some(authorizer) = self.shard.access.authorizer() else { return true };
        let host = self.host();
        self.session.with_principal(|who| authorizer.authorize_by_resource_type(who, host, op, rt))
    }

    /// Kafka's authorized-operations bit field of a resource: every supported operation when
    /// no authorizer is configured.
    pub fn operations(&self, rt: ResourceType, name: &str) -> i32 {
        let Some(authorizer) = self.shard.access.authorizer() else {
            return crate::security::acl::operations_bits(rt.operations().iter().copied());
        };
        let host = self.host();
        self.session.with_principal(|who| authorizer.authorized_operations(who, host, rt, name))
    }
}

fn audit(who: &Principal, host: IpAddr, op: Operation, rt: ResourceType, name: &str, api: ApiKey) {
    crate::metrics::count_denial(op.name(), rt.name());
    crate::log_limited!(
        INFO,
        principal = %who,
        host = %host,
        operation = op.name(),
        resource_type = rt.name(),
        resource = name,
        api = ?api,
        "authorization denied"
    );
}

/// A connection's quota sensors, per kind: the binding is reused until the client id, the
/// principal or the quota table changes.
#[derive(Debug, Default)]
pub struct QuotaBindings {
    kinds: [Option<Binding>; 3],
}

#[derive(Debug)]
struct Binding {
    generation: u64,
    client_id: Box<str>,
    user: Box<str>,
    /// The sensor and its limit; `None` when no quota applies to this client.
    sensor: Option<(Arc<RateSensor>, f64)>,
    /// The sensor's user and client-id tags, for metrics.
    tags: (Box<str>, Box<str>),
}

/// Meters `value` (bytes, or µs of request time) of `kind` for a request of `session` with
/// `client_id`: the throttle time in ms, 0 when within quota or no quota applies. A throttled
/// connection is muted (reads nothing) for that long, as Kafka mutes its channel.
pub fn meter(
    shard: &Shard,
    session: &Session,
    client_id: &str,
    kind: QuotaKind,
    value: u64,
) -> u64 {
    if !shard.access.metering(kind) {
        return 0;
    }
    let span_ms = shard.access.window().span_ms();
    let throttled = with_bound(shard, session, client_id, kind, |sensor, limit, tags| {
        let ms = sensor.record(value, Instant::now()).throttle_ms(kind, limit, span_ms);
        if ms > 0 {
            crate::metrics::count_throttle(kind.name(), &tags.0, &tags.1, ms);
        }
        ms
    });
    let ms = throttled.unwrap_or(0);
    if ms > 0 {
        session.mute_for(ms);
    }
    ms
}

/// Takes back `value` metered by [`meter`] (a throttled fetch answers nothing).
pub fn unmeter(shard: &Shard, session: &Session, client_id: &str, kind: QuotaKind, value: u64) {
    with_bound(shard, session, client_id, kind, |sensor, _, _| {
        sensor.unrecord(value, Instant::now())
    });
}

/// The most a fetch of this client may return without certain throttling (Kafka's
/// `getMaxValueInQuotaWindow`); `None` without a fetch quota.
pub fn fetch_cap(shard: &Shard, session: &Session, client_id: &str) -> Option<u64> {
    if !shard.access.metering(QuotaKind::Fetch) {
        return None;
    }
    let window = shard.access.window();
    with_bound(shard, session, client_id, QuotaKind::Fetch, |_, limit, _| {
        window.max_value(limit) as u64
    })
}

/// Runs `f` on the sensor, limit and metric tags `session`'s `kind` traffic is bound to,
/// binding it first if needed; `None` when no quota applies.
fn with_bound<R>(
    shard: &Shard,
    session: &Session,
    client_id: &str,
    kind: QuotaKind,
    f: impl FnOnce(&RateSensor, f64, &(Box<str>, Box<str>)) -> R,
) -> Option<R> {
    let generation = shard.access.quota_generation.get();
    let mut bindings = session.quota.borrow_mut();
    let slot = &mut bindings.kinds[kind as usize];
    let current = slot.as_ref().is_some_and(|b| {
        b.generation == generation
            && *b.client_id == *client_id
            && session.with_principal(|p| *b.user == *p.name)
    });
    if !current {
        *slot = Some(bind(shard, session, client_id, kind, generation));
    }
    let b = slot.as_ref()?;
    let (sensor, limit) = b.sensor.as_ref()?;
    Some(f(sensor, *limit, &b.tags))
}

fn bind(
    shard: &Shard,
    session: &Session,
    client_id: &str,
    kind: QuotaKind,
    generation: u64,
) -> Binding {
    let user = session.with_principal(|p| p.name.clone());
    let quotas = shard.access.quotas.borrow().clone();
    let resolved = quotas.resolve(kind, &user, client_id);
    let tags = resolved
        .as_ref()
        .map(|(k, _)| (k.user.as_str().into(), k.client_id.as_str().into()))
        .unwrap_or_default();
    let sensor = resolved.map(|(key, limit)| (shard.access.registry.sensor(&key), limit));
    Binding { generation, client_id: client_id.into(), user: user.into(), sensor, tags }
}

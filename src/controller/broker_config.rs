//! Broker configs: every setting DescribeConfigs reports on a BROKER resource ([`SETTINGS`]),
//! which of them change at run time (Kafka's dynamic broker configs), and how the layers
//! combine.
//!
//! Dynamic values live in the cluster metadata ([`ClusterMetadata::broker_configs`]), keyed
//! by resource name: `""` for the cluster-wide default, a node id for one broker. A broker's
//! effective configuration ([`effective`]) is its static one (flags, environment, TOML)
//! overridden by the cluster-wide default, overridden by its own values: Kafka's precedence
//! DYNAMIC_BROKER_CONFIG > DYNAMIC_DEFAULT_BROKER_CONFIG > STATIC_BROKER_CONFIG >
//! DEFAULT_CONFIG. The broker taking a request resolves APPEND/SUBTRACT against its view
//! ([`resolve_changes`]), so the command carries only SETs and DELETEs and applies the same
//! way on every broker ([`ClusterMetadata::alter_broker_configs`]); values are checked on
//! both sides by the setting's own parser, the one [`effective`] uses.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::topic_config::{self, ConfigChange};
use super::{ClusterMetadata, ControlError, E};
use crate::config::{BrokerConfig, FlushPolicy};

/// Sets a dynamic setting on a configuration, or says why the value is not legal.
pub type Setter = fn(&mut BrokerConfig, &str) -> Result<(), String>;

/// Whether a setting can change at run time.
#[derive(Clone, Copy)]
pub enum Update {
    /// Fixed at start-up; the reason, as the refusal says it.
    ReadOnly(&'static str),
    /// Changeable per broker and cluster-wide.
    Dynamic(Setter),
}

/// One broker setting, under Kafka's name.
#[derive(Clone, Copy)]
pub struct BrokerSetting {
    /// Kafka's name (Strata's own settings keep their `strata serve` spelling, dotted).
    pub name: &'static str,
    /// Its value in a configuration; `None` when unset.
    pub value: fn(&BrokerConfig) -> Option<String>,
    /// A secret: DescribeConfigs reports no value.
    pub sensitive: bool,
    /// Whether and how it changes at run time.
    pub update: Update,
    /// One line of documentation (DescribeConfigs v3+).
    pub doc: &'static str,
}

impl BrokerSetting {
    /// Whether it can change at run time.
    pub fn is_dynamic(&self) -> bool {
        matches!(self.update, Update::Dynamic(_))
    }
}

const STARTUP: &str = "it is read once at start-up; change the static setting and restart";
const IDENTITY: &str = "it identifies the broker and its data; change it with a restart";
const LISTENERS: &str = "listeners are bound at start-up; certificate files are re-read when \
    they change and on SIGHUP (ssl-reload-check-ms), so no dynamic config is needed for them";
const SECURITY: &str = "security settings are static in Strata; change them with a restart";

fn some(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

fn parse<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| format!("{:?} is not a valid number", value.trim()))
}

/// A setter for the broker default of a topic config: the topic config's own check, then
/// `set` with the value.
macro_rules! log_setter {
    ($topic:literal, |$c:ident, $v:ident| $body:expr) => {{
        fn set($c: &mut BrokerConfig, value: &str) -> Result<(), String> {
            topic_config::validate($topic, value).map_err(|e| e.to_string())?;
            let $v = value.trim();
            $body;
            Ok(())
        }
        set as Setter
    }};
}

macro_rules! log_setting {
    ($name:literal, $topic:literal, $doc:literal, |$c:ident, $v:ident| $body:expr) => {
        BrokerSetting {
            name: $name,
            value: |c| topic_config::broker_default($topic, c),
            sensitive: false,
            update: Update::Dynamic(log_setter!($topic, |$c, $v| $body)),
            doc: $doc,
        }
    };
}

const fn fixed(
    name: &'static str,
    value: fn(&BrokerConfig) -> Option<String>,
    why: &'static str,
    doc: &'static str,
) -> BrokerSetting {
    BrokerSetting { name, value, sensitive: false, update: Update::ReadOnly(why), doc }
}

fn set_flush(c: &mut BrokerConfig, messages: Option<u64>, interval_ms: Option<u64>) {
    let (m, i) = match &c.flush {
        FlushPolicy::EveryProduce => (Some(1), None),
        FlushPolicy::Periodic { messages, interval_ms } => (*messages, *interval_ms),
    };
    let (m, i) = (messages.or(m), interval_ms.or(i));
    let unbounded = |v: Option<u64>| v.filter(|&v| v < i64::MAX as u64);
    c.flush = if m == Some(1) {
        FlushPolicy::EveryProduce
    } else {
        FlushPolicy::Periodic { messages: unbounded(m), interval_ms: unbounded(i) }
    };
}

fn overrides_text(c: &BrokerConfig) -> Option<String> {
    let items: Vec<String> =
        c.max_connections_per_ip_overrides.iter().map(|(ip, n)| format!("{ip}:{n}")).collect();
    Some(items.join(","))
}

fn set_overrides(c: &mut BrokerConfig, value: &str) -> Result<(), String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (host, count) =
            item.rsplit_once(':').ok_or_else(|| format!("{item:?} is not address:count"))?;
        let ip: IpAddr = host
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| format!("{host:?} is not an IP address"))?;
        out.push((ip, parse::<usize>(count)?));
    }
    c.max_connections_per_ip_overrides = out;
    Ok(())
}

fn positive(value: &str) -> Result<usize, String> {
    match parse::<usize>(value)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

fn listeners(c: &BrokerConfig) -> Option<String> {
    let items: Vec<String> =
        c.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect();
    Some(items.join(","))
}

fn advertised(c: &BrokerConfig) -> Option<String> {
    let items: Vec<String> = c
        .listeners
        .iter()
        .map(|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port))
        .collect();
    Some(items.join(","))
}

fn protocol_map(c: &BrokerConfig) -> Option<String> {
    let items: Vec<String> =
        c.listeners.iter().map(|l| format!("{}:{}", l.name, l.protocol.name())).collect();
    Some(items.join(","))
}

fn path(p: &Option<std::path::PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.display().to_string())
}

/// Every broker setting DescribeConfigs reports, dynamic ones first.
pub static SETTINGS: &[BrokerSetting] = &[
    // ---- log defaults of topics (Kafka's DynamicLogConfig) ----
    log_setting!(
        "log.retention.ms",
        "retention.ms",
        "Default retention.ms of topics (how long data is kept)",
        |c, v| c.retention_ms = parse(v)?
    ),
    log_setting!(
        "log.retention.bytes",
        "retention.bytes",
        "Default retention.bytes of topics",
        |c, v| c.retention_bytes = parse(v)?
    ),
    log_setting!(
        "log.segment.bytes",
        "segment.bytes",
        "Default segment.bytes of topics",
        |c, v| c.segment_bytes = parse(v)?
    ),
    log_setting!(
        "log.roll.ms",
        "segment.ms",
        "Default segment.ms of topics (age that rolls a segment)",
        |c, v| c.segment_ms = Some(parse(v)?)
    ),
    log_setting!(
        "message.max.bytes",
        "max.message.bytes",
        "Largest record batch topics accept (default max.message.bytes)",
        |c, v| c.max_message_bytes = parse(v)?
    ),
    log_setting!(
        "log.cleanup.policy",
        "cleanup.policy",
        "Default cleanup.policy of topics",
        |c, v| c.cleanup_policy = v.to_owned()
    ),
    log_setting!(
        "log.cleaner.delete.retention.ms",
        "delete.retention.ms",
        "Default delete.retention.ms of compacted topics",
        |c, v| c.delete_retention_ms = parse(v)?
    ),
    log_setting!(
        "log.cleaner.min.compaction.lag.ms",
        "min.compaction.lag.ms",
        "Default min.compaction.lag.ms of compacted topics",
        |c, v| c.min_compaction_lag_ms = parse(v)?
    ),
    log_setting!(
        "log.flush.interval.messages",
        "flush.messages",
        "Default flush.messages of topics",
        |c, v| set_flush(c, Some(parse(v)?), None)
    ),
    log_setting!("log.flush.interval.ms", "flush.ms", "Default flush.ms of topics", |c, v| {
        set_flush(c, None, Some(parse(v)?))
    }),
    log_setting!(
        "log.message.timestamp.type",
        "message.timestamp.type",
        "Default message.timestamp.type of topics",
        |c, v| c.log_append_time = v == "LogAppendTime"
    ),
    log_setting!(
        "log.message.timestamp.before.max.ms",
        "message.timestamp.before.max.ms",
        "Default message.timestamp.before.max.ms of topics",
        |c, v| c.message_timestamp_before_max_ms = parse(v)?
    ),
    log_setting!(
        "log.message.timestamp.after.max.ms",
        "message.timestamp.after.max.ms",
        "Default message.timestamp.after.max.ms of topics",
        |c, v| c.message_timestamp_after_max_ms = parse(v)?
    ),
    log_setting!(
        "compression.type",
        "compression.type",
        "Default compression.type of topics",
        |c, v| c.compression_type = v.to_owned()
    ),
    log_setting!(
        "compression.gzip.level",
        "compression.gzip.level",
        "Default compression.gzip.level of topics",
        |c, v| c.compression_gzip_level = parse(v)?
    ),
    log_setting!(
        "compression.lz4.level",
        "compression.lz4.level",
        "Default compression.lz4.level of topics",
        |c, v| c.compression_lz4_level = parse(v)?
    ),
    log_setting!(
        "compression.zstd.level",
        "compression.zstd.level",
        "Default compression.zstd.level of topics",
        |c, v| c.compression_zstd_level = parse(v)?
    ),
    log_setting!(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        "Default unclean.leader.election.enable of topics (the controller leader's applies)",
        |c, v| c.unclean_leader_election = v == "true"
    ),
    // ---- connections (Kafka's SocketServer and listener reconfigurables) ----
    BrokerSetting {
        name: "max.connections",
        value: |c| some(c.max_connections),
        sensitive: false,
        update: Update::Dynamic(|c, v| {
            c.max_connections = positive(v)?;
            Ok(())
        }),
        doc: "Client connections open at once on the broker (new ones over it are closed)",
    },
    BrokerSetting {
        name: "max.connections.per.ip",
        value: |c| some(c.max_connections_per_ip),
        sensitive: false,
        update: Update::Dynamic(|c, v| {
            c.max_connections_per_ip = positive(v)?;
            Ok(())
        }),
        doc: "Client connections per client address",
    },
    BrokerSetting {
        name: "max.connections.per.ip.overrides",
        value: overrides_text,
        sensitive: false,
        update: Update::Dynamic(set_overrides),
        doc: "Per-address exceptions to max.connections.per.ip (address:count,...)",
    },
    // ---- producer state (Kafka's DynamicProducerStateManagerConfig) ----
    BrokerSetting {
        name: "producer.id.expiration.ms",
        value: |c| some(c.producer_id_expiration_ms),
        sensitive: false,
        update: Update::Dynamic(|c, v| {
            c.producer_id_expiration_ms = positive(v)? as u64;
            Ok(())
        }),
        doc: "An idempotent producer idle this long is forgotten by a partition",
    },
    // ---- static settings ----
    fixed("node.id", |c| some(c.node_id), IDENTITY, "This broker's node id"),
    fixed("log.dirs", |c| some(c.data_dir.display()), IDENTITY, "The data directory"),
    fixed("broker.rack", |c| c.broker_rack.clone(), IDENTITY, "This broker's rack"),
    fixed("listeners", listeners, LISTENERS, "Listeners, NAME://address"),
    fixed("advertised.listeners", advertised, LISTENERS, "Advertised listener addresses"),
    fixed(
        "listener.security.protocol.map",
        protocol_map,
        LISTENERS,
        "Security protocol of each listener",
    ),
    fixed(
        "inter.broker.listener.name",
        |c| some(&c.inter_broker_listener),
        LISTENERS,
        "The listener other brokers connect to",
    ),
    fixed(
        "ssl.keystore.location",
        |c| path(&c.ssl.keystore_location),
        LISTENERS,
        "PEM certificate chain (and key) of SSL listeners",
    ),
    fixed(
        "ssl.truststore.location",
        |c| path(&c.ssl.truststore_location),
        LISTENERS,
        "PEM CA certificates client certificates chain to",
    ),
    fixed(
        "ssl.client.auth",
        |c| some(c.ssl.client_auth.name()),
        SECURITY,
        "Whether SSL listeners ask for client certificates",
    ),
    fixed(
        "ssl.principal.mapping.rules",
        |c| some(&c.ssl.principal_mapping_rules),
        SECURITY,
        "Rules mapping certificate names to principals",
    ),
    fixed(
        "ssl.enabled.protocols",
        |c| some(c.ssl.enabled_protocols.join(",")),
        SECURITY,
        "TLS versions accepted",
    ),
    fixed(
        "sasl.enabled.mechanisms",
        |c| some(c.sasl.enabled_mechanisms.join(",")),
        SECURITY,
        "SASL mechanisms of SASL listeners",
    ),
    fixed(
        "connections.max.reauth.ms",
        |c| some(c.sasl.connections_max_reauth_ms),
        SECURITY,
        "Longest SASL session before re-authentication",
    ),
    BrokerSetting {
        name: "sasl.bootstrap.user",
        value: |c| c.sasl.bootstrap_user.as_ref().map(|s| s.0.clone()),
        sensitive: true,
        update: Update::ReadOnly(SECURITY),
        doc: "Strata's first SCRAM user (user:password)",
    },
    BrokerSetting {
        name: "cluster.secret",
        value: |c| c.cluster_secret.as_ref().map(|s| s.0.clone()),
        sensitive: true,
        update: Update::ReadOnly(SECURITY),
        doc: "Strata's shared secret of the controller port",
    },
    fixed("super.users", |c| some(c.super_users.join(";")), SECURITY, "Principals allowed all"),
    fixed(
        "allow.everyone.if.no.acl.found",
        |c| some(c.allow_everyone_if_no_acl_found),
        SECURITY,
        "A resource without ACLs is open to all",
    ),
    fixed(
        "authorizer.class.name",
        |c| some(if c.authorizer { "StandardAuthorizer" } else { "" }),
        SECURITY,
        "The ACL authorizer (StandardAuthorizer or none)",
    ),
    fixed(
        "auto.create.topics.enable",
        |c| some(c.auto_create_topics),
        STARTUP,
        "Metadata and Produce create missing topics",
    ),
    fixed("num.partitions", |c| some(c.default_partitions), STARTUP, "Partitions of new topics"),
    fixed(
        "offsets.topic.num.partitions",
        |c| some(c.offsets_topic_partitions),
        STARTUP,
        "Partitions of __consumer_offsets",
    ),
    fixed(
        "socket.request.max.bytes",
        |c| some(c.max_request_bytes),
        STARTUP,
        "Largest request accepted",
    ),
    fixed(
        "queued.max.request.bytes",
        |c| some(c.queued_max_request_bytes.map_or(-1, |b| b as i64)),
        STARTUP,
        "Memory budget of requests in flight (-1: a quarter of memory)",
    ),
    fixed(
        "connections.max.idle.ms",
        |c| some(c.connections_max_idle_ms),
        STARTUP,
        "An idle connection is closed after this long",
    ),
    fixed(
        "log.retention.check.interval.ms",
        |c| some(c.retention_check_ms),
        STARTUP,
        "How often retention and compaction run",
    ),
    fixed(
        "min.insync.replicas",
        |_| some(1),
        "Strata's broker default is 1; set min.insync.replicas on each topic",
        "Default min.insync.replicas of topics",
    ),
    fixed(
        "leader.replication.throttled.rate",
        |c| some(c.leader_replication_throttled_rate.map_or(-1, |r| r as i64)),
        STARTUP,
        "Reassignment traffic a leader sends, bytes/s (-1: unlimited)",
    ),
    fixed(
        "follower.replication.throttled.rate",
        |c| some(c.follower_replication_throttled_rate.map_or(-1, |r| r as i64)),
        STARTUP,
        "Reassignment traffic a new replica fetches, bytes/s (-1: unlimited)",
    ),
    fixed(
        "group.initial.rebalance.delay.ms",
        |c| some(c.group_initial_rebalance_delay_ms),
        STARTUP,
        "First rebalance of an empty group waits this long",
    ),
    fixed(
        "group.min.session.timeout.ms",
        |c| some(c.group_min_session_timeout_ms),
        STARTUP,
        "Shortest session timeout a classic group member may ask for",
    ),
    fixed(
        "group.max.session.timeout.ms",
        |c| some(c.group_max_session_timeout_ms),
        STARTUP,
        "Longest session timeout a classic group member may ask for",
    ),
    fixed(
        "group.consumer.session.timeout.ms",
        |c| some(c.group_consumer_session_timeout_ms),
        STARTUP,
        "A consumer group member silent this long is fenced",
    ),
    fixed(
        "group.consumer.heartbeat.interval.ms",
        |c| some(c.group_consumer_heartbeat_interval_ms),
        STARTUP,
        "How often consumer group members heartbeat",
    ),
    fixed(
        "group.consumer.assignors",
        |c| some(&c.group_consumer_assignors),
        STARTUP,
        "Server-side assignors of consumer groups, the default first",
    ),
    fixed(
        "group.consumer.max.size",
        |c| some(c.group_consumer_max_size),
        STARTUP,
        "Most members of one consumer group",
    ),
    fixed(
        "group.consumer.migration.policy",
        |c| some(&c.group_consumer_migration_policy),
        STARTUP,
        "Online conversion between classic and consumer groups",
    ),
    fixed(
        "transactional.id.expiration.ms",
        |c| some(c.transactional_id_expiration_ms),
        STARTUP,
        "An idle transactional id is forgotten after this long",
    ),
    fixed(
        "replica.lag.time.max.ms",
        |c| some(c.replica_lag_time_max_ms),
        STARTUP,
        "A follower behind this long leaves the ISR",
    ),
    fixed(
        "broker.session.timeout.ms",
        |c| some(c.broker_session_timeout_ms),
        STARTUP,
        "A broker silent this long is fenced",
    ),
    fixed(
        "broker.heartbeat.interval.ms",
        |c| some(c.broker_heartbeat_interval_ms),
        STARTUP,
        "How often a broker heartbeats the controller",
    ),
    fixed(
        "auto.leader.rebalance.enable",
        |c| some(c.auto_leader_rebalance),
        STARTUP,
        "Leadership goes back to preferred replicas",
    ),
    fixed(
        "quota.window.num",
        |c| some(c.quota_window_num),
        STARTUP,
        "Samples a client quota is measured over",
    ),
    fixed(
        "quota.window.size.seconds",
        |c| some(c.quota_window_size_seconds),
        STARTUP,
        "Length of one quota sample",
    ),
];

/// Looks a setting up by name.
pub fn setting(name: &str) -> Option<&'static BrokerSetting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Whether a setting is a comma-separated list (IncrementalAlterConfigs APPEND/SUBTRACT).
pub fn is_list(name: &str) -> bool {
    matches!(name, "log.cleanup.policy" | "max.connections.per.ip.overrides")
}

/// Kafka's ConfigResource name of a broker: `""` (cluster-wide default) or a node id.
pub fn check_resource(name: &str) -> Result<(), ControlError> {
    if name.is_empty() || name.parse::<i32>().is_ok_and(|id| id >= 0) {
        return Ok(());
    }
    let msg = format!(
        "broker resource name {name:?} must be a node id, or empty for the cluster-wide default"
    );
    Err(ControlError::new(E::InvalidRequest, msg))
}

/// INVALID_REQUEST for a broker config change, worded as Kafka's (its message starts the
/// same way).
fn refusal(resource: &str, why: String) -> ControlError {
    let msg =
        format!("Invalid config value for resource ConfigResource(type=BROKER, name='{resource}')");
    ControlError::new(E::InvalidRequest, format!("{msg}: {why}"))
}

/// The setter of a setting that may change at run time (`None`: a name Strata does not
/// know, stored as it is), or INVALID_REQUEST naming why it may not change.
fn dynamic_setter(resource: &str, name: &str) -> Result<Option<Setter>, ControlError> {
    if name.starts_with("listener.name.") {
        return Err(refusal(resource, format!("cannot update {name} dynamically: {LISTENERS}")));
    }
    match setting(name).map(|s| s.update) {
        None if KAFKA_READ_ONLY.contains(&name) => {
            Err(refusal(resource, format!("cannot update {name} dynamically: read-only in Kafka")))
        }
        None => Ok(None),
        Some(Update::ReadOnly(why)) => {
            Err(refusal(resource, format!("cannot update {name} dynamically: {why}")))
        }
        Some(Update::Dynamic(set)) => Ok(Some(set)),
    }
}

/// Kafka settings that are read-only there and that [`SETTINGS`] does not list: refused, as
/// Kafka refuses them, rather than stored as configs Strata does not know. Not all of
/// Kafka's read-only settings: those that name a broker's identity, roles, quorum, storage
/// and internal topics, which an operator might try to change at run time.
const KAFKA_READ_ONLY: &[&str] = &[
    "broker.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "early.start.listeners",
    "log.dir",
    "metadata.log.dir",
    "default.replication.factor",
    "delete.topic.enable",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.num.partitions",
    "transaction.state.log.min.isr",
    "security.inter.broker.protocol",
];

/// Checks that `name` may be set at run time to `value` (INVALID_REQUEST naming why not).
///
/// A name Strata does not know is accepted and stored, with no effect, as Kafka stores a
/// dynamic broker config it does not know (a plugin's, or one of its own that has no
/// counterpart here, such as `background.threads`: Kafka refuses only its known static
/// configs). Such a config is bounded in size ([`CUSTOM_NAME_BYTES_MAX`],
/// [`CUSTOM_VALUE_BYTES_MAX`]) and in number per resource ([`CUSTOM_CONFIGS_MAX`]), since
/// every broker keeps it in the cluster metadata.
pub fn check(resource: &str, name: &str, value: &str) -> Result<(), ControlError> {
    match dynamic_setter(resource, name)? {
        Some(set) => set(&mut BrokerConfig::default(), value)
            .map_err(|e| refusal(resource, format!("{name}: {e}"))),
        None if name.trim().is_empty() => Err(refusal(resource, "an empty config name".into())),
        None if name.len() > CUSTOM_NAME_BYTES_MAX => Err(refusal(
            resource,
            format!("config names are at most {CUSTOM_NAME_BYTES_MAX} bytes"),
        )),
        None if value.len() > CUSTOM_VALUE_BYTES_MAX => {
            let max = CUSTOM_VALUE_BYTES_MAX;
            let why =
                format!("{name}: values of configs Strata does not know are at most {max} bytes");
            Err(refusal(resource, why))
        }
        None => Ok(()),
    }
}

/// Longest name of a broker config Strata does not know (see [`check`]).
pub const CUSTOM_NAME_BYTES_MAX: usize = 255;
/// Longest value of a broker config Strata does not know.
pub const CUSTOM_VALUE_BYTES_MAX: usize = 4096;
/// Most broker configs Strata does not know that one resource (a broker, or the cluster-wide
/// default) may hold.
pub const CUSTOM_CONFIGS_MAX: usize = 256;

/// Whether `name` is stored for compatibility only: a broker config Strata does not know.
pub fn is_custom(name: &str) -> bool {
    setting(name).is_none()
}

/// INVALID_REQUEST when `layer` holds more configs Strata does not know than allowed.
fn check_custom_count(
    resource: &str,
    layer: &BTreeMap<String, String>,
) -> Result<(), ControlError> {
    let custom = layer.keys().filter(|name| is_custom(name)).count();
    if custom > CUSTOM_CONFIGS_MAX {
        let why = format!(
            "at most {CUSTOM_CONFIGS_MAX} configs Strata does not know may be set per resource"
        );
        return Err(refusal(resource, why));
    }
    Ok(())
}

/// The list `base` with the items of `value` appended (once) or removed.
fn list_change(base: &str, value: &str, append: bool) -> String {
    let mut items: Vec<&str> = base.split(',').map(str::trim).filter(|i| !i.is_empty()).collect();
    let given = value.split(',').map(str::trim).filter(|i| !i.is_empty());
    if append {
        for item in given {
            if !items.contains(&item) {
                items.push(item);
            }
        }
    } else {
        let gone: Vec<&str> = given.collect();
        items.retain(|i| !gone.contains(i));
    }
    items.join(",")
}

/// IncrementalAlterConfigs / AlterConfigs on one broker resource, as the broker taking the
/// request sees it: every change checked, APPEND and SUBTRACT turned into SETs of the
/// resulting list (starting from the resource's value, else the value in `effective`). The
/// result carries only `Set` and `Delete`.
pub fn resolve_changes(
    resource: &str,
    current: Option<&BTreeMap<String, String>>,
    changes: &[ConfigChange],
    effective: &BrokerConfig,
) -> Result<Vec<ConfigChange>, ControlError> {
    check_resource(resource)?;
    let mut layer = current.cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        let name = change.name().to_owned();
        dynamic_setter(resource, &name)?;
        let value = match change {
            ConfigChange::Set(_, value) => Some(value.trim().to_owned()),
            ConfigChange::Delete(_) => None,
            ConfigChange::Append(_, value) | ConfigChange::Subtract(_, value) => {
                if !is_list(&name) {
                    let why = format!("APPEND and SUBTRACT apply to list configs only ({name})");
                    return Err(refusal(resource, why));
                }
                let base = layer
                    .get(&name)
                    .cloned()
                    .or_else(|| setting(&name).and_then(|s| (s.value)(effective)))
                    .unwrap_or_default();
                let append = matches!(change, ConfigChange::Append(..));
                Some(list_change(&base, value, append))
            }
        };
        match value {
            Some(value) => {
                check(resource, &name, &value)?;
                layer.insert(name.clone(), value.clone());
                out.push(ConfigChange::Set(name, value));
            }
            None => {
                layer.remove(&name);
                out.push(ConfigChange::Delete(name));
            }
        }
    }
    check_custom_count(resource, &layer)?;
    Ok(out)
}

impl ClusterMetadata {
    /// Applies resolved broker config changes (SET and DELETE, see [`resolve_changes`]) to
    /// one resource, replacing all its values first when `replace` (AlterConfigs); a
    /// resource left without values is dropped. Every value is checked again.
    pub(super) fn alter_broker_configs(
        &mut self,
        resource: &str,
        changes: &[ConfigChange],
        replace: bool,
    ) -> Result<(), ControlError> {
        check_resource(resource)?;
        let mut layer = if replace {
            BTreeMap::new()
        } else {
            self.broker_configs.get(resource).cloned().unwrap_or_default()
        };
        for change in changes {
            match change {
                ConfigChange::Set(name, value) => {
                    check(resource, name, value)?;
                    layer.insert(name.clone(), value.clone());
                }
                ConfigChange::Delete(name) => {
                    layer.remove(name);
                }
                other => {
                    let msg = format!("unresolved change {:?}", other.name());
                    return Err(ControlError::new(E::InvalidRequest, msg));
                }
            }
        }
        check_custom_count(resource, &layer)?;
        if layer.is_empty() {
            self.broker_configs.remove(resource);
        } else {
            self.broker_configs.insert(resource.to_owned(), layer);
        }
        Ok(())
    }

    /// The dynamic value of `name` for broker `node`: its own, else the cluster-wide one.
    pub fn broker_value(&self, node: i32, name: &str) -> Option<&str> {
        let own = self.broker_configs.get(&node.to_string()).and_then(|l| l.get(name));
        own.or_else(|| self.broker_configs.get("").and_then(|l| l.get(name))).map(String::as_str)
    }

    /// The dynamic values of one resource (`""`: cluster-wide default), if any.
    pub fn broker_layer(&self, resource: &str) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(resource)
    }
}

/// The effective configuration of broker `base.node_id`: `base` overridden by the
/// cluster-wide dynamic values, overridden by the broker's own. A stored value its setting
/// refuses (written by another version) is skipped with a warning.
pub fn effective(
    base: &BrokerConfig,
    configs: &BTreeMap<String, BTreeMap<String, String>>,
) -> BrokerConfig {
    let mut out = base.clone();
    let node = base.node_id.to_string();
    for layer in [configs.get(""), configs.get(&node)].into_iter().flatten() {
        for (name, value) in layer {
            let set = match setting(name) {
                Some(BrokerSetting { update: Update::Dynamic(set), .. }) => set,
                // Stored for compatibility only (see `check`).
                None => continue,
                Some(_) => {
                    let what = "ignoring a stored static broker config";
                    crate::log_limited!(WARN, config = %name, "{what}");
                    continue;
                }
            };
            if let Err(e) = set(&mut out, value) {
                crate::log_limited!(WARN, config = %name, "ignoring a stored broker config: {e}");
            }
        }
    }
    out
}

/// Where a broker setting's value comes from, for broker `base.node_id`: every layer that
/// holds it as `(value, Kafka's ConfigSource)`, in precedence order (the first one applies;
/// DescribeConfigs reports them all as synonyms).
pub fn sources(
    setting: &BrokerSetting,
    base: &BrokerConfig,
    configs: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<(Option<String>, i8)> {
    let node = base.node_id.to_string();
    let mut out = Vec::new();
    if let Some(v) = configs.get(&node).and_then(|l| l.get(setting.name)) {
        out.push((Some(v.clone()), SOURCE_DYNAMIC_BROKER));
    }
    if let Some(v) = configs.get("").and_then(|l| l.get(setting.name)) {
        out.push((Some(v.clone()), SOURCE_DYNAMIC_DEFAULT));
    }
    let configured = (setting.value)(base);
    let builtin = (setting.value)(&BrokerConfig::default());
    if is_given(setting.name, base) || configured != builtin {
        out.push((configured, SOURCE_STATIC_BROKER));
    }
    out.push((builtin, SOURCE_DEFAULT));
    out
}

/// Whether some `strata serve` setting that feeds broker setting `name` was given (flag,
/// environment or file), even at its default value: Kafka reports STATIC_BROKER_CONFIG for
/// what `server.properties` sets.
pub fn is_given(name: &str, base: &BrokerConfig) -> bool {
    serve_keys(name).iter().any(|key| base.given_settings.contains(key))
}

/// The `strata serve` settings (by key: the flag's name with `_` for `-`) that feed broker
/// setting `name`: Kafka's name with `_` for `.` unless [`SERVE_KEYS`] lists them.
pub fn serve_keys(name: &str) -> Vec<String> {
    match SERVE_KEYS.iter().find(|(n, _)| *n == name) {
        Some((_, keys)) => keys.iter().map(|k| k.to_string()).collect(),
        None => vec![name.replace('.', "_")],
    }
}

/// The broker settings whose `strata serve` keys are not Kafka's name with `_` for `.`.
const SERVE_KEYS: &[(&str, &[&str])] = &[
    ("log.retention.ms", &["retention_ms"]),
    ("log.retention.bytes", &["retention_bytes"]),
    ("log.segment.bytes", &["segment_bytes"]),
    ("log.roll.ms", &["segment_ms"]),
    ("message.max.bytes", &["max_message_bytes"]),
    ("log.cleanup.policy", &["cleanup_policy"]),
    ("log.cleaner.delete.retention.ms", &["delete_retention_ms"]),
    ("log.cleaner.min.compaction.lag.ms", &["min_compaction_lag_ms"]),
    ("log.flush.interval.messages", &["flush_messages"]),
    ("log.flush.interval.ms", &["flush_ms"]),
    ("log.message.timestamp.type", &["log_append_time"]),
    ("log.message.timestamp.before.max.ms", &["message_timestamp_before_max_ms"]),
    ("log.message.timestamp.after.max.ms", &["message_timestamp_after_max_ms"]),
    ("unclean.leader.election.enable", &["unclean_leader_election"]),
    ("log.dirs", &["data_dir"]),
    ("listeners", &["listeners", "listen"]),
    (
        "advertised.listeners",
        &[
            "advertised_listeners",
            "listen",
            "advertised_host",
            "advertised_port",
            "advertised_listener",
            "listeners",
        ],
    ),
    ("listener.security.protocol.map", &["listener_security_protocol_map", "listeners"]),
    ("sasl.bootstrap.user", &["sasl_bootstrap_user", "sasl_bootstrap_user_file"]),
    ("cluster.secret", &["cluster_secret", "cluster_secret_file"]),
    ("authorizer.class.name", &["authorizer"]),
    ("auto.create.topics.enable", &["auto_create_topics"]),
    ("num.partitions", &["default_partitions"]),
    ("offsets.topic.num.partitions", &["offsets_topic_partitions"]),
    ("socket.request.max.bytes", &["max_request_bytes"]),
    ("log.retention.check.interval.ms", &["retention_check_ms"]),
    // Not a setting of `strata serve`: always Strata's default.
    ("min.insync.replicas", &[]),
    ("auto.leader.rebalance.enable", &["auto_leader_rebalance"]),
];

/// Kafka's `DescribeConfigsResponse.ConfigSource` codes.
pub const SOURCE_TOPIC: i8 = 1;
/// Per-broker dynamic value.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
/// Cluster-wide dynamic value.
pub const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
/// Set by the broker's flags, environment or file.
pub const SOURCE_STATIC_BROKER: i8 = 4;
/// Built-in default.
pub const SOURCE_DEFAULT: i8 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dynamic_default_is_accepted_by_its_own_setter() {
        let defaults = BrokerConfig::default();
        for s in SETTINGS {
            if let Update::Dynamic(set) = s.update {
                let value = (s.value)(&defaults).unwrap_or_default();
                let mut c = BrokerConfig::default();
                assert_eq!(set(&mut c, &value), Ok(()), "{}", s.name);
                assert_eq!((s.value)(&c), (s.value)(&defaults), "{} round trip", s.name);
            }
        }
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len(), "a setting is listed twice");
    }

    #[test]
    fn static_unknown_and_bad_values_are_refused_naming_why() {
        let e = check("1", "log.dirs", "/tmp").unwrap_err();
        assert_eq!(e.code, E::InvalidRequest.code());
        assert!(e.message.contains("cannot update log.dirs dynamically"), "{}", e.message);
        // Unknown names are stored as Kafka stores them, within bounds.
        assert_eq!(check("", "background.threads", "9"), Ok(()));
        assert_eq!(check("1", "sasl.kerberos.min.time.before.relogin", "58000"), Ok(()));
        let e = check("1", "broker.id", "7").unwrap_err();
        assert!(e.message.contains("cannot update broker.id dynamically"), "{}", e.message);
        assert!(check("", "", "1").is_err());
        assert!(check("", &"x".repeat(CUSTOM_NAME_BYTES_MAX + 1), "1").is_err());
        assert!(check("", "custom.thing", &"v".repeat(CUSTOM_VALUE_BYTES_MAX + 1)).is_err());
        assert!(check("", "log.retention.ms", "-5").is_err());
        assert!(check("", "message.max.bytes", "x").is_err());
        assert!(check("", "max.connections", "0").is_err());
        assert!(check("", "listener.name.ssl.ssl.keystore.location", "/x").is_err());
        assert_eq!(check("", "log.retention.ms", "1000"), Ok(()));
        assert_eq!(check("2", "max.connections.per.ip.overrides", "127.0.0.1:5"), Ok(()));
        assert!(check_resource("x").is_err());
        assert!(check_resource("-1").is_err());
    }

    #[test]
    fn configs_strata_does_not_know_are_stored_without_effect_up_to_a_count() {
        let base = BrokerConfig::default();
        let mut meta = ClusterMetadata::default();
        let set = [ConfigChange::Set("background.threads".into(), "9".into())];
        let out = resolve_changes("", None, &set, &base).unwrap();
        meta.alter_broker_configs("", &out, false).unwrap();
        assert_eq!(meta.broker_value(0, "background.threads"), Some("9"));
        assert_eq!(effective(&base, &meta.broker_configs).retention_ms, base.retention_ms);
        let many: Vec<ConfigChange> = (0..CUSTOM_CONFIGS_MAX)
            .map(|i| ConfigChange::Set(format!("custom.{i}"), "1".into()))
            .collect();
        // With background.threads, one too many.
        assert!(resolve_changes("", meta.broker_layer(""), &many, &base).is_err());
        assert!(meta.alter_broker_configs("", &many, false).is_err());
        // AlterConfigs replaces the layer: exactly the bound.
        assert_eq!(meta.alter_broker_configs("", &many, true), Ok(()));
        let append = [ConfigChange::Append("custom.0".into(), "2".into())];
        assert!(resolve_changes("", None, &append, &base).is_err(), "not a list");
    }

    #[test]
    fn per_broker_beats_cluster_default_beats_static() {
        let base = BrokerConfig { node_id: 1, retention_ms: 5_000, ..BrokerConfig::default() };
        let mut meta = ClusterMetadata::default();
        let set = |n: &str, v: &str| vec![ConfigChange::Set(n.into(), v.into())];
        meta.alter_broker_configs("", &set("log.retention.ms", "60000"), false).unwrap();
        assert_eq!(effective(&base, &meta.broker_configs).retention_ms, 60_000);
        meta.alter_broker_configs("1", &set("log.retention.ms", "7000"), false).unwrap();
        meta.alter_broker_configs("2", &set("log.retention.ms", "8000"), false).unwrap();
        assert_eq!(effective(&base, &meta.broker_configs).retention_ms, 7_000);
        let s = setting("log.retention.ms").unwrap();
        let sources = sources(s, &base, &meta.broker_configs);
        let codes: Vec<i8> = sources.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes, [2, 3, 4, 5]);
        let gone = vec![ConfigChange::Delete("log.retention.ms".into())];
        meta.alter_broker_configs("1", &gone, false).unwrap();
        assert!(meta.broker_layer("1").is_none(), "an empty layer is dropped");
        assert_eq!(effective(&base, &meta.broker_configs).retention_ms, 60_000);
    }

    #[test]
    fn list_changes_resolve_to_sets() {
        let base = BrokerConfig::default();
        let append = [ConfigChange::Append("log.cleanup.policy".into(), "compact".into())];
        let out = resolve_changes("", None, &append, &base).unwrap();
        assert_eq!(out, [ConfigChange::Set("log.cleanup.policy".into(), "delete,compact".into())]);
        let bad = [ConfigChange::Append("log.retention.ms".into(), "5".into())];
        assert!(resolve_changes("", None, &bad, &base).is_err());
        let flush = [ConfigChange::Set("log.flush.interval.messages".into(), "1000".into())];
        let out = resolve_changes("1", None, &flush, &base).unwrap();
        let mut meta = ClusterMetadata::default();
        meta.alter_broker_configs("", &out, false).unwrap();
        let c = effective(&base, &meta.broker_configs);
        assert!(matches!(c.flush, FlushPolicy::Periodic { messages: Some(1000), .. }));
    }
}

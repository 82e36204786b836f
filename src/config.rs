//! Typed broker configuration and the named limits it is checked against.
//!
//! Every knob of `strata serve` lands in [`BrokerConfig`], validated once by
//! [`BrokerConfig::validate`] before any shard starts. Limits that are constants of the
//! implementation live in [`limits`].

pub mod listener;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use listener::{Listener, SecurityProtocol, SslConfig};

/// Named constants that bound what the broker accepts or allocates.
pub mod limits {
    /// Largest request frame ever accepted, whatever the configuration says (1 GiB).
    pub const REQUEST_BYTES_CEILING: usize = 1 << 30;
    /// Kafka's `socket.request.max.bytes` default (100 MiB).
    pub const REQUEST_BYTES_DEFAULT: usize = 100 * 1024 * 1024;
    /// Kafka's `message.max.bytes` default: the largest record batch accepted.
    pub const BATCH_BYTES_DEFAULT: usize = 1024 * 1024 + 12;
    /// Kafka's topic name limit (`Topic.MAX_NAME_LENGTH`).
    pub const TOPIC_NAME_BYTES_MAX: usize = 249;
    /// Partitions one topic may have.
    pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
    /// Requests one connection may have in flight before the broker stops reading from it.
    pub const IN_FLIGHT_PER_CONNECTION_MAX: usize = 64;
    /// Capacity of each shard-to-shard channel.
    pub const MESH_CHANNEL_CAPACITY: usize = 1024;
    /// Smallest segment a topic may configure (Kafka: 14 bytes; we need room for a batch).
    pub const SEGMENT_BYTES_MIN: u64 = 1024 * 1024;
    /// Kafka's `segment.bytes` is an INT: at most 2 GiB - 1 (storage takes up to 2 GiB, so
    /// every legal value is honoured as given; more was accepted and silently cut to 2 GiB).
    pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
    /// Longest a fetch may wait, whatever the client asks (Kafka clamps similarly).
    pub const FETCH_WAIT_MS_MAX: i32 = 60_000;

    /// A compressed batch may decompress to at most this many times its topic's
    /// `max.message.bytes`: the leader walks every record of a compressed batch, and this
    /// bounds the work and memory a zip bomb costs (Kafka has no such bound; a producer's
    /// uncompressed batch is normally at most its `batch.size`, far below this).
    pub const DECOMPRESSED_BATCH_RATIO_MAX: usize = 64;

    /// Most partitions `__consumer_offsets` may be created with.
    pub const OFFSETS_TOPIC_PARTITIONS_MAX: i32 = 1000;

    /// Longest a graceful shutdown may be configured to wait for in-flight requests (10 min).
    pub const SHUTDOWN_TIMEOUT_MS_MAX: u64 = 600_000;
    /// Longest `group.initial.rebalance.delay.ms` accepted (Kafka's default rebalance timeout).
    pub const INITIAL_REBALANCE_DELAY_MS_MAX: u64 = 300_000;
    /// Longest share-group timeout accepted (`group.share.*.ms`): an hour.
    pub const SHARE_TIMEOUT_MS_MAX: u64 = 3_600_000;
    /// Most `group.share.partition.max.record.locks` (Kafka's upper bound).
    pub const SHARE_RECORD_LOCKS_MAX: u32 = 10_000;
    /// Longest `group.consumer.session.timeout.ms` accepted (Kafka's
    /// `group.consumer.max.session.timeout.ms` bound, 30 minutes).
    pub const CONSUMER_SESSION_TIMEOUT_MS_MAX: u64 = 1_800_000;
    /// Longest `connection.failed.authentication.delay.ms` accepted (a minute).
    pub const FAILED_AUTHENTICATION_DELAY_MS_MAX: u64 = 60_000;
    /// Port of the admin HTTP listener (Redpanda's admin port).
    pub const ADMIN_PORT_DEFAULT: u16 = 9644;

    /// Authorization answers each shard caches; the cache starts over when full.
    pub const AUTHORIZATION_CACHE_ENTRIES_MAX: usize = 100_000;
    /// ACLs the cluster may hold (CreateAcls past it is refused).
    pub const ACLS_MAX: usize = 100_000;
    /// Client quota entities the cluster may hold (AlterClientQuotas past it is refused).
    pub const CLIENT_QUOTA_ENTITIES_MAX: usize = 100_000;
    /// Quota sensors (user/client-id pairs being metered) a broker keeps; past it, sensors
    /// idle for a whole quota window are dropped first, then new clients share an overflow one.
    pub const QUOTA_SENSORS_MAX: usize = 100_000;
    /// Most samples `quota.window.num` may ask for.
    pub const QUOTA_WINDOW_NUM_MAX: u32 = 1_000;
    /// Default memory budget (`queued.max.request.bytes`): this fraction of the machine's
    /// memory (or of the cgroup's limit, if lower).
    pub const MEMORY_BUDGET_DIVISOR: u64 = 4;
    /// Smallest memory budget accepted, and the default when the machine's memory is unknown
    /// or tiny.
    pub const MEMORY_BUDGET_BYTES_MIN: usize = 16 << 20;
    /// Kafka's `connections.max.idle.ms` default (10 minutes).
    pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
    /// Default deadline for a request frame to arrive whole, and for a response to be taken.
    pub const FRAME_TIMEOUT_MS_DEFAULT: u64 = 60_000;
    /// Kafka's `max.connections.per.ip` default (`Int.MaxValue`: no limit).
    pub const CONNECTIONS_PER_IP_DEFAULT: usize = i32::MAX as usize;
    /// Admin HTTP connections open at once, and per client address.
    pub const ADMIN_CONNECTIONS_DEFAULT: usize = 64;
    /// Admin HTTP connections per client address.
    pub const ADMIN_CONNECTIONS_PER_IP_DEFAULT: usize = 16;
    /// An admin connection that has not sent a whole request head for this long is closed.
    pub const ADMIN_IDLE_TIMEOUT_MS_DEFAULT: u64 = 10_000;

    const _: () = assert!(MEMORY_BUDGET_BYTES_MIN >= 8 << 20);

    const _: () = assert!(REQUEST_BYTES_DEFAULT <= REQUEST_BYTES_CEILING);
    const _: () = assert!(BATCH_BYTES_DEFAULT < REQUEST_BYTES_DEFAULT);
}

/// When appended data is forced to disk with fdatasync (Kafka's `flush.messages` / `flush.ms`).
///
/// Whatever the policy, a produce is acknowledged only after its data was written to the
/// segment file with O_DIRECT, so killing the process never loses acknowledged data. The
/// policy decides what survives a power loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fdatasync before every acknowledgement (group-committed). The default.
    EveryProduce,
    /// fdatasync once this many messages accumulated or this many milliseconds passed,
    /// whichever comes first (`None` disables that trigger).
    Periodic {
        /// `flush.messages`.
        messages: Option<u64>,
        /// `flush.ms`.
        interval_ms: Option<u64>,
    },
}

/// Parses Kafka's `max.connections.per.ip.overrides` form: `127.0.0.1:200,10.0.0.5:50` (IP
/// addresses; an IPv6 address as `[::1]:200` or `::1:200`); empty = none.
pub fn parse_ip_overrides(text: &str) -> Result<Vec<(IpAddr, usize)>, String> {
    let mut out: Vec<(IpAddr, usize)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let shape = || format!("expected ip:count, got {item:?}");
        let (ip, count) = item.rsplit_once(':').ok_or_else(shape)?;
        let ip: IpAddr = ip.trim_matches(['[', ']']).parse().map_err(|_| shape())?;
        let count: usize = count.trim().parse().map_err(|_| shape())?;
        if out.iter().any(|(seen, _)| *seen == ip) {
            return Err(format!("{ip} is listed twice"));
        }
        out.push((ip, count));
    }
    Ok(out)
}

/// Shortest cluster secret accepted (bytes); `security::peer_auth` checks the same.
pub const SECRET_BYTES_MIN: usize = 16;

/// One member of the controller quorum (`id@host:port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    /// The broker's node id.
    pub id: i32,
    /// Host of its controller listener.
    pub host: String,
    /// Port of its controller listener.
    pub port: u16,
}

/// Parses KRaft's `controller.quorum.voters` form: `1@host:9093,2@host:9094`; empty = none.
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, String> {
    let mut voters: Vec<Voter> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let shape = || format!("expected id@host:port, got {item:?}");
        let (id, address) = item.split_once('@').ok_or_else(shape)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
        let id: i32 = id.trim().parse().map_err(|_| shape())?;
        let port: u16 = port.parse().map_err(|_| shape())?;
        if id < 0 || host.is_empty() || port == 0 {
            return Err(shape());
        }
        if voters.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        voters.push(Voter { id, host: host.trim_matches(['[', ']']).to_owned(), port });
    }
    Ok(voters)
}

/// The whole configuration of one broker process.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// The Kafka listeners (Kafka's `listeners`, `advertised.listeners` and
    /// `listener.security.protocol.map`): every shard binds each (SO_REUSEPORT). Never empty.
    pub listeners: Vec<Listener>,
    /// Kafka's `inter.broker.listener.name`: the listener other brokers connect to (its
    /// advertised address is the one registered with the controller as this broker's).
    pub inter_broker_listener: String,
    /// TLS settings of the SSL and SASL_SSL listeners and of TLS connections to other brokers.
    pub ssl: SslConfig,
    /// Root of all partition logs and the cluster metadata file.
    pub data_dir: PathBuf,
    /// Number of shards (pinned executors); 0 means one per CPU the process may run on.
    pub shards: usize,
    /// CPUs to pin shards to; empty means the process's CPU affinity mask.
    pub cpus: Vec<usize>,
    /// This broker's node id, as advertised in Metadata.
    pub node_id: i32,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of an auto-created or default-sized topic.
    pub default_partitions: i32,
    /// Kafka's `socket.request.max.bytes`.
    pub max_request_bytes: usize,
    /// Kafka's `message.max.bytes`: default `max.message.bytes` of topics.
    pub max_message_bytes: usize,
    /// Client connections open at once on the whole broker (all shards); more are closed
    /// right after accept.
    pub max_connections: usize,
    /// Kafka's `max.connections.per.ip`: client connections per client address.
    pub max_connections_per_ip: usize,
    /// Kafka's `max.connections.per.ip.overrides`: per-address exceptions.
    pub max_connections_per_ip_overrides: Vec<(IpAddr, usize)>,
    /// Kafka's `queued.max.request.bytes`: the memory budget for requests being read or
    /// handled and responses not yet written, for the whole broker, split evenly per shard.
    /// `None`: a quarter of the machine's memory, resolved at start-up.
    pub queued_max_request_bytes: Option<usize>,
    /// Kafka's `connections.max.idle.ms`: a connection with nothing in flight that sent
    /// nothing for this long is closed.
    pub connections_max_idle_ms: u64,
    /// A request frame must arrive whole within this long of its first byte (of its body:
    /// of the memory budget admitting it), and a response must be written within this long
    /// of starting; otherwise the connection is closed. No Kafka equivalent.
    pub frame_timeout_ms: u64,
    /// Admin HTTP connections open at once.
    pub admin_max_connections: usize,
    /// Admin HTTP connections per client address.
    pub admin_max_connections_per_ip: usize,
    /// An admin connection idle (or still sending its request head) this long is closed.
    pub admin_idle_timeout_ms: u64,
    /// Kafka's `log.segment.bytes`.
    pub segment_bytes: u64,
    /// Kafka's `log.roll.ms`; `None` rolls by size only.
    pub segment_ms: Option<u64>,
    /// Largest preallocation extent of segment files (the extent adapts to each
    /// partition's write rate, from `segment_prealloc_min_bytes` up to this).
    pub segment_prealloc_bytes: u64,
    /// First and smallest preallocation extent of a partition's segment files.
    pub segment_prealloc_min_bytes: u64,
    /// Write zeros over extents preallocated ahead of the data, in the background, so an
    /// fdatasync after a write there syncs no unwritten-extent conversion.
    pub segment_prezero: bool,
    /// Reuse the file of a segment retention deleted as the partition's next segment (its
    /// blocks are written: no unwritten-extent conversion); see `LogConfig::recycle`.
    pub segment_recycle: bool,
    /// Disk space the kept files may hold, split evenly between the shards (see
    /// `storage::RecyclePool`).
    pub segment_recycle_max_bytes: u64,
    /// Under fdatasync per append, open active segments with O_DSYNC (see
    /// `LogConfig::write_dsync`).
    pub segment_write_dsync: bool,
    /// Redpanda's `storage_min_free_bytes`: free space kept on the data directory's
    /// filesystem (the smaller of this and `storage_min_free_percent` applies; 0: off).
    pub storage_min_free_bytes: u64,
    /// Free space kept, in percent of the filesystem (0: off).
    pub storage_min_free_percent: u8,
    /// Default flush policy of topics.
    pub flush: FlushPolicy,
    /// Under a periodic flush policy, also fdatasync a partition in the background once this
    /// many bytes of it are unsynced (0: never by size). Each sync then stays small: one
    /// sync of a second's data held this machine's disk ~70 ms, and every ack with it
    /// (perf/results/2026-12-07-flush-slices.md). Redpanda's
    /// `raft_replica_max_pending_flush_bytes` does the same.
    pub flush_bytes: u64,
    /// Recent data kept in memory per partition to serve fetches without disk reads.
    pub tail_cache_bytes: usize,
    /// The most recent data kept in memory over every partition of the broker, split evenly
    /// between the shards (each shard's least recently used partitions give theirs back
    /// first, see `storage::CachePool`).
    pub tail_cache_max_bytes: usize,
    /// Kafka's `log.message.timestamp.type` is `LogAppendTime`.
    pub log_append_time: bool,
    /// Kafka's `log.message.timestamp.before.max.ms`: how far in the past a CreateTime record's
    /// timestamp may be (default `message.timestamp.before.max.ms` of topics).
    pub message_timestamp_before_max_ms: i64,
    /// Kafka's `log.message.timestamp.after.max.ms`: how far in the future (Kafka 4.0's
    /// default: one hour).
    pub message_timestamp_after_max_ms: i64,
    /// Kafka's `compression.type`: `producer` keeps each batch's codec; `uncompressed`,
    /// `gzip`, `snappy`, `lz4` or `zstd` recompress batches that arrive in another codec.
    pub compression_type: String,
    /// Kafka's `compression.gzip.level`: 1-9, or -1 for zlib's default (6).
    pub compression_gzip_level: i32,
    /// Kafka's `compression.lz4.level`: 1-17.
    pub compression_lz4_level: i32,
    /// Kafka's `compression.zstd.level`: -131072 to 22.
    pub compression_zstd_level: i32,
    /// Kafka's `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is
    /// created (an existing topic keeps its count).
    pub offsets_topic_partitions: i32,
    /// Fault injection for tests (hidden flag `--fault-drop-produce-every N`): every Nth
    /// produce request is appended and made durable, then its connection is closed instead
    /// of answered, as a network fault would, so clients retry. `None` in production.
    pub fault_drop_produce_every: Option<u64>,
    /// Fault injection for tests (hidden flag `--fault-panic-on-client-id ID`): every request
    /// whose header carries this client id panics in its handler, as a bug would; the panic
    /// must be contained to that request's connection. `None` in production.
    pub fault_panic_on_client_id: Option<String>,
    /// Fault injection for tests (hidden flag `--fault-panic-on-group ID`): the first
    /// Heartbeat of this group panics inside its coordinator, as a bug in the group state
    /// machine would; the group must recover. `None` in production.
    pub fault_panic_on_group: Option<String>,
    /// The `strata serve` settings given by flag, environment or config file, by key (the
    /// flag's name with `_` for `-`): DescribeConfigs reports a broker setting they set as
    /// STATIC_BROKER_CONFIG even when the value equals the built-in default, as Kafka does
    /// for what `server.properties` sets.
    pub given_settings: BTreeSet<String>,
    /// Address of the admin HTTP listener (`/metrics`, `/health/*`, `/v1/status`); `None`
    /// disables it.
    pub admin_listen: Option<SocketAddr>,
    /// The admin listener's TLS and tokens.
    pub admin_security: listener::AdminSecurity,
    /// How long a graceful shutdown waits for in-flight requests before closing the logs.
    pub shutdown_timeout_ms: u64,
    /// Kafka's `log.retention.ms`: default `retention.ms` of topics; -1 keeps data forever.
    pub retention_ms: i64,
    /// Kafka's `log.retention.bytes`: default `retention.bytes` of topics; -1 is no cap.
    pub retention_bytes: i64,
    /// Kafka's `log.cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub cleanup_policy: String,
    /// Kafka's `log.cleaner.delete.retention.ms`: default `delete.retention.ms`.
    pub delete_retention_ms: u64,
    /// Kafka's `log.cleaner.min.compaction.lag.ms`: default `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: u64,
    /// How often each shard applies retention and compaction to its logs (Kafka's
    /// `log.retention.check.interval.ms`, which also paces the cleaner here).
    pub retention_check_ms: u64,
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// consumer group waits for more members to join.
    pub group_initial_rebalance_delay_ms: u64,
    /// Kafka's `group.min.session.timeout.ms`: the shortest session timeout a classic
    /// consumer group member may ask for in JoinGroup.
    pub group_min_session_timeout_ms: u64,
    /// Kafka's `group.max.session.timeout.ms`: the longest.
    pub group_max_session_timeout_ms: u64,
    /// Share groups (KIP-932): Kafka's `group.share.*` settings and `share.auto.offset.reset`.
    pub share: ShareConfig,
    /// Kafka's `group.consumer.session.timeout.ms`: a KIP-848 consumer group member silent
    /// for this long is fenced.
    pub group_consumer_session_timeout_ms: u64,
    /// Kafka's `group.consumer.heartbeat.interval.ms`: the interval members are told.
    pub group_consumer_heartbeat_interval_ms: u64,
    /// Kafka's `group.consumer.assignors`: comma-separated, the first is the default.
    pub group_consumer_assignors: String,
    /// Kafka's `group.consumer.max.size`: members per consumer group.
    pub group_consumer_max_size: u64,
    /// Kafka's `group.consumer.migration.policy`: which online conversions between classic
    /// and consumer groups happen (`bidirectional`, `upgrade`, `downgrade`, `disabled`).
    pub group_consumer_migration_policy: String,
    /// Kafka's `replica.lag.time.max.ms`: a follower that has not caught up with the leader's
    /// log end within this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// KRaft's `broker.session.timeout.ms`: a broker whose heartbeats stop for this long is
    /// fenced, and the partitions it led get new leaders from their ISR.
    pub broker_session_timeout_ms: u64,
    /// Kafka's `transactional.id.expiration.ms`: a transactional id with no transaction open
    /// (Empty, CompleteCommit or CompleteAbort) and no update for this long is forgotten.
    pub transactional_id_expiration_ms: u64,
    /// Kafka's `producer.id.expiration.ms`: an idempotent producer that appended nothing to a
    /// partition for this long is forgotten by that partition.
    pub producer_id_expiration_ms: u64,
    /// Kafka's `auto.leader.rebalance.enable`: hand leadership back to each partition's
    /// preferred replica once it is in sync again.
    pub auto_leader_rebalance: bool,
    /// Address of this broker's controller listener (Raft between controllers, and the
    /// metadata log the leader sends to observers); required with `controller_voters`.
    pub controller_listen: Option<SocketAddr>,
    /// The controller quorum; empty = a single broker with no peers, which keeps its
    /// metadata alone. A broker whose node id is not listed joins the cluster as an
    /// observer (a Raft learner, as KRaft's broker-only nodes): it gets the metadata log
    /// but does not vote.
    pub controller_voters: Vec<Voter>,
    /// Whether ACLs are enforced by the standard authorizer (Kafka's `authorizer.class.name`
    /// set to `StandardAuthorizer`); off by default, as in Kafka: everything is allowed.
    pub authorizer: bool,
    /// Kafka's `super.users`: principals (`User:admin`) allowed everything.
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`: a resource with no ACL at all is open.
    pub allow_everyone_if_no_acl_found: bool,
    /// Kafka's `quota.window.num`: samples a client quota's rate is measured over.
    pub quota_window_num: u32,
    /// Kafka's `quota.window.size.seconds`: length of one quota sample.
    pub quota_window_size_seconds: u64,
    // ---- controller authentication and liveness (issue 15 item 5, issue 19) ----
    /// The cluster's shared secret: every controller-port connection proves knowledge of it
    /// (HMAC challenge both ways). Required in a cluster unless `controller_insecure`.
    pub cluster_secret: Option<Secret>,
    /// A file holding the cluster secret (trailing newline ignored), instead of
    /// `cluster_secret`.
    pub cluster_secret_file: Option<PathBuf>,
    /// Development only: the controller port accepts peers without authentication.
    pub controller_insecure: bool,
    /// KRaft's `broker.heartbeat.interval.ms`: how often a broker heartbeats the controllers.
    pub broker_heartbeat_interval_ms: u64,
    /// After the controller connection a broker heartbeats on closes (its process died and
    /// the kernel reset its sockets, or it shut down), the broker is fenced unless it
    /// heartbeats again within this long. Silent failures (a hung host, a partition) are
    /// caught by `broker_session_timeout_ms` instead.
    pub broker_disconnect_timeout_ms: u64,
    /// Kafka's `unclean.leader.election.enable`, the default of topics that do not set it
    /// (the controller leader's value applies cluster-wide).
    pub unclean_leader_election: bool,
    /// Kafka's `broker.rack`: replicas of a partition are spread over racks, and Metadata
    /// and DescribeCluster report it.
    pub broker_rack: Option<String>,
    /// Kafka's `leader.replication.throttled.rate` (bytes/s per broker): what a leader sends
    /// to replicas being added by a reassignment; `None` is unlimited.
    pub leader_replication_throttled_rate: Option<u64>,
    /// Kafka's `follower.replication.throttled.rate` (bytes/s per broker): what a replica
    /// being added by a reassignment fetches; `None` is unlimited.
    pub follower_replication_throttled_rate: Option<u64>,
    /// Kafka's `replica.selector.class` set to its rack-aware selector (KIP-392): a leader
    /// sends a consumer that gives its `client.rack` to an in-sync replica of that rack
    /// (Fetch's `preferred_read_replica`). Off by default, as in Kafka.
    pub rack_aware_replica_selector: bool,
    /// Redpanda's `partition_autobalancing_mode` `continuous`: the controller leader moves
    /// replicas so that brokers hold as many as one another, give or take one (a broker
    /// added or recommissioned gets its share). Off by default.
    pub partition_autobalancing: bool,
    /// SASL settings of SASL listeners (see [`SaslSettings`]).
    pub sasl: SaslSettings,
}

/// SASL mechanisms the broker implements, by their SASL names (`security::sasl::Mechanism`;
/// a test there checks both lists agree: this module imports nothing).
pub const SASL_MECHANISMS: [&str; 4] = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"];

/// A secret setting: its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SASL settings, named after Kafka's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`: what clients of SASL listeners may use.
    pub enabled_mechanisms: Vec<String>,
    /// `connections.max.reauth.ms`: a SASL session lasts at most this long, then the client
    /// must re-authenticate (KIP-368) or be disconnected; 0 = no limit.
    pub connections_max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`: how long a failed login waits before
    /// its answer and the close (slows password guessing).
    pub connection_failed_authentication_delay_ms: u64,
    /// `sasl.server.max.receive.size`: the largest frame accepted on a SASL listener before
    /// the client has authenticated.
    pub server_max_receive_size: usize,
    /// `name:password` of a SCRAM user created at start-up if it does not exist yet.
    pub bootstrap_user: Option<Secret>,
    /// A file holding `bootstrap_user` (a Kubernetes Secret, docker secret or systemd
    /// credential), read at start-up by [`SaslSettings::read_bootstrap_user_file`].
    pub bootstrap_user_file: Option<PathBuf>,
    /// `sasl.oauthbearer.jwks.endpoint.url`: a JWKS file (path or `file://` URL) whose keys
    /// sign OAUTHBEARER tokens.
    pub oauthbearer_jwks_endpoint_url: Option<String>,
    /// `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often the JWKS file is read again.
    pub oauthbearer_jwks_endpoint_refresh_ms: u64,
    /// `sasl.oauthbearer.expected.issuer`: the `iss` tokens must carry, if set.
    pub oauthbearer_expected_issuer: Option<String>,
    /// `sasl.oauthbearer.expected.audience`: tokens must carry one of these in `aud`.
    pub oauthbearer_expected_audience: Vec<String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim naming the principal.
    pub oauthbearer_sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds`: allowed clock difference with the issuer.
    pub oauthbearer_clock_skew_seconds: u64,
    /// Accept unsigned OAUTHBEARER tokens (`alg: none`), as Kafka's default unsecured
    /// validator: development only.
    pub oauthbearer_unsecured: bool,
}

impl Default for SaslSettings {
    fn default() -> Self {
        SaslSettings {
            enabled_mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            connections_max_reauth_ms: 0,
            connection_failed_authentication_delay_ms: 100,
            server_max_receive_size: 512 * 1024,
            bootstrap_user: None,
            bootstrap_user_file: None,
            oauthbearer_jwks_endpoint_url: None,
            oauthbearer_jwks_endpoint_refresh_ms: 3_600_000,
            oauthbearer_expected_issuer: None,
            oauthbearer_expected_audience: Vec::new(),
            oauthbearer_sub_claim_name: "sub".into(),
            oauthbearer_clock_skew_seconds: 30,
            oauthbearer_unsecured: false,
        }
    }
}

impl SaslSettings {
    /// The `name` and `password` of the bootstrap user, if one is set.
    pub fn bootstrap_credentials(&self) -> Option<(&str, &str)> {
        self.bootstrap_user.as_ref()?.0.split_once(':')
    }

    /// Reads `bootstrap_user_file` (trailing newline ignored) into `bootstrap_user`. Called
    /// by the broker at start-up, not by `strata config check`, so the file need exist only
    /// where the broker runs.
    pub fn read_bootstrap_user_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.bootstrap_user_file else {
            return Ok(());
        };
        let key = "sasl-bootstrap-user-file";
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(key, format!("reading {}: {e}", path.display())))?;
        let user = text.trim_end_matches(['\n', '\r']).to_owned();
        if user.split_once(':').filter(|(n, p)| !n.is_empty() && !p.is_empty()).is_none() {
            return Err(bad(key, format!("{} must hold `name:password`", path.display())));
        }
        self.bootstrap_user = Some(Secret(user));
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_user.is_some() && self.bootstrap_user_file.is_some() {
            let reason = "give sasl-bootstrap-user or sasl-bootstrap-user-file, not both";
            return Err(bad("sasl-bootstrap-user", reason));
        }
        if self.enabled_mechanisms.is_empty() {
            return Err(bad("sasl-enabled-mechanisms", "must name at least one mechanism"));
        }
        if let Some(m) =
            self.enabled_mechanisms.iter().find(|m| !SASL_MECHANISMS.contains(&m.as_str()))
        {
            let known = SASL_MECHANISMS.join(", ");
            return Err(bad("sasl-enabled-mechanisms", format!("{m:?} is not one of {known}")));
        }
        if self.connection_failed_authentication_delay_ms
            > limits::FAILED_AUTHENTICATION_DELAY_MS_MAX
        {
            return Err(bad("connection-failed-authentication-delay-ms", "must be at most 60000"));
        }
        if self.server_max_receive_size < 1024 {
            return Err(bad("sasl-server-max-receive-size", "must be at least 1024"));
        }
        if let Some(user) = &self.bootstrap_user {
            let shape = user.0.split_once(':').filter(|(n, p)| !n.is_empty() && !p.is_empty());
            if shape.is_none() {
                return Err(bad("sasl-bootstrap-user", "must be `name:password`"));
            }
        }
        let oauth = self.enabled_mechanisms.iter().any(|m| m == "OAUTHBEARER");
        let jwks = self.oauthbearer_jwks_endpoint_url.is_some();
        if oauth && jwks == self.oauthbearer_unsecured {
            return Err(bad(
                "sasl-oauthbearer-jwks-endpoint-url",
                "OAUTHBEARER needs either a JWKS file or sasl-oauthbearer-unsecured (not both)",
            ));
        }
        if self.oauthbearer_sub_claim_name.is_empty() {
            return Err(bad("sasl-oauthbearer-sub-claim-name", "must not be empty"));
        }
        if self.oauthbearer_jwks_endpoint_refresh_ms < 1_000 {
            return Err(bad("sasl-oauthbearer-jwks-endpoint-refresh-ms", "must be at least 1000"));
        }
        Ok(())
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: vec![Listener::plaintext(SocketAddr::from(([127, 0, 0, 1], 9092)))],
            inter_broker_listener: listener::SecurityProtocol::Plaintext.name().to_owned(),
            ssl: SslConfig::default(),
            data_dir: PathBuf::from("./data"),
            shards: 0,
            cpus: Vec::new(),
            node_id: 0,
            auto_create_topics: true,
            default_partitions: 1,
            max_request_bytes: limits::REQUEST_BYTES_DEFAULT,
            max_message_bytes: limits::BATCH_BYTES_DEFAULT,
            max_connections: 10_000,
            max_connections_per_ip: limits::CONNECTIONS_PER_IP_DEFAULT,
            max_connections_per_ip_overrides: Vec::new(),
            queued_max_request_bytes: None,
            connections_max_idle_ms: limits::CONNECTIONS_MAX_IDLE_MS_DEFAULT,
            frame_timeout_ms: limits::FRAME_TIMEOUT_MS_DEFAULT,
            admin_max_connections: limits::ADMIN_CONNECTIONS_DEFAULT,
            admin_max_connections_per_ip: limits::ADMIN_CONNECTIONS_PER_IP_DEFAULT,
            admin_idle_timeout_ms: limits::ADMIN_IDLE_TIMEOUT_MS_DEFAULT,
            segment_bytes: 1 << 30,
            segment_ms: None,
            segment_prealloc_bytes: 64 << 20,
            segment_prealloc_min_bytes: 64 << 10,
            segment_prezero: false,
            segment_recycle: true,
            segment_recycle_max_bytes: 4 << 30,
            segment_write_dsync: true,
            storage_min_free_bytes: 1 << 30,
            storage_min_free_percent: 5,
            flush: FlushPolicy::EveryProduce,
            flush_bytes: 1 << 20,
            tail_cache_bytes: 8 << 20,
            tail_cache_max_bytes: 1 << 30,
            log_append_time: false,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            compression_type: "producer".into(),
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            offsets_topic_partitions: 16,
            fault_drop_produce_every: None,
            fault_panic_on_client_id: None,
            fault_panic_on_group: None,
            given_settings: BTreeSet::new(),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], limits::ADMIN_PORT_DEFAULT))),
            admin_security: listener::AdminSecurity::default(),
            shutdown_timeout_ms: 30_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: "delete".into(),
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            retention_check_ms: 300_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            share: ShareConfig::default(),
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_assignors: "uniform,range".into(),
            group_consumer_max_size: 10_000,
            group_consumer_migration_policy: "bidirectional".into(),
            replica_lag_time_max_ms: 10_000,
            broker_session_timeout_ms: 3_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            // storage::PRODUCER_EXPIRATION_MS (config imports nothing; a test there checks).
            producer_id_expiration_ms: 24 * 3600 * 1000,
            auto_leader_rebalance: true,
            controller_listen: None,
            controller_voters: Vec::new(),
            authorizer: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            cluster_secret: None,
            cluster_secret_file: None,
            controller_insecure: false,
            broker_heartbeat_interval_ms: 250,
            broker_disconnect_timeout_ms: 750,
            unclean_leader_election: false,
            broker_rack: None,
            leader_replication_throttled_rate: None,
            follower_replication_throttled_rate: None,
            rack_aware_replica_selector: false,
            partition_autobalancing: false,
            sasl: SaslSettings::default(),
        }
    }
}

/// What [`BrokerConfig::inter_broker`] answers for a config with no listener (which
/// [`BrokerConfig::validate`] refuses).
static FALLBACK_LISTENER: std::sync::LazyLock<Listener> =
    std::sync::LazyLock::new(|| Listener::plaintext(SocketAddr::from(([127, 0, 0, 1], 9092))));

/// A configuration value that cannot work, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for `{key}`: {reason}")]
pub struct ConfigError {
    /// The setting, as spelled on the command line.
    pub key: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

/// Kafka's `compression.type` values (broker and topic).
pub const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

fn bad(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key, reason: reason.into() }
}

impl BrokerConfig {
    /// Checks every value and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.default_partitions < 1 || self.default_partitions > limits::PARTITIONS_PER_TOPIC_MAX
        {
            return Err(bad("default-partitions", "must be between 1 and 100000"));
        }
        if self.max_request_bytes < 1024 || self.max_request_bytes > limits::REQUEST_BYTES_CEILING {
            return Err(bad("max-request-bytes", "must be between 1 KiB and 1 GiB"));
        }
        if self.max_message_bytes < 1024 || self.max_message_bytes > self.max_request_bytes {
            return Err(bad("max-message-bytes", "must be ≥ 1 KiB and ≤ max-request-bytes"));
        }
        if self.segment_bytes < limits::SEGMENT_BYTES_MIN
            || self.segment_bytes > limits::SEGMENT_BYTES_MAX
        {
            return Err(bad("segment-bytes", "must be between 1 MiB and 2 GiB - 1"));
        }
        if self.segment_prealloc_bytes < 4096 || !self.segment_prealloc_bytes.is_multiple_of(4096) {
            return Err(bad("segment-prealloc-bytes", "must be a multiple of 4096"));
        }
        let min = self.segment_prealloc_min_bytes;
        if min < 4096 || !min.is_multiple_of(4096) || min > self.segment_prealloc_bytes {
            return Err(bad(
                "segment-prealloc-min-bytes",
                "must be a multiple of 4096 and at most segment-prealloc-bytes",
            ));
        }
        if self.storage_min_free_percent > 100 {
            return Err(bad("storage-min-free-percent", "must be between 0 and 100"));
        }
        if !(1..=limits::OFFSETS_TOPIC_PARTITIONS_MAX).contains(&self.offsets_topic_partitions) {
            return Err(bad("offsets-topic-partitions", "must be between 1 and 1000"));
        }
        if self.max_connections == 0 {
            return Err(bad("max-connections", "must be at least 1"));
        }
        self.validate_connections()?;
        if self.shutdown_timeout_ms > limits::SHUTDOWN_TIMEOUT_MS_MAX {
            return Err(bad("shutdown-timeout-ms", "must be at most 600000 (10 minutes)"));
        }
        if self.listeners.iter().any(|l| Some(l.bind) == self.admin_listen) {
            return Err(bad("admin-listen", "must differ from every listener's address"));
        }
        if self.retention_ms < -1 {
            return Err(bad("retention-ms", "must be -1 (forever) or at least 0"));
        }
        if self.retention_bytes < -1 {
            return Err(bad("retention-bytes", "must be -1 (no limit) or at least 0"));
        }
        let policies = ["delete", "compact", "compact,delete", "delete,compact"];
        if !policies.contains(&self.cleanup_policy.as_str()) {
            return Err(bad("cleanup-policy", "must be delete, compact or compact,delete"));
        }
        self.validate_records()?;
        if self.retention_check_ms == 0 {
            return Err(bad("retention-check-ms", "must be at least 1"));
        }
        if self.group_initial_rebalance_delay_ms > limits::INITIAL_REBALANCE_DELAY_MS_MAX {
            return Err(bad(
                "group-initial-rebalance-delay-ms",
                "must be at most 300000 (5 minutes)",
            ));
        }
        self.share.validate()?;
        self.validate_consumer_groups()?;
        if self.replica_lag_time_max_ms == 0 {
            return Err(bad("replica-lag-time-max-ms", "must be at least 1"));
        }
        if self.broker_session_timeout_ms < 1_000 {
            return Err(bad("broker-session-timeout-ms", "must be at least 1000"));
        }
        if self.broker_heartbeat_interval_ms < 10
            || self.broker_heartbeat_interval_ms * 2 > self.broker_session_timeout_ms
        {
            let reason = "must be at least 10 and at most half of broker-session-timeout-ms";
            return Err(bad("broker-heartbeat-interval-ms", reason));
        }
        if self.broker_disconnect_timeout_ms < 2 * self.broker_heartbeat_interval_ms {
            let reason = "must be at least twice broker-heartbeat-interval-ms";
            return Err(bad("broker-disconnect-timeout-ms", reason));
        }
        if self.transactional_id_expiration_ms == 0 {
            return Err(bad("transactional-id-expiration-ms", "must be at least 1"));
        }
        if self.producer_id_expiration_ms == 0 {
            return Err(bad("producer-id-expiration-ms", "must be at least 1"));
        }
        self.validate_access()?;
        self.validate_listeners()?;
        self.sasl.validate()?;
        self.validate_cluster()
    }

    /// The `group.consumer.*` settings of KIP-848 consumer groups, and the session timeouts
    /// of classic ones.
    fn validate_consumer_groups(&self) -> Result<(), ConfigError> {
        let (min, max) = (self.group_min_session_timeout_ms, self.group_max_session_timeout_ms);
        if min == 0 || min > max || max > i32::MAX as u64 {
            return Err(bad(
                "group-min-session-timeout-ms",
                "must be at least 1 and at most group-max-session-timeout-ms (at most 2^31-1)",
            ));
        }
        let session = self.group_consumer_session_timeout_ms;
        if !(1_000..=limits::CONSUMER_SESSION_TIMEOUT_MS_MAX).contains(&session) {
            return Err(bad(
                "group-consumer-session-timeout-ms",
                "must be from 1000 to 1800000 (30 minutes)",
            ));
        }
        let interval = self.group_consumer_heartbeat_interval_ms;
        if interval < 100 || interval >= session {
            return Err(bad(
                "group-consumer-heartbeat-interval-ms",
                "must be at least 100 and below group-consumer-session-timeout-ms",
            ));
        }
        let known = ["uniform", "range"];
        let names: Vec<&str> = self.group_consumer_assignors.split(',').map(str::trim).collect();
        if names.iter().any(|n| !known.contains(n)) {
            return Err(bad("group-consumer-assignors", "must name uniform and/or range"));
        }
        if self.group_consumer_max_size == 0 {
            return Err(bad("group-consumer-max-size", "must be at least 1"));
        }
        let policies = ["bidirectional", "upgrade", "downgrade", "disabled"];
        if !policies.contains(&self.group_consumer_migration_policy.to_lowercase().as_str()) {
            return Err(bad(
                "group-consumer-migration-policy",
                "must be bidirectional, upgrade, downgrade or disabled",
            ));
        }
        Ok(())
    }

    /// The record settings: timestamps window and compression.
    fn validate_records(&self) -> Result<(), ConfigError> {
        if self.message_timestamp_before_max_ms < 0 {
            return Err(bad("message-timestamp-before-max-ms", "must be at least 0"));
        }
        if self.message_timestamp_after_max_ms < 0 {
            return Err(bad("message-timestamp-after-max-ms", "must be at least 0"));
        }
        if !COMPRESSION_TYPES.contains(&self.compression_type.as_str()) {
            return Err(bad("compression-type", format!("must be one of {COMPRESSION_TYPES:?}")));
        }
        let gzip = self.compression_gzip_level;
        if gzip != -1 && !(1..=9).contains(&gzip) {
            return Err(bad("compression-gzip-level", "must be 1 to 9, or -1 (the default)"));
        }
        if !(1..=17).contains(&self.compression_lz4_level) {
            return Err(bad("compression-lz4-level", "must be 1 to 17"));
        }
        if !(-131_072..=22).contains(&self.compression_zstd_level) {
            return Err(bad("compression-zstd-level", "must be -131072 to 22"));
        }
        Ok(())
    }

    /// Whether this broker is part of a multi-broker cluster (has controller voters).
    pub fn is_clustered(&self) -> bool {
        !self.controller_voters.is_empty()
    }

    /// Whether this broker votes in the controller quorum (else, in a cluster, it observes).
    pub fn is_voter(&self) -> bool {
        self.controller_voters.iter().any(|v| v.id == self.node_id)
    }

    /// For an observer (in a cluster, not a voter), where the controller leader reaches its
    /// controller listener: the inter-broker listener's advertised host with the controller
    /// listener's port. `None` for voters, whose address is their voter entry, and without a
    /// controller listener.
    pub fn observer_address(&self) -> Option<String> {
        if self.is_voter() {
            return None;
        }
        let port = self.controller_listen?.port();
        Some(listener::host_port(&self.inter_broker().advertised_host, port))
    }

    /// The inter-broker listener (validated to exist; the first listener otherwise).
    pub fn inter_broker(&self) -> &Listener {
        let named = self.listeners.iter().find(|l| l.name == self.inter_broker_listener);
        named.or(self.listeners.first()).unwrap_or(&FALLBACK_LISTENER)
    }

    /// The listener called `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    fn validate_listeners(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(bad("listeners", "at least one listener is needed"));
        }
        if let Some(l) = self.listeners.iter().find(|l| l.advertised_host.is_empty()) {
            return Err(bad("advertised-listeners", format!("{}: empty host", l.name)));
        }
        if self.listener(&self.inter_broker_listener).is_none() {
            let names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
            let reason = format!(
                "{:?} is not a listener (listeners: {})",
                self.inter_broker_listener,
                names.join(", ")
            );
            return Err(bad("inter-broker-listener-name", reason));
        }
        if self.is_clustered() && self.inter_broker().protocol.uses_sasl() {
            // Brokers do not log in to each other with SASL (yet): they use TLS client
            // certificates, so a SASL inter-broker listener would refuse every replica fetch.
            let reason = "brokers authenticate to each other with TLS client certificates, not \
                          SASL: name an SSL or PLAINTEXT listener";
            return Err(bad("inter-broker-listener-name", reason));
        }
        let tls = self.listeners.iter().any(|l| l.protocol.uses_tls());
        if tls && self.ssl.keystore_location.is_none() {
            return Err(bad("ssl-keystore-location", "an SSL or SASL_SSL listener needs one"));
        }
        let asks_certificates = self.ssl.client_auth != listener::ClientAuth::None;
        if tls && asks_certificates && self.ssl.truststore_location.is_none() {
            return Err(bad("ssl-truststore-location", "ssl-client-auth needs a CA to check with"));
        }
        if self.inter_broker().protocol.uses_tls() && self.ssl.truststore_location.is_none() {
            let reason = "the inter-broker listener uses TLS: other brokers' certificates are \
                          checked against it";
            return Err(bad("ssl-truststore-location", reason));
        }
        let known = ["TLSv1.2", "TLSv1.3"];
        if self.ssl.enabled_protocols.is_empty()
            || self.ssl.enabled_protocols.iter().any(|p| !known.contains(&p.as_str()))
        {
            return Err(bad("ssl-enabled-protocols", "must be TLSv1.2, TLSv1.3 or both"));
        }
        Ok(())
    }

    fn validate_access(&self) -> Result<(), ConfigError> {
        let principal = |p: &String| {
            p.split_once(':').is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())
        };
        if let Some(p) = self.super_users.iter().find(|p| !principal(p)) {
            return Err(bad("super-users", format!("{p:?} is not a principal (Type:name)")));
        }
        if !(1..=limits::QUOTA_WINDOW_NUM_MAX).contains(&self.quota_window_num) {
            return Err(bad("quota-window-num", "must be between 1 and 1000"));
        }
        if !(1..=3600).contains(&self.quota_window_size_seconds) {
            return Err(bad("quota-window-size-seconds", "must be between 1 and 3600"));
        }
        Ok(())
    }

    fn validate_connections(&self) -> Result<(), ConfigError> {
        if self.queued_max_request_bytes.is_some_and(|b| b < limits::MEMORY_BUDGET_BYTES_MIN) {
            return Err(bad("queued-max-request-bytes", "must be at least 16 MiB"));
        }
        if self.connections_max_idle_ms == 0 {
            return Err(bad("connections-max-idle-ms", "must be at least 1"));
        }
        if self.frame_timeout_ms == 0 {
            return Err(bad("frame-timeout-ms", "must be at least 1"));
        }
        if self.admin_max_connections == 0 || self.admin_max_connections_per_ip == 0 {
            let key = if self.admin_max_connections == 0 {
                "admin-max-connections"
            } else {
                "admin-max-connections-per-ip"
            };
            return Err(bad(key, "must be at least 1"));
        }
        if self.admin_idle_timeout_ms == 0 {
            return Err(bad("admin-idle-timeout-ms", "must be at least 1"));
        }
        if let Err((key, reason)) = self.admin_security.validate(&self.ssl) {
            return Err(bad(key, reason));
        }
        Ok(())
    }

    /// The whole broker's memory budget: `queued_max_request_bytes`, or a quarter of
    /// `machine_bytes` (the machine's memory, `None` if unknown).
    pub fn memory_budget_bytes(&self, machine_bytes: Option<u64>) -> usize {
        if let Some(bytes) = self.queued_max_request_bytes {
            return bytes;
        }
        let quarter = machine_bytes.map_or(0, |m| m / limits::MEMORY_BUDGET_DIVISOR);
        usize::try_from(quarter).unwrap_or(usize::MAX).max(limits::MEMORY_BUDGET_BYTES_MIN)
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let Some(listen) = self.controller_listen else {
            if self.is_clustered() {
                return Err(bad("controller-listen", "is required with controller-voters"));
            }
            return Ok(());
        };
        if !self.is_clustered() {
            return Err(bad("controller-listen", "needs controller-voters"));
        }
        if self.listeners.iter().any(|l| l.bind == listen) || Some(listen) == self.admin_listen {
            return Err(bad(
                "controller-listen",
                "must differ from the listeners and admin-listen",
            ));
        }
        let secret = self.cluster_secret.is_some() || self.cluster_secret_file.is_some();
        if self.cluster_secret.is_some() && self.cluster_secret_file.is_some() {
            return Err(bad(
                "cluster-secret",
                "give cluster-secret or cluster-secret-file, not both",
            ));
        }
        if !secret && !self.controller_insecure {
            return Err(bad(
                "cluster-secret",
                "a cluster needs a shared secret for its controller port: set cluster-secret \
                 or cluster-secret-file on every broker (or controller-insecure=true, for \
                 development only)",
            ));
        }
        if let Some(Secret(text)) = &self.cluster_secret {
            if text.len() < SECRET_BYTES_MIN {
                return Err(bad("cluster-secret", "must be at least 16 bytes"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_overrides_parse_as_kafka_writes_them() {
        let parsed = parse_ip_overrides("127.0.0.1:200, 10.0.0.5:50,[::1]:3").unwrap();
        let want: Vec<(IpAddr, usize)> = vec![
            ([127, 0, 0, 1].into(), 200),
            ([10, 0, 0, 5].into(), 50),
            ("::1".parse().unwrap(), 3),
        ];
        assert_eq!(parsed, want);
        assert_eq!(parse_ip_overrides("").unwrap(), vec![]);
        assert!(parse_ip_overrides("127.0.0.1").is_err());
        assert!(parse_ip_overrides("host:x").is_err());
        assert!(parse_ip_overrides("1.2.3.4:1,1.2.3.4:2").unwrap_err().contains("twice"));
    }

    #[test]
    fn the_migration_policy_is_one_of_kafkas_four() {
        for policy in ["bidirectional", "upgrade", "downgrade", "disabled", "Disabled"] {
            let c = BrokerConfig {
                group_consumer_migration_policy: policy.into(),
                ..BrokerConfig::default()
            };
            assert!(c.validate().is_ok(), "{policy}");
        }
        let c = BrokerConfig {
            group_consumer_migration_policy: "sideways".into(),
            ..BrokerConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_memory_budget_defaults_to_a_quarter_of_the_machine() {
        let config = BrokerConfig::default();
        assert_eq!(config.memory_budget_bytes(Some(8 << 30)), 2 << 30);
        assert_eq!(config.memory_budget_bytes(None), limits::MEMORY_BUDGET_BYTES_MIN);
        assert_eq!(config.memory_budget_bytes(Some(1 << 20)), limits::MEMORY_BUDGET_BYTES_MIN);
        let set = BrokerConfig { queued_max_request_bytes: Some(64 << 20), ..config };
        assert_eq!(set.memory_budget_bytes(Some(8 << 30)), 64 << 20);
        assert!(set.validate().is_ok());
        let tiny = BrokerConfig { queued_max_request_bytes: Some(1 << 20), ..set };
        assert!(tiny.validate().is_err());
    }
}

/// Share groups (KIP-932): Kafka's broker defaults of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareConfig {
    /// `group.share.session.timeout.ms`: a member silent this long leaves its share group.
    pub session_timeout_ms: u64,
    /// `group.share.heartbeat.interval.ms`: how often members heartbeat.
    pub heartbeat_interval_ms: u64,
    /// `group.share.record.lock.duration.ms`: how long an acquired record stays locked.
    pub record_lock_duration_ms: u64,
    /// `group.share.delivery.count.limit`: deliveries before a record is archived.
    pub delivery_count_limit: u16,
    /// `group.share.partition.max.record.locks`: records acquired at once per share-partition.
    pub partition_max_record_locks: u32,
    /// `share.auto.offset.reset`: where a new share-partition starts, `latest` or `earliest`.
    pub auto_offset_reset_earliest: bool,
}

impl Default for ShareConfig {
    fn default() -> ShareConfig {
        ShareConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            record_lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            partition_max_record_locks: 2_000,
            auto_offset_reset_earliest: false,
        }
    }
}

impl ShareConfig {
    /// Kafka's bounds (`group.share.min/max.*`), widened below for tests' short timeouts.
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=limits::SHARE_TIMEOUT_MS_MAX).contains(&self.session_timeout_ms) {
            return Err(bad("group-share-session-timeout-ms", "must be 1..=3600000"));
        }
        if !(1..=limits::SHARE_TIMEOUT_MS_MAX).contains(&self.heartbeat_interval_ms) {
            return Err(bad("group-share-heartbeat-interval-ms", "must be 1..=3600000"));
        }
        if !(1..=limits::SHARE_TIMEOUT_MS_MAX).contains(&self.record_lock_duration_ms) {
            return Err(bad("group-share-record-lock-duration-ms", "must be 1..=3600000"));
        }
        if !(2..=10).contains(&self.delivery_count_limit) {
            return Err(bad("group-share-delivery-count-limit", "must be 2..=10 (Kafka's bounds)"));
        }
        let locks = limits::SHARE_RECORD_LOCKS_MAX;
        if !(100..=locks).contains(&self.partition_max_record_locks) {
            return Err(bad("group-share-partition-max-record-locks", "must be 100..=10000"));
        }
        Ok(())
    }
}

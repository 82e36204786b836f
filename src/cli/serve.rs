//! `strata serve`: settings from flags, environment and a TOML file → [`BrokerConfig`].
//!
//! Precedence, per setting: command-line flag > `STRATA_*` environment variable > `--config`
//! file > built-in default. One struct, [`Settings`], is both the clap argument set and the
//! file format, so a setting cannot exist in one place and not the other. Every field is an
//! `Option`: `None` means "not given here", and the next source decides.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory};
use serde::{Deserialize, Serialize};
use strata::config::listener::{build_listeners, AdminSecurity, ClientAuth};
use strata::config::{
    parse_ip_overrides, parse_voters, BrokerConfig, ConfigError, FlushPolicy, Listener,
    SaslSettings, Secret, SecurityProtocol, SslConfig, Voter,
};
use strata::runtime::{PoolOptions, IO_WORKERS_DEFAULT};

/// `strata serve` flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML file with settings (keys as the flags, with `_` for `-`); flags and STRATA_*
    /// variables override it. `strata config print-defaults` prints every key.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    /// Testing only: close the connection instead of answering every Nth produce request
    /// (after its data is durable), so that clients retry.
    #[arg(long, hide = true)]
    fault_drop_produce_every: Option<u64>,
    /// Testing only: every request from this client id panics in its handler (the panic is
    /// contained: that connection closes, the broker keeps serving).
    #[arg(long, hide = true)]
    fault_panic_on_client_id: Option<String>,
    /// Testing only: the first Heartbeat of this group panics inside its coordinator (the
    /// group is reset and its members rejoin).
    #[arg(long, hide = true)]
    fault_panic_on_group: Option<String>,
}

/// Every broker setting. The defaults are those of [`BrokerConfig::default`].
#[derive(Args, Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Kafka listeners, `NAME://host:port,...` (Kafka's listeners); every shard accepts on
    /// each (SO_REUSEPORT). A listener named like a security protocol speaks it; others need
    /// listener-security-protocol-map. Not with the single-listener shorthand (listen,
    /// advertised-host, advertised-port, advertised-listener). [default:
    /// PLAINTEXT://127.0.0.1:9092]
    #[arg(long, env = "STRATA_LISTENERS")]
    pub listeners: Option<String>,
    /// What clients are told to connect to, per listener, `NAME://host:port,...` (Kafka's
    /// advertised.listeners); a listener not named here advertises its bind address.
    /// [default: as listeners]
    #[arg(long, env = "STRATA_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Security protocol of each listener, `NAME:PROTOCOL,...` with PLAINTEXT, SSL,
    /// SASL_PLAINTEXT or SASL_SSL (Kafka's listener.security.protocol.map). [default:
    /// PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL]
    #[arg(long, env = "STRATA_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// The listener other brokers connect to for replication and transaction markers, whose
    /// protocol (TLS or not) they use (Kafka's inter.broker.listener.name). [default:
    /// PLAINTEXT if there is such a listener, else the first]
    #[arg(long, env = "STRATA_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// PEM file with this broker's certificate chain (leaf first) and, unless
    /// ssl-keystore-key-location is set, its private key (Kafka's ssl.keystore.location with
    /// ssl.keystore.type=PEM). Re-read when it changes. [default: unset]
    #[arg(long, env = "STRATA_SSL_KEYSTORE_LOCATION")]
    pub ssl_keystore_location: Option<PathBuf>,
    /// PEM file with the private key, when it is not in the keystore file. [default: unset]
    #[arg(long, env = "STRATA_SSL_KEYSTORE_KEY_LOCATION")]
    pub ssl_keystore_key_location: Option<PathBuf>,
    /// Keystore format; only PEM (Kafka's ssl.keystore.type). [default: PEM]
    #[arg(long, env = "STRATA_SSL_KEYSTORE_TYPE")]
    pub ssl_keystore_type: Option<String>,
    /// PEM file of the CA certificates client certificates (and other brokers'
    /// certificates) must chain to (Kafka's ssl.truststore.location). [default: unset]
    #[arg(long, env = "STRATA_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,
    /// Truststore format; only PEM (Kafka's ssl.truststore.type). [default: PEM]
    #[arg(long, env = "STRATA_SSL_TRUSTSTORE_TYPE")]
    pub ssl_truststore_type: Option<String>,
    /// Client certificates on TLS listeners: none, requested or required (Kafka's
    /// ssl.client.auth). [default: none]
    #[arg(long, env = "STRATA_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,
    /// How a client certificate's subject becomes the principal's name: DEFAULT (the whole
    /// RFC 2253 subject) and RULE:pattern/replacement/[LU] rules, comma-separated, first
    /// match wins (Kafka's ssl.principal.mapping.rules). [default: DEFAULT]
    #[arg(long, env = "STRATA_SSL_PRINCIPAL_MAPPING_RULES")]
    pub ssl_principal_mapping_rules: Option<String>,
    /// TLS versions accepted (Kafka's ssl.enabled.protocols). [default: TLSv1.2,TLSv1.3]
    #[arg(long, env = "STRATA_SSL_ENABLED_PROTOCOLS")]
    pub ssl_enabled_protocols: Option<String>,
    /// `https` checks that another broker's certificate names the host connected to; empty
    /// only checks its chain (Kafka's ssl.endpoint.identification.algorithm).
    /// [default: https]
    #[arg(long, env = "STRATA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM")]
    pub ssl_endpoint_identification_algorithm: Option<String>,
    /// How often (ms) the certificate files are checked for changes, which new connections
    /// then use; SIGHUP re-reads them at once; 0 = on SIGHUP only. [default: 10000]
    #[arg(long, env = "STRATA_SSL_RELOAD_CHECK_MS")]
    pub ssl_reload_check_ms: Option<u64>,
    /// Single-listener shorthand: address of one PLAINTEXT listener (as listeners =
    /// PLAINTEXT://this). [default: unset]
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Host advertised to clients in Metadata [default: the listen address's IP].
    #[arg(long, env = "STRATA_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Port advertised to clients in Metadata [default: the listen port].
    #[arg(long, env = "STRATA_ADVERTISED_PORT")]
    pub advertised_port: Option<u16>,
    /// `host:port` clients should use for this broker (sets advertised-host and
    /// advertised-port, which win when also given). [default: the listen address]
    #[arg(long, env = "STRATA_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<HostPort>,
    /// Controller quorum voters, `id@host:port,...` (KRaft's controller.quorum.voters): every
    /// broker of a cluster, with its controller-listen address. Empty: a single broker with no
    /// peers, which needs no setup. [default: ""]
    #[arg(long, env = "STRATA_CONTROLLER_VOTERS")]
    pub controller_voters: Option<Voters>,
    /// Address this broker's controller (Raft) listener binds, like KRaft's 9093; required
    /// with controller-voters. [default: unset]
    #[arg(long, env = "STRATA_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// Directory holding partition logs and cluster metadata. [default: ./data]
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (pinned executors); 0 = one per CPU the process may use. [default: 0]
    #[arg(long, env = "STRATA_SHARDS")]
    pub shards: Option<usize>,
    /// CPUs to pin shards to, e.g. `0,1` [default: the process's CPU affinity].
    #[arg(long, env = "STRATA_CPUS", value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Busy-poll this many microseconds before an idle shard sleeps (lower wake-up latency,
    /// more CPU); 0 = sleep at once. [default: 0]
    #[arg(long, env = "STRATA_IDLE_SPIN_US")]
    pub idle_spin_us: Option<u64>,
    /// Most io_uring worker threads per shard for file work that blocks (every fdatasync,
    /// writes into newly allocated segment space); the kernel's own cap is 2 for a thread
    /// pinned to one CPU, which queues the syncs of all a shard's partitions behind two
    /// threads. 0 = the kernel's default. [default: 16]
    #[arg(long, env = "STRATA_IO_WORKERS")]
    pub io_workers: Option<u32>,
    /// Node id advertised in Metadata. [default: 0]
    #[arg(long, env = "STRATA_NODE_ID")]
    pub node_id: Option<i32>,
    /// Create topics on first use (Kafka's auto.create.topics.enable). [default: true]
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS", action = clap::ArgAction::Set)]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics and of CreateTopics with -1 (num.partitions).
    /// [default: 1]
    #[arg(long, env = "STRATA_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Largest request frame accepted (socket.request.max.bytes); larger ones close the
    /// connection. [default: 104857600]
    #[arg(long, env = "STRATA_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Largest record batch accepted (message.max.bytes); topics may override it with
    /// max.message.bytes. [default: 1048588]
    #[arg(long, env = "STRATA_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most client connections open at once on the whole broker (all shards together).
    /// [default: 10000]
    #[arg(long, env = "STRATA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most client connections from one IP address (max.connections.per.ip).
    /// [default: 2147483647]
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Per-address exceptions to max-connections-per-ip, `ip:count,...`, e.g.
    /// `127.0.0.1:200,10.0.0.5:50` (max.connections.per.ip.overrides). [default: ""]
    #[arg(long, env = "STRATA_MAX_CONNECTIONS_PER_IP_OVERRIDES")]
    pub max_connections_per_ip_overrides: Option<IpOverrides>,
    /// Memory budget, in bytes, for requests being read or handled and responses not yet
    /// written, for the whole broker, split evenly per shard (queued.max.request.bytes). When
    /// it is spent the broker stops reading from sockets. [default: a quarter of the
    /// machine's memory, or of the cgroup's memory limit if lower]
    #[arg(long, env = "STRATA_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// Close a connection with nothing in flight that sent nothing for this many ms
    /// (connections.max.idle.ms). [default: 600000]
    #[arg(long, env = "STRATA_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Close a connection whose request frame has not arrived whole this many ms after it
    /// began (or after the memory budget admitted its body), or whose response has not been
    /// taken this many ms after its write began. [default: 60000]
    #[arg(long, env = "STRATA_FRAME_TIMEOUT_MS")]
    pub frame_timeout_ms: Option<u64>,
    /// Admin HTTP connections open at once; past it, the oldest idle one is closed for a new
    /// one. [default: 64]
    #[arg(long, env = "STRATA_ADMIN_MAX_CONNECTIONS")]
    pub admin_max_connections: Option<usize>,
    /// Admin HTTP connections per client address; past it, that address's oldest idle one is
    /// closed for a new one. [default: 16]
    #[arg(long, env = "STRATA_ADMIN_MAX_CONNECTIONS_PER_IP")]
    pub admin_max_connections_per_ip: Option<usize>,
    /// Close an admin HTTP connection idle, or still sending its request head, for this many
    /// ms. [default: 10000]
    #[arg(long, env = "STRATA_ADMIN_IDLE_TIMEOUT_MS")]
    pub admin_idle_timeout_ms: Option<u64>,
    /// Roll to a new segment when the active one would exceed this (log.segment.bytes).
    /// [default: 1073741824]
    #[arg(long, env = "STRATA_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Roll a segment older than this many ms (log.roll.ms) [default: roll by size only].
    #[arg(long, env = "STRATA_SEGMENT_MS")]
    pub segment_ms: Option<u64>,
    /// Largest extent segment files grow by (fallocate): a partition's extent doubles with
    /// its write rate from segment-prealloc-min-bytes up to this. [default: 67108864]
    #[arg(long, env = "STRATA_SEGMENT_PREALLOC_BYTES")]
    pub segment_prealloc_bytes: Option<u64>,
    /// First and smallest preallocation extent: what a new or idle partition reserves once
    /// written (nothing before its first write). [default: 65536]
    #[arg(long, env = "STRATA_SEGMENT_PREALLOC_MIN_BYTES")]
    pub segment_prealloc_min_bytes: Option<u64>,
    /// Write zeros over the extents preallocated ahead of each partition's data, in the
    /// background: an fdatasync after a write into fallocated (unwritten) space also syncs
    /// the extent conversion, into zeroed space it does not. Costs a second write of the
    /// log's bytes, which competes with the acknowledged writes (on the reference machine
    /// ack p50 -8%, p99 +15%: perf/results/2026-12-05-prezero.md). [default: false]
    #[arg(long, env = "STRATA_SEGMENT_PREZERO", action = clap::ArgAction::Set)]
    pub segment_prezero: Option<bool>,
    /// Keep the file of the oldest segment retention deletes (one per partition) and reuse
    /// it as the partition's next segment: nothing is freed or discarded, and its blocks are
    /// already written, so writes into it convert no unwritten extents. The kept files are
    /// disk space beyond retention until the next roll, bounded by
    /// segment-recycle-max-bytes; one not reused within 10 minutes, and all of them when the
    /// disk falls below storage-min-free-bytes, are deleted. [default: true]
    #[arg(long, env = "STRATA_SEGMENT_RECYCLE", action = clap::ArgAction::Set)]
    pub segment_recycle: Option<bool>,
    /// While every append is fdatasync'ed (the default flush policy), open each partition's
    /// active segment with O_DSYNC: each write returns once its data is durable and no
    /// separate fdatasync follows (the same guarantee, one round trip through the shard less
    /// per write). A topic's flush policy changed later applies from its next segment.
    /// false: a write, then an fdatasync. [default: true]
    #[arg(long, env = "STRATA_SEGMENT_WRITE_DSYNC", action = clap::ArgAction::Set)]
    pub segment_write_dsync: Option<bool>,
    /// Disk space the files kept for reuse (segment-recycle) may hold, split evenly between
    /// the shards; a segment larger than a shard's free share is deleted, not kept.
    /// [default: 4294967296]
    #[arg(long, env = "STRATA_SEGMENT_RECYCLE_MAX_BYTES")]
    pub segment_recycle_max_bytes: Option<u64>,
    /// Free space kept on the data directory's filesystem (Redpanda's
    /// storage_min_free_bytes): below the smaller of this and storage-min-free-percent,
    /// produce is refused with KAFKA_STORAGE_ERROR and new partitions are not created;
    /// 0 turns it off. [default: 1073741824]
    #[arg(long, env = "STRATA_STORAGE_MIN_FREE_BYTES")]
    pub storage_min_free_bytes: Option<u64>,
    /// Free space kept, as a percentage of the filesystem (see storage-min-free-bytes; the
    /// smaller of the two applies); 0 turns it off. [default: 5]
    #[arg(long, env = "STRATA_STORAGE_MIN_FREE_PERCENT")]
    pub storage_min_free_percent: Option<u8>,
    /// fdatasync after this many messages instead of before every acknowledgement
    /// (flush.messages). With neither this nor flush-ms, every produce is fdatasync'ed
    /// before it is acknowledged. [default: unset]
    #[arg(long, env = "STRATA_FLUSH_MESSAGES")]
    pub flush_messages: Option<u64>,
    /// fdatasync every this many ms instead of before every acknowledgement (flush.ms).
    /// [default: unset]
    #[arg(long, env = "STRATA_FLUSH_MS")]
    pub flush_ms: Option<u64>,
    /// Under flush-ms/flush-messages, also fdatasync a partition (in the background) once
    /// this many of its bytes are unsynced, so that no sync holds the disk long; 0 turns it
    /// off. [default: 1048576]
    #[arg(long, env = "STRATA_FLUSH_BYTES")]
    pub flush_bytes: Option<u64>,
    /// Recent data kept in memory per partition to serve fetches without disk reads.
    /// [default: 8388608]
    #[arg(long, env = "STRATA_TAIL_CACHE_BYTES")]
    pub tail_cache_bytes: Option<usize>,
    /// Recent data kept in memory over all partitions, split evenly between the shards; the
    /// least recently used partitions' data goes first. [default: 1073741824]
    #[arg(long, env = "STRATA_TAIL_CACHE_MAX_BYTES")]
    pub tail_cache_max_bytes: Option<usize>,
    /// Stamp batches with the broker's clock (log.message.timestamp.type=LogAppendTime).
    /// [default: false]
    #[arg(long, env = "STRATA_LOG_APPEND_TIME", action = clap::ArgAction::Set)]
    pub log_append_time: Option<bool>,
    /// Refuse CreateTime records stamped more than this many ms in the past
    /// (log.message.timestamp.before.max.ms). [default: 9223372036854775807]
    #[arg(long, env = "STRATA_MESSAGE_TIMESTAMP_BEFORE_MAX_MS")]
    pub message_timestamp_before_max_ms: Option<i64>,
    /// Refuse CreateTime records stamped more than this many ms in the future
    /// (log.message.timestamp.after.max.ms). [default: 3600000]
    #[arg(long, env = "STRATA_MESSAGE_TIMESTAMP_AFTER_MAX_MS")]
    pub message_timestamp_after_max_ms: Option<i64>,
    /// Default compression.type of topics: producer (keep the producer's codec), or
    /// uncompressed, gzip, snappy, lz4, zstd (recompress to it). [default: producer]
    #[arg(long, env = "STRATA_COMPRESSION_TYPE")]
    pub compression_type: Option<String>,
    /// Default compression.gzip.level: 1-9, or -1 for the codec's default. [default: -1]
    #[arg(long, env = "STRATA_COMPRESSION_GZIP_LEVEL", allow_negative_numbers = true)]
    pub compression_gzip_level: Option<i32>,
    /// Default compression.lz4.level: 1-17. [default: 9]
    #[arg(long, env = "STRATA_COMPRESSION_LZ4_LEVEL")]
    pub compression_lz4_level: Option<i32>,
    /// Default compression.zstd.level: -131072 to 22. [default: 3]
    #[arg(long, env = "STRATA_COMPRESSION_ZSTD_LEVEL", allow_negative_numbers = true)]
    pub compression_zstd_level: Option<i32>,
    /// Partitions of the internal `__consumer_offsets` topic when it is first created
    /// (offsets.topic.num.partitions; Kafka's default is 50). [default: 16]
    #[arg(long, env = "STRATA_OFFSETS_TOPIC_PARTITIONS")]
    pub offsets_topic_partitions: Option<i32>,
    /// Default retention.ms of topics (log.retention.ms); -1 keeps data forever.
    /// [default: 604800000]
    #[arg(long, env = "STRATA_RETENTION_MS", allow_negative_numbers = true)]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of topics, per partition (log.retention.bytes); -1 = no cap.
    /// [default: -1]
    #[arg(long, env = "STRATA_RETENTION_BYTES", allow_negative_numbers = true)]
    pub retention_bytes: Option<i64>,
    /// Default cleanup.policy of topics (log.cleanup.policy): delete, compact or
    /// compact,delete. [default: delete]
    #[arg(long, env = "STRATA_CLEANUP_POLICY")]
    pub cleanup_policy: Option<String>,
    /// Default delete.retention.ms: how long compaction keeps tombstones
    /// (log.cleaner.delete.retention.ms). [default: 86400000]
    #[arg(long, env = "STRATA_DELETE_RETENTION_MS")]
    pub delete_retention_ms: Option<u64>,
    /// Default min.compaction.lag.ms (log.cleaner.min.compaction.lag.ms). [default: 0]
    #[arg(long, env = "STRATA_MIN_COMPACTION_LAG_MS")]
    pub min_compaction_lag_ms: Option<u64>,
    /// How often each shard applies retention and compaction to its partitions
    /// (log.retention.check.interval.ms). [default: 300000]
    #[arg(long, env = "STRATA_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    /// Admin HTTP listener (/metrics, /health/live, /health/ready, /v1/status), or `off`.
    /// See admin-token and admin-ssl-enabled to secure it. [default: 127.0.0.1:9644]
    #[arg(long, env = "STRATA_ADMIN_LISTEN")]
    pub admin_listen: Option<AdminListen>,
    /// Serve the admin listener over HTTPS only (Redpanda's admin_api_tls.enabled), with
    /// admin-ssl-keystore-location's certificate, else ssl-keystore-location's; reloaded as
    /// the listeners' are. [default: false]
    #[arg(long, env = "STRATA_ADMIN_SSL_ENABLED", action = clap::ArgAction::Set)]
    pub admin_ssl_enabled: Option<bool>,
    /// PEM certificate chain (and key, unless admin-ssl-keystore-key-location) of the admin
    /// listener. [default: ssl-keystore-location]
    #[arg(long, env = "STRATA_ADMIN_SSL_KEYSTORE_LOCATION")]
    pub admin_ssl_keystore_location: Option<PathBuf>,
    /// PEM private key of admin-ssl-keystore-location, in its own file. [default: unset]
    #[arg(long, env = "STRATA_ADMIN_SSL_KEYSTORE_KEY_LOCATION")]
    pub admin_ssl_keystore_key_location: Option<PathBuf>,
    /// Bearer token (at least 16 bytes) every admin request but /health/* must carry
    /// (`Authorization: Bearer TOKEN`); unset with admin-token-file unset leaves the admin
    /// listener open. Prefer admin-token-file or STRATA_ADMIN_TOKEN to a flag.
    /// [default: unset]
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretArg>,
    /// File of admin tokens, one per line (# comments), re-read when it changes: rotate by
    /// adding the new token, then removing the old one. [default: unset]
    #[arg(long, env = "STRATA_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// /metrics answers without a token even when the admin listener requires one (for
    /// scrapers that cannot send it). [default: false]
    #[arg(long, env = "STRATA_ADMIN_METRICS_PUBLIC", action = clap::ArgAction::Set)]
    pub admin_metrics_public: Option<bool>,
    /// On SIGTERM/SIGINT, wait this many ms for in-flight requests to finish before closing
    /// the logs (connections still open then are cut). [default: 30000]
    #[arg(long, env = "STRATA_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// How long the first rebalance of an empty consumer group waits for more members
    /// (group.initial.rebalance.delay.ms); 0 completes it at once. [default: 3000]
    #[arg(long, env = "STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// The shortest session timeout a classic consumer group member may ask for; a JoinGroup
    /// below it gets INVALID_SESSION_TIMEOUT (group.min.session.timeout.ms). [default: 6000]
    #[arg(long, env = "STRATA_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,
    /// The longest session timeout a classic consumer group member may ask for
    /// (group.max.session.timeout.ms). [default: 1800000]
    #[arg(long, env = "STRATA_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<u64>,
    /// A share-group member silent this long leaves its group
    /// (group.share.session.timeout.ms). [default: 45000]
    #[arg(long, env = "STRATA_GROUP_SHARE_SESSION_TIMEOUT_MS")]
    pub group_share_session_timeout_ms: Option<u64>,
    /// How often share-group members heartbeat (group.share.heartbeat.interval.ms).
    /// [default: 5000]
    #[arg(long, env = "STRATA_GROUP_SHARE_HEARTBEAT_INTERVAL_MS")]
    pub group_share_heartbeat_interval_ms: Option<u64>,
    /// How long a record acquired by a share consumer stays locked to it
    /// (group.share.record.lock.duration.ms). [default: 30000]
    #[arg(long, env = "STRATA_GROUP_SHARE_RECORD_LOCK_DURATION_MS")]
    pub group_share_record_lock_duration_ms: Option<u64>,
    /// Deliveries of a record to share consumers before it is archived
    /// (group.share.delivery.count.limit, 2-10). [default: 5]
    #[arg(long, env = "STRATA_GROUP_SHARE_DELIVERY_COUNT_LIMIT")]
    pub group_share_delivery_count_limit: Option<u16>,
    /// Records of one share-partition acquired at once, at most
    /// (group.share.partition.max.record.locks, 100-10000). [default: 2000]
    #[arg(long, env = "STRATA_GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS")]
    pub group_share_partition_max_record_locks: Option<u32>,
    /// Where a share group starts reading a partition it never read: latest or earliest
    /// (share.auto.offset.reset, broker-wide here). [default: latest]
    #[arg(long, env = "STRATA_SHARE_AUTO_OFFSET_RESET")]
    pub share_auto_offset_reset: Option<String>,
    /// A KIP-848 consumer group member that sends no heartbeat for this long is fenced and
    /// its partitions reassigned (group.consumer.session.timeout.ms). [default: 45000]
    #[arg(long, env = "STRATA_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    pub group_consumer_session_timeout_ms: Option<u64>,
    /// How often KIP-848 consumer group members are told to heartbeat
    /// (group.consumer.heartbeat.interval.ms); below the session timeout. [default: 5000]
    #[arg(long, env = "STRATA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    pub group_consumer_heartbeat_interval_ms: Option<u64>,
    /// Server-side assignors of KIP-848 consumer groups, the first is the default
    /// (group.consumer.assignors): uniform, range. [default: uniform,range]
    #[arg(long, env = "STRATA_GROUP_CONSUMER_ASSIGNORS")]
    pub group_consumer_assignors: Option<String>,
    /// Most members one KIP-848 consumer group may have; one more gets
    /// GROUP_MAX_SIZE_REACHED (group.consumer.max.size). [default: 10000]
    #[arg(long, env = "STRATA_GROUP_CONSUMER_MAX_SIZE")]
    pub group_consumer_max_size: Option<u64>,
    /// Online conversion between classic and consumer groups
    /// (group.consumer.migration.policy): bidirectional, upgrade, downgrade, disabled.
    /// [default: bidirectional]
    #[arg(long, env = "STRATA_GROUP_CONSUMER_MIGRATION_POLICY")]
    pub group_consumer_migration_policy: Option<String>,
    /// A follower not caught up with its leader for this long leaves the ISR
    /// (replica.lag.time.max.ms). [default: 10000]
    #[arg(long, env = "STRATA_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// A broker silent for this long is fenced and its partitions get new leaders
    /// (broker.session.timeout.ms). [default: 3000]
    #[arg(long, env = "STRATA_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// A transactional id with no open transaction and no update for this long is forgotten
    /// (transactional.id.expiration.ms). [default: 604800000]
    #[arg(long, env = "STRATA_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: Option<u64>,
    /// A partition forgets an idempotent producer that appended nothing for this long
    /// (producer.id.expiration.ms). [default: 86400000]
    #[arg(long, env = "STRATA_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,
    /// Hand leadership back to preferred replicas once in sync (auto.leader.rebalance.enable).
    /// [default: true]
    #[arg(long, env = "STRATA_AUTO_LEADER_REBALANCE")]
    pub auto_leader_rebalance: Option<bool>,
    /// Authorizer enforcing ACLs: `none` (everything allowed, as Kafka without
    /// authorizer.class.name) or `standard` (Kafka's StandardAuthorizer semantics; Kafka's
    /// class names are accepted too). [default: none]
    #[arg(long, env = "STRATA_AUTHORIZER")]
    pub authorizer: Option<AuthorizerSetting>,
    /// Principals allowed everything, `;`-separated (super.users), e.g. `User:admin;User:ops`.
    /// [default: ""]
    #[arg(long, env = "STRATA_SUPER_USERS")]
    pub super_users: Option<SuperUsers>,
    /// Let everyone use a resource that has no ACL at all (allow.everyone.if.no.acl.found).
    /// [default: false]
    #[arg(long, env = "STRATA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", action = clap::ArgAction::Set)]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// Samples a client quota's rate is measured over (quota.window.num). [default: 11]
    #[arg(long, env = "STRATA_QUOTA_WINDOW_NUM")]
    pub quota_window_num: Option<u32>,
    /// Seconds per client quota sample (quota.window.size.seconds). [default: 1]
    #[arg(long, env = "STRATA_QUOTA_WINDOW_SIZE_SECONDS")]
    pub quota_window_size_seconds: Option<u64>,
    /// SASL mechanisms clients of SASL listeners may use (sasl.enabled.mechanisms):
    /// SCRAM-SHA-256, SCRAM-SHA-512, PLAIN (checked against the users' SCRAM credentials),
    /// OAUTHBEARER. [default: SCRAM-SHA-256,SCRAM-SHA-512]
    #[arg(long, env = "STRATA_SASL_ENABLED_MECHANISMS", value_delimiter = ',')]
    pub sasl_enabled_mechanisms: Option<Vec<String>>,
    /// A SASL session lasts at most this many ms; clients must re-authenticate before, or
    /// are disconnected (connections.max.reauth.ms, KIP-368); 0 = no limit. [default: 0]
    #[arg(long, env = "STRATA_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// A failed SASL login is answered, and its connection closed, after this many ms
    /// (connection.failed.authentication.delay.ms). [default: 100]
    #[arg(long, env = "STRATA_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS")]
    pub connection_failed_authentication_delay_ms: Option<u64>,
    /// Largest frame accepted on a SASL listener before the client authenticated
    /// (sasl.server.max.receive.size). [default: 524288]
    #[arg(long, env = "STRATA_SASL_SERVER_MAX_RECEIVE_SIZE")]
    pub sasl_server_max_receive_size: Option<usize>,
    /// `name:password` of a SCRAM user (SHA-256 and SHA-512) created at start-up when no user
    /// of that name exists: the first admin of a new cluster. [default: unset]
    #[arg(long, env = "STRATA_SASL_BOOTSTRAP_USER", hide_env_values = true)]
    pub sasl_bootstrap_user: Option<SecretArg>,
    /// File holding sasl-bootstrap-user's `name:password` (a Kubernetes Secret, docker
    /// secret or systemd credential); read at start-up. [default: unset]
    #[arg(long, env = "STRATA_SASL_BOOTSTRAP_USER_FILE")]
    pub sasl_bootstrap_user_file: Option<PathBuf>,
    /// JWKS file (path or file:// URL) whose keys sign OAUTHBEARER tokens
    /// (sasl.oauthbearer.jwks.endpoint.url). [default: unset]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL")]
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,
    /// Re-read the JWKS file this often, in ms (sasl.oauthbearer.jwks.endpoint.refresh.ms).
    /// [default: 3600000]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS")]
    pub sasl_oauthbearer_jwks_endpoint_refresh_ms: Option<u64>,
    /// The `iss` OAUTHBEARER tokens must carry (sasl.oauthbearer.expected.issuer).
    /// [default: unset]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_EXPECTED_ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// Tokens must carry one of these in `aud` (sasl.oauthbearer.expected.audience).
    /// [default: unset]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_EXPECTED_AUDIENCE", value_delimiter = ',')]
    pub sasl_oauthbearer_expected_audience: Option<Vec<String>>,
    /// The token claim naming the principal (sasl.oauthbearer.sub.claim.name). [default: sub]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_SUB_CLAIM_NAME")]
    pub sasl_oauthbearer_sub_claim_name: Option<String>,
    /// Allowed clock difference with the token issuer, in seconds
    /// (sasl.oauthbearer.clock.skew.seconds). [default: 30]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS")]
    pub sasl_oauthbearer_clock_skew_seconds: Option<u64>,
    /// Accept unsigned OAUTHBEARER tokens (alg none), as Kafka's unsecured validator:
    /// development only, anyone can mint one. [default: false]
    #[arg(long, env = "STRATA_SASL_OAUTHBEARER_UNSECURED", action = clap::ArgAction::Set)]
    pub sasl_oauthbearer_unsecured: Option<bool>,
    /// The cluster's shared secret (at least 16 bytes): every controller-port connection
    /// proves it knows it (HMAC challenge both ways). Required with controller-voters unless
    /// controller-insecure. Prefer cluster-secret-file or STRATA_CLUSTER_SECRET to a flag.
    /// [default: unset]
    #[arg(long, env = "STRATA_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<SecretArg>,
    /// File holding the cluster secret (a trailing newline is ignored). [default: unset]
    #[arg(long, env = "STRATA_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Development only: the controller port accepts any peer, unauthenticated.
    /// [default: false]
    #[arg(long, env = "STRATA_CONTROLLER_INSECURE", action = clap::ArgAction::Set)]
    pub controller_insecure: Option<bool>,
    /// How often a broker heartbeats the controllers (broker.heartbeat.interval.ms).
    /// [default: 250]
    #[arg(long, env = "STRATA_BROKER_HEARTBEAT_INTERVAL_MS")]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// A broker whose controller connection closed (process died, shutdown) is fenced
    /// unless it heartbeats again within this many ms. [default: 750]
    #[arg(long, env = "STRATA_BROKER_DISCONNECT_TIMEOUT_MS")]
    pub broker_disconnect_timeout_ms: Option<u64>,
    /// Default unclean.leader.election.enable of topics: elect an out-of-sync replica when no
    /// in-sync one is alive (availability over durability). The controller's value applies.
    /// [default: false]
    #[arg(long, env = "STRATA_UNCLEAN_LEADER_ELECTION", action = clap::ArgAction::Set)]
    pub unclean_leader_election: Option<bool>,
    /// This broker's rack (broker.rack): replicas of a partition go to different racks, and
    /// Metadata and DescribeCluster report it. [default: unset]
    #[arg(long, env = "STRATA_BROKER_RACK")]
    pub broker_rack: Option<String>,
    /// Bytes/s a leader sends to replicas being added by a reassignment
    /// (leader.replication.throttled.rate), so a move does not starve clients.
    /// [default: unlimited]
    #[arg(long, env = "STRATA_LEADER_REPLICATION_THROTTLED_RATE")]
    pub leader_replication_throttled_rate: Option<u64>,
    /// Bytes/s a replica being added by a reassignment fetches
    /// (follower.replication.throttled.rate). [default: unlimited]
    #[arg(long, env = "STRATA_FOLLOWER_REPLICATION_THROTTLED_RATE")]
    pub follower_replication_throttled_rate: Option<u64>,
    /// Kafka's replica.selector.class: `org.apache.kafka.common.replica.RackAwareReplicaSelector`
    /// sends a consumer that sets client.rack to an in-sync replica in its rack (KIP-392:
    /// fetch from the closest replica); empty is off. [default: off]
    #[arg(long, env = "STRATA_REPLICA_SELECTOR_CLASS")]
    pub replica_selector_class: Option<String>,
    /// Redpanda's partition_autobalancing_mode: `continuous` moves replicas so that every
    /// broker holds as many as the others, give or take one (a new or recommissioned broker
    /// gets its share); `off` never moves any. [default: off]
    #[arg(long, env = "STRATA_PARTITION_AUTOBALANCING_MODE")]
    pub partition_autobalancing_mode: Option<String>,
    /// Log line format: `text` or `json` (one JSON object per line). [default: text]
    #[arg(long, env = "STRATA_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter (e.g. `info`, `strata=debug`). The global --log / STRATA_LOG wins over it,
    /// and it wins over RUST_LOG. [default: RUST_LOG, else `info,openraft=error`]
    #[arg(long, env = "STRATA_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// A secret value (written as a plain string in flags, env and file); never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct SecretArg(pub String);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for SecretArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(s.to_owned()))
    }
}

impl From<String> for SecretArg {
    fn from(s: String) -> Self {
        SecretArg(s)
    }
}

impl From<SecretArg> for String {
    fn from(s: SecretArg) -> String {
        s.0
    }
}

/// The admin listener's address, or `off` (written so in flags, env and file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AdminListen(pub Option<SocketAddr>);

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" | "none" | "disabled" => Ok(AdminListen(None)),
            addr => addr
                .parse()
                .map(|a| AdminListen(Some(a)))
                .map_err(|e| format!("expected host:port or `off`, got {addr:?}: {e}")),
        }
    }
}

impl TryFrom<String> for AdminListen {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AdminListen> for String {
    fn from(a: AdminListen) -> String {
        a.0.map_or_else(|| "off".to_owned(), |a| a.to_string())
    }
}

/// `ip:count,...` per-address connection limits (written so in flags, env and file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpOverrides(pub Vec<(std::net::IpAddr, usize)>);

impl std::str::FromStr for IpOverrides {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_ip_overrides(s).map(IpOverrides)
    }
}

impl TryFrom<String> for IpOverrides {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IpOverrides> for String {
    fn from(o: IpOverrides) -> String {
        let items: Vec<String> =
            o.0.iter()
                .map(|(ip, n)| match ip {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]:{n}"),
                    std::net::IpAddr::V4(v4) => format!("{v4}:{n}"),
                })
                .collect();
        items.join(",")
    }
}

/// `host:port` (written so in flags, env and file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || format!("expected host:port, got {s:?}");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(shape)?;
        let port = port.parse().map_err(|_| shape())?;
        if host.is_empty() {
            return Err(shape());
        }
        Ok(HostPort { host: host.trim_matches(['[', ']']).to_owned(), port })
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<HostPort> for String {
    fn from(h: HostPort) -> String {
        format!("{}:{}", h.host, h.port)
    }
}

/// The controller voters, `id@host:port,...` (written so in flags, env and file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Voters(pub Vec<Voter>);

impl std::str::FromStr for Voters {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_voters(s).map(Voters)
    }
}

impl TryFrom<String> for Voters {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Voters> for String {
    fn from(v: Voters) -> String {
        let items: Vec<String> =
            v.0.iter().map(|v| format!("{}@{}:{}", v.id, v.host, v.port)).collect();
        items.join(",")
    }
}

/// The authorizer setting: `none` or `standard` (written so in flags, env and file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AuthorizerSetting(pub bool);

impl std::str::FromStr for AuthorizerSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "none" | "off" => Ok(AuthorizerSetting(false)),
            "standard"
            | "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            | "kafka.security.authorizer.AclAuthorizer" => Ok(AuthorizerSetting(true)),
            other => Err(format!("expected `none` or `standard`, got {other:?}")),
        }
    }
}

impl TryFrom<String> for AuthorizerSetting {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AuthorizerSetting> for String {
    fn from(a: AuthorizerSetting) -> String {
        if a.0 { "standard" } else { "none" }.to_owned()
    }
}

/// Super users, `;`-separated as in Kafka's super.users (written so in flags, env and file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SuperUsers(pub Vec<String>);

impl std::str::FromStr for SuperUsers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let users: Vec<String> =
            s.split(';').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
        match users
            .iter()
            .find(|u| u.split_once(':').is_none_or(|(k, n)| k.is_empty() || n.is_empty()))
        {
            Some(bad) => Err(format!("{bad:?} is not a principal (Type:name)")),
            None => Ok(SuperUsers(users)),
        }
    }
}

impl TryFrom<String> for SuperUsers {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SuperUsers> for String {
    fn from(u: SuperUsers) -> String {
        u.0.join(";")
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Keeps `self`'s value of each listed field, taking `fallback`'s where `self` has none.
macro_rules! fill_from {
    ($self:ident, $fallback:ident, $($field:ident),* $(,)?) => {
        Settings { $($field: $self.$field.or($fallback.$field),)* }
    };
}

/// Kafka's rack-aware `replica.selector.class`, by its full and its simple name.
const RACK_AWARE_SELECTORS: [&str; 2] =
    ["org.apache.kafka.common.replica.RackAwareReplicaSelector", "RackAwareReplicaSelector"];

/// Whether `replica_selector_class` names the rack-aware selector; unset or empty is off (the
/// leader serves every consumer, as Kafka's default); any other class is refused.
fn rack_aware_selector(class: Option<&str>) -> anyhow::Result<bool> {
    match class.map(str::trim) {
        None | Some("") => Ok(false),
        Some(class) if RACK_AWARE_SELECTORS.contains(&class) => Ok(true),
        Some(class) => anyhow::bail!(
            "replica-selector-class {class:?} is not supported; the one selector is {}",
            RACK_AWARE_SELECTORS[0]
        ),
    }
}

/// Whether `partition_autobalancing_mode` is `continuous` (`off` or unset: no).
fn autobalancing(mode: Option<&str>) -> anyhow::Result<bool> {
    match mode.map(str::trim) {
        None | Some("off") => Ok(false),
        Some("continuous") => Ok(true),
        Some(other) => anyhow::bail!(
            "partition-autobalancing-mode {other:?} is not one of `off`, `continuous`"
        ),
    }
}

impl Settings {
    /// Settings given here win; the others come from `fallback`.
    pub fn or(self, fallback: Settings) -> Settings {
        fill_from!(
            self,
            fallback,
            listeners,
            advertised_listeners,
            listener_security_protocol_map,
            inter_broker_listener_name,
            ssl_keystore_location,
            ssl_keystore_key_location,
            ssl_keystore_type,
            ssl_truststore_location,
            ssl_truststore_type,
            ssl_client_auth,
            ssl_principal_mapping_rules,
            ssl_enabled_protocols,
            ssl_endpoint_identification_algorithm,
            ssl_reload_check_ms,
            listen,
            advertised_host,
            advertised_port,
            advertised_listener,
            controller_voters,
            controller_listen,
            data_dir,
            shards,
            cpus,
            idle_spin_us,
            io_workers,
            node_id,
            auto_create_topics,
            default_partitions,
            max_request_bytes,
            max_message_bytes,
            max_connections,
            max_connections_per_ip,
            max_connections_per_ip_overrides,
            queued_max_request_bytes,
            connections_max_idle_ms,
            frame_timeout_ms,
            admin_max_connections,
            admin_max_connections_per_ip,
            admin_idle_timeout_ms,
            segment_bytes,
            segment_ms,
            segment_prealloc_bytes,
            segment_prealloc_min_bytes,
            segment_prezero,
            segment_recycle,
            segment_recycle_max_bytes,
            segment_write_dsync,
            storage_min_free_bytes,
            storage_min_free_percent,
            flush_messages,
            flush_ms,
            flush_bytes,
            tail_cache_bytes,
            tail_cache_max_bytes,
            log_append_time,
            message_timestamp_before_max_ms,
            message_timestamp_after_max_ms,
            compression_type,
            compression_gzip_level,
            compression_lz4_level,
            compression_zstd_level,
            offsets_topic_partitions,
            admin_listen,
            admin_ssl_enabled,
            admin_ssl_keystore_location,
            admin_ssl_keystore_key_location,
            admin_token,
            admin_token_file,
            admin_metrics_public,
            shutdown_timeout_ms,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_share_session_timeout_ms,
            group_share_heartbeat_interval_ms,
            group_share_record_lock_duration_ms,
            group_share_delivery_count_limit,
            group_share_partition_max_record_locks,
            share_auto_offset_reset,
            group_consumer_session_timeout_ms,
            group_consumer_heartbeat_interval_ms,
            group_consumer_assignors,
            group_consumer_max_size,
            group_consumer_migration_policy,
            replica_lag_time_max_ms,
            broker_session_timeout_ms,
            transactional_id_expiration_ms,
            producer_id_expiration_ms,
            auto_leader_rebalance,
            log_format,
            log_level,
            authorizer,
            super_users,
            allow_everyone_if_no_acl_found,
            quota_window_num,
            quota_window_size_seconds,
            retention_ms,
            retention_bytes,
            cleanup_policy,
            delete_retention_ms,
            min_compaction_lag_ms,
            retention_check_ms,
            sasl_enabled_mechanisms,
            connections_max_reauth_ms,
            connection_failed_authentication_delay_ms,
            sasl_server_max_receive_size,
            sasl_bootstrap_user,
            sasl_bootstrap_user_file,
            sasl_oauthbearer_jwks_endpoint_url,
            sasl_oauthbearer_jwks_endpoint_refresh_ms,
            sasl_oauthbearer_expected_issuer,
            sasl_oauthbearer_expected_audience,
            sasl_oauthbearer_sub_claim_name,
            sasl_oauthbearer_clock_skew_seconds,
            sasl_oauthbearer_unsecured,
            cluster_secret,
            cluster_secret_file,
            controller_insecure,
            broker_heartbeat_interval_ms,
            broker_disconnect_timeout_ms,
            unclean_leader_election,
            broker_rack,
            leader_replication_throttled_rate,
            follower_replication_throttled_rate,
            replica_selector_class,
            partition_autobalancing_mode,
        )
    }

    /// The built-in defaults, as settings.
    pub fn defaults() -> Settings {
        let d = BrokerConfig::default();
        let listeners: Vec<String> = d.listeners.iter().map(Listener::advertised).collect();
        Settings {
            listeners: Some(listeners.join(",")),
            advertised_listeners: None,
            listener_security_protocol_map: None,
            inter_broker_listener_name: None,
            ssl_keystore_location: None,
            ssl_keystore_key_location: None,
            ssl_keystore_type: Some("PEM".into()),
            ssl_truststore_location: None,
            ssl_truststore_type: Some("PEM".into()),
            ssl_client_auth: Some(d.ssl.client_auth.name().into()),
            ssl_principal_mapping_rules: Some(d.ssl.principal_mapping_rules.clone()),
            ssl_enabled_protocols: Some(d.ssl.enabled_protocols.join(",")),
            ssl_endpoint_identification_algorithm: Some("https".into()),
            ssl_reload_check_ms: Some(d.ssl.reload_check_ms),
            listen: None,
            advertised_host: None,
            advertised_port: None,
            advertised_listener: None,
            controller_voters: Some(Voters(d.controller_voters)),
            controller_listen: d.controller_listen,
            data_dir: Some(d.data_dir),
            shards: Some(d.shards),
            cpus: None,
            idle_spin_us: Some(0),
            io_workers: Some(IO_WORKERS_DEFAULT),
            node_id: Some(d.node_id),
            auto_create_topics: Some(d.auto_create_topics),
            default_partitions: Some(d.default_partitions),
            max_request_bytes: Some(d.max_request_bytes),
            max_message_bytes: Some(d.max_message_bytes),
            max_connections: Some(d.max_connections),
            max_connections_per_ip: Some(d.max_connections_per_ip),
            max_connections_per_ip_overrides: Some(IpOverrides(d.max_connections_per_ip_overrides)),
            queued_max_request_bytes: d.queued_max_request_bytes,
            connections_max_idle_ms: Some(d.connections_max_idle_ms),
            frame_timeout_ms: Some(d.frame_timeout_ms),
            admin_max_connections: Some(d.admin_max_connections),
            admin_max_connections_per_ip: Some(d.admin_max_connections_per_ip),
            admin_idle_timeout_ms: Some(d.admin_idle_timeout_ms),
            segment_bytes: Some(d.segment_bytes),
            segment_ms: d.segment_ms,
            segment_prealloc_bytes: Some(d.segment_prealloc_bytes),
            segment_prealloc_min_bytes: Some(d.segment_prealloc_min_bytes),
            segment_prezero: Some(d.segment_prezero),
            segment_recycle: Some(d.segment_recycle),
            segment_recycle_max_bytes: Some(d.segment_recycle_max_bytes),
            segment_write_dsync: Some(d.segment_write_dsync),
            storage_min_free_bytes: Some(d.storage_min_free_bytes),
            storage_min_free_percent: Some(d.storage_min_free_percent),
            flush_messages: None,
            flush_ms: None,
            flush_bytes: Some(d.flush_bytes),
            tail_cache_bytes: Some(d.tail_cache_bytes),
            tail_cache_max_bytes: Some(d.tail_cache_max_bytes),
            log_append_time: Some(d.log_append_time),
            message_timestamp_before_max_ms: Some(d.message_timestamp_before_max_ms),
            message_timestamp_after_max_ms: Some(d.message_timestamp_after_max_ms),
            compression_type: Some(d.compression_type),
            compression_gzip_level: Some(d.compression_gzip_level),
            compression_lz4_level: Some(d.compression_lz4_level),
            compression_zstd_level: Some(d.compression_zstd_level),
            offsets_topic_partitions: Some(d.offsets_topic_partitions),
            admin_listen: Some(AdminListen(d.admin_listen)),
            admin_ssl_enabled: Some(false),
            admin_ssl_keystore_location: None,
            admin_ssl_keystore_key_location: None,
            admin_token: None,
            admin_token_file: None,
            admin_metrics_public: Some(false),
            shutdown_timeout_ms: Some(d.shutdown_timeout_ms),
            group_initial_rebalance_delay_ms: Some(d.group_initial_rebalance_delay_ms),
            group_min_session_timeout_ms: Some(d.group_min_session_timeout_ms),
            group_max_session_timeout_ms: Some(d.group_max_session_timeout_ms),
            group_share_session_timeout_ms: Some(d.share.session_timeout_ms),
            group_share_heartbeat_interval_ms: Some(d.share.heartbeat_interval_ms),
            group_share_record_lock_duration_ms: Some(d.share.record_lock_duration_ms),
            group_share_delivery_count_limit: Some(d.share.delivery_count_limit),
            group_share_partition_max_record_locks: Some(d.share.partition_max_record_locks),
            share_auto_offset_reset: Some("latest".into()),
            group_consumer_session_timeout_ms: Some(d.group_consumer_session_timeout_ms),
            group_consumer_heartbeat_interval_ms: Some(d.group_consumer_heartbeat_interval_ms),
            group_consumer_assignors: Some(d.group_consumer_assignors.clone()),
            group_consumer_max_size: Some(d.group_consumer_max_size),
            group_consumer_migration_policy: Some(d.group_consumer_migration_policy.clone()),
            replica_lag_time_max_ms: Some(d.replica_lag_time_max_ms),
            broker_session_timeout_ms: Some(d.broker_session_timeout_ms),
            transactional_id_expiration_ms: Some(d.transactional_id_expiration_ms),
            producer_id_expiration_ms: Some(d.producer_id_expiration_ms),
            auto_leader_rebalance: Some(d.auto_leader_rebalance),
            log_format: Some(LogFormat::Text),
            log_level: None,
            authorizer: Some(AuthorizerSetting(d.authorizer)),
            super_users: Some(SuperUsers(d.super_users)),
            allow_everyone_if_no_acl_found: Some(d.allow_everyone_if_no_acl_found),
            quota_window_num: Some(d.quota_window_num),
            quota_window_size_seconds: Some(d.quota_window_size_seconds),
            retention_ms: Some(d.retention_ms),
            retention_bytes: Some(d.retention_bytes),
            cleanup_policy: Some(d.cleanup_policy),
            delete_retention_ms: Some(d.delete_retention_ms),
            min_compaction_lag_ms: Some(d.min_compaction_lag_ms),
            retention_check_ms: Some(d.retention_check_ms),
            sasl_enabled_mechanisms: Some(d.sasl.enabled_mechanisms),
            connections_max_reauth_ms: Some(d.sasl.connections_max_reauth_ms),
            connection_failed_authentication_delay_ms: Some(
                d.sasl.connection_failed_authentication_delay_ms,
            ),
            sasl_server_max_receive_size: Some(d.sasl.server_max_receive_size),
            sasl_bootstrap_user: None,
            sasl_bootstrap_user_file: None,
            sasl_oauthbearer_jwks_endpoint_url: None,
            sasl_oauthbearer_jwks_endpoint_refresh_ms: Some(
                d.sasl.oauthbearer_jwks_endpoint_refresh_ms,
            ),
            sasl_oauthbearer_expected_issuer: None,
            sasl_oauthbearer_expected_audience: None,
            sasl_oauthbearer_sub_claim_name: Some(d.sasl.oauthbearer_sub_claim_name),
            sasl_oauthbearer_clock_skew_seconds: Some(d.sasl.oauthbearer_clock_skew_seconds),
            sasl_oauthbearer_unsecured: Some(d.sasl.oauthbearer_unsecured),
            cluster_secret: None,
            cluster_secret_file: None,
            controller_insecure: Some(d.controller_insecure),
            broker_heartbeat_interval_ms: Some(d.broker_heartbeat_interval_ms),
            broker_disconnect_timeout_ms: Some(d.broker_disconnect_timeout_ms),
            unclean_leader_election: Some(d.unclean_leader_election),
            broker_rack: None,
            leader_replication_throttled_rate: None,
            follower_replication_throttled_rate: None,
            replica_selector_class: None,
            partition_autobalancing_mode: Some("off".into()),
        }
    }

    /// The keys (file names: the flags' with `_`) of the settings given here.
    pub fn keys(&self) -> BTreeSet<String> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => table.keys().cloned().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Reads a settings file; an unknown key or a bad value names the key.
    pub fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // The message alone may not name the key ("invalid type: string, expected usize"):
            // add the offending line, which does.
            let at = e.span().map_or(0, |span| span.start);
            let line_number = text.get(..at).map_or(0, |before| before.lines().count().max(1));
            let line = text.lines().nth(line_number.saturating_sub(1)).unwrap_or("").trim();
            let path = path.display();
            anyhow::anyhow!("config file {path}, line {line_number} `{line}`: {}", e.message())
        })
    }

    /// Refuses settings that give both the named listeners and the single-listener
    /// shorthand (before the defaults are merged in, which hold `listeners`).
    pub fn check_listener_forms(&self) -> anyhow::Result<()> {
        let named = [
            ("listeners", self.listeners.is_some()),
            ("advertised-listeners", self.advertised_listeners.is_some()),
            ("listener-security-protocol-map", self.listener_security_protocol_map.is_some()),
        ];
        let shorthand = [
            ("listen", self.listen.is_some()),
            ("advertised-host", self.advertised_host.is_some()),
            ("advertised-port", self.advertised_port.is_some()),
            ("advertised-listener", self.advertised_listener.is_some()),
        ];
        let given = |form: &[(&'static str, bool)]| form.iter().find(|(_, set)| *set).map(|f| f.0);
        if let (Some(a), Some(b)) = (given(&named), given(&shorthand)) {
            anyhow::bail!(
                "`{a}` and `{b}` are both set: `{b}` is the shorthand for one PLAINTEXT \
                 listener; with named listeners use listeners and advertised-listeners only"
            );
        }
        Ok(())
    }

    /// The listeners: the shorthand's one PLAINTEXT listener when it is used, else the named
    /// ones ([`Settings::check_listener_forms`] refused both).
    fn build_listeners(&self) -> anyhow::Result<Vec<Listener>> {
        let shorthand = self.listen.is_some()
            || self.advertised_host.is_some()
            || self.advertised_port.is_some()
            || self.advertised_listener.is_some();
        if shorthand || self.listeners.is_none() {
            let d = BrokerConfig::default();
            let listen = self.listen.unwrap_or(d.inter_broker().bind);
            let advertised = self
                .advertised_listener
                .clone()
                .unwrap_or(HostPort { host: listen.ip().to_string(), port: listen.port() });
            let mut listener = Listener::plaintext(listen);
            listener.advertised_host = self.advertised_host.clone().unwrap_or(advertised.host);
            listener.advertised_port = self.advertised_port.unwrap_or(advertised.port);
            return Ok(vec![listener]);
        }
        let listeners = self.listeners.as_deref().unwrap_or_default();
        let advertised = self.advertised_listeners.as_deref();
        let map = self.listener_security_protocol_map.as_deref();
        build_listeners(listeners, advertised, map)
            .map_err(|reason| anyhow::Error::new(ConfigError { key: "listeners", reason }))
    }

    /// The TLS settings.
    fn build_ssl(&self) -> anyhow::Result<SslConfig> {
        let d = SslConfig::default();
        let bad = |key: &'static str, reason: &str| ConfigError { key, reason: reason.into() };
        for (key, value) in [
            ("ssl-keystore-type", &self.ssl_keystore_type),
            ("ssl-truststore-type", &self.ssl_truststore_type),
        ] {
            if value.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("PEM")) {
                Err(bad(key, "only PEM is supported (convert JKS/PKCS12 with openssl)"))?;
            }
        }
        let client_auth = match self.ssl_client_auth.as_deref() {
            None => d.client_auth,
            Some(text) => ClientAuth::parse(text)
                .ok_or_else(|| bad("ssl-client-auth", "must be none, requested or required"))?,
        };
        let enabled_protocols = match &self.ssl_enabled_protocols {
            None => d.enabled_protocols,
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let endpoint_identification = match self.ssl_endpoint_identification_algorithm.as_deref() {
            None => d.endpoint_identification,
            Some(text) if text.trim().is_empty() => false,
            Some(text) if text.trim().eq_ignore_ascii_case("https") => true,
            Some(_) => Err(bad("ssl-endpoint-identification-algorithm", "must be https or empty"))?,
        };
        Ok(SslConfig {
            keystore_location: self.ssl_keystore_location.clone(),
            key_location: self.ssl_keystore_key_location.clone(),
            truststore_location: self.ssl_truststore_location.clone(),
            client_auth,
            principal_mapping_rules: self
                .ssl_principal_mapping_rules
                .clone()
                .unwrap_or(d.principal_mapping_rules),
            enabled_protocols,
            endpoint_identification,
            reload_check_ms: self.ssl_reload_check_ms.unwrap_or(d.reload_check_ms),
        })
    }

    /// The share-group settings (KIP-932), defaults filled in from `d`.
    fn share_config(
        &self,
        d: &strata::config::ShareConfig,
    ) -> anyhow::Result<strata::config::ShareConfig> {
        let earliest = match self.share_auto_offset_reset.as_deref().map(str::trim) {
            None | Some("latest") => false,
            Some("earliest") => true,
            Some(other) => {
                anyhow::bail!("share-auto-offset-reset: {other:?} is not latest or earliest")
            }
        };
        Ok(strata::config::ShareConfig {
            session_timeout_ms: self.group_share_session_timeout_ms.unwrap_or(d.session_timeout_ms),
            heartbeat_interval_ms: self
                .group_share_heartbeat_interval_ms
                .unwrap_or(d.heartbeat_interval_ms),
            record_lock_duration_ms: self
                .group_share_record_lock_duration_ms
                .unwrap_or(d.record_lock_duration_ms),
            delivery_count_limit: self
                .group_share_delivery_count_limit
                .unwrap_or(d.delivery_count_limit),
            partition_max_record_locks: self
                .group_share_partition_max_record_locks
                .unwrap_or(d.partition_max_record_locks),
            auto_offset_reset_earliest: earliest,
        })
    }

    /// Turns complete settings (after [`Settings::or`] with the defaults) into a config.
    pub fn into_config(self) -> anyhow::Result<(BrokerConfig, PoolOptions)> {
        let d = BrokerConfig::default();
        let listeners = self.build_listeners()?;
        let ssl = self.build_ssl()?;
        let inter_broker_listener = match &self.inter_broker_listener_name {
            Some(name) => name.trim().to_ascii_uppercase(),
            None => {
                let plaintext = SecurityProtocol::Plaintext.name();
                let named = listeners.iter().find(|l| l.name == plaintext);
                named.or(listeners.first()).map_or(plaintext.to_owned(), |l| l.name.clone())
            }
        };
        let sasl = self.sasl_settings(d.sasl.clone());
        let share = self.share_config(&d.share)?;
        let admin_security = self.admin_security();
        let flush = match (self.flush_messages, self.flush_ms) {
            (None, None) | (Some(1), None) => FlushPolicy::EveryProduce,
            (messages, interval_ms) => FlushPolicy::Periodic { messages, interval_ms },
        };
        let cpus = self.cpus.unwrap_or_default();
        let shards = self.shards.unwrap_or(d.shards);
        let config = BrokerConfig {
            listeners,
            inter_broker_listener,
            ssl,
            data_dir: self.data_dir.unwrap_or(d.data_dir),
            shards,
            cpus: cpus.clone(),
            node_id: self.node_id.unwrap_or(d.node_id),
            auto_create_topics: self.auto_create_topics.unwrap_or(d.auto_create_topics),
            default_partitions: self.default_partitions.unwrap_or(d.default_partitions),
            max_request_bytes: self.max_request_bytes.unwrap_or(d.max_request_bytes),
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.unwrap_or(d.max_connections_per_ip),
            max_connections_per_ip_overrides: self
                .max_connections_per_ip_overrides
                .map_or(d.max_connections_per_ip_overrides, |o| o.0),
            queued_max_request_bytes: self.queued_max_request_bytes.or(d.queued_max_request_bytes),
            connections_max_idle_ms: self
                .connections_max_idle_ms
                .unwrap_or(d.connections_max_idle_ms),
            frame_timeout_ms: self.frame_timeout_ms.unwrap_or(d.frame_timeout_ms),
            admin_max_connections: self.admin_max_connections.unwrap_or(d.admin_max_connections),
            admin_max_connections_per_ip: self
                .admin_max_connections_per_ip
                .unwrap_or(d.admin_max_connections_per_ip),
            admin_idle_timeout_ms: self.admin_idle_timeout_ms.unwrap_or(d.admin_idle_timeout_ms),
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            segment_ms: self.segment_ms.or(d.segment_ms),
            segment_prealloc_bytes: self.segment_prealloc_bytes.unwrap_or(d.segment_prealloc_bytes),
            segment_prealloc_min_bytes: self
                .segment_prealloc_min_bytes
                .unwrap_or(d.segment_prealloc_min_bytes),
            segment_prezero: self.segment_prezero.unwrap_or(d.segment_prezero),
            segment_recycle: self.segment_recycle.unwrap_or(d.segment_recycle),
            segment_recycle_max_bytes: self
                .segment_recycle_max_bytes
                .unwrap_or(d.segment_recycle_max_bytes),
            segment_write_dsync: self.segment_write_dsync.unwrap_or(d.segment_write_dsync),
            storage_min_free_bytes: self.storage_min_free_bytes.unwrap_or(d.storage_min_free_bytes),
            storage_min_free_percent: self
                .storage_min_free_percent
                .unwrap_or(d.storage_min_free_percent),
            flush,
            tail_cache_bytes: self.tail_cache_bytes.unwrap_or(d.tail_cache_bytes),
            tail_cache_max_bytes: self.tail_cache_max_bytes.unwrap_or(d.tail_cache_max_bytes),
            log_append_time: self.log_append_time.unwrap_or(d.log_append_time),
            flush_bytes: self.flush_bytes.unwrap_or(d.flush_bytes),
            message_timestamp_before_max_ms: self
                .message_timestamp_before_max_ms
                .unwrap_or(d.message_timestamp_before_max_ms),
            message_timestamp_after_max_ms: self
                .message_timestamp_after_max_ms
                .unwrap_or(d.message_timestamp_after_max_ms),
            compression_type: self.compression_type.unwrap_or(d.compression_type),
            compression_gzip_level: self.compression_gzip_level.unwrap_or(d.compression_gzip_level),
            compression_lz4_level: self.compression_lz4_level.unwrap_or(d.compression_lz4_level),
            compression_zstd_level: self.compression_zstd_level.unwrap_or(d.compression_zstd_level),
            offsets_topic_partitions: self
                .offsets_topic_partitions
                .unwrap_or(d.offsets_topic_partitions),
            fault_drop_produce_every: None,
            fault_panic_on_client_id: None,
            fault_panic_on_group: None,
            // `run` fills it in: these settings are merged with the defaults already.
            given_settings: BTreeSet::new(),
            admin_listen: self.admin_listen.map_or(d.admin_listen, |a| a.0),
            admin_security,
            shutdown_timeout_ms: self.shutdown_timeout_ms.unwrap_or(d.shutdown_timeout_ms),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .unwrap_or(d.group_initial_rebalance_delay_ms),
            group_min_session_timeout_ms: self
                .group_min_session_timeout_ms
                .unwrap_or(d.group_min_session_timeout_ms),
            group_max_session_timeout_ms: self
                .group_max_session_timeout_ms
                .unwrap_or(d.group_max_session_timeout_ms),
            share,
            group_consumer_session_timeout_ms: self
                .group_consumer_session_timeout_ms
                .unwrap_or(d.group_consumer_session_timeout_ms),
            group_consumer_heartbeat_interval_ms: self
                .group_consumer_heartbeat_interval_ms
                .unwrap_or(d.group_consumer_heartbeat_interval_ms),
            group_consumer_assignors: self
                .group_consumer_assignors
                .clone()
                .unwrap_or(d.group_consumer_assignors.clone()),
            group_consumer_max_size: self
                .group_consumer_max_size
                .unwrap_or(d.group_consumer_max_size),
            group_consumer_migration_policy: self
                .group_consumer_migration_policy
                .clone()
                .unwrap_or(d.group_consumer_migration_policy.clone()),
            replica_lag_time_max_ms: self
                .replica_lag_time_max_ms
                .unwrap_or(d.replica_lag_time_max_ms),
            broker_session_timeout_ms: self
                .broker_session_timeout_ms
                .unwrap_or(d.broker_session_timeout_ms),
            transactional_id_expiration_ms: self
                .transactional_id_expiration_ms
                .unwrap_or(d.transactional_id_expiration_ms),
            producer_id_expiration_ms: self
                .producer_id_expiration_ms
                .unwrap_or(d.producer_id_expiration_ms),
            auto_leader_rebalance: self.auto_leader_rebalance.unwrap_or(d.auto_leader_rebalance),
            retention_ms: self.retention_ms.unwrap_or(d.retention_ms),
            retention_bytes: self.retention_bytes.unwrap_or(d.retention_bytes),
            cleanup_policy: self.cleanup_policy.unwrap_or(d.cleanup_policy),
            delete_retention_ms: self.delete_retention_ms.unwrap_or(d.delete_retention_ms),
            min_compaction_lag_ms: self.min_compaction_lag_ms.unwrap_or(d.min_compaction_lag_ms),
            retention_check_ms: self.retention_check_ms.unwrap_or(d.retention_check_ms),
            controller_listen: self.controller_listen.or(d.controller_listen),
            controller_voters: self.controller_voters.map_or(d.controller_voters, |v| v.0),
            authorizer: self.authorizer.map_or(d.authorizer, |a| a.0),
            super_users: self.super_users.map_or(d.super_users, |u| u.0),
            allow_everyone_if_no_acl_found: self
                .allow_everyone_if_no_acl_found
                .unwrap_or(d.allow_everyone_if_no_acl_found),
            quota_window_num: self.quota_window_num.unwrap_or(d.quota_window_num),
            quota_window_size_seconds: self
                .quota_window_size_seconds
                .unwrap_or(d.quota_window_size_seconds),
            sasl,
            cluster_secret: self.cluster_secret.map(|s| Secret(s.0)),
            cluster_secret_file: self.cluster_secret_file,
            controller_insecure: self.controller_insecure.unwrap_or(d.controller_insecure),
            broker_heartbeat_interval_ms: self
                .broker_heartbeat_interval_ms
                .unwrap_or(d.broker_heartbeat_interval_ms),
            broker_disconnect_timeout_ms: self
                .broker_disconnect_timeout_ms
                .unwrap_or(d.broker_disconnect_timeout_ms),
            unclean_leader_election: self
                .unclean_leader_election
                .unwrap_or(d.unclean_leader_election),
            broker_rack: self.broker_rack.filter(|r| !r.trim().is_empty()),
            leader_replication_throttled_rate: self.leader_replication_throttled_rate,
            follower_replication_throttled_rate: self.follower_replication_throttled_rate,
            rack_aware_replica_selector: rack_aware_selector(
                self.replica_selector_class.as_deref(),
            )?,
            partition_autobalancing: autobalancing(self.partition_autobalancing_mode.as_deref())?,
        };
        let spin = self.idle_spin_us.filter(|&us| us > 0).map(Duration::from_micros);
        let io_workers = self.io_workers.unwrap_or(IO_WORKERS_DEFAULT);
        Ok((config, PoolOptions { shards, cpus, spin_before_park: spin, io_workers }))
    }
}

impl Settings {
    /// The admin listener's TLS and token settings.
    fn admin_security(&self) -> AdminSecurity {
        AdminSecurity {
            tls: self.admin_ssl_enabled.unwrap_or(false),
            keystore_location: self.admin_ssl_keystore_location.clone(),
            key_location: self.admin_ssl_keystore_key_location.clone(),
            token: self.admin_token.clone().map(|t| Secret(t.0)),
            token_file: self.admin_token_file.clone(),
            metrics_public: self.admin_metrics_public.unwrap_or(false),
        }
    }

    /// The SASL part of the config (`d`: the defaults).
    fn sasl_settings(&self, d: SaslSettings) -> SaslSettings {
        let s = self.clone();
        SaslSettings {
            enabled_mechanisms: s.sasl_enabled_mechanisms.unwrap_or(d.enabled_mechanisms),
            connections_max_reauth_ms: s
                .connections_max_reauth_ms
                .unwrap_or(d.connections_max_reauth_ms),
            connection_failed_authentication_delay_ms: s
                .connection_failed_authentication_delay_ms
                .unwrap_or(d.connection_failed_authentication_delay_ms),
            server_max_receive_size: s
                .sasl_server_max_receive_size
                .unwrap_or(d.server_max_receive_size),
            bootstrap_user: s.sasl_bootstrap_user.map(|u| Secret(u.0)),
            bootstrap_user_file: s.sasl_bootstrap_user_file,
            oauthbearer_jwks_endpoint_url: s.sasl_oauthbearer_jwks_endpoint_url,
            oauthbearer_jwks_endpoint_refresh_ms: s
                .sasl_oauthbearer_jwks_endpoint_refresh_ms
                .unwrap_or(d.oauthbearer_jwks_endpoint_refresh_ms),
            oauthbearer_expected_issuer: s.sasl_oauthbearer_expected_issuer,
            oauthbearer_expected_audience: s.sasl_oauthbearer_expected_audience.unwrap_or_default(),
            oauthbearer_sub_claim_name: s
                .sasl_oauthbearer_sub_claim_name
                .unwrap_or(d.oauthbearer_sub_claim_name),
            oauthbearer_clock_skew_seconds: s
                .sasl_oauthbearer_clock_skew_seconds
                .unwrap_or(d.oauthbearer_clock_skew_seconds),
            oauthbearer_unsecured: s.sasl_oauthbearer_unsecured.unwrap_or(d.oauthbearer_unsecured),
        }
    }
}

/// Resolves flags, environment, file and defaults into complete settings, and the keys of
/// those given by flag, environment or file ([`Settings::keys`]).
pub fn resolve(args: ServeArgs) -> anyhow::Result<(Settings, BTreeSet<String>)> {
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let given = args.settings.or(file);
    given.check_listener_forms()?;
    let keys = given.keys();
    Ok((given.or(Settings::defaults()), keys))
}

/// Runs the broker until SIGINT/SIGTERM. `log` is the global --log / STRATA_LOG filter.
pub fn run(args: ServeArgs, log: Option<String>) -> anyhow::Result<()> {
    let fault_drop_produce_every = args.fault_drop_produce_every.filter(|&n| n > 0);
    let fault_panic_on_client_id = args.fault_panic_on_client_id.clone();
    let fault_panic_on_group = args.fault_panic_on_group.clone();
    let (settings, given) = match resolve(args) {
        Ok(resolved) => resolved,
        Err(e) => {
            super::init_logging(log.as_deref(), false);
            return Err(e);
        }
    };
    let json = settings.log_format == Some(LogFormat::Json);
    let filter = log.or(settings.log_level.clone());
    super::init_logging(filter.as_deref(), json);
    let (mut config, pool) = settings.into_config()?;
    config.fault_drop_produce_every = fault_drop_produce_every;
    config.fault_panic_on_client_id = fault_panic_on_client_id;
    config.fault_panic_on_group = fault_panic_on_group;
    config.given_settings = given;
    strata::server::serve(config, pool)
}

/// `strata config check FILE`: parses and validates a config file as `serve` would (flags
/// and environment aside).
pub fn check_file(path: &Path) -> anyhow::Result<()> {
    let settings = Settings::from_file(path)?;
    settings.check_listener_forms()?;
    let (config, _pool) = settings.or(Settings::defaults()).into_config()?;
    config.validate()?;
    println!("{}: ok", path.display());
    Ok(())
}

/// The text of `strata config print-defaults`: every key, its help and its default.
pub fn defaults_toml() -> String {
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        settings: Settings,
    }
    let table = toml::Value::try_from(Settings::defaults()).unwrap_or(toml::Value::Integer(0));
    let mut out = String::from("# strata serve settings. Flags and STRATA_* variables win.\n");
    for arg in Wrapper::command().get_arguments() {
        let key = arg.get_id().as_str();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push('\n');
        for line in textwrap(&help, 96) {
            out.push_str(&format!("# {line}\n"));
        }
        match table.get(key) {
            Some(value) => out.push_str(&format!("{key} = {value}\n")),
            None => out.push_str(&format!("# {key} =\n")),
        }
    }
    out
}

fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().filter(|l| l.len() + word.len() < width);
        match line {
            Some(l) if !l.is_empty() => {
                l.push(' ');
                l.push_str(word);
            }
            Some(l) => l.push_str(word),
            None => lines.push(word.to_owned()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let flags = Settings { shards: Some(3), ..Settings::default() };
        let file = Settings { shards: Some(5), node_id: Some(7), ..Settings::default() };
        let merged = flags.or(file).or(Settings::defaults());
        assert_eq!(merged.shards, Some(3));
        assert_eq!(merged.node_id, Some(7));
        assert_eq!(merged.max_connections, Some(10_000));
    }

    #[test]
    fn printed_defaults_parse_back_to_the_defaults() {
        let text = defaults_toml();
        let parsed: Settings = toml::from_str(&text).unwrap();
        assert_eq!(parsed.or(Settings::defaults()), Settings::defaults());
        assert!(text.contains("listeners = \"PLAINTEXT://127.0.0.1:9092\""));
    }

    #[test]
    fn voters_parse_and_print_back() {
        let text = "controller_voters = \"1@127.0.0.1:19093, 2@localhost:19094\"";
        let parsed: Settings = toml::from_str(text).unwrap();
        let voters = parsed.controller_voters.clone().unwrap().0;
        assert_eq!(voters.len(), 2);
        assert_eq!(voters[1].host, "localhost");
        assert_eq!(
            String::from(parsed.controller_voters.unwrap()),
            "1@127.0.0.1:19093,2@localhost:19094"
        );
        let err = toml::from_str::<Settings>("controller_voters = \"1@nowhere\"").unwrap_err();
        assert!(err.to_string().contains("controller_voters"), "{err}");
        let err = toml::from_str::<Settings>("controller_voters = \"1@a:1,1@b:2\"").unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn given_settings_are_listed_by_key_even_at_their_default() {
        let given = Settings {
            retention_ms: Some(604_800_000),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9092))),
            ..Settings::default()
        };
        let keys: Vec<String> = given.keys().into_iter().collect();
        assert_eq!(keys, ["listen", "retention_ms"]);
        assert!(Settings::defaults().keys().contains("max_connections"));
    }

    #[test]
    fn every_broker_setting_names_serve_settings_that_exist() {
        use strata::controller::broker_config::{serve_keys, SETTINGS};
        let command = Settings::augment_args(clap::Command::new("serve"));
        let ids: BTreeSet<String> =
            command.get_arguments().map(|a| a.get_id().to_string()).collect();
        for setting in SETTINGS {
            for key in serve_keys(setting.name) {
                assert!(ids.contains(&key), "{} names {key}, not a serve setting", setting.name);
            }
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = toml::from_str::<Settings>("shardz = 2").unwrap_err().message().to_owned();
        assert!(err.contains("shardz"), "{err}");
        let err = toml::from_str::<Settings>("shards = \"many\"").unwrap_err().to_string();
        assert!(err.contains("shards"), "{err}");
    }
}

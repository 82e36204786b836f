//! `strata serve`: flags → [`BrokerConfig`] → [`strata::server::serve`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use strata::config::{limits, BrokerConfig, FlushPolicy};
use strata::runtime::PoolOptions;

/// Flags of `strata serve`. Every flag can also be set by the environment variable shown.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address the Kafka listener binds (every shard accepts on it, SO_REUSEPORT).
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Host advertised to clients in Metadata [default: the listen address's IP].
    #[arg(long, env = "STRATA_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Port advertised to clients in Metadata [default: the listen port].
    #[arg(long, env = "STRATA_ADVERTISED_PORT")]
    advertised_port: Option<u16>,
    /// Directory holding partition logs and cluster metadata.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Number of shards (pinned executors); 0 = one per CPU the process may use.
    #[arg(long, env = "STRATA_SHARDS", default_value_t = 0)]
    shards: usize,
    /// CPUs to pin shards to, e.g. `0,1` [default: the process's CPU affinity].
    #[arg(long, env = "STRATA_CPUS", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Busy-poll this many microseconds before an idle shard sleeps (lower wake-up latency,
    /// more CPU); 0 = sleep at once.
    #[arg(long, env = "STRATA_IDLE_SPIN_US", default_value_t = 0)]
    idle_spin_us: u64,
    /// Node id advertised in Metadata.
    #[arg(long, env = "STRATA_NODE_ID", default_value_t = 0)]
    node_id: i32,
    /// Create topics on first use (Kafka's auto.create.topics.enable).
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS", default_value_t = true,
          action = clap::ArgAction::Set)]
    auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1 (num.partitions).
    #[arg(long, env = "STRATA_DEFAULT_PARTITIONS", default_value_t = 1)]
    default_partitions: i32,
    /// Largest request frame accepted (socket.request.max.bytes); larger ones close the
    /// connection.
    #[arg(long, env = "STRATA_MAX_REQUEST_BYTES", default_value_t = limits::REQUEST_BYTES_DEFAULT)]
    max_request_bytes: usize,
    /// Largest record batch accepted (message.max.bytes); topics may override with
    /// max.message.bytes.
    #[arg(long, env = "STRATA_MAX_MESSAGE_BYTES", default_value_t = limits::BATCH_BYTES_DEFAULT)]
    max_message_bytes: usize,
    /// Most client connections open at once.
    #[arg(long, env = "STRATA_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Roll to a new segment when the active one would exceed this (log.segment.bytes).
    #[arg(long, env = "STRATA_SEGMENT_BYTES", default_value_t = 1 << 30)]
    segment_bytes: u64,
    /// Roll a segment older than this many ms (log.roll.ms) [default: size only].
    #[arg(long, env = "STRATA_SEGMENT_MS")]
    segment_ms: Option<u64>,
    /// Segment files grow by preallocated extents of this many bytes.
    #[arg(long, env = "STRATA_SEGMENT_PREALLOC_BYTES", default_value_t = 64 << 20)]
    segment_prealloc_bytes: u64,
    /// fdatasync after this many messages instead of before every acknowledgement
    /// (flush.messages). With neither this nor --flush-ms, every produce is fdatasync'ed
    /// before it is acknowledged.
    #[arg(long, env = "STRATA_FLUSH_MESSAGES")]
    flush_messages: Option<u64>,
    /// fdatasync every this many ms instead of before every acknowledgement (flush.ms).
    #[arg(long, env = "STRATA_FLUSH_MS")]
    flush_ms: Option<u64>,
    /// Recent data kept in memory per partition to serve fetches without disk reads.
    #[arg(long, env = "STRATA_TAIL_CACHE_BYTES", default_value_t = 8 << 20)]
    tail_cache_bytes: usize,
    /// Stamp batches with the broker's clock (log.message.timestamp.type=LogAppendTime).
    #[arg(long, env = "STRATA_LOG_APPEND_TIME")]
    log_append_time: bool,
    /// Partitions of the internal `__consumer_offsets` topic when it is first created
    /// (offsets.topic.num.partitions; Kafka's default is 50).
    #[arg(long, env = "STRATA_OFFSETS_TOPIC_PARTITIONS", default_value_t = 16)]
    offsets_topic_partitions: i32,
}

impl ServeArgs {
    fn into_config(self) -> (BrokerConfig, PoolOptions) {
        let flush = match (self.flush_messages, self.flush_ms) {
            (None, None) | (Some(1), None) => FlushPolicy::EveryProduce,
            (messages, interval_ms) => FlushPolicy::Periodic { messages, interval_ms },
        };
        let config = BrokerConfig {
            listen: self.listen,
            advertised_host: self.advertised_host.unwrap_or_else(|| self.listen.ip().to_string()),
            advertised_port: self.advertised_port.unwrap_or(self.listen.port()),
            data_dir: self.data_dir,
            shards: self.shards,
            cpus: self.cpus.clone(),
            node_id: self.node_id,
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_request_bytes: self.max_request_bytes,
            max_message_bytes: self.max_message_bytes,
            max_connections: self.max_connections,
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            segment_prealloc_bytes: self.segment_prealloc_bytes,
            flush,
            tail_cache_bytes: self.tail_cache_bytes,
            log_append_time: self.log_append_time,
            offsets_topic_partitions: self.offsets_topic_partitions,
        };
        let spin = (self.idle_spin_us > 0).then(|| Duration::from_micros(self.idle_spin_us));
        let pool = PoolOptions { shards: self.shards, cpus: self.cpus, spin_before_park: spin };
        (config, pool)
    }
}

/// Runs the broker until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (config, pool) = args.into_config();
    strata::server::serve(config, pool)
}

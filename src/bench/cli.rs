//! `strata bench produce|consume|e2e`: flags, workload-file merging and the entry point.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::report::{self, summary::Summary};
use super::run;
use super::settings::{Mode, Settings};
use super::workload::{Acks, ByteSize, Compression, Dur, KeyMode, Rate, SizeDist, WorkloadFile};

/// Load-test any Kafka-compatible broker and report HDR latency histograms.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to run.
    #[command(subcommand)]
    pub mode: BenchMode,
}

/// Bench modes.
#[derive(Debug, Subcommand)]
pub enum BenchMode {
    /// Produce only: throughput and produce-ack latency.
    Produce(RunFlags),
    /// Consume only, from the earliest offset: throughput.
    Consume(RunFlags),
    /// Produce and consume (from the latest offset): ack and end-to-end latency.
    E2e(RunFlags),
}

/// Flags of a run. Each overrides the same field of `--workload`; defaults in brackets.
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Workload file (.yaml/.yml/.toml) with fields named like these flags.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Java properties file of client security settings (security.protocol, ssl.ca.location,
    /// ...), as the other tools' --command-config.
    #[arg(long)]
    pub command_config: Option<PathBuf>,
    /// A client security setting, librdkafka's name: `-X security.protocol=SSL`; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Bootstrap brokers, comma separated [127.0.0.1:9092].
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic, created if missing [strata-bench].
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions when creating the topic [16].
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor when creating the topic [1].
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Producer clients [1].
    #[arg(long)]
    pub producers: Option<usize>,
    /// Consumer clients [1].
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Value bytes: `100`, uniform `100..1000`, or weighted `100:80,1KiB:20` [100].
    #[arg(long)]
    pub record_size: Option<SizeDist>,
    /// Keys: none (sticky partitioner), random or sequential (murmur2) [none].
    #[arg(long)]
    pub key_mode: Option<KeyMode>,
    /// Maximum uncompressed batch size [64KiB].
    #[arg(long)]
    pub batch_bytes: Option<ByteSize>,
    /// How long a partial batch may wait for more records [1ms].
    #[arg(long)]
    pub linger: Option<Dur>,
    /// none, gzip, snappy, lz4 or zstd [none].
    #[arg(long)]
    pub compression: Option<Compression>,
    /// 0, 1 or all [1].
    #[arg(long)]
    pub acks: Option<Acks>,
    /// Target msgs/s over all producers (`500k`, `2M`) or `max` [max].
    #[arg(long)]
    pub rate: Option<Rate>,
    /// Measured run length (`60s`, `2m`) [10s unless --messages].
    #[arg(long)]
    pub duration: Option<Dur>,
    /// Measured messages over all producers (instead of, or as well as, --duration).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Unmeasured warm-up before the measured window [1s].
    #[arg(long)]
    pub warmup: Option<Dur>,
    /// glommio executors (pinned threads) of the load tool [1].
    #[arg(long)]
    pub cores: Option<usize>,
    /// CPUs to pin the executors to, comma separated (one per core).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Busy-poll this long before an idle executor sleeps (lower tool-side wake-up latency,
    /// burns its CPU) [0 = off].
    #[arg(long)]
    pub spin: Option<Dur>,
    /// Produce requests in flight per connection [5].
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Bytes of batches a producer may buffer [32MiB].
    #[arg(long)]
    pub buffer_bytes: Option<ByteSize>,
    /// Fetch max wait [100ms].
    #[arg(long)]
    pub fetch_wait: Option<Dur>,
    /// Fetch max bytes per response and per partition [8MiB].
    #[arg(long)]
    pub fetch_bytes: Option<ByteSize>,
    /// e2e: how long consumers may take to catch up after producing [10s].
    #[arg(long)]
    pub drain_timeout: Option<Dur>,
    /// Write ack.hgrm, e2e.hgrm, summary.json and report.html into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Runs `strata bench …`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (mode, flags) = match args.mode {
        BenchMode::Produce(f) => (Mode::Produce, f),
        BenchMode::Consume(f) => (Mode::Consume, f),
        BenchMode::E2e(f) => (Mode::E2e, f),
    };
    let file = match &flags.workload {
        Some(path) => WorkloadFile::load(path)?,
        None => WorkloadFile::default(),
    };
    super::conn::use_security(&security(&flags)?)?;
    let settings = resolve(mode, &flags, file, command_line())?;
    settings.validate()?;
    let report_dir = settings.report.clone();
    let outcome = run::execute(settings)?;
    let summary = Summary::of(&outcome);
    print!("{}", report::table(&summary));
    if let Some(dir) = report_dir {
        report::write_reports(&dir, &outcome, &summary)?;
        eprintln!("report written to {}", dir.display());
    }
    anyhow::ensure!(
        summary.produce.as_ref().is_none_or(|p| p.errors == 0),
        "some records failed to produce"
    );
    Ok(())
}

/// The security settings of `-X` and `--command-config` (`-X` wins).
fn security(flags: &RunFlags) -> anyhow::Result<crate::security::client::ClientSecurity> {
    use crate::security::client::{parse_key_value, parse_properties, ClientSecurity};
    let mut properties = match &flags.command_config {
        Some(path) => parse_properties(&std::fs::read_to_string(path)?),
        None => Vec::new(),
    };
    for item in &flags.property {
        properties.push(parse_key_value(item).map_err(|e| anyhow::anyhow!("-X: {e}"))?);
    }
    let (security, _) = ClientSecurity::from_properties(&properties).map_err(anyhow::Error::msg)?;
    Ok(security)
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Flags over file over defaults.
pub fn resolve(
    mode: Mode,
    flags: &RunFlags,
    file: WorkloadFile,
    command: String,
) -> anyhow::Result<Settings> {
    let f = flags.clone();
    let messages = f.messages.or(file.messages);
    let duration = f.duration.or(file.duration).map(|d| d.0);
    let duration = match (duration, messages) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let brokers = f.brokers.or(file.brokers).unwrap_or_else(|| "127.0.0.1:9092".into());
    let mode_name = format!("{mode:?}").to_lowercase();
    Ok(Settings {
        mode,
        name: file.name.unwrap_or(mode_name),
        brokers: brokers
            .split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect(),
        topic: f.topic.or(file.topic).unwrap_or_else(|| "strata-bench".into()),
        partitions: f.partitions.or(file.partitions).unwrap_or(16),
        replication_factor: f.replication_factor.or(file.replication_factor).unwrap_or(1),
        producers: f.producers.or(file.producers).unwrap_or(1),
        consumers: f.consumers.or(file.consumers).unwrap_or(1),
        record_size: f.record_size.or(file.record_size).unwrap_or(SizeDist::Fixed(100)),
        key_mode: f.key_mode.or(file.key_mode).unwrap_or(KeyMode::None),
        batch_bytes: f.batch_bytes.or(file.batch_bytes).map_or(64 << 10, |b| b.0),
        linger: f.linger.or(file.linger).map_or(Duration::from_millis(1), |d| d.0),
        compression: f.compression.or(file.compression).unwrap_or_default(),
        acks: f.acks.or(file.acks).unwrap_or(Acks::Leader),
        rate: f.rate.or(file.rate).unwrap_or(Rate::Max),
        duration,
        messages,
        warmup: f.warmup.or(file.warmup).map_or(Duration::from_secs(1), |d| d.0),
        cores: f.cores.or(file.cores).unwrap_or(1),
        cpus: f.cpus,
        spin: f.spin.or(file.spin).map_or(Duration::ZERO, |d| d.0),
        max_in_flight: f.max_in_flight.or(file.max_in_flight).unwrap_or(5),
        buffer_bytes: f.buffer_bytes.map_or(32 << 20, |b| b.0),
        request_bytes_max: 1 << 20,
        fetch_wait: f.fetch_wait.map_or(Duration::from_millis(100), |d| d.0),
        fetch_bytes: f.fetch_bytes.map_or(8 << 20, |b| b.0),
        drain_timeout: f.drain_timeout.map_or(Duration::from_secs(10), |d| d.0),
        report: f.report,
        command,
    })
}

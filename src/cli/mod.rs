//! Subcommands of the `strata` binary: argument parsing and wiring only.

pub mod acl;
pub mod cluster;
pub mod cluster_config;
pub mod consume;
pub mod group;
pub mod produce;
pub mod quota;
pub mod reassign;
pub mod serve;
pub mod share_group;
pub mod topic;
pub mod txn;
pub mod user;

/// Security settings every tool takes (librdkafka's property names): `-X key=value` and a
/// Java properties file, `--command-config` (Kafka tools' flag). `-X` wins over the file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SecurityArgs {
    /// Java properties file of client settings: security.protocol, ssl.ca.location,
    /// ssl.certificate.location, ssl.key.location, sasl.mechanism, sasl.username,
    /// sasl.password, ... (Kafka's ssl.truststore.location / sasl.jaas.config too).
    #[arg(long, global = true, env = "STRATA_COMMAND_CONFIG")]
    pub command_config: Option<std::path::PathBuf>,
    /// A client setting, librdkafka's name: `-X security.protocol=SSL`; repeatable.
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    pub property: Vec<String>,
}

impl SecurityArgs {
    /// The settings, read and checked.
    pub fn connector(&self) -> anyhow::Result<strata::client::Connector> {
        use strata::security::client::{parse_key_value, parse_properties, ClientSecurity};
        let mut properties = match &self.command_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                parse_properties(&text)
            }
            None => Vec::new(),
        };
        for item in &self.property {
            properties.push(parse_key_value(item).map_err(|e| anyhow::anyhow!("-X: {e}"))?);
        }
        let (security, ignored) =
            ClientSecurity::from_properties(&properties).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !ignored.is_empty() {
            tracing::debug!(?ignored, "client properties without effect on this tool");
        }
        Ok(strata::client::Connector::new(security)?)
    }
}

/// The default log filter: `info`, except openraft's own `info` and `warn` lines (a dozen
/// per election, several per second while a controller voter is down). Strata logs the
/// controller's leader changes and brokers' fencing itself; `--log-level info` brings
/// openraft's lines back.
pub const DEFAULT_FILTER: &str = "info,openraft=error";

/// Logs go to stderr through `tracing`, as text or one JSON object per line; the `log` crate
/// (used by glommio) is bridged in, so its warnings (e.g. io_uring buffer registration
/// failing) are seen. `filter` wins over `RUST_LOG`; without either it is [`DEFAULT_FILTER`].
pub fn init_logging(filter: Option<&str>, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
        }
    };
    let _ = tracing_log::LogTracer::init();
    // Colours only on a terminal: journald, Docker and Kubernetes logs get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written (stderr redirected to a file on a full disk, a closed
    // pipe) is dropped: with `log_internal_errors` on, tracing-subscriber reports the failure
    // with `eprintln!`, which panics when stderr cannot be written either, so every log line
    // would become a panic in whatever task logged it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

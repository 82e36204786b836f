//! Subcommands of the `strata` binary: argument parsing and wiring only.

pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod serve;
pub mod topic;
pub mod txn;
pub mod user;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

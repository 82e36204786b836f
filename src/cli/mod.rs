//! Subcommands of the `strata` binary: argument parsing and wiring only.

pub mod group;
pub mod serve;
pub mod topic;

/// Logs go to stderr through `tracing`; the `log` crate (used by glommio) is bridged in, so
/// its warnings (e.g. io_uring buffer registration failing) are seen.
pub fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_log::LogTracer::init();
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

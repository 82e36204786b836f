//! The `strata` command: the broker (`serve`) and its tools.

mod cli;

use clap::{Parser, Subcommand};

/// Strata: a Kafka-compatible streaming broker, thread-per-core on io_uring.
#[derive(Parser)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    /// Log filter (e.g. `info`, `strata=debug`); `RUST_LOG` is read when not given.
    #[arg(long, global = true, env = "STRATA_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Serve(Box<cli::serve::ServeArgs>),
    /// Create, list, describe, delete topics; alter their configs; add partitions.
    Topic(cli::topic::TopicArgs),
    /// List, describe, delete consumer groups and reset their offsets.
    Group(cli::group::GroupArgs),
    /// List and describe share groups (KIP-932): members, start offsets, lag.
    ShareGroup(cli::share_group::ShareGroupArgs),
    /// List and describe transactions.
    Txn(cli::txn::TxnArgs),
    /// Create, update, delete and list SCRAM users (like `rpk acl user`).
    User(cli::user::UserArgs),
    /// Describe a cluster: brokers, controller, under-replicated partitions.
    Cluster(cli::cluster::ClusterArgs),
    /// Produce records read from stdin, one per line (like `rpk topic produce`).
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records (like `rpk topic consume` or `kcat -C`).
    Consume(cli::consume::ConsumeArgs),
    /// Create, list and delete ACLs (like `rpk acl`).
    Acl(cli::acl::AclArgs),
    /// Describe and alter client quotas (like `rpk cluster quotas`).
    Quota(cli::quota::QuotaArgs),
    /// Load-test a Kafka-compatible broker (produce, consume, end-to-end).
    Bench(Box<strata::bench::BenchArgs>),
    /// Inspect broker settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every `strata serve` setting with its default, as a TOML file for --config.
    PrintDefaults,
    /// Check a --config file (unknown keys, bad values) without starting a broker.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Bench(_)) {
        end_quietly_on_a_closed_stdout();
    }
    if !matches!(cli.command, Command::Serve(_)) {
        cli::init_logging(cli.log.as_deref(), false);
    }
    let result = match cli.command {
        // Initialises logging itself: the format and level may come from its settings.
        Command::Serve(args) => cli::serve::run(*args, cli.log),
        Command::Topic(args) => cli::topic::run(args),
        Command::Group(args) => cli::group::run(args),
        Command::ShareGroup(args) => cli::share_group::run(args),
        Command::Txn(args) => cli::txn::run(args),
        Command::Cluster(args) => cli::cluster::run(args),
        Command::User(args) => cli::user::run(args),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Acl(args) => cli::acl::run(args),
        Command::Quota(args) => cli::quota::run(args),
        Command::Bench(args) => strata::bench::run_cli(*args),
        Command::Config(ConfigCommand::PrintDefaults) => {
            print!("{}", cli::serve::defaults_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { file }) => cli::serve::check_file(&file),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Printing into a closed pipe (`strata consume t | head`) ends the command quietly, as Unix
/// tools do, instead of panicking in `println!` (Rust ignores SIGPIPE). Not for `serve` and
/// `bench`, which write to sockets with io_uring and must see EPIPE rather than die; the
/// admin tools' std `TcpStream`s send with MSG_NOSIGNAL, so they are unaffected.
fn end_quietly_on_a_closed_stdout() {
    // SAFETY: restoring a signal's default disposition, before any thread is started.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

//! The `strata` command line.

use clap::{Parser, Subcommand};

/// Strata: a Kafka-compatible streaming broker.
#[derive(Debug, Parser)]
#[command(name = "strata", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load-test a Kafka-compatible broker (produce, consume, end-to-end).
    Bench(strata::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(args) => strata::bench::run_cli(args),
    }
}

//! `strata txn list|describe`: transaction administration over the Kafka protocol
//! ([`strata::client`]), like Kafka's `kafka-transactions.sh`.

use clap::{Args, Subcommand};
use serde_json::json;
use strata::client::routing::Coordinator;
use strata::client::Client;

use super::group::{print_table, Output};

/// Flags of `strata txn`.
#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand, Debug)]
enum TxnCommand {
    /// List every transactional id with its producer id and state.
    List,
    /// State, producer, timeout, start time and partitions of one transactional id.
    Describe {
        /// Transactional id.
        transactional_id: String,
    },
}

/// Runs a `strata txn` command.
pub fn run(args: TxnArgs) -> anyhow::Result<()> {
    let mut client =
        Client::connect_secure(&args.bootstrap_server, "strata-txn", &args.security.connector()?)?;
    match args.command {
        TxnCommand::List => list(&mut client, args.output),
        TxnCommand::Describe { transactional_id } => {
            describe(&mut client, &transactional_id, args.output)
        }
    }
}

/// ListTransactions on every broker (each lists the transactional ids it coordinates).
fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let (mut txns, failed) = client.on_every_broker(Client::list_transactions)?;
    super::group::warn_unreachable(&failed, "transactions");
    txns.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    txns.dedup_by(|a, b| a.transactional_id == b.transactional_id);
    if output == Output::Json {
        let rows: Vec<_> = txns
            .iter()
            .map(|t| {
                json!({
                    "transactional_id": t.transactional_id,
                    "producer_id": t.producer_id,
                    "state": t.state,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows = txns
        .iter()
        .map(|t| vec![t.transactional_id.clone(), t.producer_id.to_string(), t.state.clone()]);
    print_table(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"], rows.collect());
    Ok(())
}

fn describe(client: &mut Client, id: &str, output: Output) -> anyhow::Result<()> {
    let t =
        client.with_coordinator(Coordinator::Transaction, id, |c| c.describe_transaction(id))?;
    let partitions: Vec<String> = t.partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect();
    if output == Output::Json {
        let described = json!({
            "transactional_id": t.transactional_id,
            "state": t.state,
            "producer_id": t.producer_id,
            "producer_epoch": t.producer_epoch,
            "timeout_ms": t.timeout_ms,
            "start_time_ms": t.start_time_ms,
            "partitions": partitions,
        });
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    let header = [
        "TRANSACTIONAL-ID",
        "STATE",
        "PRODUCER-ID",
        "EPOCH",
        "TIMEOUT-MS",
        "START-MS",
        "PARTITIONS",
    ];
    let row = vec![
        t.transactional_id.clone(),
        t.state.clone(),
        t.producer_id.to_string(),
        t.producer_epoch.to_string(),
        t.timeout_ms.to_string(),
        t.start_time_ms.to_string(),
        if partitions.is_empty() { "-".into() } else { partitions.join(",") },
    ];
    print_table(&header, vec![row]);
    Ok(())
}

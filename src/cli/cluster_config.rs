//! `strata cluster config get|set|delete [--broker N]`: dynamic broker configs over the Kafka
//! protocol (DescribeConfigs, IncrementalAlterConfigs on BROKER resources), shaped like
//! `rpk cluster config`. Without `--broker` the command is about the cluster-wide default
//! (`kafka-configs.sh --entity-type brokers --entity-default`); with it, about one broker
//! (`--entity-name N`). `get --broker N` asks broker N itself (Kafka brokers describe only
//! themselves), found through DescribeCluster.

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use strata::client::topics::{AlterOp, ConfigValue, RESOURCE_BROKER};
use strata::client::Client;

use super::group::{print_table, Output};

/// `strata cluster config ...`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Every setting of broker N (value, source, dynamic or read-only); without --broker,
    /// the cluster-wide dynamic defaults that are set.
    Get {
        /// Only this setting.
        key: Option<String>,
        /// The broker (node id); default: the cluster-wide defaults.
        #[arg(long)]
        broker: Option<i32>,
    },
    /// Sets a dynamic setting cluster-wide, or for one broker with --broker.
    Set {
        /// Setting (Kafka's name: log.retention.ms, message.max.bytes, ...).
        key: String,
        /// Value (may start with `-`: `-1` is a legal value of several settings).
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// The broker (node id); default: the cluster-wide default.
        #[arg(long)]
        broker: Option<i32>,
        /// Only check that the broker would accept it.
        #[arg(long)]
        validate_only: bool,
    },
    /// Removes a dynamic value (the next layer applies: cluster-wide default, then the
    /// broker's static setting).
    Delete {
        /// Setting.
        key: String,
        /// The broker (node id); default: the cluster-wide default.
        #[arg(long)]
        broker: Option<i32>,
    },
}

fn resource(broker: Option<i32>) -> String {
    broker.map(|b| b.to_string()).unwrap_or_default()
}

/// Runs `strata cluster config ...` through `client`.
pub(super) fn run(
    client: &mut Client,
    command: ConfigCommand,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Get { key, broker } => get(client, broker, key.as_deref(), output),
        ConfigCommand::Set { key, value, broker, validate_only } => {
            let changes = [(AlterOp::Set, key.clone(), Some(value.clone()))];
            let name = resource(broker);
            client
                .alter_configs(RESOURCE_BROKER, &name, &changes, validate_only)
                .with_context(|| format!("setting {key}"))?;
            let verb = if validate_only { "would set" } else { "set" };
            println!("{verb} {key}={value} for {}", target(broker));
            Ok(())
        }
        ConfigCommand::Delete { key, broker } => {
            let changes = [(AlterOp::Delete, key.clone(), None)];
            client
                .alter_configs(RESOURCE_BROKER, &resource(broker), &changes, false)
                .with_context(|| format!("deleting {key}"))?;
            println!("deleted {key} for {}", target(broker));
            Ok(())
        }
    }
}

fn target(broker: Option<i32>) -> String {
    match broker {
        Some(b) => format!("broker {b}"),
        None => "the cluster-wide default".into(),
    }
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-cluster-default",
        4 => "static",
        5 => "default",
        _ => "unknown",
    }
}

fn get(
    client: &mut Client,
    broker: Option<i32>,
    key: Option<&str>,
    output: Output,
) -> anyhow::Result<()> {
    let configs = match broker {
        None => client.describe_configs(RESOURCE_BROKER, "")?,
        Some(id) => {
            let info = client.cluster_info().context("finding the broker")?;
            let found = info.brokers.iter().find(|b| b.id == id);
            let b = found.with_context(|| format!("no broker {id} in the cluster"))?;
            let addr = format!("{}:{}", b.host, b.port);
            let mut own = Client::connect_secure(&addr, "strata-cluster", client.connector())?;
            own.describe_configs(RESOURCE_BROKER, &id.to_string())?
        }
    };
    let shown: Vec<&ConfigValue> =
        configs.iter().filter(|c| key.is_none_or(|k| c.name == k)).collect();
    if let Some(k) = key {
        anyhow::ensure!(!shown.is_empty(), "{k} is not set for {}", target(broker));
    }
    if output == Output::Json {
        let items: Vec<_> = shown
            .iter()
            .map(|c| {
                json!({"name": c.name, "value": c.value, "source": source_name(c.source),
                    "dynamic": !c.read_only, "sensitive": c.sensitive})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let rows = shown
        .iter()
        .map(|c| {
            let value = match (&c.value, c.sensitive) {
                (_, true) => "(sensitive)".to_owned(),
                (Some(v), false) => v.clone(),
                (None, false) => "(unset)".to_owned(),
            };
            let mode = if c.read_only { "read-only" } else { "dynamic" };
            vec![c.name.clone(), value, source_name(c.source).to_owned(), mode.to_owned()]
        })
        .collect();
    print_table(&["NAME", "VALUE", "SOURCE", "UPDATE"], rows);
    Ok(())
}

//! `strata cluster config get|set|delete [--broker N | --group G]`: dynamic broker configs
//! and group configs over the Kafka protocol (DescribeConfigs, IncrementalAlterConfigs on
//! BROKER and GROUP resources), shaped like `rpk cluster config`. Without `--broker` the
//! command is about the cluster-wide default (`kafka-configs.sh --entity-type brokers
//! --entity-default`); with it, about one broker (`--entity-name N`). `get --broker N` asks
//! broker N itself (Kafka brokers describe only themselves), found through DescribeCluster.
//! With `--group G` it is about group G's configs (`kafka-configs.sh --entity-type groups
//! --entity-name G`: `share.auto.offset.reset`, `consumer.session.timeout.ms`, ...).

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use strata::client::topics::{AlterOp, ConfigValue, RESOURCE_BROKER, RESOURCE_GROUP};
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
        /// A group's configs instead.
        #[arg(long, conflicts_with = "broker")]
        group: Option<String>,
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
        /// A group config instead (share.record.lock.duration.ms, ...).
        #[arg(long, conflicts_with = "broker")]
        group: Option<String>,
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
        /// A group config instead (back to the broker's setting).
        #[arg(long, conflicts_with = "broker")]
        group: Option<String>,
    },
}

/// The resource (type, name) of `--broker` / `--group`.
fn resource(broker: Option<i32>, group: &Option<String>) -> (i8, String) {
    match group {
        Some(g) => (RESOURCE_GROUP, g.clone()),
        None => (RESOURCE_BROKER, broker.map(|b| b.to_string()).unwrap_or_default()),
    }
}

/// Runs `strata cluster config ...` through `client`.
pub(super) fn run(
    client: &mut Client,
    command: ConfigCommand,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Get { key, broker, group } => {
            get(client, broker, &group, key.as_deref(), output)
        }
        ConfigCommand::Set { key, value, broker, group, validate_only } => {
            let changes = [(AlterOp::Set, key.clone(), Some(value.clone()))];
            let (kind, name) = resource(broker, &group);
            client
                .alter_configs(kind, &name, &changes, validate_only)
                .with_context(|| format!("setting {key}"))?;
            let verb = if validate_only { "would set" } else { "set" };
            println!("{verb} {key}={value} for {}", target(broker, &group));
            Ok(())
        }
        ConfigCommand::Delete { key, broker, group } => {
            let changes = [(AlterOp::Delete, key.clone(), None)];
            let (kind, name) = resource(broker, &group);
            client
                .alter_configs(kind, &name, &changes, false)
                .with_context(|| format!("deleting {key}"))?;
            println!("deleted {key} for {}", target(broker, &group));
            Ok(())
        }
    }
}

fn target(broker: Option<i32>, group: &Option<String>) -> String {
    match (group, broker) {
        (Some(g), _) => format!("group {g}"),
        (None, Some(b)) => format!("broker {b}"),
        (None, None) => "the cluster-wide default".into(),
    }
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-cluster-default",
        4 => "static",
        5 => "default",
        8 => "group",
        _ => "unknown",
    }
}

fn get(
    client: &mut Client,
    broker: Option<i32>,
    group: &Option<String>,
    key: Option<&str>,
    output: Output,
) -> anyhow::Result<()> {
    let configs = match (group, broker) {
        (Some(g), _) => client.describe_configs(RESOURCE_GROUP, g)?,
        (None, None) => client.describe_configs(RESOURCE_BROKER, "")?,
        (None, Some(id)) => {
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
        anyhow::ensure!(!shown.is_empty(), "{k} is not set for {}", target(broker, group));
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

//! `strata quota describe|alter`: client quotas over the Kafka protocol
//! (DescribeClientQuotas, AlterClientQuotas), shaped like `rpk cluster quotas`.
//!
//! Entities are named with `--name user=alice` / `--name client-id=app`, the default entity
//! of a type with `--default user`, and (describe only) any entity of a type with
//! `--any client-id`. Quotas are `producer_byte_rate`, `consumer_byte_rate` (bytes per
//! second) and `request_percentage` (percent of one shard's time): `--add key=value` sets
//! one, `--delete key` removes one.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use strata::client::acls::{QuotaComponent, QuotaEntity, QuotaOp};
use strata::client::Client;

use super::group::{print_table, Output};

/// Flags of `strata quota`.
#[derive(Args, Debug)]
pub struct QuotaArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: QuotaCommand,
}

#[derive(Subcommand, Debug)]
enum QuotaCommand {
    /// Quotas of the entities matching the filter (all without flags).
    Describe {
        /// An entity type and name, `user=alice` or `client-id=app` (repeatable).
        #[arg(long, value_name = "TYPE=NAME")]
        name: Vec<String>,
        /// The default entity of a type, `user` or `client-id` (repeatable).
        #[arg(long, value_name = "TYPE")]
        default: Vec<String>,
        /// Any entity of a type (repeatable).
        #[arg(long, value_name = "TYPE")]
        any: Vec<String>,
        /// Only entities with no other entity type than those given.
        #[arg(long)]
        strict: bool,
    },
    /// Set or remove quotas of one entity.
    Alter {
        /// An entity type and name, `user=alice` or `client-id=app` (repeatable).
        #[arg(long, value_name = "TYPE=NAME")]
        name: Vec<String>,
        /// The default entity of a type, `user` or `client-id` (repeatable).
        #[arg(long, value_name = "TYPE")]
        default: Vec<String>,
        /// Set a quota, `producer_byte_rate=1048576` (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        add: Vec<String>,
        /// Remove a quota (repeatable).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
        /// Only check with the broker; change nothing.
        #[arg(long)]
        dry: bool,
    },
}

/// Runs a `strata quota` command.
pub fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server, "strata-quota")?;
    match args.command {
        QuotaCommand::Describe { name, default, any, strict } => {
            let mut components: Vec<QuotaComponent> = Vec::new();
            for (kind, n) in named(&name)? {
                components.push((kind, 0, Some(n)));
            }
            components.extend(default.into_iter().map(|kind| (kind, 1, None)));
            components.extend(any.into_iter().map(|kind| (kind, 2, None)));
            let entries =
                client.describe_client_quotas(&components, strict).context("describing quotas")?;
            if args.output == Output::Json {
                let items: Vec<_> = entries
                    .iter()
                    .map(|(entity, values)| {
                        let entity: serde_json::Map<String, serde_json::Value> =
                            entity.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        let values: serde_json::Map<String, serde_json::Value> =
                            values.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                        json!({"entity": entity, "values": values})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(());
            }
            let rows = entries
                .iter()
                .flat_map(|(entity, values)| {
                    let entity = describe_entity(entity);
                    values.iter().map(move |(k, v)| vec![entity.clone(), k.clone(), v.to_string()])
                })
                .collect();
            print_table(&["ENTITY", "QUOTA", "VALUE"], rows);
            Ok(())
        }
        QuotaCommand::Alter { name, default, add, delete, dry } => {
            let mut entity: QuotaEntity =
                named(&name)?.into_iter().map(|(k, n)| (k, Some(n))).collect();
            entity.extend(default.into_iter().map(|kind| (kind, None)));
            if entity.is_empty() {
                bail!("name the entity with --name TYPE=NAME or --default TYPE");
            }
            let mut ops: Vec<QuotaOp> = Vec::new();
            for kv in &add {
                let (key, value) = kv
                    .split_once('=')
                    .with_context(|| format!("expected KEY=VALUE, got {kv:?}"))?;
                let value: f64 =
                    value.parse().with_context(|| format!("{key}: {value:?} is not a number"))?;
                ops.push((key.to_owned(), Some(value)));
            }
            ops.extend(delete.into_iter().map(|key| (key, None)));
            if ops.is_empty() {
                bail!("give --add KEY=VALUE or --delete KEY");
            }
            client.alter_client_quotas(&entity, &ops, dry).context("altering quotas")?;
            let what = if dry { "valid (dry run, nothing changed)" } else { "altered" };
            println!("{}: {what}", describe_entity(&entity));
            Ok(())
        }
    }
}

fn named(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            let (kind, name) = item
                .split_once('=')
                .with_context(|| format!("expected TYPE=NAME, got {item:?}"))?;
            Ok((kind.to_owned(), name.to_owned()))
        })
        .collect()
}

fn describe_entity(entity: &QuotaEntity) -> String {
    let parts: Vec<String> = entity
        .iter()
        .map(|(kind, name)| format!("{kind}={}", name.as_deref().unwrap_or("<default>")))
        .collect();
    parts.join(", ")
}

//! `strata topic create|list|describe|delete|alter-config|add-partitions|elect-leaders|move`: topic
//! administration over the Kafka protocol ([`strata::client`]), like Kafka's
//! `kafka-topics.sh` and `kafka-configs.sh`.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use strata::client::admin::{EARLIEST, LATEST};
use strata::client::topics::AlterOp;
use strata::client::Client;

use super::group::{print_table, Output};

/// Flags of `strata topic`.
#[derive(Args, Debug)]
pub struct TopicArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        topic: String,
        /// Partitions [default: the broker's --default-partitions].
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition, at most the cluster's brokers [default: 1].
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, `name=value` (repeatable), e.g. `--config retention.ms=3600000`.
        #[arg(long = "config", value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts.
    List,
    /// Partitions (earliest and latest offsets) and every config with its source.
    Describe {
        /// Topic name.
        topic: String,
    },
    /// Delete topics and all their data.
    Delete {
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Set or remove topic config overrides (applied at once, persisted).
    AlterConfig {
        /// Topic name.
        topic: String,
        /// Set an override, `name=value` (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Remove an override, back to the broker default (repeatable).
        #[arg(long = "delete", value_name = "NAME")]
        delete: Vec<String>,
    },
    /// Grow a topic to this many partitions.
    AddPartitions {
        /// Topic name.
        topic: String,
        /// The new total partition count.
        #[arg(long)]
        total: i32,
    },
    /// Elect leaders (ElectLeaders, KIP-460): the preferred replica, or with `--unclean` any
    /// live replica of a partition that has no leader (may lose acknowledged data).
    ElectLeaders {
        /// Topic [default: every topic].
        topic: Option<String>,
        /// Partitions of the topic (repeatable) [default: all of them].
        #[arg(long = "partition", requires = "topic")]
        partitions: Vec<i32>,
        /// Unclean election instead of preferred.
        #[arg(long)]
        unclean: bool,
    },
    /// Move partitions of a topic to other brokers (a reassignment; see `strata cluster
    /// reassign` for plans over many topics).
    Move {
        /// Topic name.
        topic: String,
        /// Partitions to move (repeatable) [default: all of them].
        #[arg(long = "partition")]
        partitions: Vec<i32>,
        /// Target replicas, comma-separated, preferred leader first.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
    },
}

/// Runs a `strata topic` command.
pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut client = Client::connect_secure(
        &args.bootstrap_server,
        "strata-topic",
        &args.security.connector()?,
    )?;
    let output = args.output;
    match args.command {
        TopicCommand::Create { topic, partitions, replication_factor, configs } => {
            let configs = configs.iter().map(|c| pair(c)).collect::<anyhow::Result<Vec<_>>>()?;
            let (partitions, factor) = (partitions.unwrap_or(-1), replication_factor.unwrap_or(-1));
            client.create_replicated_topic(&topic, partitions, factor, &configs)?;
            done(output, "created", &topic)
        }
        TopicCommand::List => list(&mut client, output),
        TopicCommand::Describe { topic } => describe(&mut client, &topic, output),
        TopicCommand::Delete { topics } => {
            for topic in topics {
                client.delete_topic(&topic)?;
                done(output, "deleted", &topic)?;
            }
            Ok(())
        }
        TopicCommand::AlterConfig { topic, set, delete } => {
            let mut changes = Vec::new();
            for item in &set {
                let (name, value) = pair(item)?;
                changes.push((AlterOp::Set, name, Some(value)));
            }
            changes.extend(delete.into_iter().map(|name| (AlterOp::Delete, name, None)));
            anyhow::ensure!(!changes.is_empty(), "give at least one --set or --delete");
            client.alter_topic_configs(&topic, &changes)?;
            done(output, "altered", &topic)
        }
        TopicCommand::AddPartitions { topic, total } => {
            client.add_partitions(&topic, total)?;
            done(output, "grew", &topic)
        }
        TopicCommand::ElectLeaders { topic, partitions, unclean } => {
            elect_leaders(&mut client, topic, partitions, unclean, output)
        }
        TopicCommand::Move { topic, partitions, replicas } => {
            let partitions =
                if partitions.is_empty() { client.partitions(&topic)? } else { partitions };
            let moves: Vec<_> =
                partitions.iter().map(|p| (topic.clone(), *p, Some(replicas.clone()))).collect();
            super::reassign::answer(&mut client, &moves, output, "moving")
        }
    }
}

fn elect_leaders(
    client: &mut Client,
    topic: Option<String>,
    partitions: Vec<i32>,
    unclean: bool,
    output: Output,
) -> anyhow::Result<()> {
    let wanted: Option<Vec<(String, i32)>> = match topic {
        None => None,
        Some(topic) => {
            let partitions =
                if partitions.is_empty() { client.partitions(&topic)? } else { partitions };
            Some(partitions.into_iter().map(|p| (topic.clone(), p)).collect())
        }
    };
    let answers = client.elect_leaders(wanted.as_deref(), unclean)?;
    // ELECTION_NOT_NEEDED (84) is not a failure: the wanted leader leads.
    let failed = answers.iter().filter(|a| a.2 != 0 && a.2 != 84).count();
    if output == Output::Json {
        let rows: Vec<_> = answers
            .iter()
            .map(|(t, p, code, message)| {
                json!({"topic": t, "partition": p, "error_code": code, "error_message": message})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let rows = answers
            .iter()
            .map(|(t, p, code, message)| {
                let result = match code {
                    0 => "elected".to_owned(),
                    84 => "not needed".to_owned(),
                    code => format!("error {code}"),
                };
                vec![t.clone(), p.to_string(), result, message.clone().unwrap_or_default()]
            })
            .collect();
        print_table(&["TOPIC", "PARTITION", "RESULT", "MESSAGE"], rows);
    }
    anyhow::ensure!(failed == 0, "{failed} partition(s) could not be elected");
    Ok(())
}

fn pair(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) =
        text.split_once('=').with_context(|| format!("{text:?} is not NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

fn done(output: Output, what: &str, topic: &str) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", json!({ "topic": topic, "result": what })),
        Output::Table => println!("{what} topic {topic}"),
    }
    Ok(())
}

fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let topics = client.list_topics()?;
    if output == Output::Json {
        let rows: Vec<_> = topics
            .iter()
            .map(|t| {
                json!({
                    "topic": t.name, "id": t.id.to_string(),
                    "partitions": t.partitions, "internal": t.internal,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows = topics
        .iter()
        .map(|t| vec![t.name.clone(), t.partitions.to_string(), t.internal.to_string()])
        .collect();
    print_table(&["TOPIC", "PARTITIONS", "INTERNAL"], rows);
    Ok(())
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        4 => "broker",
        5 => "default",
        _ => "other",
    }
}

fn describe(client: &mut Client, topic: &str, output: Output) -> anyhow::Result<()> {
    let layout = client.layout(topic)?;
    let partitions: Vec<i32> = layout.keys().copied().collect();
    let earliest = client.leader_offsets(topic, &partitions, EARLIEST)?;
    let latest = client.leader_offsets(topic, &partitions, LATEST)?;
    let configs = client.describe_topic_configs(topic)?;
    let offsets = |p: &i32| (earliest.get(p).copied(), latest.get(p).copied());
    if output == Output::Json {
        let parts: Vec<_> = partitions
            .iter()
            .map(|p| {
                let (low, high) = offsets(p);
                let place = layout.get(p);
                json!({
                    "partition": p, "leader": place.map(|l| l.leader),
                    "replicas": place.map(|l| &l.replicas), "isr": place.map(|l| &l.isr),
                    "earliest": low, "latest": high,
                })
            })
            .collect();
        let configs: Vec<_> = configs
            .iter()
            .map(|c| json!({ "name": c.name, "value": c.value, "source": source_name(c.source) }))
            .collect();
        let all = json!({ "topic": topic, "partitions": parts, "configs": configs });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("topic {topic} has {} partition(s)\n", partitions.len());
    let opt = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    let rows = partitions
        .iter()
        .map(|p| {
            let (low, high) = offsets(p);
            let ids = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            let (leader, replicas, isr) = match layout.get(p) {
                Some(l) => (l.leader.to_string(), ids(&l.replicas), ids(&l.isr)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            vec![p.to_string(), leader, replicas, isr, opt(low), opt(high)]
        })
        .collect();
    print_table(&["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "LATEST"], rows);
    println!();
    let rows = configs
        .iter()
        .map(|c| {
            let value = c.value.clone().unwrap_or_else(|| "-".into());
            vec![c.name.clone(), value, source_name(c.source).to_owned()]
        })
        .collect();
    print_table(&["CONFIG", "VALUE", "SOURCE"], rows);
    Ok(())
}

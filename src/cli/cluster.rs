//! `strata cluster info`: brokers, the controller and under-replicated partitions, over the
//! Kafka protocol (DescribeCluster and Metadata), like `kafka-metadata-quorum.sh` and
//! `kafka-topics.sh --under-replicated-partitions`; `strata cluster reassign`: partition
//! moves from a JSON plan, like `kafka-reassign-partitions.sh` (generate, execute, verify,
//! cancel, list); `strata cluster config`: dynamic broker configs (see `cluster_config`);
//! `strata cluster decommission|decommission-status|recommission`: draining a broker and
//! letting it back (UnregisterBroker, DescribeQuorum, BrokerRegistration: see the broker's
//! `handlers::brokers`).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use strata::client::Client;

use super::group::{print_table, Output};

/// Flags of `strata cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Broker to talk to (any broker of the cluster).
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Brokers (alive: heard from by the controller lately), the controller, and partitions
    /// with fewer in-sync replicas than replicas.
    Info,
    /// Move partitions between brokers (AlterPartitionReassignments) from a JSON plan
    /// `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3,4]}]}`.
    #[command(subcommand)]
    Reassign(super::reassign::ReassignCommand),
    /// Dynamic broker configs, cluster-wide or per broker (like `rpk cluster config` and
    /// `kafka-configs.sh --entity-type brokers`).
    #[command(subcommand)]
    Config(super::cluster_config::ConfigCommand),
    /// Drain broker N: every replica it holds moves to other brokers (racks respected), it
    /// gets no new ones, then it leaves the controller's Raft membership and may be stopped.
    /// Prints progress until done (or returns at once with --no-wait).
    Decommission {
        /// The broker's node id.
        id: i32,
        /// Start it and return; `decommission-status` tells how far it went.
        #[arg(long)]
        no_wait: bool,
    },
    /// How far the decommissioning of broker N went: replicas left, membership.
    DecommissionStatus {
        /// The broker's node id.
        id: i32,
    },
    /// Let a decommissioned broker back: it may join the membership and receive replicas.
    Recommission {
        /// The broker's node id.
        id: i32,
    },
}

/// Pause between progress checks of `strata cluster decommission`.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `strata cluster ...`.
pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut client = Client::connect_secure(
        &args.bootstrap_server,
        "strata-cluster",
        &args.security.connector()?,
    )?;
    match args.command {
        ClusterCommand::Info => info(&mut client, args.output),
        ClusterCommand::Reassign(command) => {
            super::reassign::run(&mut client, command, args.output)
        }
        ClusterCommand::Config(command) => {
            super::cluster_config::run(&mut client, command, args.output)
        }
        ClusterCommand::Decommission { id, no_wait } => {
            client.decommission(id).map_err(|e| anyhow::anyhow!(describe(&e)))?;
            if no_wait {
                return status(&mut client, id, args.output);
            }
            decommission_progress(&mut client, id, args.output)
        }
        ClusterCommand::DecommissionStatus { id } => status(&mut client, id, args.output),
        ClusterCommand::Recommission { id } => {
            client.recommission(id).map_err(|e| anyhow::anyhow!(describe(&e)))?;
            if args.output == Output::Json {
                println!("{}", json!({"broker": id, "recommissioned": true}));
            } else {
                println!("broker {id} recommissioned");
            }
            Ok(())
        }
    }
}

/// A client error as one line, with the broker's reason.
fn describe(e: &strata::client::ClientError) -> String {
    strata::client::records::describe(e)
}

/// Prints one progress line whenever the count of replicas left or the membership changes,
/// until the broker is drained and out of the membership.
fn decommission_progress(client: &mut Client, id: i32, output: Output) -> anyhow::Result<()> {
    let mut last = None;
    loop {
        let now = client.decommission_status(id).context("checking the decommissioning")?;
        if last.as_ref() != Some(&now) && output == Output::Table {
            let member = if now.member { "still a member" } else { "not a member" };
            println!(
                "broker {id}: {} replica(s) left, {member} of the controller quorum",
                now.replicas
            );
        }
        if now.done() {
            return status(client, id, output);
        }
        last = Some(now);
        std::thread::sleep(PROGRESS_INTERVAL);
    }
}

fn status(client: &mut Client, id: i32, output: Output) -> anyhow::Result<()> {
    let now = client.decommission_status(id).context("checking the decommissioning")?;
    if output == Output::Json {
        let out = json!({"broker": id, "replicas": now.replicas, "member": now.member,
            "done": now.done()});
        println!("{out}");
    } else if now.done() {
        println!("broker {id} is decommissioned: no replicas, out of the controller quorum");
    } else {
        println!("broker {id}: {} replica(s) left, member: {}", now.replicas, now.member);
    }
    Ok(())
}

fn info(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let info = client.cluster_info().context("describing the cluster")?;
    if output == Output::Json {
        let brokers: Vec<_> = info
            .brokers
            .iter()
            .map(|b| {
                let controller = b.id == info.controller;
                json!({"id": b.id, "host": b.host, "port": b.port, "controller": controller,
                    "alive": b.alive})
            })
            .collect();
        let under: Vec<_> = info
            .under_replicated
            .iter()
            .map(|p| {
                json!({"topic": p.topic, "partition": p.partition, "leader": p.leader,
                "replicas": p.replicas, "isr": p.isr})
            })
            .collect();
        let out = json!({"cluster_id": info.cluster_id, "controller": info.controller,
            "brokers": brokers, "under_replicated_partitions": under});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("cluster {}  controller {}\n", info.cluster_id, info.controller);
    let rows = info
        .brokers
        .iter()
        .map(|b| {
            let role = if b.id == info.controller { "controller" } else { "" };
            let state = if b.alive { "alive" } else { "dead" };
            let address = format!("{}:{}", b.host, b.port);
            vec![b.id.to_string(), address, state.to_owned(), role.to_owned()]
        })
        .collect();
    print_table(&["BROKER", "ADDRESS", "STATE", "ROLE"], rows);
    println!("\n{} under-replicated partition(s)", info.under_replicated.len());
    if !info.under_replicated.is_empty() {
        let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let rows = info
            .under_replicated
            .iter()
            .map(|p| {
                vec![
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.leader.to_string(),
                    list(&p.replicas),
                    list(&p.isr),
                ]
            })
            .collect();
        print_table(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"], rows);
    }
    Ok(())
}

//! `strata cluster reassign generate|execute|verify|cancel|list` and the partition moves of
//! `strata topic move`: KIP-455 reassignments from a JSON plan, in the format of Kafka's
//! `kafka-reassign-partitions.sh`
//! (`{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[2,3,4]}]}`).

use anyhow::Context;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strata::client::Client;

use super::group::{print_table, Output};

/// Subcommands of `strata cluster reassign`.
#[derive(Subcommand, Debug)]
pub enum ReassignCommand {
    /// Print the current assignment of `--topics` and a proposed one spreading each
    /// partition's replicas round-robin over `--brokers` (same replication factor).
    Generate {
        /// Topics to move, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        topics: Vec<String>,
        /// Brokers to place them on, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        brokers: Vec<i32>,
    },
    /// Start the moves of a plan file.
    Execute {
        /// The plan (JSON).
        #[arg(long)]
        plan: std::path::PathBuf,
    },
    /// Whether each move of a plan is done: replicas as planned, no reassignment left.
    Verify {
        /// The plan (JSON).
        #[arg(long)]
        plan: std::path::PathBuf,
    },
    /// Cancel the moves of a plan still in progress (their replicas go back).
    Cancel {
        /// The plan (JSON).
        #[arg(long)]
        plan: std::path::PathBuf,
    },
    /// Reassignments in progress, with the replicas being added and removed.
    List,
}

/// One partition of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Target replicas, preferred leader first.
    pub replicas: Vec<i32>,
}

/// A reassignment plan, as kafka-reassign-partitions.sh writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Always 1.
    pub version: i32,
    /// The moves.
    pub partitions: Vec<PlannedPartition>,
}

fn read_plan(path: &std::path::Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plan {}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a reassignment plan", path.display()))?;
    anyhow::ensure!(plan.version == 1, "plan version {} (only 1 exists)", plan.version);
    Ok(plan)
}

/// Runs one `strata cluster reassign` command.
pub(super) fn run(
    client: &mut Client,
    command: ReassignCommand,
    output: Output,
) -> anyhow::Result<()> {
    match command {
        ReassignCommand::Generate { topics, brokers } => generate(client, &topics, &brokers),
        ReassignCommand::Execute { plan } => {
            let plan = read_plan(&plan)?;
            let moves = plan
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, Some(p.replicas.clone())))
                .collect::<Vec<_>>();
            answer(client, &moves, output, "started")
        }
        ReassignCommand::Cancel { plan } => {
            let plan = read_plan(&plan)?;
            let moves = plan
                .partitions
                .iter()
                .map(|p| (p.topic.clone(), p.partition, None))
                .collect::<Vec<_>>();
            answer(client, &moves, output, "cancelled")
        }
        ReassignCommand::Verify { plan } => verify(client, &read_plan(&plan)?, output),
        ReassignCommand::List => list(client, output),
    }
}

/// Sends `moves`; prints each partition's result; fails if any was refused.
pub(super) fn answer(
    client: &mut Client,
    moves: &[(String, i32, Option<Vec<i32>>)],
    output: Output,
    done: &str,
) -> anyhow::Result<()> {
    let answers = client.alter_reassignments(moves).context("reassigning partitions")?;
    let failed = answers.iter().filter(|a| a.2 != 0).count();
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
                let result = if *code == 0 { done.to_owned() } else { format!("error {code}") };
                vec![t.clone(), p.to_string(), result, message.clone().unwrap_or_default()]
            })
            .collect();
        print_table(&["TOPIC", "PARTITION", "RESULT", "MESSAGE"], rows);
    }
    anyhow::ensure!(failed == 0, "{failed} partition(s) refused");
    Ok(())
}

fn generate(client: &mut Client, topics: &[String], brokers: &[i32]) -> anyhow::Result<()> {
    anyhow::ensure!(!brokers.is_empty(), "give at least one broker");
    let placements = client.placements(topics).context("reading the current assignment")?;
    let current = Plan {
        version: 1,
        partitions: placements
            .iter()
            .map(|p| PlannedPartition {
                topic: p.topic.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
            })
            .collect(),
    };
    let mut proposed = current.clone();
    for (i, p) in proposed.partitions.iter_mut().enumerate() {
        let factor = p.replicas.len().max(1);
        anyhow::ensure!(
            factor <= brokers.len(),
            "{}-{} has {factor} replicas; only {} brokers given",
            p.topic,
            p.partition,
            brokers.len()
        );
        p.replicas = (0..factor).map(|j| brokers[(i + j) % brokers.len()]).collect();
    }
    let out = json!({"current": current, "proposed": proposed});
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn verify(client: &mut Client, plan: &Plan, output: Output) -> anyhow::Result<()> {
    let topics: Vec<String> = {
        let mut t: Vec<String> = plan.partitions.iter().map(|p| p.topic.clone()).collect();
        t.sort();
        t.dedup();
        t
    };
    let placements = client.placements(&topics)?;
    let ongoing = client.list_reassignments()?;
    let mut rows = Vec::new();
    let mut all_done = true;
    for want in &plan.partitions {
        let now =
            placements.iter().find(|p| p.topic == want.topic && p.partition == want.partition);
        let moving =
            ongoing.iter().find(|r| r.topic == want.topic && r.partition == want.partition);
        let state = match (now, moving) {
            (_, Some(_)) => "in progress",
            (Some(p), None) if p.replicas == want.replicas => "complete",
            (Some(_), None) => "not as planned",
            (None, None) => "unknown partition",
        };
        all_done &= state == "complete";
        rows.push((want, now.map(|p| p.replicas.clone()), moving.cloned(), state));
    }
    if output == Output::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(want, now, moving, state)| {
                json!({"topic": want.topic, "partition": want.partition, "state": state,
                    "planned": want.replicas, "replicas": now,
                    "adding": moving.as_ref().map(|m| m.adding.clone()),
                    "removing": moving.as_ref().map(|m| m.removing.clone())})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"complete": all_done, "partitions": list}))?
        );
        return Ok(());
    }
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let table = rows
        .iter()
        .map(|(want, now, _, state)| {
            let now = now.as_deref().map(ids).unwrap_or_default();
            vec![
                want.topic.clone(),
                want.partition.to_string(),
                ids(&want.replicas),
                now,
                (*state).into(),
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "PLANNED", "REPLICAS", "STATE"], table);
    Ok(())
}

fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let ongoing = client.list_reassignments()?;
    if output == Output::Json {
        let rows: Vec<_> = ongoing
            .iter()
            .map(|r| {
                json!({"topic": r.topic, "partition": r.partition, "replicas": r.replicas,
                    "adding": r.adding, "removing": r.removing})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let rows = ongoing
        .iter()
        .map(|r| {
            vec![
                r.topic.clone(),
                r.partition.to_string(),
                ids(&r.replicas),
                ids(&r.adding),
                ids(&r.removing),
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"], rows);
    println!("\n{} reassignment(s) in progress", ongoing.len());
    Ok(())
}

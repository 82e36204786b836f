//! `strata share-group list|describe`: share group (KIP-932) administration over the Kafka
//! protocol ([`strata::client`]), like Kafka's `kafka-share-groups.sh`: members, their
//! assignments, and per partition the share-partition start offset, the log end and the lag
//! (KIP-1226: records from the start offset to the high watermark not yet acknowledged or
//! archived, as DescribeShareGroupOffsets v1 answers it; from a broker that does not know it,
//! the records from the start offset to the log end, at most).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde_json::json;
use strata::client::admin::LATEST;
use strata::client::routing::Coordinator;
use strata::client::Client;

use super::group::{print_table, warn_unreachable, Output};

/// Flags of `strata share-group`.
#[derive(Args, Debug)]
pub struct ShareGroupArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: ShareGroupCommand,
}

#[derive(Subcommand, Debug)]
enum ShareGroupCommand {
    /// List every share group.
    List,
    /// Members, assignments, and per partition the start offset, log end and lag.
    Describe {
        /// Group id.
        group: String,
    },
}

/// Runs a `strata share-group` command.
pub fn run(args: ShareGroupArgs) -> anyhow::Result<()> {
    let mut client = Client::connect_secure(
        &args.bootstrap_server,
        "strata-share-group",
        &args.security.connector()?,
    )?;
    match args.command {
        ShareGroupCommand::List => list(&mut client, args.output),
        ShareGroupCommand::Describe { group } => describe(&mut client, &group, args.output),
    }
}

fn list_share_groups(
    client: &mut Client,
) -> Result<Vec<(String, String)>, strata::client::ClientError> {
    let req =
        ListGroupsRequest::default().with_types_filter(vec![StrBytes::from_static_str("share")]);
    let (_, response) = client.call(ApiKey::ListGroups, 5, RequestKind::ListGroups(req))?;
    let ResponseKind::ListGroups(r) = response else { return Ok(Vec::new()) };
    strata::client::ClientError::check(r.error_code, "ListGroups")?;
    Ok(r.groups
        .iter()
        .filter(|g| g.group_type.as_str() == "share")
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect())
}

fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let (mut groups, failed) = client.on_every_broker(list_share_groups)?;
    warn_unreachable(&failed, "share groups");
    groups.sort();
    groups.dedup();
    if output == Output::Json {
        let rows: Vec<_> = groups.iter().map(|(g, s)| json!({"group": g, "state": s})).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print_table(&["GROUP", "STATE"], groups.into_iter().map(|(g, s)| vec![g, s]).collect());
    Ok(())
}

/// A share group and, per share-partition, its start offset and lag (-1: not known).
type Described =
    (share_group_describe_response::DescribedGroup, BTreeMap<(String, i32), (i64, i64)>);

fn fetch_description(
    c: &mut Client,
    group: &str,
) -> Result<Described, strata::client::ClientError> {
    use strata::client::ClientError;
    let req = ShareGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let (_, response) =
        c.call(ApiKey::ShareGroupDescribe, 1, RequestKind::ShareGroupDescribe(req))?;
    let ResponseKind::ShareGroupDescribe(r) = response else {
        return Err(ClientError::Unsupported(ApiKey::ShareGroupDescribe));
    };
    let described = r.groups.into_iter().next().unwrap_or_default();
    ClientError::check(described.error_code, format!("describing share group {group}"))?;
    let g = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(None);
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![g]);
    let (_, response) =
        c.call(ApiKey::DescribeShareGroupOffsets, 1, RequestKind::DescribeShareGroupOffsets(req))?;
    let mut starts = BTreeMap::new();
    if let ResponseKind::DescribeShareGroupOffsets(r) = response {
        for g in r.groups {
            ClientError::check(g.error_code, format!("offsets of share group {group}"))?;
            for t in g.topics {
                for p in t.partitions {
                    let key = (t.topic_name.0.to_string(), p.partition_index);
                    starts.insert(key, (p.start_offset, p.lag));
                }
            }
        }
    }
    Ok((described, starts))
}

/// Whether `group` is a share group (its coordinator describes it through ShareGroupDescribe).
/// A broker without share groups answers no.
pub(super) fn is_share_group(client: &mut Client, group: &str) -> anyhow::Result<bool> {
    use strata::client::ClientError;
    let asked = client.with_coordinator(Coordinator::Group, group, |c| {
        let req = ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
        match c.call(ApiKey::ShareGroupDescribe, 1, RequestKind::ShareGroupDescribe(req)) {
            Ok((_, ResponseKind::ShareGroupDescribe(r))) => {
                Ok(r.groups.first().is_some_and(|g| g.error_code == 0 && !g.group_state.is_empty()))
            }
            Ok(_) | Err(ClientError::Unsupported(_)) => Ok(false),
            Err(e) => Err(e),
        }
    });
    asked.with_context(|| format!("asking whether {group} is a share group"))
}

pub(super) fn describe(client: &mut Client, group: &str, output: Output) -> anyhow::Result<()> {
    let (described, starts) = client
        .with_coordinator(Coordinator::Group, group, |c| fetch_description(c, group))
        .with_context(|| format!("describing share group {group}"))?;
    if described.group_state.is_empty() {
        bail!("share group {group} not found");
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in starts.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    for (topic, parts) in by_topic {
        for (p, end) in client.leader_offsets(&topic, &parts, LATEST)? {
            ends.insert((topic.clone(), p), end);
        }
    }
    let members: Vec<(String, i32, String, String, Vec<String>)> = described
        .members
        .iter()
        .map(|m| {
            let assigned = m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| format!("{}-{p}", t.topic_name.0)))
                .collect();
            (
                m.member_id.to_string(),
                m.member_epoch,
                m.client_id.to_string(),
                m.client_host.to_string(),
                assigned,
            )
        })
        .collect();
    let rows: Vec<(String, i32, i64, Option<i64>, i64)> = starts
        .iter()
        .map(|((t, p), (start, lag))| {
            (t.clone(), *p, *start, ends.get(&(t.clone(), *p)).copied(), *lag)
        })
        .collect();
    let lag = |start: i64, end: Option<i64>, told: i64| {
        if told >= 0 {
            return Some(told);
        }
        end.filter(|_| start >= 0).map(|e| (e - start).max(0))
    };
    if output == Output::Json {
        let members: Vec<_> = members
            .iter()
            .map(|(id, epoch, client, host, assigned)| {
                json!({
                    "member_id": id,
                    "member_epoch": epoch,
                    "client_id": client,
                    "host": host,
                    "assignment": assigned,
                })
            })
            .collect();
        let partitions: Vec<_> = rows
            .iter()
            .map(|(t, p, start, end, told)| {
                json!({
                    "topic": t,
                    "partition": p,
                    "start_offset": start,
                    "log_end_offset": end,
                    "lag": lag(*start, *end, *told),
                })
            })
            .collect();
        let out = json!({
            "group": group,
            "state": described.group_state.to_string(),
            "group_epoch": described.group_epoch,
            "members": members,
            "partitions": partitions,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "share group {group} is {} (epoch {}) with {} member(s)\n",
        described.group_state,
        described.group_epoch,
        members.len()
    );
    let table = members
        .into_iter()
        .map(|(id, epoch, client, host, assigned)| {
            vec![id, epoch.to_string(), client, host, assigned.join(",")]
        })
        .collect();
    print_table(&["MEMBER-ID", "EPOCH", "CLIENT-ID", "HOST", "ASSIGNMENT"], table);
    println!();
    let opt = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    let table = rows
        .into_iter()
        .map(|(t, p, start, end, told)| {
            vec![t, p.to_string(), start.to_string(), opt(end), opt(lag(start, end, told))]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "START-OFFSET", "LOG-END-OFFSET", "LAG"], table);
    Ok(())
}

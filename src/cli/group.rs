//! `strata group list|describe|delete|reset-offsets`: consumer group administration over the
//! Kafka protocol ([`strata::client`]), like Kafka's `kafka-consumer-groups.sh`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use strata::client::admin::{Offsets, EARLIEST, LATEST};
use strata::client::routing::{Coordinator, Unanswered};
use strata::client::Client;
use strata::group::consumer::classic::decode_assignment;

/// Flags of `strata group`.
#[derive(Args, Debug)]
pub struct GroupArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: GroupCommand,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List every consumer group.
    List,
    /// Members, assignments, committed offsets, log end offsets and lag of a group.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete groups (each must be empty) and their committed offsets.
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Plan (or with --execute, commit) new offsets for a group. The group must be empty.
    ResetOffsets(ResetArgs),
}

#[derive(Args, Debug)]
struct ResetArgs {
    /// Group id.
    group: String,
    /// Topics to reset (all partitions of each).
    #[arg(long, required = true)]
    topic: Vec<String>,
    #[command(flatten)]
    to: ResetTo,
    /// Commit the new offsets (without it, only print the plan).
    #[arg(long)]
    execute: bool,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct ResetTo {
    /// The log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    to_latest: bool,
    /// This offset (clamped to the log's range).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// The first offset at or after this time (ISO 8601, e.g. 2024-05-01T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// The committed offset moved by N (clamped to the log's range).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
}

/// Runs a `strata group` command.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut client = Client::connect_secure(
        &args.bootstrap_server,
        "strata-group",
        &args.security.connector()?,
    )?;
    match args.command {
        GroupCommand::List => list(&mut client, args.output),
        // A share group is shown as `strata share-group describe` shows it (start offsets and
        // lag of its share-partitions; DescribeGroups knows nothing of it).
        GroupCommand::Describe { group }
            if super::share_group::is_share_group(&mut client, &group)? =>
        {
            super::share_group::describe(&mut client, &group, args.output)
        }
        GroupCommand::Describe { group } => describe(&mut client, &group, args.output),
        GroupCommand::Delete { groups } => {
            for group in groups {
                client.with_coordinator(Coordinator::Group, &group, |c| c.delete_group(&group))?;
                println!("deleted group {group}");
            }
            Ok(())
        }
        GroupCommand::ResetOffsets(reset) => reset_offsets(&mut client, reset, args.output),
    }
}

/// ListGroups on every broker (each lists the groups it coordinates).
fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let (mut groups, failed) = client.on_every_broker(Client::list_groups)?;
    warn_unreachable(&failed, "groups");
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups.dedup_by(|a, b| a.group_id == b.group_id);
    if output == Output::Json {
        let rows: Vec<_> = groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.group_id,
                    "type": g.group_type,
                    "state": g.state,
                    "protocol_type": g.protocol_type,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows = groups.iter().map(|g| {
        vec![g.group_id.clone(), g.group_type.clone(), g.state.clone(), g.protocol_type.clone()]
    });
    print_table(&["GROUP", "TYPE", "STATE", "PROTOCOL-TYPE"], rows.collect());
    Ok(())
}

/// Tells on stderr which brokers did not answer a cluster-wide listing of `what`.
pub(super) fn warn_unreachable(failed: &[Unanswered], what: &str) {
    for (broker, e) in failed {
        eprintln!("warning: broker {broker} did not answer ({e}); its {what} are not listed");
    }
}

/// One member's id, client id, host and assigned partitions (and, in a consumer group, its
/// member epoch and the partitions it is still to reach).
struct MemberView {
    id: String,
    client_id: String,
    host: String,
    assigned: Vec<(String, i32)>,
    epoch: Option<i32>,
    target: Vec<(String, i32)>,
    /// Consumer groups: the protocol the member speaks (`classic` inside a converted group).
    member_type: Option<&'static str>,
}

/// A group as `describe` shows it: type, state, epochs and members.
struct GroupView {
    kind: &'static str,
    state: String,
    /// Consumer groups: (group epoch, assignment epoch, assignor).
    epochs: Option<(i32, i32, String)>,
    members: Vec<MemberView>,
}

fn consumer_partitions(
    a: &kafka_protocol::messages::consumer_group_describe_response::Assignment,
) -> Vec<(String, i32)> {
    let topics = a.topic_partitions.iter();
    topics
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_name.0.to_string(), *p)))
        .collect()
}

/// The group through ConsumerGroupDescribe when it is a consumer group, else DescribeGroups.
fn group_view(c: &mut Client, group: &str) -> Result<GroupView, strata::client::ClientError> {
    if let Some(g) = c.describe_consumer_group(group)? {
        let members = g
            .members
            .iter()
            .map(|m| MemberView {
                id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assigned: consumer_partitions(&m.assignment),
                epoch: Some(m.member_epoch),
                target: consumer_partitions(&m.target_assignment),
                member_type: match m.member_type {
                    0 => Some("classic"),
                    1 => Some("consumer"),
                    _ => None,
                },
            })
            .collect();
        let epochs = Some((g.group_epoch, g.assignment_epoch, g.assignor_name.to_string()));
        return Ok(GroupView {
            kind: "consumer",
            state: g.group_state.to_string(),
            epochs,
            members,
        });
    }
    let described = c.describe_group(group)?;
    let members = described
        .members
        .iter()
        .map(|m| MemberView {
            id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assigned: decode_assignment(&m.member_assignment),
            epoch: None,
            target: Vec::new(),
            member_type: None,
        })
        .collect();
    Ok(GroupView {
        kind: "classic",
        state: described.group_state.to_string(),
        epochs: None,
        members,
    })
}

fn describe(client: &mut Client, group: &str, output: Output) -> anyhow::Result<()> {
    let (view, committed) = client.with_coordinator(Coordinator::Group, group, |c| {
        Ok((group_view(c, group)?, c.committed(group)?))
    })?;
    let state = view.state.clone();
    let members = &view.members;
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    partitions.extend(members.iter().flat_map(|m| m.assigned.iter().cloned()));
    let ends = log_end_offsets(client, &partitions)?;
    let owner = |tp: &(String, i32)| members.iter().find(|m| m.assigned.contains(tp));
    let rows: Vec<PartitionRow> = partitions
        .iter()
        .map(|tp| {
            let current = committed.get(tp).copied();
            let end = ends.get(tp).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            PartitionRow { tp: tp.clone(), current, end, lag, member: owner(tp) }
        })
        .collect();
    if output == Output::Json {
        return print_describe_json(group, &view, &rows);
    }
    println!("group {group} is {state} with {} member(s)", members.len());
    if let Some((epoch, assignment_epoch, assignor)) = &view.epochs {
        println!(
            "consumer group (KIP-848): group epoch {epoch}, assignment epoch {assignment_epoch}, \
             assignor {assignor}\n"
        );
        let list = |tps: &[(String, i32)]| {
            let all: Vec<String> = tps.iter().map(|(t, p)| format!("{t}-{p}")).collect();
            if all.is_empty() {
                "-".to_owned()
            } else {
                all.join(",")
            }
        };
        let table = members
            .iter()
            .map(|m| {
                let epoch = m.epoch.map_or("-".into(), |e| e.to_string());
                let kind = m.member_type.unwrap_or("-").to_owned();
                let (assigned, target) = (list(&m.assigned), list(&m.target));
                vec![m.id.clone(), kind, epoch, assigned, target, m.client_id.clone()]
            })
            .collect();
        print_table(&["MEMBER-ID", "TYPE", "EPOCH", "ASSIGNED", "TARGET", "CLIENT-ID"], table);
    }
    println!();
    let opt = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    let table = rows
        .iter()
        .map(|r| {
            vec![
                r.tp.0.clone(),
                r.tp.1.to_string(),
                opt(r.current),
                opt(r.end),
                opt(r.lag),
                r.member.map_or("-".into(), |m| m.id.clone()),
                r.member.map_or("-".into(), |m| m.host.clone()),
                r.member.map_or("-".into(), |m| m.client_id.clone()),
            ]
        })
        .collect();
    let header = ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID"];
    print_table(&[&header[..], &["HOST", "CLIENT-ID"]].concat(), table);
    Ok(())
}

struct PartitionRow<'a> {
    tp: (String, i32),
    current: Option<i64>,
    end: Option<i64>,
    lag: Option<i64>,
    member: Option<&'a MemberView>,
}

fn print_describe_json(
    group: &str,
    view: &GroupView,
    rows: &[PartitionRow<'_>],
) -> anyhow::Result<()> {
    let tps = |tps: &[(String, i32)]| -> Vec<serde_json::Value> {
        tps.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect()
    };
    let members: Vec<_> = view
        .members
        .iter()
        .map(|m| {
            let mut member = json!({
                "member_id": m.id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": tps(&m.assigned),
            });
            if let Some(epoch) = m.epoch {
                member["member_epoch"] = json!(epoch);
                member["target_assignment"] = json!(tps(&m.target));
                if let Some(kind) = m.member_type {
                    member["member_type"] = json!(kind);
                }
            }
            member
        })
        .collect();
    let state = &view.state;
    let partitions: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "topic": r.tp.0, "partition": r.tp.1, "committed_offset": r.current,
                "log_end_offset": r.end, "lag": r.lag, "member_id": r.member.map(|m| &m.id),
            })
        })
        .collect();
    let mut out = json!({
        "group": group, "type": view.kind, "state": state, "members": members,
        "partitions": partitions,
    });
    if let Some((epoch, assignment_epoch, assignor)) = &view.epochs {
        out["group_epoch"] = json!(epoch);
        out["assignment_epoch"] = json!(assignment_epoch);
        out["assignor"] = json!(assignor);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn log_end_offsets(
    client: &mut Client,
    partitions: &BTreeSet<(String, i32)>,
) -> anyhow::Result<Offsets> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut out = Offsets::new();
    for (topic, parts) in by_topic {
        for (p, offset) in client.leader_offsets(topic, &parts, LATEST)? {
            out.insert((topic.to_owned(), p), offset);
        }
    }
    Ok(out)
}

fn reset_offsets(client: &mut Client, args: ResetArgs, output: Output) -> anyhow::Result<()> {
    let group = args.group.as_str();
    let committed = client.with_coordinator(Coordinator::Group, group, |c| c.committed(group))?;
    let mut plan = Offsets::new();
    for topic in &args.topic {
        let partitions = client.partitions(topic)?;
        let low = client.leader_offsets(topic, &partitions, EARLIEST)?;
        let high = client.leader_offsets(topic, &partitions, LATEST)?;
        let at_time = match &args.to.to_datetime {
            Some(text) => {
                Some(client.leader_offsets(topic, &partitions, parse_datetime_ms(text)?)?)
            }
            None => None,
        };
        for p in partitions {
            let (lo, hi) = (low.get(&p).copied().unwrap_or(0), high.get(&p).copied().unwrap_or(0));
            let current = committed.get(&(topic.clone(), p)).copied();
            let target = if args.to.to_earliest {
                lo
            } else if args.to.to_latest {
                hi
            } else if let Some(n) = args.to.to_offset {
                n
            } else if let Some(n) = args.to.shift_by {
                current.unwrap_or(hi).saturating_add(n)
            } else {
                // Past the last timestamp: the log end, as Kafka's tool does.
                at_time.as_ref().and_then(|m| m.get(&p).copied()).filter(|o| *o >= 0).unwrap_or(hi)
            };
            plan.insert((topic.clone(), p), target.clamp(lo, hi));
        }
    }
    print_plan(&args.group, &plan, output)?;
    if !args.execute {
        if output == Output::Table {
            println!("\n(dry run: add --execute to commit these offsets)");
        }
        return Ok(());
    }
    let commit = |c: &mut Client| {
        let state = group_view(c, group)?.state;
        if state != "Empty" && state != "Dead" {
            return Ok(Err(state));
        }
        c.commit(group, &plan).map(Ok)
    };
    let committed = client.with_coordinator(Coordinator::Group, group, commit);
    if let Err(state) = committed.context("committing the new offsets")? {
        bail!("group {group} is {state}: stop its consumers first (it must be empty)");
    }
    if output == Output::Table {
        println!("\ncommitted");
    }
    Ok(())
}

fn print_plan(group: &str, plan: &Offsets, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        let rows: Vec<_> = plan
            .iter()
            .map(|((t, p), o)| json!({"group": group, "topic": t, "partition": p, "new_offset": o}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows = plan
        .iter()
        .map(|((t, p), o)| vec![group.to_owned(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    print_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], rows);
    Ok(())
}

pub(super) fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Parses ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` (no zone = UTC) to epoch ms.
fn parse_datetime_ms(text: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("{text:?} is not an ISO 8601 date-time (2024-05-01T12:00:00Z)");
    let (date, rest) = text.split_once('T').ok_or_else(bad)?;
    let (clock, offset_s) = match rest.find(['Z', '+', '-']) {
        Some(i) => {
            let (clock, zone) = rest.split_at(i);
            (clock, parse_zone(zone).ok_or_else(bad)?)
        }
        None => (rest, 0),
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d[..] else { return Err(bad()) };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let t: Vec<&str> = hms.split(':').collect();
    let (h, mi, sec) = match t[..] {
        [h, m, s] => (num(h)?, num(m)?, num(s)?),
        [h, m] => (num(h)?, num(m)?, 0),
        _ => return Err(bad()),
    };
    let (y, mo, da) = (num(y)?, num(mo)?, num(da)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let millis = num(&format!("{frac:0<3}")[..3])?;
    let days = days_from_civil(y, mo, da);
    Ok(((days * 24 + h) * 60 + mi) * 60_000 + (sec - offset_s) * 1000 + millis)
}

/// `Z`, `+HH:MM`, `-HH:MM` or `±HHMM` → seconds east of UTC.
fn parse_zone(zone: &str) -> Option<i64> {
    if zone == "Z" {
        return Some(0);
    }
    let sign = match zone.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let digits: String = zone.get(1..)?.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return None;
    }
    let h: i64 = digits.get(..2)?.parse().ok()?;
    let m: i64 = digits.get(2..)?.parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_datetime_ms;

    #[test]
    fn iso_8601_date_times_parse_to_epoch_ms() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime_ms("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_datetime_ms("2023-11-14T23:13:20.5+01:00").unwrap(), 1_700_000_000_500);
        assert_eq!(parse_datetime_ms("2023-11-14T22:13:20").unwrap(), 1_700_000_000_000);
        assert!(parse_datetime_ms("yesterday").is_err());
        assert!(parse_datetime_ms("2023-13-14T22:13:20Z").is_err());
    }
}

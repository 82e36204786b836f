//! `strata acl create|list|delete`: ACL administration over the Kafka protocol
//! (CreateAcls, DescribeAcls, DeleteAcls), shaped like `rpk acl`.
//!
//! ACLs (create) and filters (list, delete) are the cross product of the principals, hosts,
//! operations and resources given: `--allow-principal` / `--deny-principal` with
//! `--allow-host` / `--deny-host` (default `*` for create, any for filters), `--operation`
//! (comma-separated), and resources `--topic`, `--group`, `--transactional-id` (repeatable)
//! and `--cluster`, matched as `--resource-pattern-type` (literal or prefixed; for filters
//! also any or match). A filter without resources, principals or operations matches them all.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use strata::client::acls::{Acl, AclFilter};
use strata::client::Client;
use strata::security::acl::{Operation, PatternType, Permission, ResourceType, CLUSTER_NAME};

use super::group::{print_table, Output};

/// Flags of `strata acl`.
#[derive(Args, Debug)]
pub struct AclArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: AclCommand,
}

/// What an ACL or a filter is about.
#[derive(Args, Debug, Clone, Default)]
struct Selection {
    /// Principals to allow (`User:alice`, or `alice` for `User:alice`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    allow_principal: Vec<String>,
    /// Principals to deny, comma-separated.
    #[arg(long, value_delimiter = ',')]
    deny_principal: Vec<String>,
    /// Hosts the allowed principals may connect from [create default: *].
    #[arg(long, value_delimiter = ',')]
    allow_host: Vec<String>,
    /// Hosts the denied principals are denied from [create default: *].
    #[arg(long, value_delimiter = ',')]
    deny_host: Vec<String>,
    /// Operations: all, read, write, create, delete, alter, describe, cluster_action,
    /// describe_configs, alter_configs, idempotent_write; comma-separated.
    #[arg(long, value_delimiter = ',')]
    operation: Vec<String>,
    /// Topics (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Consumer groups (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// Transactional ids (repeatable).
    #[arg(long)]
    transactional_id: Vec<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// How resource names match: literal or prefixed (filters: also any, match)
    /// [default: create literal, filters any].
    #[arg(long)]
    resource_pattern_type: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AclCommand {
    /// Create ACLs.
    Create(Selection),
    /// List the ACLs matching the filter (every ACL without flags).
    List(Selection),
    /// Delete the ACLs matching the filter.
    Delete {
        #[command(flatten)]
        selection: Selection,
        /// Delete even with a filter matching every ACL.
        #[arg(long)]
        all: bool,
    },
}

/// Runs a `strata acl` command.
pub fn run(args: AclArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server, "strata-acl")?;
    match args.command {
        AclCommand::Create(selection) => create(&mut client, &selection, args.output),
        AclCommand::List(selection) => {
            let mut found = Vec::new();
            for filter in filters(&selection)? {
                found.extend(client.describe_acls(&filter).context("listing ACLs")?);
            }
            found.sort();
            found.dedup();
            print_acls(&found, args.output)
        }
        AclCommand::Delete { selection, all } => {
            let filters = filters(&selection)?;
            let everything = filters.iter().any(|f| *f == any_filter());
            if everything && !all {
                bail!("this filter matches every ACL: add --all to delete them all");
            }
            let mut deleted = Vec::new();
            for filter in filters {
                deleted.extend(client.delete_acls(&filter).context("deleting ACLs")?);
            }
            print_acls(&deleted, args.output)
        }
    }
}

fn principal(p: &str) -> String {
    if p.contains(':') {
        p.to_owned()
    } else {
        format!("User:{p}")
    }
}

fn operations(names: &[String]) -> anyhow::Result<Vec<Operation>> {
    names
        .iter()
        .map(|n| Operation::parse(n).with_context(|| format!("unknown operation {n:?}")))
        .collect()
}

fn pattern(s: &Selection, default: PatternType, filter: bool) -> anyhow::Result<PatternType> {
    let Some(name) = &s.resource_pattern_type else { return Ok(default) };
    let p = PatternType::parse(name).with_context(|| format!("unknown pattern type {name:?}"))?;
    let allowed = filter || matches!(p, PatternType::Literal | PatternType::Prefixed);
    if !allowed {
        bail!("an ACL's pattern type is literal or prefixed, not {name}");
    }
    Ok(p)
}

fn resources(s: &Selection) -> Vec<(ResourceType, String)> {
    let mut out: Vec<(ResourceType, String)> = Vec::new();
    out.extend(s.topic.iter().map(|t| (ResourceType::Topic, t.clone())));
    out.extend(s.group.iter().map(|g| (ResourceType::Group, g.clone())));
    out.extend(s.transactional_id.iter().map(|t| (ResourceType::TransactionalId, t.clone())));
    if s.cluster {
        out.push((ResourceType::Cluster, CLUSTER_NAME.to_owned()));
    }
    out
}

/// (principal, hosts, permission) groups of a selection.
fn who(
    s: &Selection,
    default_host: Option<&str>,
) -> Vec<(Option<String>, Option<String>, Permission)> {
    let mut out = Vec::new();
    let hosts = |hosts: &[String]| -> Vec<Option<String>> {
        if hosts.is_empty() {
            vec![default_host.map(str::to_owned)]
        } else {
            hosts.iter().cloned().map(Some).collect()
        }
    };
    for (principals, host_list, permission) in [
        (&s.allow_principal, &s.allow_host, Permission::Allow),
        (&s.deny_principal, &s.deny_host, Permission::Deny),
    ] {
        for p in principals {
            for h in hosts(host_list) {
                out.push((Some(principal(p)), h, permission));
            }
        }
        if principals.is_empty() && !host_list.is_empty() {
            for h in hosts(host_list) {
                out.push((None, h, permission));
            }
        }
    }
    out
}

fn create(client: &mut Client, s: &Selection, output: Output) -> anyhow::Result<()> {
    let ops = operations(&s.operation)?;
    let pattern_type = pattern(s, PatternType::Literal, false)?;
    let resources = resources(s);
    let principals = who(s, Some("*"));
    if ops.is_empty() || resources.is_empty() || principals.is_empty() {
        bail!(
            "give --operation, a resource (--topic, --group, --transactional-id, --cluster) \
             and --allow-principal or --deny-principal"
        );
    }
    let mut acls = Vec::new();
    for (principal, host, permission) in &principals {
        for (rt, name) in &resources {
            for op in &ops {
                acls.push(Acl {
                    resource_type: rt.code(),
                    resource_name: name.clone(),
                    pattern_type: pattern_type.code(),
                    principal: principal.clone().unwrap_or_default(),
                    host: host.clone().unwrap_or_else(|| "*".into()),
                    operation: op.code(),
                    permission: permission.code(),
                });
            }
        }
    }
    let results = client.create_acls(&acls).context("creating ACLs")?;
    let failed = results.iter().filter(|(code, _)| *code != 0).count();
    let rows: Vec<(Acl, String)> = acls
        .into_iter()
        .zip(results)
        .map(|(acl, (code, message))| {
            let error = if code == 0 {
                String::new()
            } else {
                message.unwrap_or_else(|| format!("error {code}"))
            };
            (acl, error)
        })
        .collect();
    print_rows(&rows, output)?;
    if failed > 0 {
        bail!("{failed} ACL(s) were not created");
    }
    Ok(())
}

fn any_filter() -> AclFilter {
    AclFilter {
        resource_type: ResourceType::Any.code(),
        resource_name: None,
        pattern_type: PatternType::Any.code(),
        principal: None,
        host: None,
        operation: Operation::Any.code(),
        permission: Permission::Any.code(),
    }
}

fn filters(s: &Selection) -> anyhow::Result<Vec<AclFilter>> {
    let pattern_type = pattern(s, PatternType::Any, true)?;
    let mut ops = operations(&s.operation)?;
    if ops.is_empty() {
        ops.push(Operation::Any);
    }
    let mut resources: Vec<(ResourceType, Option<String>)> =
        resources(s).into_iter().map(|(rt, n)| (rt, Some(n))).collect();
    if resources.is_empty() {
        resources.push((ResourceType::Any, None));
    }
    let mut principals = who(s, None);
    if principals.is_empty() {
        principals.push((None, None, Permission::Any));
    }
    let mut out = Vec::new();
    for (principal, host, permission) in &principals {
        for (rt, name) in &resources {
            for op in &ops {
                out.push(AclFilter {
                    resource_type: rt.code(),
                    resource_name: name.clone(),
                    pattern_type: pattern_type.code(),
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: op.code(),
                    permission: permission.code(),
                });
            }
        }
    }
    Ok(out)
}

fn print_acls(acls: &[Acl], output: Output) -> anyhow::Result<()> {
    let rows: Vec<(Acl, String)> = acls.iter().map(|a| (a.clone(), String::new())).collect();
    print_rows(&rows, output)
}

fn print_rows(rows: &[(Acl, String)], output: Output) -> anyhow::Result<()> {
    let name = |code, f: fn(i8) -> &'static str| f(code).to_owned();
    let rt = |c| name(c, |c| ResourceType::from_code(c).name());
    let pt = |c| name(c, |c| PatternType::from_code(c).name());
    let op = |c| name(c, |c| Operation::from_code(c).name());
    let perm = |c| name(c, |c| Permission::from_code(c).name());
    if output == Output::Json {
        let items: Vec<_> = rows
            .iter()
            .map(|(a, error)| {
                json!({
                    "principal": a.principal,
                    "host": a.host,
                    "resource_type": rt(a.resource_type),
                    "resource_name": a.resource_name,
                    "resource_pattern_type": pt(a.pattern_type),
                    "operation": op(a.operation),
                    "permission": perm(a.permission),
                    "error": error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    let table = rows
        .iter()
        .map(|(a, error)| {
            vec![
                a.principal.clone(),
                a.host.clone(),
                rt(a.resource_type),
                a.resource_name.clone(),
                pt(a.pattern_type),
                op(a.operation),
                perm(a.permission),
                error.clone(),
            ]
        })
        .collect();
    let header = [
        "PRINCIPAL",
        "HOST",
        "RESOURCE-TYPE",
        "RESOURCE-NAME",
        "RESOURCE-PATTERN-TYPE",
        "OPERATION",
        "PERMISSION",
        "ERROR",
    ];
    print_table(&header, table);
    Ok(())
}

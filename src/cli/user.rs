//! `strata user create|update|delete|list`: SCRAM users over the Kafka protocol
//! (AlterUserScramCredentials and DescribeUserScramCredentials, KIP-554), like
//! `rpk acl user` and `kafka-configs.sh --entity-type users`.
//!
//! The password comes from `--password`, from the first line of stdin when it is not a
//! terminal, or from a prompt without echo. It is salted and hashed here; only the salted
//! password travels, and the brokers keep only keys derived from it.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use serde_json::json;
use strata::client::Client;
use strata::security::sasl::scram::{
    ScramMechanism, ITERATIONS_DEFAULT, ITERATIONS_MAX, ITERATIONS_MIN,
};

use super::group::{print_table, Output};

/// Flags of `strata user`.
#[derive(Args, Debug)]
pub struct UserArgs {
    /// Broker to talk to.
    #[arg(long, env = "STRATA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(flatten)]
    security: super::SecurityArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: UserCommand,
}

/// A SCRAM mechanism, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum MechanismArg {
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl MechanismArg {
    fn scram(self) -> ScramMechanism {
        match self {
            MechanismArg::ScramSha256 => ScramMechanism::Sha256,
            MechanismArg::ScramSha512 => ScramMechanism::Sha512,
        }
    }
}

#[derive(Args, Debug)]
struct Credential {
    /// User name.
    name: String,
    /// The password [default: the first line of stdin, or a prompt on a terminal].
    #[arg(long)]
    password: Option<String>,
    /// SCRAM mechanism of the credential.
    #[arg(long, value_enum, default_value = "SCRAM-SHA-256")]
    mechanism: MechanismArg,
    /// PBKDF2 iterations (4096 to 16384).
    #[arg(long, default_value_t = ITERATIONS_DEFAULT)]
    iterations: i32,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user (fails if it already has a credential for the mechanism).
    Create(Credential),
    /// Change a user's password (creates the credential if missing).
    Update(Credential),
    /// Delete a user (every credential, or the one of --mechanism).
    Delete {
        /// User name.
        name: String,
        /// Delete only this mechanism's credential.
        #[arg(long, value_enum)]
        mechanism: Option<MechanismArg>,
    },
    /// List users with their mechanisms and iteration counts.
    List,
}

/// Runs a `strata user` command.
pub fn run(args: UserArgs) -> anyhow::Result<()> {
    let connector = args.security.connector()?;
    let mut client = Client::connect_secure(&args.bootstrap_server, "strata-user", &connector)?;
    match args.command {
        UserCommand::Create(credential) => set(&mut client, credential, true),
        UserCommand::Update(credential) => set(&mut client, credential, false),
        UserCommand::Delete { name, mechanism } => delete(&mut client, &name, mechanism),
        UserCommand::List => list(&mut client, args.output),
    }
}

fn set(client: &mut Client, credential: Credential, create: bool) -> anyhow::Result<()> {
    let Credential { name, password, mechanism, iterations } = credential;
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
        anyhow::bail!("--iterations must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}");
    }
    let mechanism = mechanism.scram();
    if create {
        let existing = client.describe_users(&[])?;
        let taken = existing
            .iter()
            .any(|u| u.name == name && u.credentials.iter().any(|(m, _)| *m == mechanism));
        if taken {
            anyhow::bail!(
                "user {name:?} already has a {mechanism} credential (use `strata user update`)"
            );
        }
    }
    let password = match password {
        Some(password) => password,
        None => read_password(&name)?,
    };
    if password.is_empty() {
        anyhow::bail!("the password must not be empty");
    }
    client.upsert_user(&name, mechanism, &password, iterations)?;
    let verb = if create { "Created" } else { "Updated" };
    println!("{verb} user {name:?} ({mechanism})");
    Ok(())
}

/// The password from stdin: the first line, or a prompt without echo on a terminal.
fn read_password(name: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(format!("Password for {name}: "))?);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn delete(client: &mut Client, name: &str, mechanism: Option<MechanismArg>) -> anyhow::Result<()> {
    let mechanisms: Vec<ScramMechanism> = match mechanism {
        Some(m) => vec![m.scram()],
        None => {
            let users = client.describe_users(&[name])?;
            users.iter().flat_map(|u| u.credentials.iter().map(|(m, _)| *m)).collect()
        }
    };
    for mechanism in mechanisms {
        client.delete_user(name, mechanism)?;
    }
    println!("Deleted user {name:?}");
    Ok(())
}

fn list(client: &mut Client, output: Output) -> anyhow::Result<()> {
    let users = client.describe_users(&[])?;
    if output == Output::Json {
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                let credentials: Vec<_> = u
                    .credentials
                    .iter()
                    .map(|(m, i)| json!({ "mechanism": m.name(), "iterations": i }))
                    .collect();
                json!({ "name": u.name, "credentials": credentials })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows = users
        .iter()
        .map(|u| {
            let mechanisms: Vec<String> =
                u.credentials.iter().map(|(m, i)| format!("{m} ({i})")).collect();
            vec![u.name.clone(), mechanisms.join(", ")]
        })
        .collect();
    print_table(&["USERNAME", "MECHANISMS (ITERATIONS)"], rows);
    Ok(())
}

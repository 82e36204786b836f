//! `strata topic` against a real broker: create with configs, list, describe (table and
//! JSON), alter-config, add-partitions, delete, and a refused config's message.

mod common;

use std::process::Command;

use common::Broker;

fn topic(broker: &Broker, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["topic", "--bootstrap-server", &broker.bootstrap()])
        .args(args)
        .output()
        .expect("strata runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn ok(broker: &Broker, args: &[&str]) -> String {
    let (success, stdout, stderr) = topic(broker, args);
    assert!(success, "strata topic {args:?} failed: {stderr}");
    stdout
}

fn json(broker: &Broker, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(broker, &all)).expect("valid JSON")
}

fn config<'a>(described: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let configs = described["configs"].as_array().unwrap();
    configs.iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn topic_commands_manage_topics_and_configs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    ok(&broker, &["create", "orders", "--partitions", "3", "--config", "retention.ms=60000"]);

    let listed = ok(&broker, &["list"]);
    assert!(listed.lines().any(|l| l.starts_with("orders") && l.contains(" 3 ")), "{listed}");
    let rows = json(&broker, &["list"]);
    let orders = rows.as_array().unwrap().iter().find(|t| t["topic"] == "orders").unwrap();
    assert_eq!(orders["partitions"], 3);

    let described = json(&broker, &["describe", "orders"]);
    assert_eq!(described["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(described["partitions"][0]["earliest"], 0);
    assert_eq!(config(&described, "retention.ms")["value"], "60000");
    assert_eq!(config(&described, "retention.ms")["source"], "topic");
    let table = ok(&broker, &["describe", "orders"]);
    assert!(table.contains("retention.ms") && table.contains("60000"), "{table}");

    ok(&broker, &["alter-config", "orders", "--set", "cleanup.policy=compact"]);
    ok(&broker, &["alter-config", "orders", "--delete", "retention.ms"]);
    let described = json(&broker, &["describe", "orders"]);
    assert_eq!(config(&described, "cleanup.policy")["value"], "compact");
    assert_eq!(config(&described, "retention.ms")["source"], "default");

    let (success, _, stderr) =
        topic(&broker, &["alter-config", "orders", "--set", "retention.ms=-7"]);
    assert!(!success);
    assert!(stderr.contains("InvalidConfig") && stderr.contains("retention.ms"), "{stderr}");

    ok(&broker, &["add-partitions", "orders", "--total", "5"]);
    assert_eq!(json(&broker, &["describe", "orders"])["partitions"].as_array().unwrap().len(), 5);

    ok(&broker, &["delete", "orders"]);
    let rows = json(&broker, &["list"]);
    assert!(rows.as_array().unwrap().iter().all(|t| t["topic"] != "orders"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "1"]);
    ok(&broker, &["create", "piped", "--partitions", "64"]);
    // `strata topic describe piped | head -0`: the reader is gone before anything is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["topic", "--bootstrap-server", &broker.bootstrap(), "describe", "piped"])
        .stdout(writer)
        .output()
        .expect("strata runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "ended as `head` users expect");
}

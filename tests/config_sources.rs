//! `strata serve` settings from a TOML file, `STRATA_*` variables and flags: precedence
//! (flag > env > file > default) checked on a real process by asking it for Metadata on the
//! port it should listen on, and start-up failures that name the bad key.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{free_port, Conn};
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestKind, ResponseKind};

fn strata(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.arg("serve").args(args).env_remove("RUST_LOG");
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// Starts a broker and waits for its ready line (returned with the child).
fn start(args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut child = strata(args, envs)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("strata runs");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    let Some(ready) = lines.find(|l| {
        seen.push(l.clone());
        l.contains("strata ready")
    }) else {
        let status = child.wait().expect("the broker exited");
        panic!("the broker exited ({status}) before it was ready:\n{}", seen.join("\n"));
    };
    // Keep draining stderr so the broker never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, ready)
}

fn stop(mut child: Child) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(sent.unwrap().success());
    assert!(child.wait().unwrap().success(), "broker exited uncleanly");
}

/// The port the broker at `port` advertises for itself in Metadata.
fn advertised_port(port: u16) -> i32 {
    let mut conn = Conn::connect(format!("127.0.0.1:{port}").parse().unwrap());
    let body = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![])));
    let ResponseKind::Metadata(response) = conn.call(ApiKey::Metadata, 9, body) else {
        panic!("not a Metadata response");
    };
    assert_eq!(response.brokers.len(), 1);
    response.brokers[0].port
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("strata.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (free_port(), free_port(), free_port());
    let text = format!(
        "listen = \"127.0.0.1:{a}\"\ndata_dir = \"{}\"\nshards = 1\nadmin_listen = \"off\"\n\
         segment_prealloc_bytes = 1048576\n",
        dir.path().join("data").display()
    );
    let config = write_config(dir.path(), &text);
    let env_b = format!("127.0.0.1:{b}");
    let flag_c = format!("127.0.0.1:{c}");

    let (child, _) = start(&["--config", &config], &[]);
    assert_eq!(advertised_port(a), i32::from(a));
    stop(child);

    let (child, _) = start(&["--config", &config], &[("STRATA_LISTEN", &env_b)]);
    assert_eq!(advertised_port(b), i32::from(b));
    stop(child);

    let envs = [("STRATA_LISTEN", env_b.as_str())];
    let (child, _) = start(&["--config", &config, "--listen", &flag_c], &envs);
    assert_eq!(advertised_port(c), i32::from(c));
    stop(child);
}

#[test]
fn config_file_from_env_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshards = 1\nadmin_listen = \"off\"\n\
         segment_prealloc_bytes = 1048576\nlog_format = \"json\"\n",
        dir.path().join("data").display()
    );
    let config = write_config(dir.path(), &text);
    let (child, ready) = start(&[], &[("STRATA_CONFIG", &config)]);
    let line: serde_json::Value = serde_json::from_str(&ready).expect("a JSON log line");
    assert_eq!(line["fields"]["message"], "strata ready");
    assert_eq!(line["fields"]["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(line["fields"]["admin"], "off");
    assert_eq!(advertised_port(port), i32::from(port));
    stop(child);
}

/// Runs a broker expected to refuse to start; returns its stderr.
fn refused(args: &[&str], envs: &[(&str, &str)]) -> String {
    let Output { status, stderr, .. } = strata(args, envs).output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!status.success(), "started despite a bad setting:\n{stderr}");
    stderr
}

#[test]
fn bad_keys_and_values_fail_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = ["--data-dir", data.as_str(), "--listen", listen.as_str()];
    let cases = [
        ("shardz = 2\n", "shardz"),
        ("shards = \"many\"\n", "shards"),
        ("admin_listen = \"nowhere\"\n", "admin_listen"),
        ("default_partitions = 0\n", "default-partitions"),
        ("shutdown_timeout_ms = 999999999\n", "shutdown-timeout-ms"),
        ("transactional_id_expiration_ms = 0\n", "transactional-id-expiration-ms"),
        ("producer_id_expiration_ms = 0\n", "producer-id-expiration-ms"),
    ];
    for (text, key) in cases {
        let config = write_config(dir.path(), text);
        let stderr = refused(&[&base[..], &["--config", &config]].concat(), &[]);
        assert!(stderr.contains(key), "{text:?}: error does not name {key}:\n{stderr}");
    }
    let stderr = refused(&base, &[("STRATA_PRODUCER_ID_EXPIRATION_MS", "0")]);
    assert!(stderr.contains("producer-id-expiration-ms"), "{stderr}");
    let stderr = refused(&base, &[("STRATA_SHARDS", "many")]);
    assert!(stderr.contains("--shards"), "{stderr}");
    let stderr = refused(&[&base[..], &["--log-format", "xml"]].concat(), &[]);
    assert!(stderr.contains("--log-format"), "{stderr}");
}

#[test]
fn a_busy_admin_port_fails_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--data-dir", &data, "--listen", &listen, "--admin-listen", &admin];
    let stderr = refused(&args, &[]);
    assert!(stderr.contains("admin-listen"), "{stderr}");
}

/// A client port another socket listens on with SO_REUSEPORT (a second broker started on the
/// same port by mistake, or the listeners of a broker that stopped a moment ago and that the
/// kernel has not closed yet) fails start-up with the listener named. Binding beside it, the
/// broker would have shared the port: the kernel hands part of the new connections to the
/// other socket, and those clients are never answered (or reset when it closes).
#[test]
fn a_client_port_another_socket_listens_on_fails_start_up() {
    use socket2::{Domain, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let squatter = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    squatter.set_reuse_address(true).unwrap();
    squatter.set_reuse_port(true).unwrap();
    // Port 0: a port from `free_port` could be taken by a parallel test before the bind.
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    squatter.bind(&any.into()).unwrap();
    squatter.listen(16).unwrap();
    let port = squatter.local_addr().unwrap().as_socket().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data").display().to_string();
    let args = ["--data-dir", &data, "--listen", &listen, "--admin-listen", "off"];
    let stderr = refused(&args, &[]);
    assert!(stderr.contains(&format!("binding listener PLAINTEXT ({listen})")), "{stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
}

/// `--data-dir data` (the default `./data` is relative too) works from any directory; and a
/// shard that fails at start-up (here: unreadable metadata) stops the whole broker with the
/// reason, instead of leaving the other shards waiting.
#[test]
fn relative_data_dir_works_and_a_failing_shard_stops_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args =
        ["--data-dir", "data", "--listen", &listen, "--shards", "2", "--admin-listen", "off"];
    let mut child = strata(&args, &[])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    assert!(lines.any(|l| l.contains("strata ready")), "broker became ready");
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(advertised_port(port), i32::from(port));
    stop(child);
    let metadata = dir.path().join("data/metadata.json");
    assert!(metadata.exists(), "data landed in the relative directory");

    std::fs::write(&metadata, "not json").unwrap();
    let Output { status, stderr, .. } =
        strata(&args, &[]).current_dir(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(!status.success());
    assert!(stderr.contains("metadata.json is not valid metadata"), "{stderr}");
}

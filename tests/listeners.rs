//! Named listeners (Kafka's `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map`): a broker accepts on each, and Metadata, FindCoordinator
//! and DescribeCluster answer with the addresses of the listener the client came in on, on
//! one broker and across a cluster. The single-listener shorthand (`--listen`) cannot be
//! mixed with them.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{free_port, poll, Broker, Cluster, Conn};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest, RequestKind,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// (node id, host, port) of every broker in a Metadata answer on `at`, sorted.
fn metadata_brokers(at: SocketAddr) -> Vec<(i32, String, i32)> {
    let mut conn = Conn::connect(at);
    let req = MetadataRequest::default().with_topics(None);
    let ResponseKind::Metadata(r) = conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
    else {
        panic!("not a Metadata response")
    };
    let mut brokers: Vec<_> =
        r.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    brokers.sort();
    brokers
}

fn coordinator(at: SocketAddr) -> (String, i32) {
    let mut conn = Conn::connect(at);
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let body = RequestKind::FindCoordinator(req);
    let ResponseKind::FindCoordinator(r) = conn.call(ApiKey::FindCoordinator, 3, body) else {
        panic!("not a FindCoordinator response")
    };
    assert_eq!(r.error_code, 0);
    (r.host.to_string(), r.port)
}

fn described_cluster(at: SocketAddr) -> Vec<(String, i32)> {
    let mut conn = Conn::connect(at);
    let body = RequestKind::DescribeCluster(DescribeClusterRequest::default());
    let ResponseKind::DescribeCluster(r) = conn.call(ApiKey::DescribeCluster, 0, body) else {
        panic!("not a DescribeCluster response")
    };
    r.brokers.iter().map(|b| (b.host.to_string(), b.port)).collect()
}

#[test]
fn each_listener_answers_with_its_own_advertised_address() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &[
            "--listeners",
            "PLAINTEXT://{addr},INTERNAL://127.0.0.1:{free0}",
            "--listener-security-protocol-map",
            "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
            "--advertised-listeners",
            "PLAINTEXT://localhost:{free1},INTERNAL://127.0.0.1:{free0}",
            "--shards",
            "2",
        ],
    );
    let internal = listener_port(&broker.ready_line, "INTERNAL");
    let advertised_public = advertised_port(&broker, "PLAINTEXT");
    assert_eq!(
        metadata_brokers(broker.addr),
        vec![(0, "localhost".to_string(), i32::from(advertised_public))]
    );
    assert_eq!(metadata_brokers(addr(internal)), vec![(0, "127.0.0.1".into(), internal.into())]);
    assert_eq!(coordinator(broker.addr), ("localhost".into(), advertised_public.into()));
    assert_eq!(coordinator(addr(internal)), ("127.0.0.1".into(), internal.into()));
    assert_eq!(described_cluster(addr(internal)), vec![("127.0.0.1".into(), internal.into())]);
}

/// The port of listener `name` in the ready line's `listeners` field (bind addresses).
fn listener_port(ready: &str, name: &str) -> u16 {
    let listeners = common::ready_field(ready, "listeners").expect("a listeners field");
    let item = listeners
        .split(',')
        .find(|l| l.starts_with(&format!("{name}://")))
        .unwrap_or_else(|| panic!("no {name} in {listeners}"));
    let address = item.trim_start_matches(&format!("{name}://"));
    address.parse::<SocketAddr>().unwrap().port()
}

/// The advertised port of listener `name`, from the admin status page.
fn advertised_port(broker: &Broker, name: &str) -> u16 {
    let status = common::http_get(broker.admin.unwrap(), "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let listeners = status["listeners"]["kafka_listeners"].as_array().unwrap();
    let listener = listeners.iter().find(|l| l["name"] == name).unwrap();
    let advertised = listener["advertised"].as_str().unwrap();
    advertised.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn in_a_cluster_metadata_lists_every_broker_on_the_asked_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        dir.path(),
        2,
        &[
            "--listeners",
            "PLAINTEXT://{addr},REPLICATION://127.0.0.1:{free0}",
            "--listener-security-protocol-map",
            "PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT",
            "--inter-broker-listener-name",
            "REPLICATION",
        ],
    );
    let mut replication_ports = Vec::new();
    for broker in &cluster.brokers {
        let status = common::http_get(broker.admin.unwrap(), "/v1/status");
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let advertised = status["listeners"]["advertised"].as_str().unwrap().to_owned();
        replication_ports.push(advertised.rsplit_once(':').unwrap().1.parse::<i32>().unwrap());
    }
    let plain: Vec<(i32, String, i32)> = cluster
        .brokers
        .iter()
        .enumerate()
        .map(|(i, b)| (i as i32 + 1, "127.0.0.1".into(), b.addr.port().into()))
        .collect();
    let replication: Vec<(i32, String, i32)> = replication_ports
        .iter()
        .enumerate()
        .map(|(i, port)| (i as i32 + 1, "127.0.0.1".into(), *port))
        .collect();
    for broker in &cluster.brokers {
        assert_eq!(metadata_brokers(broker.addr), plain);
        let on_replication = addr(replication[broker_index(&cluster, broker)].2 as u16);
        poll("the replication listener's metadata", || {
            (metadata_brokers(on_replication) == replication).then_some(())
        });
    }
}

fn broker_index(cluster: &Cluster, broker: &Broker) -> usize {
    cluster.brokers.iter().position(|b| b.addr == broker.addr).unwrap()
}

#[test]
fn the_shorthand_and_named_listeners_cannot_be_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--listeners", &format!("PLAINTEXT://127.0.0.1:{}", free_port())])
        .args(["--data-dir", &dir.path().display().to_string(), "--admin-listen", "off"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`listeners` and `listen` are both set"), "{stderr}");
}

#[test]
fn a_listener_without_a_protocol_is_refused_naming_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listeners", &format!("SECURE://127.0.0.1:{}", free_port())])
        .args(["--data-dir", &dir.path().display().to_string(), "--admin-listen", "off"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listener.security.protocol.map"), "{stderr}");
}

#[test]
fn listeners_come_from_the_environment_and_the_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let config = dir.path().join("strata.toml");
    let text = format!(
        "listeners = \"PLAINTEXT://127.0.0.1:{a},OTHER://127.0.0.1:{b}\"\n\
         listener_security_protocol_map = \"PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT\"\n\
         admin_listen = \"off\"\nshards = 1\nsegment_prealloc_bytes = 1048576\n\
         data_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(&config, text).unwrap();
    let advertised = format!("OTHER://127.0.0.2:{b}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--config", &config.display().to_string()])
        .env("STRATA_ADVERTISED_LISTENERS", &advertised)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let answered = poll("the OTHER listener to answer", || {
        std::net::TcpStream::connect(addr(b)).ok()?;
        Some(metadata_brokers(addr(b)))
    });
    assert_eq!(answered, vec![(0, "127.0.0.2".into(), b.into())]);
    assert_eq!(metadata_brokers(addr(a)), vec![(0, "127.0.0.1".into(), a.into())]);
    child.kill().unwrap();
    child.wait().unwrap();
}

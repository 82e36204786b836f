//! The controller port trusts only its cluster (issue 15 finding 5): a process without the
//! cluster secret cannot keep a killed broker alive with forged heartbeats, a heartbeat of a
//! previous incarnation of a broker is refused, a broker with the wrong secret is refused
//! (counted and logged), and a cluster without a secret does not start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{create, layout, poll, Broker, Cluster, Conn};
use kafka_protocol::messages::*;

/// Brokers DescribeCluster v2 reports as fenced.
fn fenced(conn: &mut Conn) -> Vec<i32> {
    let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let ResponseKind::DescribeCluster(r) =
        conn.call(ApiKey::DescribeCluster, 2, RequestKind::DescribeCluster(req))
    else {
        panic!("not a DescribeCluster response")
    };
    r.brokers.iter().filter(|b| b.is_fenced).map(|b| b.broker_id.0).collect()
}

/// The admin listener's `/metrics` text.
fn scrape(admin: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: strata\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").expect("an HTTP response").1.to_owned()
}

/// `strata_refusals_total{reason="<reason>"}` of a broker (0 when absent).
fn refusals(broker: &Broker, reason: &str) -> u64 {
    let text = scrape(broker.admin.expect("an admin listener"));
    let prefix = format!("strata_refusals_total{{reason=\"{reason}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0)
}

/// A controller frame as the protocol was before authentication: length and JSON.
fn json_frame(json: &str) -> Vec<u8> {
    let mut frame = (json.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(json.as_bytes());
    frame
}

/// Sends forged heartbeats for broker `id` to every controller port until `stop`, with
/// reconnects: what a process on the network without the secret can do.
fn forge_heartbeats(ports: Vec<u16>, id: i32, epoch: i64, stop: Arc<AtomicBool>) {
    let frames = [
        json_frame(&format!(r#"{{"Heartbeat":{{"id":{id}}}}}"#)),
        json_frame(&format!(r#"{{"Heartbeat":{{"id":{id},"epoch":{epoch}}}}}"#)),
    ];
    while !stop.load(Ordering::Relaxed) {
        for port in &ports {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", *port)) else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            for frame in &frames {
                let _ = stream.write_all(frame);
                let mut reply = [0u8; 256];
                let _ = stream.read(&mut reply);
            }
        }
        // Paces the forger (about one round per heartbeat interval); not a synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn forged_heartbeats_without_the_secret_keep_no_killed_broker_alive() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(create(&mut conn, "forged", 3, 3), (0, None));
    poll("broker 3 to lead a partition", || {
        layout(&mut conn, "forged").filter(|l| l.iter().any(|p| p.1 == 3))
    });
    let epoch = cluster.node(3).broker_epoch();
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let (ports, stop) = (cluster.controller_ports.clone(), stop.clone());
        std::thread::spawn(move || forge_heartbeats(ports, 3, epoch, stop))
    };
    cluster.node(3).kill9();
    // Fenced despite the forged heartbeats, and its partitions led by the others.
    poll("broker 3 to be fenced", || (fenced(&mut conn) == vec![3]).then_some(()));
    poll("every partition led by a live broker", || {
        layout(&mut conn, "forged").filter(|l| l.iter().all(|p| [1, 2].contains(&p.1)))
    });
    stop.store(true, Ordering::Relaxed);
    forger.join().unwrap();
    // Each voter refused the forger, counted it and said so (rate-limited).
    for id in [1, 2] {
        assert!(refusals(cluster.node(id), "controller_auth") > 0, "broker {id} counted none");
    }
    let line = cluster.node(1).wait_for_log("controller connection refused");
    assert!(line.contains("controller_auth"), "{line}");
}

/// Heartbeats for broker `id` at `epoch`, through a properly authenticated connection (the
/// test knows the secret): the answers' `refused` reasons, for `rounds` rounds.
fn replay_heartbeats(port: u16, secret: &str, id: i32, epoch: i64) -> Option<String> {
    use strata::controller::quorum::net::{Rpc, RpcReply};
    use strata::controller::quorum::transport::Transport;
    use strata::security::peer_auth::ClusterSecret;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let secret = ClusterSecret::new(secret.as_bytes().to_vec()).unwrap();
        let transport = Transport::new(Some(secret), id, None);
        let mut channel = transport.connect(&format!("127.0.0.1:{port}")).await.ok()?;
        channel.send(&Rpc::Heartbeat { id, epoch }).await.ok()?;
        match channel.recv::<RpcReply>().await.ok()?? {
            RpcReply::Heartbeat { refused, .. } => refused,
            _ => None,
        }
    })
}

#[test]
fn a_heartbeat_of_a_previous_incarnation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    let old = cluster.node(3).broker_epoch();
    cluster.node(3).kill9();
    cluster.node(3).restart();
    let new = cluster.node(3).broker_epoch();
    assert!(new > old, "a new incarnation gets a higher epoch: {old} then {new}");
    let mut conn = Conn::connect(cluster.node(1).addr);
    poll("broker 3 to be alive again", || fenced(&mut conn).is_empty().then_some(()));
    cluster.node(3).kill9();
    // Replayed heartbeats of the old incarnation are refused by every voter, with the reason,
    // and do not keep the dead broker alive.
    let ports = cluster.controller_ports.clone();
    let secret = cluster.secret.clone();
    let answers: Vec<Option<String>> =
        ports[..2].iter().map(|&port| replay_heartbeats(port, &secret, 3, old)).collect();
    for answer in &answers {
        let why = answer.as_deref().expect("the stale heartbeat refused");
        assert!(why.contains(&format!("epoch {old}")), "{why}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let replayer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for &port in &ports[..2] {
                    replay_heartbeats(port, &secret, 3, old);
                }
            }
        })
    };
    poll("broker 3 to be fenced", || (fenced(&mut conn) == vec![3]).then_some(()));
    stop.store(true, Ordering::Relaxed);
    replayer.join().unwrap();
    assert!(refusals(cluster.node(1), "controller_stale_broker_epoch") > 0);
}

#[test]
fn a_broker_with_the_wrong_secret_is_refused_and_a_cluster_needs_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--shards", "1"]);
    // Broker 4, an observer with the wrong secret, never joins.
    let port = common::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let args: Vec<String> = [
        "--node-id",
        "4",
        "--shards",
        "1",
        "--controller-listen",
        &format!("127.0.0.1:{port}"),
        "--controller-voters",
        &cluster.voters,
        "--cluster-secret",
        "not-the-cluster-secret",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut intruder = Broker::launch(addr, dir.path().join("data4"), args);
    let refused = intruder.wait_for_log("controller peer refused");
    assert!(refused.contains("controller_auth"), "{refused}");
    poll("a voter to count the refusal", || {
        (1..=3).any(|id| refusals(cluster.node(id), "controller_auth") > 0).then_some(())
    });
    let mut conn = Conn::connect(cluster.node(1).addr);
    assert_eq!(common::metadata(&mut conn).brokers.len(), 3, "broker 4 never registered");
    drop(intruder);

    // Without any secret, a cluster broker refuses to start, naming the setting.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir"])
        .arg(dir.path().join("nosecret"))
        .args(["--node-id", "1", "--controller-listen", "127.0.0.1:1"])
        .args(["--controller-voters", "1@127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster-secret"), "{stderr}");
}

//! The controller port over mutual TLS (issue 16): when the inter-broker listener is SSL with
//! client certificates required, the brokers' controllers talk TLS with the same certificates
//! and CA, under the cluster-secret handshake. A three-broker cluster forms, elects a new
//! controller when the old one stops, and replicates; on the controller port a peer that
//! knows the secret but speaks plain TCP, presents no certificate, or presents one of another
//! CA is refused at the TLS handshake (counted as `controller_tls`), while one with the
//! cluster's certificate and secret gets its heartbeat answered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use common::tls::{inter_broker_tls_args, TestCa};
use common::{batch, create_with, http_get, layout, metadata, poll, produce, Cluster, Conn};
use strata::config::listener::ClientAuth;
use strata::config::SslConfig;
use strata::controller::quorum::net::{Rpc, RpcReply};
use strata::controller::quorum::transport::Transport;
use strata::security::peer_auth::{ClusterSecret, Hello};
use strata::security::tls::{client_config, server_name, BrokerTls, ClientTlsOptions};

/// TLS state as a broker with `keystore` (certificate and key) trusting `dir/ca.pem` has it.
fn broker_tls(dir: &Path, keystore: &Path) -> Arc<BrokerTls> {
    let ssl = SslConfig {
        keystore_location: Some(keystore.to_owned()),
        truststore_location: Some(dir.join("ca.pem")),
        client_auth: ClientAuth::Required,
        ..SslConfig::default()
    };
    Arc::new(BrokerTls::load(&ssl).unwrap())
}

/// Connects to the controller at `addr` as node 99 with `secret` (over TLS with `tls`) and
/// heartbeats: the reply's refusal reason (node 99 is not registered), or the error.
fn heartbeat(addr: &str, secret: &str, tls: Option<Arc<BrokerTls>>) -> std::io::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let secret = ClusterSecret::new(secret.as_bytes().to_vec()).unwrap();
        let transport = Transport::new(Some(secret), 99, tls);
        let connecting = transport.connect(addr);
        let mut channel = tokio::time::timeout(std::time::Duration::from_secs(10), connecting)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        channel.send(&Rpc::Heartbeat { id: 99, epoch: 1 }).await?;
        match channel.recv::<RpcReply>().await? {
            Some(RpcReply::Heartbeat { refused, .. }) => Ok(refused.unwrap_or_default()),
            _ => Err(std::io::Error::other("not a heartbeat reply")),
        }
    })
}

/// A TLS client trusting the cluster's CA but presenting no certificate sends the secret
/// handshake's hello: what it reads back (an error: the handshake is refused).
fn hello_without_a_certificate(dir: &Path, addr: &str) -> std::io::Result<Vec<u8>> {
    let options = ClientTlsOptions {
        ca: Some(dir.join("ca.pem")),
        check_hostname: true,
        verify: true,
        ..ClientTlsOptions::default()
    };
    let config = Arc::new(client_config(&options).unwrap());
    let tls = rustls::ClientConnection::new(config, server_name("127.0.0.1").unwrap()).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    stream.write_all(&Hello { node_id: 99, nonce: [7; 32] }.encode())?;
    let mut challenge = vec![0u8; strata::security::peer_auth::CHALLENGE_BYTES];
    stream.read_exact(&mut challenge)?;
    Ok(challenge)
}

fn refusals(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("strata_refusals_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn controllers_talk_mutual_tls_and_refuse_peers_without_the_clusters_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let mut args = inter_broker_tls_args(dir.path());
    args.extend(["--shards", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(dir.path(), 3, &args);
    for id in 1..=3 {
        let started = cluster.node(id).startup_log.iter().any(|l| {
            l.contains("starting the controller") && l.contains("transport=\"mTLS\"")
                || l.contains("starting the controller") && l.contains("transport=mTLS")
        });
        assert!(started, "broker {id} did not start its controller over mTLS");
    }

    // Replicates: acks=all with min.insync.replicas=3 needs every replica.
    let mut conn = Conn::connect(cluster.node(1).addr);
    let config = [("min.insync.replicas", "3")];
    assert_eq!(create_with(&mut conn, "over-tls", 1, 3, &config).0, 0);
    let leader = poll("a leader with three in-sync replicas", || {
        let (_, leader, replicas, isr) = layout(&mut conn, "over-tls")?.into_iter().next()?;
        (leader > 0 && replicas.len() == 3 && isr.len() == 3).then_some(leader)
    });
    let mut to_leader = Conn::connect(cluster.node(leader).addr);
    // Node 1's metadata may name the leader before the leader itself applied it: until then
    // it answers UNKNOWN_TOPIC_OR_PARTITION (retriable), as a Kafka broker does.
    let produced = poll("the leader applied the new topic", || {
        let answer = produce(&mut to_leader, "over-tls", 0, batch(&[(b"k", b"v")]), -1);
        (answer.0 != 3).then_some(answer)
    });
    assert_eq!(produced, (0, 0));

    // Elects: the controller leader stops, another one takes over (votes go over TLS).
    let old = poll("a controller", || Some(metadata(&mut conn).controller_id.0).filter(|&c| c > 0));
    cluster.node(old).signal("STOP");
    let survivor = if old == 1 { 2 } else { 1 };
    let mut via = Conn::connect(cluster.node(survivor).addr);
    poll("a new controller", || {
        let now = metadata(&mut via).controller_id.0;
        (now > 0 && now != old).then_some(())
    });
    cluster.node(old).signal("CONT");

    // The controller port of a running broker: only the cluster's certificate gets in.
    let id = survivor;
    let addr = format!("127.0.0.1:{}", cluster.controller_ports[(id - 1) as usize]);
    let secret = cluster.secret.clone();
    let ours = broker_tls(dir.path(), &dir.path().join("broker.pem"));
    let answered = heartbeat(&addr, &secret, Some(ours)).expect("the cluster's own certificate");
    assert!(answered.contains("not registered"), "{answered}");
    assert!(heartbeat(&addr, &secret, None).is_err(), "plain TCP with the secret got in");
    let other = tempfile::tempdir().unwrap();
    TestCa::new(other.path(), "ca").issue("intruder", &[(rcgen::DnType::CommonName, "x")], true);
    let intruder = broker_tls(dir.path(), &other.path().join("intruder.pem"));
    assert!(heartbeat(&addr, &secret, Some(intruder)).is_err(), "another CA's certificate got in");
    assert!(hello_without_a_certificate(dir.path(), &addr).is_err(), "no certificate got in");
    let admin = cluster.node(id).admin.expect("an admin listener");
    poll("three TLS refusals counted", || {
        (refusals(&http_get(admin, "/metrics"), "controller_tls") >= 3).then_some(())
    });
}

//! TLS listeners (rustls): a test CA made per run with rcgen, a broker with a PLAINTEXT and an
//! SSL listener, and the strata tools' own client over TLS. Checks: produce and consume over
//! SSL, Metadata over the SSL listener answers its address, `ssl.client.auth=required`
//! refuses a client without a certificate and maps a certificate's subject to the principal
//! rules allow, a replaced certificate is used by new connections, and garbage or truncated
//! ClientHellos close cleanly without hurting the broker.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use common::tls::TestCa;
use common::{poll, Broker};
use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestKind, ResponseKind};
use strata::client::{Client, Connector};
use strata::security::client::ClientSecurity;
use strata::security::SecurityProtocol;

fn ssl_port(broker: &Broker) -> u16 {
    let listeners = common::ready_field(&broker.ready_line, "listeners").unwrap();
    let ssl = listeners.split(',').find_map(|l| l.strip_prefix("SSL://")).unwrap();
    ssl.parse::<SocketAddr>().unwrap().port()
}

/// A broker with PLAINTEXT on its usual address and SSL on another port.
fn tls_broker(dir: &Path, extra: &[&str]) -> Broker {
    let keystore = dir.join("broker.pem").display().to_string();
    let truststore = dir.join("ca.pem").display().to_string();
    let mut args = vec![
        "--listeners",
        "PLAINTEXT://{addr},SSL://127.0.0.1:{free0}",
        "--ssl-keystore-location",
        &keystore,
        "--ssl-truststore-location",
        &truststore,
        "--shards",
        "1",
    ];
    args.extend_from_slice(extra);
    Broker::start(dir, &args)
}

fn security(dir: &Path, certificate: Option<&str>) -> Connector {
    let mut properties = vec![
        ("security.protocol".to_string(), "SSL".to_string()),
        ("ssl.ca.location".into(), dir.join("ca.pem").display().to_string()),
    ];
    if let Some(name) = certificate {
        let pem = dir.join(format!("{name}.pem")).display().to_string();
        let key = dir.join(format!("{name}.key")).display().to_string();
        properties.push(("ssl.certificate.location".into(), pem));
        properties.push(("ssl.key.location".into(), key));
    }
    let (security, _) = ClientSecurity::from_properties(&properties).unwrap();
    assert_eq!(security.protocol, SecurityProtocol::Ssl);
    Connector::new(security).unwrap()
}

fn metadata_ports(client: &mut Client) -> Vec<i32> {
    let req = MetadataRequest::default().with_topics(None);
    let (_, ResponseKind::Metadata(r)) =
        client.call(ApiKey::Metadata, 12, RequestKind::Metadata(req)).unwrap()
    else {
        panic!("not a Metadata response")
    };
    r.brokers.iter().map(|b| b.port).collect()
}

fn strata_tool(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_tools_produce_and_consume_over_ssl_and_metadata_names_the_ssl_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let broker = tls_broker(dir.path(), &[]);
    let port = ssl_port(&broker);
    let address = format!("127.0.0.1:{port}");
    let mut client = Client::connect_secure(&address, "test", &security(dir.path(), None)).unwrap();
    assert_eq!(metadata_ports(&mut client), vec![i32::from(port)]);
    let ca_location = format!("ssl.ca.location={}", dir.path().join("ca.pem").display());
    let tls = ["-X", "security.protocol=SSL", "-X", &ca_location];
    let mut create = vec!["topic", "create", "secured", "--bootstrap-server", &address];
    create.extend_from_slice(&tls);
    let out = strata_tool(&create, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut produce = vec!["produce", "secured", "--bootstrap-server", &address];
    produce.extend_from_slice(&tls);
    let out = strata_tool(&produce, "one\ntwo\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = dir.path().join("client.properties");
    std::fs::write(
        &config,
        format!(
            "security.protocol=SSL\nssl.truststore.location={}\n",
            dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let consume = [
        "consume",
        "secured",
        "-n",
        "2",
        "--bootstrap-server",
        &address,
        "--command-config",
        &config,
    ];
    let out = strata_tool(&consume, "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    // A client that trusts another CA refuses the broker's certificate.
    let other = tempfile::tempdir().unwrap();
    TestCa::new(other.path(), "ca");
    assert!(Client::connect_secure(&address, "test", &security(other.path(), None)).is_err());
}

#[test]
fn required_client_certificates_refuse_clients_without_one_and_name_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let subject = [(rcgen::DnType::OrganizationName, "Acme"), (rcgen::DnType::CommonName, "alice")];
    ca.issue("alice", &subject, false);
    let rules = "RULE:^CN=([a-z]+),O=Acme$/$1/U,DEFAULT";
    let mut broker = tls_broker(
        dir.path(),
        &[
            "--ssl-client-auth",
            "required",
            "--ssl-principal-mapping-rules",
            rules,
            "--log-level",
            "info,strata::server::transport=debug",
        ],
    );
    let address = format!("127.0.0.1:{}", ssl_port(&broker));
    let refused = Client::connect_secure(&address, "test", &security(dir.path(), None));
    assert!(refused.is_err(), "a client without a certificate got in");
    broker.wait_for_log("TLS handshake failed");
    let mut alice = Client::connect_secure(&address, "test", &security(dir.path(), Some("alice")))
        .expect("a client with a certificate gets in");
    assert_eq!(metadata_ports(&mut alice).len(), 1);
    let line = broker.wait_for_log("TLS connection");
    assert!(line.contains("User:ALICE"), "{line}");
}

#[test]
fn new_connections_get_a_replaced_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new(dir.path(), "ca");
    first.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let old_trust = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("ca.pem"), old_trust.path().join("ca.pem")).unwrap();
    let mut broker = tls_broker(dir.path(), &["--ssl-reload-check-ms", "200"]);
    let address = format!("127.0.0.1:{}", ssl_port(&broker));
    assert!(Client::connect_secure(&address, "t", &security(old_trust.path(), None)).is_ok());
    // A new CA and a broker certificate from it, written where the broker reads them.
    let second = TestCa::new(dir.path(), "ca");
    second.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    broker.wait_for_log("TLS certificates reloaded");
    poll("new connections to present the new certificate", || {
        Client::connect_secure(&address, "t", &security(dir.path(), None)).ok()
    });
    assert!(Client::connect_secure(&address, "t", &security(old_trust.path(), None)).is_err());
    // SIGHUP reloads too.
    broker.signal("HUP");
    broker.wait_for_log("TLS certificates reloaded");
    assert!(broker.is_running());
}

#[test]
fn garbage_and_truncated_client_hellos_close_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let broker = tls_broker(dir.path(), &[]);
    let address: SocketAddr = format!("127.0.0.1:{}", ssl_port(&broker)).parse().unwrap();
    // A Kafka request where a ClientHello should be; a ClientHello cut short; random bytes.
    let inputs: [&[u8]; 3] = [
        &[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0],
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
        &[0xde, 0xad, 0xbe, 0xef, 0x16, 0x03, 0x03, 0xff, 0xff, 0, 1, 2, 3],
    ];
    for (i, input) in inputs.iter().enumerate() {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        stream.write_all(input).unwrap();
        if i == 1 {
            // Truncated: the broker waits for the rest; the client gives up.
            drop(stream);
            continue;
        }
        let mut rest = Vec::new();
        // An alert at most, then end of stream (or a reset).
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.len() < 64, "answered {} bytes to garbage", rest.len());
    }
    let mut client =
        Client::connect_secure(&address.to_string(), "t", &security(dir.path(), None)).unwrap();
    assert_eq!(metadata_ports(&mut client).len(), 1);
}

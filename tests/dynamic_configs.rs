//! Dynamic broker configs (issue 18 item 5) over the raw protocol, for what the Python
//! clients cannot show: every synonym layer of a broker setting in precedence order with its
//! source, documentation, the cluster-wide default (an empty BROKER name), and connection
//! limits changed at run time applying to the next connection. Against a real `strata serve`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{Broker, Conn};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// IncrementalAlterConfigs on one BROKER resource: the error code and message.
fn alter(conn: &mut Conn, resource: &str, changes: &[(i8, &str, Option<&str>)]) -> (i16, String) {
    let configs = changes
        .iter()
        .map(|(op, name, value)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(name))
                .with_config_operation(*op)
                .with_value(value.map(s))
        })
        .collect();
    let resource = incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(s(resource))
        .with_configs(configs);
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
    let body = RequestKind::IncrementalAlterConfigs(req);
    let ResponseKind::IncrementalAlterConfigs(r) =
        conn.call(ApiKey::IncrementalAlterConfigs, 1, body)
    else {
        panic!("IncrementalAlterConfigs answered with another message");
    };
    let r = &r.responses[0];
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default())
}

/// DescribeConfigs v4 of one BROKER resource with synonyms and documentation.
fn describe(conn: &mut Conn, resource: &str) -> (i16, Vec<DescribeConfigsResourceResult>) {
    let r = describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(BROKER)
        .with_resource_name(s(resource))
        .with_configuration_keys(None);
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![r])
        .with_include_synonyms(true)
        .with_include_documentation(true);
    let ResponseKind::DescribeConfigs(r) =
        conn.call(ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(req))
    else {
        panic!("DescribeConfigs answered with another message");
    };
    let result = &r.results[0];
    (result.error_code, result.configs.clone())
}

fn entry(configs: &[DescribeConfigsResourceResult], name: &str) -> DescribeConfigsResourceResult {
    let found = configs.iter().find(|c| c.name.as_str() == name);
    found.cloned().unwrap_or_else(|| panic!("{name} is not described"))
}

#[test]
fn a_broker_setting_reports_every_layer_in_precedence_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--node-id", "3", "--retention-ms", "5000"]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(alter(&mut conn, "", &[(SET, "log.retention.ms", Some("60000"))]).0, 0);
    assert_eq!(alter(&mut conn, "3", &[(SET, "log.retention.ms", Some("7000"))]).0, 0);
    let (code, configs) = describe(&mut conn, "3");
    assert_eq!(code, 0);
    let retention = entry(&configs, "log.retention.ms");
    assert_eq!(retention.value.as_deref(), Some("7000"));
    assert_eq!(retention.config_source, 2, "DYNAMIC_BROKER_CONFIG");
    assert!(!retention.read_only);
    let layers: Vec<(Option<String>, i8)> = retention
        .synonyms
        .iter()
        .map(|s| (s.value.as_ref().map(|v| v.to_string()), s.source))
        .collect();
    let expected = [("7000", 2), ("60000", 3), ("5000", 4), ("604800000", 5)];
    let expected: Vec<(Option<String>, i8)> =
        expected.iter().map(|(v, source)| (Some(v.to_string()), *source)).collect();
    assert_eq!(layers, expected);
    let doc = retention.documentation.as_ref().map(|d| d.to_string()).unwrap_or_default();
    assert!(doc.contains("dynamic"), "{doc}");
    // A static setting: read-only, and its documentation says why.
    let dirs = entry(&configs, "log.dirs");
    assert!(dirs.read_only);
    assert_eq!(dirs.config_source, 4, "STATIC_BROKER_CONFIG");
    let doc = dirs.documentation.as_ref().map(|d| d.to_string()).unwrap_or_default();
    assert!(doc.contains("read-only"), "{doc}");
    // An empty name lists the cluster-wide values set; another broker's id is refused.
    let (code, defaults) = describe(&mut conn, "");
    assert_eq!(code, 0);
    assert_eq!(defaults.len(), 1);
    assert_eq!(entry(&defaults, "log.retention.ms").config_source, 3);
    assert_eq!(describe(&mut conn, "4").0, 42, "INVALID_REQUEST");
    // A static setting is refused naming why.
    let (code, message) = alter(&mut conn, "3", &[(SET, "node.id", Some("4"))]);
    assert_eq!(code, 42);
    assert!(message.contains("cannot update node.id dynamically"), "{message}");
}

#[test]
fn a_setting_given_at_its_default_value_is_static_as_kafka_reports_server_properties() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--retention-ms", "604800000", "--default-partitions", "1"];
    let broker = Broker::start(dir.path(), &args);
    let mut conn = Conn::connect(broker.addr);
    let (code, configs) = describe(&mut conn, "0");
    assert_eq!(code, 0);
    let retention = entry(&configs, "log.retention.ms");
    assert_eq!(retention.value.as_deref(), Some("604800000"));
    assert_eq!(retention.config_source, 4, "STATIC_BROKER_CONFIG");
    let layers: Vec<i8> = retention.synonyms.iter().map(|s| s.source).collect();
    assert_eq!(layers, [4, 5]);
    assert_eq!(entry(&configs, "num.partitions").config_source, 4);
    // Not given: the built-in default.
    assert_eq!(entry(&configs, "log.retention.bytes").config_source, 5, "DEFAULT_CONFIG");
    assert_eq!(entry(&configs, "log.retention.bytes").synonyms.len(), 1);
}

#[test]
fn a_broker_config_strata_does_not_know_is_stored_as_kafka_stores_it() {
    // librdkafka's admin test sets these on a broker and expects success, as Kafka gives:
    // Kafka refuses only its known static configs and keeps the others.
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    let relogin = "sasl.kerberos.min.time.before.relogin";
    assert_eq!(alter(&mut conn, "0", &[(SET, relogin, Some("58000"))]).0, 0);
    assert_eq!(alter(&mut conn, "", &[(SET, "background.threads", Some("9"))]).0, 0);
    let (code, configs) = describe(&mut conn, "0");
    assert_eq!(code, 0);
    // Reported as Kafka reports a config whose type it does not know: sensitive, no value.
    let stored = entry(&configs, relogin);
    assert_eq!((stored.config_source, stored.is_sensitive, stored.value), (2, true, None));
    assert_eq!(stored.config_type, 0, "UNKNOWN");
    assert_eq!(entry(&configs, "background.threads").config_source, 3);
    let (_, defaults) = describe(&mut conn, "");
    assert_eq!(entry(&defaults, "background.threads").config_source, 3);
    // Bounded: a value past 4 KiB is refused, and so is a static Strata setting.
    let long = "v".repeat(4097);
    assert_eq!(alter(&mut conn, "0", &[(SET, "custom.thing", Some(&long))]).0, 42);
    assert_eq!(alter(&mut conn, "0", &[(SET, "log.dirs", Some("/x"))]).0, 42);
    // Deleting one removes it.
    assert_eq!(alter(&mut conn, "0", &[(DELETE, relogin, None)]).0, 0);
    let (_, configs) = describe(&mut conn, "0");
    assert!(configs.iter().all(|c| c.name.as_str() != relogin));
    // It survives a restart, as every dynamic config does.
    drop(conn);
    let mut broker = broker;
    broker.stop();
    broker.restart();
    let mut conn = Conn::connect(broker.addr);
    let (_, configs) = describe(&mut conn, "0");
    assert_eq!(entry(&configs, "background.threads").config_source, 3);
}

fn from(addr: SocketAddr, ip: [u8; 4]) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
    let socket = socket.unwrap();
    socket.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    TcpStream::from(socket)
}

/// Whether the broker answers an ApiVersions v0 request on `stream` (false: it closed it).
fn answers(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Size 10; api key 18, version 0, correlation id 1, client id null (-1).
    let frame = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    if stream.write_all(&frame).is_err() {
        return false;
    }
    let mut size = [0u8; 4];
    if stream.read_exact(&mut size).is_err() {
        return false;
    }
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).is_ok()
}

#[test]
fn connection_limits_set_at_run_time_apply_to_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2"]);
    let mut admin = Conn::connect_from(broker.addr, IpAddr::from([127, 0, 0, 3]));
    let mut held: Vec<TcpStream> = (0..3).map(|_| from(broker.addr, [127, 0, 0, 1])).collect();
    for stream in &mut held {
        assert!(answers(stream), "no limit yet");
    }
    let set = (SET, "max.connections.per.ip", Some("3"));
    assert_eq!(alter(&mut admin, "", &[set]), (0, String::new()));
    // The three open connections count: a fourth from the same address is refused.
    assert!(!answers(&mut from(broker.addr, [127, 0, 0, 1])), "a 4th from 127.0.0.1");
    assert!(answers(&mut from(broker.addr, [127, 0, 0, 2])), "another address is free");
    let overrides = (SET, "max.connections.per.ip.overrides", Some("127.0.0.1:4"));
    assert_eq!(alter(&mut admin, "0", &[overrides]).0, 0);
    let mut fourth = from(broker.addr, [127, 0, 0, 1]);
    assert!(answers(&mut fourth), "the override allows a 4th");
    held.push(fourth);
    assert!(!answers(&mut from(broker.addr, [127, 0, 0, 1])), "a 5th from 127.0.0.1");
    let deletes = [(DELETE, "max.connections.per.ip", None)];
    assert_eq!(alter(&mut admin, "", &deletes).0, 0);
    let unset = [(DELETE, "max.connections.per.ip.overrides", None)];
    assert_eq!(alter(&mut admin, "0", &unset).0, 0);
    assert!(answers(&mut from(broker.addr, [127, 0, 0, 1])), "back to no limit");
}

//! SASL on a real broker, byte by byte (the raw client of tests/common, the SCRAM client of
//! `strata::security::sasl`): what a SASL listener lets through before a login, logins with
//! SCRAM-SHA-256/512, PLAIN and OAUTHBEARER, failed logins (answer, metric, close), v0 raw
//! tokens, session expiry and re-authentication (KIP-368), SCRAM users over KIP-554's APIs
//! and across restarts, and the bootstrap user. The real clients' side is in
//! tests/clients/test_sasl.py.

mod common;

use common::sasl::{alter, authenticate, handshake, scram_login, upsertion};
use common::{poll, Broker, Conn};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata::security::sasl::oauthbearer;
use strata::security::sasl::scram::{ScramClient, ScramMechanism};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A broker whose client listener is SASL_PLAINTEXT, with the bootstrap admin user and
/// `extra` settings.
fn sasl_broker(dir: &std::path::Path, extra: &[&str]) -> Broker {
    let mut args = vec![
        "--listeners",
        "SASL_PLAINTEXT://{addr}",
        "--sasl-bootstrap-user",
        "admin:admin-secret",
        "--connection-failed-authentication-delay-ms",
        "10",
    ];
    args.extend_from_slice(extra);
    Broker::start(dir, &args)
}

fn logged_in(broker: &Broker, m: ScramMechanism, user: &str, password: &str) -> Conn {
    let mut conn = Conn::connect(broker.addr);
    let done = scram_login(&mut conn, m, user, password);
    assert_eq!(done.error_code, 0, "{:?}", done.error_message);
    conn
}

/// Sends a request without waiting for its answer (correlation id 1).
fn send(conn: &mut Conn, key: ApiKey, version: i16, body: RequestKind) {
    use kafka_protocol::protocol::Encodable;
    let mut frame = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(&mut frame, key.request_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    conn.send_frame(&frame);
}

fn metadata_ok(conn: &mut Conn) -> bool {
    let req = MetadataRequest::default().with_topics(None);
    matches!(conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req)), ResponseKind::Metadata(_))
}

/// `strata_refusals_total{reason}` on the broker's /metrics (0 when absent).
fn refusals(broker: &Broker, reason: &str) -> u64 {
    let text = common::http_get(broker.admin.expect("an admin listener"), "/metrics");
    let needle = format!("strata_refusals_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn metric(broker: &Broker, line_start: &str) -> u64 {
    let text = common::http_get(broker.admin.expect("an admin listener"), "/metrics");
    text.lines().find_map(|l| l.strip_prefix(line_start)).map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn before_a_login_only_api_versions_and_the_handshake_pass() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &[]);
    let mut admin = logged_in(&broker, ScramMechanism::Sha256, ADMIN, ADMIN_PASSWORD);
    common::create_topic(&mut admin, "t", 1);

    let mut conn = Conn::connect(broker.addr);
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("strata-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let ResponseKind::ApiVersions(versions) =
        conn.call(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(req))
    else {
        panic!("not an ApiVersions response")
    };
    let listed = |key: ApiKey| versions.api_keys.iter().any(|a| a.api_key == key as i16);
    assert!(listed(ApiKey::SaslHandshake) && listed(ApiKey::SaslAuthenticate));
    let before = refusals(&broker, "sasl_unauthenticated_request");
    // An unauthenticated Produce is not answered: the connection closes.
    let records = common::batch(&[(b"k", b"sneaky")]);
    let data =
        produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(TopicName(s("t")))
        .with_partition_data(vec![data]);
    let req =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![topic]);
    send(&mut conn, ApiKey::Produce, 9, RequestKind::Produce(req));
    assert!(conn.read_frame().is_none(), "an unauthenticated Produce is never answered");
    assert_eq!(refusals(&broker, "sasl_unauthenticated_request"), before + 1);
    // Nothing was written.
    let fetched = common::fetch_one(&mut admin, "t", 0, 0);
    assert_eq!(fetched.high_watermark, 0);

    // A Metadata request before the login closes the connection too.
    let mut conn = Conn::connect(broker.addr);
    let req = MetadataRequest::default().with_topics(None);
    send(&mut conn, ApiKey::Metadata, 12, RequestKind::Metadata(req));
    assert!(conn.read_frame().is_none());
}

#[test]
fn scram_sha_256_and_512_logins_and_a_wrong_password() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &[]);
    for m in ScramMechanism::ALL {
        let mut conn = logged_in(&broker, m, ADMIN, ADMIN_PASSWORD);
        assert!(metadata_ok(&mut conn));
    }
    let before = refusals(&broker, "sasl_authentication_failed");
    for (user, password) in [(ADMIN, "wrong"), ("nobody", ADMIN_PASSWORD)] {
        let mut conn = Conn::connect(broker.addr);
        let done = scram_login(&mut conn, ScramMechanism::Sha512, user, password);
        assert_eq!(done.error_code, E::SaslAuthenticationFailed.code());
        let message = done.error_message.unwrap().to_string();
        assert!(message.contains("invalid credentials"), "{message}");
        assert!(conn.read_frame().is_none(), "closed after the answer");
    }
    assert_eq!(refusals(&broker, "sasl_authentication_failed"), before + 2);
}

#[test]
fn unsupported_mechanisms_are_refused_with_the_enabled_list() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &["--sasl-enabled-mechanisms", "SCRAM-SHA-512"]);
    let mut conn = Conn::connect(broker.addr);
    let r = handshake(&mut conn, "PLAIN", 1);
    assert_eq!(r.error_code, E::UnsupportedSaslMechanism.code());
    let offered: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, vec!["SCRAM-SHA-512"]);
    assert!(conn.read_frame().is_none());
}

#[test]
fn plain_checks_the_password_against_the_scram_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &["--sasl-enabled-mechanisms", "PLAIN"]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(handshake(&mut conn, "PLAIN", 1).error_code, 0);
    let done = authenticate(&mut conn, format!("\0{ADMIN}\0{ADMIN_PASSWORD}").into_bytes(), 1);
    assert_eq!(done.error_code, 0, "{:?}", done.error_message);
    assert!(metadata_ok(&mut conn));

    let mut conn = Conn::connect(broker.addr);
    handshake(&mut conn, "PLAIN", 1);
    let done = authenticate(&mut conn, format!("\0{ADMIN}\0nope").into_bytes(), 1);
    assert_eq!(done.error_code, E::SaslAuthenticationFailed.code());
    assert!(conn.read_frame().is_none());
}

#[test]
fn a_v0_handshake_is_followed_by_raw_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &["--sasl-enabled-mechanisms", "PLAIN,SCRAM-SHA-256"]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(handshake(&mut conn, "PLAIN", 0).error_code, 0);
    conn.send_frame(format!("\0{ADMIN}\0{ADMIN_PASSWORD}").as_bytes());
    assert_eq!(conn.read_frame().expect("an empty raw answer").len(), 0);
    assert!(metadata_ok(&mut conn), "framed requests again once authenticated");

    let mut conn = Conn::connect(broker.addr);
    assert_eq!(handshake(&mut conn, "SCRAM-SHA-256", 0).error_code, 0);
    let mut client = ScramClient::new(ScramMechanism::Sha256, ADMIN, ADMIN_PASSWORD, "raw0nonce");
    conn.send_frame(&client.first_message());
    let first = conn.read_frame().unwrap();
    conn.send_frame(&client.final_message(&first).unwrap());
    client.check_server_final(&conn.read_frame().unwrap()).unwrap();
    assert!(metadata_ok(&mut conn));

    let mut conn = Conn::connect(broker.addr);
    handshake(&mut conn, "PLAIN", 0);
    conn.send_frame(format!("\0{ADMIN}\0bad").as_bytes());
    assert!(conn.read_frame().is_none(), "a refused raw login just closes");
}

#[test]
fn sessions_end_unless_the_client_reauthenticates() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &["--connections-max-reauth-ms", "3000"]);
    let m = ScramMechanism::Sha256;
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(scram_login(&mut conn, m, ADMIN, ADMIN_PASSWORD).session_lifetime_ms, 3000);
    // Re-authentication on the live connection: a new lifetime, the same connection.
    let again = scram_login(&mut conn, m, ADMIN, ADMIN_PASSWORD);
    assert_eq!((again.error_code, again.session_lifetime_ms), (0, 3000));
    assert!(metadata_ok(&mut conn));
    assert!(metric(&broker, "strata_sasl_authentications_total{kind=\"reauthentication\"} ") >= 1);
    // Another user cannot take the connection over.
    let other = scram_login(&mut conn, m, "nobody", "x");
    assert_eq!(other.error_code, E::SaslAuthenticationFailed.code());

    // Without re-authentication the connection is closed once the session is over.
    let mut conn = logged_in(&broker, m, ADMIN, ADMIN_PASSWORD);
    let before = refusals(&broker, "sasl_session_expired");
    poll("the expired session to be closed", || {
        let req = MetadataRequest::default().with_topics(Some(Vec::new()));
        send(&mut conn, ApiKey::Metadata, 12, RequestKind::Metadata(req));
        conn.read_frame().is_none().then_some(())
    });
    assert_eq!(refusals(&broker, "sasl_session_expired"), before + 1);
}

fn describe(conn: &mut Conn, users: Option<&[&str]>) -> DescribeUserScramCredentialsResponse {
    let users = users.map(|u| u.iter().map(|n| UserName::default().with_name(s(n))).collect());
    let req = DescribeUserScramCredentialsRequest::default().with_users(users);
    let body = RequestKind::DescribeUserScramCredentials(req);
    let ResponseKind::DescribeUserScramCredentials(r) =
        conn.call(ApiKey::DescribeUserScramCredentials, 0, body)
    else {
        panic!("not a DescribeUserScramCredentials response")
    };
    r
}

#[test]
fn scram_users_are_managed_with_kip_554_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = sasl_broker(dir.path(), &[]);
    let mut admin = logged_in(&broker, ScramMechanism::Sha512, ADMIN, ADMIN_PASSWORD);
    let (sha256, sha512) = (ScramMechanism::Sha256, ScramMechanism::Sha512);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        upsertion("alice", sha256, "alice-pw", 4096),
        upsertion("alice", sha512, "alice-pw", 8192),
        upsertion("weak", sha256, "x", 1000),
        upsertion("dup", sha256, "x", 4096),
        upsertion("dup", sha256, "y", 4096),
        upsertion("", sha256, "x", 4096),
    ]);
    let mut results = alter(&mut admin, req);
    results.sort();
    assert_eq!(
        results,
        vec![
            ("".into(), E::UnacceptableCredential.code()),
            ("alice".into(), 0),
            ("dup".into(), E::DuplicateResource.code()),
            ("weak".into(), E::UnacceptableCredential.code()),
        ]
    );
    let unknown = ScramCredentialDeletion::default().with_name(s("ghost")).with_mechanism(1);
    let bad_mechanism = ScramCredentialDeletion::default().with_name(s("alice")).with_mechanism(0);
    let req =
        AlterUserScramCredentialsRequest::default().with_deletions(vec![unknown, bad_mechanism]);
    assert_eq!(
        alter(&mut admin, req),
        vec![
            ("ghost".into(), E::ResourceNotFound.code()),
            ("alice".into(), E::UnsupportedSaslMechanism.code())
        ]
    );

    let all = describe(&mut admin, None);
    let mut names: Vec<String> = all.results.iter().map(|r| r.user.to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["admin", "alice"]);
    let alice = describe(&mut admin, Some(&["alice", "ghost", "alice2"]));
    assert_eq!(alice.results[0].credential_infos.len(), 2);
    assert_eq!(alice.results[0].credential_infos[1].iterations, 8192);
    assert_eq!(alice.results[1].error_code, E::ResourceNotFound.code());
    let twice = describe(&mut admin, Some(&["alice", "alice"]));
    assert_eq!(twice.results[0].error_code, E::DuplicateResource.code());
    drop(logged_in(&broker, sha512, "alice", "alice-pw"));

    broker.stop();
    broker.restart();
    let mut admin = logged_in(&broker, sha256, ADMIN, ADMIN_PASSWORD);
    drop(logged_in(&broker, sha256, "alice", "alice-pw"));
    let gone = ScramCredentialDeletion::default()
        .with_name(s("alice"))
        .with_mechanism(sha256.kafka_type());
    let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![gone]);
    assert_eq!(alter(&mut admin, req), vec![("alice".into(), 0)]);
    let mut conn = Conn::connect(broker.addr);
    let refused = scram_login(&mut conn, sha256, "alice", "alice-pw");
    assert_eq!(refused.error_code, E::SaslAuthenticationFailed.code());
    drop(logged_in(&broker, sha512, "alice", "alice-pw"));
}

#[test]
fn the_bootstrap_user_is_created_once_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = sasl_broker(dir.path(), &[]);
    let mut admin = logged_in(&broker, ScramMechanism::Sha256, ADMIN, ADMIN_PASSWORD);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion(
        ADMIN,
        ScramMechanism::Sha256,
        "rotated",
        4096,
    )]);
    assert_eq!(alter(&mut admin, req), vec![(ADMIN.into(), 0)]);
    broker.stop();
    broker.restart();
    drop(logged_in(&broker, ScramMechanism::Sha256, ADMIN, "rotated"));
    let mut conn = Conn::connect(broker.addr);
    let old = scram_login(&mut conn, ScramMechanism::Sha256, ADMIN, ADMIN_PASSWORD);
    assert_eq!(old.error_code, E::SaslAuthenticationFailed.code());
}

#[test]
fn oauthbearer_unsecured_tokens_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(
        dir.path(),
        &["--sasl-enabled-mechanisms", "OAUTHBEARER", "--sasl-oauthbearer-unsecured", "true"],
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(handshake(&mut conn, "OAUTHBEARER", 1).error_code, 0);
    let token = oauthbearer::unsecured_token("carol", now, now + 3600);
    let done = authenticate(&mut conn, oauthbearer::client_message(&token), 2);
    assert_eq!(done.error_code, 0, "{:?}", done.error_message);
    assert!(done.session_lifetime_ms > 3_500_000 && done.session_lifetime_ms <= 3_600_000);
    assert!(metadata_ok(&mut conn));

    // An expired token: the RFC 7628 error challenge, then the failure.
    let mut conn = Conn::connect(broker.addr);
    handshake(&mut conn, "OAUTHBEARER", 1);
    let token = oauthbearer::unsecured_token("carol", now - 7200, now - 3600);
    let challenge = authenticate(&mut conn, oauthbearer::client_message(&token), 2);
    assert_eq!(challenge.error_code, 0);
    assert_eq!(&challenge.auth_bytes[..], br#"{"status":"invalid_token"}"#);
    let done = authenticate(&mut conn, vec![1], 2);
    assert_eq!(done.error_code, E::SaslAuthenticationFailed.code());
    assert!(done.error_message.unwrap().contains("expired"));
}

#[test]
fn sasl_requests_on_a_plaintext_listener_get_illegal_sasl_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &[]);
    let mut conn = Conn::connect(broker.addr);
    assert_eq!(handshake(&mut conn, "PLAIN", 1).error_code, E::IllegalSaslState.code());
    let r = authenticate(&mut conn, b"\0a\0b".to_vec(), 1);
    assert_eq!(r.error_code, E::IllegalSaslState.code());
    assert!(metadata_ok(&mut conn), "the connection stays usable");
}

#[test]
fn a_large_frame_before_the_login_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &["--sasl-server-max-receive-size", "4096"]);
    let mut conn = Conn::connect(broker.addr);
    conn.send_raw(&(64 * 1024i32).to_be_bytes()).unwrap();
    assert!(conn.is_closed_by_broker());
    // After the login the usual limit applies.
    let mut conn = logged_in(&broker, ScramMechanism::Sha256, ADMIN, ADMIN_PASSWORD);
    common::create_topic(&mut conn, "big", 1);
    let value = vec![7u8; 32 * 1024];
    let (code, _) = common::produce(&mut conn, "big", 0, common::batch(&[(b"k", &value)]), -1);
    assert_eq!(code, 0);
}

/// `strata bench` takes the tools' security settings: a short e2e run over SASL_SSL with
/// SCRAM-SHA-512 consumes every record it produced; with a wrong password it stops, naming
/// the failed login.
#[test]
fn the_bench_runs_over_sasl_ssl_with_scram() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::tls::TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let keystore = dir.path().join("broker.pem").display().to_string();
    let broker = Broker::start(
        dir.path(),
        &[
            "--listeners",
            "PLAINTEXT://{addr},SASL_SSL://127.0.0.1:{free0}",
            "--ssl-keystore-location",
            &keystore,
            "--sasl-bootstrap-user",
            "admin:admin-secret",
            "--sasl-enabled-mechanisms",
            "SCRAM-SHA-512",
            "--connection-failed-authentication-delay-ms",
            "10",
        ],
    );
    let listeners = common::ready_field(&broker.ready_line, "listeners").unwrap();
    let secure = listeners.split(',').find_map(|l| l.strip_prefix("SASL_SSL://")).unwrap();
    let ca_location = format!("ssl.ca.location={}", dir.path().join("ca.pem").display());
    let bench = |password: &str, report: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["bench", "e2e", "--brokers", secure, "--topic", "secure-bench"])
            .args(["--partitions", "2", "--rate", "5k", "--duration", "1s", "--warmup", "200ms"])
            .args(["-X", "security.protocol=SASL_SSL", "-X", &ca_location])
            .args(["-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=admin"])
            .args(["-X", &format!("sasl.password={password}")])
            .arg("--report")
            .arg(report)
            .output()
            .unwrap()
    };
    let report = tempfile::tempdir().unwrap();
    let out = bench("admin-secret", report.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = std::fs::read_to_string(report.path().join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let produced = summary["produced_total"].as_u64().unwrap();
    assert!(produced > 0);
    assert_eq!(summary["consumed_total"].as_u64(), Some(produced));
    let out = bench("wrong", report.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SASL authentication failed"), "{stderr}");
}

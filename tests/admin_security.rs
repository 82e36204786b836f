//! The admin HTTP listener's security (issue 16): HTTPS with a test CA made per run, a bearer
//! token every endpoint but the health probes needs (401 with `WWW-Authenticate: Bearer`
//! without one or with a wrong one, counted as `admin_auth` refusals), tokens rotated through
//! the token file without a restart, `/metrics` made public on request, basic auth with the
//! token as password, and a plaintext client on the HTTPS port dropped cleanly.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use common::tls::TestCa;
use common::{poll, Broker};
use strata::security::tls::{client_config, server_name, ClientTlsOptions};

const TOKEN: &str = "first-admin-token-0123456789";
const ROTATED: &str = "second-admin-token-9876543210";

/// One HTTP/1.1 exchange: the response's head and body.
struct Answer {
    head: String,
    body: String,
}

impl Answer {
    fn status(&self) -> u16 {
        let code = self.head.split(' ').nth(1).unwrap_or_default();
        code.parse().unwrap_or_else(|_| panic!("not an HTTP response: {:?}", self.head))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }
}

fn request(path: &str, authorization: Option<&str>) -> String {
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: strata\r\n{auth}Connection: close\r\n\r\n")
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    Answer { head: head.to_owned(), body: body.to_owned() }
}

/// `GET path` over HTTPS, trusting `dir/ca.pem` and checking the host name.
fn https(admin: SocketAddr, dir: &Path, path: &str, authorization: Option<&str>) -> Answer {
    let options = ClientTlsOptions {
        ca: Some(dir.join("ca.pem")),
        check_hostname: true,
        verify: true,
        ..ClientTlsOptions::default()
    };
    let config = Arc::new(client_config(&options).unwrap());
    let name = server_name(&admin.ip().to_string()).unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, TcpStream::connect(admin).unwrap());
    stream.write_all(request(path, authorization).as_bytes()).unwrap();
    let mut raw = Vec::new();
    // The server ends with close_notify; a bare close after the whole response is fine too.
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

/// `GET path` over plain HTTP.
fn http(admin: SocketAddr, path: &str, authorization: Option<&str>) -> Answer {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.write_all(request(path, authorization).as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `strata_refusals_total{reason}` in a scrape's text (0 when absent).
fn refusals(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("strata_refusals_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn https_admin_needs_the_token_everywhere_but_health_and_rotates_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    ca.issue("broker", &[(rcgen::DnType::CommonName, "broker")], true);
    let tokens = dir.path().join("admin-tokens");
    std::fs::write(&tokens, format!("# the operators' token\n{TOKEN}\n")).unwrap();
    let keystore = dir.path().join("broker.pem").display().to_string();
    let tokens_arg = tokens.display().to_string();
    let broker = Broker::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--admin-ssl-enabled",
            "true",
            "--ssl-keystore-location",
            &keystore,
            "--admin-token-file",
            &tokens_arg,
            "--ssl-reload-check-ms",
            "100",
        ],
    );
    let admin = broker.admin.expect("an admin listener");
    let at = dir.path();

    // The probes need nothing.
    assert_eq!(https(admin, at, "/health/live", None).status(), 200);
    assert_eq!(https(admin, at, "/health/ready", None).status(), 200);

    // Everything else needs the token: none, a wrong one, then the right one.
    let missing = https(admin, at, "/metrics", None);
    assert_eq!(missing.status(), 401, "{}", missing.head);
    let challenge = missing.header("WWW-Authenticate").expect("a WWW-Authenticate header");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!missing.body.contains("strata_"), "metrics leaked without a token");
    let wrong = https(admin, at, "/v1/status", Some(&bearer("not-the-token-0123456789")));
    assert_eq!(wrong.status(), 401);
    assert!(wrong.header("WWW-Authenticate").unwrap().contains("invalid_token"));
    assert_eq!(https(admin, at, "/nowhere", None).status(), 401, "no route list for strangers");
    let status = https(admin, at, "/v1/status", Some(&bearer(TOKEN)));
    assert_eq!(status.status(), 200, "{}", status.head);
    assert!(status.body.contains("\"node_id\""), "{}", status.body);

    // Refusals are counted.
    let metrics = https(admin, at, "/metrics", Some(&bearer(TOKEN)));
    assert_eq!(metrics.status(), 200);
    assert!(refusals(&metrics.body, "admin_auth") >= 3, "{}", metrics.body);

    // A plaintext client on the HTTPS port gets no HTTP answer and is dropped; the
    // listener serves HTTPS after it.
    let mut plain = TcpStream::connect(admin).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    plain.write_all(request("/health/live", None).as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "answered plaintext HTTP on the HTTPS port");
    assert!(answer.len() < 64, "answered {} bytes to plaintext", answer.len());
    let metrics = https(admin, at, "/metrics", Some(&bearer(TOKEN)));
    assert!(refusals(&metrics.body, "admin_tls_handshake") >= 1, "{}", metrics.body);

    // Rotation: the new token joins, then the old one leaves, without a restart.
    std::fs::write(&tokens, format!("{TOKEN}\n{ROTATED}\n")).unwrap();
    poll("the rotated token to be accepted", || {
        (https(admin, at, "/v1/status", Some(&bearer(ROTATED))).status() == 200).then_some(())
    });
    std::fs::write(&tokens, format!("{ROTATED}\n")).unwrap();
    poll("the old token to be refused", || {
        (https(admin, at, "/v1/status", Some(&bearer(TOKEN))).status() == 401).then_some(())
    });
    assert_eq!(https(admin, at, "/v1/status", Some(&bearer(ROTATED))).status(), 200);
}

#[test]
fn public_metrics_and_basic_auth_with_the_token_as_password() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shards", "1", "--admin-metrics-public", "true", "--admin-token", TOKEN];
    let broker = Broker::start(dir.path(), &args);
    let admin = broker.admin.expect("an admin listener");
    let metrics = http(admin, "/metrics", None);
    assert_eq!(metrics.status(), 200);
    assert!(metrics.body.contains("strata_build_info"), "{}", metrics.body);
    assert_eq!(http(admin, "/v1/status", None).status(), 401);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"));
    assert_eq!(http(admin, "/v1/status", Some(&format!("Basic {basic}"))).status(), 200);
    let wrong = base64::engine::general_purpose::STANDARD.encode("ops:wrong-token-0123456789");
    assert_eq!(http(admin, "/v1/status", Some(&format!("Basic {wrong}"))).status(), 401);
}

#[test]
fn a_short_admin_token_or_a_missing_certificate_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--admin-token", "short", "--data-dir"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin-token"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--admin-ssl-enabled", "true", "--data-dir"])
        .arg(dir.path().join("b"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin-ssl-keystore-location"));
}

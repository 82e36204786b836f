//! Fuzz target `tls`: what a client sends where the broker expects a TLS handshake, fed to
//! the server side every SSL and SASL_SSL listener (and the admin listener) runs,
//! `strata::security::tls::accept`, with a server configuration built by the broker's own
//! `BrokerTls` from certificates made per run. The stream is in memory: reads hand out the
//! input, then end of stream; writes are collected.
//!
//! An input is one selector byte, then the client's bytes:
//!
//! | selector % 3 | server configuration |
//! |---|---|
//! | 0 | TLS 1.2 and 1.3, no client certificates (`ssl.client.auth=none`) |
//! | 1 | client certificates required (the inter-broker and controller case) |
//! | 2 | TLS 1.2 only |
//!
//! and `selector / 3 % 8` how many bytes one read hands out (1 byte to all at once: records
//! split across reads). The corpus (`tests/fuzz/corpus/tls/`) holds ClientHellos and whole
//! client flights captured from our own client configuration (`security::tls::client_config`,
//! as the strata tools and brokers use it), plus bytes of other protocols that reach TLS
//! ports (a Kafka request, a plain HTTP request); `write_corpus` (ignored) rewrites it.
//!
//! Property: no input panics or hangs; every input ends in a clean `AcceptError` (none can
//! finish a handshake: that takes the keys of the recorded client); the server never writes
//! more than a handshake flight.

#[path = "fuzz/mod.rs"]
mod fuzz;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use strata::config::listener::ClientAuth;
use strata::config::SslConfig;
use strata::security::tls::{accept, client_config, server_name, BrokerTls, ClientTlsOptions};

/// Bytes per read, by `selector / 3 % 8`.
const CHUNKS: [usize; 8] = [1, 2, 5, 64, 512, 4096, 16_384, usize::MAX];
/// Most a server may write in answer to one client flight (its certificate chain included).
const SERVER_WRITE_BYTES_MAX: usize = 64 * 1024;

/// A stream that reads `input` in chunks of `chunk` bytes, then ends; writes are kept.
struct Memory<'a> {
    input: &'a [u8],
    chunk: usize,
    written: Vec<u8>,
}

impl futures::io::AsyncRead for Memory<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.chunk).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Poll::Ready(Ok(n))
    }
}

impl futures::io::AsyncWrite for Memory<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A CA, a server certificate (`server.pem`, key inside) and a client certificate
/// (`client.pem`, `client.key`) in `dir`.
fn certificates(dir: &Path) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "fuzz-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    for (name, key_inside) in [("server", true), ("client", false)] {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pem =
            if key_inside { format!("{}{}", key.serialize_pem(), cert.pem()) } else { cert.pem() };
        std::fs::write(dir.join(format!("{name}.pem")), pem).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// The three server configurations of the selector table, as `BrokerTls` builds them.
fn servers(dir: &Path) -> [BrokerTls; 3] {
    let base = SslConfig {
        keystore_location: Some(dir.join("server.pem")),
        truststore_location: Some(dir.join("ca.pem")),
        ..SslConfig::default()
    };
    let required = SslConfig { client_auth: ClientAuth::Required, ..base.clone() };
    let tls12 = SslConfig { enabled_protocols: vec!["TLSv1.2".into()], ..base.clone() };
    [base, required, tls12].map(|ssl| BrokerTls::load(&ssl).unwrap())
}

fn run_one(servers: &[BrokerTls; 3], input: &[u8]) {
    let Some((&selector, client)) = input.split_first() else {
        return;
    };
    let server = &servers[usize::from(selector) % 3];
    let chunk = CHUNKS[usize::from(selector / 3) % CHUNKS.len()];
    let mut stream = Memory { input: client, chunk, written: Vec::new() };
    let failed = futures::executor::block_on(accept(server, &mut stream)).is_err();
    assert!(failed, "a handshake completed from recorded or mutated bytes");
    assert!(stream.written.len() <= SERVER_WRITE_BYTES_MAX, "wrote {}", stream.written.len());
}

#[test]
fn fuzz_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let servers = servers(dir.path());
    fuzz::run("tls", |input| run_one(&servers, input));
}

/// The committed ClientHello is one our server answers with its own hello (so the corpus
/// starts the fuzzer inside the handshake, not at its first byte check).
#[test]
fn the_corpus_client_hello_gets_a_server_hello() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let servers = servers(dir.path());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/tls/hello-tls13");
    let input = std::fs::read(path).expect("the committed ClientHello");
    let mut server = rustls::ServerConnection::new(servers[0].server()).unwrap();
    let mut hello = &input[1..];
    while !hello.is_empty() {
        server.read_tls(&mut hello).unwrap();
    }
    server.process_new_packets().expect("a well-formed ClientHello");
    let mut answer = Vec::new();
    server.write_tls(&mut answer).unwrap();
    assert_eq!(answer.first(), Some(&0x16), "a handshake record (ServerHello)");
}

/// The client side as our tools and brokers configure it; with a certificate for mTLS.
fn our_client(dir: &Path, certificate: bool, versions: &[&str]) -> Arc<rustls::ClientConfig> {
    let options = ClientTlsOptions {
        ca: Some(dir.join("ca.pem")),
        certificate: certificate.then(|| dir.join("client.pem")),
        key: certificate.then(|| dir.join("client.key")),
        check_hostname: true,
        verify: true,
        versions: versions.iter().map(|v| v.to_string()).collect(),
    };
    Arc::new(client_config(&options).unwrap())
}

/// Everything `client` sends to `server` (to `host`) until the handshake ends, or only its
/// first flight (the ClientHello).
fn capture(
    client: Arc<rustls::ClientConfig>,
    host: &str,
    server: &BrokerTls,
    whole: bool,
) -> Vec<u8> {
    let mut c = rustls::ClientConnection::new(client, server_name(host).unwrap()).unwrap();
    let mut s = rustls::ServerConnection::new(server.server()).unwrap();
    let mut sent = Vec::new();
    for _ in 0..10 {
        while c.wants_write() {
            let mut flight = Vec::new();
            c.write_tls(&mut flight).unwrap();
            sent.extend_from_slice(&flight);
            let mut rest = &flight[..];
            while !rest.is_empty() {
                s.read_tls(&mut rest).unwrap();
            }
            s.process_new_packets().unwrap();
        }
        if !whole {
            break;
        }
        while s.wants_write() {
            let mut flight = Vec::new();
            s.write_tls(&mut flight).unwrap();
            let mut rest = &flight[..];
            while !rest.is_empty() {
                c.read_tls(&mut rest).unwrap();
            }
            c.process_new_packets().unwrap();
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
            break;
        }
    }
    sent
}

fn entry(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(bytes);
    out
}

/// Rewrites the committed corpus: `cargo test --test fuzz_tls write_corpus -- --ignored`.
#[test]
#[ignore]
fn write_corpus() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let servers = servers(dir.path());
    let both = ["TLSv1.2", "TLSv1.3"];
    let client = |certificate, versions: &[&str]| our_client(dir.path(), certificate, versions);
    // Selector: server configuration (see the table) + 3 × read chunk index (7: all at once).
    let all_at_once = 3 * 7;
    let entries = [
        (
            "hello-tls13",
            all_at_once,
            capture(client(false, &both), "127.0.0.1", &servers[0], false),
        ),
        ("hello-sni", all_at_once, capture(client(false, &both), "localhost", &servers[0], false)),
        (
            "hello-tls12",
            2 + all_at_once,
            capture(client(false, &["TLSv1.2"]), "localhost", &servers[2], false),
        ),
        (
            "flights-tls13",
            all_at_once,
            capture(client(false, &both), "localhost", &servers[0], true),
        ),
        (
            "flights-tls13-mtls",
            1 + all_at_once,
            capture(client(true, &both), "localhost", &servers[1], true),
        ),
        (
            "flights-tls12",
            2 + all_at_once,
            capture(client(false, &["TLSv1.2"]), "localhost", &servers[2], true),
        ),
        (
            "flights-tls12-mtls-bytewise",
            1,
            capture(client(true, &["TLSv1.2"]), "localhost", &servers[1], true),
        ),
    ];
    for (name, selector, bytes) in entries {
        fuzz::save("tls", name, &entry(selector, &bytes));
    }
    // Other protocols at a TLS port: a Kafka ApiVersions request, plain HTTP, SSLv2-style.
    let kafka = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0];
    fuzz::save("tls", "kafka-request", &entry(all_at_once, &kafka));
    let http = b"GET /metrics HTTP/1.1\r\nHost: strata\r\n\r\n";
    fuzz::save("tls", "plain-http", &entry(all_at_once, http));
    let sslv2 = [0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10];
    fuzz::save("tls", "sslv2-hello", &entry(all_at_once, &sslv2));
}

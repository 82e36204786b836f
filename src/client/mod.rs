//! A small blocking Kafka client for the `strata` admin, produce and consume commands.
//!
//! [`Client`] is one `std::net::TcpStream` to one broker, used from one thread: it negotiates
//! versions with ApiVersions on connect, numbers requests with correlation ids and checks
//! them on the way back. Codecs come from `kafka-protocol`. Calls go to the broker connected
//! to; [`routing`] finds the coordinator, leader or brokers a call must go to in a cluster
//! and connects there.
//!
//! The connection is plain TCP or TLS (rustls) as the [`ClientSecurity`] given to
//! [`Client::connect_secure`] says (`-X security.protocol=SSL`, `--command-config`); SASL
//! runs right after ApiVersions ([`sasl`]). Connections opened from a client
//! ([`Client::connect_to`]) use the same settings.
//!
//! Imports `protocol`, `record_batch`, `security` (TLS, SASL clients, SCRAM's salted
//! passwords) and `config` only.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod acls;
pub mod admin;
pub mod cluster;
pub mod records;
pub mod routing;
pub mod sasl;
pub mod topics;
pub mod txn;
pub mod users;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

pub use crate::security::client::ClientSecurity;

/// Largest response frame accepted.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// How long a request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, sending or receiving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The broker does not implement any version of the API that this client speaks.
    #[error("the broker does not support {0:?} at a version this client speaks")]
    Unsupported(ApiKey),
    /// Encoding or decoding failed, or the answer was not what was asked for.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error:?} (code {code})")]
    Kafka {
        /// What was being done.
        context: String,
        /// The error code.
        code: i16,
        /// Its name.
        error: Option<kafka_protocol::error::ResponseError>,
    },
}

impl ClientError {
    /// A Kafka error code as an error (`None` for code 0).
    pub fn check(code: i16, context: impl Into<String>) -> Result<(), ClientError> {
        if code == 0 {
            return Ok(());
        }
        let error = kafka_protocol::error::ResponseError::try_from_code(code);
        Err(ClientError::Kafka { context: context.into(), code, error })
    }
}

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// The byte stream under a [`Client`]: plain TCP or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// How a client connects: its security settings and, for TLS, the rustls configuration
/// built from them once.
#[derive(Clone, Default)]
pub struct Connector {
    /// The settings.
    pub security: Arc<ClientSecurity>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Connector {
    /// A connector for `security` (reads its PEM files now).
    pub fn new(security: ClientSecurity) -> Result<Connector, ClientError> {
        let tls = security.tls_config().map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Connector { security: Arc::new(security), tls })
    }
}

/// A blocking connection to one broker. See the module docs.
pub struct Client {
    stream: Transport,
    correlation: i32,
    client_id: String,
    connector: Connector,
    /// Broker's (min, max) per API, from ApiVersions.
    versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    /// Connects to `addr` (`host:port`) over PLAINTEXT and negotiates API versions.
    pub fn connect(addr: &str, client_id: &str) -> Result<Client, ClientError> {
        Client::connect_secure(addr, client_id, &Connector::default())
    }

    /// Connects to `addr` (`host:port`) as `connector` says (TLS, SASL), negotiates API
    /// versions and authenticates.
    pub fn connect_secure(
        addr: &str,
        client_id: &str,
        connector: &Connector,
    ) -> Result<Client, ClientError> {
        let io = |context: &str| {
            let context = format!("{context} {addr}");
            move |source| ClientError::Io { context, source }
        };
        let stream = TcpStream::connect(addr).map_err(io("connecting to"))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io("configuring"))?;
        stream.set_nodelay(true).map_err(io("configuring"))?;
        let stream = match &connector.tls {
            None => Transport::Plain(stream),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                let name = crate::security::tls::server_name(host).map_err(protocol)?;
                let tls = rustls::ClientConnection::new(config.clone(), name).map_err(protocol)?;
                let mut tls = rustls::StreamOwned::new(tls, stream);
                // Finish the handshake now, so a refused certificate fails the connect.
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock).map_err(io("TLS handshake with"))?;
                }
                Transport::Tls(Box::new(tls))
            }
        };
        let mut client = Client {
            stream,
            correlation: 0,
            client_id: client_id.to_owned(),
            connector: connector.clone(),
            versions: HashMap::new(),
        };
        let body = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let ResponseKind::ApiVersions(r) = client.call_at(ApiKey::ApiVersions, 0, body)? else {
            return Err(protocol("ApiVersions answered with another message"));
        };
        ClientError::check(r.error_code, "ApiVersions")?;
        client.versions =
            r.api_keys.iter().map(|a| (a.api_key, (a.min_version, a.max_version))).collect();
        if let Some(credentials) = &connector.security.sasl {
            sasl::authenticate(&mut client, credentials)?;
        }
        Ok(client)
    }

    /// The settings this client connects with (for tools that open more connections).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The highest version of `key` both sides speak, capped at `preferred`.
    pub fn version(&self, key: ApiKey, preferred: i16) -> Result<i16, ClientError> {
        let (min, max) = *self.versions.get(&(key as i16)).ok_or(ClientError::Unsupported(key))?;
        let ours = key.valid_versions();
        let version = max.min(preferred).min(ours.max);
        if version < min || version < ours.min {
            return Err(ClientError::Unsupported(key));
        }
        Ok(version)
    }

    /// Sends `body` at the negotiated version (at most `preferred`) and returns the answer
    /// and the version used.
    pub fn call(
        &mut self,
        key: ApiKey,
        preferred: i16,
        body: RequestKind,
    ) -> Result<(i16, ResponseKind), ClientError> {
        let version = self.version(key, preferred)?;
        Ok((version, self.call_at(key, version, body)?))
    }

    /// Sends `body` at exactly `version` (SASL exchanges, whose versions are fixed).
    pub fn call_at(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        self.correlation = self.correlation.wrapping_add(1);
        let client_id = Some(StrBytes::from_string(self.client_id.clone()));
        let frame =
            crate::protocol::encode_request(key, version, self.correlation, client_id, &body)
                .map_err(protocol)?;
        let io = |source| ClientError::Io { context: format!("{key:?} request"), source };
        self.stream.write_all(&frame).map_err(io)?;
        let response = self.read_frame()?;
        crate::protocol::decode_response(key, version, self.correlation, response).map_err(protocol)
    }

    fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let io = |source| ClientError::Io { context: "reading a response".into(), source };
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io)?;
        let size = usize::try_from(i32::from_be_bytes(size)).map_err(protocol)?;
        if size > RESPONSE_BYTES_MAX {
            return Err(protocol(format!("response of {size} bytes is too large")));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).map_err(io)?;
        Ok(Bytes::from(body))
    }
}

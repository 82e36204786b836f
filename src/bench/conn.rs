//! One Kafka connection on glommio, split into a writer half and a reader half so that
//! requests can be pipelined: the writer encodes frames back to back, the reader takes response
//! frames in order (Kafka answers requests on one connection in the order they were sent).
//!
//! Plain TCP halves are two descriptors of one socket (no lock between them); TLS halves
//! share the rustls stream through `futures::io::split` (a lock taken per read or write),
//! set up once per process with [`use_security`] (`-X security.protocol=SSL`). On a SASL
//! listener every connection logs in first (SaslHandshake v1, SaslAuthenticate v2, PLAIN or
//! SCRAM through `security::sasl::client`), before ApiVersions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::security::client::SaslCredentials;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// Largest response frame accepted (a fetch is bounded by its max_bytes well below this).
pub const FRAME_BYTES_MAX: usize = 256 << 20;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 256 << 10;
/// Client id sent in every request header.
pub const CLIENT_ID: &str = "strata-bench";

/// TLS configuration of every bench connection (`None`: plain TCP).
static TLS: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();

/// SASL credentials every bench connection logs in with (`None`: no SASL).
static SASL: OnceLock<Option<SaslCredentials>> = OnceLock::new();

/// Sets the security of every connection this process opens (once per process).
pub fn use_security(security: &crate::security::client::ClientSecurity) -> anyhow::Result<()> {
    let config = security.tls_config()?;
    let _ = TLS.set(config);
    let sasl = if security.protocol.uses_sasl() { security.sasl.clone() } else { None };
    if security.protocol.uses_sasl() && sasl.is_none() {
        bail!("{} needs sasl.username and sasl.password", security.protocol);
    }
    let _ = SASL.set(sasl);
    Ok(())
}

/// Logs in on a fresh connection (see the module docs).
async fn sasl_login(
    writer: &mut ConnWriter,
    reader: &mut ConnReader,
    credentials: &SaslCredentials,
) -> anyhow::Result<()> {
    use crate::security::sasl::client::ClientExchange;
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).map_err(|e| anyhow!("no random numbers for a nonce: {e}"))?;
    let nonce: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let (user, password) = (&credentials.username, &credentials.password);
    let mut exchange = ClientExchange::new(&credentials.mechanism, user, password, &nonce)
        .map_err(|e| anyhow!("SASL: {e}"))?;
    let mechanism = StrBytes::from_string(credentials.mechanism.clone());
    let id = writer.encode(&SaslHandshakeRequest::default().with_mechanism(mechanism), 1)?;
    writer.flush().await?;
    let answer = decode_response::<SaslHandshakeRequest>(reader.next_frame().await?, id, 1)?;
    if answer.error_code != 0 {
        bail!("SASL mechanism {} refused (error {})", credentials.mechanism, answer.error_code);
    }
    let mut server = Vec::new();
    while let Some(message) = exchange.step(&server).map_err(|e| anyhow!("SASL: {e}"))? {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(message.into());
        let id = writer.encode(&request, 2)?;
        writer.flush().await?;
        let answer = decode_response::<SaslAuthenticateRequest>(reader.next_frame().await?, id, 2)?;
        if answer.error_code != 0 {
            let why = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
            bail!("SASL authentication failed: {why}");
        }
        server = answer.auth_bytes.to_vec();
    }
    Ok(())
}

type TlsStream = futures_rustls::client::TlsStream<TcpStream>;

/// The writing side of a connection.
enum Out {
    Plain(TcpStream),
    Tls(WriteHalf<TlsStream>),
}

/// The reading side of a connection.
enum In {
    Plain(TcpStream),
    Tls(ReadHalf<TlsStream>),
}

impl AsyncRead for In {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            In::Plain(s) => Pin::new(s).poll_read(cx, buf),
            In::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Out {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Out::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Out::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Out::Plain(s) => Pin::new(s).poll_flush(cx),
            Out::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Out::Plain(s) => Pin::new(s).poll_close(cx),
            Out::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// Encodes request frames and writes them.
pub struct ConnWriter {
    stream: Out,
    buf: BytesMut,
    client_id: StrBytes,
    next_correlation_id: i32,
}

/// Reads response frames.
pub struct ConnReader {
    stream: In,
    buf: BytesMut,
    scratch: Vec<u8>,
}

/// Highest version of each API both sides speak.
#[derive(Debug, Clone, Default)]
pub struct Versions(HashMap<i16, i16>);

impl Versions {
    /// The version to use for `key`: the broker's max capped to `ours_max`; error if the ranges
    /// do not meet.
    pub fn pick(&self, key: ApiKey, ours_min: i16, ours_max: i16) -> anyhow::Result<i16> {
        let (min, max) = self
            .0
            .get(&(key as i16))
            .map(|&max| (ours_min, max.min(ours_max)))
            .ok_or_else(|| anyhow!("broker does not support {key:?}"))?;
        if max < min {
            bail!("broker supports {key:?} only below v{ours_min}");
        }
        Ok(max)
    }
}

/// Connects and returns both halves (the reader owns a dup of the socket).
pub async fn connect(addr: SocketAddr) -> anyhow::Result<(ConnWriter, ConnReader)> {
    let stream = TcpStream::connect_timeout(addr, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow!("connecting to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| anyhow!("TCP_NODELAY: {e}"))?;
    let (write_half, read_half) = match TLS.get().cloned().flatten() {
        None => {
            // SAFETY: the descriptor stays open while `stream` lives; borrowed only to dup it.
            let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            let dup: OwnedFd = borrowed.try_clone_to_owned().context("dup of the socket")?;
            // SAFETY: `dup` is a fresh duplicate of a connected TCP socket that nothing else
            // owns; ownership moves into the new stream, which closes it on drop.
            let read_half = unsafe { TcpStream::from_raw_fd(dup.into_raw_fd()) };
            (Out::Plain(stream), In::Plain(read_half))
        }
        Some(config) => {
            let name = crate::security::tls::server_name(&addr.ip().to_string())?;
            let connector = futures_rustls::TlsConnector::from(config);
            let tls = connector.connect(name, stream).await.context("TLS handshake")?;
            let (read_half, write_half) = tls.split();
            (Out::Tls(write_half), In::Tls(read_half))
        }
    };
    let mut reader = ConnReader {
        stream: read_half,
        buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
        scratch: vec![0; READ_CHUNK_BYTES],
    };
    let mut writer = ConnWriter {
        stream: write_half,
        buf: BytesMut::with_capacity(64 << 10),
        client_id: StrBytes::from_static_str(CLIENT_ID),
        next_correlation_id: 1,
    };
    if let Some(credentials) = SASL.get().and_then(Option::as_ref) {
        sasl_login(&mut writer, &mut reader, credentials).await?;
    }
    Ok((writer, reader))
}

impl ConnWriter {
    /// Appends one request frame to the write buffer; returns its correlation id.
    pub fn encode<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = R::header_version(version);
        let start = self.buf.len();
        self.buf.put_i32(0);
        header.encode(&mut self.buf, header_version)?;
        request.encode(&mut self.buf, version)?;
        let size = i32::try_from(self.buf.len() - start - 4)?;
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        Ok(correlation_id)
    }

    /// Bytes encoded and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes every encoded frame.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await.context("writing request")?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl ConnReader {
    /// The next response frame (without its length prefix).
    pub async fn next_frame(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if self.buf.len() >= 4 {
                let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| s <= FRAME_BYTES_MAX)
                    .ok_or_else(|| anyhow!("bad response frame size {size}"))?;
                if self.buf.len() >= 4 + size {
                    self.buf.advance(4);
                    return Ok(self.buf.split_to(size).freeze());
                }
                self.buf.reserve(4 + size - self.buf.len());
            }
            let n = self.stream.read(&mut self.scratch).await.context("reading response")?;
            if n == 0 {
                bail!("connection closed by broker");
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
    }
}

/// Decodes a response frame for `R` sent at `version` with `correlation_id`.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    correlation_id: i32,
    version: i16,
) -> anyhow::Result<R::Response> {
    let header_version =
        <R::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)?;
    if header.correlation_id != correlation_id {
        bail!(
            "response correlation id {} where {} was expected",
            header.correlation_id,
            correlation_id
        );
    }
    R::Response::decode(&mut frame, version).with_context(|| format!("decoding {:?}", R::KEY))
}

/// A connection used for one request at a time (bootstrap, metadata, topic creation).
pub struct Conn {
    writer: ConnWriter,
    reader: ConnReader,
    /// Negotiated API versions.
    pub versions: Versions,
}

impl Conn {
    /// Connects and negotiates API versions.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let (writer, reader) = connect(addr).await?;
        let mut conn = Conn { writer, reader, versions: Versions::default() };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = conn.call(&request, 3).await?;
        if response.error_code != 0 {
            bail!("ApiVersions failed with error code {}", response.error_code);
        }
        for api in response.api_keys {
            conn.versions.0.insert(api.api_key, api.max_version);
        }
        Ok(conn)
    }

    /// Sends one request and waits for its response.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> anyhow::Result<R::Response> {
        let correlation_id = self.writer.encode(request, version)?;
        self.writer.flush().await?;
        let frame = self.reader.next_frame().await?;
        decode_response::<R>(frame, correlation_id, version)
    }

    /// Reassembles a connection from its halves.
    pub fn from_halves(writer: ConnWriter, reader: ConnReader, versions: Versions) -> Conn {
        Conn { writer, reader, versions }
    }

    /// Gives up the halves (for pipelined use after bootstrap).
    pub fn into_halves(self) -> (ConnWriter, ConnReader, Versions) {
        (self.writer, self.reader, self.versions)
    }
}

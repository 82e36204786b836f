//! Inter-broker requests: one Kafka-protocol connection from a shard to another broker.
//!
//! Brokers of a cluster talk to each other with the Kafka protocol on the client listener,
//! as Kafka brokers do: followers fetch from leaders (Fetch with a replica id), transaction
//! coordinators write markers (WriteTxnMarkers). A [`PeerConnection`] is a glommio TCP
//! stream owned by one task, one request in flight at a time (a long-poll fetch occupies its
//! connection, so each user keeps its own). Every broker runs the same binary, so requests
//! go at fixed versions without an ApiVersions round trip. Codecs come from `kafka-protocol`.
//!
//! When the inter-broker listener uses TLS (`inter.broker.listener.name` naming an SSL or
//! SASL_SSL listener), connections are TLS with the broker's own certificate (mTLS when the
//! other side requires client certificates); the shard sets that up once with [`use_tls`],
//! so callers (replica fetchers, transaction markers) connect the same way either way.
//!
//! Hand-written rather than a crate: the Rust Kafka clients are tokio-based (rdkafka wraps
//! librdkafka's own threads), and this must run inside a glommio executor.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::protocol;
use crate::security::tls::{server_name, BrokerTls};

thread_local! {
    /// This shard's TLS state for connections to other brokers (`None`: plain TCP).
    static INTER_BROKER_TLS: RefCell<Option<Arc<BrokerTls>>> = const { RefCell::new(None) };
}

/// Makes this shard's connections to other brokers TLS (`Some`) or plain TCP (`None`).
pub fn use_tls(tls: Option<Arc<BrokerTls>>) {
    INTER_BROKER_TLS.with(|cell| *cell.borrow_mut() = tls);
}

/// The byte stream of a peer connection.
enum PeerStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_close(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Largest response frame accepted from a peer.
pub const PEER_RESPONSE_BYTES_MAX: usize = 256 << 20;

/// Why a peer call failed. Any failure leaves the connection unusable: drop it and connect
/// again.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting, writing or reading failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Encoding or decoding failed, or the answer did not match the request.
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn protocol_error(e: impl std::fmt::Display) -> PeerError {
    PeerError::Protocol(e.to_string())
}

/// A connection to one broker. See the module docs.
pub struct PeerConnection {
    stream: PeerStream,
    addr: String,
    correlation: i32,
    client_id: StrBytes,
}

impl PeerConnection {
    /// Connects to `addr` (`host:port`, a broker's advertised listener). `client_id` names
    /// this broker in the peer's logs (e.g. `strata-broker-2`).
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<PeerConnection, PeerError> {
        let connecting = TcpStream::connect(addr);
        let stream = with_timeout(timeout, async {
            connecting.await.map_err(|e| PeerError::Io { context: "connecting", source: e.into() })
        })
        .await?;
        stream
            .set_nodelay(true)
            .map_err(|e| PeerError::Io { context: "configuring", source: e.into() })?;
        let tls = INTER_BROKER_TLS.with(|cell| cell.borrow().clone());
        let stream = match tls {
            None => PeerStream::Plain(stream),
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                let name = server_name(host).map_err(protocol_error)?;
                let connector = futures_rustls::TlsConnector::from(tls.client());
                let handshake = async {
                    let io = |source| PeerError::Io { context: "TLS handshake", source };
                    connector.connect(name, stream).await.map_err(io)
                };
                PeerStream::Tls(Box::new(with_timeout(timeout, handshake).await?))
            }
        };
        Ok(PeerConnection {
            stream,
            addr: addr.to_owned(),
            correlation: 0,
            client_id: StrBytes::from_string(client_id.to_owned()),
        })
    }

    /// The address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `body` as `key` at `version` and returns the decoded answer, or fails after
    /// `timeout` (which must cover a long-poll's max wait).
    pub async fn call(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
        timeout: Duration,
    ) -> Result<ResponseKind, PeerError> {
        with_timeout(timeout, self.call_inner(key, version, body)).await
    }

    async fn call_inner(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, PeerError> {
        self.correlation = self.correlation.wrapping_add(1);
        let client_id = Some(self.client_id.clone());
        let frame = protocol::encode_request(key, version, self.correlation, client_id, &body)
            .map_err(protocol_error)?;
        let io = |source| PeerError::Io { context: "sending a request", source };
        self.stream.write_all(&frame).await.map_err(io)?;
        // TLS may keep the end of the frame in its buffer when the socket is full.
        self.stream.flush().await.map_err(io)?;
        let response = self.read_frame().await?;
        protocol::decode_response(key, version, self.correlation, response).map_err(protocol_error)
    }

    async fn read_frame(&mut self) -> Result<Bytes, PeerError> {
        let io = |source| PeerError::Io { context: "reading a response", source };
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.map_err(io)?;
        let size = usize::try_from(i32::from_be_bytes(size)).map_err(protocol_error)?;
        if size > PEER_RESPONSE_BYTES_MAX {
            return Err(protocol_error(format!("response of {size} bytes is too large")));
        }
        let mut body = BytesMut::zeroed(size);
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(body.freeze())
    }
}

/// `work`, or `PeerError::Timeout` once `limit` passed.
async fn with_timeout<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    let work = std::pin::pin!(work);
    let timer = std::pin::pin!(glommio::timer::sleep(limit));
    match futures::future::select(work, timer).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(_) => Err(PeerError::Timeout(limit)),
    }
}

/// Idle connections kept per broker by one [`PeerPool`] (one call in flight per connection).
const POOL_IDLE_MAX: usize = 4;
/// Timeout of connecting to another broker.
const POOL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle [`PeerConnection`]s of one user on one shard (transaction markers, share state), by
/// broker id: a call takes one (or connects), and gives it back once it answered.
pub struct PeerPool {
    /// Appended to `strata-broker-<id>-` to name this user in the peers' logs.
    user: &'static str,
    idle: RefCell<HashMap<i32, Vec<PeerConnection>>>,
}

impl PeerPool {
    /// An empty pool; `user` names its connections (`txn`, `share`).
    pub fn new(user: &'static str) -> PeerPool {
        PeerPool { user, idle: RefCell::new(HashMap::new()) }
    }

    /// An idle connection to `broker` at `addr`, if one is kept (those to an older address
    /// of it are dropped).
    fn take(&self, broker: i32, addr: &str) -> Option<PeerConnection> {
        let mut idle = self.idle.borrow_mut();
        let kept = idle.get_mut(&broker)?;
        kept.retain(|c| c.addr() == addr);
        kept.pop()
    }

    fn give_back(&self, broker: i32, conn: PeerConnection) {
        let mut idle = self.idle.borrow_mut();
        let kept = idle.entry(broker).or_default();
        if kept.len() < POOL_IDLE_MAX {
            kept.push(conn);
        }
    }

    /// Calls `key` at `version` on `broker` at `addr` (this broker is `node_id`): over an
    /// idle connection if one is kept (again over a new one if that fails to send or read:
    /// the peer may have restarted since), else over a new one, kept afterwards.
    pub async fn call(
        &self,
        node_id: i32,
        (broker, addr): (i32, &str),
        (key, version): (ApiKey, i16),
        body: RequestKind,
        timeout: Duration,
    ) -> Result<ResponseKind, String> {
        let mut kept = self.take(broker, addr);
        loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(conn) => conn,
                None => {
                    let client_id = format!("strata-broker-{node_id}-{}", self.user);
                    PeerConnection::connect(addr, &client_id, POOL_CONNECT_TIMEOUT)
                        .await
                        .map_err(|e| format!("{addr}: {e}"))?
                }
            };
            match conn.call(key, version, body.clone(), timeout).await {
                Ok(response) => {
                    self.give_back(broker, conn);
                    return Ok(response);
                }
                Err(PeerError::Io { .. }) if reused => continue,
                Err(e) => return Err(format!("{addr}: {key:?}: {e}")),
            }
        }
    }
}

//! The controller port's transport, in one place: how a connection to a peer controller is
//! opened and accepted, authenticated, and how frames cross it.
//!
//! Every connection, both ways, first runs the shared-secret handshake of
//! [`crate::security::peer_auth`] (mutual proof of the cluster secret, fresh nonces from both
//! sides); afterwards each frame is `u32 length | JSON body | 32-byte MAC`, the MAC covering
//! the direction and a sequence number. A peer without the secret gets no frame read or
//! answered. With `controller_insecure` (development only) there is no handshake and frames
//! carry no MAC.
//!
//! When the inter-broker listener uses TLS, so does this port, underneath the handshake
//! above (defence in depth: the secret still has to be proven): the connecting side presents
//! the broker's certificate and checks the other's against the truststore (and its host name
//! with `ssl.endpoint.identification.algorithm=https`); the accepting side requires a client
//! certificate of the truststore's CA, so a peer without one is dropped during the TLS
//! handshake, before a byte of the secret handshake is read (`controller_tls` in
//! `strata_refusals_total`). [`Transport::connect`] and [`Transport::accept`] are the only
//! places a controller socket is set up, and [`Channel`] the only thing that reads or writes
//! one.
//!
//! TLS is futures-rustls (the crate the Kafka listeners use) over tokio's socket through
//! [`Compat`], a 30-line bridge between tokio's and futures-io's I/O traits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::security::peer_auth::{
    AuthError, Challenge, ClusterSecret, FrameAuth, Hello, Transcript, CHALLENGE_BYTES,
    HELLO_BYTES, NONCE_BYTES, TAG_BYTES,
};
use crate::security::tls::{server_name, BrokerTls};

/// Largest frame accepted from an authenticated peer (snapshots are sent in chunks below it).
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// How long an accepted connection may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How this broker's controller connections are secured. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Transport {
    /// The cluster secret; `None` runs without authentication (development only).
    secret: Option<Arc<ClusterSecret>>,
    /// This broker's node id, announced in handshakes.
    node_id: i32,
    /// TLS under the secret handshake (the inter-broker listener's certificates).
    tls: Option<Arc<BrokerTls>>,
}

/// futures-io's `AsyncRead`/`AsyncWrite` over tokio's `TcpStream` (futures-rustls speaks
/// futures-io).
struct Compat(TcpStream);

impl futures::io::AsyncRead for Compat {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        let stream = Pin::new(&mut self.get_mut().0);
        match tokio::io::AsyncRead::poll_read(stream, cx, &mut read) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures::io::AsyncWrite for Compat {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().0), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().0), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().0), cx)
    }
}

/// A controller connection's bytes: plain TCP or TLS over it.
enum Stream {
    Plain(Compat),
    Tls(Box<futures_rustls::TlsStream<Compat>>),
}

impl futures::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl futures::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

impl Stream {
    /// Writes all of `bytes` and flushes them (through TLS's buffer too).
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }
}

/// An open, authenticated connection to a peer.
pub struct Channel {
    stream: Stream,
    auth: Option<FrameAuth>,
}

/// A TLS handshake failure, as an `io::Error` of kind `ConnectionAborted` (see
/// [`is_tls_error`]).
fn tls_failed(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, format!("TLS handshake: {e}"))
}

/// Whether `e` is a failed TLS handshake (a peer without a valid certificate, or not
/// speaking TLS).
pub fn is_tls_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ConnectionAborted
}

/// An authentication failure, as an `io::Error` of kind `PermissionDenied`.
fn denied(e: AuthError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, e)
}

/// Whether `e` is an authentication failure (the peer's or ours).
pub fn is_auth_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
}

fn nonce() -> std::io::Result<[u8; NONCE_BYTES]> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(nonce)
}

impl Transport {
    /// A transport for node `node_id`, authenticating with `secret` (`None`: insecure),
    /// over TLS with `tls`'s certificates (`None`: plain TCP).
    pub fn new(
        secret: Option<ClusterSecret>,
        node_id: i32,
        tls: Option<Arc<BrokerTls>>,
    ) -> Transport {
        Transport { secret: secret.map(Arc::new), node_id, tls }
    }

    /// Opens a connection to the controller at `addr` and authenticates both ways.
    pub async fn connect(&self, addr: &str) -> std::io::Result<Channel> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut stream = match &self.tls {
            None => Stream::Plain(Compat(stream)),
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
                let name = server_name(host).map_err(std::io::Error::other)?;
                let connector = futures_rustls::TlsConnector::from(tls.client());
                let stream = connector.connect(name, Compat(stream)).await.map_err(tls_failed)?;
                Stream::Tls(Box::new(futures_rustls::TlsStream::Client(stream)))
            }
        };
        let Some(secret) = &self.secret else {
            return Ok(Channel { stream, auth: None });
        };
        let hello = Hello { node_id: self.node_id, nonce: nonce()? };
        stream.send(&hello.encode()).await?;
        let mut bytes = [0u8; CHALLENGE_BYTES];
        stream.read_exact(&mut bytes).await?;
        let challenge = Challenge::decode(&bytes).map_err(denied)?;
        let transcript = Transcript::new(&hello, challenge.nonce);
        // Our proof goes out even when the server's does not check, so that the server too
        // learns (and counts) that the secrets differ; it is bound to both nonces, so it is
        // worth nothing on any other connection.
        stream.send(&transcript.client_proof(secret)).await?;
        transcript.verify(secret, true, &challenge.proof).map_err(denied)?;
        let mut verdict = [0u8; 1];
        match stream.read_exact(&mut verdict).await {
            Ok(_) if verdict[0] == 1 => {}
            Ok(_) => return Err(denied(AuthError::Refused)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(denied(AuthError::Refused))
            }
            Err(e) => return Err(e),
        }
        Ok(Channel { stream, auth: Some(transcript.session(secret, true)) })
    }

    /// Authenticates an accepted connection (at most [`HANDSHAKE_TIMEOUT`]): the channel and
    /// the node id the peer announced (-1 without authentication).
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<(Channel, i32)> {
        stream.set_nodelay(true)?;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(stream)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer did not complete the controller handshake in time",
            )),
        }
    }

    async fn handshake(&self, stream: TcpStream) -> std::io::Result<(Channel, i32)> {
        let mut stream = match &self.tls {
            None => Stream::Plain(Compat(stream)),
            Some(tls) => {
                let acceptor = futures_rustls::TlsAcceptor::from(tls.server());
                let stream = acceptor.accept(Compat(stream)).await.map_err(tls_failed)?;
                Stream::Tls(Box::new(futures_rustls::TlsStream::Server(stream)))
            }
        };
        let Some(secret) = &self.secret else {
            return Ok((Channel { stream, auth: None }, -1));
        };
        let mut bytes = [0u8; HELLO_BYTES];
        stream.read_exact(&mut bytes).await?;
        let hello = Hello::decode(&bytes).map_err(denied)?;
        let transcript = Transcript::new(&hello, nonce()?);
        let proof = transcript.server_proof(secret);
        let challenge = Challenge { nonce: transcript.server_nonce(), proof };
        stream.send(&challenge.encode()).await?;
        let mut proof = [0u8; TAG_BYTES];
        stream.read_exact(&mut proof).await?;
        if let Err(e) = transcript.verify(secret, false, &proof) {
            let _ = stream.send(&[0]).await;
            return Err(denied(e));
        }
        stream.send(&[1]).await?;
        let auth = Some(transcript.session(secret, false));
        Ok((Channel { stream, auth }, hello.node_id))
    }
}

impl Channel {
    /// Writes one frame.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        if body.len() > FRAME_BYTES_MAX {
            return Err(std::io::Error::other("controller frame too large"));
        }
        let mut frame = Vec::with_capacity(body.len() + 4 + TAG_BYTES);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        if let Some(auth) = &mut self.auth {
            frame.extend_from_slice(&auth.seal(&body));
        }
        self.stream.send(&frame).await
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream. A frame whose MAC does not
    /// check is an error of kind `PermissionDenied`.
    pub async fn recv<T: serde::de::DeserializeOwned>(&mut self) -> std::io::Result<Option<T>> {
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let size = u32::from_be_bytes(size) as usize;
        if size > FRAME_BYTES_MAX {
            return Err(std::io::Error::other(format!("controller frame of {size} bytes")));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await?;
        if let Some(auth) = &mut self.auth {
            let mut tag = [0u8; TAG_BYTES];
            self.stream.read_exact(&mut tag).await?;
            auth.open(&body, &tag).map_err(denied)?;
        }
        serde_json::from_slice(&body).map(Some).map_err(std::io::Error::other)
    }
}

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
//! TLS (mutual, with client certificates) is to wrap the stream here: [`Transport::connect`]
//! and [`Transport::accept`] are the only places a controller socket is set up, and
//! [`Channel`] the only thing that reads or writes one.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::peer_auth::{
    AuthError, Challenge, ClusterSecret, FrameAuth, Hello, Transcript, CHALLENGE_BYTES,
    HELLO_BYTES, NONCE_BYTES, TAG_BYTES,
};

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
}

/// An open, authenticated connection to a peer.
pub struct Channel {
    stream: TcpStream,
    auth: Option<FrameAuth>,
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
    /// A transport for node `node_id`, authenticating with `secret` (`None`: insecure).
    pub fn new(secret: Option<ClusterSecret>, node_id: i32) -> Transport {
        Transport { secret: secret.map(Arc::new), node_id }
    }

    /// Opens a connection to the controller at `addr` and authenticates both ways.
    pub async fn connect(&self, addr: &str) -> std::io::Result<Channel> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let Some(secret) = &self.secret else {
            return Ok(Channel { stream, auth: None });
        };
        let hello = Hello { node_id: self.node_id, nonce: nonce()? };
        stream.write_all(&hello.encode()).await?;
        let mut bytes = [0u8; CHALLENGE_BYTES];
        stream.read_exact(&mut bytes).await?;
        let challenge = Challenge::decode(&bytes).map_err(denied)?;
        let transcript = Transcript::new(&hello, challenge.nonce);
        // Our proof goes out even when the server's does not check, so that the server too
        // learns (and counts) that the secrets differ; it is bound to both nonces, so it is
        // worth nothing on any other connection.
        stream.write_all(&transcript.client_proof(secret)).await?;
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

    async fn handshake(&self, mut stream: TcpStream) -> std::io::Result<(Channel, i32)> {
        let Some(secret) = &self.secret else {
            return Ok((Channel { stream, auth: None }, -1));
        };
        let mut bytes = [0u8; HELLO_BYTES];
        stream.read_exact(&mut bytes).await?;
        let hello = Hello::decode(&bytes).map_err(denied)?;
        let transcript = Transcript::new(&hello, nonce()?);
        let proof = transcript.server_proof(secret);
        let challenge = Challenge { nonce: transcript.server_nonce(), proof };
        stream.write_all(&challenge.encode()).await?;
        let mut proof = [0u8; TAG_BYTES];
        stream.read_exact(&mut proof).await?;
        if let Err(e) = transcript.verify(secret, false, &proof) {
            let _ = stream.write_all(&[0]).await;
            return Err(denied(e));
        }
        stream.write_all(&[1]).await?;
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
        self.stream.write_all(&frame).await
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

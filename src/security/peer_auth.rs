//! Mutual authentication of cluster peers with a shared secret: a challenge/response
//! handshake with HMAC-SHA256, then a MAC on every frame. Pure: no sockets, no clocks.
//!
//! Used on the controller port (`controller::quorum::transport`) until TLS with client
//! certificates replaces or joins it. The handshake, for a connection from `client` to
//! `server`, both knowing the cluster secret `K`:
//!
//! 1. client → server: [`Hello`]: magic, version, the client's node id, a fresh 32-byte
//!    nonce `Nc`;
//! 2. server → client: [`Challenge`]: a fresh nonce `Ns` and `Ps = HMAC(K, "server" | Nc |
//!    Ns | id)`: the server proves it knows `K` for this very exchange;
//! 3. client → server: `Pc = HMAC(K, "client" | Nc | Ns | id)`; the server checks it and
//!    answers one verdict byte.
//!
//! Each side checks the other's proof in constant time; the labels keep a server's proof
//! from being reflected as a client's. Both nonces are fresh per connection, so a recorded
//! handshake or frame is worthless on another connection (no replay). Afterwards each frame
//! carries `HMAC(S, direction | sequence | body)` with the session key `S = HMAC(K,
//! "session" | Nc | Ns | id)` and a per-direction sequence number, so frames cannot be
//! forged, replayed, reordered or moved between directions within the connection either.
//! Confidentiality is not a goal here: that is TLS's job.
//!
//! Why hand-written: no maintained crate offers a small shared-key mutual handshake for a
//! custom framed protocol; the cryptography itself is the `hmac` and `sha2` crates.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First bytes of a [`Hello`] and a [`Challenge`] (anything else is not our protocol).
pub const MAGIC: [u8; 4] = *b"STRC";
/// Version of the handshake.
pub const VERSION: u8 = 1;
/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a proof or a frame MAC (HMAC-SHA256).
pub const TAG_BYTES: usize = 32;
/// Bytes of an encoded [`Hello`].
pub const HELLO_BYTES: usize = 4 + 1 + 4 + NONCE_BYTES;
/// Bytes of an encoded [`Challenge`].
pub const CHALLENGE_BYTES: usize = 4 + 1 + NONCE_BYTES + TAG_BYTES;
const SERVER_LABEL: &[u8] = b"strata-controller server";
const CLIENT_LABEL: &[u8] = b"strata-controller client";

/// Shortest secret accepted (bytes).
pub const SECRET_BYTES_MIN: usize = 16;

/// The cluster's shared secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    /// A secret from its bytes; refused when shorter than [`SECRET_BYTES_MIN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes = bytes.into();
        if bytes.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "the cluster secret has {} bytes; at least {SECRET_BYTES_MIN} are needed",
                bytes.len()
            ));
        }
        Ok(ClusterSecret(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterSecret(<{} bytes>)", self.0.len())
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The first bytes are not our magic or version (not a Strata peer, or an old one).
    #[error("not a Strata controller handshake (bad magic or version)")]
    NotOurProtocol,
    /// The peer's proof does not match: it does not know the cluster secret.
    #[error("the peer does not know the cluster secret")]
    BadProof,
    /// The server refused our proof.
    #[error("the peer refused our proof (is the cluster secret the same on every broker?)")]
    Refused,
    /// A frame's MAC does not match (forged, replayed or corrupted).
    #[error("a frame failed its integrity check")]
    BadFrame,
}

/// Step 1, client → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The client's node id (for logs; the proofs cover it).
    pub node_id: i32,
    /// The client's nonce.
    pub nonce: [u8; NONCE_BYTES],
}

impl Hello {
    /// The wire form.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0u8; HELLO_BYTES];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..9].copy_from_slice(&self.node_id.to_be_bytes());
        out[9..].copy_from_slice(&self.nonce);
        out
    }

    /// Parses the wire form.
    pub fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Hello, AuthError> {
        if bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(AuthError::NotOurProtocol);
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&bytes[5..9]);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&bytes[9..]);
        Ok(Hello { node_id: i32::from_be_bytes(id), nonce })
    }
}

/// Step 2, server → client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// The server's nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// The server's proof.
    pub proof: [u8; TAG_BYTES],
}

impl Challenge {
    /// The wire form.
    pub fn encode(&self) -> [u8; CHALLENGE_BYTES] {
        let mut out = [0u8; CHALLENGE_BYTES];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..5 + NONCE_BYTES].copy_from_slice(&self.nonce);
        out[5 + NONCE_BYTES..].copy_from_slice(&self.proof);
        out
    }

    /// Parses the wire form.
    pub fn decode(bytes: &[u8; CHALLENGE_BYTES]) -> Result<Challenge, AuthError> {
        if bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(AuthError::NotOurProtocol);
        }
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&bytes[5..5 + NONCE_BYTES]);
        let mut proof = [0u8; TAG_BYTES];
        proof.copy_from_slice(&bytes[5 + NONCE_BYTES..]);
        Ok(Challenge { nonce, proof })
    }
}

/// One handshake's transcript: both nonces and the client's id.
#[derive(Clone, Copy)]
pub struct Transcript {
    client: [u8; NONCE_BYTES],
    server: [u8; NONCE_BYTES],
    node_id: i32,
}

impl Transcript {
    /// The transcript of `hello` answered with server nonce `server`.
    pub fn new(hello: &Hello, server: [u8; NONCE_BYTES]) -> Transcript {
        Transcript { client: hello.nonce, server, node_id: hello.node_id }
    }

    /// The server's nonce.
    pub fn server_nonce(&self) -> [u8; NONCE_BYTES] {
        self.server
    }

    fn mac(&self, secret: &ClusterSecret, label: &[u8]) -> HmacSha256 {
        let mut mac = secret.mac();
        mac.update(label);
        mac.update(&self.client);
        mac.update(&self.server);
        mac.update(&self.node_id.to_be_bytes());
        mac
    }

    fn tag(&self, secret: &ClusterSecret, label: &[u8]) -> [u8; TAG_BYTES] {
        self.mac(secret, label).finalize().into_bytes().into()
    }

    /// The server's proof (`Ps`).
    pub fn server_proof(&self, secret: &ClusterSecret) -> [u8; TAG_BYTES] {
        self.tag(secret, SERVER_LABEL)
    }

    /// The client's proof (`Pc`).
    pub fn client_proof(&self, secret: &ClusterSecret) -> [u8; TAG_BYTES] {
        self.tag(secret, CLIENT_LABEL)
    }

    /// Checks a proof received from the peer, in constant time.
    pub fn verify(
        &self,
        secret: &ClusterSecret,
        server: bool,
        proof: &[u8; TAG_BYTES],
    ) -> Result<(), AuthError> {
        let label = if server { SERVER_LABEL } else { CLIENT_LABEL };
        self.mac(secret, label).verify_slice(proof).map_err(|_| AuthError::BadProof)
    }

    /// The session's frame authenticator, for the client (`client == true`) or the server.
    pub fn session(&self, secret: &ClusterSecret, client: bool) -> FrameAuth {
        let key = self.tag(secret, b"strata-controller session");
        FrameAuth { key, client, sent: 0, received: 0 }
    }
}

/// MACs of the frames of one authenticated connection, one side's view.
pub struct FrameAuth {
    key: [u8; TAG_BYTES],
    /// Whether this side opened the connection.
    client: bool,
    sent: u64,
    received: u64,
}

impl FrameAuth {
    fn tag(&self, from_client: bool, sequence: u64, body: &[u8]) -> HmacSha256 {
        // The key is 32 bytes: this cannot fail.
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(if from_client { b"c" } else { b"s" });
        mac.update(&sequence.to_be_bytes());
        mac.update(body);
        mac
    }

    /// The MAC of the next frame this side sends.
    pub fn seal(&mut self, body: &[u8]) -> [u8; TAG_BYTES] {
        let tag = self.tag(self.client, self.sent, body).finalize().into_bytes().into();
        self.sent += 1;
        tag
    }

    /// Checks the MAC of the next frame received.
    pub fn open(&mut self, body: &[u8], tag: &[u8]) -> Result<(), AuthError> {
        let mac = self.tag(!self.client, self.received, body);
        mac.verify_slice(tag).map_err(|_| AuthError::BadFrame)?;
        self.received += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text.as_bytes().to_vec()).unwrap()
    }

    fn handshake(
        client_secret: &ClusterSecret,
        server_secret: &ClusterSecret,
    ) -> Result<(FrameAuth, FrameAuth), AuthError> {
        let hello = Hello { node_id: 3, nonce: [7; NONCE_BYTES] };
        let hello = Hello::decode(&hello.encode())?;
        let transcript = Transcript::new(&hello, [9; NONCE_BYTES]);
        let challenge =
            Challenge { nonce: [9; NONCE_BYTES], proof: transcript.server_proof(server_secret) };
        let challenge = Challenge::decode(&challenge.encode())?;
        // The client checks the server first.
        let seen = Transcript::new(&hello, challenge.nonce);
        seen.verify(client_secret, true, &challenge.proof)?;
        let proof = seen.client_proof(client_secret);
        transcript.verify(server_secret, false, &proof)?;
        Ok((seen.session(client_secret, true), transcript.session(server_secret, false)))
    }

    #[test]
    fn both_sides_with_the_secret_agree_and_frames_check() {
        let k = secret("0123456789abcdef-cluster");
        let (mut client, mut server) = handshake(&k, &k).unwrap();
        let tag = client.seal(b"one");
        server.open(b"one", &tag).unwrap();
        let tag = server.seal(b"reply");
        client.open(b"reply", &tag).unwrap();
        // A replayed frame (same sequence already consumed) fails, as does a tampered one.
        assert_eq!(server.open(b"one", &tag), Err(AuthError::BadFrame));
        let tag = client.seal(b"two");
        assert_eq!(server.open(b"tw0", &tag), Err(AuthError::BadFrame));
    }

    #[test]
    fn a_wrong_secret_fails_on_either_side() {
        let k = secret("0123456789abcdef-cluster");
        let wrong = secret("0123456789abcdef-WRONG!!");
        assert_eq!(handshake(&wrong, &k).err(), Some(AuthError::BadProof));
        assert_eq!(handshake(&k, &wrong).err(), Some(AuthError::BadProof));
    }

    #[test]
    fn a_server_proof_is_not_a_client_proof_and_garbage_is_not_a_hello() {
        let k = secret("0123456789abcdef-cluster");
        let hello = Hello { node_id: 1, nonce: [1; NONCE_BYTES] };
        let t = Transcript::new(&hello, [2; NONCE_BYTES]);
        assert_eq!(t.verify(&k, false, &t.server_proof(&k)), Err(AuthError::BadProof));
        let mut bytes = hello.encode();
        bytes[0] = 0;
        assert_eq!(Hello::decode(&bytes), Err(AuthError::NotOurProtocol));
        assert!(ClusterSecret::new(b"short".to_vec()).is_err());
        assert!(!format!("{k:?}").contains("cluster"));
    }
}

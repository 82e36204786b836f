//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka speaks them (KIP-84): the
//! stored credential, its derivation, and the server's side of the exchange as a pure state
//! machine ([`ScramServer`]), plus the client's side ([`ScramClient`]) for the `strata` tools.
//!
//! The server keeps, per user and mechanism, the salt, the iteration count, StoredKey =
//! H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key");
//! never the password or the salted password. Verifying a client needs no PBKDF2 on the
//! server: one HMAC and one hash (cheap enough to run on a shard). A user that does not exist
//! gets a made-up salt derived from the name, and fails only at the proof, so the exchange
//! does not tell who exists (RFC 5802 §9 suggests it; Kafka does not bother).
//!
//! Nonces and the secret behind made-up salts come from the caller, so the state machine is
//! deterministic and fuzzable. Proofs are compared in constant time.
//!
//! Written by hand on top of `sha2`, `hmac` and `pbkdf2`: no maintained crate implements the
//! server side of SCRAM with Kafka's extensions and without I/O of its own.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::SaslError;

/// Kafka's lowest accepted iteration count for both SCRAM mechanisms (`ScramMechanism`).
pub const ITERATIONS_MIN: i32 = 4096;
/// Kafka's highest iteration count accepted by AlterUserScramCredentials.
pub const ITERATIONS_MAX: i32 = 16384;
/// Iterations of credentials the broker creates itself (bootstrap user, `strata user`).
pub const ITERATIONS_DEFAULT: i32 = 4096;
/// Bytes of salt the broker and the `strata` tools generate.
pub const SALT_BYTES: usize = 32;
/// Longest user name accepted in a SCRAM or PLAIN exchange or a credential change.
pub const USER_NAME_BYTES_MAX: usize = 1024;
/// Longest salt accepted from AlterUserScramCredentials.
pub const SALT_BYTES_MAX: usize = 1024;

/// A SCRAM mechanism, with Kafka's numeric type (DescribeUserScramCredentials) and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256 (type 1).
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// SCRAM-SHA-512 (type 2).
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms, SHA-256 first.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// From a SASL mechanism name (exact, upper case, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Self> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type byte (1 or 2).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// From Kafka's type byte; `None` for 0 (UNKNOWN) and anything else.
    pub fn from_kafka_type(value: i8) -> Option<Self> {
        ScramMechanism::ALL.into_iter().find(|m| m.kafka_type() == value)
    }

    /// Output size of the hash, in bytes (the size of StoredKey, ServerKey, proofs).
    pub fn hash_bytes(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length: this cannot fail.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            parts.iter().for_each(|p| mac.update(p));
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, parts),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// SaltedPassword = Hi(password, salt, iterations) (PBKDF2 with this HMAC). Costly by
    /// design (milliseconds): keep it off a shard's executor.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_bytes()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server stores for one user and one mechanism (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The salt, as the client gets it.
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
    /// H(ClientKey).
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        write!(f, "ScramCredential {{ iterations: {}, .. }}", self.iterations)
    }
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        iterations: i32,
        salted_password: &[u8],
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, &[b"Server Key"]),
        }
    }

    /// The credential for a password (PBKDF2: milliseconds of CPU).
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let rounds = u32::try_from(iterations.max(1)).unwrap_or(1);
        let salted = mechanism.salted_password(password.as_bytes(), salt, rounds);
        ScramCredential::from_salted_password(mechanism, salt, iterations, &salted)
    }

    /// Whether `password` is this credential's (PLAIN against SCRAM credentials, as Redpanda
    /// does). Runs PBKDF2: keep it off a shard's executor. Constant-time comparison.
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let derived =
            ScramCredential::from_password(mechanism, password, &self.salt, self.iterations);
        derived.stored_key.ct_eq(&self.stored_key).into()
    }

    /// Checks a credential before storing it: iterations within Kafka's bounds, key sizes
    /// matching the mechanism, a salt of sane size.
    pub fn validate(&self, mechanism: ScramMechanism) -> Result<(), String> {
        if self.iterations < ITERATIONS_MIN {
            return Err(format!(
                "iterations {} is less than the minimum {ITERATIONS_MIN} for {mechanism}",
                self.iterations
            ));
        }
        if self.iterations > ITERATIONS_MAX {
            return Err(format!(
                "iterations {} is more than the maximum {ITERATIONS_MAX} for {mechanism}",
                self.iterations
            ));
        }
        if self.salt.is_empty() || self.salt.len() > SALT_BYTES_MAX {
            return Err(format!("a salt must have 1 to {SALT_BYTES_MAX} bytes"));
        }
        let size = mechanism.hash_bytes();
        if self.stored_key.len() != size || self.server_key.len() != size {
            return Err(format!("keys of {mechanism} have {size} bytes"));
        }
        Ok(())
    }
}

/// Serde of byte fields as base64 strings (the metadata file stays readable).
mod b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Kafka's message for a failed proof or an unknown user: the same for both, so a client
/// cannot tell which (Kafka's SaslServerAuthenticator words it so).
pub fn invalid_credentials(mechanism: ScramMechanism, reauthenticating: bool) -> SaslError {
    let phase = if reauthenticating { "re-authentication" } else { "authentication" };
    SaslError::Credentials(format!(
        "Authentication failed during {phase} due to invalid credentials with SASL mechanism \
         {mechanism}"
    ))
}

/// Decodes RFC 5802's saslname (`=2C` is `,`, `=3D` is `=`; any other `=` is an error).
pub fn decode_saslname(text: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslError::Malformed(format!("invalid escape in user name {text:?}"))),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a user name as RFC 5802's saslname.
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Splits `key=value` attributes of a SCRAM message (`n=user,r=nonce,...`).
fn attributes(message: &str) -> Result<Vec<(&str, &str)>, SaslError> {
    message
        .split(',')
        .map(|part| {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| SaslError::Malformed(format!("attribute {part:?} has no value")))?;
            Ok((key, value))
        })
        .collect()
}

fn utf8(bytes: &[u8]) -> Result<&str, SaslError> {
    std::str::from_utf8(bytes).map_err(|_| SaslError::Malformed("message is not UTF-8".into()))
}

/// Whether the client-final message's `r=` echoes the combined nonce (client's, then
/// server's). librdkafka before 2.6.1 (confluentinc/librdkafka#4895; Debian's kcat links 2.0.2)
/// sends the client's nonce once more in front of it; Kafka 3.8.1 to 3.9 accept that form too
/// (`endsWith`), so it is accepted here in exactly that shape: the server's nonce is still
/// checked in full, which is what guards against a replayed exchange.
fn nonce_echoed(echoed: &str, nonce: &str, client_nonce_bytes: usize) -> bool {
    if echoed == nonce {
        return true;
    }
    let client_nonce = nonce.get(..client_nonce_bytes).unwrap_or(nonce);
    echoed.strip_prefix(client_nonce) == Some(nonce)
}

/// A valid RFC 5802 nonce: printable ASCII except `,`.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The parts of a client-first message the server needs.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// The GS2 header (`n,,` or `n,a=user,`), echoed in the final message's `c=`.
    pub gs2_header: String,
    /// The user name (decoded).
    pub user: String,
    /// The client's nonce.
    pub nonce: String,
    /// The message without the GS2 header (part of the AuthMessage).
    pub bare: String,
    /// Extensions after the nonce (Kafka's `tokenauth=true`, ...).
    pub extensions: Vec<(String, String)>,
}

/// Parses a client-first message. Channel binding (`p=`) is refused (Kafka has none); an
/// authorization id must name the user itself, as Kafka requires.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = utf8(message)?;
    let malformed =
        |why: &str| SaslError::Malformed(format!("invalid client-first message: {why}"));
    let (flag, rest) = text.split_once(',').ok_or_else(|| malformed("no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(SaslError::Malformed("channel binding is not supported".into()))
        }
        _ => return Err(malformed("bad channel binding flag")),
    }
    let (authzid_raw, bare) = rest.split_once(',').ok_or_else(|| malformed("no GS2 header end"))?;
    let authzid = match authzid_raw {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=").ok_or_else(|| malformed("bad authzid"))?)?),
    };
    let attrs = attributes(bare)?;
    let mut attrs = attrs.into_iter();
    let user = match attrs.next() {
        Some(("n", name)) => decode_saslname(name)?,
        Some(("m", _)) => return Err(malformed("mandatory extensions are not supported")),
        _ => return Err(malformed("no user name")),
    };
    let nonce = match attrs.next() {
        Some(("r", nonce)) if valid_nonce(nonce) => nonce.to_owned(),
        _ => return Err(malformed("no valid nonce")),
    };
    let extensions = attrs.map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    if user.is_empty() || user.len() > USER_NAME_BYTES_MAX {
        return Err(malformed("the user name is empty or too long"));
    }
    if authzid.as_ref().is_some_and(|a| *a != user) {
        return Err(SaslError::Credentials(
            "Authentication failed: authorization id differs from the user name".into(),
        ));
    }
    let gs2_header = format!("{flag},{authzid_raw},");
    Ok(ClientFirst { gs2_header, user, nonce, bare: bare.to_owned(), extensions })
}

/// Where a [`ScramServer`] is.
#[derive(Debug)]
enum ServerState {
    /// Waiting for the client-first message.
    First,
    /// Sent the server-first message; waiting for the client-final one.
    Final {
        user: String,
        gs2_header: String,
        nonce: String,
        /// How many leading bytes of `nonce` are the client's.
        client_nonce_bytes: usize,
        /// client-first-message-bare "," server-first-message.
        auth_prefix: String,
        /// `None` for a user that does not exist: the proof fails whatever it is.
        credential: Option<ScramCredential>,
    },
    /// Finished, either way: nothing more is accepted.
    Done,
}

/// The server side of one SCRAM exchange. See the module docs.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    reauthenticating: bool,
    state: ServerState,
}

/// A finished SCRAM exchange.
#[derive(Debug, PartialEq, Eq)]
pub struct ScramSuccess {
    /// The authenticated user.
    pub user: String,
    /// The server-final message (`v=` signature) for the client.
    pub server_final: Vec<u8>,
}

impl ScramServer {
    /// A new exchange for `mechanism`; `reauthenticating` only changes error messages.
    pub fn new(mechanism: ScramMechanism, reauthenticating: bool) -> Self {
        ScramServer { mechanism, reauthenticating, state: ServerState::First }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The user the client-first message named, while waiting for the final one.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            ServerState::Final { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Whether the next message is the client-first one.
    pub fn awaits_client_first(&self) -> bool {
        matches!(self.state, ServerState::First)
    }

    /// Handles the client-first message: looks the user up with `lookup` and returns the
    /// server-first message. `server_nonce` must be fresh random printable text (no `,`);
    /// `mock_secret` keys the made-up salt of unknown users.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
        mock_secret: &[u8],
    ) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, ServerState::First) {
            self.state = ServerState::Done;
            return Err(SaslError::State("unexpected client-first message".into()));
        }
        self.state = ServerState::Done;
        let first = parse_client_first(message)?;
        if let Some((key, _)) = first.extensions.iter().find(|(k, _)| k == "tokenauth") {
            let why = format!("extension {key} (delegation tokens) is not supported");
            return Err(SaslError::Credentials(why));
        }
        assert!(valid_nonce(server_nonce), "server nonces are printable, without commas");
        let credential = lookup(&first.user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => {
                (self.mechanism.hmac(mock_secret, &[first.user.as_bytes()]), ITERATIONS_DEFAULT)
            }
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        self.state = ServerState::Final {
            user: first.user,
            gs2_header: first.gs2_header,
            client_nonce_bytes: first.nonce.len(),
            nonce,
            auth_prefix: format!("{},{server_first}", first.bare),
            credential,
        };
        Ok(server_first.into_bytes())
    }

    /// Handles the client-final message: checks the channel binding echo, the nonce and the
    /// proof; returns the user and the server-final message.
    pub fn client_final(&mut self, message: &[u8]) -> Result<ScramSuccess, SaslError> {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        let ServerState::Final {
            user,
            gs2_header,
            nonce,
            client_nonce_bytes,
            auth_prefix,
            credential,
        } = state
        else {
            return Err(SaslError::State("unexpected client-final message".into()));
        };
        let text = utf8(message)?;
        let malformed =
            |why: &str| SaslError::Malformed(format!("invalid client-final message: {why}"));
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or_else(|| malformed("no proof"))?;
        let attrs = attributes(without_proof)?;
        let mut attrs = attrs.iter();
        match attrs.next() {
            Some(("c", binding))
                if B64.decode(binding).ok().as_deref() == Some(gs2_header.as_bytes()) => {}
            _ => return Err(malformed("channel binding does not echo the GS2 header")),
        }
        match attrs.next() {
            Some(("r", echoed)) if nonce_echoed(echoed, &nonce, client_nonce_bytes) => {}
            _ => return Err(malformed("nonce mismatch")),
        }
        let proof = B64.decode(proof).map_err(|_| malformed("proof is not base64"))?;
        let auth_message = format!("{auth_prefix},{without_proof}");
        let invalid = || invalid_credentials(self.mechanism, self.reauthenticating);
        let credential = credential.ok_or_else(invalid)?;
        if proof.len() != self.mechanism.hash_bytes() {
            return Err(invalid());
        }
        let signature = self.mechanism.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = self.mechanism.hash(&client_key);
        if !bool::from(stored.ct_eq(&credential.stored_key)) {
            return Err(invalid());
        }
        let server_signature =
            self.mechanism.hmac(&credential.server_key, &[auth_message.as_bytes()]);
        let server_final = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok(ScramSuccess { user, server_final })
    }
}

/// The client side of a SCRAM exchange (for the `strata` tools and tests).
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    client_nonce: String,
    /// After the server-first message: AuthMessage and SaltedPassword, to check the server.
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client for `user`/`password`; `nonce` must be fresh random printable text.
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            mechanism,
            user: user.to_owned(),
            password: password.to_owned(),
            client_nonce: nonce.to_owned(),
            expected_server_signature: None,
        }
    }

    /// The client-first message.
    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,n={},r={}", encode_saslname(&self.user), self.client_nonce).into_bytes()
    }

    /// Answers the server-first message with the client-final one (runs PBKDF2).
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text = utf8(server_first)?;
        let malformed =
            |why: &str| SaslError::Malformed(format!("invalid server-first message: {why}"));
        let attrs = attributes(text)?;
        let get = |key: &str| attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let nonce = get("r").ok_or_else(|| malformed("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(malformed("the nonce does not extend ours"));
        }
        let salt = B64
            .decode(get("s").ok_or_else(|| malformed("no salt"))?)
            .map_err(|_| malformed("salt is not base64"))?;
        let iterations: u32 = get("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| (1..=1_000_000).contains(i))
            .ok_or_else(|| malformed("bad iteration count"))?;
        let salted = self.mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.mechanism.hmac(&salted, &[b"Client Key"]);
        let stored_key = self.mechanism.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let first_bare = format!("n={},r={}", encode_saslname(&self.user), self.client_nonce);
        let auth_message = format!("{first_bare},{text},{without_proof}");
        let signature = self.mechanism.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = self.mechanism.hmac(&salted, &[b"Server Key"]);
        self.expected_server_signature =
            Some(self.mechanism.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server knew our credential.
    pub fn check_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let text = utf8(server_final)?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(SaslError::Credentials(format!("the server refused: {error}")));
        }
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.split(',').next().unwrap_or("")).ok())
            .ok_or_else(|| SaslError::Malformed("invalid server-final message".into()))?;
        let expected = self.expected_server_signature.as_deref().unwrap_or(&[]);
        if expected.is_empty() || !bool::from(signature.ct_eq(expected)) {
            return Err(SaslError::Credentials("the server's signature is wrong".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

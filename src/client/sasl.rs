//! SASL on the tools' connections (KIP-43 framing): SaslHandshake v1 names the mechanism,
//! then SaslAuthenticate v2 carries the mechanism's messages until it is done.
//!
//! PLAIN (RFC 4616) is written here: one message, `\0user\0password`. SCRAM-SHA-256/512
//! (RFC 5802) belong to the `security::sasl` module the SASL work adds: its client side
//! plugs in at [`mechanism`], the one place that maps a mechanism name to its messages.

use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};
use crate::security::client::SaslCredentials;

/// The client side of one SASL mechanism: the first message, then an answer to each
/// server message, until it returns `None` (done).
pub trait ClientMechanism {
    /// The next message to send, given the server's last one (empty before the first).
    fn step(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, ClientError>;
}

/// PLAIN: authzid empty, then the user name and password, NUL-separated.
struct Plain {
    message: Option<Vec<u8>>,
}

impl ClientMechanism for Plain {
    fn step(&mut self, _server: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.message.take())
    }
}

/// The client side of `credentials.mechanism`.
pub fn mechanism(credentials: &SaslCredentials) -> Result<Box<dyn ClientMechanism>, ClientError> {
    match credentials.mechanism.as_str() {
        "PLAIN" => {
            let mut message = vec![0u8];
            message.extend_from_slice(credentials.username.as_bytes());
            message.push(0);
            message.extend_from_slice(credentials.password.as_bytes());
            Ok(Box::new(Plain { message: Some(message) }))
        }
        other => Err(ClientError::Protocol(format!(
            "SASL mechanism {other} is not available in the strata tools yet (PLAIN is)"
        ))),
    }
}

/// Authenticates `client` with `credentials`: SASL_AUTHENTICATION_FAILED and the broker's
/// message when it refuses.
pub fn authenticate(client: &mut Client, credentials: &SaslCredentials) -> Result<(), ClientError> {
    let mut mechanism = mechanism(credentials)?;
    let name = StrBytes::from_string(credentials.mechanism.clone());
    let body = RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(name));
    let ResponseKind::SaslHandshake(r) = client.call_at(ApiKey::SaslHandshake, 1, body)? else {
        return Err(ClientError::Protocol("SaslHandshake answered with another message".into()));
    };
    let offered: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    ClientError::check(r.error_code, format!("SASL mechanism (broker offers {offered:?})"))?;
    let mut server = Vec::new();
    while let Some(message) = mechanism.step(&server)? {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(message.into());
        let body = RequestKind::SaslAuthenticate(request);
        let ResponseKind::SaslAuthenticate(r) =
            client.call_at(ApiKey::SaslAuthenticate, 2, body)?
        else {
            return Err(ClientError::Protocol("SaslAuthenticate answered otherwise".into()));
        };
        if r.error_code != 0 {
            let message = r.error_message.map(|m| m.to_string()).unwrap_or_default();
            return ClientError::check(r.error_code, format!("SASL authentication: {message}"));
        }
        server = r.auth_bytes.to_vec();
    }
    Ok(())
}

//! SASL on the tools' connections (KIP-43 framing): SaslHandshake v1 names the mechanism,
//! then SaslAuthenticate v2 carries the mechanism's messages until it is done.
//!
//! The messages themselves (PLAIN, SCRAM-SHA-256/512, the broker's SCRAM signature checked at
//! the end) come from `security::sasl::client`, the one client step function the tools and
//! the tests share; this file only frames them and draws the SCRAM nonce.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};
use crate::security::client::SaslCredentials;
use crate::security::sasl::client::ClientExchange;

/// Random bytes in a SCRAM client nonce (RFC 5802 asks for a fresh, unpredictable one).
const NONCE_BYTES: usize = 24;

/// The client side of `credentials.mechanism`, with a fresh nonce.
fn exchange(credentials: &SaslCredentials) -> Result<ClientExchange, ClientError> {
    let mut random = [0u8; NONCE_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| ClientError::Protocol(format!("no random numbers for a nonce: {e}")))?;
    // Base64 is printable and has no comma, as a SCRAM nonce must be.
    let nonce = B64.encode(random);
    let (user, password) = (&credentials.username, &credentials.password);
    ClientExchange::new(&credentials.mechanism, user, password, &nonce)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Authenticates `client` with `credentials`: SASL_AUTHENTICATION_FAILED and the broker's
/// message when it refuses.
pub fn authenticate(client: &mut Client, credentials: &SaslCredentials) -> Result<(), ClientError> {
    let mut exchange = exchange(credentials)?;
    let name = StrBytes::from_string(credentials.mechanism.clone());
    let body = RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(name));
    let ResponseKind::SaslHandshake(r) = client.call_at(ApiKey::SaslHandshake, 1, body)? else {
        return Err(ClientError::Protocol("SaslHandshake answered with another message".into()));
    };
    let offered: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    ClientError::check(r.error_code, format!("SASL mechanism (broker offers {offered:?})"))?;
    let mut server = Vec::new();
    let step_failed = |e: crate::security::sasl::SaslError| {
        ClientError::Protocol(format!("SASL {}: {e}", credentials.mechanism))
    };
    while let Some(message) = exchange.step(&server).map_err(step_failed)? {
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

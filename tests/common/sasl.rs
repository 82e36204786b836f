//! SASL for tests, over the raw client of this module (test-only): the handshake and
//! authenticate requests, a whole SCRAM login, and KIP-554 user upserts.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata::security::sasl::scram::{ScramClient, ScramMechanism};

use super::Conn;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// SaslHandshake for `mechanism` at `version`.
pub fn handshake(conn: &mut Conn, mechanism: &str, version: i16) -> SaslHandshakeResponse {
    let req = SaslHandshakeRequest::default().with_mechanism(s(mechanism));
    let ResponseKind::SaslHandshake(r) =
        conn.call(ApiKey::SaslHandshake, version, RequestKind::SaslHandshake(req))
    else {
        panic!("not a SaslHandshake response")
    };
    r
}

/// SaslAuthenticate with `token` at `version`.
pub fn authenticate(conn: &mut Conn, token: Vec<u8>, version: i16) -> SaslAuthenticateResponse {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let ResponseKind::SaslAuthenticate(r) =
        conn.call(ApiKey::SaslAuthenticate, version, RequestKind::SaslAuthenticate(req))
    else {
        panic!("not a SaslAuthenticate response")
    };
    r
}

/// A SCRAM login on `conn` (handshake included): the last SaslAuthenticate response.
pub fn scram_login(
    conn: &mut Conn,
    m: ScramMechanism,
    user: &str,
    password: &str,
) -> SaslAuthenticateResponse {
    assert_eq!(handshake(conn, m.name(), 1).error_code, 0);
    let mut client = ScramClient::new(m, user, password, "fyko+d2lbbFgONRv9qkxdawL");
    let first = authenticate(conn, client.first_message(), 2);
    assert_eq!(first.error_code, 0, "{:?}", first.error_message);
    let last = client.final_message(&first.auth_bytes).unwrap();
    let done = authenticate(conn, last, 2);
    if done.error_code == 0 {
        client.check_server_final(&done.auth_bytes).expect("the broker proves it knows the key");
    }
    done
}

/// A KIP-554 upsert of `user`'s `m` credential (a fixed salt: tests only).
pub fn upsertion(
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> ScramCredentialUpsertion {
    let salt = b"0123456789abcdef".to_vec();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
    ScramCredentialUpsertion::default()
        .with_name(s(user))
        .with_mechanism(m.kafka_type())
        .with_iterations(iterations)
        .with_salt(salt.into())
        .with_salted_password(salted.into())
}

/// AlterUserScramCredentials v0: each result's user and error code.
pub fn alter(conn: &mut Conn, req: AlterUserScramCredentialsRequest) -> Vec<(String, i16)> {
    let body = RequestKind::AlterUserScramCredentials(req);
    let ResponseKind::AlterUserScramCredentials(r) =
        conn.call(ApiKey::AlterUserScramCredentials, 0, body)
    else {
        panic!("not an AlterUserScramCredentials response")
    };
    r.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect()
}

//! SASL PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL password`.
//!
//! Strata checks PLAIN passwords against the user's SCRAM credentials (as Redpanda does): no
//! second user list, and no password stored anywhere. The check runs PBKDF2 (milliseconds),
//! so the broker runs [`check_password`] off the shard's executor. PLAIN sends the password
//! in clear: enable it on SASL_SSL listeners only, unless on a trusted network.

use super::scram::{ScramCredential, ScramMechanism, USER_NAME_BYTES_MAX};
use super::SaslError;

/// Longest password accepted.
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// A parsed PLAIN message.
#[derive(PartialEq, Eq)]
pub struct PlainMessage {
    /// The user (authcid).
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainMessage {{ user: {:?}, .. }}", self.user)
    }
}

/// Parses a PLAIN message with Kafka's rules (`PlainSaslServer`): user and password must
/// not be empty, and an authorization id, when given, must be the user itself.
pub fn parse(message: &[u8]) -> Result<PlainMessage, SaslError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslError::Malformed("PLAIN message is not UTF-8".into()))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "Invalid SASL/PLAIN response: expected 3 tokens separated by NUL".into(),
        ));
    };
    if user.is_empty() {
        return Err(SaslError::Credentials("Authentication failed: username not specified".into()));
    }
    if password.is_empty() {
        return Err(SaslError::Credentials("Authentication failed: password not specified".into()));
    }
    if user.len() > USER_NAME_BYTES_MAX || password.len() > PASSWORD_BYTES_MAX {
        return Err(SaslError::Malformed("PLAIN user name or password too long".into()));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::Credentials(
            "Authentication failed: Client requested an authorization id that is different from \
             username"
                .into(),
        ));
    }
    Ok(PlainMessage { user: user.to_owned(), password: password.to_owned() })
}

/// Whether `password` matches one of the user's SCRAM credentials (the strongest first).
/// Runs PBKDF2 once per credential tried: call it off the shard's executor.
pub fn check_password(credentials: &[(ScramMechanism, ScramCredential)], password: &str) -> bool {
    let mut sorted: Vec<&(ScramMechanism, ScramCredential)> = credentials.iter().collect();
    sorted.sort_by_key(|(m, _)| std::cmp::Reverse(*m));
    // One credential decides: trying the other too would double the cost of a wrong guess
    // and answer nothing more (both are set from the same password).
    sorted.first().is_some_and(|(m, c)| c.matches_password(*m, password))
}

/// A PLAIN message (the client side).
pub fn client_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_with_kafkas_rules() {
        let parsed = parse(b"\0alice\0secret").unwrap();
        assert_eq!(parsed, PlainMessage { user: "alice".into(), password: "secret".into() });
        assert!(parse(b"alice\0alice\0secret").is_ok());
        assert!(!format!("{parsed:?}").contains("secret"));
        for bad in
            [&b""[..], b"\0", b"\0a", b"\0\0p", b"\0a\0", b"b\0a\0p", b"\0a\0p\0x", b"\xff\0a\0p"]
        {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(client_message("u", "p"), b"\0u\0p");
    }

    #[test]
    fn passwords_check_against_the_strongest_credential() {
        let make = |m, p| (m, ScramCredential::from_password(m, p, b"salt", 4096));
        let creds = [make(ScramMechanism::Sha256, "old"), make(ScramMechanism::Sha512, "new")];
        assert!(check_password(&creds, "new"));
        assert!(!check_password(&creds, "old"));
        assert!(!check_password(&[], "new"));
    }
}

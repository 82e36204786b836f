//! Who a connection is, and what it may do: principals today; TLS, SASL mechanisms, the
//! authorizer and client quotas as they land (one file each, pure where they can be).
//!
//! Handlers never check identities themselves: they ask this module one question (who is
//! this, may it do that), so the checks live in one place and the produce/fetch path pays a
//! cache lookup, not a walk over rules.
//!
//! This module knows nothing of glommio or of the broker's shards.
//!
//! | file            | job                                                                  |
//! |-----------------|----------------------------------------------------------------------|
//! | `acl`           | Kafka's ACL vocabulary: codes, names, bindings, filters, validation  |
//! | `authorizer`    | StandardAuthorizer semantics over the ACLs, with a per-shard cache   |
//! | `quota`         | client quota resolution and the broker-wide rate sensors             |
//! | `peer_auth`     | the controller port's mutual HMAC challenge over the cluster secret  |
//! | `listener`      | listeners' security protocols (PLAINTEXT, SSL, SASL_*)               |
//! | `tls`           | rustls server configuration, certificate reload                     |
//! | `principal_mapping` | ssl.principal.mapping.rules: certificate subject → principal     |
//! | `sasl`          | SASL mechanisms (PLAIN, SCRAM, OAUTHBEARER) as pure state machines   |
//! | `client`        | the tools' side: TLS and SASL settings (-X, --command-config)        |
//! | `admin_auth`    | the admin HTTP listener's bearer tokens (constant-time, rotatable)   |

pub mod acl;
pub mod admin_auth;
pub mod authorizer;
pub mod client;
pub mod listener;
pub mod peer_auth;
pub mod principal_mapping;
pub mod quota;
pub mod sasl;
pub mod tls;

use std::fmt;

pub use listener::SecurityProtocol;

/// Kafka's principal type for users (`User:alice`).
pub const USER_TYPE: &str = "User";

/// Kafka's name of the principal of an unauthenticated connection (`User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// An authenticated identity, as Kafka's `KafkaPrincipal`: a type and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// Principal type; `User` for every principal Strata creates.
    pub kind: String,
    /// The user name (SASL user, mapped certificate subject, ...).
    pub name: String,
}

impl Principal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Self {
        Principal { kind: USER_TYPE.to_owned(), name: name.into() }
    }

    /// `User:ANONYMOUS`, the principal of a PLAINTEXT connection.
    pub fn anonymous() -> Self {
        Principal::user(ANONYMOUS)
    }

    /// Parses Kafka's `Type:name` form (`User:alice`); the name may contain colons.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Principal { kind: kind.to_owned(), name: name.to_owned() })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_print_and_parse_as_kafka_writes_them() {
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(Principal::parse("User:alice"), Some(Principal::user("alice")));
        let odd = Principal::parse("User:CN=a:b").map(|p| p.name);
        assert_eq!(odd.as_deref(), Some("CN=a:b"));
        assert_eq!(Principal::parse("alice"), None);
        assert_eq!(Principal::parse("User:"), None);
    }
}

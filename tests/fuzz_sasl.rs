//! Fuzz target `sasl`: what a client sends during SASL authentication, fed to the broker's
//! pure SASL code (`strata::security::sasl`). The first byte of an input picks the entry
//! point, the rest is the client's message:
//!
//! | byte % 5 | entry point |
//! |---|---|
//! | 0 | PLAIN message parsing |
//! | 1 | SCRAM client-first message (SHA-256 and SHA-512 servers) |
//! | 2 | SCRAM client-final message, after a valid client-first |
//! | 3 | OAUTHBEARER initial response, then its token through the unsecured and JWKS validators |
//! | 4 | a whole connection: a mechanism byte, then SaslAuthenticate tokens split at `0xff` |
//!
//! Property: no input panics; a SCRAM final message passes only with the right proof, which
//! a mutation cannot forge (checked: every success is the corpus's own valid exchange).

#[path = "fuzz/mod.rs"]
mod fuzz;

use strata::security::sasl::oauthbearer::{self, OAuthSettings, Validator};
use strata::security::sasl::scram::{ScramCredential, ScramMechanism, ScramServer};
use strata::security::sasl::{plain, AuthContext, Clock, Mechanism, SaslConfig, SaslConnection};

const JWKS: &str = include_str!("../src/security/sasl/oauthbearer/fixtures/jwks.json");
/// 2030-01-01T00:00:00Z (the corpus tokens are valid then).
const NOW_MS: i64 = 1_893_456_000_000;

/// The only user: `alice`, password `pw`, salt `salt`.
fn lookup(user: &str, m: ScramMechanism) -> Option<ScramCredential> {
    (user == "alice").then(|| ScramCredential::from_password(m, "pw", b"salt", 4096))
}

fn oauth(validator: Validator) -> OAuthSettings {
    OAuthSettings {
        validator,
        expected_issuer: Some("https://idp".into()),
        expected_audience: vec!["kafka".into()],
        sub_claim: "sub".into(),
        clock_skew_ms: 30_000,
    }
}

fn scram_first(m: ScramMechanism, message: &[u8]) -> (ScramServer, bool) {
    let mut server = ScramServer::new(m, false);
    let ok = server.client_first(message, |u| lookup(u, m), "srvnonce", b"secret").is_ok();
    (server, ok)
}

fn connection(input: &[u8], config: &SaslConfig) {
    let mut conn = SaslConnection::default();
    let (mechanism, tokens) = input.split_at(input.len().min(1));
    let mechanism = Mechanism::ALL[usize::from(mechanism.first().copied().unwrap_or(0)) % 4];
    let version = i16::from(!input.len().is_multiple_of(3));
    conn.handshake(mechanism.name(), version, config);
    let ctx = AuthContext {
        config,
        lookup: &lookup,
        nonce: "srvnonce",
        mock_secret: b"secret",
        clock: Clock { now_ms: NOW_MS, monotonic_ms: 1 },
    };
    for token in tokens.split(|b| *b == 0xff).filter(|t| !t.is_empty()) {
        let _ = conn.authenticate(token, 2, &ctx);
        let _ = conn.admit(kafka_protocol::messages::ApiKey::Produce, 2);
    }
}

#[test]
fn fuzz_sasl() {
    let jwks = Validator::Jwks(oauthbearer::parse_jwks(JWKS).unwrap());
    let settings = [oauth(Validator::Unsecured), oauth(jwks)];
    let config = SaslConfig {
        mechanisms: Mechanism::ALL.to_vec(),
        oauth: Some(settings[0].clone()),
        max_reauth_ms: 1_000,
    };
    fuzz::run("sasl", |input| {
        let Some((&selector, message)) = input.split_first() else {
            return;
        };
        match selector % 5 {
            0 => {
                if let Ok(parsed) = plain::parse(message) {
                    assert!(!parsed.user.is_empty() && !parsed.password.is_empty());
                }
            }
            1 => {
                for m in ScramMechanism::ALL {
                    scram_first(m, message);
                }
            }
            2 => {
                let (mut server, ok) = scram_first(ScramMechanism::Sha256, b"n,,n=alice,r=cnonce");
                assert!(ok);
                if let Ok(done) = server.client_final(message) {
                    assert_eq!(done.user, "alice", "only alice's real proof passes");
                }
            }
            3 => {
                if let Ok(response) = oauthbearer::parse_client_response(message) {
                    for s in &settings {
                        let _ = oauthbearer::validate(&response.token, s, NOW_MS);
                    }
                }
                let text = String::from_utf8_lossy(message);
                for s in &settings {
                    let _ = oauthbearer::validate(&text, s, NOW_MS);
                }
            }
            _ => connection(message, &config),
        }
    });
}

use super::oauthbearer::{self, OAuthSettings, Validator};
use super::scram::ScramClient;
use super::*;
use kafka_protocol::error::ResponseError as E;

const NOW_MS: i64 = 1_893_456_000_000;

fn config(max_reauth_ms: u64) -> SaslConfig {
    SaslConfig {
        mechanisms: Mechanism::ALL.to_vec(),
        oauth: Some(OAuthSettings {
            validator: Validator::Unsecured,
            expected_issuer: None,
            expected_audience: Vec::new(),
            sub_claim: "sub".into(),
            clock_skew_ms: 0,
        }),
        max_reauth_ms,
    }
}

fn credential(m: ScramMechanism) -> ScramCredential {
    ScramCredential::from_password(m, "pw", b"salt", 4096)
}

fn lookup(user: &str, m: ScramMechanism) -> Option<ScramCredential> {
    (user == "alice").then(|| credential(m))
}

fn ctx(config: &SaslConfig, monotonic_ms: u64) -> AuthContext<'_> {
    AuthContext {
        config,
        lookup: &lookup,
        nonce: "servernonce",
        mock_secret: b"secret",
        clock: Clock { now_ms: NOW_MS + monotonic_ms as i64, monotonic_ms },
    }
}

/// A full SCRAM login at `at` ms; the session lifetime announced.
fn scram_login(
    conn: &mut SaslConnection,
    config: &SaslConfig,
    password: &str,
    at: u64,
) -> Result<i64, SaslError> {
    let m = ScramMechanism::Sha256;
    assert_eq!(conn.handshake("SCRAM-SHA-256", 1, config).error_code, 0);
    let mut client = ScramClient::new(m, "alice", password, "clientnonce");
    let Outcome::Challenge(first) =
        conn.authenticate(&client.first_message(), 2, &ctx(config, at))?
    else {
        panic!("a challenge first");
    };
    let last = client.final_message(&first).unwrap();
    match conn.authenticate(&last, 2, &ctx(config, at))? {
        Outcome::Success { principal, response, session_lifetime_ms } => {
            assert_eq!(principal, "alice");
            client.check_server_final(&response).unwrap();
            Ok(session_lifetime_ms)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn before_authenticating_only_api_versions_and_sasl_handshake_pass() {
    let mut conn = SaslConnection::default();
    assert_eq!(conn.admit(ApiKey::ApiVersions, 0), Admit::Pass);
    assert_eq!(conn.admit(ApiKey::SaslHandshake, 0), Admit::Pass);
    assert_eq!(conn.admit(ApiKey::Produce, 0), Admit::Close("sasl_unauthenticated_request"));
    assert_eq!(conn.admit(ApiKey::ApiVersions, 0), Admit::Close("sasl_failed_connection"));

    let mut conn = SaslConnection::default();
    assert_eq!(
        conn.admit(ApiKey::SaslAuthenticate, 0),
        Admit::Close("sasl_unauthenticated_request")
    );

    let config = config(0);
    let mut conn = SaslConnection::default();
    conn.handshake("SCRAM-SHA-256", 1, &config);
    assert_eq!(conn.admit(ApiKey::SaslAuthenticate, 0), Admit::Pass);
    assert_eq!(conn.admit(ApiKey::Metadata, 0), Admit::Close("sasl_unauthenticated_request"));
    assert!(!conn.is_authenticated());
}

#[test]
fn a_scram_login_authenticates_and_then_everything_passes() {
    let config = config(0);
    let mut conn = SaslConnection::default();
    assert_eq!(scram_login(&mut conn, &config, "pw", 0), Ok(0));
    assert!(conn.is_authenticated());
    assert_eq!(conn.principal(), Some("alice"));
    assert_eq!(conn.admit(ApiKey::Produce, u64::MAX), Admit::Pass, "no expiry configured");
    let again = conn.authenticate(b"x", 2, &ctx(&config, 0)).unwrap_err();
    assert!(matches!(again, SaslError::State(_)));
    assert!(conn.is_authenticated(), "an extra SaslAuthenticate is answered, not fatal");
}

#[test]
fn a_wrong_password_fails_the_connection() {
    let config = config(0);
    let mut conn = SaslConnection::default();
    let err = scram_login(&mut conn, &config, "wrong", 0).unwrap_err();
    assert!(err.to_string().contains("invalid credentials"), "{err}");
    assert!(!conn.is_authenticated());
    assert_eq!(conn.admit(ApiKey::SaslAuthenticate, 0), Admit::Close("sasl_failed_connection"));
}

#[test]
fn unknown_or_disabled_mechanisms_are_refused_and_close() {
    let only_scram =
        SaslConfig { mechanisms: vec![Mechanism::Scram(ScramMechanism::Sha512)], ..config(0) };
    for name in ["PLAIN", "GSSAPI", "scram-sha-512", ""] {
        let mut conn = SaslConnection::default();
        let answer = conn.handshake(name, 1, &only_scram);
        assert_eq!(
            answer,
            HandshakeAnswer { error_code: E::UnsupportedSaslMechanism.code(), close: true }
        );
    }
    let mut conn = SaslConnection::default();
    conn.handshake("SCRAM-SHA-512", 1, &only_scram);
    let twice = conn.handshake("SCRAM-SHA-512", 1, &only_scram);
    assert_eq!(twice, HandshakeAnswer { error_code: E::IllegalSaslState.code(), close: true });
}

#[test]
fn plain_passwords_are_checked_by_the_caller() {
    let config = config(0);
    let mut conn = SaslConnection::default();
    conn.handshake("PLAIN", 0, &config);
    assert!(conn.expects_raw_token(), "v0 handshake: raw tokens follow");
    let outcome = conn.authenticate(b"\0alice\0pw", 0, &ctx(&config, 0)).unwrap();
    assert_eq!(outcome, Outcome::CheckPassword { user: "alice".into(), password: "pw".into() });
    assert_eq!(conn.admit(ApiKey::Produce, 0), Admit::Close("sasl_unauthenticated_request"));

    let mut conn = SaslConnection::default();
    conn.handshake("PLAIN", 1, &config);
    conn.authenticate(b"\0alice\0pw", 1, &ctx(&config, 0)).unwrap();
    let clock = Clock { now_ms: NOW_MS, monotonic_ms: 0 };
    assert_eq!(conn.complete("alice", None, true, 5_000, clock), Ok(5_000));
    assert!(conn.is_authenticated());
    assert!(conn.complete("alice", None, true, 0, clock).is_err(), "nothing is being checked");
}

#[test]
fn sessions_expire_and_reauthentication_renews_them() {
    let config = config(1_000);
    let mut conn = SaslConnection::default();
    assert_eq!(scram_login(&mut conn, &config, "pw", 0), Ok(1_000));
    assert_eq!(conn.admit(ApiKey::Produce, 999), Admit::Pass);
    // Re-authentication may start even after expiry.
    assert_eq!(conn.admit(ApiKey::SaslHandshake, 1_500), Admit::Pass);
    assert_eq!(scram_login(&mut conn, &config, "pw", 1_500), Ok(1_000));
    assert_eq!(conn.admit(ApiKey::Fetch, 2_499), Admit::Pass);
    assert_eq!(conn.admit(ApiKey::Fetch, 2_500), Admit::Close("sasl_session_expired"));
}

#[test]
fn reauthentication_keeps_the_mechanism_and_the_principal() {
    let config = config(1_000);
    let mut conn = SaslConnection::default();
    scram_login(&mut conn, &config, "pw", 0).unwrap();
    assert_eq!(conn.handshake("PLAIN", 1, &config).error_code, 0);
    let err = conn.authenticate(b"\0alice\0pw", 1, &ctx(&config, 10)).unwrap_err();
    assert!(err.to_string().contains("re-authentication of mechanism"), "{err}");

    let mut conn = SaslConnection::default();
    conn.handshake("PLAIN", 1, &config);
    conn.authenticate(b"\0alice\0pw", 1, &ctx(&config, 0)).unwrap();
    let clock = Clock { now_ms: NOW_MS, monotonic_ms: 0 };
    conn.complete("alice", None, true, 1_000, clock).unwrap();
    conn.handshake("PLAIN", 1, &config);
    conn.authenticate(b"\0bob\0pw", 1, &ctx(&config, 0)).unwrap();
    let err = conn.complete("bob", None, true, 1_000, clock).unwrap_err();
    assert!(err.to_string().contains("Cannot change principals"), "{err}");
}

#[test]
fn clients_without_reauthentication_get_illegal_sasl_state_for_a_second_handshake() {
    let config = config(0);
    let mut conn = SaslConnection::default();
    conn.handshake("PLAIN", 1, &config);
    conn.authenticate(b"\0alice\0pw", 0, &ctx(&config, 0)).unwrap();
    conn.complete("alice", None, false, 0, Clock { now_ms: NOW_MS, monotonic_ms: 0 }).unwrap();
    let answer = conn.handshake("PLAIN", 1, &config);
    assert_eq!(answer, HandshakeAnswer { error_code: E::IllegalSaslState.code(), close: false });
    assert!(conn.is_authenticated());
}

#[test]
fn an_oauth_token_bounds_the_session() {
    let config = config(60_000);
    let mut conn = SaslConnection::default();
    conn.handshake("OAUTHBEARER", 1, &config);
    let now_s = NOW_MS / 1000;
    let token = oauthbearer::unsecured_token("carol", now_s, now_s + 10);
    let outcome =
        conn.authenticate(&oauthbearer::client_message(&token), 1, &ctx(&config, 0)).unwrap();
    let Outcome::Success { principal, session_lifetime_ms, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((principal.as_str(), session_lifetime_ms), ("carol", 10_000));
    assert_eq!(conn.admit(ApiKey::Produce, 10_000), Admit::Close("sasl_session_expired"));
}

#[test]
fn session_lifetimes_follow_kip_368() {
    assert_eq!(session_lifetime_ms(0, None, 0), None);
    assert_eq!(session_lifetime_ms(500, None, 0), Some(500));
    assert_eq!(session_lifetime_ms(0, Some(700), 200), Some(500));
    assert_eq!(session_lifetime_ms(300, Some(700), 200), Some(300));
    assert_eq!(session_lifetime_ms(300, Some(100), 200), Some(0));
    assert_eq!(Mechanism::from_name("OAUTHBEARER"), Some(Mechanism::OAuthBearer));
}

#[test]
fn the_config_lists_the_same_mechanisms() {
    let names: Vec<&str> = Mechanism::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names, crate::config::SASL_MECHANISMS);
}

use super::*;
use jsonwebtoken::{EncodingKey, Header};

const JWKS: &str = include_str!("fixtures/jwks.json");
const RSA: &[u8] = include_bytes!("fixtures/rsa.pem");
const EC: &[u8] = include_bytes!("fixtures/ec.pem");
/// 2030-01-01T00:00:00Z, in ms: "now" for these tests.
const NOW_MS: i64 = 1_893_456_000_000;
const NOW_S: i64 = NOW_MS / 1000;

fn settings(validator: Validator) -> OAuthSettings {
    OAuthSettings {
        validator,
        expected_issuer: None,
        expected_audience: Vec::new(),
        sub_claim: "sub".into(),
        clock_skew_ms: 30_000,
    }
}

fn signed() -> OAuthSettings {
    settings(Validator::Jwks(parse_jwks(JWKS).unwrap()))
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA).unwrap(),
    };
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn claims() -> Value {
    serde_json::json!({ "sub": "alice", "iat": NOW_S - 10, "exp": NOW_S + 3600 })
}

#[test]
fn rs256_and_es256_tokens_signed_by_a_jwks_key_pass() {
    for (alg, kid) in [(Algorithm::RS256, "rsa1"), (Algorithm::ES256, "ec1")] {
        let token = sign(alg, Some(kid), claims());
        let valid = validate(&token, &signed(), NOW_MS).unwrap();
        assert_eq!(
            valid,
            ValidToken { principal: "alice".into(), expires_at_ms: (NOW_S + 3600) * 1000 }
        );
    }
}

#[test]
fn a_token_signed_by_another_key_or_naming_an_unknown_kid_fails() {
    let wrong_key = sign(Algorithm::RS256, Some("other"), claims());
    assert!(validate(&wrong_key, &signed(), NOW_MS).is_err());
    let unknown = sign(Algorithm::RS256, Some("nope"), claims());
    assert!(validate(&unknown, &signed(), NOW_MS).unwrap_err().to_string().contains("kid"));
    let no_kid = sign(Algorithm::RS256, None, claims());
    assert!(validate(&no_kid, &signed(), NOW_MS).is_err(), "three keys: a kid is needed");
    // A token re-labelled as another algorithm of the same key is refused.
    let mut parts: Vec<String> =
        sign(Algorithm::RS256, Some("rsa1"), claims()).split('.').map(str::to_owned).collect();
    parts[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS512","kid":"rsa1"}"#);
    assert!(validate(&parts.join("."), &signed(), NOW_MS).is_err());
}

#[test]
fn unsigned_and_hmac_tokens_never_pass_the_signed_validator() {
    let unsigned = unsecured_token("alice", NOW_S, NOW_S + 60);
    assert!(validate(&unsigned, &signed(), NOW_MS).is_err());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa1".into());
    let hmac =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"guess")).unwrap();
    assert!(validate(&hmac, &signed(), NOW_MS).unwrap_err().to_string().contains("HS256"));
}

#[test]
fn time_issuer_audience_and_subject_claims_are_checked() {
    let check = |claims: Value, settings: &OAuthSettings| {
        validate(&sign(Algorithm::RS256, Some("rsa1"), claims), settings, NOW_MS)
    };
    let base = signed();
    let expired = serde_json::json!({ "sub": "a", "iat": NOW_S - 100, "exp": NOW_S - 31 });
    assert!(check(expired, &base).unwrap_err().to_string().contains("expired"));
    let in_skew = serde_json::json!({ "sub": "a", "iat": NOW_S - 100, "exp": NOW_S - 29 });
    assert!(check(in_skew, &base).is_ok(), "within the clock skew");
    let no_iat = serde_json::json!({ "sub": "a", "exp": NOW_S + 60 });
    assert!(check(no_iat, &base).is_err());
    let future = serde_json::json!({ "sub": "a", "iat": NOW_S + 100, "exp": NOW_S + 600 });
    assert!(check(future, &base).is_err());
    let not_yet =
        serde_json::json!({ "sub": "a", "iat": NOW_S, "nbf": NOW_S + 100, "exp": NOW_S + 600 });
    assert!(check(not_yet, &base).unwrap_err().to_string().contains("nbf"));
    let no_sub = serde_json::json!({ "iat": NOW_S, "exp": NOW_S + 600 });
    assert!(check(no_sub, &base).is_err());

    let strict = OAuthSettings {
        expected_issuer: Some("https://idp".into()),
        expected_audience: vec!["kafka".into(), "other".into()],
        sub_claim: "client_id".into(),
        ..signed()
    };
    let good = serde_json::json!({
        "client_id": "svc", "iss": "https://idp", "aud": ["x", "kafka"],
        "iat": NOW_S, "exp": NOW_S + 600
    });
    assert_eq!(check(good.clone(), &strict).unwrap().principal, "svc");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = "https://evil".into();
    assert!(check(wrong_iss, &strict).unwrap_err().to_string().contains("issuer"));
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = "x".into();
    assert!(check(wrong_aud, &strict).unwrap_err().to_string().contains("audience"));
}

#[test]
fn the_unsecured_validator_takes_unsigned_tokens_only() {
    let dev = settings(Validator::Unsecured);
    let token = unsecured_token("bob", NOW_S, NOW_S + 60);
    assert_eq!(validate(&token, &dev, NOW_MS).unwrap().principal, "bob");
    let expired = unsecured_token("bob", NOW_S - 600, NOW_S - 300);
    assert!(validate(&expired, &dev, NOW_MS).is_err());
    let signed_token = sign(Algorithm::RS256, Some("rsa1"), claims());
    assert!(validate(&signed_token, &dev, NOW_MS).is_err(), "a signature is not ignored");
    let alg = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
    let payload = token.split('.').nth(1).unwrap();
    assert!(validate(&format!("{alg}.{payload}."), &dev, NOW_MS).is_err());
    for bad in ["", ".", "..", "a.b.", "a.b.c.d", "e30.e30."] {
        assert!(validate(bad, &dev, NOW_MS).is_err(), "{bad:?}");
    }
}

#[test]
fn client_responses_parse_as_rfc_7628_writes_them() {
    let parsed = parse_client_response(&client_message("abc.def.")).unwrap();
    assert_eq!(parsed.token, "abc.def.");
    assert_eq!(parsed.authzid, None);
    let with = b"n,a=bob,\x01host=h\x01auth=bearer  tok\x01port=1\x01\x01";
    let parsed = parse_client_response(with).unwrap();
    assert_eq!(parsed.authzid.as_deref(), Some("bob"));
    assert_eq!(parsed.token, "tok");
    assert_eq!(parsed.extensions.len(), 2);
    for bad in [
        &b""[..],
        b"n,,",
        b"n,,\x01auth=Bearer t\x01",
        b"n,,\x01auth=Basic t\x01\x01",
        b"n,,\x01auth=Bearer\x01\x01",
        b"n,,\x01auth=Bearer t!\x01\x01",
        b"n,,\x01\x01",
        b"p=x,,\x01auth=Bearer t\x01\x01",
        b"n,,\x01k1=v\x01\x01",
        b"n,,\x01=v\x01auth=Bearer t\x01\x01",
    ] {
        assert!(parse_client_response(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_refused_token_gets_the_error_challenge_then_fails() {
    let dev = settings(Validator::Unsecured);
    let mut server = OAuthServer::default();
    let expired = client_message(&unsecured_token("bob", NOW_S - 600, NOW_S - 300));
    let step = server.step(&expired, &dev, NOW_MS).unwrap();
    assert_eq!(step, OAuthStep::Challenge(br#"{"status":"invalid_token"}"#.to_vec()));
    let err = server.step(b"\x01", &dev, NOW_MS).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert!(server.step(b"\x01", &dev, NOW_MS).is_err());

    let mut server = OAuthServer::default();
    let good = client_message(&unsecured_token("bob", NOW_S, NOW_S + 60));
    assert!(matches!(server.step(&good, &dev, NOW_MS), Ok(OAuthStep::Success(_))));

    let mut server = OAuthServer::default();
    let token = unsecured_token("bob", NOW_S, NOW_S + 60);
    let other = format!("n,a=eve,\x01auth=Bearer {token}\x01\x01");
    assert!(server.step(other.as_bytes(), &dev, NOW_MS).is_err(), "authzid must be the subject");
}

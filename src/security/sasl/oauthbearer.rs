//! SASL OAUTHBEARER (RFC 7628, KIP-255, KIP-768): the client sends a JWT; the broker checks
//! it and takes the principal from its subject claim.
//!
//! Two validators, as Kafka has:
//! - **signed** ([`Validator::Jwks`]): the token's signature is checked against a key of a
//!   JWKS document from configuration (picked by `kid`), with RS256/384/512, PS256/384/512,
//!   ES256/384 or EdDSA (never `none` or a shared-secret HMAC); `exp` and `iat` are required,
//!   `nbf` is honoured, `iss` and `aud` are checked when configured (Kafka's
//!   `sasl.oauthbearer.expected.issuer` / `.expected.audience`), with a clock skew allowance.
//! - **unsecured** ([`Validator::Unsecured`]), for development only, as Kafka's
//!   `OAuthBearerUnsecuredValidatorCallbackHandler`: an unsigned JWT (`alg: none`, empty
//!   signature) whose `exp` is in the future; anyone can mint one.
//!
//! The token's expiry bounds the session (KIP-368: the client must re-authenticate before).
//! A refused token follows RFC 7628 §3.2.2, as Kafka and librdkafka expect: the server
//! answers with an error JSON challenge, the client acknowledges with a lone `0x01`, and only
//! then does authentication fail. Time comes from the caller (`now_ms`), so all of it is pure.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::SaslError;

/// RFC 7628's key/value separator.
const KVSEP: char = '\u{1}';

/// Signature algorithms accepted for signed tokens (asymmetric only).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How tokens are checked.
#[derive(Clone)]
pub enum Validator {
    /// Signed JWTs, checked against these keys.
    Jwks(JwkSet),
    /// Unsigned JWTs (`alg: none`): development only.
    Unsecured,
}

/// OAUTHBEARER settings (Kafka's `sasl.oauthbearer.*`).
#[derive(Clone)]
pub struct OAuthSettings {
    /// How tokens are checked.
    pub validator: Validator,
    /// `iss` the token must carry, if set.
    pub expected_issuer: Option<String>,
    /// `aud` values of which the token must carry one, if not empty.
    pub expected_audience: Vec<String>,
    /// The claim naming the principal (`sub`).
    pub sub_claim: String,
    /// Allowed difference between the token issuer's clock and ours, in ms.
    pub clock_skew_ms: i64,
}

impl std::fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let validator = match &self.validator {
            Validator::Jwks(set) => format!("jwks ({} keys)", set.keys.len()),
            Validator::Unsecured => "unsecured".to_owned(),
        };
        write!(f, "OAuthSettings {{ validator: {validator}, sub_claim: {:?} }}", self.sub_claim)
    }
}

/// Parses a JWKS document (RFC 7517 §5).
pub fn parse_jwks(text: &str) -> Result<JwkSet, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS document has no keys".into());
    }
    Ok(set)
}

/// A client's initial response, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientResponse {
    /// The authorization id (`a=`), if any.
    pub authzid: Option<String>,
    /// The bearer token.
    pub token: String,
    /// SASL extensions (`key=value` pairs other than `auth`).
    pub extensions: Vec<(String, String)>,
}

/// Parses `gs2-header %x01 *(key=value %x01) %x01` with `auth=Bearer <token>` required.
pub fn parse_client_response(message: &[u8]) -> Result<ClientResponse, SaslError> {
    let malformed = |why: &str| SaslError::Malformed(format!("invalid OAUTHBEARER message: {why}"));
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    let (gs2, rest) = text.split_once(KVSEP).ok_or_else(|| malformed("no separator"))?;
    let flagged = gs2.strip_prefix("n,").or_else(|| gs2.strip_prefix("y,"));
    let authz =
        flagged.and_then(|f| f.strip_suffix(',')).ok_or_else(|| malformed("bad GS2 header"))?;
    let authzid = match authz {
        "" => None,
        a => Some(a.strip_prefix("a=").ok_or_else(|| malformed("bad authzid"))?.to_owned()),
    };
    let pairs = rest.strip_suffix("\u{1}\u{1}").ok_or_else(|| malformed("no final separator"))?;
    let mut token = None;
    let mut extensions = Vec::new();
    for pair in pairs.split(KVSEP) {
        let (key, value) = pair.split_once('=').ok_or_else(|| malformed("a pair has no '='"))?;
        let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic());
        if !key_ok {
            return Err(malformed("bad extension key"));
        }
        if key == "auth" {
            token = Some(bearer(value).ok_or_else(|| malformed("auth is not `Bearer <token>`"))?);
        } else {
            extensions.push((key.to_owned(), value.to_owned()));
        }
    }
    let token = token.ok_or_else(|| malformed("no auth=Bearer token"))?.to_owned();
    Ok(ClientResponse { authzid, token, extensions })
}

/// The token of `Bearer <token>` (scheme case-insensitive, token in JWT characters).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    let token_ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    (scheme.eq_ignore_ascii_case("bearer") && token_ok).then_some(token)
}

/// A token that passed validation.
#[derive(Debug, PartialEq, Eq)]
pub struct ValidToken {
    /// The principal's name (the subject claim).
    pub principal: String,
    /// When the token expires, ms since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Why a token was refused (its text goes back to the client).
fn invalid(why: impl Into<String>) -> SaslError {
    SaslError::Credentials(format!("Authentication failed: invalid token: {}", why.into()))
}

/// Checks `token` with `settings` at `now_ms` (ms since the Unix epoch).
pub fn validate(
    token: &str,
    settings: &OAuthSettings,
    now_ms: i64,
) -> Result<ValidToken, SaslError> {
    let claims = match &settings.validator {
        Validator::Jwks(keys) => verify_signed(token, keys)?,
        Validator::Unsecured => decode_unsecured(token)?,
    };
    let signed = matches!(settings.validator, Validator::Jwks(_));
    check_claims(&claims, settings, now_ms, signed)
}

fn verify_signed(token: &str, keys: &JwkSet) -> Result<Map<String, Value>, SaslError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("{e}")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid).ok_or_else(|| invalid(format!("no key with kid {kid:?}")))?,
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return Err(invalid("the token has no kid and the JWKS has several keys")),
    };
    // A key that names its algorithm serves that one only (`Algorithm` parses the same names).
    if let Some(alg) = jwk.common.key_algorithm {
        if alg.to_string().parse::<Algorithm>().ok() != Some(header.alg) {
            return Err(invalid("the token's algorithm is not its key's"));
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("unusable key: {e}")))?;
    let mut validation = Validation::new(header.alg);
    // Claims are checked below, against the caller's clock, for both validators alike.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| invalid(format!("{e}")))?;
    Ok(data.claims)
}

/// Kafka's unsecured JWS: `base64url(header).base64url(claims).` with `alg: none`.
fn decode_unsecured(token: &str) -> Result<Map<String, Value>, SaslError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(""), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("an unsecured token has two parts and an empty signature"));
    };
    let header = json_object(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("none") {
        return Err(invalid("an unsecured token must have alg none"));
    }
    json_object(claims)
}

fn json_object(part: &str) -> Result<Map<String, Value>, SaslError> {
    // Tolerate padding, as Java's URL decoder does.
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| invalid("a part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("a part is not a JSON object")),
    }
}

/// A NumericDate claim in ms (seconds, possibly fractional, as Kafka reads them).
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, SaslError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => {
            let seconds = value.as_f64().filter(|s| s.is_finite() && s.abs() < 1e15);
            let seconds = seconds.ok_or_else(|| invalid(format!("{name} is not a number")))?;
            Ok(Some((seconds * 1000.0) as i64))
        }
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    settings: &OAuthSettings,
    now_ms: i64,
    signed: bool,
) -> Result<ValidToken, SaslError> {
    let skew = settings.clock_skew_ms;
    let exp = time_claim(claims, "exp")?.ok_or_else(|| invalid("no exp claim"))?;
    if now_ms - skew >= exp {
        return Err(invalid("the token has expired"));
    }
    let iat = time_claim(claims, "iat")?;
    if signed && iat.is_none() {
        return Err(invalid("no iat claim"));
    }
    if iat.is_some_and(|iat| iat > now_ms + skew) {
        return Err(invalid("the token was issued in the future"));
    }
    if iat.is_some_and(|iat| iat >= exp) {
        return Err(invalid("the token expires before it was issued"));
    }
    if time_claim(claims, "nbf")?.is_some_and(|nbf| nbf > now_ms + skew) {
        return Err(invalid("the token is not valid yet (nbf)"));
    }
    if let Some(issuer) = &settings.expected_issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(invalid("unexpected issuer"));
        }
    }
    if !settings.expected_audience.is_empty() {
        let audience: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audience.iter().any(|a| settings.expected_audience.iter().any(|e| e == a)) {
            return Err(invalid("unexpected audience"));
        }
    }
    let principal = claims
        .get(&settings.sub_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(format!("no {} claim", settings.sub_claim)))?;
    Ok(ValidToken { principal: principal.to_owned(), expires_at_ms: exp })
}

/// Where an [`OAuthServer`] is.
#[derive(Debug)]
enum State {
    Initial,
    /// The token was refused and the error challenge sent: waiting for the client's `0x01`.
    ErrorSent(String),
    Done,
}

/// What the server does with one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum OAuthStep {
    /// Authenticated.
    Success(ValidToken),
    /// Send this challenge (RFC 7628's error JSON) and wait for the client's acknowledgement.
    Challenge(Vec<u8>),
}

/// The server side of one OAUTHBEARER exchange.
#[derive(Debug)]
pub struct OAuthServer {
    state: State,
}

impl Default for OAuthServer {
    fn default() -> Self {
        OAuthServer { state: State::Initial }
    }
}

impl OAuthServer {
    /// Handles one client message.
    pub fn step(
        &mut self,
        message: &[u8],
        settings: &OAuthSettings,
        now_ms: i64,
    ) -> Result<OAuthStep, SaslError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => {
                let response = parse_client_response(message)?;
                match validate(&response.token, settings, now_ms) {
                    Ok(token) => {
                        if response.authzid.as_ref().is_some_and(|a| *a != token.principal) {
                            return Err(SaslError::Credentials(
                                "Authentication failed: the authorization id is not the token's \
                                 principal"
                                    .into(),
                            ));
                        }
                        Ok(OAuthStep::Success(token))
                    }
                    Err(e) => {
                        self.state = State::ErrorSent(e.to_string());
                        Ok(OAuthStep::Challenge(br#"{"status":"invalid_token"}"#.to_vec()))
                    }
                }
            }
            State::ErrorSent(why) if message == [KVSEP as u8] => Err(SaslError::Credentials(why)),
            State::ErrorSent(_) => {
                Err(SaslError::Malformed("expected the client's acknowledgement (0x01)".into()))
            }
            State::Done => Err(SaslError::State("the OAUTHBEARER exchange is over".into())),
        }
    }
}

/// The client's initial response for `token` (the client side, and tests).
pub fn client_message(token: &str) -> Vec<u8> {
    format!("n,,{KVSEP}auth=Bearer {token}{KVSEP}{KVSEP}").into_bytes()
}

/// An unsecured token for `subject` expiring at `exp_seconds` (development and tests).
pub fn unsecured_token(subject: &str, iat_seconds: i64, exp_seconds: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
    let claims = serde_json::json!({ "sub": subject, "iat": iat_seconds, "exp": exp_seconds });
    format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
}

#[cfg(test)]
mod tests;

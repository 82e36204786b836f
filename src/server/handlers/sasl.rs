//! SASL on the wire: SaslHandshake, SaslAuthenticate (and the raw tokens that follow a v0
//! SaslHandshake), the pre-authentication gate, and the SCRAM user APIs
//! (DescribeUserScramCredentials, AlterUserScramCredentials, KIP-554).
//!
//! The exchange itself is `security::sasl`'s pure state machine, kept on the [`Session`];
//! this file feeds it the broker's side: the users' credentials from the cluster metadata,
//! nonces, clocks, and the PBKDF2 of a PLAIN password on glommio's blocking thread pool (so a
//! login never stalls the shard). SASL requests are handled before the connection reads its
//! next request, so a client cannot slip a request in while its login is being checked.
//!
//! A failed login is counted (`strata_refusals_total{reason="sasl_authentication_failed"}`)
//! and logged, rate-limited, with the peer and the user; it is answered
//! SASL_AUTHENTICATION_FAILED after `connection.failed.authentication.delay.ms` (a timer, not
//! a blocked shard), and the connection closes after that answer.
//!
//! The SASL settings are read once per shard thread from the broker config (and the JWKS
//! file again every `sasl.oauthbearer.jwks.endpoint.refresh.ms`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_user_scram_credentials_response as alter_response;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Reply};
use crate::config::{BrokerConfig, SaslSettings};
use crate::controller::placement::Command;
use crate::controller::users::{validate_user_name, ScramChange};
use crate::controller::ControlError;
use crate::protocol::ResponseError as E;
use crate::security::sasl::oauthbearer::{self, OAuthSettings, Validator};
use crate::security::sasl::scram::{
    ScramCredential, ScramMechanism, ITERATIONS_DEFAULT, SALT_BYTES,
};
use crate::security::sasl::{
    plain, Admit, AuthContext, Clock, Mechanism, Outcome, SaslConfig, SaslError,
};
use crate::security::Principal;
use crate::server::mesh::ControlOp;
use crate::server::session::Session;
use crate::server::shard::Shard;

// ---- settings ---------------------------------------------------------------------------

/// Builds the SASL settings from the broker config, reading the JWKS file if one is set.
/// Called at start-up (a bad file stops the broker) and on each shard thread.
pub fn load_config(settings: &SaslSettings) -> Result<SaslConfig, String> {
    let mut mechanisms = Vec::new();
    for name in &settings.enabled_mechanisms {
        let mechanism =
            Mechanism::from_name(name).ok_or_else(|| format!("unknown SASL mechanism {name:?}"))?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    let oauth = if mechanisms.contains(&Mechanism::OAuthBearer) {
        Some(oauth_settings(settings)?)
    } else {
        None
    };
    Ok(SaslConfig { mechanisms, oauth, max_reauth_ms: settings.connections_max_reauth_ms })
}

fn oauth_settings(settings: &SaslSettings) -> Result<OAuthSettings, String> {
    let validator = match &settings.oauthbearer_jwks_endpoint_url {
        Some(url) => {
            let path = url.strip_prefix("file://").unwrap_or(url);
            if path.contains("://") {
                return Err(format!(
                    "sasl-oauthbearer-jwks-endpoint-url {url:?}: only files are supported"
                ));
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("reading JWKS {path}: {e}"))?;
            Validator::Jwks(oauthbearer::parse_jwks(&text).map_err(|e| format!("{path}: {e}"))?)
        }
        None => Validator::Unsecured,
    };
    Ok(OAuthSettings {
        validator,
        expected_issuer: settings.oauthbearer_expected_issuer.clone(),
        expected_audience: settings.oauthbearer_expected_audience.clone(),
        sub_claim: settings.oauthbearer_sub_claim_name.clone(),
        clock_skew_ms: i64::try_from(settings.oauthbearer_clock_skew_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
    })
}

thread_local! {
    /// This shard thread's SASL settings and when they were loaded.
    static CONFIG: RefCell<Option<(Rc<SaslConfig>, Instant)>> = const { RefCell::new(None) };
}

/// The SASL settings, reloaded (the JWKS file) once they are older than the refresh period.
/// A reload that fails keeps the settings in use, with a log line.
fn config(broker: &BrokerConfig) -> Rc<SaslConfig> {
    let refresh = Duration::from_millis(broker.sasl.oauthbearer_jwks_endpoint_refresh_ms);
    let cached = CONFIG.with(|c| c.borrow().clone());
    if let Some((config, loaded)) = &cached {
        if config.oauth.is_none() || loaded.elapsed() < refresh {
            return config.clone();
        }
    }
    let config = match (load_config(&broker.sasl), cached) {
        (Ok(config), _) => Rc::new(config),
        (Err(e), Some((old, _))) => {
            crate::log_limited!(WARN, "reloading the SASL settings failed, keeping the old: {e}");
            old
        }
        (Err(e), None) => {
            // Checked at start-up; only a file that went bad since lands here.
            crate::log_limited!(ERROR, "SASL settings unusable: {e}");
            Rc::new(SaslConfig { mechanisms: Vec::new(), oauth: None, max_reauth_ms: 0 })
        }
    };
    CONFIG.with(|c| *c.borrow_mut() = Some((config.clone(), Instant::now())));
    config
}

// ---- clocks and randomness --------------------------------------------------------------

/// Milliseconds on a process-wide monotonic clock (session expiry).
pub fn monotonic_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

fn clock() -> Clock {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now_ms = now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Clock { now_ms, monotonic_ms: monotonic_ms() }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // The OS random source failing is not something to run a broker on.
        panic!("the OS random number generator failed: {e}");
    }
    bytes
}

/// A fresh SCRAM nonce: printable base64, never a comma.
fn nonce() -> String {
    B64.encode(random_bytes(24))
}

/// The process's secret behind made-up salts of unknown users.
fn mock_secret() -> &'static [u8] {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET.get_or_init(|| random_bytes(32))
}

// ---- the gate ---------------------------------------------------------------------------

/// Whether `key` may be handled on this connection now; `Some(reply)` closes it (a request
/// before authentication on a SASL listener, or after the session expired).
pub fn gate(session: &Session, key: ApiKey) -> Option<Reply> {
    if !session.is_sasl() {
        return None; // PLAINTEXT and SSL listeners: nothing to check, no clock read.
    }
    match session.admit(key, monotonic_ms()) {
        Admit::Pass => None,
        Admit::Close("sasl_failed_connection") => {
            Some(Reply::Close("SASL authentication failed".into()))
        }
        Admit::Close(reason) => {
            let peer = session.peer;
            let what = "closing connection: a request before SASL authentication";
            crate::refused!(WARN, reason, %peer, api = ?key, "{what}");
            Some(Reply::Close(format!("{reason}: {key:?}")))
        }
    }
}

// ---- SaslHandshake ------------------------------------------------------------------------

/// SaslHandshake. On a non-SASL listener Kafka answers ILLEGAL_SASL_STATE and goes on.
pub fn handshake(
    shard: &Shard,
    session: &Session,
    req: SaslHandshakeRequest,
    version: i16,
) -> Reply {
    let config = config(&shard.config);
    let mechanisms: Vec<StrBytes> = config.mechanisms.iter().map(|m| str_bytes(m.name())).collect();
    let answer = session.with_sasl(|sasl| sasl.handshake(req.mechanism.as_str(), version, &config));
    let Some(answer) = answer else {
        let response = SaslHandshakeResponse::default().with_error_code(E::IllegalSaslState.code());
        return Reply::Response(Box::new(ResponseKind::SaslHandshake(response)));
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(answer.error_code)
        .with_mechanisms(mechanisms);
    let response = Box::new(ResponseKind::SaslHandshake(response));
    if answer.close {
        let peer = session.peer;
        let mechanism = req.mechanism.as_str();
        let reason = "sasl_handshake_refused";
        let code = answer.error_code;
        crate::refused!(WARN, reason, %peer, mechanism, code, "SASL handshake refused");
        return Reply::Last(response);
    }
    Reply::Response(response)
}

// ---- SaslAuthenticate --------------------------------------------------------------------

/// What one token led to, whatever carried it (SaslAuthenticate or a raw v0 token).
enum TokenResult {
    /// Send these bytes, with this session lifetime (0 unless authenticated with a limit).
    Ok { bytes: Vec<u8>, session_lifetime_ms: i64 },
    /// Refused: answer with this code and message (after the failure delay if `fatal`).
    Err { code: i16, message: String, fatal: bool },
}

/// SaslAuthenticate. Runs to completion (password check included) before the connection
/// reads its next request.
pub async fn authenticate(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    req: SaslAuthenticateRequest,
    version: i16,
) -> Reply {
    let result = token(shard, session, &req.auth_bytes, version).await;
    let response = SaslAuthenticateResponse::default();
    match result {
        TokenResult::Ok { bytes, session_lifetime_ms } => {
            let mut response = response.with_auth_bytes(Bytes::from(bytes));
            if version >= 1 {
                response = response.with_session_lifetime_ms(session_lifetime_ms);
            }
            Reply::Response(Box::new(ResponseKind::SaslAuthenticate(response)))
        }
        TokenResult::Err { code, message, fatal } => {
            let response =
                response.with_error_code(code).with_error_message(Some(str_bytes(&message)));
            let response = Box::new(ResponseKind::SaslAuthenticate(response));
            if fatal {
                failure_delay(shard).await;
                Reply::Last(response)
            } else {
                Reply::Response(response)
            }
        }
    }
}

/// A raw SASL token (the frames after a v0 SaslHandshake): the size-prefixed answer, or
/// `None` to close the connection (a refused login, after the failure delay).
pub async fn raw_token(shard: &Rc<Shard>, session: &Rc<Session>, frame: Bytes) -> Option<BytesMut> {
    match token(shard, session, &frame, 0).await {
        TokenResult::Ok { bytes, .. } => {
            let size = i32::try_from(bytes.len()).ok()?;
            let mut out = BytesMut::with_capacity(4 + bytes.len());
            out.put_i32(size);
            out.put_slice(&bytes);
            Some(out)
        }
        TokenResult::Err { .. } => {
            failure_delay(shard).await;
            None
        }
    }
}

async fn failure_delay(shard: &Shard) {
    let delay = shard.config.sasl.connection_failed_authentication_delay_ms;
    if delay > 0 {
        glommio::timer::sleep(Duration::from_millis(delay)).await;
    }
}

/// Feeds one token to the connection's SASL state.
async fn token(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    token: &[u8],
    version: i16,
) -> TokenResult {
    let config = config(&shard.config);
    let reauthenticating = session.with_sasl(|s| s.is_reauthenticating()).unwrap_or(false);
    let meta = shard.meta();
    let lookup = move |user: &str, m: ScramMechanism| meta.scram_credential(user, m).cloned();
    let nonce = nonce();
    let ctx = AuthContext {
        config: &config,
        lookup: &lookup,
        nonce: &nonce,
        mock_secret: mock_secret(),
        clock: clock(),
    };
    let Some(outcome) = session.with_sasl(|sasl| sasl.authenticate(token, version, &ctx)) else {
        let message = "SaslAuthenticate on a listener without SASL".to_owned();
        return TokenResult::Err { code: E::IllegalSaslState.code(), message, fatal: false };
    };
    let outcome = match outcome {
        Ok(Outcome::CheckPassword { user, password }) => {
            check_plain(shard, session, &config, user, password, version).await
        }
        other => other,
    };
    match outcome {
        Ok(Outcome::Challenge(bytes)) => TokenResult::Ok { bytes, session_lifetime_ms: 0 },
        Ok(Outcome::Success { principal, response, session_lifetime_ms }) => {
            crate::metrics::count_sasl_authentication(reauthenticating);
            session.set_principal(Principal::user(principal));
            TokenResult::Ok { bytes: response, session_lifetime_ms }
        }
        Ok(Outcome::CheckPassword { .. }) => {
            refuse(session, SaslError::State("password check pending".into()))
        }
        Err(e) => refuse(session, e),
    }
}

/// Checks a PLAIN password against the user's SCRAM credentials, on the blocking pool. An
/// unknown user costs the same PBKDF2 as a known one (no timing tells them apart).
async fn check_plain(
    shard: &Shard,
    session: &Session,
    config: &SaslConfig,
    user: String,
    password: String,
    version: i16,
) -> Result<Outcome, SaslError> {
    let meta = shard.meta();
    let known: Vec<(ScramMechanism, ScramCredential)> = meta
        .users
        .get(&user)
        .map(|c| c.iter().map(|(m, c)| (*m, c.clone())).collect())
        .unwrap_or_default();
    let exists = !known.is_empty();
    let credentials = if exists {
        known
    } else {
        let m = ScramMechanism::Sha512;
        vec![(m, ScramCredential::from_salted_password(m, b"none", ITERATIONS_DEFAULT, b"none"))]
    };
    let checking =
        glommio::executor().spawn_blocking(move || plain::check_password(&credentials, &password));
    let matches = checking.await && exists;
    let reauth = session.with_sasl(|s| s.is_reauthenticating()).unwrap_or(false);
    if !matches {
        session.with_sasl(|s| s.fail());
        let phase = if reauth { "re-authentication" } else { "authentication" };
        return Err(SaslError::Credentials(format!(
            "Authentication failed during {phase} due to invalid credentials with SASL \
             mechanism PLAIN"
        )));
    }
    let clock = clock();
    let max_reauth_ms = config.max_reauth_ms;
    let completed =
        session.with_sasl(|s| s.complete(&user, None, version >= 1, max_reauth_ms, clock));
    let lifetime =
        completed.unwrap_or_else(|| Err(SaslError::State("not a SASL listener".into())))?;
    Ok(Outcome::Success { principal: user, response: Vec::new(), session_lifetime_ms: lifetime })
}

/// The answer to a refused token: counted and logged (rate-limited) with peer and user.
fn refuse(session: &Session, error: SaslError) -> TokenResult {
    let failed = session.with_sasl(|s| s.is_failed()).unwrap_or(false);
    if !failed {
        // Not fatal: an extra SaslAuthenticate after success (Kafka's ILLEGAL_SASL_STATE).
        let message = error.to_string();
        return TokenResult::Err { code: E::IllegalSaslState.code(), message, fatal: false };
    }
    let peer = session.peer;
    let user = session.with_sasl(|s| s.attempted_user().map(str::to_owned)).flatten();
    let user = user.as_deref().unwrap_or("-");
    let reason = "sasl_authentication_failed";
    crate::refused!(WARN, reason, %peer, user, "SASL authentication failed: {error}");
    let code = match error {
        SaslError::State(_) => E::IllegalSaslState.code(),
        _ => E::SaslAuthenticationFailed.code(),
    };
    TokenResult::Err { code, message: error.to_string(), fatal: true }
}

// ---- bootstrap user ------------------------------------------------------------------------

/// Shard 0 at start-up: creates the `sasl.bootstrap.user` when no user of that name exists
/// (both SCRAM mechanisms, fresh salts, 4096 iterations). A cluster's brokers may race to do
/// it; both write the same password, so either write is right.
pub async fn ensure_bootstrap_user(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let Some((name, password)) = shard.config.sasl.bootstrap_credentials() else {
        return Ok(());
    };
    if shard.meta().users.contains_key(name) {
        return Ok(());
    }
    let (user, password) = (name.to_owned(), password.to_owned());
    let derive = move || {
        ScramMechanism::ALL
            .into_iter()
            .map(|m| {
                let salt = random_bytes(SALT_BYTES);
                let credential =
                    ScramCredential::from_password(m, &password, &salt, ITERATIONS_DEFAULT);
                ScramChange::Upsert { mechanism: m, credential }
            })
            .collect::<Vec<_>>()
    };
    let changes = glommio::executor().spawn_blocking(derive).await;
    let command = Command::AlterScramCredentials { user: user.clone(), changes };
    let mut attempts = 0;
    loop {
        match shard.control(ControlOp::Replicated(command.clone())).await {
            Ok(()) => {
                tracing::info!(user = %user, "created the SASL bootstrap user");
                return Ok(());
            }
            Err(_) if shard.meta().users.contains_key(&user) => return Ok(()),
            Err(e) if attempts < 50 => {
                attempts += 1;
                tracing::debug!("creating the SASL bootstrap user: {e}; retrying");
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!("creating the SASL bootstrap user {user:?}: {e}"),
        }
    }
}

// ---- DescribeUserScramCredentials ------------------------------------------------------------

/// DescribeUserScramCredentials: every user (no names given) or the named ones, with their
/// mechanisms and iteration counts (never keys or salts).
pub fn describe_users(
    shard: &Shard,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let meta = shard.meta();
    let describe = |name: &str| {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(name));
        match meta.users.get(name) {
            Some(credentials) => result.with_credential_infos(
                credentials
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default()
                            .with_mechanism(m.kafka_type())
                            .with_iterations(c.iterations)
                    })
                    .collect(),
            ),
            None => result.with_error_code(E::ResourceNotFound.code()).with_error_message(Some(
                str_bytes("Attempt to describe a user credential that does not exist"),
            )),
        }
    };
    let names: Vec<String> = match &req.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.to_string()).collect(),
        _ => meta.users.keys().cloned().collect(),
    };
    let mut results = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        if names.iter().filter(|n| *n == name).count() > 1 {
            let twice = "Cannot describe SCRAM credentials for the same user twice in a single \
                         request";
            results.push(
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(name))
                    .with_error_code(E::DuplicateResource.code())
                    .with_error_message(Some(str_bytes(twice))),
            );
        } else {
            results.push(describe(name));
        }
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

// ---- AlterUserScramCredentials ---------------------------------------------------------------

/// AlterUserScramCredentials: per user, its deletions and upsertions go through the
/// controller as one change (all or none); each user gets its own result. The client sends
/// salted passwords; the broker keeps only the keys derived from them.
pub async fn alter_users(
    shard: &Rc<Shard>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut order: Vec<String> = Vec::new();
    let mut per_user: BTreeMap<String, Result<Vec<ScramChange>, ControlError>> = BTreeMap::new();
    let mut add = |user: &str, change: Result<(ScramMechanism, ScramChange), ControlError>| {
        if !per_user.contains_key(user) {
            order.push(user.to_owned());
        }
        let entry = per_user.entry(user.to_owned()).or_insert_with(|| Ok(Vec::new()));
        let Ok(changes) = entry else { return };
        match change {
            Err(e) => *entry = Err(e),
            Ok((mechanism, change)) => {
                let twice = changes.iter().any(|c| change_mechanism(c) == mechanism);
                if twice {
                    let msg = "A user credential cannot be altered twice in the same request";
                    *entry = Err(ControlError::new(E::DuplicateResource, msg));
                } else {
                    changes.push(change);
                }
            }
        }
    };
    for deletion in &req.deletions {
        let change =
            mechanism(deletion.mechanism).map(|m| (m, ScramChange::Delete { mechanism: m }));
        add(deletion.name.as_str(), change);
    }
    for upsertion in &req.upsertions {
        add(upsertion.name.as_str(), upsert(upsertion));
    }
    let mut results = Vec::new();
    for user in order {
        let outcome = match per_user.remove(&user) {
            Some(Ok(changes)) => match validate_user_name(&user) {
                Ok(()) => {
                    let command = Command::AlterScramCredentials { user: user.clone(), changes };
                    shard.control(ControlOp::Replicated(command)).await
                }
                Err(e) => Err(e),
            },
            Some(Err(e)) => Err(e),
            None => continue,
        };
        let result =
            alter_response::AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => {
                result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message)))
            }
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn change_mechanism(change: &ScramChange) -> ScramMechanism {
    match change {
        ScramChange::Upsert { mechanism, .. } | ScramChange::Delete { mechanism } => *mechanism,
    }
}

fn mechanism(kafka_type: i8) -> Result<ScramMechanism, ControlError> {
    ScramMechanism::from_kafka_type(kafka_type)
        .ok_or_else(|| ControlError::new(E::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"))
}

fn upsert(
    u: &alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<(ScramMechanism, ScramChange), ControlError> {
    let m = mechanism(u.mechanism)?;
    if u.salted_password.is_empty() {
        return Err(ControlError::new(E::UnacceptableCredential, "the salted password is empty"));
    }
    let credential =
        ScramCredential::from_salted_password(m, &u.salt, u.iterations, &u.salted_password);
    credential.validate(m).map_err(|why| ControlError::new(E::UnacceptableCredential, why))?;
    Ok((m, ScramChange::Upsert { mechanism: m, credential }))
}

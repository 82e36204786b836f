//! SASL authentication (KIP-43, KIP-152, KIP-368): the mechanisms, and one connection's
//! authentication state machine, pure (no I/O, no clock, no randomness of its own), so the
//! broker's handlers stay thin and every input can be fuzzed.
//!
//! [`SaslConnection`] follows Kafka's `SaslServerAuthenticator`:
//! - before a SaslHandshake, only ApiVersions and SaslHandshake pass ([`SaslConnection::admit`]);
//!   anything else closes the connection, as Kafka does;
//! - a handshake naming an enabled mechanism starts an exchange of SaslAuthenticate requests
//!   (or, after a v0 handshake, of raw size-prefixed tokens); a disabled one is answered
//!   UNSUPPORTED_SASL_MECHANISM and the connection closed;
//! - during the exchange only SaslAuthenticate passes; a failed exchange is answered
//!   SASL_AUTHENTICATION_FAILED and the connection closed;
//! - once authenticated, every request passes until the session expires (KIP-368: the
//!   shorter of `connections.max.reauth.ms` and the credential's own expiry); then only a
//!   SaslHandshake (re-authentication, for clients that sent SaslAuthenticate v1+) passes, and
//!   anything else closes the connection. Re-authentication must keep the mechanism and the
//!   principal, and changes nothing else of the connection.
//!
//! Mechanisms: [`plain`], [`scram`] (SHA-256 and SHA-512), [`oauthbearer`].

pub mod client;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

use std::fmt;

use kafka_protocol::messages::ApiKey;

use oauthbearer::{OAuthServer, OAuthSettings, OAuthStep};
use scram::{ScramCredential, ScramMechanism, ScramServer};

/// Kafka's `sasl.server.max.receive.size` default: the largest frame accepted from a
/// connection of a SASL listener before it has authenticated (512 KiB).
pub const SERVER_MAX_RECEIVE_BYTES_DEFAULT: usize = 512 * 1024;

/// A SASL mechanism the broker implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// PLAIN (RFC 4616), checked against SCRAM credentials.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
    /// OAUTHBEARER (RFC 7628).
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, in the order Strata lists them.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
        Mechanism::Plain,
        Mechanism::OAuthBearer,
    ];

    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// From a SASL name (exact match, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Self> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why authentication failed. The text is sent to the client (SaslAuthenticate's error
/// message), so it never says whether a user exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client's message does not parse.
    #[error("{0}")]
    Malformed(String),
    /// Wrong password, unknown user, bad token, principal changed...
    #[error("{0}")]
    Credentials(String),
    /// A message arrived when the exchange did not expect one.
    #[error("{0}")]
    State(String),
}

/// SASL settings of the broker's SASL listeners.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// Mechanisms clients may choose (`sasl.enabled.mechanisms`).
    pub mechanisms: Vec<Mechanism>,
    /// OAUTHBEARER settings; required when it is enabled.
    pub oauth: Option<OAuthSettings>,
    /// Kafka's `connections.max.reauth.ms`: the longest an authentication lasts (0: forever,
    /// unless the credential itself expires).
    pub max_reauth_ms: u64,
}

/// What the connection does with a request, before any handler sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Handle it.
    Pass,
    /// Close the connection without answering; the reason is for the log and the metric.
    Close(&'static str),
}

/// The identity a successful authentication established.
#[derive(Clone, Debug)]
struct Authenticated {
    principal: String,
    mechanism: Mechanism,
    /// Monotonic ms after which the session is over (`None`: never).
    expires_at_ms: Option<u64>,
    /// The client sent SaslAuthenticate v1+, so it knows KIP-368 re-authentication.
    reauth_capable: bool,
}

/// One exchange of tokens with the mechanism's server state.
#[derive(Debug)]
enum Exchange {
    Plain,
    Scram(ScramServer),
    OAuth(OAuthServer),
}

#[derive(Debug)]
enum Phase {
    /// Waiting for a SaslHandshake (first authentication).
    Handshake,
    /// A mechanism was chosen: tokens flow.
    Exchanging { mechanism: Mechanism, exchange: Exchange, raw: bool },
    /// Re-authentication asked for another mechanism: the next token fails with this.
    BadReauth(String),
    /// A PLAIN password is being checked (off the executor); nothing else may happen.
    Checking { mechanism: Mechanism },
    /// Authenticated.
    Complete,
    /// Failed: the connection is closing.
    Failed,
}

/// The answer to a SaslHandshake.
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeAnswer {
    /// Kafka error code.
    pub error_code: i16,
    /// Close the connection after answering.
    pub close: bool,
}

/// What a SaslAuthenticate (or raw token) leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// More rounds: send these bytes and wait for the next token.
    Challenge(Vec<u8>),
    /// Check this PLAIN password against the user's credentials off the executor, then call
    /// [`SaslConnection::complete`] or [`SaslConnection::fail`].
    CheckPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// Authenticated: send these bytes, with this session lifetime (v1+).
    Success {
        /// The principal's name.
        principal: String,
        /// The final server message.
        response: Vec<u8>,
        /// KIP-368's `session_lifetime_ms` (0: no limit).
        session_lifetime_ms: i64,
    },
}

/// What [`SaslConnection::authenticate`] needs from the broker.
pub struct AuthContext<'a> {
    /// The broker's SASL settings.
    pub config: &'a SaslConfig,
    /// The stored SCRAM credential of a user, if any.
    pub lookup: &'a dyn Fn(&str, ScramMechanism) -> Option<ScramCredential>,
    /// A fresh random nonce (printable, no commas) for SCRAM.
    pub nonce: &'a str,
    /// The secret behind made-up salts of unknown SCRAM users.
    pub mock_secret: &'a [u8],
    /// The time.
    pub clock: Clock,
}

/// The time, as the caller reads it (the state machine reads no clock).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock ms since the Unix epoch (token expiry).
    pub now_ms: i64,
    /// Monotonic ms (session expiry).
    pub monotonic_ms: u64,
}

/// One connection's SASL state. See the module docs.
#[derive(Debug)]
pub struct SaslConnection {
    phase: Phase,
    session: Option<Authenticated>,
    /// The user the current (or last) exchange named, for log lines about failures.
    attempted_user: Option<String>,
}

impl Default for SaslConnection {
    fn default() -> Self {
        SaslConnection { phase: Phase::Handshake, session: None, attempted_user: None }
    }
}

impl SaslConnection {
    /// Whether authentication failed: the connection is closing.
    pub fn is_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// The user the current or last exchange named, if it got that far.
    pub fn attempted_user(&self) -> Option<&str> {
        self.attempted_user.as_deref()
    }

    /// Whether the connection has authenticated (and has not failed since).
    pub fn is_authenticated(&self) -> bool {
        self.session.is_some() && !matches!(self.phase, Phase::Failed)
    }

    /// The authenticated principal's name, if any.
    pub fn principal(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.principal.as_str())
    }

    /// Whether the next frame is a raw SASL token (after a v0 SaslHandshake), not a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.phase, Phase::Exchanging { raw: true, .. })
    }

    /// Decides whether a request of `key` may be handled now (`monotonic_ms` for expiry).
    pub fn admit(&mut self, key: ApiKey, monotonic_ms: u64) -> Admit {
        let admit = match (&self.phase, &self.session) {
            (Phase::Failed, _) => Admit::Close("sasl_failed_connection"),
            (Phase::Handshake, None) => match key {
                ApiKey::ApiVersions | ApiKey::SaslHandshake => Admit::Pass,
                _ => Admit::Close("sasl_unauthenticated_request"),
            },
            (Phase::Complete, Some(session)) => {
                let expired = session.expires_at_ms.is_some_and(|at| monotonic_ms >= at);
                if expired && key != ApiKey::SaslHandshake {
                    Admit::Close("sasl_session_expired")
                } else {
                    Admit::Pass
                }
            }
            (Phase::Exchanging { raw: false, .. } | Phase::BadReauth(_), _) => match key {
                ApiKey::SaslAuthenticate | ApiKey::SaslHandshake => Admit::Pass,
                _ => Admit::Close("sasl_unauthenticated_request"),
            },
            _ => Admit::Close("sasl_unauthenticated_request"),
        };
        if admit != Admit::Pass {
            self.phase = Phase::Failed;
        }
        admit
    }

    /// Handles a SaslHandshake naming `mechanism` at `version`.
    pub fn handshake(
        &mut self,
        mechanism: &str,
        version: i16,
        config: &SaslConfig,
    ) -> HandshakeAnswer {
        use kafka_protocol::error::ResponseError as E;
        let enabled = Mechanism::from_name(mechanism).filter(|m| config.mechanisms.contains(m));
        let reauth = match (&self.phase, &self.session) {
            (Phase::Handshake, None) => false,
            (Phase::Complete, Some(session)) if session.reauth_capable => true,
            // A client that cannot re-authenticate: Kafka's request handler answers so.
            (Phase::Complete, Some(_)) => {
                return HandshakeAnswer { error_code: E::IllegalSaslState.code(), close: false }
            }
            _ => {
                self.phase = Phase::Failed;
                return HandshakeAnswer { error_code: E::IllegalSaslState.code(), close: true };
            }
        };
        let Some(chosen) = enabled else {
            self.phase = Phase::Failed;
            return HandshakeAnswer { error_code: E::UnsupportedSaslMechanism.code(), close: true };
        };
        let previous = self.session.as_ref().map(|s| s.mechanism);
        self.phase = match previous {
            Some(previous) if reauth && previous != chosen => Phase::BadReauth(format!(
                "SASL mechanism '{chosen}' requested by client is not supported for \
                 re-authentication of mechanism '{previous}'"
            )),
            _ => Phase::Exchanging {
                mechanism: chosen,
                exchange: new_exchange(chosen, reauth),
                raw: version == 0,
            },
        };
        HandshakeAnswer { error_code: 0, close: false }
    }

    /// Handles one token of the exchange, from a SaslAuthenticate of `version` (or a raw
    /// token, version 0). On an error the connection has failed: answer, then close.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        version: i16,
        ctx: &AuthContext<'_>,
    ) -> Result<Outcome, SaslError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
        let (mechanism, mut exchange, raw) = match phase {
            Phase::Exchanging { mechanism, exchange, raw } => (mechanism, exchange, raw),
            Phase::BadReauth(why) => return Err(SaslError::Credentials(why)),
            Phase::Complete => {
                self.phase = Phase::Complete;
                return Err(SaslError::State(
                    "SaslAuthenticate request received after successful authentication".into(),
                ));
            }
            _ => return Err(SaslError::State("SaslAuthenticate before SaslHandshake".into())),
        };
        if version >= 1 {
            if let Some(session) = &mut self.session {
                session.reauth_capable = true;
            }
        }
        let reauth_capable =
            version >= 1 || self.session.as_ref().is_some_and(|s| s.reauth_capable);
        let step = match &mut exchange {
            Exchange::Plain => {
                let message = plain::parse(token)?;
                self.attempted_user = Some(message.user.clone());
                self.phase = Phase::Checking { mechanism };
                return Ok(Outcome::CheckPassword {
                    user: message.user,
                    password: message.password,
                });
            }
            Exchange::Scram(server) => {
                let step = scram_step(server, token, ctx);
                if let Some(user) = server.user() {
                    self.attempted_user = Some(user.to_owned());
                }
                step?
            }
            Exchange::OAuth(server) => {
                let settings = ctx.config.oauth.as_ref().ok_or_else(|| {
                    SaslError::State("OAUTHBEARER is enabled without settings".into())
                })?;
                match server.step(token, settings, ctx.clock.now_ms)? {
                    OAuthStep::Challenge(bytes) => Step::Challenge(bytes),
                    OAuthStep::Success(token) => Step::Done {
                        principal: token.principal,
                        response: Vec::new(),
                        expires_at_ms: Some(token.expires_at_ms),
                    },
                }
            }
        };
        match step {
            Step::Challenge(bytes) => {
                self.phase = Phase::Exchanging { mechanism, exchange, raw };
                Ok(Outcome::Challenge(bytes))
            }
            Step::Done { principal, response, expires_at_ms } => {
                self.attempted_user = Some(principal.clone());
                self.phase = Phase::Checking { mechanism };
                let max_reauth_ms = ctx.config.max_reauth_ms;
                let lifetime = self.complete(
                    &principal,
                    expires_at_ms,
                    reauth_capable,
                    max_reauth_ms,
                    ctx.clock,
                )?;
                Ok(Outcome::Success { principal, response, session_lifetime_ms: lifetime })
            }
        }
    }

    /// Finishes an authentication whose credential was checked (PLAIN after
    /// [`Outcome::CheckPassword`], and the other mechanisms internally). Returns the session
    /// lifetime to announce; an error if re-authentication changed the principal.
    pub fn complete(
        &mut self,
        principal: &str,
        credential_expires_at_ms: Option<i64>,
        reauth_capable: bool,
        max_reauth_ms: u64,
        clock: Clock,
    ) -> Result<i64, SaslError> {
        let Phase::Checking { mechanism } = std::mem::replace(&mut self.phase, Phase::Failed)
        else {
            return Err(SaslError::State("no credential was being checked".into()));
        };
        if let Some(previous) = &self.session {
            if previous.principal != principal {
                return Err(SaslError::Credentials(format!(
                    "Cannot change principals during re-authentication from User:{}: User:{}",
                    previous.principal, principal
                )));
            }
        }
        let lifetime = session_lifetime_ms(max_reauth_ms, credential_expires_at_ms, clock.now_ms);
        let expires_at_ms = lifetime.map(|ms| clock.monotonic_ms.saturating_add(ms as u64));
        let reauth_capable =
            reauth_capable || self.session.as_ref().is_some_and(|s| s.reauth_capable);
        self.session = Some(Authenticated {
            principal: principal.to_owned(),
            mechanism,
            expires_at_ms,
            reauth_capable,
        });
        self.phase = Phase::Complete;
        Ok(lifetime.unwrap_or(0))
    }

    /// Marks the connection failed (a refused PLAIN password): it closes after the answer.
    pub fn fail(&mut self) {
        self.phase = Phase::Failed;
    }

    /// Whether the exchange in progress is a re-authentication.
    pub fn is_reauthenticating(&self) -> bool {
        self.session.is_some()
    }
}

/// One mechanism step, before the connection's bookkeeping.
enum Step {
    Challenge(Vec<u8>),
    Done { principal: String, response: Vec<u8>, expires_at_ms: Option<i64> },
}

fn new_exchange(mechanism: Mechanism, reauth: bool) -> Exchange {
    match mechanism {
        Mechanism::Plain => Exchange::Plain,
        Mechanism::Scram(m) => Exchange::Scram(ScramServer::new(m, reauth)),
        Mechanism::OAuthBearer => Exchange::OAuth(OAuthServer::default()),
    }
}

fn scram_step(
    server: &mut ScramServer,
    token: &[u8],
    ctx: &AuthContext<'_>,
) -> Result<Step, SaslError> {
    let mechanism = server.mechanism();
    // The first message names the user; the second proves it.
    if !server.awaits_client_first() {
        let done = server.client_final(token)?;
        return Ok(Step::Done {
            principal: done.user,
            response: done.server_final,
            expires_at_ms: None,
        });
    }
    let lookup = |user: &str| (ctx.lookup)(user, mechanism);
    let first = server.client_first(token, lookup, ctx.nonce, ctx.mock_secret)?;
    Ok(Step::Challenge(first))
}

/// KIP-368's session lifetime: the shorter of `connections.max.reauth.ms` (0: unset) and
/// the credential's remaining life; `None` when neither applies (no expiry).
pub fn session_lifetime_ms(
    max_reauth_ms: u64,
    credential_expires_at_ms: Option<i64>,
    now_ms: i64,
) -> Option<i64> {
    let max_reauth = i64::try_from(max_reauth_ms).ok().filter(|&ms| ms > 0);
    let credential = credential_expires_at_ms.map(|at| at.saturating_sub(now_ms).max(0));
    match (max_reauth, credential) {
        (None, None) => None,
        (Some(a), None) | (None, Some(a)) => Some(a),
        (Some(a), Some(b)) => Some(a.min(b)),
    }
}

#[cfg(test)]
mod tests;

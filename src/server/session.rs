//! What the broker knows about one client connection, shared by its reader and its
//! requests' handlers: where it comes from, which listener it came in on, and who it is.
//!
//! A `Session` lives on the shard that accepted the connection (`Rc`, never sent across
//! threads); requests forwarded to other shards carry what they need of it by value.
//!
//! On a SASL listener the session also holds the connection's SASL state
//! ([`SaslConnection`]): the connection asks [`Session::admit`] before handling each request,
//! and the SASL handlers drive the exchange. Its `RefCell` is only borrowed inside
//! [`Session::with_sasl`]'s closure, which cannot await.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::access::QuotaBindings;
use crate::security::sasl::{Admit, SaslConnection};
use crate::security::{Principal, SecurityProtocol};

/// One client connection's identity. See the module docs.
#[derive(Debug)]
pub struct Session {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener the connection came in on (`PLAINTEXT`, `SASL_SSL`, a custom name...).
    pub listener: String,
    /// That listener's security protocol: TLS underneath or not, SASL required or not.
    pub protocol: SecurityProtocol,
    /// Who the client is: `User:ANONYMOUS` until it authenticates.
    principal: RefCell<Principal>,
    /// Quota throttling: the connection reads nothing before this instant.
    muted_until: Cell<Option<Instant>>,
    /// The quota sensors this connection's requests are metered by.
    pub(super) quota: RefCell<QuotaBindings>,
    /// SASL state, on connections of SASL listeners only.
    /// Boxed: only SASL listeners pay for it (an idle connection's memory is budgeted).
    sasl: Option<Box<RefCell<SaslConnection>>>,
    /// The share sessions this connection opened, (group, member, token): closed, and their
    /// members' locks released, when it goes away (Kafka's share session cache does so on a
    /// connection's disconnect).
    share_sessions: RefCell<Vec<(String, String, u64)>>,
}

impl Session {
    /// A session for a connection from `peer` on `listener` (which speaks `protocol`), not
    /// yet authenticated; on a SASL listener it must authenticate before anything else.
    pub fn new(peer: SocketAddr, listener: &str, protocol: SecurityProtocol) -> Self {
        let sasl = protocol.uses_sasl().then(|| Box::new(RefCell::new(SaslConnection::default())));
        Session {
            peer,
            listener: listener.to_owned(),
            protocol,
            principal: RefCell::new(Principal::anonymous()),
            muted_until: Cell::new(None),
            quota: RefCell::new(QuotaBindings::default()),
            sasl,
            share_sessions: RefCell::new(Vec::new()),
        }
    }

    /// Notes a share session this connection opened.
    pub fn opened_share_session(&self, group: &str, member: &str, token: u64) {
        let mut opened = self.share_sessions.borrow_mut();
        opened.retain(|(g, m, _)| g != group || m != member);
        opened.push((group.to_owned(), member.to_owned(), token));
    }

    /// The share sessions this connection opened (emptied).
    pub fn take_share_sessions(&self) -> Vec<(String, String, u64)> {
        std::mem::take(&mut *self.share_sessions.borrow_mut())
    }

    /// Runs `f` on the principal without copying it (the hot path's authorization checks).
    pub fn with_principal<R>(&self, f: impl FnOnce(&Principal) -> R) -> R {
        f(&self.principal.borrow())
    }

    /// Mutes the connection for `ms` (quota throttling): it reads no request before then.
    pub fn mute_for(&self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        let later = self.muted_until.get().map_or(until, |t| t.max(until));
        self.muted_until.set(Some(later));
    }

    /// Resolves once the connection is not muted (at once unless a quota throttled it).
    pub async fn unmuted(&self) {
        while let Some(until) = self.muted_until.get() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.muted_until.set(None);
                break;
            }
            glommio::timer::sleep(left).await;
        }
    }

    /// Whether the connection came in on a SASL listener.
    pub fn is_sasl(&self) -> bool {
        self.sasl.is_some()
    }

    /// Whether a request of `key` may be handled now: always on non-SASL listeners; on SASL
    /// ones, as [`SaslConnection::admit`] says (`monotonic_ms` for session expiry).
    pub fn admit(&self, key: kafka_protocol::messages::ApiKey, monotonic_ms: u64) -> Admit {
        self.with_sasl(|sasl| sasl.admit(key, monotonic_ms)).unwrap_or(Admit::Pass)
    }

    /// Runs `f` on the SASL state (`None` on a non-SASL listener). `f` cannot await, so the
    /// borrow never outlives it.
    pub fn with_sasl<R>(&self, f: impl FnOnce(&mut SaslConnection) -> R) -> Option<R> {
        self.sasl.as_ref().map(|sasl| f(&mut sasl.borrow_mut()))
    }

    /// Whether the next frame is a raw SASL token (after a v0 SaslHandshake).
    pub fn expects_raw_sasl_token(&self) -> bool {
        self.with_sasl(|sasl| sasl.expects_raw_token()).unwrap_or(false)
    }

    /// The largest request frame to accept now: `configured`, or `before_auth` when the
    /// connection has yet to authenticate on a SASL listener (Kafka's
    /// `sasl.server.max.receive.size`).
    pub fn frame_bytes_max(&self, configured: usize, before_auth: usize) -> usize {
        match self.with_sasl(|sasl| sasl.is_authenticated()) {
            Some(false) => configured.min(before_auth),
            _ => configured,
        }
    }

    /// The client's principal (a copy: never hold a borrow across an `.await`).
    pub fn principal(&self) -> Principal {
        self.principal.borrow().clone()
    }

    /// Sets the principal once the client has authenticated.
    pub fn set_principal(&self, principal: Principal) {
        *self.principal.borrow_mut() = principal;
    }

    /// The client's host, as Kafka writes it in group member descriptions (`/127.0.0.1`).
    pub fn client_host(&self) -> String {
        format!("/{}", self.peer.ip())
    }
}

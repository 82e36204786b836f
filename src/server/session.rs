//! What the broker knows about one client connection, shared by its reader and its
//! requests' handlers: where it comes from, which listener it came in on, and who it is.
//!
//! A `Session` lives on the shard that accepted the connection (`Rc`, never sent across
//! threads); requests forwarded to other shards carry what they need of it by value.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::access::QuotaBindings;
use crate::security::Principal;

/// Name of the listener when the broker has one unnamed listener (Kafka's default name).
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// One client connection's identity. See the module docs.
#[derive(Debug)]
pub struct Session {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener the connection came in on (`PLAINTEXT`, `SASL_SSL`, a custom name...).
    pub listener: String,
    /// Who the client is: `User:ANONYMOUS` until it authenticates.
    principal: RefCell<Principal>,
    /// Quota throttling: the connection reads nothing before this instant.
    muted_until: Cell<Option<Instant>>,
    /// The quota sensors this connection's requests are metered by.
    pub(super) quota: RefCell<QuotaBindings>,
}

impl Session {
    /// A session for a connection from `peer` on `listener`, not yet authenticated.
    pub fn new(peer: SocketAddr, listener: &str) -> Self {
        Session {
            peer,
            listener: listener.to_owned(),
            principal: RefCell::new(Principal::anonymous()),
            muted_until: Cell::new(None),
            quota: RefCell::new(QuotaBindings::default()),
        }
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

//! What the broker knows about one client connection, shared by its reader and its
//! requests' handlers: where it comes from, which listener it came in on, and who it is.
//!
//! A `Session` lives on the shard that accepted the connection (`Rc`, never sent across
//! threads); requests forwarded to other shards carry what they need of it by value.

use std::cell::RefCell;
use std::net::SocketAddr;

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
}

impl Session {
    /// A session for a connection from `peer` on `listener` (which speaks `protocol`), not
    /// yet authenticated.
    pub fn new(peer: SocketAddr, listener: &str, protocol: SecurityProtocol) -> Self {
        Session {
            peer,
            listener: listener.to_owned(),
            protocol,
            principal: RefCell::new(Principal::anonymous()),
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

//! What a listener does with an accepted TCP connection before the Kafka protocol starts:
//! PLAINTEXT hands the stream itself to [`connection::serve`] (monomorphized, so the plain
//! path reads the socket with no indirection); SSL and SASL_SSL listeners shake hands with
//! rustls first (bounded by [`TLS_HANDSHAKE_TIMEOUT`]), take the principal from the client
//! certificate when there is one, and serve the encrypted stream. Either way the [`Session`]
//! names the listener and its protocol.
//!
//! futures-rustls fits glommio's `TcpStream` as it is (futures-io `AsyncRead`/`AsyncWrite`),
//! so no hand-written adapter drives `rustls::ServerConnection` here.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpStream;

use super::connection;
use super::session::Session;
use super::shard::Shard;
use crate::config::Listener;
use crate::security::tls::{self, AcceptError, BrokerTls};
use crate::security::SecurityProtocol;

/// Longest a TLS handshake may take before the connection is closed.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener as its accept loop needs it.
pub struct Accepting {
    /// The listener's name.
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// The broker's TLS state, for SSL and SASL_SSL listeners.
    pub tls: Option<Arc<BrokerTls>>,
}

impl Accepting {
    /// The accept-side state of `listener`; `tls` is the broker's (set when any listener or
    /// the inter-broker traffic uses TLS).
    pub fn new(listener: &Listener, tls: &Option<Arc<BrokerTls>>) -> Accepting {
        let tls = if listener.protocol.uses_tls() { tls.clone() } else { None };
        Accepting { name: listener.name.clone(), protocol: listener.protocol, tls }
    }
}

/// Serves one accepted connection on listener `on` until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, on: &Accepting) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, "set_nodelay failed: {e}");
    }
    let session = Rc::new(Session::new(peer, &on.name, on.protocol));
    match &on.tls {
        None => {
            let socket = std::os::fd::AsRawFd::as_raw_fd(&stream);
            connection::serve(shard, stream, session, Some(socket)).await;
        }
        // Boxed: the handshake and the TLS stream's state would otherwise be part of every
        // plaintext connection's task too (an idle connection's memory is budgeted).
        Some(tls) => Box::pin(serve_tls(shard, stream, session, tls)).await,
    }
}

/// The TLS half of [`serve`]: handshake (bounded), principal, then the Kafka protocol.
async fn serve_tls(shard: Rc<Shard>, stream: TcpStream, session: Rc<Session>, tls: &BrokerTls) {
    let peer = session.peer;
    let handshake = tls::accept(tls, stream);
    let timer = glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT);
    futures::pin_mut!(handshake, timer);
    let stream = match futures::future::select(handshake, timer).await {
        futures::future::Either::Left((Ok((stream, principal)), _)) => {
            if let Some(principal) = principal {
                session.set_principal(principal);
            }
            stream
        }
        futures::future::Either::Left((Err(e @ AcceptError::NoPrincipal), _)) => {
            return crate::refused!(WARN, "tls_principal", %peer, "{e}");
        }
        futures::future::Either::Left((Err(e), _)) => {
            return crate::refused!(WARN, "tls_handshake", %peer, "{e}");
        }
        futures::future::Either::Right(_) => {
            return crate::refused!(WARN, "tls_handshake_timeout", %peer, "TLS handshake timed out");
        }
    };
    tracing::debug!(%peer, principal = %session.principal(), "TLS connection");
    connection::serve(shard, stream, session, None).await;
}

//! The admin HTTP listener (default 127.0.0.1:9644), served by shard 0 with hyper 1.x.
//!
//! | path            | answer                                                             |
//! |-----------------|--------------------------------------------------------------------|
//! | `/metrics`      | Prometheus text: every shard's snapshot, gathered over the mesh    |
//! | `/health/live`  | 200 while the process serves HTTP at all                           |
//! | `/health/ready` | 200 once every shard recovered its logs and accepts Kafka clients; |
//! |                 | 503 before that and while shutting down                            |
//! | `/v1/status`    | JSON: version, node id, shards, listeners, data dir, uptime, counts |
//!
//! Security ([`AdminGuard`], from `config::listener::AdminSecurity`): with
//! `admin_ssl_enabled` every connection shakes hands with rustls first (the broker's
//! certificate or the admin listener's own, reloaded as the listeners' are; a plaintext client
//! is dropped at the handshake, counted as `admin_tls_handshake`). With `admin_token` or
//! `admin_token_file`, every request but `/health/*` (and `/metrics` when
//! `admin_metrics_public`) must carry a token ([`crate::security::admin_auth`]); others get
//! 401 with `WWW-Authenticate: Bearer`, a rate-limited log line and `admin_auth` in
//! `strata_refusals_total`. Probes need neither the token nor, over TLS, a client
//! certificate.
//!
//! hyper runs over glommio's TCP stream through a small adapter ([`Io`]), as glommio's own
//! `hyper_compat` example does. hyper parses the requests (malformed ones get 400) and bounds
//! the buffered head ([`HEAD_BYTES_MAX`]); each connection is cut after
//! [`CONNECTION_TIME_MAX`].
//!
//! Health checks must get through a flood of idle connections (an orchestrator would restart
//! a healthy broker otherwise), so connections are limited in all (`admin_max_connections`)
//! and per client address (`admin_max_connections_per_ip`), and a new connection over a limit
//! closes the OLDEST IDLE one (idle: no request being answered) instead of being refused; it
//! is refused only when every connection is busy. A connection idle, or still sending its
//! request head, for `admin_idle_timeout_ms` is closed. Health answers need nothing but this
//! shard, so they never wait behind a scrape.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use super::mesh::ShardMsg;
use super::shard::Shard;
use super::transport::TLS_HANDSHAKE_TIMEOUT;
use crate::config::BrokerConfig;
use crate::metrics::{self, NodeInfo};
use crate::security::admin_auth::{AdminAuth, Verdict};
use crate::security::tls::BrokerTls;

/// Largest request head (request line and headers) hyper buffers (its floor is 8 KiB).
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// A connection is closed this long after it was accepted, idle or not.
const CONNECTION_TIME_MAX: Duration = Duration::from_secs(60);

/// Start-up and shutdown state shared by every shard (written a few times per process life,
/// read by the admin listener).
#[derive(Debug)]
pub struct Health {
    started: Instant,
    shards: usize,
    ready_shards: AtomicUsize,
    draining: AtomicBool,
    /// Shards done with their connections at shutdown (or stopped), see [`Health::drained`].
    drained_shards: AtomicUsize,
}

impl Health {
    /// Health of a broker with `shards` shards, none ready yet.
    pub fn new(shards: usize) -> Health {
        Health {
            started: Instant::now(),
            shards,
            ready_shards: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            drained_shards: AtomicUsize::new(0),
        }
    }

    /// A shard recovered its logs and listens for Kafka clients.
    pub fn shard_ready(&self) {
        self.ready_shards.fetch_add(1, Ordering::AcqRel);
    }

    /// Shutdown began: the broker is no longer ready.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// A shard's connections are closed at shutdown, or the shard stopped: it will forward no
    /// more requests to the others. Counted once per shard (see `server::Drained`).
    pub fn shard_drained(&self) {
        self.drained_shards.fetch_add(1, Ordering::AcqRel);
    }

    /// Every shard is done with its connections: no request of a client is in flight anywhere.
    pub fn drained(&self) -> bool {
        self.drained_shards.load(Ordering::Acquire) >= self.shards
    }

    /// Every shard is ready and the broker is not shutting down.
    pub fn is_ready(&self) -> bool {
        let all = self.ready_shards.load(Ordering::Acquire) >= self.shards;
        all && !self.draining.load(Ordering::Acquire)
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The admin listener's TLS and tokens, loaded once at start-up (files that do not load stop
/// start-up, naming the file); the reload thread keeps both current.
#[derive(Clone, Default)]
pub struct AdminGuard {
    /// The HTTPS configuration, with `admin_ssl_enabled`.
    pub tls: Option<Arc<BrokerTls>>,
    /// The tokens, with `admin_token` or `admin_token_file`.
    pub auth: Option<Arc<AdminAuth>>,
    /// `/metrics` answers without a token.
    pub metrics_public: bool,
}

impl AdminGuard {
    /// Loads what `config.admin_security` names.
    pub fn load(config: &BrokerConfig) -> anyhow::Result<AdminGuard> {
        let security = &config.admin_security;
        let tls = if security.tls && config.admin_listen.is_some() {
            let ssl = security.ssl(&config.ssl);
            let tls = BrokerTls::load(&ssl).map_err(|e| anyhow::anyhow!("admin TLS: {e}"))?;
            Some(Arc::new(tls))
        } else {
            None
        };
        let token = security.token.as_ref().map(|t| t.0.as_str());
        let auth = AdminAuth::load(token, security.token_file.as_deref())
            .map_err(|e| anyhow::anyhow!("admin token: {e}"))?
            .map(Arc::new);
        let open = config.admin_listen.filter(|a| !a.ip().is_loopback() && auth.is_none());
        if let Some(address) = open {
            tracing::warn!(
                %address,
                "the admin listener is reachable from other hosts and needs no token: set \
                 admin-token-file (or admin-token)"
            );
        }
        Ok(AdminGuard { tls, auth, metrics_public: security.metrics_public })
    }
}

/// hyper's I/O traits over a futures-io stream (glommio's `TcpStream`, or rustls over it).
struct Io<S>(S);

impl<S: AsyncRead + Unpin> hyper::rt::Read for Io<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // Through a stack buffer: filling hyper's uninitialised buffer directly needs unsafe,
        // and admin traffic is small.
        let mut chunk = [0u8; 4096];
        let want = buf.remaining().min(chunk.len());
        match Pin::new(&mut self.0).poll_read(cx, &mut chunk[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&chunk[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for Io<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// What the admin routes need.
struct Admin {
    shard: Rc<Shard>,
    health: Arc<Health>,
    /// The admin listener's bound address.
    address: String,
    /// Open connections, oldest first.
    open: RefCell<Vec<Rc<AdminConn>>>,
    max: usize,
    per_ip_max: usize,
    idle: Duration,
    guard: AdminGuard,
}

/// One open admin connection, as the accept loop sees it.
struct AdminConn {
    ip: IpAddr,
    /// A request is being answered.
    busy: Cell<bool>,
    /// Accepted, or last answered a request.
    since: Cell<Instant>,
    /// Set to close the connection (evicted for a newer one).
    evicted: Cell<bool>,
    waker: Cell<Option<std::task::Waker>>,
}

impl AdminConn {
    fn evict(&self) {
        self.evicted.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Resolves once evicted.
    async fn evicted(&self) {
        futures::future::poll_fn(|cx| {
            if self.evicted.get() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once idle (not answering a request) for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let due = self.since.get() + idle;
            glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
            if !self.busy.get() && self.since.get().elapsed() >= idle {
                return;
            }
            if self.busy.get() {
                // Answering takes little; look again shortly after.
                glommio::timer::sleep(idle.min(Duration::from_secs(1))).await;
            }
        }
    }
}

impl Admin {
    /// Makes room for a connection from `ip`: closes the oldest idle connection (of `ip` when
    /// its own limit binds). False when every candidate is busy.
    fn make_room(&self, ip: IpAddr) -> bool {
        let mut open = self.open.borrow_mut();
        let from_ip = open.iter().filter(|c| c.ip == ip).count();
        let per_ip_full = from_ip >= self.per_ip_max;
        if !per_ip_full && open.len() < self.max {
            return true;
        }
        let victim = open.iter().position(|c| !c.busy.get() && (!per_ip_full || c.ip == ip));
        let Some(victim) = victim else {
            return false;
        };
        let conn = open.remove(victim);
        drop(open);
        conn.evict();
        let why = "closed an idle admin connection for a new one";
        crate::refused!(DEBUG, "admin_connection_evicted", %ip, "{why}");
        true
    }

    fn forget(&self, conn: &Rc<AdminConn>) {
        self.open.borrow_mut().retain(|c| !Rc::ptr_eq(c, conn));
    }

    /// Paths anyone may read: the probes', and `/metrics` when made public.
    fn is_public(&self, path: &str) -> bool {
        matches!(path, "/health/live" | "/health/ready")
            || (path == "/metrics" && self.guard.metrics_public)
    }

    /// The 401 answer to a request that needs a token and has none that matches; `None`
    /// lets it through.
    fn refuse(
        &self,
        ip: IpAddr,
        path: &str,
        headers: &hyper::HeaderMap,
    ) -> Option<Response<Full<Bytes>>> {
        let auth = self.guard.auth.as_ref()?;
        if self.is_public(path) {
            return None;
        }
        let header = headers.get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
        let (challenge, why) = match auth.check(header) {
            Verdict::Allowed => return None,
            Verdict::Missing => ("Bearer realm=\"strata-admin\"", "no token"),
            Verdict::Invalid => {
                ("Bearer realm=\"strata-admin\", error=\"invalid_token\"", "a wrong token")
            }
        };
        crate::refused!(WARN, "admin_auth", %ip, path, "admin request with {why} refused");
        let mut response = reply(StatusCode::UNAUTHORIZED, TEXT, "a bearer token is required\n");
        let challenge = hyper::header::HeaderValue::from_static(challenge);
        response.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, challenge);
        Some(response)
    }
}

/// Serves the admin listener until the task is dropped (shard 0 shutting down).
pub async fn serve(
    shard: Rc<Shard>,
    health: Arc<Health>,
    listener: TcpListener,
    guard: AdminGuard,
) {
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let config = shard.config.clone();
    let admin = Rc::new(Admin {
        shard,
        health,
        address,
        open: RefCell::new(Vec::new()),
        max: config.admin_max_connections,
        per_ip_max: config.admin_max_connections_per_ip,
        idle: Duration::from_millis(config.admin_idle_timeout_ms),
        guard,
    });
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                crate::log_limited!(WARN, "admin accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if !admin.make_room(peer.ip()) {
            let limit = admin.max;
            let why = "too many busy admin connections; closing";
            crate::refused!(WARN, "admin_connections", %peer, limit, "{why}");
            continue;
        }
        let conn = Rc::new(AdminConn {
            ip: peer.ip(),
            busy: Cell::new(false),
            since: Cell::new(Instant::now()),
            evicted: Cell::new(false),
            waker: Cell::new(None),
        });
        admin.open.borrow_mut().push(conn.clone());
        let admin = admin.clone();
        glommio::spawn_local(async move {
            let served = connection(&admin, &conn, stream);
            let _ = crate::runtime::contain::contained("an admin HTTP connection", served).await;
            admin.forget(&conn);
        })
        .detach();
    }
}

async fn connection(admin: &Rc<Admin>, conn: &Rc<AdminConn>, stream: TcpStream) {
    match admin.guard.tls.clone() {
        None => serve_http(admin, conn, stream).await,
        Some(tls) => {
            if let Some(stream) = handshake(admin, conn, stream, &tls).await {
                serve_http(admin, conn, stream).await;
            }
        }
    }
}

/// The TLS handshake of an admin connection, bounded by [`TLS_HANDSHAKE_TIMEOUT`] and the
/// idle timeout; `None` (logged and counted) when it fails.
async fn handshake(
    admin: &Admin,
    conn: &AdminConn,
    stream: TcpStream,
    tls: &BrokerTls,
) -> Option<futures_rustls::server::TlsStream<TcpStream>> {
    use futures::future::{select, Either};
    let accept = crate::security::tls::accept(tls, stream);
    let timer = glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT.min(admin.idle));
    let evicted = conn.evicted();
    futures::pin_mut!(accept, timer, evicted);
    let ip = conn.ip;
    match select(accept, select(timer, evicted)).await {
        Either::Left((Ok((stream, _no_client_certificates)), _)) => Some(stream),
        Either::Left((Err(e), _)) => {
            crate::refused!(WARN, "admin_tls_handshake", %ip, "admin listener: {e}");
            None
        }
        Either::Right((Either::Left(_), _)) => {
            let why = "admin TLS handshake timed out";
            crate::refused!(WARN, "admin_tls_handshake_timeout", %ip, "{why}");
            None
        }
        Either::Right((Either::Right(_), _)) => None,
    }
}

async fn serve_http<S>(admin: &Rc<Admin>, conn: &Rc<AdminConn>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| {
        let (admin, conn) = (admin.clone(), conn.clone());
        async move {
            conn.busy.set(true);
            let response = route(&admin, conn.ip, request).await;
            conn.busy.set(false);
            conn.since.set(Instant::now());
            Ok::<_, Infallible>(response)
        }
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .max_buf_size(HEAD_BYTES_MAX)
        .serve_connection(Io(stream), service);
    let deadline = glommio::timer::sleep(CONNECTION_TIME_MAX);
    let idle = conn.idle_for(admin.idle);
    let evicted = conn.evicted();
    futures::pin_mut!(serving, deadline, idle, evicted);
    let ended = futures::future::select(idle, evicted);
    let ended = futures::future::select(deadline, ended);
    if let futures::future::Either::Left((Err(e), _)) =
        futures::future::select(serving, ended).await
    {
        tracing::debug!("admin connection failed: {e}");
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

const TEXT: &str = "text/plain; charset=utf-8";
/// The exposition `prometheus-client` writes is OpenMetrics text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn route(
    admin: &Rc<Admin>,
    ip: IpAddr,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(refusal) = admin.refuse(ip, request.uri().path(), request.headers()) {
        return refusal;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match request.uri().path() {
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, scrape(admin).await),
        "/health/live" => reply(StatusCode::OK, TEXT, "live\n"),
        "/health/ready" if admin.health.is_ready() => reply(StatusCode::OK, TEXT, "ready\n"),
        "/health/ready" => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n"),
        "/v1/status" => reply(StatusCode::OK, "application/json", status(admin).to_string()),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// Gathers every shard's snapshot (this one directly, the others over the mesh) and renders
/// them. A shard that cannot answer (shutting down) is left out.
async fn scrape(admin: &Rc<Admin>) -> String {
    let shard = &admin.shard;
    let mut snapshots = vec![shard.metrics_snapshot()];
    snapshots.extend(shard.ask_others(|reply| ShardMsg::Metrics { reply }).await);
    snapshots.sort_by_key(|s| s.shard);
    let node = NodeInfo {
        version: env!("CARGO_PKG_VERSION"),
        node_id: shard.config.node_id,
        uptime_seconds: admin.health.uptime().as_secs_f64(),
    };
    metrics::render(&node, &snapshots)
}

fn status(admin: &Admin) -> serde_json::Value {
    let config = &admin.shard.config;
    let meta = admin.shard.meta();
    let inter_broker = config.inter_broker();
    let kafka_listeners: Vec<serde_json::Value> = config
        .listeners
        .iter()
        .map(|l| {
            let advertised =
                crate::config::listener::host_port(&l.advertised_host, l.advertised_port);
            serde_json::json!({
                "name": l.name,
                "protocol": l.protocol.name(),
                "bind": l.bind.to_string(),
                "advertised": advertised,
            })
        })
        .collect();
    let partitions: usize = meta.topics.values().map(|t| t.partitions.len()).sum();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": config.node_id,
        "shards": admin.shard.count,
        "ready": admin.health.is_ready(),
        "listeners": {
            "kafka": inter_broker.bind.to_string(),
            "advertised": crate::config::listener::host_port(
                &inter_broker.advertised_host,
                inter_broker.advertised_port,
            ),
            "admin": admin.address,
            "kafka_listeners": kafka_listeners,
        },
        "data_dir": config.data_dir.display().to_string(),
        "uptime_seconds": admin.health.uptime().as_secs_f64(),
        "topics": meta.topics.len(),
        "partitions": partitions,
    })
}

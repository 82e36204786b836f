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
//! hyper runs over glommio's TCP stream through a small adapter ([`Io`]), as glommio's own
//! `hyper_compat` example does. hyper parses the requests (malformed ones get 400) and bounds
//! the buffered head ([`HEAD_BYTES_MAX`]); each connection is cut after
//! [`CONNECTION_TIME_MAX`] and at most [`CONNECTIONS_MAX`] are served at once.

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use super::mesh::ShardMsg;
use super::shard::Shard;
use crate::metrics::{self, NodeInfo};

/// Largest request head (request line and headers) hyper buffers (its floor is 8 KiB).
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// A connection is closed this long after it was accepted, idle or not.
const CONNECTION_TIME_MAX: Duration = Duration::from_secs(60);
/// Admin connections served at once; more are closed right after accept.
const CONNECTIONS_MAX: usize = 64;

/// Start-up and shutdown state shared by every shard (written a few times per process life,
/// read by the admin listener).
#[derive(Debug)]
pub struct Health {
    started: Instant,
    shards: usize,
    ready_shards: AtomicUsize,
    draining: AtomicBool,
}

impl Health {
    /// Health of a broker with `shards` shards, none ready yet.
    pub fn new(shards: usize) -> Health {
        Health {
            started: Instant::now(),
            shards,
            ready_shards: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
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

    /// Every shard is ready and the broker is not shutting down.
    pub fn is_ready(&self) -> bool {
        let all = self.ready_shards.load(Ordering::Acquire) >= self.shards;
        all && !self.draining.load(Ordering::Acquire)
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// hyper's I/O traits over a futures-io stream (glommio's `TcpStream`).
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
    open: Cell<usize>,
}

/// Serves the admin listener until the task is dropped (shard 0 shutting down).
pub async fn serve(shard: Rc<Shard>, health: Arc<Health>, listener: TcpListener) {
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let admin = Rc::new(Admin { shard, health, address, open: Cell::new(0) });
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if admin.open.get() >= CONNECTIONS_MAX {
            tracing::warn!(limit = CONNECTIONS_MAX, "too many admin connections; closing");
            continue;
        }
        admin.open.set(admin.open.get() + 1);
        let admin = admin.clone();
        glommio::spawn_local(async move {
            let served = connection(&admin, stream);
            let _ = crate::runtime::contain::contained("an admin HTTP connection", served).await;
            admin.open.set(admin.open.get() - 1);
        })
        .detach();
    }
}

async fn connection(admin: &Rc<Admin>, stream: TcpStream) {
    let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| {
        let admin = admin.clone();
        async move { Ok::<_, Infallible>(route(&admin, request).await) }
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .max_buf_size(HEAD_BYTES_MAX)
        .serve_connection(Io(stream), service);
    let deadline = glommio::timer::sleep(CONNECTION_TIME_MAX);
    futures::pin_mut!(serving, deadline);
    if let futures::future::Either::Left((Err(e), _)) =
        futures::future::select(serving, deadline).await
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
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
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
    let mut answers = Vec::new();
    for peer in (0..shard.count).filter(|&p| p != shard.id) {
        let (reply, answer) = oneshot::channel();
        if shard.send(peer, ShardMsg::Metrics { reply }).await {
            answers.push(answer);
        }
    }
    snapshots.extend(futures::future::join_all(answers).await.into_iter().flatten());
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

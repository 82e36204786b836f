//! One client connection: read frames, dispatch in order, write responses in order.
//!
//! The reader waits for a frame's size prefix, has the shard's memory budget admit the frame
//! ([`budget`]), reads its body ([`FrameReader`]), starts its request
//! ([`handlers::dispatch`]) and queues the pending response with the bytes it holds; the
//! writer awaits the queue head, resizes its hold to the encoded response, writes it and gives
//! the bytes back (a Fetch response as chunks, [`protocol::Chunks`]: its large record sets go
//! to the socket as the very buffers the handler read, not copied into the response). The
//! reader stops reading (pushing back on the client through TCP) while
//! the budget, the connection's share of it, or its requests in flight
//! (`IN_FLIGHT_PER_CONNECTION_MAX`) are spent. A Fetch is given room for its response before
//! it is dispatched, and shrunk to that room. A client over one of its quotas is muted: the
//! reader reads nothing more until its throttle time ends (as Kafka mutes the channel).
//!
//! Order: as Kafka (which reads a connection's next request only once it has answered the
//! last), each request sees the effects of every earlier request of its connection. Produce
//! and Fetch requests are pipelined (a client's in-flight requests): their order-dependent
//! work (appends, fetch-session updates) is done when they start, in order, and the rest
//! overlaps. Any other request starts only once every earlier one has finished, and a Produce
//! or Fetch after it waits for it too: a ListOffsets sent right behind a DeleteRecords sees
//! the new log start. Such a request finishes when its response has been written (as Kafka
//! answers before it reads on), so unread responses cannot pile up outside the budget.
//!
//! Deadlines: a connection with nothing in flight that sends nothing for
//! `connections_max_idle_ms` is closed; a frame must arrive whole within `frame_timeout_ms`
//! of its first byte (its body: of being admitted), and a response must be written within
//! `frame_timeout_ms`. A bad frame, a timeout or a refused request closes the connection with
//! a rate-limited log line and a count in `strata_refusals_total`; the rest of the broker is
//! unaffected.
//!
//! Each connection runs inside a `conn` tracing span (`id` = `shard.sequence`, `peer`), so
//! its log lines, and those of its requests' handlers on this shard, carry the connection id;
//! error lines about a request add its `correlation_id`. Together they are the request id.
//! When the shard drains ([`Shard::draining`] closed), the reader stops taking requests and
//! the writer finishes the responses already queued, then closes.
//!
//! The read and write loops are generic over the byte stream: a PLAINTEXT listener hands
//! them the TCP stream itself (no indirection per read), a TLS listener a rustls stream over
//! it (see `security::tls`); what a listener does before (TLS handshake, principal from the
//! client certificate) is done by `server::transport`, which builds the [`Session`]. On a
//! SASL listener frames are limited to `sasl.server.max.receive.size` until the client has
//! logged in, the frames after a v0 SaslHandshake are raw SASL tokens (see
//! `handlers::sasl`), and a refused login is answered, then the connection closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::future::Either;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::task::JoinHandle;
use kafka_protocol::messages::{ApiKey, RequestKind};
use tracing::Instrument;

use super::budget::{self, ConnShare, Held};
use super::frame_reader::{FrameReader, ReadError};
use super::handlers::{self, Reply};
use super::session::Session;
use super::shard::Shard;
use crate::metrics::ShardMetrics;
use crate::protocol::{self, Chunks, ProtocolError, Request};

/// How often a connection with requests in flight, and otherwise idle too long, looks again.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// A response in the queue, with the budget bytes its request holds.
enum Queued {
    Ready(BytesMut, Held),
    Pending {
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        reply: JoinHandle<Reply>,
        /// When the request was parsed, for the latency histogram of its API.
        started: Instant,
        held: Held,
        /// Dropped once the response is written, for a request that nothing overlaps: the
        /// reader starts the next request only then (see [`InFlight`]).
        written: Option<futures::channel::oneshot::Sender<()>>,
    },
}

impl Queued {
    fn take_written(&mut self) -> Option<futures::channel::oneshot::Sender<()>> {
        match self {
            Queued::Ready(..) => None,
            Queued::Pending { written, .. } => written.take(),
        }
    }
}

/// What both loops of one connection share.
struct Conn {
    shard: Rc<Shard>,
    session: Rc<Session>,
    share: Rc<ConnShare>,
    /// Last time a byte was read or written.
    active: std::cell::Cell<Instant>,
    idle: Duration,
    frame_timeout: Duration,
}

impl Conn {
    fn touch(&self) {
        self.active.set(Instant::now());
    }
}

/// Serves one connection until the client closes it or sends something unacceptable.
/// `stream` is the TCP stream itself or a TLS stream over it; `session` says who the client
/// is and which listener it came in on; `socket` is the descriptor of a plain TCP `stream`
/// (its frames' bodies are received straight from it: [`FrameReader::with_socket`]).
pub async fn serve<S>(
    shard: Rc<Shard>,
    stream: S,
    session: Rc<Session>,
    socket: Option<std::os::fd::RawFd>,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = stream.split();
    let session_of_conn = session.clone();
    let config = &shard.config;
    let conn = Rc::new(Conn {
        share: ConnShare::new(&shard.budget),
        session,
        active: std::cell::Cell::new(Instant::now()),
        idle: Duration::from_millis(config.connections_max_idle_ms),
        frame_timeout: Duration::from_millis(config.frame_timeout_ms),
        shard: shard.clone(),
    });
    // Unbounded, and so unallocated while idle: admission ([`ConnShare::admit`]) bounds it to
    // `IN_FLIGHT_PER_CONNECTION_MAX` requests.
    let (queue, pending) = local_channel::new_unbounded();
    let writing = write_loop(writer, pending, conn.clone(), shard.metrics.clone());
    let writing = writing.instrument(tracing::Span::current());
    let writing = crate::runtime::contain::spawn_contained("a connection's writer", writing);
    // Boxed once per connection, so that the connection's task (and the futures around it)
    // does not carry the reader's state, which is large, several times over.
    let frames = match socket {
        Some(socket) => FrameReader::with_socket(reader, socket),
        None => FrameReader::new(reader),
    };
    let reading = Box::pin(read_loop(conn, frames, queue));
    let drained = shard.draining.acquire(1);
    let draining = Rc::new(std::cell::Cell::new(false));
    // The block drops the reader when the shard drains, and with it the queue's sender: the
    // writer then ends once the responses already queued are written (kept alive, the reader
    // would hold an idle connection open until the shutdown timeout).
    let drain_seen = draining.clone();
    let reading = async move {
        futures::pin_mut!(drained);
        if let Either::Right(_) = futures::future::select(reading, drained).await {
            drain_seen.set(true);
        }
    };
    futures::pin_mut!(reading);
    match futures::future::select(reading, writing).await {
        // The client stopped sending: finish the responses already queued, then close.
        Either::Left(((), writing)) => writing.await,
        // The writer failed or was told to close: stop reading too.
        Either::Right(((), _)) => {}
    }
    // The share sessions it opened close with it, releasing their locks (not while the
    // broker shuts down: the locks are not written, a restart delivers the records again).
    let opened = session_of_conn.take_share_sessions();
    if !opened.is_empty() && !draining.get() {
        super::handlers::share::connection_closed(&shard, opened).await;
    }
}

/// `future`, or `None` once `deadline` passed. A future that is ready at once (the bytes
/// are already here, the socket takes the write) costs no timer: the hot path of a busy
/// connection arms none.
async fn within<F: Future>(deadline: Instant, future: F) -> Option<F::Output> {
    futures::pin_mut!(future);
    let first = futures::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    if let Poll::Ready(output) = first {
        return Some(output);
    }
    let timer = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    futures::pin_mut!(timer);
    match futures::future::select(future, timer).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

/// Why the reader stopped.
enum Stop {
    /// The client closed the connection or the socket failed (already logged if worth it).
    Closed,
    /// Idle past `connections_max_idle_ms`.
    Idle,
    /// A frame did not arrive whole in time.
    FrameTimeout,
}

/// Waits for the first byte of the next frame; closes the connection once it has had nothing
/// in flight and sent nothing for `idle`.
async fn wait_for_frame<R: AsyncRead + Unpin>(
    conn: &Conn,
    frames: &mut FrameReader<R>,
) -> Result<(), Stop> {
    loop {
        // With requests in flight the connection is not idle: look again a little later.
        let recheck = Instant::now() + conn.idle.min(IDLE_RECHECK);
        let deadline = (conn.active.get() + conn.idle).max(recheck);
        match within(deadline, frames.wait_for_data()).await {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => return Err(closed(conn, e)),
            None if conn.share.held() == 0 && conn.active.get().elapsed() >= conn.idle => {
                return Err(Stop::Idle)
            }
            None => {}
        }
    }
}

fn closed(conn: &Conn, e: ReadError) -> Stop {
    let peer = conn.session.peer;
    match e {
        ReadError::Closed { inside_frame: false } => {}
        e => tracing::debug!(%peer, "{e}"),
    }
    Stop::Closed
}

/// Reads one frame within the frame deadline and the memory budget: the bytes it holds and
/// its body. `None` when the connection must close (logged).
async fn read_frame<R: AsyncRead + Unpin>(
    conn: &Conn,
    frames: &mut FrameReader<R>,
) -> Result<(Held, bytes::Bytes), Stop> {
    let peer = conn.session.peer;
    let size = match within(Instant::now() + conn.frame_timeout, frames.read_size()).await {
        Some(Ok(size)) => size,
        Some(Err(e)) => return Err(closed(conn, e)),
        None => return Err(Stop::FrameTimeout),
    };
    conn.touch();
    let config = &conn.shard.config;
    let max =
        conn.session.frame_bytes_max(config.max_request_bytes, config.sasl.server_max_receive_size);
    let size = match protocol::check_frame_size(size, max) {
        Ok(size) => size,
        Err(e) => {
            crate::refused!(WARN, "frame_size", %peer, "closing connection: {e}");
            return Err(Stop::Closed);
        }
    };
    let budget = conn.share.budget();
    if !budget.can_ever_grant(size) {
        let most = budget.grant_bytes_max();
        let why = "frame larger than this shard's memory budget can ever hold; closing connection";
        crate::refused!(WARN, "memory_budget", %peer, size, most, "{why}");
        return Err(Stop::Closed);
    }
    let held = conn.share.admit(size).await;
    let body = match within(Instant::now() + conn.frame_timeout, frames.read_body(size)).await {
        Some(Ok(body)) => body,
        Some(Err(e)) => return Err(closed(conn, e)),
        None => return Err(Stop::FrameTimeout),
    };
    conn.touch();
    Ok((held, body))
}

/// Requests of one connection started and maybe not finished, oldest first (see the module
/// docs' "Order"): whether each may overlap later ones, and its end.
#[derive(Default)]
struct InFlight {
    started: std::collections::VecDeque<(bool, futures::channel::oneshot::Receiver<()>)>,
}

impl InFlight {
    /// Produce and Fetch overlap each other; nothing else overlaps anything. A request that
    /// does not overlap ends when its response has been written, not when its handler
    /// finished: as Kafka reads a connection's next request only once it sent the last
    /// response, so a client that pipelines requests and reads no responses (Metadata of
    /// every topic, over and over) holds at most one of those responses in memory.
    fn pipelined(key: ApiKey) -> bool {
        matches!(key, ApiKey::Produce | ApiKey::Fetch)
    }

    /// Waits until a request of `key` may start after those in flight.
    async fn wait_turn(&mut self, key: ApiKey) {
        // Forget the finished ones (their senders fired or were dropped).
        self.started.retain_mut(|(_, done)| matches!(done.try_recv(), Ok(None)));
        if Self::pipelined(key) && self.started.iter().all(|(pipelined, _)| *pipelined) {
            return;
        }
        for (_, done) in self.started.drain(..) {
            let _ = done.await;
        }
    }

    /// Records a started request of `key`; the sender is dropped or fired when it ends.
    fn start(&mut self, key: ApiKey) -> futures::channel::oneshot::Sender<()> {
        let (done, ended) = futures::channel::oneshot::channel();
        self.started.push_back((Self::pipelined(key), ended));
        done
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    conn: Rc<Conn>,
    mut frames: FrameReader<R>,
    queue: LocalSender<Queued>,
) {
    let conn = &conn;
    let mut in_flight = InFlight::default();
    let peer = conn.session.peer;
    let timeout_ms = conn.frame_timeout.as_millis() as u64;
    let stop = loop {
        // A client over its quota is muted: nothing is read until its throttle time ends.
        conn.session.unmuted().await;
        if let Err(stop) = wait_for_frame(conn, &mut frames).await {
            break stop;
        }
        let (held, frame) = match read_frame(conn, &mut frames).await {
            Ok(read) => read,
            Err(stop) => break stop,
        };
        if conn.session.expects_raw_sasl_token() {
            // After a v0 SaslHandshake: a bare SASL token, not a request (see handlers::sasl).
            let answer = handlers::sasl::raw_token(&conn.shard, &conn.session, frame).await;
            let Some(answer) = answer else {
                break Stop::Closed;
            };
            if queue.send(Queued::Ready(answer, held)).await.is_err() {
                break Stop::Closed;
            }
            continue;
        }
        let Some(queued) = start_request(conn, frame, held, &mut in_flight).await else {
            break Stop::Closed;
        };
        if queue.send(queued).await.is_err() {
            break Stop::Closed;
        }
    };
    match stop {
        Stop::Closed => {}
        Stop::Idle => {
            let idle_ms = conn.idle.as_millis() as u64;
            crate::refused!(DEBUG, "idle_timeout", %peer, idle_ms, "closing an idle connection");
        }
        Stop::FrameTimeout => {
            let what = "closing connection: a request frame did not arrive whole in time";
            crate::refused!(WARN, "frame_timeout", %peer, timeout_ms, "{what}");
        }
    }
}

/// Parses a frame and starts its request. `None` when the connection must close (logged).
async fn start_request(
    conn: &Rc<Conn>,
    frame: bytes::Bytes,
    mut held: Held,
    in_flight: &mut InFlight,
) -> Option<Queued> {
    let peer = conn.session.peer;
    match protocol::parse_request(frame, handlers::supported) {
        Ok(mut request) => {
            in_flight.wait_turn(request.key).await;
            reserve_response(conn, &mut request, &mut held).await;
            let (key, version) = (request.key, request.version);
            let done = in_flight.start(key);
            let correlation_id = request.header.correlation_id;
            let started = Instant::now();
            // The request's span: its log lines, here and on the shards it is forwarded to,
            // carry the connection id and this correlation id.
            let span = tracing::info_span!("req", correlation_id, api = ?key);
            let handling = handlers::dispatch(&conn.shard, request, &conn.session)
                .instrument(span.clone())
                .await;
            let handling = handlers::contained(key, handling).instrument(span);
            let (done, written) = match InFlight::pipelined(key) {
                true => (Some(done), None),
                false => (None, Some(done)),
            };
            let handling = async move {
                let reply = handling.await;
                drop(done);
                reply
            };
            let reply = glommio::spawn_local(handling).detach();
            Some(Queued::Pending { key, version, correlation_id, reply, started, held, written })
        }
        Err(ProtocolError::UnsupportedVersion {
            key: ApiKey::ApiVersions,
            version,
            correlation_id,
        }) => {
            tracing::debug!(%peer, version, "ApiVersions version not supported; answering v0");
            match protocol::unsupported_api_versions(correlation_id, handlers::APIS) {
                Ok(bytes) => Some(Queued::Ready(bytes, held)),
                Err(e) => {
                    crate::log_limited!(ERROR, %peer, "encoding ApiVersions failed: {e}");
                    None
                }
            }
        }
        Err(e) => {
            crate::refused!(WARN, "bad_frame", %peer, "closing connection: {e}");
            None
        }
    }
}

/// Gives a Fetch room in the budget for its response, and shrinks it to that room.
async fn reserve_response(conn: &Rc<Conn>, request: &mut Request, held: &mut Held) {
    if let RequestKind::Fetch(fetch) = &mut request.body {
        let want = budget::fetch_response_bytes_max(fetch);
        let granted = conn.share.reserve_response(held, want).await;
        budget::shrink_fetch(fetch, granted);
    }
}

/// Position of `key` in [`handlers::APIS`]: its slot in the latency histograms.
fn api_slot(key: ApiKey) -> usize {
    handlers::APIS.iter().position(|a| a.key == key).unwrap_or(usize::MAX)
}

/// A response ready to write: its bytes, their hold, and whether the connection closes after
/// it (a refused SASL login).
type Ready = (Chunks, Held, bool);

/// The response to write for a queued request, and its hold; `None` when there is nothing to
/// write (acks=0). `Err` when the connection must close (logged).
async fn response(
    queued: Queued,
    metrics: &ShardMetrics,
    peer: SocketAddr,
) -> Result<Option<Ready>, ()> {
    let (key, version, correlation_id, reply, started, held) = match queued {
        Queued::Ready(bytes, held) => return Ok(Some((Chunks::from(bytes), held, false))),
        Queued::Pending { key, version, correlation_id, reply, started, held, .. } => {
            (key, version, correlation_id, reply, started, held)
        }
    };
    let reply = reply.await;
    metrics.observe_request(api_slot(key), started.elapsed());
    let (response, last) = match reply {
        Some(Reply::Response(response)) => (response, false),
        // A refused SASL login: answered, then closed (already logged).
        Some(Reply::Last(response)) => (response, true),
        Some(Reply::Nothing) => return Ok(None),
        Some(Reply::Close(why)) => {
            let what = "closing connection";
            crate::refused!(WARN, "request_refused", %peer, correlation_id, "{what}: {why}");
            return Err(());
        }
        None => {
            crate::log_limited!(ERROR, %peer, correlation_id, "request task was cancelled");
            return Err(());
        }
    };
    let encoded = if one_buffer_responses() {
        protocol::encode_response(key, version, correlation_id, &response).map(Chunks::from)
    } else {
        protocol::encode_response_chunks(key, version, correlation_id, &response)
    };
    match encoded {
        Ok(bytes) => Ok(Some((bytes, held, last))),
        Err(e) => {
            let what = "encoding the response failed";
            crate::log_limited!(ERROR, %peer, correlation_id, ?key, "{what}: {e}");
            Err(())
        }
    }
}

/// Whether responses are encoded into one buffer, record data copied, as before chunks:
/// `STRATA_FETCH_ONE_BUFFER` set in the environment, for A/B measurements of the fetch path
/// with one binary (perf/results/2026-12-05-zero-copy-fetch.md). Read once per process.
fn one_buffer_responses() -> bool {
    static ONE_BUFFER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE_BUFFER.get_or_init(|| std::env::var_os("STRATA_FETCH_ONE_BUFFER").is_some())
}

async fn write_loop(
    mut writer: impl AsyncWrite + Unpin,
    queue: LocalReceiver<Queued>,
    conn: Rc<Conn>,
    metrics: Rc<ShardMetrics>,
) {
    let peer = conn.session.peer;
    while let Some(mut queued) = queue.recv().await {
        // Dropped (the reader may go on) once the response is written, or on `continue`.
        let written = queued.take_written();
        let Ok(ready) = response(queued, &metrics, peer).await else {
            return;
        };
        let Some((bytes, mut held, last)) = ready else {
            continue;
        };
        // The request's bytes are gone (its handler finished); the response's are counted.
        held.resize(bytes.len());
        let writing = write_chunks(&mut writer, &bytes);
        match within(Instant::now() + conn.frame_timeout, writing).await {
            Some(Ok(())) => conn.touch(),
            Some(Err(e)) => return tracing::debug!(%peer, "write failed: {e}"),
            None => {
                let timeout_ms = conn.frame_timeout.as_millis() as u64;
                let what = "closing connection: the client did not take its response in time";
                let bytes = bytes.len();
                crate::refused!(WARN, "response_timeout", %peer, timeout_ms, bytes, "{what}");
                return;
            }
        }
        drop(held);
        drop(written);
        if last {
            break;
        }
    }
    let _ = writer.close().await;
}

/// Writes a response's chunks in order, one `write_all` each: glommio's `TcpStream` writes no
/// vectors (its `poll_write_vectored` is the default, which writes the first buffer), and the
/// TLS stream copies every byte into its records anyway. The encoder keeps the chunks few
/// (record sets under `SPLICE_BYTES_MIN` are copied into the metadata around them).
async fn write_chunks(writer: &mut (impl AsyncWrite + Unpin), chunks: &Chunks) -> io::Result<()> {
    for chunk in chunks.chunks() {
        writer.write_all(chunk).await?;
    }
    Ok(())
}

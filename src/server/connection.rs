//! One client connection: read frames, dispatch in order, write responses in order.
//!
//! The reader parses a frame, starts its request ([`handlers::dispatch`]) and queues the
//! pending response; the writer awaits the queue head and writes it. At most
//! [`limits::IN_FLIGHT_PER_CONNECTION_MAX`] requests are queued; past that the reader stops
//! reading, which pushes back on the client through TCP. A bad frame closes the connection
//! with a log line; the rest of the broker is unaffected.
//!
//! The loops are generic over the byte stream: a PLAINTEXT listener hands them the TCP
//! stream itself (no indirection per read), a TLS listener a rustls stream over it (see
//! `security::tls`); what a listener does before (TLS handshake, principal from the client
//! certificate) is done by the accept loop in `server`, which builds the [`Session`].
//!
//! Each connection runs inside a `conn` tracing span (`id` = `shard.sequence`, `peer`), so
//! its log lines, and those of its requests' handlers on this shard, carry the connection id;
//! error lines about a request add its `correlation_id`. Together they are the request id.
//! When the shard drains ([`Shard::draining`] closed), the reader stops taking requests and
//! the writer finishes the responses already queued, then closes.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use futures::future::Either;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::task::JoinHandle;
use tracing::Instrument;

use super::handlers::{self, Reply};
use super::session::Session;
use super::shard::Shard;
use crate::config::limits;
use crate::metrics::ShardMetrics;
use crate::protocol::{self, ProtocolError};
use kafka_protocol::messages::ApiKey;

/// Bytes asked of the socket per read when no larger frame is pending.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A response in the queue: already encoded, or still being computed.
enum Queued {
    Ready(BytesMut),
    Pending {
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        reply: JoinHandle<Reply>,
        /// When the request was parsed, for the latency histogram of its API.
        started: Instant,
    },
}

/// Serves one connection until the client closes it or sends something unacceptable.
/// `stream` is the TCP stream itself or a TLS stream over it; `session` says who the client
/// is and which listener it came in on.
pub async fn serve<S>(shard: Rc<Shard>, stream: S, session: Rc<Session>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let peer = session.peer;
    let (reader, writer) = stream.split();
    let (queue, pending) = local_channel::new_bounded(limits::IN_FLIGHT_PER_CONNECTION_MAX);
    let metrics = shard.metrics.clone();
    let writing = write_loop(writer, pending, peer, metrics);
    let writing = writing.instrument(tracing::Span::current());
    let writing = crate::runtime::contain::spawn_contained("a connection's writer", writing);
    let reading = read_loop(&shard, reader, queue, &session);
    let drained = shard.draining.acquire(1);
    let reading = async move {
        futures::pin_mut!(reading, drained);
        futures::future::select(reading, drained).await;
    };
    futures::pin_mut!(reading);
    match futures::future::select(reading, writing).await {
        // The client stopped sending: finish the responses already queued, then close.
        Either::Left(((), writing)) => writing.await,
        // The writer failed or was told to close: stop reading too.
        Either::Right(((), _)) => {}
    }
}

async fn read_loop(
    shard: &Rc<Shard>,
    mut reader: impl AsyncRead + Unpin,
    queue: LocalSender<Queued>,
    session: &Rc<Session>,
) {
    let peer = session.peer;
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let (max, max_before_auth) =
        (shard.config.max_request_bytes, shard.config.sasl.server_max_receive_size);
    loop {
        if !fill(&mut reader, &mut buf, protocol::FRAME_PREFIX_BYTES, peer).await {
            return;
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let max = session.frame_bytes_max(max, max_before_auth);
        let size = match protocol::check_frame_size(size, max) {
            Ok(size) => size,
            Err(e) => return tracing::warn!(%peer, "closing connection: {e}"),
        };
        if !fill(&mut reader, &mut buf, protocol::FRAME_PREFIX_BYTES + size, peer).await {
            return;
        }
        buf.advance(protocol::FRAME_PREFIX_BYTES);
        let frame = buf.split_to(size).freeze();
        if session.expects_raw_sasl_token() {
            // After a v0 SaslHandshake: a bare SASL token, not a request (see handlers::sasl).
            let Some(answer) = handlers::sasl::raw_token(shard, session, frame).await else {
                return;
            };
            if queue.send(Queued::Ready(answer)).await.is_err() {
                return;
            }
            continue;
        }
        let queued = match protocol::parse_request(frame, handlers::supported) {
            Ok(request) => {
                let (key, version) = (request.key, request.version);
                let correlation_id = request.header.correlation_id;
                let started = Instant::now();
                // The request's span: its log lines, here and on the shards it is forwarded
                // to, carry the connection id and this correlation id.
                let span = tracing::info_span!("req", correlation_id, api = ?key);
                let handling = handlers::dispatch(shard, request, session).instrument(span.clone());
                let handling = handlers::contained(key, handling.await).instrument(span);
                let reply = glommio::spawn_local(handling).detach();
                Queued::Pending { key, version, correlation_id, reply, started }
            }
            Err(ProtocolError::UnsupportedVersion {
                key: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => {
                tracing::debug!(%peer, version, "ApiVersions version not supported; answering v0");
                match protocol::unsupported_api_versions(correlation_id, handlers::APIS) {
                    Ok(bytes) => Queued::Ready(bytes),
                    Err(e) => return tracing::error!(%peer, "encoding ApiVersions failed: {e}"),
                }
            }
            Err(e) => return tracing::warn!(%peer, "closing connection: {e}"),
        };
        if queue.send(queued).await.is_err() {
            return;
        }
    }
}

/// Reads until `buf` holds `want` bytes. False on end of stream or error (logged).
///
/// The spare room is zeroed once per call (reads need initialised memory) and then filled by
/// as many reads as it takes; zeroing again after every short read made a large frame cost
/// a memset per read of everything still missing (quadratic, 9% of a 1 KiB produce profile).
async fn fill(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    want: usize,
    peer: SocketAddr,
) -> bool {
    let have = buf.len();
    if have >= want {
        return true;
    }
    buf.resize(have + (want - have).max(READ_CHUNK_BYTES), 0);
    let mut filled = have;
    let complete = loop {
        if filled >= want {
            break true;
        }
        match reader.read(&mut buf[filled..]).await {
            Ok(0) => {
                if filled > 0 {
                    tracing::debug!(%peer, have = filled, "connection closed inside a frame");
                }
                break false;
            }
            Ok(n) => filled += n,
            Err(e) => {
                tracing::debug!(%peer, "read failed: {e}");
                break false;
            }
        }
    };
    buf.truncate(filled);
    complete
}

/// Position of `key` in [`handlers::APIS`]: its slot in the latency histograms.
fn api_slot(key: ApiKey) -> usize {
    handlers::APIS.iter().position(|a| a.key == key).unwrap_or(usize::MAX)
}

async fn write_loop(
    mut writer: impl AsyncWrite + Unpin,
    queue: LocalReceiver<Queued>,
    peer: SocketAddr,
    metrics: Rc<ShardMetrics>,
) {
    while let Some(queued) = queue.recv().await {
        let bytes = match queued {
            Queued::Ready(bytes) => bytes,
            Queued::Pending { key, version, correlation_id, reply, started } => {
                let reply = reply.await;
                metrics.observe_request(api_slot(key), started.elapsed());
                let (response, last) = match reply {
                    Some(Reply::Response(response)) => (response, false),
                    // A refused SASL login: answered, then closed (already logged).
                    Some(Reply::Last(response)) => (response, true),
                    Some(Reply::Nothing) => continue,
                    Some(Reply::Close(why)) => {
                        return tracing::warn!(%peer, correlation_id, "closing connection: {why}")
                    }
                    None => {
                        return tracing::error!(%peer, correlation_id, "request task was cancelled")
                    }
                };
                match protocol::encode_response(key, version, correlation_id, &response) {
                    Ok(bytes) if last => {
                        let _ = writer.write_all(&bytes).await;
                        let _ = writer.close().await;
                        return;
                    }
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let what = "encoding the response failed";
                        return tracing::error!(%peer, correlation_id, ?key, "{what}: {e}");
                    }
                }
            }
        };
        if let Err(e) = writer.write_all(&bytes).await {
            return tracing::debug!(%peer, "write failed: {e}");
        }
    }
    let _ = writer.close().await;
}

//! Issue 15, findings 2, 3, 4, 10, 11 and 12, and check 2: what hostile or careless clients
//! can do to a broker's memory, connections, ports, health checks and logs, against a real
//! `strata serve` process.
//!
//! Memory is read from `/proc/<pid>/status` (`VmRSS`). Where a test bounds memory over a
//! while (a memory bound, not a speed threshold), it samples RSS as the load runs and asserts
//! on the largest sample.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{batch, create_topic, fetch_one, free_port, poll, produce, Broker, Conn};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

const MIB: u64 = 1 << 20;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Lets this process (and the brokers it starts) open many sockets.
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// A GET over a fresh connection: (status, body); `None` if the connection failed or closed.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// The sum of every series of metric `name` whose labels contain `labels` (e.g.
/// `reason="bad_frame"`), or `None` when there is none.
fn metric(broker: &Broker, name: &str, labels: &str) -> Option<f64> {
    let (status, body) = http_get(broker.admin.unwrap(), "/metrics")?;
    assert_eq!(status, 200);
    let values: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn refusals(broker: &Broker, reason: &str) -> u64 {
    let labels = format!("reason=\"{reason}\"");
    metric(broker, "strata_refusals_total", &labels).unwrap_or(0.0) as u64
}

fn open_connections(broker: &Broker) -> u64 {
    metric(broker, "strata_connections", "").unwrap_or(0.0) as u64
}

/// An ApiVersions v0 request frame (size prefix included).
fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(0)
        .with_correlation_id(correlation_id);
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).unwrap();
    let mut frame = Vec::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

/// Whether the broker answers an ApiVersions request on `stream` (false: it closed it).
fn answers(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if stream.write_all(&api_versions_frame(1)).is_err() {
        return false;
    }
    let mut size = [0u8; 4];
    if stream.read_exact(&mut size).is_err() {
        return false;
    }
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).is_ok()
}

/// Whether the broker closes `stream` (waits up to its read timeout).
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A connection that claims a frame of `claimed` bytes and sends one byte of it.
fn claim(addr: SocketAddr, claimed: u32) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut bytes = claimed.to_be_bytes().to_vec();
    bytes.push(0);
    stream.write_all(&bytes).unwrap();
    stream
}

/// A Fetch v12 request frame for partition 0 of `topic` from offset 0, `max_bytes` for the
/// request and the partition, waiting at most `wait_ms` for a byte.
fn fetch_frame(topic: &str, max_bytes: i32, wait_ms: i32, correlation_id: i32) -> Vec<u8> {
    fetch_partitions_frame(topic, 1, max_bytes, wait_ms, correlation_id)
}

/// As [`fetch_frame`], for partitions 0 to `partitions - 1`.
fn fetch_partitions_frame(
    topic: &str,
    partitions: i32,
    max_bytes: i32,
    wait_ms: i32,
    correlation_id: i32,
) -> Vec<u8> {
    let p = |partition| {
        fetch_request::FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(0)
            .with_partition_max_bytes(max_bytes)
    };
    let name = TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.into()));
    let t = fetch_request::FetchTopic::default()
        .with_topic(name)
        .with_partitions((0..partitions).map(p).collect());
    let req = FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![t]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(correlation_id);
    let mut body = BytesMut::new();
    header.encode(&mut body, ApiKey::Fetch.request_header_version(12)).unwrap();
    req.encode(&mut body, 12).unwrap();
    let mut frame = Vec::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

/// A client that sends `requests` Fetch requests for 50 MiB each, back to back, and never
/// reads a response.
fn unread_fetches(addr: SocketAddr, topic: &str, requests: i32) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let frames: Vec<u8> =
        (1..=requests).flat_map(|i| fetch_frame(topic, 50 << 20, 500, i)).collect();
    stream.write_all(&frames).unwrap();
    stream
}

/// Fills partition 0 of a new topic `name` with `mib` MiB of records in 64 KiB batches.
fn topic_with_data(conn: &mut Conn, name: &str, mib: usize) {
    create_topic(conn, name, 1);
    let value = vec![b'x'; 64 * 1024 - 100];
    for _ in 0..mib * 16 {
        let (code, _) = produce(conn, name, 0, batch(&[(b"k", &value)]), -1);
        assert_eq!(code, 0);
    }
}

/// A normal client produces one record and reads it back.
fn produce_and_fetch(broker: &Broker, topic: &str, round: usize) {
    let mut conn = Conn::connect(broker.addr);
    let value = format!("normal client, round {round}");
    let (code, offset) = produce(&mut conn, topic, 0, batch(&[(b"k", value.as_bytes())]), -1);
    assert_eq!(code, 0, "the normal client's produce failed");
    let data = fetch_one(&mut conn, topic, 0, offset);
    assert_eq!(data.error_code, 0);
    let records = common::records(data.records.as_ref().unwrap());
    let (got_offset, _, got_value) = &records[0];
    assert_eq!(*got_offset, offset);
    assert_eq!(got_value, value.as_bytes());
}

/// Samples the broker's RSS while `work` runs; the largest sample.
fn peak_rss_during(broker: &Broker, work: impl FnOnce()) -> u64 {
    let pid = broker.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = rss_bytes(pid);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes(pid));
                // A sampling period, not a synchronisation.
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(rss_bytes(pid))
        })
    };
    work();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap()
}

// ---- finding 2: a claimed frame size allocates nothing -----------------------------------

/// Finding 2: a 5-byte message with a 100 MiB size prefix allocated (and zeroed) 100 MiB.
#[test]
fn claimed_frame_sizes_cost_only_the_bytes_that_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "1"]);
    let baseline = rss_bytes(broker.pid());
    let claimers: Vec<TcpStream> = (0..16).map(|_| claim(broker.addr, 100 << 20)).collect();
    // Until the broker admitted a claim (its budget gauge says so), or RSS shows the claims
    // being allocated.
    poll("the claims to be read", || {
        let used = metric(&broker, "strata_memory_budget_used_bytes", "").unwrap_or(0.0);
        let grown = rss_bytes(broker.pid()).saturating_sub(baseline);
        (used >= (100 * MIB) as f64 || grown > 64 * MIB).then_some(())
    });
    let grown = rss_bytes(broker.pid()).saturating_sub(baseline);
    eprintln!("16 claimed frames of 100 MiB: RSS {} -> +{}", mib(baseline), mib(grown));
    assert!(grown < 32 * MIB, "16 one-byte frames claiming 100 MiB cost {}", mib(grown));
    let mut conn = Conn::connect(broker.addr);
    common::metadata(&mut conn);
    drop(claimers);
}

/// Finding 2: a frame larger than the memory budget could ever grant is refused at once.
#[test]
fn a_frame_larger_than_the_budget_can_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker =
        Broker::start(dir.path(), &["--shards", "1", "--queued-max-request-bytes", "33554432"]);
    let mut conn = claim(broker.addr, 50 << 20);
    assert!(closed_by_broker(&mut conn), "a 50 MiB frame over a 32 MiB budget was kept");
    assert!(refusals(&broker, "memory_budget") >= 1);
    // One the budget can hold waits for its bytes instead, and others are served meanwhile.
    let fits = claim(broker.addr, 20 << 20);
    assert!(answers(&mut TcpStream::connect(broker.addr).unwrap()));
    assert_eq!(refusals(&broker, "memory_budget"), 1);
    drop(fits);
}

// ---- finding 3: clients that never read ----------------------------------------------------

/// Finding 3: a client pipelining Fetch requests without reading held ≈520 MB.
#[test]
fn clients_that_never_read_hold_at_most_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 128 * MIB;
    let budget_arg = budget.to_string();
    let broker =
        Broker::start(dir.path(), &["--shards", "1", "--queued-max-request-bytes", &budget_arg]);
    let mut conn = Conn::connect(broker.addr);
    topic_with_data(&mut conn, "bulk", 40);
    let baseline = rss_bytes(broker.pid());
    let mut stuck = Vec::new();
    let peak = peak_rss_during(&broker, || {
        stuck = (0..6).map(|_| unread_fetches(broker.addr, "bulk", 64)).collect();
        for round in 0..20 {
            produce_and_fetch(&broker, "bulk", round);
        }
    });
    eprintln!("6 clients x 64 unread 50 MiB fetches: RSS {} -> peak {}", mib(baseline), mib(peak));
    let overhead = 96 * MIB;
    assert!(
        peak < baseline + budget + overhead,
        "peak RSS {} over baseline {} + budget {} + {}",
        mib(peak),
        mib(baseline),
        mib(budget),
        mib(overhead)
    );
    drop(stuck);
    poll("the memory of the closed clients to return", || {
        (rss_bytes(broker.pid()) < baseline + 32 * MIB).then_some(())
    });
}

// ---- finding 4: idle sockets, unfinished frames, connection limits -------------------------

/// Finding 4: no idle timeout, no deadline for a frame that never completes.
#[test]
fn idle_connections_and_unfinished_frames_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shards", "1", "--connections-max-idle-ms", "1500", "--frame-timeout-ms", "1500"];
    let broker = Broker::start(dir.path(), &args);
    let mut idle = TcpStream::connect(broker.addr).unwrap();
    assert!(answers(&mut idle));
    let mut half_prefix = TcpStream::connect(broker.addr).unwrap();
    half_prefix.write_all(&[0, 0]).unwrap();
    let mut half_body = claim(broker.addr, 1000);
    // A long poll outlasting the idle timeout is not idle: it is answered.
    let mut conn = Conn::connect(broker.addr);
    create_topic(&mut conn, "quiet", 1);
    let mut long_poll = TcpStream::connect(broker.addr).unwrap();
    long_poll.write_all(&fetch_frame("quiet", 1 << 20, 3000, 7)).unwrap();
    assert!(closed_by_broker(&mut idle), "an idle connection was kept open");
    assert!(closed_by_broker(&mut half_prefix), "half a size prefix was waited for forever");
    assert!(closed_by_broker(&mut half_body), "an unfinished frame was waited for forever");
    let mut size = [0u8; 4];
    long_poll.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    long_poll.read_exact(&mut size).expect("the long poll is answered, not cut");
    assert!(refusals(&broker, "idle_timeout") >= 1);
    assert!(refusals(&broker, "frame_timeout") >= 2);
}

/// Finding 4: `--max-connections` was divided per shard, so the kernel's hashing decided who
/// was refused (holding 100 idle sockets with a limit of 100 served 6 of 20 new clients).
#[test]
fn max_connections_is_one_limit_for_the_whole_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "2", "--max-connections", "100"]);
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..80 {
        let mut stream = TcpStream::connect(broker.addr).unwrap();
        assert!(answers(&mut stream), "connection {i} of 80 (limit 100) was refused");
        held.push(stream);
    }
    for i in 0..20 {
        let mut stream = TcpStream::connect(broker.addr).unwrap();
        assert!(answers(&mut stream), "new client {i} of 20 (80 held, limit 100) was refused");
        held.push(stream);
    }
    let mut over = TcpStream::connect(broker.addr).unwrap();
    assert!(!answers(&mut over), "the 101st connection was served");
    assert!(refusals(&broker, "max_connections") >= 1);
    held.truncate(90);
    poll("closed connections to be counted", || (open_connections(&broker) == 90).then_some(()));
    for _ in 0..10 {
        assert!(answers(&mut TcpStream::connect(broker.addr).unwrap()));
    }
}

/// Finding 4: a per-IP limit (`max.connections.per.ip` with overrides).
#[test]
fn connections_per_ip_are_limited_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let args =
        ["--max-connections-per-ip", "3", "--max-connections-per-ip-overrides", "127.0.0.2:5"];
    let broker = Broker::start(dir.path(), &args);
    let from = |ip: [u8; 4]| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
        let socket = socket.unwrap();
        socket.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
        socket.connect(&broker.addr.into()).unwrap();
        TcpStream::from(socket)
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = from([127, 0, 0, 1]);
        assert!(answers(&mut stream));
        held.push(stream);
    }
    assert!(!answers(&mut from([127, 0, 0, 1])), "a 4th connection from 127.0.0.1 was served");
    for _ in 0..5 {
        let mut stream = from([127, 0, 0, 2]);
        assert!(answers(&mut stream), "127.0.0.2 has an override of 5");
        held.push(stream);
    }
    assert!(!answers(&mut from([127, 0, 0, 2])), "a 6th connection from 127.0.0.2 was served");
    assert!(refusals(&broker, "max_connections_per_ip") >= 2);
}

/// Finding 4: each idle connection cost ≈75 KB (a zero-filled 64 KiB read buffer) and the
/// memory stayed after they closed (10,000 connections: 772 MB, still ≈700 MB after).
#[test]
fn idle_connections_are_cheap_and_their_memory_returns() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "1"]);
    // Warm up first, so that the baseline includes the code pages connections run.
    let warm: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(broker.addr).unwrap()).collect();
    poll("the warm-up connections", || (open_connections(&broker) == 100).then_some(()));
    drop(warm);
    poll("the warm-up to end", || (open_connections(&broker) == 0).then_some(()));
    let baseline = rss_bytes(broker.pid());
    let count = 2000u64;
    let mut after = Vec::new();
    for round in 1..=2 {
        let held: Vec<TcpStream> =
            (0..count).map(|_| TcpStream::connect(broker.addr).unwrap()).collect();
        poll("every connection to be accepted", || {
            (open_connections(&broker) == count).then_some(())
        });
        let held_rss = rss_bytes(broker.pid());
        let cost = held_rss.saturating_sub(baseline);
        let each = cost / count;
        eprintln!(
            "round {round}: {count} idle connections: RSS {} -> {} ({each} bytes each)",
            mib(baseline),
            mib(held_rss)
        );
        // Measured ≈15 KB (socket, task, span, a small read buffer); the bound leaves room for
        // another allocator or kernel and still fails the old 64 KiB zero-filled buffer.
        assert!(each < 32 * 1024, "an idle connection costs {each} bytes");
        drop(held);
        poll("every connection to be closed", || (open_connections(&broker) == 0).then_some(()));
        // It goes back, but for allocator fragmentation (measured ≈4 KB per connection of the
        // peak, around the span slots tracing keeps for reuse), which the next round reuses.
        let returned = poll("their memory to return", || {
            let rss = rss_bytes(broker.pid());
            (rss < baseline + 6 * 1024 * count).then_some(rss)
        });
        eprintln!("round {round}: after they closed: RSS {}", mib(returned));
        after.push(returned);
    }
    // A second round reuses what the first left (its first sample below the bound above may
    // come while memory is still being returned, so wait for it to settle rather than compare
    // two samples): a leak of ~4 KB per connection per round would keep it above for good.
    let first = after[0];
    poll("a second round to keep no more than the first", || {
        (rss_bytes(broker.pid()) < first + 4 * MIB).then_some(())
    });
}

// ---- finding 10: SO_REUSEADDR --------------------------------------------------------------

/// Finding 10: restarting within ≈20 ms of kill -9 failed: binding the admin listener got
/// EADDRINUSE while connections of the killed process lingered.
#[test]
fn a_killed_broker_restarts_at_once_on_the_same_ports() {
    let dir = tempfile::tempdir().unwrap();
    let controller = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let voters = format!("1@{controller}");
    let secret = common::random_secret();
    let args = [
        "--cluster-secret",
        &secret,
        "--node-id",
        "1",
        "--controller-listen",
        &controller,
        "--controller-voters",
        &voters,
        "--admin-listen",
        &admin,
    ];
    let mut broker = Broker::start(dir.path(), &args);
    let admin: SocketAddr = admin.parse().unwrap();
    // An established connection on every port.
    let mut kafka = TcpStream::connect(broker.addr).unwrap();
    assert!(answers(&mut kafka));
    let mut http = TcpStream::connect(admin).unwrap();
    http.write_all(b"GET /health/live HTTP/1.1\r\nHost: strata\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    http.read_exact(&mut head).unwrap();
    assert_eq!(&head[9..12], b"200");
    let raft = TcpStream::connect(controller.as_str()).unwrap();
    broker.kill9();
    broker.restart();
    assert!(answers(&mut TcpStream::connect(broker.addr).unwrap()));
    assert_eq!(http_get(admin, "/health/live").map(|(s, _)| s), Some(200));
    drop((kafka, http, raft));
}

// ---- finding 11: health checks under an admin connection flood ------------------------------

/// Finding 11: 2,000 idle connections to the admin port made `/health/live` fail.
#[test]
fn health_checks_answer_through_a_flood_of_idle_admin_connections() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--shards", "1"]);
    let admin = broker.admin.unwrap();
    let flood: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(admin).unwrap()).collect();
    for path in ["/health/live", "/health/ready"] {
        let answer = http_get(admin, path).map(|(status, _)| status);
        assert_eq!(answer, Some(200), "{path} under 2,000 idle admin connections");
    }
    assert!(refusals(&broker, "admin_connection_evicted") >= 1);
    drop(flood);
}

// ---- finding 12: log flooding --------------------------------------------------------------

/// Finding 12: one WARN line per bad frame let a client fill the disk with logs.
#[test]
fn a_flood_of_bad_frames_logs_a_few_lines_and_counts_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--shards", "1"]);
    broker.logged_so_far();
    // Unknown API key 999: the broker closes each connection.
    let mut bad = BytesMut::new();
    bad.put_i32(8);
    bad.put_i16(999);
    bad.put_i16(0);
    bad.put_i32(1);
    let addr = broker.addr;
    let send_bad = || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(&bad).unwrap();
        assert!(closed_by_broker(&mut stream));
    };
    for _ in 0..1000 {
        send_bad();
    }
    assert_eq!(refusals(&broker, "bad_frame"), 1000, "every bad frame is counted");
    let mut lines: Vec<String> = broker.logged_so_far();
    let about = |lines: &[String]| -> Vec<String> {
        lines.iter().filter(|l| l.contains("closing connection")).cloned().collect()
    };
    let first = about(&lines);
    eprintln!("{} lines for 1,000 bad frames: {first:#?}", first.len());
    assert!(!first.is_empty() && first.len() <= 3, "{} lines for 1,000 bad frames", first.len());
    assert!(first.iter().all(|l| l.contains("suppressed=")), "{first:#?}");
    // Later, a line says how many were left out.
    let started = Instant::now();
    let counted = poll("a line with the suppressed count", || {
        send_bad();
        lines.extend(broker.logged_so_far());
        about(&lines).into_iter().find(|l| !l.contains("suppressed=0"))
    });
    eprintln!("after {:?}: {counted}", started.elapsed());
    let suppressed: u64 = common::ready_field(&counted, "suppressed").unwrap().parse().unwrap();
    assert!(suppressed >= 999, "{counted}");
}

// ---- check 2 ----------------------------------------------------------------------------

/// Check 2 of issue 15: 200 connections each claiming a 100 MiB frame (one byte sent) and
/// 20 Fetch clients (50 MiB each) that pipeline requests and never read: RSS stays under the
/// budget plus a fixed overhead, a normal client's produce and fetch keep working, and the
/// memory returns once they close.
///
/// The overhead allowed above the budget, 160 MiB, covers what the budget does not count:
/// the broker at rest before the load (measured, the baseline), the partition's tail cache
/// (8 MiB), 221 connections' own state and read-ahead (at most 8 KiB each), the storage
/// read path's transient second copy of a fetch's data while it is read from a segment, and
/// the allocator's slack.
#[test]
fn check2_memory_stays_within_the_budget_under_claims_and_unread_fetches() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let budget = 256 * MIB;
    let budget_arg = budget.to_string();
    let broker = Broker::start(dir.path(), &["--queued-max-request-bytes", &budget_arg]);
    let mut conn = Conn::connect(broker.addr);
    topic_with_data(&mut conn, "bulk", 48);
    let baseline = rss_bytes(broker.pid());
    let mut claimers = Vec::new();
    let mut fetchers = Vec::new();
    let peak = peak_rss_during(&broker, || {
        claimers = (0..200).map(|_| claim(broker.addr, 100 << 20)).collect();
        fetchers = (0..20).map(|_| unread_fetches(broker.addr, "bulk", 64)).collect();
        for round in 0..30 {
            produce_and_fetch(&broker, "bulk", round);
        }
    });
    let used = metric(&broker, "strata_memory_budget_used_bytes", "").unwrap_or(0.0);
    let overhead = 160 * MIB;
    eprintln!(
        "check 2: RSS baseline {}, peak {} (budget {}, overhead allowed {}), budget in use {}",
        mib(baseline),
        mib(peak),
        mib(budget),
        mib(overhead),
        mib(used as u64)
    );
    assert!(peak < budget + overhead, "peak RSS {} over budget + overhead", mib(peak));
    drop(claimers);
    drop(fetchers);
    poll("every client to be gone", || (open_connections(&broker) <= 1).then_some(()));
    let mut samples = 0u64;
    let after = poll("the memory to return", || {
        let rss = rss_bytes(broker.pid());
        samples += 1;
        if samples.is_multiple_of(50) {
            // Shown only when the test fails: what was kept, once a second.
            eprintln!("check 2: RSS still {} after the clients closed", mib(rss));
        }
        (rss < baseline + 32 * MIB).then_some(rss)
    });
    eprintln!("check 2: RSS after the clients closed {}", mib(after));
    produce_and_fetch(&broker, "bulk", 99);
}

/// SIGTERM closes idle connections at once: a client that keeps its connection open and sends
/// nothing must not hold the shutdown until `shutdown_timeout_ms` (here 10 minutes; the log line
/// is awaited for at most a minute).
#[test]
fn an_idle_client_does_not_hold_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shards", "2", "--shutdown-timeout-ms", "600000"];
    let mut broker = Broker::start(dir.path(), &args);
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(broker.addr).unwrap();
        assert!(answers(&mut stream), "ApiVersions answered");
        idle.push(stream);
    }
    poll("the connections to be open", || (open_connections(&broker) == 4).then_some(()));
    broker.signal("TERM");
    let lines = broker.log_until("logs closed");
    assert!(!lines.iter().any(|l| l.contains("still busy")), "{lines:?}");
    assert!(broker.wait_exit().success());
    for mut stream in idle {
        assert!(closed_by_broker(&mut stream), "the broker closed the idle connection");
    }
}

/// SIGTERM while consumers long-poll partitions of both shards: every fetch is answered and
/// the broker stops without waiting for `shutdown_timeout_ms` (a minute here). Before, a
/// shard whose own connections were done closed its logs and stopped while a fetch on the
/// other shard still had to read its partitions; that fetch, and the shutdown, then waited
/// for the timeout. The fetches end one after the other (their waits differ), so whichever
/// shard each connection is on, one shard is done before a fetch of the other reads again.
#[test]
fn consumers_waiting_on_both_shards_do_not_hold_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shards", "2", "--shutdown-timeout-ms", "60000"];
    let mut broker = Broker::start(dir.path(), &args);
    create_topic(&mut Conn::connect(broker.addr), "waits", 4);
    let consumers = 6;
    let fetched = |broker: &Broker| {
        let labels = "role=\"leader\"";
        metric(broker, "strata_consumer_fetches_total", labels).unwrap_or(0.0) as i32
    };
    let before = fetched(&broker);
    let mut waiting: Vec<Conn> = (0..consumers)
        .map(|i| {
            let mut conn = Conn::connect(broker.addr);
            let frame = fetch_partitions_frame("waits", 4, 1 << 20, 300 + 700 * i, i + 1);
            conn.send_raw(&frame).unwrap();
            conn
        })
        .collect();
    // Each fetch has read its 4 (empty) partitions once and now waits for data.
    poll("every fetch to wait", || (fetched(&broker) - before >= 4 * consumers).then_some(()));
    broker.signal("TERM");
    let lines = broker.log_until("logs closed");
    assert!(!lines.iter().any(|l| l.contains("still busy")), "{lines:?}");
    assert!(broker.wait_exit().success());
    for (i, conn) in waiting.iter_mut().enumerate() {
        let body = conn.read_frame().expect("a response before the broker closed");
        let correlation_id = i32::from_be_bytes(body[..4].try_into().unwrap());
        assert_eq!(correlation_id, i as i32 + 1, "consumer {i}'s fetch answered");
    }
}

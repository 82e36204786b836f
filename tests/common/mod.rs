//! Shared test harness: a real `strata serve` process on a free loopback port, and a tiny
//! raw Kafka client (kafka-protocol codecs over a blocking TCP socket) for byte-level checks.
#![allow(dead_code)]

pub mod sasl;
pub mod tls;
pub mod txn;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// How long a broker may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A free loopback port (bound, then released for the broker to take).
/// A free loopback port for a broker to listen on. Taken below the kernel's ephemeral range
/// (`ip_local_port_range`), which outgoing connections draw from: brokers hold many (followers
/// fetch from leaders), and one of them could take an ephemeral port between this probe and
/// the broker's bind. A counter keeps the tests of this process apart, the pid other processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let ephemeral = range.ok().and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok());
    let span = ephemeral.unwrap_or(32_768).saturating_sub(LOWEST).max(1_000);
    let start = std::process::id().wrapping_mul(97) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range");
}

/// A broker process; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The admin HTTP listener's address (an ephemeral port unless the args choose one).
    pub admin: Option<SocketAddr>,
    /// The last ready line the broker logged.
    pub ready_line: String,
    args: Vec<String>,
    log_lines: Option<mpsc::Receiver<String>>,
    /// Lines logged by the latest start up to its ready line.
    pub startup_log: Vec<String>,
}

impl Broker {
    /// Starts a broker with `args` on a new data directory inside `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> Broker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut broker = Broker::launch(addr, dir.join("data"), args);
        broker.wait_ready();
        broker
    }

    /// Starts a broker process without waiting for it to be ready (see [`Broker::wait_ready`]).
    ///
    /// In `args`, `{addr}` stands for `addr` and `{free0}` ... `{free9}` for free ports picked
    /// once per broker (so a restart keeps them): named listeners
    /// (`--listeners PLAINTEXT://{addr},SSL://127.0.0.1:{free0}`) replace `--listen addr`.
    pub fn launch(addr: SocketAddr, data_dir: PathBuf, args: Vec<String>) -> Broker {
        let args = substitute_ports(addr, args);
        let mut broker = Broker {
            child: None,
            addr,
            data_dir,
            admin: None,
            ready_line: String::new(),
            args,
            log_lines: None,
            startup_log: Vec::new(),
        };
        broker.launch_process();
        broker
    }

    /// Waits for the ready line of a launched broker.
    pub fn wait_ready(&mut self) {
        let lines = self.log_until("strata ready");
        let ready = lines.last().expect("the ready line").clone();
        self.admin = ready_field(&ready, "admin").and_then(|a| a.parse().ok());
        self.ready_line = ready;
        self.startup_log = lines;
    }

    /// The broker epoch this start of the broker registered with (cluster mode), from its
    /// start-up log.
    pub fn broker_epoch(&self) -> i64 {
        let line = self
            .startup_log
            .iter()
            .find(|l| l.contains("broker registered with the controller"))
            .expect("a registration line before the ready line");
        ready_field(line, "broker_epoch").and_then(|e| e.parse().ok()).expect("broker_epoch=")
    }

    fn spawn(&mut self) {
        self.launch_process();
        self.wait_ready();
    }

    fn launch_process(&mut self) {
        // Many brokers run at once: never the fixed default admin port.
        let admin: &[&str] = if self.args.iter().any(|a| a == "--admin-listen") {
            &[]
        } else {
            &["--admin-listen", "127.0.0.1:0"]
        };
        let listen = if self.args.iter().any(|a| a == "--listeners") {
            vec![]
        } else {
            vec!["--listen".to_string(), self.addr.to_string()]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("serve")
            .args(admin)
            .args(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--segment-prealloc-bytes", "1048576"])
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("strata binary runs");
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[strata] {line}");
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.log_lines = Some(lines_rx);
    }

    /// True while the process runs (not stopped or killed by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until the broker logs a line containing `needle` (fails after a timeout).
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        self.log_until(needle).pop().expect("the needle's line")
    }

    /// Every line the broker logs from now up to the first containing `needle`, included.
    pub fn log_until(&mut self, needle: &str) -> Vec<String> {
        let lines = self.log_lines.as_ref().unwrap();
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("broker never logged {needle:?}: {e}"),
            }
        }
    }

    /// SIGTERM, then wait for a clean exit (exit code 0).
    pub fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.unwrap().success());
        let status = child.wait().unwrap();
        assert!(status.success(), "broker exited with {status}");
    }

    /// Waits for the broker to exit on its own (after a signal sent with [`Broker::signal`]);
    /// its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("a running broker").wait().unwrap()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the running process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("a running broker");
        let sent =
            Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
        assert!(sent.unwrap().success());
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        self.spawn();
    }

    /// As [`Broker::restart`], without waiting for the ready line.
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        self.launch_process();
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The process id of the running broker.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running broker").id()
    }

    /// Every line the broker logged since the last call that read its log, without waiting.
    pub fn logged_so_far(&mut self) -> Vec<String> {
        let lines = self.log_lines.as_ref().unwrap();
        std::iter::from_fn(|| lines.try_recv().ok()).collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of `GET path` on the HTTP server at `addr` (panics unless 200 OK).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the admin listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

/// `{addr}` and `{free0}`..`{free9}` in `args` (see [`Broker::launch`]).
fn substitute_ports(addr: SocketAddr, args: Vec<String>) -> Vec<String> {
    let wanted = args.iter().any(|a| a.contains("{free"));
    let ports: Vec<u16> = if wanted { (0..10).map(|_| free_port()).collect() } else { vec![] };
    args.into_iter()
        .map(|arg| {
            let mut arg = arg.replace("{addr}", &addr.to_string());
            for (i, port) in ports.iter().enumerate() {
                arg = arg.replace(&format!("{{free{i}}}"), &port.to_string());
            }
            arg
        })
        .collect()
}

/// Brokers of one cluster on loopback (node ids 1..=n): controller voters, then observers.
pub struct Cluster {
    pub brokers: Vec<Broker>,
    /// The cluster secret every broker was given (`--cluster-secret`).
    pub secret: String,
    /// The controller listener of each broker, by node id - 1.
    pub controller_ports: Vec<u16>,
    /// `--controller-voters` as given to every broker.
    pub voters: String,
}

/// A fresh random cluster secret (32 hex digits).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cluster {
    /// Starts `n` brokers with data directories `dir/data<id>`, all voters, all at once
    /// (none is ready before a quorum is up), then waits for every ready line. `args` go to
    /// each broker.
    pub fn start(dir: &Path, n: usize, args: &[&str]) -> Cluster {
        Cluster::start_with_observers(dir, n, 0, args)
    }

    /// As [`Cluster::start`], with `observers` more brokers (ids after the voters') that
    /// are not controller voters.
    pub fn start_with_observers(
        dir: &Path,
        voters: usize,
        observers: usize,
        args: &[&str],
    ) -> Cluster {
        let n = voters + observers;
        let controller_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let voters: Vec<String> = controller_ports[..voters]
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect();
        let voters = voters.join(",");
        let secret = random_secret();
        let mut brokers: Vec<Broker> = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let id = (i + 1).to_string();
                let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
                let mut own = vec![
                    "--node-id".to_string(),
                    id.clone(),
                    "--controller-listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--controller-voters".into(),
                    voters.clone(),
                    "--cluster-secret".into(),
                    secret.clone(),
                ];
                own.extend(args.iter().map(|s| s.to_string()));
                Broker::launch(addr, dir.join(format!("data{id}")), own)
            })
            .collect();
        brokers.iter_mut().for_each(Broker::wait_ready);
        // Ready means registered itself; wait until every broker knows every other one.
        for broker in &brokers {
            let mut conn = Conn::connect(broker.addr);
            poll("every broker to be registered", || {
                let req = kafka_protocol::messages::MetadataRequest::default().with_topics(None);
                let ResponseKind::Metadata(r) =
                    conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
                else {
                    panic!("not a Metadata response")
                };
                (r.brokers.len() == n).then_some(())
            });
        }
        Cluster { brokers, secret, controller_ports, voters }
    }

    /// The broker with node id `id`.
    pub fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.brokers[(id - 1) as usize]
    }
}

/// Polls `check` until it gives a value or `POLL_TIMEOUT` passes (then panics with `what`).
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + POLL_TIMEOUT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        // Not a synchronisation sleep: a pause between polls of a condition with a deadline.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long [`poll`] waits.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The value of `key=value` in a text log line (up to the next space), unquoted.
pub fn ready_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let value = line[start..].split(' ').next()?;
    Some(value.trim_matches('"').to_owned())
}

/// A blocking raw Kafka connection.
pub struct Conn {
    pub stream: TcpStream,
    correlation: i32,
    /// The client id requests carry (`test` unless changed).
    pub client_id: &'static str,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn { stream, correlation: 0, client_id: "test" }
    }

    /// Connects from the local address `source`: another loopback address (127.0.0.2) is
    /// another host to the broker's ACLs.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Conn {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Conn { stream, correlation: 0, client_id: "test" }
    }

    /// The correlation id of the last request sent with [`Conn::call`].
    pub fn last_correlation_id(&self) -> i32 {
        self.correlation
    }

    /// Sends a request and returns its decoded response.
    pub fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let sent = self.send_requests(vec![(key, version, body)]);
        self.read_response(key, version, sent[0])
    }

    /// Sends requests in one write, without waiting for their answers (pipelined, as a
    /// client with requests in flight); returns their correlation ids, for
    /// [`Conn::read_response`].
    pub fn send_requests(&mut self, requests: Vec<(ApiKey, i16, RequestKind)>) -> Vec<i32> {
        let mut out = BytesMut::new();
        let mut ids = Vec::with_capacity(requests.len());
        for (key, version, body) in requests {
            self.correlation += 1;
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(self.correlation)
                .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
                    self.client_id,
                )));
            let mut frame = BytesMut::new();
            header.encode(&mut frame, key.request_header_version(version)).unwrap();
            body.encode(&mut frame, version).unwrap();
            out.put_i32(frame.len() as i32);
            out.put_slice(&frame);
            ids.push(self.correlation);
        }
        self.stream.write_all(&out).unwrap();
        ids
    }

    /// Reads the next response, which must answer the request with `correlation`.
    pub fn read_response(&mut self, key: ApiKey, version: i16, correlation: i32) -> ResponseKind {
        let mut response = self.read_frame().expect("a response");
        let header_version =
            if key == ApiKey::ApiVersions { 0 } else { key.response_header_version(version) };
        let header = ResponseHeader::decode(&mut response, header_version).unwrap();
        assert_eq!(header.correlation_id, correlation);
        ResponseKind::decode(key, &mut response, version).unwrap()
    }

    pub fn send_frame(&mut self, frame: &[u8]) {
        let mut out = BytesMut::with_capacity(frame.len() + 4);
        out.put_i32(frame.len() as i32);
        out.put_slice(frame);
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame; None when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True when the broker closed the connection (reads hit end of stream).
    pub fn is_closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    }
}

/// Builds one RecordBatch v2 holding `records` (key, value) with kafka-protocol's encoder.
pub fn batch(records: &[(&[u8], &[u8])]) -> Bytes {
    let records: Vec<_> = records.iter().map(|(k, v)| (Some(*k), *v)).collect();
    encode_batch(&records, (-1, -1, -1), false)
}

/// One batch from an idempotent producer: `values` with sequences `base_sequence..`.
pub fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    values: &[&[u8]],
) -> Bytes {
    let records: Vec<_> = values.iter().map(|v| (None, *v)).collect();
    encode_batch(&records, (producer_id, epoch, base_sequence), false)
}

/// One batch of a transactional producer: `values` with sequences `base_sequence..`.
pub fn transactional_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    values: &[&[u8]],
) -> Bytes {
    let records: Vec<_> = values.iter().map(|v| (None, *v)).collect();
    encode_batch(&records, (producer_id, epoch, base_sequence), true)
}

/// One batch of `(key, value)` records from `producer` = (id, epoch, first sequence), all -1
/// for a producer without idempotence; `transactional` sets the batch's transactional bit.
fn encode_batch(
    records: &[(Option<&[u8]>, &[u8])],
    producer: (i64, i16, i32),
    transactional: bool,
) -> Bytes {
    use kafka_protocol::records::*;
    let (producer_id, producer_epoch, base_sequence) = producer;
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: k.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
    out.freeze()
}

/// Every whole batch stored in the `.log` segment files of `data_dir`'s `topic`-`partition`, in
/// order, as the bytes on disk (what a follower must hold verbatim). Stops at a segment's
/// zeroed, preallocated tail.
pub fn log_bytes(data_dir: &Path, topic: &str, partition: i32) -> Vec<u8> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "log"));
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let data = std::fs::read(file).unwrap();
        let mut pos = 0;
        while pos + 12 <= data.len() {
            let length = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap());
            if length <= 0 || pos + 12 + length as usize > data.len() {
                break;
            }
            out.extend_from_slice(&data[pos..pos + 12 + length as usize]);
            pos += 12 + length as usize;
        }
    }
    out
}

/// Every (offset, value) of partition 0 of `topic` from `from` on, fetch after fetch until
/// one returns nothing.
pub fn fetch_all(conn: &mut Conn, topic: &str, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
    loop {
        let offset = out.last().map_or(from, |(o, _)| o + 1);
        let data = fetch_one(conn, topic, 0, offset);
        assert_eq!(data.error_code, 0, "fetch at {offset}");
        let fetched = records(&data.records.unwrap_or_default());
        if fetched.is_empty() {
            return out;
        }
        out.extend(fetched.into_iter().filter(|(o, _, _)| *o >= offset).map(|(o, _, v)| (o, v)));
    }
}

/// Decodes every record in fetched record data: (offset, key, value).
pub fn records(data: &Bytes) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let mut buf = data.clone();
    let mut out = Vec::new();
    while buf.remaining() > 0 {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        for r in set.records {
            let key = r.key.map(|k| k.to_vec()).unwrap_or_default();
            let value = r.value.map(|v| v.to_vec()).unwrap_or_default();
            out.push((r.offset, key, value));
        }
    }
    out
}

fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(s.into()))
}

/// CreateTopics v7; asserts success and returns the topic id.
pub fn create_topic(conn: &mut Conn, name: &str, partitions: i32) -> uuid::Uuid {
    use kafka_protocol::messages::*;
    let t = create_topics_request::CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1);
    let req = CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000);
    let ResponseKind::CreateTopics(r) =
        conn.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
    else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    assert_eq!(r.topics[0].num_partitions, partitions);
    r.topics[0].topic_id
}

/// Produce v9 of one batch to one partition: (error code, base offset).
pub fn produce(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> (i16, i64) {
    use kafka_protocol::messages::*;
    let data = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(records));
    let topic = produce_request::TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![data]);
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![topic]);
    let ResponseKind::Produce(r) = conn.call(ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetch v12 of one partition from `offset`, without waiting.
pub fn fetch_one(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
    offset: i64,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    fetch_at(conn, 12, topic, partition, offset)
}

/// Fetch of one partition from `offset` at `version` (4..=12: topics by name), without
/// waiting.
pub fn fetch_at(
    conn: &mut Conn,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    use kafka_protocol::messages::*;
    let p = fetch_request::FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20);
    let t =
        fetch_request::FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![p]);
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![t]);
    let ResponseKind::Fetch(r) = conn.call(ApiKey::Fetch, version, RequestKind::Fetch(req)) else {
        panic!("not a Fetch response")
    };
    r.responses[0].partitions[0].clone()
}

// ---- clusters ------------------------------------------------------------------------

/// CreateTopics v7 of one topic: (error code, message).
pub fn create(conn: &mut Conn, topic: &str, partitions: i32, factor: i16) -> (i16, Option<String>) {
    create_with(conn, topic, partitions, factor, &[])
}

/// CreateTopics v7 of one topic with config overrides: (error code, message).
pub fn create_with(
    conn: &mut Conn,
    topic: &str,
    partitions: i32,
    factor: i16,
    configs: &[(&str, &str)],
) -> (i16, Option<String>) {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(kafka_protocol::protocol::StrBytes::from_string(k.to_string()))
                .with_value(Some(kafka_protocol::protocol::StrBytes::from_string(v.to_string())))
        })
        .collect();
    let t = kafka_protocol::messages::create_topics_request::CreatableTopic::default()
        .with_configs(configs)
        .with_name(topic_name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(factor);
    let req = kafka_protocol::messages::CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(30_000);
    let ResponseKind::CreateTopics(r) =
        conn.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
    else {
        panic!("not a CreateTopics response")
    };
    let t = &r.topics[0];
    (t.error_code, t.error_message.as_ref().filter(|_| t.error_code != 0).map(|m| m.to_string()))
}

pub fn metadata(conn: &mut Conn) -> kafka_protocol::messages::MetadataResponse {
    let req = kafka_protocol::messages::MetadataRequest::default().with_topics(None);
    let ResponseKind::Metadata(r) = conn.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
    else {
        panic!("not a Metadata response")
    };
    r
}

/// (partition, leader, replicas, isr) of `topic`, sorted by partition; None if unknown.
pub type Layout = Vec<(i32, i32, Vec<i32>, Vec<i32>)>;

pub fn layout(conn: &mut Conn, topic: &str) -> Option<Layout> {
    let r = metadata(conn);
    let t = r.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))?;
    let mut parts: Layout = t
        .partitions
        .iter()
        .map(|p| {
            let ids = |v: &Vec<kafka_protocol::messages::BrokerId>| {
                v.iter().map(|b| b.0).collect::<Vec<i32>>()
            };
            (p.partition_index, p.leader_id.0, ids(&p.replica_nodes), ids(&p.isr_nodes))
        })
        .collect();
    parts.sort();
    Some(parts)
}

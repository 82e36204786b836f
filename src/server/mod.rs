//! The broker: one shard per core, each accepting connections and owning partitions.
//!
//! [`serve`] starts the shards, wires the mesh between them, and returns once all of them
//! have shut down. Shard 0 bootstraps cluster metadata from the data directory and publishes
//! it before any shard accepts a connection; it also serves the admin HTTP listener
//! ([`admin_http`]).
//!
//! Shutdown (SIGINT/SIGTERM): every shard stops accepting, stops reading requests, waits up
//! to `shutdown_timeout_ms` for the responses already in flight, waits for every other shard
//! to get there too (their requests may still read its partitions), then flushes and closes
//! its logs. A watchdog exits the process with an error if that has not finished some seconds
//! after the timeout; a second signal exits at once.

pub mod access;
pub mod admin_http;
#[doc(hidden)]
pub mod bench_api;
pub mod budget;
mod conn_limits;
mod connection;
mod fetcher;
mod frame_reader;
pub mod handlers;
pub mod mesh;
pub mod peer;
pub mod replica;
mod router;
pub mod session;
pub mod shard;
pub mod share;
pub mod share_state;
mod transport;
pub mod txn;

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;
use futures::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;

use crate::config::{self, limits, BrokerConfig};
use crate::controller::{self, quorum, ClusterMetadata};
use crate::runtime::{self, PoolOptions};
use crate::security::tls::BrokerTls;
use admin_http::Health;
use conn_limits::{ConnLimits, Refusal};
use mesh::Envelope;
use shard::Shard;

/// Name of the lock file that keeps two brokers off one data directory.
const LOCK_FILE: &str = ".lock";
/// How long past `shutdown_timeout_ms` closing the logs may take before the watchdog exits.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// Runs a broker until SIGINT or SIGTERM.
pub fn serve(mut config: BrokerConfig, pool: PoolOptions) -> anyhow::Result<()> {
    budget::fix_allocator_thresholds();
    config.validate()?;
    config.sasl.read_bootstrap_user_file()?;
    // A JWKS file that cannot be read or parsed stops start-up here, naming the file.
    handlers::sasl::load_config(&config.sasl).map_err(|e| anyhow::anyhow!("SASL settings: {e}"))?;
    let tls = load_tls(&config)?;
    let controller_tls = load_controller_tls(&config)?;
    let admin_guard = admin_http::AdminGuard::load(&config)?;
    start_reloads(&config, &tls, &controller_tls, &admin_guard)?;
    // glommio opens directories with no base fd, so a relative path fails with EBADF.
    config.data_dir = std::path::absolute(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("data directory {}: {e}", config.data_dir.display()))?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let count = runtime::placement(&pool)?.len();
    resolve_memory_budget(&mut config, count);
    let mesh: MeshBuilder<Envelope, Full> = MeshBuilder::full(count, limits::MESH_CHANNEL_CAPACITY);
    let admin = bind_admin(&config)?;
    wait_for_client_addresses(&config)?;
    let (quorum, updates) = match start_controller(&config, controller_tls)? {
        Some(started) => (Some(started.handle), Some(started.updates)),
        None => (None, None),
    };
    let updates = Arc::new(Mutex::new(updates));
    let stops = shutdown_on_signals(count, Duration::from_millis(config.shutdown_timeout_ms))?;
    let limits = ConnLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
        &config.max_connections_per_ip_overrides,
    );
    let config = Arc::new(config);
    let health = Arc::new(Health::new(count));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        shards = count,
        listeners = %listener_list(&config),
        admin = %admin_address(&admin),
        data_dir = %config.data_dir.display(),
        "starting strata"
    );
    let admin = Arc::new(Mutex::new(admin));
    runtime::run_shards(&pool, move |index, _count| {
        let stop = stops.lock().ok().and_then(|mut s| s.get_mut(index).and_then(Option::take));
        let admin = if index == 0 { admin.lock().ok().and_then(|mut a| a.take()) } else { None };
        let updates =
            if index == 0 { updates.lock().ok().and_then(|mut u| u.take()) } else { None };
        let start = ShardStart {
            config: config.clone(),
            tls: tls.clone(),
            health: health.clone(),
            admin,
            admin_guard: admin_guard.clone(),
            stop,
            quorum: quorum.clone(),
            updates,
            limits: limits.clone(),
        };
        let main = shard_main(start, mesh.clone());
        async move {
            let result = main.await;
            if let Err(e) = &result {
                // The other shards would wait for this one forever: stop them all, cleanly.
                tracing::error!(shard = index, "shard failed: {e:#}; stopping the broker");
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
            }
            result
        }
    })?;
    tracing::info!("strata stopped cleanly");
    Ok(())
}

/// Loads the TLS certificates when a listener uses TLS (a bad file fails start-up).
fn load_tls(config: &BrokerConfig) -> anyhow::Result<Option<Arc<BrokerTls>>> {
    if !config.listeners.iter().any(|l| l.protocol.uses_tls()) {
        return Ok(None);
    }
    let tls = BrokerTls::load(&config.ssl).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    Ok(Some(Arc::new(tls)))
}

/// In a cluster whose inter-broker listener uses TLS, the controller port's TLS: the same
/// certificates and CA, with client certificates always required (a peer controller is a
/// broker, and brokers present theirs).
fn load_controller_tls(config: &BrokerConfig) -> anyhow::Result<Option<Arc<BrokerTls>>> {
    if !config.is_clustered() || !config.inter_broker().protocol.uses_tls() {
        return Ok(None);
    }
    let ssl = config::SslConfig {
        client_auth: config::listener::ClientAuth::Required,
        ..config.ssl.clone()
    };
    let tls = BrokerTls::load(&ssl).map_err(|e| anyhow::anyhow!("controller TLS: {e}"))?;
    Ok(Some(Arc::new(tls)))
}

/// One thing the reload thread keeps current: its name in log lines, and how to reload it
/// (`true`: now, on SIGHUP; `false`: if its files changed). `Ok(true)` when reloaded.
type Reload = (&'static str, Box<dyn Fn(bool) -> Result<bool, String> + Send>);

fn tls_reload(what: &'static str, tls: &Arc<BrokerTls>) -> Reload {
    let tls = tls.clone();
    let reload = move |now: bool| {
        let result = if now { tls.reload().map(|()| true) } else { tls.reload_if_changed() };
        result.map_err(|e| e.to_string())
    };
    (what, Box::new(reload))
}

/// Starts the thread that reloads certificates and admin tokens when their files change
/// (every `ssl_reload_check_ms`) or on SIGHUP, if there is anything to reload.
fn start_reloads(
    config: &BrokerConfig,
    tls: &Option<Arc<BrokerTls>>,
    controller_tls: &Option<Arc<BrokerTls>>,
    admin: &admin_http::AdminGuard,
) -> anyhow::Result<()> {
    let mut reloads: Vec<Reload> = Vec::new();
    if let Some(tls) = tls {
        reloads.push(tls_reload("TLS certificates", tls));
    }
    if let Some(tls) = controller_tls {
        reloads.push(tls_reload("controller TLS certificates", tls));
    }
    if let Some(tls) = &admin.tls {
        reloads.push(tls_reload("admin TLS certificates", tls));
    }
    if let Some(auth) = admin.auth.clone() {
        let reload = move |now: bool| if now { auth.reload() } else { auth.reload_if_changed() };
        reloads.push(("admin tokens", Box::new(reload)));
    }
    if reloads.is_empty() {
        return Ok(());
    }
    let hangup = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())?;
    let check_ms = config.ssl.reload_check_ms;
    std::thread::Builder::new().name("strata-tls-reload".into()).spawn(move || {
        let tick = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        loop {
            std::thread::sleep(tick);
            waited += tick;
            let due = check_ms > 0 && waited >= Duration::from_millis(check_ms);
            let signalled = hangup.swap(false, std::sync::atomic::Ordering::Relaxed);
            if !due && !signalled {
                continue;
            }
            waited = Duration::ZERO;
            for (what, reload) in &reloads {
                match reload(signalled) {
                    Ok(true) => tracing::info!("{what} reloaded; new connections use them"),
                    Ok(false) => {}
                    Err(e) => tracing::error!("{what} not reloaded, the old ones stay: {e}"),
                }
            }
        }
    })?;
    Ok(())
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    file.try_lock()
        .map_err(|_| anyhow::anyhow!("{} is in use by another strata process", dir.display()))?;
    Ok(file)
}

/// Resolves the memory budget (`queued_max_request_bytes`, or a quarter of the machine's
/// memory) into the config, so every shard takes its even part of the same figure.
fn resolve_memory_budget(config: &mut BrokerConfig, shards: usize) {
    let machine = budget::machine_memory_bytes();
    let total = config.memory_budget_bytes(machine);
    config.queued_max_request_bytes = Some(total);
    let per_shard = budget::Budget::new(total / shards.max(1));
    let largest = per_shard.grant_bytes_max();
    tracing::info!(
        budget_bytes = total,
        per_shard_bytes = per_shard.capacity(),
        machine_bytes = machine.unwrap_or(0),
        "memory budget for requests and responses (queued-max-request-bytes)"
    );
    if largest < config.max_request_bytes {
        tracing::warn!(
            max_request_bytes = config.max_request_bytes,
            largest,
            "the memory budget per shard admits no request larger than {largest} bytes; \
             larger ones close their connection (raise queued-max-request-bytes)"
        );
    }
}

/// A listening TCP socket with SO_REUSEADDR, so a restart right after a crash binds even
/// while connections of the old process linger (FIN_WAIT, TIME_WAIT); with SO_REUSEPORT too
/// when every shard listens on the address (which also lets it bind next to the listener a
/// killed process still holds for a moment, see [`bind_exclusive`]).
fn bind_listener(address: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if address.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Pending connections the kernel queues per listener before they are accepted.
const LISTEN_BACKLOG: i32 = 1024;
/// How long binding the admin or controller listener is retried while the address is in use.
const BIND_RETRY_FOR: Duration = Duration::from_secs(2);

/// [`bind_listener`] without SO_REUSEPORT (one process owns the address), retried for
/// [`BIND_RETRY_FOR`] while the address is in use: a process killed a moment ago still holds
/// its listeners for tens of milliseconds (its io_uring instance, which references them, is
/// torn down after the process is reaped), and SO_REUSEADDR does not let a socket bind next to
/// one still listening. A port another process keeps using fails after the retries.
fn bind_exclusive(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let started = std::time::Instant::now();
    loop {
        match bind_listener(address, false) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if started.elapsed() >= BIND_RETRY_FOR {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Waits, on the main thread, until no other socket listens on a client listener's address.
/// The shards bind it with SO_REUSEPORT, which would let them bind beside the listeners of a
/// broker that stopped a moment ago and that the kernel has not closed yet (its io_uring
/// instance still holds them): the kernel then hands some new connections to those dying
/// listeners, and the clients see the connection reset right after the new broker said it was
/// ready (tests/sasl.rs's restart saw it once). An exclusive bind, dropped at once, succeeds
/// only when they are gone; a port that another process keeps using fails start-up here, named,
/// instead of the two brokers sharing its connections.
fn wait_for_client_addresses(config: &BrokerConfig) -> anyhow::Result<()> {
    for listener in config.listeners.iter().filter(|l| l.bind.port() != 0) {
        drop(bind_exclusive(listener.bind).map_err(|e| {
            anyhow::anyhow!("binding listener {} ({}): {e}", listener.name, listener.bind)
        })?);
    }
    Ok(())
}

/// Binds the admin listener here, on the main thread, so a bad or busy address fails start-up
/// with a clear message before any shard starts.
fn bind_admin(config: &BrokerConfig) -> anyhow::Result<Option<std::net::TcpListener>> {
    let Some(address) = config.admin_listen else {
        return Ok(None);
    };
    let listener = bind_exclusive(address)
        .map_err(|e| anyhow::anyhow!("binding the admin listener (admin-listen) {address}: {e}"))?;
    Ok(Some(listener))
}

/// In a cluster, binds the controller listener (here, so a busy port fails start-up with a
/// message naming the setting) and starts the controller thread.
fn start_controller(
    config: &BrokerConfig,
    tls: Option<Arc<BrokerTls>>,
) -> anyhow::Result<Option<quorum::Started>> {
    let Some(address) = config.controller_listen.filter(|_| config.is_clustered()) else {
        return Ok(None);
    };
    let listener = bind_exclusive(address).map_err(|e| {
        anyhow::anyhow!("binding the controller listener (controller-listen) {address}: {e}")
    })?;
    tracing::info!(
        node_id = config.node_id,
        controller = %address,
        voters = config.controller_voters.len(),
        role = if config.is_voter() { "voter" } else { "observer" },
        transport = if tls.is_some() { "mTLS" } else { "TCP" },
        "starting the controller"
    );
    Ok(Some(quorum::start(config, listener, tls)?))
}

fn admin_address(admin: &Option<std::net::TcpListener>) -> String {
    match admin {
        Some(listener) => listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        None => "off".into(),
    }
}

/// A std listener as a glommio one (shard 0 serves it).
fn into_glommio(listener: std::net::TcpListener) -> TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is a listening TCP socket whose ownership `into_raw_fd` just gave up; the
    // glommio listener becomes its only owner.
    #[allow(unsafe_code)]
    unsafe {
        TcpListener::from_raw_fd(fd)
    }
}

/// CPU shares of the retention/compaction task queue (the default queue has 1000).
const HOUSEKEEPING_SHARES: usize = 100;

type Stops = Arc<Mutex<Vec<Option<oneshot::Receiver<()>>>>>;

/// A thread that turns the first SIGINT/SIGTERM into a stop message for every shard, and a
/// second one into an immediate exit. After the first, a watchdog exits the process if it
/// has not stopped within `timeout` plus [`CLOSE_GRACE`].
fn shutdown_on_signals(count: usize, timeout: Duration) -> anyhow::Result<Stops> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| oneshot::channel()).unzip();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut senders = Some(senders);
        for signal in signals.forever() {
            match senders.take() {
                Some(senders) => {
                    tracing::info!(
                        signal,
                        "shutting down: draining connections, then closing logs"
                    );
                    senders.into_iter().for_each(|s| {
                        let _ = s.send(());
                    });
                    start_watchdog(timeout + CLOSE_GRACE);
                }
                None => {
                    tracing::warn!(signal, "second signal: exiting without a clean shutdown");
                    std::process::exit(130);
                }
            }
        }
    })?;
    Ok(Arc::new(Mutex::new(receivers.into_iter().map(Some).collect())))
}

fn start_watchdog(limit: Duration) {
    let spawned = std::thread::Builder::new().name("shutdown-watchdog".into()).spawn(move || {
        std::thread::sleep(limit);
        tracing::error!(seconds = limit.as_secs(), "shutdown did not finish in time; exiting");
        std::process::exit(1);
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the shutdown watchdog: {e}");
    }
}

/// What one shard starts with.
struct ShardStart {
    config: Arc<BrokerConfig>,
    /// The broker's TLS state, when a listener uses TLS.
    tls: Option<Arc<BrokerTls>>,
    health: Arc<Health>,
    /// The admin listener, for shard 0 when enabled.
    admin: Option<std::net::TcpListener>,
    /// Its TLS and tokens.
    admin_guard: admin_http::AdminGuard,
    stop: Option<oneshot::Receiver<()>>,
    /// The controller quorum, in a cluster.
    quorum: Option<quorum::QuorumHandle>,
    /// Shard 0 in a cluster: the metadata the controller applies.
    updates: Option<Updates>,
    /// The broker-wide connection limits.
    limits: Arc<ConnLimits>,
}

type Updates = futures::channel::mpsc::UnboundedReceiver<Arc<ClusterMetadata>>;

async fn shard_main(start: ShardStart, mesh: MeshBuilder<Envelope, Full>) -> anyhow::Result<()> {
    let ShardStart { config, tls, health, admin, admin_guard, stop, quorum, updates, limits } =
        start;
    // Counts this shard as drained however it ends (an early error or stop included), so that
    // no other shard waits for it past its end.
    let mut drained = Drained { health: health.clone(), done: false };
    let (senders, mut receivers) =
        mesh.join().await.map_err(|_| anyhow::anyhow!("joining the shard mesh failed"))?;
    let id = senders.peer_id();
    // Before any other DmaFile is opened on this thread (a glommio 0.9 probe bug, see there).
    crate::storage::prime_dma_probe(&config.data_dir).await?;
    let count = senders.nr_consumers();
    if config.inter_broker().protocol.uses_tls() {
        peer::use_tls(tls.clone());
    }
    let (ready, is_ready) = oneshot::channel();
    let shard = Rc::new(Shard::new(id, count, config.clone(), senders, ready, quorum));
    shard.init();
    *shard.conn_limits.borrow_mut() = Some(limits.clone());
    for (_peer, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                shard.on_message(msg);
            }
        })
        .detach();
    }
    let admin_address = admin_address(&admin);
    if let Some(listener) = admin {
        let listener = into_glommio(listener);
        let serving = admin_http::serve(shard.clone(), health.clone(), listener, admin_guard);
        glommio::spawn_local(serving).detach();
    }
    let stop = async move {
        match stop {
            Some(stop) => drop(stop.await),
            None => futures::future::pending().await,
        }
    };
    futures::pin_mut!(stop);
    glommio::spawn_local(shard.clone().watch_free_space()).detach();
    if let Some(updates) = updates {
        bootstrap_cluster(&shard, updates).await?;
        handlers::sasl::ensure_bootstrap_user(&shard).await?;
    } else if id == 0 {
        bootstrap(&shard).await?;
        handlers::sasl::ensure_bootstrap_user(&shard).await?;
    } else {
        match futures::future::select(is_ready, stop.as_mut()).await {
            futures::future::Either::Left((Ok(()), _)) => {}
            futures::future::Either::Left((Err(_), _)) => {
                anyhow::bail!("shard {id} never received cluster metadata")
            }
            futures::future::Either::Right(_) => {
                drained.mark();
                shard.close_logs().await;
                return Ok(());
            }
        }
    }
    if id == 0 {
        shard.prepare_producer_ids().await;
    }
    let background = glommio::executor().create_task_queue(
        glommio::Shares::Static(HOUSEKEEPING_SHARES),
        glommio::Latency::NotImportant,
        "housekeeping",
    );
    glommio::spawn_local_into(shard.clone().housekeeping(), background)
        .map_err(|e| anyhow::anyhow!("spawning housekeeping: {e}"))?
        .detach();
    glommio::spawn_local(shard.txns.clone().run_periodic(shard.clone())).detach();
    glommio::spawn_local(shard.clone().replication_upkeep()).detach();
    let trimming = budget::trim_when_released(shard.budget.clone());
    glommio::spawn_local_into(trimming, background)
        .map_err(|e| anyhow::anyhow!("spawning the memory trimmer: {e}"))?
        .detach();
    let mut sockets = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let socket = bind_listener(listener.bind, true).map(into_glommio).map_err(|e| {
            anyhow::anyhow!("binding listener {} ({}): {e}", listener.name, listener.bind)
        })?;
        sockets.push((Rc::new(transport::Accepting::new(listener, &tls)), socket));
    }
    health.shard_ready();
    if id == 0 {
        let inter_broker = config.inter_broker();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            node_id = config.node_id,
            shards = count,
            listen = %inter_broker.bind,
            advertised = %config::listener::host_port(
                &inter_broker.advertised_host,
                inter_broker.advertised_port
            ),
            listeners = %listener_list(&config),
            protocols = %protocol_map(&config),
            admin = %admin_address,
            data_dir = %config.data_dir.display(),
            "strata ready"
        );
    }
    let gate = glommio::sync::Gate::new();
    let accepting =
        sockets.iter().map(|(on, socket)| accept_loop(&shard, on, socket, &gate, &limits));
    let accepting = futures::future::join_all(accepting);
    futures::future::select(Box::pin(accepting), stop).await;
    health.start_draining();
    drop(sockets);
    drain(&shard, &gate).await;
    drained.mark();
    // Until every shard has drained, a connection of another shard may still forward a
    // request here (a fetch's read or wait, a produce): this shard keeps serving its logs
    // rather than close them and stop, which would leave that request unanswered and its
    // shard waiting until the shutdown timeout.
    while !health.drained() {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    shard.close_logs().await;
    if id == 0 {
        tracing::info!("logs closed");
    }
    Ok(())
}

/// How often a drained shard looks whether every other shard has drained too.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// Marks its shard drained in the broker's [`Health`] once: by [`Drained::mark`], or when
/// the shard's main future ends or is dropped without it.
struct Drained {
    health: Arc<Health>,
    done: bool,
}

impl Drained {
    fn mark(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.health.shard_drained();
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        self.mark();
    }
}

/// Stops every connection from reading requests and waits, up to `shutdown_timeout_ms`, for
/// the responses already in flight to be written.
async fn drain(shard: &Rc<Shard>, gate: &glommio::sync::Gate) {
    shard.draining.close();
    let timeout = Duration::from_millis(shard.config.shutdown_timeout_ms);
    let closed = gate.close();
    let expired = glommio::timer::sleep(timeout);
    futures::pin_mut!(closed, expired);
    if let futures::future::Either::Right(_) = futures::future::select(closed, expired).await {
        let open = shard.connections.get();
        tracing::warn!(shard = shard.id, open, "connections still busy at the shutdown timeout");
    }
}

/// Shard 0 at start-up: load (or create) metadata, drop logs of deleted topics, publish.
async fn bootstrap(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let data_dir = &shard.config.data_dir;
    let mut meta = controller::load(data_dir)?.unwrap_or_else(ClusterMetadata::new_cluster);
    let folded = meta.fold_shards(shard.count);
    if folded > 0 {
        tracing::warn!(partitions = folded, "partitions of missing shards moved to existing ones");
    }
    if !meta.topics.contains_key(crate::group::OFFSETS_TOPIC) {
        meta = create_offsets_topic(&meta, shard)?;
    }
    if !meta.topics.contains_key(crate::txn::TXN_TOPIC) {
        meta = create_internal_topic(&meta, shard, crate::txn::TXN_TOPIC, TXN_PARTITIONS)?;
    }
    if !meta.topics.contains_key(crate::share::STATE_TOPIC) {
        let partitions = crate::share::STATE_TOPIC_PARTITIONS;
        meta = create_internal_topic(&meta, shard, crate::share::STATE_TOPIC, partitions)?;
    }
    remove_orphan_partitions(data_dir, &meta);
    controller::store_at_start(data_dir, &meta).await?;
    shard.publish(Arc::new(meta)).await;
    Ok(())
}

/// Partitions of `__transaction_state`.
const TXN_PARTITIONS: i32 = crate::txn::TXN_TOPIC_PARTITIONS;

/// Shard 0 in a cluster: once this start of the broker has registered and its metadata is
/// at least as new as that registration, publishes it and everything the controller applies
/// from then on. Until then nothing is published: after a restart the local controller log
/// may be behind, and its leaders stale (as KRaft brokers, which wait until they caught up
/// with the metadata log before they serve partitions).
async fn bootstrap_cluster(shard: &Rc<Shard>, mut updates: Updates) -> anyhow::Result<()> {
    let quorum = shard.quorum.clone().ok_or_else(|| anyhow::anyhow!("no controller"))?;
    let mut latest: Option<Arc<ClusterMetadata>> = None;
    loop {
        if let (Some(index), Some(meta)) = (quorum.registered_index(), &latest) {
            if meta.version >= index {
                shard.publish_replicated(meta).await;
                break;
            }
        }
        // The registration may be marked after its update arrived: look again now and then.
        let next = updates.next();
        let tick = glommio::timer::sleep(Duration::from_millis(20));
        match futures::future::select(next, std::pin::pin!(tick)).await {
            futures::future::Either::Left((Some(meta), _)) => latest = Some(meta),
            futures::future::Either::Left((None, _)) => {
                anyhow::bail!("the controller stopped before this broker was registered")
            }
            futures::future::Either::Right(_) => {}
        }
    }
    // Held until the import is done, so an imported __consumer_offsets wins.
    let creating = Rc::new(std::cell::Cell::new(true));
    let (pump, pump_creating) = (shard.clone(), creating.clone());
    glommio::spawn_local(async move {
        while let Some(meta) = updates.next().await {
            pump.publish_replicated(&meta).await;
            ensure_internal_topics(&pump, &pump_creating);
        }
    })
    .detach();
    import_single_broker_topics(shard).await?;
    creating.set(false);
    ensure_internal_topics(shard, &creating);
    Ok(())
}

/// A data directory that a single broker used (it has `metadata.json`) joins a cluster with
/// its topics: each is imported through the controller with this broker as its only replica,
/// keeping its id, partitions, configs and logs (including `__consumer_offsets`, so committed
/// offsets survive, unless the cluster already has one). The file is then renamed to
/// `metadata.json.imported`, so this happens once; a failure stops start-up and is retried
/// at the next start.
async fn import_single_broker_topics(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let data_dir = &shard.config.data_dir;
    let Some(old) = controller::load(data_dir)? else {
        return Ok(());
    };
    let node = shard.config.node_id;
    import_single_broker_users(shard, &old).await;
    for topic in old.topics.into_values() {
        let name = topic.name.clone();
        let id = topic.id;
        let command = controller::placement::Command::ImportTopic { topic, broker: node };
        match shard.control_command(command).await {
            Ok(()) => {
                tracing::info!(topic = %name, "imported a single-broker topic into the cluster")
            }
            Err(e) if shard.meta().topics.get(&name).is_some_and(|t| t.id == id) => {
                tracing::info!(topic = %name, "already imported: {e}")
            }
            Err(e) => tracing::warn!(topic = %name, "not imported, its logs are ignored: {e}"),
        }
    }
    let from = data_dir.join(controller::METADATA_FILE);
    let to = data_dir.join(format!("{}.imported", controller::METADATA_FILE));
    std::fs::rename(&from, &to).map_err(|e| anyhow::anyhow!("renaming {}: {e}", from.display()))?;
    Ok(())
}

/// The SCRAM users of a single broker's metadata.json that the cluster does not have yet
/// (a user the cluster knows keeps the cluster's credentials).
async fn import_single_broker_users(shard: &Rc<Shard>, old: &ClusterMetadata) {
    use controller::users::ScramChange;
    for (user, credentials) in &old.users {
        if shard.meta().users.contains_key(user) {
            continue;
        }
        let changes = credentials
            .iter()
            .map(|(m, c)| ScramChange::Upsert { mechanism: *m, credential: c.clone() })
            .collect();
        let command =
            controller::placement::Command::AlterScramCredentials { user: user.clone(), changes };
        match shard.control_command(command).await {
            Ok(()) => tracing::info!(user = %user, "imported a single-broker SCRAM user"),
            Err(e) => tracing::warn!(user = %user, "SCRAM user not imported: {e}"),
        }
    }
}

/// In a cluster, the internal topics (`__consumer_offsets`, `__transaction_state`) are created
/// once every voter has registered (so that their partitions spread over at least all of
/// them), by whichever broker gets there first.
fn ensure_internal_topics(shard: &Rc<Shard>, creating: &Rc<std::cell::Cell<bool>>) {
    let meta = shard.meta();
    let registered = meta.brokers.len();
    let wanted = [
        (crate::group::OFFSETS_TOPIC, shard.config.offsets_topic_partitions),
        (crate::txn::TXN_TOPIC, TXN_PARTITIONS),
        (crate::share::STATE_TOPIC, crate::share::STATE_TOPIC_PARTITIONS),
    ];
    let missing: Vec<(&'static str, i32)> =
        wanted.into_iter().filter(|(name, _)| !meta.topics.contains_key(*name)).collect();
    let voters_registered =
        shard.config.controller_voters.iter().all(|v| meta.brokers.contains_key(&v.id));
    if missing.is_empty() || !voters_registered || creating.replace(true) {
        return;
    }
    let (shard, creating) = (shard.clone(), creating.clone());
    glommio::spawn_local(async move {
        for (name, partitions) in missing {
            let op = mesh::ControlOp::CreateTopic {
                name: name.to_owned(),
                partitions,
                replication_factor: registered.min(3) as i32,
                configs: internal_topic_configs(),
                assignment: Vec::new(),
                validate_only: false,
            };
            match shard.control(op).await {
                Ok(()) => tracing::info!("created the internal topic {name}"),
                Err(e) if e.code == crate::protocol::ResponseError::TopicAlreadyExists.code() => {}
                Err(e) => tracing::warn!("creating {name}: {e}; will retry"),
            }
        }
        creating.set(false);
    })
    .detach();
}

/// Configs of the internal topics: compacted, 100 MiB segments.
fn internal_topic_configs() -> std::collections::BTreeMap<String, String> {
    [("cleanup.policy", "compact"), ("segment.bytes", "104857600")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `__consumer_offsets`, compacted, with `--offsets-topic-partitions` partitions.
fn create_offsets_topic(meta: &ClusterMetadata, shard: &Shard) -> anyhow::Result<ClusterMetadata> {
    let partitions = shard.config.offsets_topic_partitions;
    create_internal_topic(meta, shard, crate::group::OFFSETS_TOPIC, partitions)
}

/// An internal topic (single broker), compacted, with 100 MiB segments.
fn create_internal_topic(
    meta: &ClusterMetadata,
    shard: &Shard,
    name: &str,
    partitions: i32,
) -> anyhow::Result<ClusterMetadata> {
    let configs = internal_topic_configs();
    let next = meta
        .create_topic(name, partitions, configs, shard.count)
        .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    tracing::info!(partitions, "created the internal topic {name}");
    Ok(next)
}

/// Deletes partition directories that no topic in `meta` owns (left by a crash during a
/// topic deletion).
fn remove_orphan_partitions(data_dir: &Path, meta: &ClusterMetadata) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<i32>() else {
            continue;
        };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || controller::validate_topic_name(topic).is_err() {
            continue;
        }
        if meta.partition(topic, partition).is_none() {
            tracing::warn!(dir = %name, "removing the log of a deleted partition");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::error!(dir = %name, "cannot remove: {e}");
            }
        }
    }
}

/// `NAME://host:port,...` of every listener's bind address, for the logs.
fn listener_list(config: &BrokerConfig) -> String {
    let items: Vec<String> =
        config.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect();
    items.join(",")
}

/// `NAME:PROTOCOL,...` of every listener, for the logs.
fn protocol_map(config: &BrokerConfig) -> String {
    let items: Vec<String> =
        config.listeners.iter().map(|l| format!("{}:{}", l.name, l.protocol)).collect();
    items.join(",")
}

/// Accepts connections on one listener (`on`) until the shard drains.
async fn accept_loop(
    shard: &Rc<Shard>,
    on: &Rc<transport::Accepting>,
    listener: &TcpListener,
    gate: &glommio::sync::Gate,
    limits: &Arc<ConnLimits>,
) {
    let mut sequence: u64 = 0;
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                crate::log_limited!(WARN, shard = shard.id, "accept failed: {e}");
                // Out of file descriptors and the like: back off instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => continue,
        };
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(Refusal::Broker { limit }) => {
                let (why, open) = ("too many connections on this broker; closing", limits.open());
                crate::refused!(WARN, "max_connections", %peer, limit, open, "{why}");
                continue;
            }
            Err(Refusal::PerIp { limit }) => {
                let why = "too many connections from this address; closing";
                crate::refused!(WARN, "max_connections_per_ip", %peer, limit, "{why}");
                continue;
            }
        };
        sequence += 1;
        let id = format_args!("{}.{sequence}", shard.id);
        let span = tracing::info_span!("conn", %id, %peer, listener = %on.name);
        let Ok(pass) = gate.enter() else {
            return; // draining
        };
        shard.connections.set(shard.connections.get() + 1);
        let (shard, on) = (shard.clone(), on.clone());
        let serving = async move {
            // A panic in the connection (its reader, a request being started) closes it only.
            let served = transport::serve(shard.clone(), stream, peer, &on);
            let _ = crate::runtime::contain::contained("a client connection", served).await;
            shard.connections.set(shard.connections.get() - 1);
            shard.budget.connection_closed();
            drop(slot);
            drop(pass);
        };
        glommio::spawn_local(tracing::Instrument::instrument(serving, span)).detach();
    }
}

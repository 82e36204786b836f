//! The broker: one shard per core, each accepting connections and owning partitions.
//!
//! [`serve`] starts the shards, wires the mesh between them, and returns once all of them
//! have shut down (SIGINT/SIGTERM: stop accepting, flush and close every log). Shard 0
//! bootstraps cluster metadata from the data directory and publishes it before any shard
//! accepts a connection.

mod connection;
pub mod handlers;
pub mod mesh;
mod router;
pub mod shard;

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use futures::channel::oneshot;
use futures::StreamExt;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;

use crate::config::{limits, BrokerConfig};
use crate::controller::{self, ClusterMetadata};
use crate::runtime::{self, PoolOptions};
use mesh::ShardMsg;
use shard::Shard;

/// Name of the lock file that keeps two brokers off one data directory.
const LOCK_FILE: &str = ".lock";

/// Runs a broker until SIGINT or SIGTERM.
pub fn serve(config: BrokerConfig, pool: PoolOptions) -> anyhow::Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let count = runtime::placement(&pool)?.len();
    let mesh: MeshBuilder<ShardMsg, Full> = MeshBuilder::full(count, limits::MESH_CHANNEL_CAPACITY);
    let stops = shutdown_on_signals(count)?;
    let config = Arc::new(config);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        shards = count,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        "starting strata"
    );
    runtime::run_shards(&pool, move |index, _count| {
        let stop = stops.lock().ok().and_then(|mut s| s.get_mut(index).and_then(Option::take));
        shard_main(config.clone(), mesh.clone(), stop)
    })?;
    tracing::info!("strata stopped cleanly");
    Ok(())
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    file.try_lock()
        .map_err(|_| anyhow::anyhow!("{} is in use by another strata process", dir.display()))?;
    Ok(file)
}

/// CPU shares of the retention/compaction task queue (the default queue has 1000).
const HOUSEKEEPING_SHARES: usize = 100;

type Stops = Arc<Mutex<Vec<Option<oneshot::Receiver<()>>>>>;

/// A thread that turns the first SIGINT/SIGTERM into a stop message for every shard, and a
/// second one into an immediate exit.
fn shutdown_on_signals(count: usize) -> anyhow::Result<Stops> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| oneshot::channel()).unzip();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut senders = Some(senders);
        for signal in signals.forever() {
            match senders.take() {
                Some(senders) => {
                    tracing::info!(signal, "shutting down: flushing and closing logs");
                    senders.into_iter().for_each(|s| {
                        let _ = s.send(());
                    });
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

async fn shard_main(
    config: Arc<BrokerConfig>,
    mesh: MeshBuilder<ShardMsg, Full>,
    stop: Option<oneshot::Receiver<()>>,
) -> anyhow::Result<()> {
    let (senders, mut receivers) =
        mesh.join().await.map_err(|_| anyhow::anyhow!("joining the shard mesh failed"))?;
    let id = senders.peer_id();
    // Before any other DmaFile is opened on this thread (a glommio 0.9 probe bug, see there).
    crate::storage::prime_dma_probe(&config.data_dir).await?;
    let count = senders.nr_consumers();
    let (ready, is_ready) = oneshot::channel();
    let shard = Rc::new(Shard::new(id, count, config.clone(), senders, ready));
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
    if id == 0 {
        bootstrap(&shard).await?;
    } else if is_ready.await.is_err() {
        anyhow::bail!("shard {id} never received cluster metadata");
    }
    let background = glommio::executor().create_task_queue(
        glommio::Shares::Static(HOUSEKEEPING_SHARES),
        glommio::Latency::NotImportant,
        "housekeeping",
    );
    glommio::spawn_local_into(shard.clone().housekeeping(), background)
        .map_err(|e| anyhow::anyhow!("spawning housekeeping: {e}"))?
        .detach();
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen))?;
    if id == 0 {
        tracing::info!(listen = %config.listen, "strata ready");
    }
    let stop = async move {
        match stop {
            Some(stop) => drop(stop.await),
            None => futures::future::pending().await,
        }
    };
    futures::pin_mut!(stop);
    futures::future::select(Box::pin(accept_loop(&shard, &listener)), stop).await;
    drop(listener);
    shard.close_logs().await;
    Ok(())
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
    remove_orphan_partitions(data_dir, &meta);
    controller::store(data_dir, &meta).await?;
    shard.publish(Arc::new(meta)).await;
    Ok(())
}

/// `__consumer_offsets`, compacted, with `--offsets-topic-partitions` partitions.
fn create_offsets_topic(meta: &ClusterMetadata, shard: &Shard) -> anyhow::Result<ClusterMetadata> {
    let configs = [("cleanup.policy", "compact"), ("segment.bytes", "104857600")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let partitions = shard.config.offsets_topic_partitions;
    let name = crate::group::OFFSETS_TOPIC;
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
        if meta.shard_of(topic, partition).is_none() {
            tracing::warn!(dir = %name, "removing the log of a deleted partition");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::error!(dir = %name, "cannot remove: {e}");
            }
        }
    }
}

async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener) {
    let per_shard_max = shard.config.max_connections.div_ceil(shard.count);
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(shard = shard.id, "accept failed: {e}");
                // Out of file descriptors and the like: back off instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => continue,
        };
        if shard.connections.get() >= per_shard_max {
            let limit = shard.config.max_connections;
            tracing::warn!(%peer, limit, "too many connections; closing");
            continue;
        }
        shard.connections.set(shard.connections.get() + 1);
        let shard = shard.clone();
        glommio::spawn_local(async move {
            connection::serve(shard.clone(), stream, peer).await;
            shard.connections.set(shard.connections.get() - 1);
        })
        .detach();
    }
}

//! Runs a bench: setup (bootstrap, topic, start offsets) on a helper executor, then one pinned
//! glommio executor per `--cores` hosting its share of producers and consumers, while the
//! calling thread prints progress each second and decides when consumers have caught up.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use glommio::{CpuSet, LocalExecutorBuilder, LocalExecutorPoolBuilder, PoolPlacement};

use super::client::{self, Layout, EARLIEST, LATEST};
use super::consumer::{self, ConsumerPlan};
use super::producer::{self, ProducerPlan};
use super::settings::{Mode, Settings};
use super::stats::{Clock, Progress, Recorder, NS_PER_S};

/// Time allowed for every producer to connect before the first intended send.
const CONNECT_GRACE: Duration = Duration::from_millis(500);
/// Memory glommio registers per executor: the bench does no direct I/O.
const IO_MEMORY_BYTES: usize = 512 << 10;

/// What a finished run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Settings of the run.
    pub settings: Arc<Settings>,
    /// Every executor's recording, merged.
    pub recorder: Recorder,
    /// Start of the measured window (clock ns).
    pub measure_start_ns: u64,
    /// End of the measured window (clock ns).
    pub measure_end_ns: u64,
    /// Records acknowledged over the whole run (warm-up included).
    pub produced_all: u64,
    /// Records consumed over the whole run (warm-up included).
    pub consumed_all: u64,
    /// Whether consumers caught up with every acknowledged record before the drain timeout.
    pub drained: bool,
    /// Partitions of the topic.
    pub partitions: i32,
    /// CPU the bench process used over the measured window, % of one core.
    pub tool_cpu_percent: Option<f64>,
}

/// Topic layout and consumer start/end offsets, found before the load starts.
struct Setup {
    layout: Layout,
    start_offsets: HashMap<i32, i64>,
    end_offsets: HashMap<i32, i64>,
}

/// Runs the bench described by `settings`.
pub fn execute(settings: Settings) -> anyhow::Result<Outcome> {
    let settings = Arc::new(settings);
    let setup = {
        let settings = settings.clone();
        LocalExecutorBuilder::default()
            .name("bench-setup")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move { setup(&settings).await })
            .map_err(|e| anyhow!("starting setup executor: {e}"))?
            .join()
            .map_err(|e| anyhow!("setup executor: {e}"))??
    };
    let clock = Clock::new();
    let start_ns = clock.now_ns() + CONNECT_GRACE.as_nanos() as u64;
    let measure_start_ns = start_ns + settings.warmup.as_nanos() as u64;
    let end_ns = settings.duration.map(|d| measure_start_ns + d.as_nanos() as u64);
    let plans = Plans::new(&settings, &setup, clock, start_ns, measure_start_ns, end_ns);
    let progress = Arc::new(Progress::default());
    progress.producers_running.store(plans.producer_count() as u64, Ordering::Relaxed);
    let handles = spawn_workers(&settings, plans, progress.clone(), measure_start_ns)?;
    let window = Window { start_ns, measure_start_ns, end_ns };
    let monitored = monitor(&settings, &progress, clock, window);
    let mut merged = Recorder::new(measure_start_ns, 0);
    for result in handles.join_all() {
        let recorder = result.map_err(|e| anyhow!("executor: {e}"))??;
        merged.merge(&recorder);
    }
    let measure_end_ns = match (settings.mode, end_ns) {
        (Mode::Consume, end) => {
            let last = merged.last_consume_ns.max(measure_start_ns + 1);
            end.map_or(last, |end| end.min(last))
        }
        (_, Some(end)) => end,
        (_, None) => merged.last_send_ns.max(measure_start_ns + 1),
    };
    Ok(Outcome {
        produced_all: merged.acked_all,
        consumed_all: merged.consumed_all,
        recorder: merged,
        settings,
        measure_start_ns,
        measure_end_ns,
        drained: monitored.drained,
        tool_cpu_percent: monitored.cpu_percent,
        partitions: setup.layout.partitions(),
    })
}

async fn setup(settings: &Settings) -> anyhow::Result<Setup> {
    let addrs = client::resolve(&settings.brokers)?;
    let mut conn = client::bootstrap(&addrs).await?;
    let layout = client::prepare_topic(
        &mut conn,
        &settings.topic,
        settings.partitions,
        settings.replication_factor,
    )
    .await?;
    let mut start_offsets = HashMap::new();
    let mut end_offsets = HashMap::new();
    if settings.mode.consumes() {
        let start_at = if settings.mode == Mode::E2e { LATEST } else { EARLIEST };
        let partitions: Vec<i32> = (0..layout.partitions()).collect();
        for p in &partitions {
            let mut leader = client::bootstrap(&[layout.leader_addr(*p)?]).await?;
            let topic = &settings.topic;
            start_offsets.extend(client::list_offsets(&mut leader, topic, &[*p], start_at).await?);
            end_offsets.extend(client::list_offsets(&mut leader, topic, &[*p], LATEST).await?);
        }
    }
    Ok(Setup { layout, start_offsets, end_offsets })
}

/// The producers and consumers of each executor.
#[derive(Clone)]
struct Plans {
    producers: Vec<Vec<ProducerPlan>>,
    consumers: Vec<Vec<ConsumerPlan>>,
}

impl Plans {
    fn new(
        settings: &Arc<Settings>,
        setup: &Setup,
        clock: Clock,
        start_ns: u64,
        measure_start_ns: u64,
        end_ns: Option<u64>,
    ) -> Plans {
        let cores = settings.cores;
        let mut plans = Plans { producers: vec![vec![]; cores], consumers: vec![vec![]; cores] };
        let layout = Arc::new(setup.layout.clone());
        if settings.mode.produces() {
            for id in 0..settings.producers {
                let messages = settings.messages.map(|m| share(m, settings.producers, id));
                plans.producers[id % cores].push(ProducerPlan {
                    id,
                    settings: settings.clone(),
                    layout: layout.clone(),
                    clock,
                    start_ns,
                    measure_start_ns,
                    end_ns,
                    messages,
                });
            }
        }
        if settings.mode.consumes() {
            let consumers = consumer_plans(settings, setup, clock, start_ns, end_ns);
            for (id, plan) in consumers {
                // After the producers' executors, so that with --cores 2 they run apart.
                plans.consumers[(id + settings.producers) % cores].push(plan);
            }
        }
        plans
    }

    fn producer_count(&self) -> usize {
        self.producers.iter().map(Vec::len).sum()
    }
}

/// `total` split over `parts`: part `i`'s share.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((i as u64) < total % parts)
}

/// Partition `p` goes to consumer `p % consumers`; each consumer fetches per leader broker.
fn consumer_plans(
    settings: &Arc<Settings>,
    setup: &Setup,
    clock: Clock,
    start_ns: u64,
    end_ns: Option<u64>,
) -> Vec<(usize, ConsumerPlan)> {
    let mut by_key: HashMap<(usize, i32), Vec<(i32, i64)>> = HashMap::new();
    for p in 0..setup.layout.partitions() {
        let consumer = p as usize % settings.consumers;
        let leader = setup.layout.leaders[p as usize];
        let offset = setup.start_offsets.get(&p).copied().unwrap_or(0);
        by_key.entry((consumer, leader)).or_default().push((p, offset));
    }
    let mut keys: Vec<_> = by_key.keys().copied().collect();
    keys.sort_unstable();
    keys.into_iter()
        .filter_map(|key| {
            let broker = setup.layout.brokers.get(&key.1).copied()?;
            let offsets = by_key.remove(&key)?;
            let plan = ConsumerPlan {
                id: key.0,
                settings: settings.clone(),
                topic: setup.layout.topic.clone(),
                broker,
                offsets,
                end_offsets: setup.end_offsets.clone(),
                clock,
                end_ns,
                run_start_ns: start_ns,
            };
            Some((key.0, plan))
        })
        .collect()
}

fn spawn_workers(
    settings: &Settings,
    plans: Plans,
    progress: Arc<Progress>,
    measure_start_ns: u64,
) -> anyhow::Result<glommio::PoolThreadHandles<anyhow::Result<Recorder>>> {
    let placement = match &settings.cpus {
        Some(cpus) => {
            let online = CpuSet::online().map_err(|e| anyhow!("listing CPUs: {e}"))?;
            let sets = cpus.iter().map(|&c| online.clone().filter(|l| l.cpu == c)).collect();
            PoolPlacement::Custom(sets)
        }
        None => PoolPlacement::MaxSpread(settings.cores, None),
    };
    let next_index = Arc::new(AtomicUsize::new(0));
    let mut builder =
        LocalExecutorPoolBuilder::new(placement).name("bench").io_memory(IO_MEMORY_BYTES);
    if !settings.spin.is_zero() {
        builder = builder.spin_before_park(settings.spin);
    }
    let handles = builder
        .on_all_shards(move || {
            let index = next_index.fetch_add(1, Ordering::Relaxed);
            let producers = plans.producers.get(index).cloned().unwrap_or_default();
            let consumers = plans.consumers.get(index).cloned().unwrap_or_default();
            let progress = progress.clone();
            async move { worker(index, producers, consumers, progress, measure_start_ns).await }
        })
        .map_err(|e| anyhow!("starting executors: {e}"))?;
    Ok(handles)
}

/// One executor: runs its producers and consumers, returns what it recorded.
async fn worker(
    index: usize,
    producers: Vec<ProducerPlan>,
    consumers: Vec<ConsumerPlan>,
    progress: Arc<Progress>,
    measure_start_ns: u64,
) -> anyhow::Result<Recorder> {
    let recorder = Rc::new(RefCell::new(Recorder::new(measure_start_ns, index)));
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|plan| glommio::spawn_local(consumer::run(plan, recorder.clone(), progress.clone())))
        .collect();
    let producer_tasks: Vec<_> = producers
        .into_iter()
        .map(|plan| {
            let (recorder, progress) = (recorder.clone(), progress.clone());
            glommio::spawn_local(async move {
                let result = producer::run(plan, recorder, progress.clone()).await;
                progress.producers_running.fetch_sub(1, Ordering::Relaxed);
                result
            })
        })
        .collect();
    let mut first_error = None;
    for task in producer_tasks.into_iter().chain(consumer_tasks) {
        if let Err(e) = task.await {
            if first_error.is_none() {
                first_error = Some(e);
            }
            progress.stop_consumers.store(true, Ordering::Relaxed);
        }
    }
    progress.workers_done.fetch_add(1, Ordering::Relaxed);
    match first_error {
        Some(e) => Err(e),
        None => Ok(recorder.borrow().clone()),
    }
}

/// Prints a progress line each second until the executors finish; stops consumers once they
/// have seen every acknowledged record (or after the drain timeout). Returns whether they did.
fn monitor(settings: &Settings, progress: &Progress, clock: Clock, window: Window) -> Monitored {
    let mut line = super::report::ProgressLine::new(window.start_ns, window.measure_start_ns);
    let mut next_print = window.start_ns + NS_PER_S;
    let mut drain_deadline: Option<Instant> = None;
    let mut drained = !settings.mode.consumes();
    let mut cpu = CpuMeter::default();
    while progress.workers_done.load(Ordering::Relaxed) < settings.cores {
        std::thread::sleep(Duration::from_millis(20));
        let now = clock.now_ns();
        if now >= next_print {
            eprintln!("{}", line.render(now, progress));
            next_print += NS_PER_S;
        }
        let producing = Progress::get(&progress.producers_running) > 0;
        let measuring = settings.mode.produces() && producing || settings.mode == Mode::Consume;
        cpu.sample(now, now >= window.measure_start_ns && measuring);
        if window.end_ns.is_some_and(|end| now >= end) {
            cpu.sample(now, false);
        }
        if settings.mode != Mode::E2e || producing {
            continue;
        }
        let deadline =
            *drain_deadline.get_or_insert_with(|| Instant::now() + settings.drain_timeout);
        let caught_up = Progress::get(&progress.consumed) >= Progress::get(&progress.acked);
        if caught_up || Instant::now() >= deadline {
            drained = caught_up;
            progress.stop_consumers.store(true, Ordering::Relaxed);
        }
    }
    cpu.sample(clock.now_ns(), false);
    Monitored { drained: drained || settings.mode == Mode::Consume, cpu_percent: cpu.percent() }
}

/// The run's time marks (clock ns).
#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: u64,
    measure_start_ns: u64,
    end_ns: Option<u64>,
}

/// What the monitor saw.
struct Monitored {
    drained: bool,
    cpu_percent: Option<f64>,
}

/// CPU time of this process over the measured window, from `/proc/self/stat`.
#[derive(Debug, Default)]
struct CpuMeter {
    first: Option<(u64, u64)>,
    last: Option<(u64, u64)>,
    closed: bool,
}

impl CpuMeter {
    /// Opens the window on the first `inside` sample, closes it on the first one after.
    fn sample(&mut self, now_ns: u64, inside: bool) {
        if self.closed {
            return;
        }
        let Some(ticks) = process_cpu_ticks() else {
            return;
        };
        if inside {
            self.first.get_or_insert((now_ns, ticks));
            self.last = Some((now_ns, ticks));
        } else if self.first.is_some() {
            self.last = Some((now_ns, ticks));
            self.closed = true;
        }
    }

    /// Percent of one core used over the window.
    fn percent(&self) -> Option<f64> {
        let ((t0, c0), (t1, c1)) = (self.first?, self.last?);
        let wall_s = (t1.checked_sub(t0)? as f64 / NS_PER_S as f64).max(1e-9);
        (wall_s >= 0.5).then(|| (c1 - c0) as f64 / USER_HZ / wall_s * 100.0)
    }
}

/// Kernel clock ticks per second in `/proc` (USER_HZ, fixed at 100 on Linux).
const USER_HZ: f64 = 100.0;

/// utime + stime of this process in ticks.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 14 is the 12th after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

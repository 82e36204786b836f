//! Thread-per-core runtime: one pinned glommio executor per shard.
//!
//! This module knows nothing about Kafka. It decides which CPUs the shards run on, how much
//! memory each executor may register with io_uring, and starts and joins the executors.
//! Shards talk to each other over a glommio channel mesh built by the caller. [`contain`]
//! keeps a panic in one task from ending its shard's executor; [`iowq`] sizes each shard's
//! io_uring worker pool.

use std::future::Future;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

pub mod contain;
pub mod iowq;

/// Smallest `io_memory` glommio accepts.
const IO_MEMORY_BYTES_MIN: usize = 512 * 1024;
/// glommio's default `io_memory`, used when memory locking is unlimited.
const IO_MEMORY_BYTES_DEFAULT: usize = 10 << 20;
/// glommio registers `io_memory` with this many rings per executor.
const RINGS_PER_EXECUTOR: usize = 3;

/// Default [`PoolOptions::io_workers`]: measured on a 2-vCPU VM with 16 partitions syncing,
/// 8 to 64 workers all cut the mean append latency from 7.2 to 5.5-6.2 ms (2 is the kernel's
/// cap for a thread pinned to one CPU); see perf/results/2026-12-06-io-workers.md.
pub const IO_WORKERS_DEFAULT: u32 = 16;

/// How to lay the shards out.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Number of shards; 0 means one per usable CPU.
    pub shards: usize,
    /// CPUs to pin to; empty means the CPUs in the process's affinity mask.
    pub cpus: Vec<usize>,
    /// Spin this long before parking an idle executor (trades CPU for wake-up latency).
    pub spin_before_park: Option<Duration>,
    /// Most io_uring worker threads each shard may run for blocking file work (fdatasync,
    /// writes into fallocated space), see [`iowq`]; 0 keeps the kernel's default.
    pub io_workers: u32,
}

/// The CPUs this process may run on (its affinity mask, as set by `taskset` or cgroups).
pub fn affinity_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most sizeof(cpu_set_t) bytes.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Resolves the shard count and the CPU each shard is pinned to.
pub fn placement(options: &PoolOptions) -> anyhow::Result<Vec<usize>> {
    let cpus = if options.cpus.is_empty() { affinity_cpus() } else { options.cpus.clone() };
    anyhow::ensure!(!cpus.is_empty(), "no CPU to run on");
    let shards = if options.shards == 0 { cpus.len() } else { options.shards };
    Ok((0..shards).map(|shard| cpus[shard % cpus.len()]).collect())
}

/// `io_memory` per executor: glommio's default when memory locking is unlimited (root or
/// CAP_IPC_LOCK), otherwise what fits in `RLIMIT_MEMLOCK` shared by every executor's rings.
pub fn io_memory_bytes(shards: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass; geteuid has no preconditions.
    #[allow(unsafe_code)]
    let (rc, root) =
        unsafe { (libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit), libc::geteuid() == 0) };
    if root || rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return IO_MEMORY_BYTES_DEFAULT;
    }
    let share = limit.rlim_cur as usize / (RINGS_PER_EXECUTOR * shards.max(1));
    share.clamp(IO_MEMORY_BYTES_MIN, IO_MEMORY_BYTES_DEFAULT)
}

/// Runs `shard_main(index, count)` on one pinned executor per shard and waits for all of
/// them. The first error any shard returns is returned after every shard has stopped.
pub fn run_shards<G, F>(options: &PoolOptions, shard_main: G) -> anyhow::Result<()>
where
    G: Fn(usize, usize) -> F + Send + Clone + 'static,
    F: Future<Output = anyhow::Result<()>> + 'static,
{
    let cpus = placement(options)?;
    contain::install_panic_hook();
    let count = cpus.len();
    let io_memory = io_memory_bytes(count);
    let mut handles = Vec::with_capacity(count);
    for (index, cpu) in cpus.into_iter().enumerate() {
        let main = shard_main.clone();
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{index}"))
            .io_memory(io_memory);
        if let Some(spin) = options.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        let io_workers = options.io_workers;
        let handle = builder.spawn(move || {
            if io_workers > 0 {
                match iowq::set_max_workers([io_workers, 0]) {
                    Ok([bounded, _]) => tracing::debug!(shard = index, bounded, "io_uring workers"),
                    // Old kernels (< 5.15) lack the call: the kernel's default stays.
                    Err(error) => {
                        tracing::warn!(%error, "cannot set io_uring workers (io-workers)")
                    }
                }
            }
            main(index, count)
        });
        handles.push(handle.map_err(|e| anyhow::anyhow!("starting shard {index}: {e}"))?);
    }
    let mut first_error = None;
    for handle in handles {
        let result = match handle.join() {
            Ok(result) => result,
            Err(e) => Err(anyhow::anyhow!("shard executor failed: {e}")),
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_shards_over_cpus() {
        let options =
            PoolOptions { shards: 3, cpus: vec![4, 5], spin_before_park: None, io_workers: 0 };
        assert_eq!(placement(&options).unwrap(), vec![4, 5, 4]);
        let options =
            PoolOptions { shards: 0, cpus: vec![1], spin_before_park: None, io_workers: 0 };
        assert_eq!(placement(&options).unwrap(), vec![1]);
    }

    #[test]
    fn affinity_is_not_empty() {
        assert!(!affinity_cpus().is_empty());
    }

    #[test]
    fn io_memory_is_within_glommio_bounds() {
        let bytes = io_memory_bytes(64);
        assert!(bytes >= IO_MEMORY_BYTES_MIN);
        assert!(bytes <= IO_MEMORY_BYTES_DEFAULT);
    }

    #[test]
    fn a_shard_runs_with_the_io_worker_limit_it_was_given() {
        let cpu = affinity_cpus()[0];
        let options =
            PoolOptions { shards: 1, cpus: vec![cpu], spin_before_park: None, io_workers: 7 };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen_in_shard = seen.clone();
        run_shards(&options, move |_, _| {
            let seen = seen_in_shard.clone();
            async move {
                *seen.lock().unwrap() = Some(iowq::set_max_workers([0, 0])?);
                Ok(())
            }
        })
        .unwrap();
        let [bounded, unbounded] = seen.lock().unwrap().unwrap();
        assert_eq!(bounded, 7);
        assert!(unbounded > 0, "the unbounded class is left as the kernel set it");
    }
}

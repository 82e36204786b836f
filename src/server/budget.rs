//! The memory budget of one shard, and each connection's share of it.
//!
//! Kafka's `queued.max.request.bytes`, split evenly over the shards as Redpanda splits its
//! per-shard memory semaphores. What it counts: the bytes of every request frame from the
//! moment it is admitted (before its body is read) until its response is written, and the
//! bytes of that response (resized to the encoded size once known). A connection waiting for
//! budget stops reading its socket, so the client is pushed back through TCP instead of the
//! broker allocating.
//!
//! Rules (all on one shard, no locks):
//! - [`Budget::acquire`] grants first-fit: a waiter that fits is granted even if an earlier,
//!   larger one does not (a 100 MiB request waiting never blocks a 1 KiB one). A large waiter
//!   can therefore wait while small traffic keeps the budget busy; it is granted as soon as
//!   enough is free.
//! - The last [`RESERVE_DIVISOR`]th of the capacity is a reserve only grants of at most
//!   [`SMALL_GRANT_BYTES_MAX`] may use, so large holders (claimed frames, big fetches of
//!   clients that do not read) can never take the room small requests need.
//! - A connection holds at most [`ConnShare::cap`] bytes at once (requests in flight plus
//!   responses not yet written); its first request is always admitted whatever its size. It
//!   has at most [`limits::IN_FLIGHT_PER_CONNECTION_MAX`] requests in flight.
//! - A response larger than what was reserved for it is accounted anyway ([`Held::resize`]):
//!   the budget may then be over-spent briefly, and nothing more is granted until it is not.
//! - [`Budget::can_ever_grant`]: a frame larger than the budget could ever grant is refused.
//!
//! Every grant is a [`Held`] guard; dropping it gives the bytes back and wakes waiters.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use kafka_protocol::messages::FetchRequest;

use crate::config::limits;

/// The reserve for small grants is this fraction of a shard's budget.
pub const RESERVE_DIVISOR: usize = 8;
/// Grants up to this size may use the reserve.
pub const SMALL_GRANT_BYTES_MAX: usize = 1 << 20;
/// A connection may hold this fraction of its shard's budget (and at least
/// [`CONN_SHARE_BYTES_MIN`]).
pub const CONN_SHARE_DIVISOR: usize = 16;
/// Smallest per-connection share.
pub const CONN_SHARE_BYTES_MIN: usize = 1 << 20;
/// Smallest response a fetch is given room for; under pressure a fetch answers with this much
/// (at least one whole batch, as Kafka's KIP-74 asks) instead of waiting for more.
pub const FETCH_GRANT_BYTES_MIN: usize = 64 * 1024;
/// Room for the parts of a fetch response other than record data (headers, per-partition
/// fields), per partition.
const FETCH_PARTITION_OVERHEAD_BYTES: usize = 64;

const _: () = assert!(FETCH_GRANT_BYTES_MIN <= SMALL_GRANT_BYTES_MAX);
const _: () = assert!(SMALL_GRANT_BYTES_MAX <= CONN_SHARE_BYTES_MIN);

/// One shard's memory budget. See the module docs.
pub struct Budget {
    capacity: usize,
    reserve: usize,
    used: Cell<usize>,
    /// Most bytes used since [`trim_when_released`] last returned memory to the system.
    peak: Cell<usize>,
    /// Connections closed on this shard since then.
    closed: Cell<usize>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

struct Waiter {
    bytes: usize,
    granted: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Budget {
    /// A budget of `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> Budget {
        let capacity = capacity.max(1);
        Budget {
            capacity,
            reserve: capacity / RESERVE_DIVISOR,
            used: Cell::new(0),
            peak: Cell::new(0),
            closed: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
        }
    }

    /// Bytes this budget grants in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes granted now (may exceed the capacity briefly, see [`Held::resize`]).
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Largest single grant possible: the capacity for small grants, else the capacity less
    /// the reserve.
    pub fn grant_bytes_max(&self) -> usize {
        (self.capacity - self.reserve).max(SMALL_GRANT_BYTES_MAX.min(self.capacity))
    }

    /// Whether a grant of `bytes` could ever be made (once everything else is given back).
    pub fn can_ever_grant(&self, bytes: usize) -> bool {
        bytes <= self.grant_bytes_max()
    }

    /// Bytes a grant of `bytes` may use now (the reserve only for small grants).
    fn room_for(&self, bytes: usize) -> usize {
        let limit = if bytes <= SMALL_GRANT_BYTES_MAX {
            self.capacity
        } else {
            self.capacity - self.reserve
        };
        limit.saturating_sub(self.used.get())
    }

    fn fits(&self, bytes: usize) -> bool {
        bytes <= self.room_for(bytes)
    }

    fn take(&self, bytes: usize) {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        self.peak.set(self.peak.get().max(used));
    }

    /// Gives `bytes` back and grants every waiter that now fits, in arrival order.
    fn give_back(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.set(self.used.get().saturating_sub(bytes));
        let mut wake = Vec::new();
        {
            let mut waiters = self.waiters.borrow_mut();
            waiters.retain(|w| {
                if self.fits(w.bytes) {
                    self.take(w.bytes);
                    w.granted.set(true);
                    wake.extend(w.waker.take());
                    false
                } else {
                    true
                }
            });
        }
        // Outside the borrow: waking never runs the woken task here, but stay safe.
        wake.into_iter().for_each(Waker::wake);
    }

    /// Waits until `bytes` are granted (first-fit, see the module docs). The caller checks
    /// [`Budget::can_ever_grant`] first; a grant that can never be made waits forever.
    pub fn acquire(self: &Rc<Self>, bytes: usize) -> Acquire {
        Acquire { budget: self.clone(), bytes, waiter: None, done: false }
    }

    /// Takes between `floor` and `want` bytes: as much of `want` as may be granted now,
    /// without waiting, if that is at least `floor`; otherwise waits for `floor`.
    pub async fn acquire_up_to(self: &Rc<Self>, want: usize, floor: usize) -> usize {
        let floor = floor.min(want);
        let now = want.min(self.room_for(want));
        if now >= floor && now > 0 {
            self.take(now);
            return now;
        }
        self.acquire(floor).await;
        floor
    }

    /// Counts a connection of this shard closed (for [`trim_when_released`]).
    pub fn connection_closed(&self) {
        self.closed.set(self.closed.get() + 1);
    }

    /// Takes `bytes` whether or not they fit (a response larger than its reservation).
    fn force(&self, bytes: usize) {
        self.take(bytes);
    }
}

/// The future of [`Budget::acquire`]; dropping it before it resolves gives nothing back but
/// what it was granted.
pub struct Acquire {
    budget: Rc<Budget>,
    bytes: usize,
    waiter: Option<Rc<Waiter>>,
    done: bool,
}

impl Future for Acquire {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        if let Some(waiter) = &self.waiter {
            if waiter.granted.get() {
                self.done = true;
                return Poll::Ready(());
            }
            waiter.waker.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        if self.budget.fits(self.bytes) {
            self.budget.take(self.bytes);
            self.done = true;
            return Poll::Ready(());
        }
        let waiter = Rc::new(Waiter {
            bytes: self.bytes,
            granted: Cell::new(false),
            waker: Cell::new(Some(cx.waker().clone())),
        });
        self.budget.waiters.borrow_mut().push_back(waiter.clone());
        self.waiter = Some(waiter);
        Poll::Pending
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else {
            return;
        };
        if self.done {
            return;
        }
        if waiter.granted.get() {
            // Granted but never collected: give it back.
            self.budget.give_back(waiter.bytes);
        } else {
            self.budget.waiters.borrow_mut().retain(|w| !Rc::ptr_eq(w, &waiter));
        }
    }
}

/// One connection's share of its shard's budget: what it holds now, and the one task (its
/// reader) that may wait for it to go down.
pub struct ConnShare {
    budget: Rc<Budget>,
    cap: usize,
    held: Cell<usize>,
    /// Requests admitted and not yet answered (their [`Held`] not dropped).
    requests: Cell<usize>,
    waker: Cell<Option<Waker>>,
}

impl ConnShare {
    /// A connection's share of `budget`.
    pub fn new(budget: &Rc<Budget>) -> Rc<ConnShare> {
        let cap = (budget.capacity() / CONN_SHARE_DIVISOR).max(CONN_SHARE_BYTES_MIN);
        Rc::new(ConnShare {
            budget: budget.clone(),
            cap,
            held: Cell::new(0),
            requests: Cell::new(0),
            waker: Cell::new(None),
        })
    }

    /// Most bytes this connection holds at once (beyond its first request).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes this connection holds now.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    /// The shard's budget.
    pub fn budget(&self) -> &Rc<Budget> {
        &self.budget
    }

    /// Waits until this connection may take `bytes` more: it holds nothing but `own` (the
    /// request asking), or the total stays within its cap; and, for a `new_request`, fewer
    /// than [`limits::IN_FLIGHT_PER_CONNECTION_MAX`] requests are in flight.
    async fn room(self: &Rc<Self>, bytes: usize, own: usize, new_request: bool) {
        futures::future::poll_fn(|cx| {
            let held = self.held.get();
            let queue_full =
                new_request && self.requests.get() >= limits::IN_FLIGHT_PER_CONNECTION_MAX;
            if !queue_full && (held <= own || held.saturating_add(bytes) <= self.cap) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// Admits a request frame of `bytes`: waits for the connection's room, then the shard's.
    pub async fn admit(self: &Rc<Self>, bytes: usize) -> Held {
        self.room(bytes, 0, true).await;
        self.budget.acquire(bytes).await;
        self.hold(bytes)
    }

    /// Adds room for a response of up to `want` bytes to `held` (its request's grant): as
    /// much as may be granted now, at least [`FETCH_GRANT_BYTES_MIN`] (waiting for that if
    /// need be), and within this connection's cap unless it holds nothing else. Returns the
    /// bytes added.
    pub async fn reserve_response(self: &Rc<Self>, held: &mut Held, want: usize) -> usize {
        let floor = FETCH_GRANT_BYTES_MIN.min(want);
        self.room(floor, held.bytes, false).await;
        let alone = self.held.get() <= held.bytes;
        let room = self.cap.saturating_sub(self.held.get());
        let want = if alone { want.min(self.cap) } else { want.min(room.max(floor)) };
        let got = self.budget.acquire_up_to(want, floor).await;
        self.held.set(self.held.get() + got);
        held.bytes += got;
        got
    }

    fn hold(self: &Rc<Self>, bytes: usize) -> Held {
        self.held.set(self.held.get() + bytes);
        self.requests.set(self.requests.get() + 1);
        Held { share: self.clone(), bytes }
    }

    fn release(&self, bytes: usize) {
        self.held.set(self.held.get().saturating_sub(bytes));
        self.budget.give_back(bytes);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Bytes granted to one request (and then its response); given back when dropped.
pub struct Held {
    share: Rc<ConnShare>,
    bytes: usize,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds exactly `bytes` from now on: gives back the excess, or takes the difference
    /// whether or not it fits (the response exists already; not counting it would lie).
    pub fn resize(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.share.release(self.bytes - bytes);
        } else if bytes > self.bytes {
            let more = bytes - self.bytes;
            self.share.budget.force(more);
            self.share.held.set(self.share.held.get() + more);
        }
        self.bytes = bytes;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let requests = &self.share.requests;
        requests.set(requests.get().saturating_sub(1));
        // Wakes the reader even for 0 bytes: a request slot came free.
        self.share.release(self.bytes);
    }
}

/// The machine's memory in bytes: `MemTotal`, or the cgroup's memory limit if lower. `None`
/// if neither can be read.
pub fn machine_memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok())
        .min();
    match (total, cgroup) {
        (Some(total), Some(limit)) => Some(total.min(limit)),
        (total, limit) => total.or(limit),
    }
}

/// How often [`trim_when_released`] looks.
const TRIM_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// A peak of budget use below this is not worth returning memory for. (A few clients that
/// never read, each holding its connection's share, reach it: their memory must come back.)
const TRIM_PEAK_BYTES_MIN: usize = 16 << 20;
/// This many connections closed is worth returning memory for.
const TRIM_CONNECTIONS_MIN: usize = 1000;
/// After a burst's memory was returned, it is returned again at this many following checks:
/// the budget is given back when a response is dropped, but a closing connection frees its
/// buffers (and other shards free what they forwarded) a moment later, and a single trim at
/// the first check missed them (hardening_conn's never-read test kept 30+ MiB for good).
const TRIM_SETTLE_CHECKS: u32 = 3;

/// Runs on each shard: once the memory a burst needed is given back (budget use fell to an
/// eighth of its peak, or a thousand connections closed), asks the allocator to return free
/// memory to the system. glibc keeps freed memory in its per-thread arenas (and, once large
/// buffers were freed, raises its mmap threshold so that later large buffers come from those
/// arenas too): without this, a broker that served a burst keeps its peak RSS for good.
pub async fn trim_when_released(budget: Rc<Budget>) {
    let mut settling = 0u32;
    loop {
        glommio::timer::sleep(TRIM_CHECK).await;
        let peak = budget.peak.get();
        let budget_released = peak >= TRIM_PEAK_BYTES_MIN && budget.used() <= peak / 8;
        let closed = budget.closed.get() >= TRIM_CONNECTIONS_MIN;
        if budget_released || closed {
            settling = TRIM_SETTLE_CHECKS;
            return_free_memory();
            budget.peak.set(budget.used());
            budget.closed.set(0);
        } else if settling > 0 {
            settling -= 1;
            return_free_memory();
        }
    }
}

/// Largest allocation glibc serves from its arenas; larger ones get their own mapping, returned
/// when freed. 32 MiB is where glibc's dynamic threshold ends up once a large response was freed
/// (its ceiling on 64-bit), so buffers are placed as before: fetch responses and produce
/// frames of up to 32 MiB are reused from the arenas, not mapped and page-faulted each time.
const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// Free memory at the top of an arena beyond this is returned to the system when it is freed.
/// glibc's dynamic default rises to twice the mmap threshold (64 MiB per arena, and each shard
/// thread has its own arena), and `malloc_trim` does not shrink the top of a thread's arena:
/// after a burst a broker kept 17-35 MiB it no longer used (hardening_conn check 2, 19 runs
/// beside the rest of its tests). With these thresholds and the settling trims of
/// [`trim_when_released`], 27 runs: 4-32 MiB at the first sample, median 7 MiB, and every run
/// under the test's bound. 8 MiB keeps a shard's steady churn of responses from being returned
/// and page-faulted back on every free (glibc's own dynamic value, once 1 MiB frames were
/// freed, is 2 MiB).
const TRIM_THRESHOLD_BYTES: i32 = 8 << 20;

/// Fixes glibc's mmap and trim thresholds (see [`TRIM_THRESHOLD_BYTES`]) before any shard
/// thread starts. Setting them turns glibc's dynamic thresholds off. Nothing elsewhere.
pub fn fix_allocator_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets the allocator's tuning parameters; it takes no pointer.
        let set = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        };
        if !set {
            tracing::warn!("glibc refused the allocator thresholds; freed memory may be kept");
        }
    }
}

/// Returns free heap memory to the system (glibc's `malloc_trim`; nothing elsewhere).
fn return_free_memory() {
    // The storage's recycled read buffers of this shard go first, so that the trim returns
    // them too.
    crate::storage::release_read_buffers();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released, "returned free memory to the system");
    }
}

/// Largest response a Fetch may produce: its `max_bytes`, or the sum of its partitions'
/// `partition_max_bytes` if smaller, plus per-partition framing.
pub fn fetch_response_bytes_max(req: &FetchRequest) -> usize {
    let partitions: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    let per_partition: usize = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| usize::try_from(p.partition_max_bytes).unwrap_or(0))
        .fold(0usize, usize::saturating_add);
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0);
    let overhead = partitions.saturating_mul(FETCH_PARTITION_OVERHEAD_BYTES);
    max_bytes.min(per_partition).saturating_add(overhead)
}

/// Shrinks a Fetch to what was granted for its response: `max_bytes` and every
/// `partition_max_bytes` at most `granted`. The broker may always answer a fetch with less
/// than asked, and it still returns at least one whole batch (KIP-74).
pub fn shrink_fetch(req: &mut FetchRequest, granted: usize) {
    let granted = i32::try_from(granted).unwrap_or(i32::MAX);
    req.max_bytes = req.max_bytes.min(granted);
    for p in req.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        p.partition_max_bytes = p.partition_max_bytes.min(granted);
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;

//! Clocks, cross-thread progress counters and per-executor latency recording.
//!
//! Latencies are recorded in microseconds into HDR histograms. The produce-ack latency of a
//! record is counted from its *intended* send time: at a fixed `--rate` that is its slot on the
//! schedule (so a stalled broker cannot hide queueing delay: coordinated omission is corrected by
//! construction), at `--rate max` the moment the record was generated. End-to-end latency is the
//! consume time minus the intended send time carried in the first 8 bytes of the value.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Highest latency the histograms track (1 hour in µs); larger values saturate.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits of the run-wide histograms.
pub const SIGFIG_TOTAL: u8 = 3;
/// Significant digits of the per-second histograms (smaller, one per second).
pub const SIGFIG_SECOND: u8 = 2;
/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;

/// A monotonic clock in Unix-epoch nanoseconds, shared by every executor of a run (so producer
/// and consumer timestamps compare), anchored once to the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ns: u64,
}

impl Clock {
    /// Anchors a new clock now.
    pub fn new() -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock { origin: Instant::now(), origin_unix_ns: unix.as_nanos() as u64 }
    }

    /// Nanoseconds since the Unix epoch, monotonic.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.origin_unix_ns + self.origin.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A new run-wide latency histogram.
pub fn new_histogram(sigfig: u8) -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, sigfig) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e:?}"),
    }
}

/// Counters every executor bumps and the progress thread reads (relaxed atomics).
#[derive(Debug)]
pub struct Progress {
    /// Records handed to a connection.
    pub sent: AtomicU64,
    /// Records acknowledged without error (or written, with acks=0).
    pub acked: AtomicU64,
    /// Value bytes of `acked` records.
    pub acked_bytes: AtomicU64,
    /// Records consumed.
    pub consumed: AtomicU64,
    /// Value bytes of consumed records.
    pub consumed_bytes: AtomicU64,
    /// Records whose produce failed (error code in the response).
    pub errors: AtomicU64,
    /// p99 produce-ack latency (µs) of the last full second, per executor.
    pub live_ack_p99_us: [AtomicU64; 64],
    /// p99 end-to-end latency (µs) of the last full second, per executor.
    pub live_e2e_p99_us: [AtomicU64; 64],
    /// Producers still running.
    pub producers_running: AtomicU64,
    /// Set when consumers should stop.
    pub stop_consumers: AtomicBool,
    /// Executors that have finished.
    pub workers_done: std::sync::atomic::AtomicUsize,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            live_ack_p99_us: std::array::from_fn(|_| AtomicU64::new(0)),
            live_e2e_p99_us: std::array::from_fn(|_| AtomicU64::new(0)),
            producers_running: AtomicU64::new(0),
            stop_consumers: AtomicBool::new(false),
            workers_done: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Progress {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What one second of the measured run saw on one executor (merged across executors later).
#[derive(Debug, Clone)]
pub struct Second {
    /// Records acknowledged in this second.
    pub acked: u64,
    /// Value bytes acknowledged in this second.
    pub acked_bytes: u64,
    /// Records consumed in this second.
    pub consumed: u64,
    /// Value bytes consumed in this second.
    pub consumed_bytes: u64,
    /// Produce-ack latencies completed in this second (µs).
    pub ack: Histogram<u64>,
    /// End-to-end latencies completed in this second (µs).
    pub e2e: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Second {
            acked: 0,
            acked_bytes: 0,
            consumed: 0,
            consumed_bytes: 0,
            ack: new_histogram(SIGFIG_SECOND),
            e2e: new_histogram(SIGFIG_SECOND),
        }
    }

    /// Adds another executor's second into this one.
    pub fn merge(&mut self, other: &Second) {
        self.acked += other.acked;
        self.acked_bytes += other.acked_bytes;
        self.consumed += other.consumed;
        self.consumed_bytes += other.consumed_bytes;
        // Same bounds on both sides: addition cannot fail.
        let _ = self.ack.add(&other.ack);
        let _ = self.e2e.add(&other.e2e);
    }
}

/// Latency and throughput recorded by one executor. Only records whose intended send time is
/// at or after `measure_start_ns` (the end of the warm-up) are measured.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Start of the measured window (clock ns).
    pub measure_start_ns: u64,
    /// Produce-ack latency of measured records (µs).
    pub ack: Histogram<u64>,
    /// End-to-end latency of measured records (µs).
    pub e2e: Histogram<u64>,
    /// Measured records acknowledged / their value bytes.
    pub acked: u64,
    /// Value bytes of `acked`.
    pub acked_bytes: u64,
    /// Measured records consumed / their value bytes.
    pub consumed: u64,
    /// Value bytes of `consumed`.
    pub consumed_bytes: u64,
    /// All records consumed, warm-up included (for the produced == consumed check).
    pub consumed_all: u64,
    /// All records acknowledged, warm-up included.
    pub acked_all: u64,
    /// Records that failed.
    pub errors: u64,
    /// e2e: consumed records that this run did not send (skipped).
    pub foreign: u64,
    /// Latest intended send time of a measured record (end of the measured window).
    pub last_send_ns: u64,
    /// Consume mode: when the last measured record was consumed.
    pub last_consume_ns: u64,
    /// Per-second samples since `measure_start_ns`, by completion time.
    pub seconds: Vec<Second>,
    worker: usize,
    live_second: usize,
}

impl Recorder {
    /// An empty recorder for executor `worker`.
    pub fn new(measure_start_ns: u64, worker: usize) -> Self {
        Recorder {
            measure_start_ns,
            ack: new_histogram(SIGFIG_TOTAL),
            e2e: new_histogram(SIGFIG_TOTAL),
            acked: 0,
            acked_bytes: 0,
            consumed: 0,
            consumed_bytes: 0,
            consumed_all: 0,
            acked_all: 0,
            errors: 0,
            foreign: 0,
            last_send_ns: 0,
            last_consume_ns: 0,
            seconds: Vec::new(),
            worker,
            live_second: 0,
        }
    }

    /// The per-second sample for completion time `now_ns` (None during warm-up).
    fn second(&mut self, now_ns: u64, progress: &Progress) -> Option<&mut Second> {
        let index = usize::try_from(now_ns.checked_sub(self.measure_start_ns)? / NS_PER_S).ok()?;
        if index > self.live_second {
            self.publish_live(progress);
            self.live_second = index;
        }
        while self.seconds.len() <= index {
            self.seconds.push(Second::new());
        }
        self.seconds.get_mut(index)
    }

    fn publish_live(&self, progress: &Progress) {
        let Some(last) = self.seconds.get(self.live_second) else {
            return;
        };
        let slot = self.worker % progress.live_ack_p99_us.len();
        let p99 = |h: &Histogram<u64>| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            }
        };
        progress.live_ack_p99_us[slot].store(p99(&last.ack), Ordering::Relaxed);
        progress.live_e2e_p99_us[slot].store(p99(&last.e2e), Ordering::Relaxed);
    }

    /// Records the acknowledgement at `now_ns` of `count` records whose intended send times run
    /// evenly from `first_ns` to `last_ns`, carrying `bytes` value bytes in total.
    pub fn record_acks(&mut self, now_ns: u64, span: SendSpan, progress: &Progress) {
        self.acked_all += span.count;
        let measured = span.measured_part(self.measure_start_ns);
        if measured.count == 0 {
            return;
        }
        self.acked += measured.count;
        self.acked_bytes += measured.bytes;
        self.last_send_ns = self.last_send_ns.max(span.last_ns);
        let latency_us = |i| (now_ns.saturating_sub(measured.intended_ns(i)) / 1000).max(1);
        for i in 0..measured.count {
            self.ack.saturating_record(latency_us(i));
        }
        if let Some(s) = self.second(now_ns, progress) {
            s.acked += measured.count;
            s.acked_bytes += measured.bytes;
            for i in 0..measured.count {
                s.ack.saturating_record(latency_us(i));
            }
        }
    }

    /// acks=0: counts records written to the socket at `now_ns` (no latency exists).
    pub fn record_written(&mut self, now_ns: u64, span: SendSpan, progress: &Progress) {
        self.acked_all += span.count;
        let measured = span.measured_part(self.measure_start_ns);
        if measured.count == 0 {
            return;
        }
        self.acked += measured.count;
        self.acked_bytes += measured.bytes;
        self.last_send_ns = self.last_send_ns.max(span.last_ns);
        if let Some(s) = self.second(now_ns, progress) {
            s.acked += measured.count;
            s.acked_bytes += measured.bytes;
        }
    }

    /// Records a consumed record sent (intended) at `sent_ns`, seen at `now_ns`.
    #[inline]
    pub fn record_consumed(&mut self, now_ns: u64, sent_ns: u64, bytes: u64, progress: &Progress) {
        self.consumed_all += 1;
        if sent_ns < self.measure_start_ns {
            return;
        }
        self.consumed += 1;
        self.consumed_bytes += bytes;
        let latency_us = (now_ns.saturating_sub(sent_ns) / 1000).max(1);
        self.e2e.saturating_record(latency_us);
        if let Some(s) = self.second(now_ns, progress) {
            s.consumed += 1;
            s.consumed_bytes += bytes;
            s.e2e.saturating_record(latency_us);
        }
    }

    /// Counts a consumed record without a latency (consume mode), by consume time.
    #[inline]
    pub fn record_consumed_only(&mut self, now_ns: u64, bytes: u64, progress: &Progress) {
        self.consumed_all += 1;
        if now_ns < self.measure_start_ns {
            return;
        }
        self.consumed += 1;
        self.consumed_bytes += bytes;
        self.last_consume_ns = self.last_consume_ns.max(now_ns);
        if let Some(s) = self.second(now_ns, progress) {
            s.consumed += 1;
            s.consumed_bytes += bytes;
        }
    }

    /// Adds another executor's recording into this one.
    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.ack.add(&other.ack);
        let _ = self.e2e.add(&other.e2e);
        self.acked += other.acked;
        self.acked_bytes += other.acked_bytes;
        self.consumed += other.consumed;
        self.consumed_bytes += other.consumed_bytes;
        self.consumed_all += other.consumed_all;
        self.acked_all += other.acked_all;
        self.errors += other.errors;
        self.foreign += other.foreign;
        self.last_send_ns = self.last_send_ns.max(other.last_send_ns);
        self.last_consume_ns = self.last_consume_ns.max(other.last_consume_ns);
        for (i, s) in other.seconds.iter().enumerate() {
            while self.seconds.len() <= i {
                self.seconds.push(Second::new());
            }
            if let Some(mine) = self.seconds.get_mut(i) {
                mine.merge(s);
            }
        }
    }
}

/// The records of one produce batch: how many, their value bytes, and the intended send times
/// of the first and last (the others are taken as evenly spaced between them, exact for a
/// batch of consecutive records at a fixed rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSpan {
    /// Records.
    pub count: u64,
    /// Value bytes.
    pub bytes: u64,
    /// Intended send time of the first record (clock ns).
    pub first_ns: u64,
    /// Intended send time of the last record (clock ns).
    pub last_ns: u64,
}

impl SendSpan {
    /// Intended send time of record `i` of the span.
    #[inline]
    pub fn intended_ns(&self, i: u64) -> u64 {
        if self.count <= 1 {
            return self.first_ns;
        }
        let spread = self.last_ns.saturating_sub(self.first_ns);
        self.first_ns + (u128::from(spread) * u128::from(i) / u128::from(self.count - 1)) as u64
    }

    /// The part of the span sent at or after `start_ns`.
    pub fn measured_part(&self, start_ns: u64) -> SendSpan {
        if self.first_ns >= start_ns {
            return *self;
        }
        if self.last_ns < start_ns {
            return SendSpan { count: 0, bytes: 0, ..*self };
        }
        let skip = (0..self.count).find(|&i| self.intended_ns(i) >= start_ns).unwrap_or(self.count);
        let count = self.count - skip;
        SendSpan {
            count,
            bytes: self.bytes * count / self.count.max(1),
            first_ns: self.intended_ns(skip),
            last_ns: self.last_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_interpolates_and_splits_at_warmup() {
        let span = SendSpan { count: 5, bytes: 500, first_ns: 1000, last_ns: 5000 };
        assert_eq!(span.intended_ns(0), 1000);
        assert_eq!(span.intended_ns(2), 3000);
        assert_eq!(span.intended_ns(4), 5000);
        let m = span.measured_part(2500);
        assert_eq!((m.count, m.bytes, m.first_ns, m.last_ns), (3, 300, 3000, 5000));
        assert_eq!(span.measured_part(6000).count, 0);
    }

    #[test]
    fn recorder_counts_latency_from_intended_time() {
        let progress = Progress::default();
        let mut rec = Recorder::new(1_000_000, 0);
        let span = SendSpan { count: 2, bytes: 200, first_ns: 1_000_000, last_ns: 2_000_000 };
        rec.record_acks(3_000_000, span, &progress);
        assert_eq!(rec.acked, 2);
        assert_eq!(rec.ack.max(), rec.ack.highest_equivalent(2000));
        assert_eq!(rec.seconds.len(), 1);
        rec.record_consumed(5_000_000, 500_000, 100, &progress); // warm-up record
        assert_eq!((rec.consumed, rec.consumed_all), (0, 1));
    }
}

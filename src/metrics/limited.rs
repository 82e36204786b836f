//! Rate-limited log lines and the broker-wide refusal counters.
//!
//! A client can make the broker refuse things as fast as it can send them (bad frames,
//! connections over a limit, produces to a poisoned log); one log line per refusal would let
//! it fill the disk with logs. Each call site of [`refused!`](crate::refused) or
//! [`log_limited!`](crate::log_limited) owns a [`LogLimiter`] per thread (each shard logs on
//! its own, so no cache line is shared between cores and a refusal seen by another shard is
//! still logged there): at most one line per [`LOG_INTERVAL`] per call site and shard, and the
//! next line written says how many were `suppressed` meanwhile.
//!
//! Refusals are also counted per reason, process-wide ([`count_refusal`]), and exported as
//! `strata_refusals_total{reason}`. These counters are touched only when something is refused,
//! never on the produce/fetch path, so a process-wide table behind a mutex is cheap enough.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Shortest time between two lines of one call site.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// One call site's rate limit. `const`-constructible, so a macro can keep one in a `static`.
#[derive(Debug)]
pub struct LogLimiter {
    /// Milliseconds since [`epoch`] before which no line may be written (0: never written).
    next_ms: AtomicU64,
    /// Lines suppressed since the last one written.
    suppressed: AtomicU64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
}

impl LogLimiter {
    /// A limiter that lets the first line through.
    pub const fn new() -> Self {
        LogLimiter { next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(suppressed)` when a line may be written now (and how many were suppressed since
    /// the last one); `None` when this one is to be suppressed.
    pub fn admit(&self, interval: Duration) -> Option<u64> {
        let now = now_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn refusal_table() -> &'static Mutex<BTreeMap<&'static str, u64>> {
    static TABLE: OnceLock<Mutex<BTreeMap<&'static str, u64>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Counts one refusal of a client (a limit hit, a bad request closed, ...) under `reason`.
pub fn count_refusal(reason: &'static str) {
    if let Ok(mut table) = refusal_table().lock() {
        let count = table.entry(reason).or_insert(0);
        *count = count.wrapping_add(1);
    }
}

/// Every refusal reason seen so far and its count, by reason.
pub fn refusals() -> Vec<(&'static str, u64)> {
    match refusal_table().lock() {
        Ok(table) => table.iter().map(|(k, v)| (*k, *v)).collect(),
        Err(_) => Vec::new(),
    }
}

/// A log line at most once per [`LOG_INTERVAL`] from this call site on this thread (shard),
/// with the count of lines suppressed since the last one:
/// `log_limited!(WARN, %peer, "read failed: {e}")`.
#[macro_export]
macro_rules! log_limited {
    ($level:ident, $($arg:tt)+) => {{
        ::std::thread_local! {
            static LIMIT: $crate::metrics::LogLimiter =
                const { $crate::metrics::LogLimiter::new() };
        }
        let admitted = LIMIT.with(|limit| limit.admit($crate::metrics::LOG_INTERVAL));
        if let Some(suppressed) = admitted {
            ::tracing::event!(::tracing::Level::$level, suppressed, $($arg)+);
        }
    }};
}

/// Counts a refusal under `reason` (`strata_refusals_total{reason}`) and logs it, rate
/// limited: `refused!(WARN, "max_connections_per_ip", %peer, "too many connections")`.
#[macro_export]
macro_rules! refused {
    ($level:ident, $reason:expr, $($arg:tt)+) => {{
        $crate::metrics::count_refusal($reason);
        $crate::log_limited!($level, reason = $reason, $($arg)+);
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_of_suppressed_ones() {
        let limit = LogLimiter::new();
        assert_eq!(limit.admit(Duration::from_secs(3600)), Some(0));
        assert_eq!(limit.admit(Duration::from_secs(3600)), None);
        assert_eq!(limit.admit(Duration::from_secs(3600)), None);
        let limit_zero = LogLimiter::new();
        assert_eq!(limit_zero.admit(Duration::ZERO), Some(0));
        assert_eq!(limit_zero.admit(Duration::ZERO), Some(0));
        // Past the interval, the next line reports what was suppressed.
        limit.next_ms.store(1, Ordering::Relaxed);
        assert_eq!(limit.admit(Duration::from_secs(3600)), Some(2));
    }

    #[test]
    fn refusals_are_counted_per_reason() {
        count_refusal("test_reason_a");
        count_refusal("test_reason_a");
        count_refusal("test_reason_b");
        let table: BTreeMap<_, _> = refusals().into_iter().collect();
        assert!(table.get("test_reason_a").copied().unwrap_or(0) >= 2);
        assert!(table.get("test_reason_b").copied().unwrap_or(0) >= 1);
    }
}

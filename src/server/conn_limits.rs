//! Broker-wide connection limits, shared by every shard's accept loop.
//!
//! `max_connections` counts the client connections of the whole broker (one atomic counter
//! all shards share), so the kernel's SO_REUSEPORT hashing no longer decides who is refused.
//! `max.connections.per.ip` (with `max.connections.per.ip.overrides`, as Kafka spells them)
//! counts per client address in a map behind a mutex (always, so that a limit set at run time
//! sees the connections already open). Both are touched only when a connection is accepted or
//! closed, never per request. An admitted connection holds a [`ConnSlot`];
//! dropping it gives the slot back. Dynamic broker configs change the limits at run time
//! ([`ConnLimits::set`]): new connections see them at once, open ones are left alone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The limits and what they count. See the module docs.
#[derive(Debug)]
pub struct ConnLimits {
    max: AtomicUsize,
    per_ip_max: AtomicUsize,
    overrides: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The broker has `max_connections` open.
    Broker {
        /// The limit.
        limit: usize,
    },
    /// This address has its per-IP limit open.
    PerIp {
        /// The limit for this address.
        limit: usize,
    },
}

impl ConnLimits {
    /// Limits of `max` connections in all and `per_ip_max` per address, with `overrides`.
    pub fn new(max: usize, per_ip_max: usize, overrides: &[(IpAddr, usize)]) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max: AtomicUsize::new(max),
            per_ip_max: AtomicUsize::new(per_ip_max),
            overrides: Mutex::new(overrides.iter().copied().collect()),
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the limits for connections accepted from now on.
    pub fn set(&self, max: usize, per_ip_max: usize, overrides: &[(IpAddr, usize)]) {
        self.max.store(max, Ordering::Relaxed);
        self.per_ip_max.store(per_ip_max, Ordering::Relaxed);
        *lock(&self.overrides) = overrides.iter().copied().collect();
    }

    /// Connections open on the whole broker.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn limit_for(&self, ip: IpAddr) -> usize {
        let per_ip_max = self.per_ip_max.load(Ordering::Relaxed);
        lock(&self.overrides).get(&ip).copied().unwrap_or(per_ip_max)
    }

    /// Takes a slot for a connection from `ip`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let max = self.max.load(Ordering::Relaxed);
        if before >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Broker { limit: max });
        }
        let limit = self.limit_for(ip);
        let mut per_ip = lock(&self.per_ip);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            drop(per_ip);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerIp { limit });
        }
        *count += 1;
        drop(per_ip);
        Ok(ConnSlot { limits: self.clone(), ip })
    }

    fn release(&self, ip: IpAddr) {
        let mut per_ip = lock(&self.per_ip);
        if let Some(count) = per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        drop(per_ip);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted connection's place in the counts; given back when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

/// Locks a map, whether or not a panic poisoned it (the counts stay consistent: each change
/// is one statement).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_limit_counts_every_shard_and_slots_come_back() {
        let limits = ConnLimits::new(2, usize::MAX, &[]);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = limits.admit(ip).unwrap();
        let _b = limits.admit(ip).unwrap();
        assert_eq!(limits.admit(ip).unwrap_err(), Refusal::Broker { limit: 2 });
        drop(a);
        let c = limits.admit(ip);
        assert!(c.is_ok());
        assert_eq!(limits.open(), 2);
        drop(c);
        assert_eq!(limits.open(), 1);
    }

    #[test]
    fn per_ip_limits_and_overrides() {
        let special: IpAddr = [10, 0, 0, 5].into();
        let limits = ConnLimits::new(100, 1, &[(special, 3)]);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let held = limits.admit(ip).unwrap();
        assert_eq!(limits.admit(ip).unwrap_err(), Refusal::PerIp { limit: 1 });
        let specials: Vec<_> = (0..3).map(|_| limits.admit(special).unwrap()).collect();
        assert_eq!(limits.admit(special).unwrap_err(), Refusal::PerIp { limit: 3 });
        assert_eq!(limits.open(), 4);
        drop(held);
        drop(specials);
        assert_eq!(limits.open(), 0);
        assert!(limits.per_ip.lock().unwrap().is_empty());
        let zero = ConnLimits::new(100, 0, &[]);
        assert_eq!(zero.admit(ip).unwrap_err(), Refusal::PerIp { limit: 0 });
        assert_eq!(zero.open(), 0);
    }

    #[test]
    fn limits_set_at_run_time_count_the_connections_already_open() {
        let limits = ConnLimits::new(100, usize::MAX, &[]);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let held: Vec<_> = (0..3).map(|_| limits.admit(ip).unwrap()).collect();
        limits.set(100, 3, &[]);
        assert_eq!(limits.admit(ip).unwrap_err(), Refusal::PerIp { limit: 3 });
        limits.set(100, 3, &[(ip, 4)]);
        let fourth = limits.admit(ip).unwrap();
        limits.set(4, usize::MAX, &[]);
        assert_eq!(limits.admit(ip).unwrap_err(), Refusal::Broker { limit: 4 });
        drop(held);
        drop(fourth);
        assert_eq!(limits.open(), 0);
        assert!(limits.per_ip.lock().unwrap().is_empty());
    }
}

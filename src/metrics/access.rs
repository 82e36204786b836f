//! Process-wide counters of access control: authorization denials per operation and
//! resource type, and quota throttling per quota kind, user and client id.
//!
//! Touched only when something is denied or throttled, never on an allowed request within
//! quota, so a table behind a mutex is cheap enough (as for refusals). The throttle table is
//! keyed by what clients send (user and client id names): it keeps at most
//! [`limits::QUOTA_SENSORS_MAX`] series, and counts the rest under `user="<other>"`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use crate::config::limits;

type Denials = BTreeMap<(&'static str, &'static str), u64>;

fn denials() -> &'static Mutex<Denials> {
    static TABLE: OnceLock<Mutex<Denials>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Counts one denied authorization of `operation` on a resource of `resource_type`.
pub fn count_denial(operation: &'static str, resource_type: &'static str) {
    if let Ok(mut table) = denials().lock() {
        let count = table.entry((operation, resource_type)).or_insert(0);
        *count = count.wrapping_add(1);
    }
}

/// Every (operation, resource type) denied so far, with its count.
pub fn denial_counts() -> Vec<((&'static str, &'static str), u64)> {
    match denials().lock() {
        Ok(table) => table.iter().map(|(k, v)| (*k, *v)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Throttling of one (quota kind, user, client id): times throttled, total ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttled {
    /// Requests throttled.
    pub count: u64,
    /// Sum of their throttle times, ms.
    pub ms: u64,
}

type Throttles = BTreeMap<(&'static str, String, String), Throttled>;

fn throttles() -> &'static Mutex<Throttles> {
    static TABLE: OnceLock<Mutex<Throttles>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Counts a request of `user`/`client_id` throttled for `ms` by a `kind` quota.
pub fn count_throttle(kind: &'static str, user: &str, client_id: &str, ms: u64) {
    let Ok(mut table) = throttles().lock() else { return };
    let key = (kind, user.to_owned(), client_id.to_owned());
    let key = if table.contains_key(&key) || table.len() < limits::QUOTA_SENSORS_MAX {
        key
    } else {
        (kind, "<other>".to_owned(), String::new())
    };
    let entry = table.entry(key).or_default();
    entry.count = entry.count.wrapping_add(1);
    entry.ms = entry.ms.wrapping_add(ms);
}

/// Every (quota kind, user, client id) throttled so far.
pub fn throttle_counts() -> Vec<((&'static str, String, String), Throttled)> {
    match throttles().lock() {
        Ok(table) => table.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_and_throttles_are_counted_by_their_labels() {
        count_denial("TEST_OP", "TEST_TYPE");
        count_denial("TEST_OP", "TEST_TYPE");
        let found = denial_counts().into_iter().find(|(k, _)| *k == ("TEST_OP", "TEST_TYPE"));
        assert!(found.is_some_and(|(_, n)| n >= 2));
        count_throttle("test", "alice", "app", 40);
        count_throttle("test", "alice", "app", 60);
        let key = ("test", "alice".to_owned(), "app".to_owned());
        let found = throttle_counts().into_iter().find(|(k, _)| *k == key);
        assert_eq!(found.map(|(_, t)| t), Some(Throttled { count: 2, ms: 100 }));
    }
}

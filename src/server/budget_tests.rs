//! Unit tests of the shard memory budget (polled by hand: the budget needs no executor).

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::task::noop_waker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;

use super::*;

const MIB: usize = 1 << 20;

/// Polls once: `Some(output)` if the future is done.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Option<F::Output> {
    let waker = noop_waker();
    match future.poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    poll_once(future.as_mut()).expect("resolves at once")
}

#[test]
fn a_small_request_passes_a_large_waiter() {
    let budget = Rc::new(Budget::new(64 * MIB));
    let share_a = ConnShare::new(&budget);
    let share_b = ConnShare::new(&budget);
    let share_c = ConnShare::new(&budget);
    let big = now(share_a.admit(50 * MIB));
    assert_eq!(budget.used(), 50 * MIB);
    let mut waiting = pin!(share_b.admit(10 * MIB));
    assert!(poll_once(waiting.as_mut()).is_none(), "10 MiB does not fit beside 50 MiB");
    let small = now(share_c.admit(1024));
    assert_eq!(budget.used(), 50 * MIB + 1024);
    drop(big);
    let granted = poll_once(waiting.as_mut()).expect("granted once the big one is gone");
    assert_eq!(granted.bytes(), 10 * MIB);
    drop(small);
    drop(granted);
    assert_eq!(budget.used(), 0);
}

#[test]
fn large_grants_leave_the_reserve_to_small_ones() {
    let budget = Rc::new(Budget::new(64 * MIB));
    assert_eq!(budget.grant_bytes_max(), 56 * MIB);
    assert!(budget.can_ever_grant(56 * MIB));
    assert!(!budget.can_ever_grant(56 * MIB + 1));
    let shares: Vec<_> = (0..4).map(|_| ConnShare::new(&budget)).collect();
    let _large = now(shares[0].admit(56 * MIB));
    let mut more = pin!(shares[1].admit(2 * MIB));
    assert!(poll_once(more.as_mut()).is_none(), "the reserve is not for large grants");
    let small = now(shares[2].admit(MIB));
    assert_eq!(budget.used(), 57 * MIB);
    drop(small);
}

#[test]
fn a_cancelled_wait_leaves_nothing_behind() {
    let budget = Rc::new(Budget::new(16 * MIB));
    let share = ConnShare::new(&budget);
    let other = ConnShare::new(&budget);
    let held = now(share.admit(14 * MIB));
    {
        let mut waiting = pin!(other.admit(2 * MIB + 1));
        assert!(poll_once(waiting.as_mut()).is_none());
    }
    drop(held);
    assert_eq!(budget.used(), 0, "the dropped waiter was not granted anything");
    // Granted but dropped before it was collected: given back.
    let held = now(share.admit(14 * MIB));
    let mut acquire = budget.acquire(2 * MIB + 1);
    assert!(poll_once(Pin::new(&mut acquire)).is_none());
    drop(held);
    assert_eq!(budget.used(), 2 * MIB + 1, "granted to the waiter");
    drop(acquire);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_connection_holds_at_most_its_share_beyond_its_first_request() {
    let budget = Rc::new(Budget::new(64 * MIB));
    let share = ConnShare::new(&budget);
    assert_eq!(share.cap(), 4 * MIB);
    let first = now(share.admit(10 * MIB));
    let mut second = pin!(share.admit(1024));
    assert!(poll_once(second.as_mut()).is_none(), "over the connection's share");
    drop(first);
    let second = poll_once(second.as_mut()).expect("admitted once the first is answered");
    let third = now(share.admit(MIB));
    assert_eq!(share.held(), MIB + 1024);
    drop((second, third));
    assert_eq!(share.held(), 0);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_response_larger_than_reserved_is_counted_and_blocks_new_grants() {
    let budget = Rc::new(Budget::new(8 * MIB));
    let share = ConnShare::new(&budget);
    let other = ConnShare::new(&budget);
    let mut held = now(share.admit(1024));
    held.resize(9 * MIB);
    assert_eq!(budget.used(), 9 * MIB);
    let mut waiting = pin!(other.admit(100));
    assert!(poll_once(waiting.as_mut()).is_none(), "over-spent: nothing is granted");
    held.resize(100);
    assert!(poll_once(waiting.as_mut()).is_some());
}

fn fetch(max_bytes: i32, partitions: &[i32]) -> FetchRequest {
    let partitions = partitions
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            FetchPartition::default().with_partition(i as i32).with_partition_max_bytes(m)
        })
        .collect();
    FetchRequest::default()
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default().with_partitions(partitions)])
}

#[test]
fn fetch_reservations_take_what_is_free_and_shrink_the_fetch() {
    let budget = Rc::new(Budget::new(128 * MIB));
    let share = ConnShare::new(&budget);
    let mut req = fetch(50 * MIB as i32, &[50 * MIB as i32]);
    let want = fetch_response_bytes_max(&req);
    assert_eq!(want, 50 * MIB + 64);
    let mut held = now(share.admit(100));
    let got = now(share.reserve_response(&mut held, want));
    assert_eq!(got, share.cap(), "alone on its connection: up to the connection's share");
    shrink_fetch(&mut req, got);
    assert_eq!(req.max_bytes, share.cap() as i32);
    assert_eq!(req.topics[0].partitions[0].partition_max_bytes, share.cap() as i32);
    // Little left: a fetch gets what is free above the reserve, or its floor from the reserve.
    let hog = ConnShare::new(&budget);
    let _hog = now(hog.admit(budget.grant_bytes_max() - budget.used()));
    let other = ConnShare::new(&budget);
    let mut small = now(other.admit(100));
    let got = now(other.reserve_response(&mut small, want));
    assert_eq!(got, FETCH_GRANT_BYTES_MIN);
    assert_eq!(fetch_response_bytes_max(&fetch(1 << 30, &[1000, 2000])), 3000 + 128);
}

//! Small single-executor async helpers (glommio tasks on one thread share these through `Rc`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::Duration;

/// A one-waiter wake-up flag: `notify` sets it and wakes the waiter; `wait` returns once it is
/// set and clears it. Notifications before `wait` are not lost.
#[derive(Debug, Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Sets the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until notified.
    pub async fn wait(&self) {
        futures::future::poll_fn(|cx| {
            if self.flag.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// Lets the other tasks of this executor run once.
pub async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// Runs `future` for at most `limit`; `None` on timeout.
pub async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let timer = glommio::timer::sleep(limit);
    futures::pin_mut!(future);
    futures::pin_mut!(timer);
    match futures::future::select(future, timer).await {
        futures::future::Either::Left((value, _)) => Some(value),
        futures::future::Either::Right(_) => None,
    }
}

/// Writes the decimal digits of `n` into `buf`, returning them (no allocation).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_digits() {
        let mut buf = [0; 20];
        assert_eq!(super::decimal(0, &mut buf), b"0");
        assert_eq!(super::decimal(1234, &mut buf), b"1234");
        assert_eq!(super::decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }
}

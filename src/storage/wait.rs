//! Waking futures without polling: a slab of wakers and a condition future.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::shared::Shared;

/// Wakers of futures waiting for the log to make progress (high watermark, sync, close).
/// Each waiting future owns one slot, re-registers on every poll and frees it on drop, so the
/// list never grows beyond the number of live waiting futures.
#[derive(Default)]
pub(crate) struct WaitList {
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    wakers: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl WaitList {
    fn register(&self, key: &mut Option<usize>, waker: &Waker) {
        let mut slots = self.slots.borrow_mut();
        let index = match *key {
            Some(index) => index,
            None => match slots.free.pop() {
                Some(index) => index,
                None => {
                    slots.wakers.push(None);
                    slots.wakers.len() - 1
                }
            },
        };
        *key = Some(index);
        if let Some(slot) = slots.wakers.get_mut(index) {
            *slot = Some(waker.clone());
        }
    }

    fn remove(&self, index: usize) {
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.wakers.get_mut(index) {
            *slot = None;
            slots.free.push(index);
        }
    }

    /// Wakes every registered future. The borrow is released before waking.
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = {
            let mut slots = self.slots.borrow_mut();
            slots.wakers.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.borrow().wakers.len()
    }
}

/// Resolves once `cond(&shared)` holds; re-checked whenever `shared.progress` wakes it.
pub(crate) struct Until {
    shared: Rc<Shared>,
    cond: Box<dyn Fn(&Shared) -> bool>,
    key: Option<usize>,
}

impl Until {
    pub(crate) fn new(shared: Rc<Shared>, cond: impl Fn(&Shared) -> bool + 'static) -> Until {
        Until { shared, cond: Box::new(cond), key: None }
    }
}

impl Future for Until {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if (this.cond)(&this.shared) {
            return Poll::Ready(());
        }
        this.shared.progress.register(&mut this.key, cx.waker());
        Poll::Pending
    }
}

impl Drop for Until {
    fn drop(&mut self) {
        if let Some(index) = self.key.take() {
            self.shared.progress.remove(index);
        }
    }
}

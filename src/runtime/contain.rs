//! Panic containment: a bug in one task ends that task, never the shard's executor.
//!
//! glommio propagates a panic out of the task that raised it into whatever polled that
//! task: the executor's run loop (which then fails and takes the process down) or, because
//! `spawn_local` runs a new task at once, the task that spawned it. So every task whose work
//! a client can influence (a request handler, a group, a transaction, a message from another
//! shard) runs inside [`contained`] or is spawned with [`spawn_contained`]: a panic while
//! polling it is caught, counted (`strata_refusals_total{reason="handler_panic"}`), logged
//! at ERROR, rate-limited, naming the task and the panic message, and turned into an `Err`
//! for the caller to clean up after (close the connection, reset the group, ...). The future
//! that panicked is dropped and never polled again.
//!
//! [`install_panic_hook`] keeps contained panics out of stderr (a client able to trigger one
//! could otherwise flood it): while a contained task is being polled, the hook only records
//! where the panic happened, for the rate-limited line; any other panic goes to the previous
//! hook (Rust's default prints it), as it will end the process.
//!
//! Containment needs unwinding: the release profile must not set `panic = "abort"`.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

/// The `strata_refusals_total` reason under which contained panics are counted.
pub const PANIC_REASON: &str = "handler_panic";

/// A panic that was contained: its message and where it was raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    /// The panic message (`"<non-string payload>"` when it was not a string).
    pub message: String,
    /// `file:line:column` of the panic, when the hook saw it; empty otherwise.
    pub location: String,
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} (at {})", self.message, self.location)
        }
    }
}

thread_local! {
    /// How many contained polls are on this thread's stack (nested: a contained task that
    /// spawns another runs the new one inside its own poll).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Where the last contained panic on this thread happened (set by the hook).
    static LOCATION: Cell<Option<String>> = const { Cell::new(None) };
}

/// Marks this thread as inside a contained poll until dropped (also when unwinding).
struct Scope;

impl Scope {
    fn enter() -> Scope {
        DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        Scope
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Installs (once per process) the panic hook described in the module docs.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DEPTH.with(Cell::get) > 0 {
                let location = info.location().map(|l| l.to_string()).unwrap_or_default();
                LOCATION.with(|l| l.set(Some(location)));
            } else {
                previous(info);
            }
        }));
    });
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> Panicked {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".to_owned()
    };
    let location = LOCATION.with(Cell::take).unwrap_or_default();
    Panicked { message, location }
}

fn report(what: &dyn fmt::Display, panic: &Panicked) {
    crate::refused!(
        ERROR,
        PANIC_REASON,
        task = %what,
        location = %panic.location,
        "contained a panic, the broker keeps running: {}",
        panic.message
    );
}

/// Runs `f`, containing a panic (counted and logged as coming from `what`).
pub fn contained_sync<T>(what: impl fmt::Display, f: impl FnOnce() -> T) -> Result<T, Panicked> {
    let caught = {
        let _scope = Scope::enter();
        catch_unwind(AssertUnwindSafe(f))
    };
    caught.map_err(|payload| {
        let panic = panicked(payload.as_ref());
        report(&what, &panic);
        panic
    })
}

/// Awaits `future`, containing a panic raised while polling it: the future is dropped and
/// the panic (counted and logged as coming from `what`) returned. Allocation-free: `what`
/// is only formatted when something panicked.
pub async fn contained<W, F>(what: W, future: F) -> Result<F::Output, Panicked>
where
    W: fmt::Display,
    F: Future,
{
    let outcome = {
        let mut future = pin!(future);
        futures::future::poll_fn(|cx| {
            let _scope = Scope::enter();
            match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
                Err(payload) => Poll::Ready(Err(payload)),
            }
        })
        .await
        // `future` is dropped here, at the end of its block, whatever happened.
    };
    outcome.map_err(|payload| {
        let panic = panicked(payload.as_ref());
        report(&what, &panic);
        panic
    })
}

/// Spawns `future` on this shard's executor as in `glommio::spawn_local`, with a panic
/// contained (see [`contained`]); the task then ends as if `future` had returned.
pub fn spawn_contained<W, F>(what: W, future: F) -> glommio::Task<()>
where
    W: fmt::Display + 'static,
    F: Future<Output = ()> + 'static,
{
    glommio::spawn_local(async move {
        let _ = contained(what, future).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count() -> u64 {
        crate::metrics::refusals().into_iter().find(|(r, _)| *r == PANIC_REASON).map_or(0, |c| c.1)
    }

    #[test]
    fn a_panicking_task_is_contained_and_its_spawner_keeps_running() {
        install_panic_hook();
        let before = count();
        let ex = glommio::LocalExecutorBuilder::default().make().expect("an executor");
        let answers = ex.run(async {
            // spawn_local polls the new task at once: the panic must not reach this task.
            let task = spawn_contained("test task", async { panic!("boom {}", 1) });
            task.await;
            let caught = contained("test future", async {
                glommio::executor().yield_now().await;
                panic!("later")
            })
            .await;
            let fine = contained("test future", async { 7 }).await;
            (caught, fine)
        });
        let (caught, fine) = answers;
        let caught = caught.expect_err("the panic comes back as an error");
        assert_eq!(caught.message, "later");
        assert!(caught.location.contains("contain.rs"), "{caught:?}");
        assert_eq!(fine, Ok(7));
        assert!(count() >= before + 2);
        let sync = contained_sync("test closure", || -> u8 { panic!("sync") });
        assert_eq!(sync.map_err(|p| p.message), Err("sync".to_owned()));
        assert_eq!(DEPTH.with(Cell::get), 0, "scopes are left, also when unwinding");
    }
}

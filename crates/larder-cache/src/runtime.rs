//! The process's own Tokio runtime and the bridge from blocking code: `block_on`, the
//! detection of blocking calls made on a runtime thread, and [`spawn_blocking`].

use std::future::Future;

use crate::error::CacheError;

/// The process-wide runtime that drives tier calls made from blocking code and tiers'
/// background work (one worker thread, started on first use).
///
/// One per process: in a child made by `fork()` the parent's runtime has no threads (only the
/// forking thread is copied), so the child starts its own on first use. The inherited one is
/// leaked, never shut down: its shutdown would wait for threads that do not exist.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, CacheError> {
    type Slot = Option<(u64, &'static tokio::runtime::Runtime)>;
    // Each thread remembers the runtime it last got, so the common path takes no lock (a
    // lock taken on every blocking call would also be one more lock a fork could catch held).
    thread_local! {
        static SEEN: std::cell::Cell<Slot> = const { std::cell::Cell::new(None) };
    }
    let generation = larder_fork::generation();
    if let Some((g, rt)) = SEEN.with(std::cell::Cell::get) {
        if g == generation {
            return Ok(rt);
        }
    }
    let rt = process_runtime(generation)?;
    SEEN.with(|s| s.set(Some((generation, rt))));
    Ok(rt)
}

#[cold]
fn process_runtime(generation: u64) -> Result<&'static tokio::runtime::Runtime, CacheError> {
    static RT: std::sync::Mutex<Option<(u64, &'static tokio::runtime::Runtime)>> =
        std::sync::Mutex::new(None);
    // A panic elsewhere while holding it leaves the slot consistent (it is written last).
    let mut slot = RT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((g, rt)) = *slot {
        if g == generation {
            return Ok(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(16)
        .thread_name("larder-cache")
        .on_thread_start(|| BLOCKING_OK.with(|b| b.set(true)))
        .enable_all()
        .build()
        .map_err(|e| CacheError::Runtime(e.to_string()))?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    *slot = Some((generation, rt));
    Ok(rt)
}

thread_local! {
    /// Set on threads where blocking is fine although a Tokio runtime is current: larder's own
    /// runtime threads, and Tokio blocking-pool threads that ran [`spawn_blocking`] (a pool
    /// thread never becomes a worker, so the mark stays true).
    static BLOCKING_OK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static BLOCKING_ON_RUNTIME: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Blocking cache calls (a sync `#[memoize]` function waiting for another caller, or for the
/// shared tier) made on a thread that runs a Tokio runtime, since the process started. Each
/// blocks a runtime thread — and every task queued on it — for up to `lease_wait`.
pub fn blocking_calls_on_runtime() -> u64 {
    BLOCKING_ON_RUNTIME.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs `f` on Tokio's blocking pool, marked as a thread where larder's blocking calls are
/// expected: the way to call a sync `#[memoize]` function from async code (or make the
/// function `async`). Needs a current Tokio runtime.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        BLOCKING_OK.with(|b| b.set(true));
        f()
    })
}

/// Counts, and warns about once per process, a blocking call made where a Tokio runtime is
/// current (an async handler calling a sync memoized function).
pub(crate) fn note_blocking_on_runtime() {
    if tokio::runtime::Handle::try_current().is_err() || BLOCKING_OK.with(std::cell::Cell::get) {
        return;
    }
    if BLOCKING_ON_RUNTIME.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        tracing::warn!(
            thread = std::thread::current().name().unwrap_or("unnamed"),
            "a sync #[memoize] function (or a blocking larder-cache call) is waiting on a thread that runs \
             a Tokio runtime: every task of that thread waits too, up to lease_wait. Make the function \
             `async`, or call it through `larder_cache::spawn_blocking(move || f(args)).await` \
             (this warning is given once; larder_cache::blocking_calls_on_runtime() counts them)"
        );
    }
}

/// Runs a future to completion from sync code: on the cache's runtime when this thread is
/// not inside one, else on a scoped helper thread (a sync call made from async code).
pub(crate) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    note_blocking_on_runtime();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(_) => {
            // Without any runtime, fall back to a throwaway current-thread one.
            return match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(fut),
                Err(e) => panic!("larder-cache: cannot start any tokio runtime: {e}"),
            };
        }
    };
    if tokio::runtime::Handle::try_current().is_err() {
        as_blocking_caller(|| rt.block_on(fut))
    } else {
        std::thread::scope(|s| match s.spawn(|| as_blocking_caller(|| rt.block_on(fut))).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        })
    }
}

thread_local! {
    /// Set while this thread is inside [`block_on`]: a sync caller blocked on a cache call.
    static BLOCKING_CALLER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn as_blocking_caller<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the mark when the call ends, by return or by unwinding.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0;
            let _ = BLOCKING_CALLER.try_with(|b| b.set(before));
        }
    }
    let _restore = Restore(BLOCKING_CALLER.with(|b| b.replace(true)));
    f()
}

/// True when the code running now is a sync caller's own cache call, driven by [`block_on`]
/// on the caller's thread (not a task: a task spawned meanwhile on a current-thread runtime
/// runs on this thread too, and must not block it). A tier may then do blocking I/O here
/// rather than hand it to the blocking pool and wait for it: the caller waits either way, and
/// the hand-off (two thread wake-ups) costs more than a small SQLite write.
pub(crate) fn is_blocking_caller() -> bool {
    BLOCKING_CALLER.with(std::cell::Cell::get) && tokio::task::try_id().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sync_callers_own_call_is_a_blocking_caller() {
        assert!(!is_blocking_caller(), "a plain thread has not called the cache");
        assert!(block_on(async { is_blocking_caller() }), "inside block_on, on the caller's thread");
        let in_task = block_on(async { tokio::spawn(async { is_blocking_caller() }).await.unwrap() });
        assert!(!in_task, "a task is never a blocking caller");
        // A task run by a current-thread runtime on the caller's own thread is not either.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let local = as_blocking_caller(|| {
            rt.block_on(async { tokio::task::spawn(async { is_blocking_caller() }).await.unwrap() })
        });
        assert!(!local);
        assert!(!is_blocking_caller(), "the mark ends with the call");
        let caught = std::panic::catch_unwind(|| as_blocking_caller(|| panic!("a panicking call")));
        assert!(caught.is_err());
        assert!(!is_blocking_caller(), "and with a call that panicked");
    }
}

//! In-process single-flight: concurrent misses of one key run the function once.
//!
//! The first caller becomes the leader and holds a [`LeaderGuard`]; later callers wait on the
//! flight (async callers on a `Notify`, blocking callers on a `Condvar`) and share the leader's
//! value or error. A leader that is cancelled (its future dropped) or panics drops its guard
//! without an outcome: the flight is marked abandoned and the waiters try again, one of them
//! becoming the new leader, so nobody is wedged.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::local::LocalKey;

/// A type-erased outcome shared with waiters.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Outcome {
    /// The value (`V`).
    Value(Shared),
    /// The error (`E`).
    Error(Shared),
}

enum State {
    Running,
    Done(Outcome),
    Abandoned,
}

/// The flight's state and how many blocking callers sleep on `cv`, under one lock: the leader
/// only pays for a `notify_all` (a futex syscall) when somebody is actually asleep.
struct Inner {
    state: State,
    sleepers: usize,
}

pub(crate) struct Flight {
    inner: Mutex<Inner>,
    cv: Condvar,
    notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the data inconsistent (plain
    // assignments), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a waiter learns.
pub(crate) enum Waited {
    Done(Outcome),
    /// The leader gave up; try again.
    Abandoned,
}

impl Flight {
    fn finished(&self) -> Option<Waited> {
        match &lock(&self.inner).state {
            State::Running => None,
            State::Done(o) => Some(Waited::Done(o.clone())),
            State::Abandoned => Some(Waited::Abandoned),
        }
    }

    pub(crate) async fn wait(&self) -> Waited {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(w) = self.finished() {
                return w;
            }
            notified.await;
        }
    }

    pub(crate) fn wait_blocking(&self) -> Waited {
        let mut g = lock(&self.inner);
        loop {
            match &g.state {
                State::Running => {
                    // Counted under the lock before sleeping, so a leader that finishes after
                    // this point sees the sleeper and wakes it (no lost wake-up).
                    g.sleepers += 1;
                    g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner);
                    g.sleepers -= 1;
                }
                State::Done(o) => return Waited::Done(o.clone()),
                State::Abandoned => return Waited::Abandoned,
            }
        }
    }
}

/// The flights in progress, by local key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<LocalKey, Arc<Flight>>>,
}

pub(crate) enum Joined {
    Leader(LeaderGuard),
    Waiter(Arc<Flight>),
}

impl Flights {
    /// Joins the flight of `key`, or starts it (the guard owns a handle on `self`, so a
    /// background refresh can carry it into a task).
    pub(crate) fn join(self: &Arc<Self>, key: &LocalKey) -> Joined {
        let mut map = lock(&self.map);
        if let Some(f) = map.get(key) {
            return Joined::Waiter(f.clone());
        }
        let flight = Arc::new(Flight {
            inner: Mutex::new(Inner { state: State::Running, sleepers: 0 }),
            cv: Condvar::new(),
            notify: Notify::new(),
        });
        map.insert(key.clone(), flight.clone());
        Joined::Leader(LeaderGuard { flights: self.clone(), key: key.clone(), flight, done: false })
    }

    /// The flight of `key` in progress, if any (joins nothing).
    pub(crate) fn running(&self, key: &LocalKey) -> Option<Arc<Flight>> {
        lock(&self.map).get(key).cloned()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// Held by the one caller computing a key. Dropping it without [`complete`](Self::complete)
/// abandons the flight.
pub(crate) struct LeaderGuard {
    flights: Arc<Flights>,
    key: LocalKey,
    flight: Arc<Flight>,
    done: bool,
}

impl LeaderGuard {
    pub(crate) fn complete(mut self, outcome: Outcome) {
        self.finish(State::Done(outcome));
        self.done = true;
    }

    fn finish(&self, state: State) {
        {
            let mut map = lock(&self.flights.map);
            if map.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                map.remove(&self.key);
            }
        }
        let sleepers = {
            let mut g = lock(&self.flight.inner);
            g.state = state;
            g.sleepers
        };
        if sleepers > 0 {
            self.flight.cv.notify_all();
        }
        self.flight.notify.notify_waiters();
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.done {
            self.finish(State::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_leader_releases_waiters() {
        let flights = Arc::new(Flights::default());
        let k = LocalKey::new("t:v1:", b"k");
        let leader = match flights.join(&k) {
            Joined::Leader(g) => g,
            Joined::Waiter(_) => panic!("first caller must lead"),
        };
        let waiter = match flights.join(&k) {
            Joined::Waiter(f) => f,
            Joined::Leader(_) => panic!("second caller must wait"),
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| matches!(waiter.wait_blocking(), Waited::Abandoned));
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(leader);
            assert!(h.join().unwrap());
        });
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join(&k), Joined::Leader(_)));
    }
}

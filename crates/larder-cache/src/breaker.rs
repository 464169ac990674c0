//! A circuit breaker in front of the shared tier.
//!
//! Closed: every call goes to the tier. Each failure adds one to a score and each success
//! takes one off (never below zero); when the score reaches `threshold` the breaker opens:
//! calls skip the tier (the cache answers by computing) for `cooldown`. Then exactly one call
//! is let through as a probe; success closes the breaker, failure opens it for another
//! cool-down. The score (rather than a count of consecutive failures) matters for a half-dead
//! tier: a locked SQLite file still answers reads while every write times out, and a strict
//! "consecutive" rule would never open.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    epoch: Instant,
    failures: AtomicU32,
    /// 0 when closed; otherwise milliseconds since `epoch` until which calls are skipped.
    open_until: AtomicU64,
}

/// What the breaker says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Call the tier.
    Allowed,
    /// Skip the tier.
    Denied,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ms: u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX).max(1),
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that "0" always means closed.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    pub(crate) fn permit(&self) -> Permit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Permit::Allowed;
        }
        let now = self.now_ms();
        if now < until {
            return Permit::Denied;
        }
        // Cool-down over: one caller wins the probe; the others keep skipping for another
        // cool-down unless the probe closes the breaker first.
        let next = now.saturating_add(self.cooldown_ms);
        match self.open_until.compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Permit::Allowed,
            Err(_) => Permit::Denied,
        }
    }

    /// Records a successful call; returns true if this closed an open breaker.
    pub(crate) fn success(&self) -> bool {
        let _ =
            self.failures.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        if self.open_until.load(Ordering::Acquire) == 0 {
            return false;
        }
        // A successful probe closes the breaker and forgets the old failures.
        self.failures.store(0, Ordering::Release);
        self.open_until.swap(0, Ordering::AcqRel) != 0
    }

    /// Records a failed call; returns true if this opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n >= self.threshold {
            let next = self.now_ms().saturating_add(self.cooldown_ms);
            let prev = self.open_until.swap(next, Ordering::AcqRel);
            return prev == 0;
        }
        false
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(50));
        assert_eq!(b.permit(), Permit::Allowed);
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure(), "third consecutive failure opens");
        assert_eq!(b.permit(), Permit::Denied);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.permit(), Permit::Allowed, "one probe after the cool-down");
        assert_eq!(b.permit(), Permit::Denied, "only one probe");
        assert!(b.success());
        assert_eq!(b.permit(), Permit::Allowed);
        assert!(!b.is_open());
    }

    #[test]
    fn successes_pay_back_failures() {
        let b = Breaker::new(2, Duration::from_secs(10));
        b.failure();
        b.success();
        assert!(!b.failure());
        assert_eq!(b.permit(), Permit::Allowed);
        // Half-dead: one success and two failures per round still opens.
        let h = Breaker::new(3, Duration::from_secs(10));
        let mut opened = false;
        for _ in 0..5 {
            h.success();
            opened |= h.failure();
            opened |= h.failure();
        }
        assert!(opened);
    }
}

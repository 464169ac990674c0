//! The clock of the data-key caches' expiry checks: a coarse monotonic clock.
//!
//! `Instant::now()` costs ≈ 50–70 ns on the virtual machines larder runs on (the vDSO falls
//! back to a slow path), a large share of a ≈ 300 ns warm encrypt. On Linux the caches read
//! `CLOCK_MONOTONIC_COARSE` instead (≈ 10 ns; resolution one scheduler tick, 1–4 ms), which is
//! ample for limits measured in minutes. Elsewhere they use `Instant`.

use std::time::Duration;

/// Time since an arbitrary fixed point (boot on Linux), monotonic, coarse.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn now() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Time since the first call in this process, monotonic.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn now() -> Duration {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_and_moving() {
        let a = super::now();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = super::now();
        assert!(b > a && b - a >= std::time::Duration::from_millis(20), "{a:?} {b:?}");
    }
}

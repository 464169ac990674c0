//! Fork detection and a fork-safe random-number generator: the one place in larder that knows
//! about `fork()`.
//!
//! # What it is for
//!
//! Prefork servers (gunicorn `--preload`, uWSGI, Celery's prefork pool, Unicorn, a Rust service
//! that forks after binding its socket) copy the whole memory of a warmed-up process into every
//! worker. Anything that must be unique per process — a random-number generator's state, a
//! cached data key with its usage counters, a connection's socket, a runtime's threads — is then
//! silently shared by siblings. For AES-GCM that is catastrophic: two workers that copied one
//! generator emit the same nonces under the same data key.
//!
//! This crate gives the rest of larder two things:
//!
//! - [`generation`]: a number that is the same for the whole life of a process and changes in
//!   the child after every `fork()`. State that must not cross a fork records the generation it
//!   was made in and is treated as gone when [`generation`] disagrees (one relaxed atomic load,
//!   about a nanosecond, so it can sit on hot paths).
//! - [`fill`], [`u64`] and [`unit_f64`]: a per-thread ChaCha12 generator seeded from the OS that
//!   reseeds itself from the OS after a fork (and every 1 MiB of output), for nonces and other
//!   values that are needed often. [`fill_os`] reads the OS generator directly, for rare values
//!   such as data keys.
//!
//! # How a fork is seen
//!
//! The first call to any function here registers a `pthread_atfork` child handler that bumps a
//! process-wide counter. Every `fork()` made through the C library runs it (Rust's
//! `libc::fork`, Python's `os.fork`, `multiprocessing`'s fork start method, gunicorn, uWSGI).
//! Registering requires `unsafe` (a C call with a function pointer): this crate is the only
//! place in larder's library crates that allows it, and the handler does one atomic increment,
//! which is async-signal-safe. If registration fails, the generation falls back to comparing the
//! process id on every call (slower, still correct).
//!
//! # What it does not do
//!
//! - It cannot see a child made by a raw `clone`/`fork` system call that bypasses the C library
//!   (no mainstream server does this), nor undo anything before the first call registered the
//!   handler: larder calls [`generation`] whenever it creates fork-sensitive state, so the
//!   handler is always in place before such state exists.
//! - It does not make locks held by other threads at the moment of a fork usable in the child
//!   (no library can); larder's own critical sections are a few instructions long and never
//!   span a keyring call or I/O.
//! - It is not a general-purpose RNG crate: no distributions, no seeding from user input.
//!
//! # Example
//!
//! ```
//! let g = larder_fork::generation();
//! let mut nonce = [0u8; 12];
//! larder_fork::fill(&mut nonce).expect("the OS generator answers");
//! // Same process, same generation: state made above may still be used.
//! assert_eq!(g, larder_fork::generation());
//! assert!(larder_fork::unit_f64() > 0.0);
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bumped by the `pthread_atfork` child handler.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// 0: not registered yet; 1: the handler is registered; 2: registration failed (pid fallback).
static MODE: AtomicU8 = AtomicU8::new(0);
/// With the pid fallback: the pid that generation [`PID_GENERATION`] belongs to.
static LAST_PID: AtomicU32 = AtomicU32::new(0);

const UNREGISTERED: u8 = 0;
const HANDLER: u8 = 1;
const PID_FALLBACK: u8 = 2;

/// A number that changes in a child process after every `fork()` and stays the same
/// otherwise. See the [crate docs](crate).
#[inline]
pub fn generation() -> u64 {
    match MODE.load(Ordering::Acquire) {
        HANDLER => GENERATION.load(Ordering::Relaxed),
        UNREGISTERED => {
            register();
            generation()
        }
        _ => pid_generation(),
    }
}

#[cold]
fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        LAST_PID.store(std::process::id(), Ordering::Relaxed);
        let mode = if sys::register_child_handler() { HANDLER } else { PID_FALLBACK };
        MODE.store(mode, Ordering::Release);
    });
}

/// Fallback when no fork handler could be registered: a new generation whenever the pid moved.
fn pid_generation() -> u64 {
    let pid = std::process::id();
    let last = LAST_PID.load(Ordering::Acquire);
    if pid != last && LAST_PID.compare_exchange(last, pid, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
    GENERATION.load(Ordering::Acquire)
}

#[cfg(unix)]
mod sys {
    use std::sync::atomic::Ordering;

    /// Runs in the child right after `fork()`, before `fork()` returns there. One atomic
    /// increment: async-signal-safe, allocates nothing, takes no lock.
    extern "C" fn on_fork_child() {
        super::GENERATION.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn register_child_handler() -> bool {
        // SAFETY: `pthread_atfork` only stores the three function pointers; `None` is allowed
        // for the prepare and parent hooks, and `on_fork_child` is an `extern "C" fn()` with
        // static lifetime that touches nothing but a static atomic. Called once (under `Once`).
        #[allow(unsafe_code)]
        let rc = unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
        rc == 0
    }
}

#[cfg(not(unix))]
mod sys {
    /// No `fork()` outside Unix; the pid fallback is exact there anyway.
    pub(super) fn register_child_handler() -> bool {
        false
    }
}

/// The OS random-number generator failed (it practically never does on a supported platform).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operating system's random-number generator failed")
    }
}

impl std::error::Error for RandomError {}

/// Output after which the per-thread generator reseeds from the OS even without a fork.
const RESEED_BYTES: u64 = 1 << 20;

struct ThreadGen {
    rng: StdRng,
    generation: u64,
    since_seed: u64,
}

thread_local! {
    static RNG: RefCell<Option<ThreadGen>> = const { RefCell::new(None) };
}

fn seeded() -> Result<ThreadGen, RandomError> {
    // Read the generation before the seed: a fork between the two only causes one more reseed.
    let generation = generation();
    let mut seed = [0u8; 32];
    fill_os(&mut seed)?;
    let rng = StdRng::from_seed(seed);
    seed.fill(0);
    Ok(ThreadGen { rng, generation, since_seed: 0 })
}

/// Fills `buf` from this thread's ChaCha12 generator, which is seeded from the OS, reseeded
/// from the OS after a fork and after every 1 MiB of output. Two processes never share its
/// state, so values from it (AES-GCM nonces) never repeat across a forked fleet except by
/// chance.
#[inline]
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    RNG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fresh = match slot.as_ref() {
            Some(g) => g.generation != generation() || g.since_seed >= RESEED_BYTES,
            None => true,
        };
        if fresh {
            *slot = Some(seeded()?);
        }
        let g = slot.as_mut().ok_or(RandomError)?;
        g.rng.fill_bytes(buf);
        g.since_seed = g.since_seed.saturating_add(buf.len() as u64);
        Ok(())
    })
}

/// Fills `buf` straight from the operating system's generator (`getrandom(2)` on Linux).
/// Slower than [`fill`] (a system call each time); for rare values such as data keys.
pub fn fill_os(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}

/// A uniformly random `u64` from [`fill`]; falls back to the OS generator's answer or, if
/// both fail, to a value mixed from the clock and pid (for non-secret uses such as jitter).
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    if fill(&mut b).is_err() && fill_os(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (u64::from(std::process::id()) << 32) ^ generation();
    }
    u64::from_le_bytes(b)
}

/// A uniformly random number in (0, 1] with 53 bits of precision (never 0, so its logarithm
/// is finite), from [`u64`].
pub fn unit_f64() -> f64 {
    let x = u64() >> 11;
    ((x as f64) + 1.0) / ((1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_stable_without_a_fork() {
        let g = generation();
        for _ in 0..1000 {
            assert_eq!(generation(), g);
        }
        assert_eq!(MODE.load(Ordering::Relaxed), HANDLER, "pthread_atfork registration failed");
    }

    #[test]
    fn fill_differs_between_calls_and_threads() {
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        fill(&mut a).unwrap();
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        let c = std::thread::spawn(|| {
            let mut c = [0u8; 16];
            fill(&mut c).unwrap();
            c
        })
        .join()
        .unwrap();
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn unit_is_in_range() {
        for _ in 0..10_000 {
            let u = unit_f64();
            assert!(u > 0.0 && u <= 1.0, "{u}");
        }
    }

    #[test]
    fn reseeds_after_a_mebibyte() {
        let mut buf = vec![0u8; 4096];
        for _ in 0..300 {
            fill(&mut buf).unwrap();
        }
        RNG.with(|c| assert!(c.borrow().as_ref().unwrap().since_seed < RESEED_BYTES));
    }
}

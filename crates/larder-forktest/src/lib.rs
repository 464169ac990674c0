//! Test support: real `fork()`s for larder's fork-safety tests.
//!
//! Prefork servers fork a warmed-up process; the only honest test of "correct after fork" is
//! a real fork. [`fork`] runs a closure in a child process made by `fork()` (with everything
//! the parent had: caches, keys, generator state, runtimes, connections) and [`Child::wait`]
//! collects its exit code. Children report results through files or pipes the test owns.
//!
//! What it does not do: nothing here is for library code (it is never a dependency of a
//! published crate), and it does not run `exec`: the child runs the closure in the copied
//! process image and leaves with `_exit`, skipping the parent's atexit handlers and the test
//! harness's own cleanup.
//!
//! `unsafe` is needed for `fork`, `waitpid` and `_exit` (no safe std API exists); it is
//! confined to this crate.
//!
//! ```
//! let child = larder_forktest::fork(|| 7);
//! assert_eq!(child.wait(), 7);
//! ```

/// A forked child process.
#[derive(Debug)]
#[must_use = "wait for the child, or it becomes a zombie"]
pub struct Child {
    pid: libc::pid_t,
}

/// Forks; the child runs `f` and exits with its return value (a panic in `f` exits with 101,
/// like a failed test). Returns the child in the parent.
///
/// Call it from a test whose other threads are not inside larder at that moment: like any
/// fork of a threaded process, only the calling thread exists in the child.
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: fork() has no memory-safety preconditions; the child only runs `f` (Rust code
    // on the calling thread's copied stack) and then `_exit`s without returning into the
    // harness, so no destructor or atexit handler of the parent runs twice.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork() failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit ends the child at once, which is the point (see above).
        #[allow(unsafe_code)]
        unsafe {
            libc::_exit(code)
        }
    }
    Child { pid }
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits at most `limit` for the child; past it the child is killed with SIGKILL (a hang
    /// in a child must fail the test, not wedge it) and the result is 128 + 9.
    pub fn wait_timeout(self, limit: std::time::Duration) -> i32 {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid writes only to `status`, a valid local.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                return decode(status);
            }
            if std::time::Instant::now() >= deadline {
                // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
                // not yet reaped, so it cannot have been reused.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                }
                return self.wait();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for the child and returns its exit code (128 + signal number if it was killed).
    pub fn wait(self) -> i32 {
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waitpid writes only to `status`, a valid local.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                break;
            }
            let err = std::io::Error::last_os_error();
            assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "waitpid failed: {err}");
        }
        decode(status)
    }
}

fn decode(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

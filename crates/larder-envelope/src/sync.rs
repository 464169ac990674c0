//! The synchronization primitives of the data-key cache: std's, or loom's when the crate is
//! built for model checking (`RUSTFLAGS="--cfg larder_loom"`; see `tests/loom_data_keys.rs`
//! and `docs/reliability.md`). Normal builds use std's and are unaffected.

#[cfg(not(larder_loom))]
pub(crate) use std::sync::{atomic, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(larder_loom)]
pub(crate) use loom::sync::{atomic, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

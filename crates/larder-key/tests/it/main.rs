//! larder-key's integration tests, one binary (ripgrep's `tests/` layout): every file of
//! this directory is a module. Kept apart: `tests/compile_fail.rs` (trybuild builds its own
//! crates) and `tests/cross_process.rs` (re-executes its own binary as child processes).

mod common;
mod derive;
mod encoding;
mod facade;
mod injectivity;
#[cfg(feature = "serde_json")]
mod vectors;

//! The facade's integration tests, one binary (ripgrep's `tests/` layout): every file of
//! this directory is a module.

mod facade;
mod stable_key_derive;

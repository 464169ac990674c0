//! The CLI's integration tests, one binary (ripgrep's `tests/` layout): every file of this
//! directory is a module and runs the real `larder` binary; `common` is the sandboxed command.

mod cache;
mod common;
mod config;
mod crypt;
mod demo;
mod demo_redis;
mod help;
mod index;
mod inspect_v2;
mod key;
mod keyring;
#[cfg(feature = "kms")]
mod kms;
// Not behind `kms`: without the feature these fail with a message saying how to build it.
mod kms_config;
mod mask;
mod rewrap;

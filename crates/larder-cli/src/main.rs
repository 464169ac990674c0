//! The `larder` command: the demo of both stories (`larder demo`), the local keyring
//! (`larder keys`), encryption of values and columns (`larder encrypt|decrypt|inspect`),
//! masking (`larder mask`), blind indexes (`larder index`), column rewraps (`larder rewrap`),
//! cache keys (`larder key`) and shared cache tiers (`larder cache`); `--config` names a keyring
//! configuration file (several keyrings, allow-lists, the index key; `larder config check`).
//!
//! Output: every subcommand that prints data takes `-o/--output text|json` (the older
//! `--json` of `inspect` and `demo` still works; `larder key --json VALUE` is its input).
//!
//! Exit codes: 0 success, 1 an operational error (a file, a keyring, a ciphertext, a server),
//! 2 a usage error (a bad flag or argument). Errors go to stderr as one or two plain sentences.
//! The command is a thin shell: every rule about keys, ciphertexts, keyrings and masking lives in
//! the library crates, so the CLI and a service using the libraries can never disagree.
#![forbid(unsafe_code)]

mod cache;
mod cli;
mod config;
mod crypt;
mod demo;
mod index;
mod keys;
mod mask;
mod rewrap;
mod util;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::util::Usage;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A reader that went away (`larder decrypt --lines ... | head`) is not an error.
            if util::is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("larder: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let keyring = cli.keyring;
    let config = cli.config;
    let keyrings = || config::Keyrings::new(keyring.clone(), config.clone());
    match cli.command {
        Command::Key { namespace, version, json, out } => {
            let key = cache::key_text(&namespace, version, &json, "--json")?;
            if out.json() {
                let v = serde_json::json!({ "namespace": namespace, "version": version, "key": key });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{key}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { command } => keys::run(keyring, command),
        Command::Config { command } => config::run(config, command),
        Command::Encrypt(args) => crypt::encrypt(keyrings()?, args),
        Command::Decrypt(args) => crypt::decrypt(keyrings()?, args),
        Command::Inspect(mut args) => {
            args.json |= args.out.json();
            crypt::inspect(args)
        }
        Command::Mask { kind, values, out } => mask::run(kind, values, out),
        Command::Cache { command } => cache::run(command),
        Command::Index(args) => index::run(keyrings()?, args),
        Command::Rewrap(args) => rewrap::run(keyrings()?, args),
        Command::Demo(mut args) => {
            args.json |= args.out.json();
            demo::run(args)
        }
        Command::Worker(args) => demo::workers::worker_main(args),
    }
}

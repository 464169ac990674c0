//! The `larder` command.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// larder: stable cache keys, a memo cache shared by every worker, envelope encryption.
#[derive(Parser)]
#[command(name = "larder", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the cache key text of a JSON value, as a service using larder would compute it.
    ///
    /// Example: larder key --namespace loan_calc --version 1 --json '{"user_id":7}'
    Key {
        /// The key space's namespace ([a-z0-9_.-], 1-64 bytes).
        #[arg(long)]
        namespace: String,
        /// The key space's version.
        #[arg(long, default_value_t = 1)]
        version: u32,
        /// The value, as JSON.
        #[arg(long)]
        json: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("larder: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Key { namespace, version, json } => {
            let value: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| anyhow::anyhow!("--json is not valid JSON: {e}"))?;
            let mut space = larder_key::KeySpace::new(&namespace, version)?;
            if let Some(secret) = larder_key::KeySecret::from_env()? {
                space = space.with_secret(&secret);
            }
            println!("{}", space.key(&value)?);
            Ok(())
        }
    }
}

//! Small helpers shared by the subcommands: usage errors, input, progress bars.

use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A mistake in how the command was called (exit code 2), as opposed to an operational error.
#[derive(Debug)]
pub struct Usage(pub String);

impl Usage {
    /// A usage error as an `anyhow::Error` (exit code 2).
    pub fn err(msg: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Usage(msg.into()))
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// True when the error chain bottoms out in a broken pipe (the reader of stdout went away).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The keyring file: `--keyring`/`LARDER_KEYRING`, else `$XDG_DATA_HOME/larder/keyring`, else
/// `~/.local/share/larder/keyring`.
pub fn keyring_path(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return Ok(xdg.join("larder").join("keyring"));
        }
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/larder/keyring")),
        None => Err(Usage::err(
            "no keyring location: pass --keyring PATH or set LARDER_KEYRING (neither XDG_DATA_HOME nor HOME is set)",
        )),
    }
}

/// Parses repeated `--context KEY=VALUE` flags into pairs (a usage error when malformed).
pub fn parse_context(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(Usage::err(format!("--context {p:?} is not KEY=VALUE")));
        };
        if k.is_empty() {
            return Err(Usage::err(format!("--context {p:?} has an empty key")));
        }
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(Usage::err(format!("--context key {k:?} is given twice")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Reads all of `--input FILE`, or stdin.
pub fn read_input(input: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match input {
        Some(path) => {
            buf =
                std::fs::read(path).with_context(|| format!("cannot read input file {}", path.display()))?;
        }
        None => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("larder: reading from the terminal; end the input with Ctrl-D");
            }
            stdin.read_to_end(&mut buf).context("cannot read stdin")?;
        }
    }
    Ok(buf)
}

/// A progress bar on stderr, drawn only when stderr is a terminal (hidden otherwise, so logs
/// and pipes never get escape codes). `len = None` gives a counter without a total.
pub fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden()),
        None => ProgressBar::hidden(),
    };
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        let style = match len {
            Some(_) => ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed})"),
            None => ProgressStyle::with_template("{prefix:>12} {spinner} {pos} {msg} ({per_sec}, {elapsed})"),
        };
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

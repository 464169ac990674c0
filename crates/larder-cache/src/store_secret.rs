//! Which secret keys the value MAC of a cache's shared tier (`docs/cache.md`, "Who can do
//! what to a shared tier").
//!
//! In order: the builder's [`secret`](crate::CacheBuilder::secret); `secret=HEX` in the shared
//! tier's URL; `LARDER_KEY_SECRET` (read once per process); then, by tier:
//!
//! * no shared tier: the fixed default key (frames never leave the process);
//! * `sqlite:PATH`: a **per-store secret** in `PATH.secret`, created on first use with 32
//!   bytes from the OS RNG, mode 0600, published atomically (`link(2)` of a fully written
//!   temporary file, so a concurrent opener sees either no file or the whole secret), and
//!   accepted only if it is a regular file owned by this process's effective user with no
//!   group or other permission bits;
//! * Redis, Redis Cluster, or a tier passed to [`shared`](crate::CacheBuilder::shared): an
//!   error saying how to set a secret, unless the caller opted into the public default key
//!   with `insecure_public_mac=true` in the URL or
//!   [`insecure_public_mac`](crate::CacheBuilder::insecure_public_mac).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use larder_key::KeySecret;
use zeroize::Zeroizing;

use crate::error::CacheError;

/// Suffix of the per-store secret file beside a SQLite cache file.
pub const SQLITE_SECRET_SUFFIX: &str = ".secret";

/// Secret-related options carried by a shared tier's URL (removed before the tier sees it).
#[derive(Default)]
pub(crate) struct UrlSecretOptions {
    pub(crate) secret: Option<KeySecret>,
    pub(crate) insecure_public_mac: bool,
}

/// Splits `secret=HEX` and `insecure_public_mac=true|false` out of a tier URL's query.
pub(crate) fn take_url_options(url: &str) -> Result<(String, UrlSecretOptions), CacheError> {
    let mut out = UrlSecretOptions::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), out));
    };
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "secret" => {
                let s = KeySecret::from_hex(v).map_err(|e| {
                    CacheError::Secret(format!("`secret=` in the cache URL: {e} (expected 64 hex digits)"))
                })?;
                out.secret = Some(s);
            }
            "insecure_public_mac" => {
                out.insecure_public_mac = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(CacheError::Config(format!(
                            "`insecure_public_mac={v}` in the cache URL: expected true or false"
                        )))
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, out))
}

/// What the shared tier is, as far as choosing its secret goes.
pub(crate) enum TierKind<'a> {
    None,
    Sqlite(&'a str),
    Other(&'a str),
}

/// The path of the SQLite file in a `sqlite:PATH[?…]` URL.
pub(crate) fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split_once('?').map_or(rest, |(p, _)| p))
}

/// Chooses the MAC secret (see the module docs for the order).
pub(crate) fn resolve(
    explicit: Option<KeySecret>,
    from_url: Option<KeySecret>,
    insecure_public_mac: bool,
    tier: TierKind<'_>,
) -> Result<KeySecret, CacheError> {
    if let Some(s) = explicit.or(from_url) {
        return Ok(s);
    }
    let env =
        KeySecret::from_process_env().map_err(|e| CacheError::Secret(format!("LARDER_KEY_SECRET: {e}")))?;
    if let Some(s) = env {
        return Ok(s);
    }
    if insecure_public_mac {
        tracing::warn!(
            "cache built with insecure_public_mac: anyone who can write to the shared tier can forge entries"
        );
        return Ok(KeySecret::default_key());
    }
    match tier {
        TierKind::None => Ok(KeySecret::default_key()),
        TierKind::Sqlite(path) => per_store_secret(Path::new(path)),
        TierKind::Other(what) => Err(CacheError::Secret(format!(
            "the {what} shared tier has no secret to authenticate its entries, so anyone who can write \
             to it could forge values every worker would serve. Set LARDER_KEY_SECRET to 64 hex digits \
             (for example the output of `openssl rand -hex 32`; the same value in every process), add \
             `secret=<64 hex digits>` to the tier URL, or call CacheBuilder::secret. To accept forgeable \
             entries knowingly, add `insecure_public_mac=true` to the URL or call \
             CacheBuilder::insecure_public_mac(true)"
        ))),
    }
}

/// The path of the per-store secret of the SQLite file `db`.
pub fn sqlite_secret_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(SQLITE_SECRET_SUFFIX);
    PathBuf::from(s)
}

fn secret_error(path: &Path, problem: impl std::fmt::Display) -> CacheError {
    CacheError::Secret(format!(
        "per-store secret {}: {problem}. Fix or remove it (a new one is created on the next start; \
         entries written under the old one become misses), or set LARDER_KEY_SECRET to 64 hex digits \
         in every process that shares the cache",
        path.display()
    ))
}

/// Reads, or creates on first use, the per-store secret beside the SQLite file `db`.
pub(crate) fn per_store_secret(db: &Path) -> Result<KeySecret, CacheError> {
    let path = sqlite_secret_path(db);
    for _ in 0..3 {
        match OpenOptions::new().read(true).open(&path) {
            Ok(f) => return read_secret(&path, f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_secret(&path)?,
            Err(e) => return Err(secret_error(&path, format!("cannot open: {e}"))),
        }
    }
    Err(secret_error(&path, "it keeps disappearing while being opened"))
}

/// The per-store secret beside the SQLite file `db`, if one exists (with the same owner and
/// permission checks as the cache; never created here). For tools that read a store the
/// services wrote, such as `larder cache get`.
pub fn existing_sqlite_secret(db: &Path) -> Result<Option<KeySecret>, CacheError> {
    let path = sqlite_secret_path(db);
    match std::fs::OpenOptions::new().read(true).open(&path) {
        Ok(f) => read_secret(&path, f).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(secret_error(&path, format!("cannot open: {e}"))),
    }
}

fn read_secret(path: &Path, mut f: File) -> Result<KeySecret, CacheError> {
    // The checks are on the opened file (fstat), so a file swapped in after them is not read.
    let meta = f.metadata().map_err(|e| secret_error(path, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(secret_error(path, "not a regular file"));
    }
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(secret_error(
            path,
            format_args!("owned by uid {}, not by this process's user (uid {euid})", meta.uid()),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(secret_error(
            path,
            format_args!("mode {:o} lets other users read or change it (chmod 600 it)", meta.mode() & 0o777),
        ));
    }
    let mut text = Zeroizing::new(String::new());
    (&mut f)
        .take(1024)
        .read_to_string(&mut text)
        .map_err(|e| secret_error(path, format!("cannot read: {e}")))?;
    KeySecret::from_hex(text.trim()).map_err(|e| secret_error(path, format!("not a hex secret ({e})")))
}

fn create_secret(path: &Path) -> Result<(), CacheError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    larder_fork::fill_os(raw.as_mut()).map_err(|e| secret_error(path, format!("the OS RNG failed: {e}")))?;
    let mut hex = Zeroizing::new(String::with_capacity(65));
    for b in raw.iter() {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    hex.push('\n');
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(
        ".tmp.{}.{:08x}",
        std::process::id(),
        u32::from_le_bytes([raw[0], raw[5], raw[9], raw[13]])
    ));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(hex.as_bytes())?;
        f.sync_all()?;
        // link(2) fails if the name exists: the first creator wins and nobody ever sees a
        // partly written secret.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result.map_err(|e| secret_error(path, format!("cannot create: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_are_taken_out() {
        let hex = "00".repeat(32);
        let (url, o) = take_url_options(&format!("redis://h:1/0?secret={hex}&x=1")).unwrap();
        assert_eq!(url, "redis://h:1/0?x=1");
        assert!(o.secret.is_some() && !o.insecure_public_mac);
        let (url, o) = take_url_options("sqlite:/a/b.db?max_entries=5&insecure_public_mac=true").unwrap();
        assert_eq!(url, "sqlite:/a/b.db?max_entries=5");
        assert!(o.secret.is_none() && o.insecure_public_mac);
        assert!(matches!(take_url_options("redis://h?secret=zz"), Err(CacheError::Secret(_))));
        assert!(matches!(take_url_options("redis://h?insecure_public_mac=yes"), Err(CacheError::Config(_))));
        assert_eq!(sqlite_path("sqlite:/a/b.db?max_entries=5"), Some("/a/b.db"));
        assert_eq!(sqlite_path("sqlite:///a/b.db"), Some("/a/b.db"));
    }

    #[test]
    fn redis_without_a_secret_is_refused_with_instructions() {
        let Err(CacheError::Secret(msg)) = resolve(None, None, false, TierKind::Other("redis")) else {
            panic!("expected a secret error")
        };
        assert!(msg.contains("LARDER_KEY_SECRET") && msg.contains("insecure_public_mac=true"), "{msg}");
    }
}

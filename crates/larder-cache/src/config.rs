//! The configuration string: `LARDER_CACHE="local:10000,sqlite:/var/tmp/larder.db"`.
//!
//! A comma-separated list of tiers, at most one local and one shared:
//!
//! | item | meaning |
//! |---|---|
//! | `local` / `local:N` | in-process tier of N entries (default 10,000) |
//! | `local:Nkb`, `local:Nmb`, `local:Ngb` | in-process tier bounded by approximate bytes |
//! | `sqlite:PATH[?max_entries=N&max_bytes=N]` | one SQLite file shared by every process on the host |
//! | `redis://…`, `rediss://…`, `redis+unix://…` | a Redis server (feature `redis`) |
//! | `redis+cluster://host:port,host:port,…`, `rediss+cluster://…` | a Redis Cluster (feature `redis`), `rediss+` over TLS; the commas inside belong to it |
//! | `none` | nothing (useful to switch caching off from the environment) |
//!
//! Redis URLs carry credentials, TLS files, a key prefix, timeouts and connection settings:
//! `redis://USER:PASSWORD@HOST:PORT/DB?prefix=app1:&timeout=500ms&connections=4`,
//! `rediss://:PASSWORD@HOST:6380?ca=/etc/ssl/redis-ca.pem`; the full grammar and every
//! parameter are in [`crate::redis::connect`]. A Redis URL's `timeout` also sets the cache's
//! `op_timeout`. When the cache is built, a Redis tier is checked with a `PING` (and a read
//! under its prefix): wrong credentials, a missing ACL permission or an untrusted
//! certificate fail the build with [`TierError::Auth`](crate::TierError::Auth) / [`TierError::Tls`](crate::TierError::Tls); a server that is
//! only unreachable does not (the cache fails open until it is back).
//!
//! Shared tiers are opened by [`open_shared`]: the `match` on the scheme there is the one
//! place a new tier is registered.

use crate::builder::CacheBuilder;
use crate::cache::Cache;
use crate::duration::parse_duration;
use crate::error::CacheError;

/// Opens a shared tier from its URL (defined in `open.rs`, beside the runtime it needs).
pub use crate::open::open_shared;

/// Entries in the local tier when no size is given.
pub const DEFAULT_LOCAL_ENTRIES: u64 = 10_000;

const SCHEMES: &[&str] =
    &["local", "sqlite", "redis", "rediss", "redis+unix", "redis+cluster", "rediss+cluster", "none"];

fn scheme_of(item: &str) -> Option<&str> {
    let head = item.split(':').next().unwrap_or("");
    SCHEMES.iter().copied().find(|s| *s == head)
}

/// Splits a configuration string into tier items. An item that does not start with a known
/// scheme continues the previous one (so `redis+cluster://a:1,b:2` stays whole).
pub fn split_items(spec: &str) -> Result<Vec<String>, CacheError> {
    let mut items: Vec<String> = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if scheme_of(part).is_some() {
            items.push(part.to_owned());
        } else if let Some(last) = items.last_mut() {
            last.push(',');
            last.push_str(part);
        } else {
            return Err(CacheError::Config(format!(
                "`{part}` does not name a tier (expected one of local:, sqlite:, redis://, rediss://, \
                 redis+unix://, redis+cluster://, none)"
            )));
        }
    }
    Ok(items)
}

fn parse_local(arg: &str) -> Result<(u64, bool), CacheError> {
    let a = arg.trim().to_ascii_lowercase();
    if a.is_empty() {
        return Ok((DEFAULT_LOCAL_ENTRIES, false));
    }
    let (num, mult, by_bytes) = if let Some(n) = a.strip_suffix("kb") {
        (n, 1u64 << 10, true)
    } else if let Some(n) = a.strip_suffix("mb") {
        (n, 1 << 20, true)
    } else if let Some(n) = a.strip_suffix("gb") {
        (n, 1 << 30, true)
    } else {
        (a.as_str(), 1, false)
    };
    let n: u64 = num.trim().parse().map_err(|_| {
        CacheError::Config(format!("`local:{arg}`: expected a number of entries or a size like 64mb"))
    })?;
    if n == 0 {
        return Err(CacheError::Config("`local:0`: the local tier needs room for at least one entry".into()));
    }
    Ok((n.saturating_mul(mult), by_bytes))
}

/// Parses a configuration string into a builder (defaults for everything else).
pub fn parse(spec: &str) -> Result<CacheBuilder, CacheError> {
    let mut b = CacheBuilder::default();
    let mut have_local = false;
    let mut have_shared = false;
    for item in split_items(spec)? {
        let scheme = scheme_of(&item).unwrap_or("");
        match scheme {
            "none" => {}
            "local" => {
                if have_local {
                    return Err(CacheError::Config("more than one local tier".into()));
                }
                have_local = true;
                let arg = item.strip_prefix("local").and_then(|r| r.strip_prefix(':')).unwrap_or("");
                let (n, by_bytes) = parse_local(arg)?;
                b = if by_bytes { b.local_bytes(n) } else { b.local(n) };
            }
            _ => {
                if have_shared {
                    return Err(CacheError::Config("more than one shared tier".into()));
                }
                have_shared = true;
                // A Redis URL's `timeout` bounds the cache's calls too (op_timeout).
                if scheme.starts_with("redis") {
                    if let Some(t) = url_param(&item, "timeout") {
                        let t = parse_duration(t)
                            .map_err(|e| CacheError::Config(format!("redis URL `timeout`: {e}")))?;
                        if t.is_zero() {
                            return Err(CacheError::Config("redis URL `timeout` must be positive".into()));
                        }
                        b = b.op_timeout(t);
                    }
                }
                b = b.shared_url(&item);
            }
        }
    }
    Ok(b)
}

/// The value of query parameter `name` in a tier URL, if present (not decoded).
fn url_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query.rsplit('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

impl Cache {
    /// Builds a cache from a configuration string, e.g. `local:10000,sqlite:/var/tmp/larder.db`
    /// (see [`crate::config`] for the grammar).
    pub fn from_url(spec: &str) -> Result<Cache, CacheError> {
        parse(spec)?.build()
    }

    /// Builds a cache from `LARDER_CACHE`, or a local-only cache of 10,000 entries when it
    /// is unset or empty.
    pub fn from_env() -> Result<Cache, CacheError> {
        match std::env::var("LARDER_CACHE") {
            Ok(s) if !s.trim().is_empty() => Cache::from_url(&s),
            _ => Cache::builder().local(DEFAULT_LOCAL_ENTRIES).build(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_keep_their_commas() {
        let items = split_items("local:100, redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert_eq!(items, vec!["local:100", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"]);
        assert!(split_items("127.0.0.1:7000").is_err());
    }

    #[test]
    fn local_sizes() {
        assert_eq!(parse_local("").unwrap(), (DEFAULT_LOCAL_ENTRIES, false));
        assert_eq!(parse_local("500").unwrap(), (500, false));
        assert_eq!(parse_local("64MB").unwrap(), (64 << 20, true));
        assert!(parse_local("0").is_err());
        assert!(parse_local("lots").is_err());
    }

    #[test]
    fn url_params() {
        assert_eq!(url_param("redis://h?a=1&timeout=2s&timeout=3s", "timeout"), Some("3s"));
        assert_eq!(url_param("redis://h", "timeout"), None);
        // The URL's timeout becomes the cache's op_timeout; a bad one is a config error.
        assert!(parse("redis://127.0.0.1:1?timeout=soon").is_err());
        assert!(parse("redis://127.0.0.1:1?timeout=0s").is_err());
    }

    #[test]
    fn bad_specs_are_typed_errors() {
        assert!(matches!(parse("local:1,local:2"), Err(CacheError::Config(_))));
        assert!(matches!(parse("sqlite:/a,sqlite:/b"), Err(CacheError::Config(_))));
        assert!(matches!(parse("memcached://x"), Err(CacheError::Config(_))));
        assert!(parse("local:10000,sqlite:/tmp/x.db").is_ok());
        assert!(parse("none").is_ok());
    }
}

//! The Redis URL grammar (see [`connect`](super::connect)): node URLs for redis-rs, larder's
//! own parameters (prefix, timeouts, connections, TLS files), percent-decoding.

use std::fmt;
use std::time::Duration;

use super::options::RedisOptions;
use crate::tier::TierError;

/// A Redis URL split into the node URLs redis-rs reads and larder's own parameters.
pub(super) struct RedisUrl {
    pub(super) cluster: bool,
    pub(super) tls: bool,
    pub(super) node_urls: Vec<String>,
    params: Vec<(String, String)>,
}

const OWN_PARAMS: &[&str] =
    &["prefix", "timeout", "connect_timeout", "connections", "retries", "ca", "client_cert", "client_key"];
const PASSED_PARAMS: &[&str] = &["db", "user", "pass", "protocol"];

impl RedisUrl {
    pub(super) fn parse(url: &str) -> Result<Self, TierError> {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut params = Vec::new();
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if OWN_PARAMS.contains(&k) {
                params.push((k.to_owned(), percent_decode(v)?));
            } else if PASSED_PARAMS.contains(&k) {
                passed.push(pair);
            } else {
                return Err(config_err(format!(
                    "unknown redis URL parameter `{k}` (known: {}, {})",
                    OWN_PARAMS.join(", "),
                    PASSED_PARAMS.join(", ")
                )));
            }
        }
        let passed = if passed.is_empty() { String::new() } else { format!("?{}", passed.join("&")) };
        let (cluster, tls, rest) = if let Some(r) = base.strip_prefix("rediss+cluster://") {
            (true, true, r)
        } else if let Some(r) = base.strip_prefix("redis+cluster://") {
            (true, false, r)
        } else if base.starts_with("rediss://") {
            (false, true, base)
        } else if base.starts_with("redis://")
            || base.starts_with("redis+unix://")
            || base.starts_with("unix://")
        {
            (false, false, base)
        } else {
            return Err(config_err(
                "not a redis URL (redis://, rediss://, redis+unix://, redis+cluster://, rediss+cluster://)",
            ));
        };
        let node_urls = if cluster {
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((a, h)) => (format!("{a}@"), h),
                None => (String::new(), rest),
            };
            let scheme = if tls { "rediss" } else { "redis" };
            let urls: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("{scheme}://{auth}{h}{passed}"))
                .collect();
            if urls.is_empty() {
                return Err(config_err("a redis cluster URL needs at least one host:port"));
            }
            urls
        } else {
            vec![format!("{rest}{passed}")]
        };
        Ok(RedisUrl { cluster, tls, node_urls, params })
    }

    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `options` with the URL's parameters applied.
    pub(super) fn apply(&self, mut o: RedisOptions) -> Result<RedisOptions, TierError> {
        let dur = |name: &str| -> Result<Option<Duration>, TierError> {
            self.param(name)
                .map(|v| {
                    crate::duration::parse_duration(v)
                        .map_err(|e| config_err(format!("redis URL `{name}`: {e}")))
                })
                .transpose()
        };
        let int = |name: &str, max: u64| -> Result<Option<u64>, TierError> {
            self.param(name)
                .map(|v| match v.parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(config_err(format!(
                        "redis URL `{name}={v}`: expected a whole number up to {max}"
                    ))),
                })
                .transpose()
        };
        if let Some(p) = self.param("prefix") {
            o.prefix = p.to_owned();
        }
        if let Some(t) = dur("timeout")? {
            o.timeout = t;
        }
        if let Some(t) = dur("connect_timeout")? {
            o.connect_timeout = Some(t);
        }
        if let Some(n) = int("connections", 64)? {
            if n == 0 {
                return Err(config_err("redis URL `connections=0`: at least one connection is needed"));
            }
            o.connections = n as usize;
        }
        if let Some(n) = int("retries", 100)? {
            o.retries = n as u32;
        }
        Ok(o)
    }

    /// The CA and client certificates named by `ca`, `client_cert`, `client_key`, read now.
    pub(super) fn certificates(&self) -> Result<Option<redis::TlsCertificates>, TierError> {
        let (ca, cert, key) = (self.param("ca"), self.param("client_cert"), self.param("client_key"));
        if ca.is_none() && cert.is_none() && key.is_none() {
            return Ok(None);
        }
        if !self.tls {
            return Err(config_err(
                "`ca`, `client_cert` and `client_key` need a TLS URL (rediss://, rediss+cluster://)",
            ));
        }
        let read = |name: &str, path: &str| {
            std::fs::read(path)
                .map_err(|e| config_err(format!("redis URL `{name}`: cannot read {path}: {e}")))
        };
        let client_tls = match (cert, key) {
            (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                client_cert: read("client_cert", c)?,
                client_key: read("client_key", k)?,
            }),
            (None, None) => None,
            _ => return Err(config_err("redis URL: give both `client_cert` and `client_key`, or neither")),
        };
        let root_cert = ca.map(|c| read("ca", c)).transpose()?;
        Ok(Some(redis::TlsCertificates { client_tls, root_cert }))
    }
}

fn percent_decode(s: &str) -> Result<String, TierError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| config_err("bad percent-encoding in a redis URL parameter"))?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| config_err("a redis URL parameter is not UTF-8"))
}

/// A configuration error.
pub(super) fn config_err(e: impl fmt::Display) -> TierError {
    TierError::Config(e.to_string())
}

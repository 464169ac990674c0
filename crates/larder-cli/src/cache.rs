//! `larder cache stats|get|invalidate`: an operator's view of a shared cache tier, and
//! `larder key`'s key text. Opening tiers, key texts, frames and their MACs all belong to the
//! library (`larder::cache`); this only asks and prints.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _};
use larder::cache::frame::{self, MacKey};
use larder::cache::{Inventory, SharedTier};
use larder_key::{KeySecret, KeySpace};

use crate::cli::{CacheCommand, KeyArgs, OutputArgs, StoreArgs};
use crate::util::Usage;

/// The key text a service computes for `json` in `namespace` v`version` (with
/// `LARDER_KEY_SECRET` when set), as `larder key` prints it.
/// `flag` names the option the JSON came from, for the error message.
pub fn key_text(namespace: &str, version: u32, json: &str, flag: &str) -> anyhow::Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Usage::err(format!("{flag} is not valid JSON: {e}")))?;
    larder_key::validate_namespace(namespace).map_err(|e| Usage::err(e.to_string()))?;
    // The same constructor `#[memoize]` uses: keyed with LARDER_KEY_SECRET when set (a malformed
    // secret is an operational error, exit 1).
    let space = KeySpace::new(namespace, version)?;
    Ok(space.key(&value)?.as_str().to_owned())
}

/// How long one tier call may take here (an operator's command, not a request path).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

enum Tier {
    Sqlite(larder::cache::sqlite::SqliteTier),
    Redis(Arc<larder::cache::redis::RedisTier>),
}

pub fn run(command: CacheCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    rt.block_on(async {
        match command {
            CacheCommand::Stats { store, out } => stats(&store, out).await,
            CacheCommand::Get { store, key, out } => get(&store, &key, out).await,
            CacheCommand::Invalidate { store, tag: Some(tag), out, .. } => {
                invalidate_tag(&store, &tag, out).await
            }
            CacheCommand::Invalidate { store, key, tag: None, out } => invalidate(&store, &key, out).await,
        }
    })
}

/// The shared tier of `--store`: a tier URL, or a whole LARDER_CACHE value.
/// The shared tier's URL without the options the cache itself reads (`secret=`,
/// `insecure_public_mac=`), and the secret given there, if any.
fn shared_url_and_secret(store: &StoreArgs) -> anyhow::Result<(String, Option<KeySecret>)> {
    let items = larder::cache::config::split_items(&store.store).map_err(|e| Usage::err(e.to_string()))?;
    let url =
        items.into_iter().find(|i| !(i == "none" || i == "local" || i.starts_with("local:"))).ok_or_else(
            || Usage::err(format!("`{}` names no shared tier (sqlite:PATH or a redis URL)", store.store)),
        )?;
    let Some((base, query)) = url.split_once('?') else { return Ok((url, None)) };
    let mut secret = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("secret", hex)) => {
                secret = Some(KeySecret::from_hex(hex).map_err(|e| Usage::err(format!("`secret=`: {e}")))?)
            }
            Some(("insecure_public_mac", _)) => {}
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, secret))
}

fn shared_url(store: &StoreArgs) -> anyhow::Result<String> {
    Ok(shared_url_and_secret(store)?.0)
}

async fn open(store: &StoreArgs) -> anyhow::Result<(Tier, Arc<dyn SharedTier>)> {
    let url = shared_url(store)?;
    if url.starts_with("sqlite:") {
        let path = url.trim_start_matches("sqlite:").split('?').next().unwrap_or("");
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("no cache file at {path}");
        }
        let opts = larder::cache::TierOptions {
            op_timeout: CALL_TIMEOUT,
            poll_interval: Duration::from_millis(10),
            runtime: tokio::runtime::Handle::current(),
        };
        let tier = larder::cache::sqlite::SqliteTier::open_url(&url, &opts)
            .with_context(|| format!("cannot open {url}"))?;
        return Ok((Tier::Sqlite(tier.clone()), Arc::new(tier)));
    }
    let tier = larder::cache::redis::connect(
        &url,
        larder::cache::redis::RedisOptions::default().timeout(CALL_TIMEOUT),
    )
    .map_err(|e| Usage::err(e.to_string()))?;
    if !tier.verify().await? {
        anyhow::bail!("the Redis server does not answer");
    }
    let tier = Arc::new(tier);
    Ok((Tier::Redis(tier.clone()), tier))
}

async fn stats(store: &StoreArgs, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let (tier, _) = open(store).await?;
    let (name, inv): (&str, Inventory) = match &tier {
        Tier::Sqlite(t) => ("sqlite", t.inventory()?),
        Tier::Redis(t) => (
            if shared_url(store)?.contains("+cluster") { "redis-cluster" } else { "redis" },
            t.inventory().await?,
        ),
    };
    if out.json() {
        let namespaces: serde_json::Map<String, serde_json::Value> = inv
            .namespaces
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!({ "entries": v.entries, "bytes": v.bytes })))
            .collect();
        let v = serde_json::json!({
            "tier": name,
            "entries": inv.entries,
            "bytes": inv.bytes,
            "expired": inv.expired,
            "leases": inv.leases,
            "namespaces": namespaces,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{name}: {} entries, {} bytes, {} expired (not swept yet), {} leases held",
            inv.entries, inv.bytes, inv.expired, inv.leases
        );
        if !inv.namespaces.is_empty() {
            println!("{:<40} {:>10} {:>12}", "namespace:version", "entries", "bytes");
            for (ns, n) in &inv.namespaces {
                println!("{ns:<40} {:>10} {:>12}", n.entries, n.bytes);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_key(key: &KeyArgs) -> anyhow::Result<String> {
    match (&key.key, &key.namespace, &key.value) {
        (Some(k), _, _) => Ok(k.clone()),
        (None, Some(ns), Some(v)) => key_text(ns, key.version, v, "--value"),
        _ => Err(Usage::err("give --key TEXT, or --namespace NS --value JSON")),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The value-MAC key the services sharing this store use: `secret=` in the URL, else
/// `LARDER_KEY_SECRET`, else a SQLite file's per-store secret (never created here), else the
/// public default key (docs/cache.md, "Who can do what to a shared tier").
fn mac_key(store: &StoreArgs) -> anyhow::Result<MacKey> {
    let (url, from_url) = shared_url_and_secret(store)?;
    let secret = match from_url.or(KeySecret::from_env()?) {
        Some(s) => s,
        None => {
            let db = url.strip_prefix("sqlite:").map(|rest| {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                std::path::PathBuf::from(path.split('?').next().unwrap_or(path))
            });
            match db {
                Some(db) => larder::cache::store_secret::existing_sqlite_secret(&db)?
                    .unwrap_or_else(KeySecret::default_key),
                None => KeySecret::default_key(),
            }
        }
    };
    Ok(MacKey::from_secret(&secret))
}

async fn get(store: &StoreArgs, key: &KeyArgs, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let text = entry_key(key)?;
    let mac = mac_key(store)?;
    let (_, tier) = open(store).await?;
    let bytes = tier.get(&text).await.map_err(|e| anyhow!("cannot read {text}: {e}"))?;
    let mut v = serde_json::json!({ "key": text });
    match &bytes {
        None => v["state"] = "missing".into(),
        Some(b) => match frame::open(&mac, &text, b) {
            Err(e) => {
                v["state"] = "refused".into();
                v["reason"] = e.to_string().into();
                v["frame_bytes"] = b.len().into();
            }
            Ok(fr) => {
                let expires = fr.meta.expires_ms();
                v["state"] = if unix_ms() < expires { "fresh" } else { "expired" }.into();
                v["written_ms"] = fr.meta.written_ms.into();
                v["ttl_ms"] = fr.meta.ttl_ms.into();
                v["expires_ms"] = expires.into();
                v["compute_ms"] = fr.meta.delta_ms.into();
                v["payload_bytes"] = fr.payload.len().into();
                v["payload_hex"] = hex(fr.payload).into();
            }
        },
    }
    if out.json() {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("key       {text}");
        println!("state     {}", v["state"].as_str().unwrap_or(""));
        if let Some(r) = v["reason"].as_str() {
            println!("reason    {r} (a corrupt, forged or foreign entry; services treat it as a miss)");
        }
        if v["state"] == "fresh" || v["state"] == "expired" {
            let now = unix_ms();
            let expires = v["expires_ms"].as_u64().unwrap_or(0);
            let left = if expires > now {
                format!("expires in {} s", (expires - now) / 1000)
            } else {
                format!("expired {} s ago", (now - expires) / 1000)
            };
            println!("ttl       {} ms, {left}", v["ttl_ms"]);
            println!("computed  in {} ms", v["compute_ms"]);
            let payload = v["payload_hex"].as_str().unwrap_or("");
            let shown = if payload.len() > 128 {
                format!("{}… ({} bytes)", &payload[..128], v["payload_bytes"])
            } else {
                payload.to_owned()
            };
            println!("payload   {shown}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn invalidate(store: &StoreArgs, key: &KeyArgs, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let text = entry_key(key)?;
    let (_, tier) = open(store).await?;
    let existed = tier.get(&text).await.map_err(|e| anyhow!("cannot read {text}: {e}"))?.is_some();
    tier.delete(&text).await.map_err(|e| anyhow!("cannot delete {text}: {e}"))?;
    tier.publish_invalidation(&text)
        .await
        .map_err(|e| anyhow!("deleted {text}, but cannot tell other processes: {e}"))?;
    if out.json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "key": text, "existed": existed }))?
        );
    } else if existed {
        println!("invalidated {text}");
    } else {
        println!("{text} was not stored; other processes were told to drop local copies anyway");
    }
    Ok(ExitCode::SUCCESS)
}

/// `invalidate --tag`: a new generation for the tag (the library's one write), announced on
/// the backplane.
async fn invalidate_tag(store: &StoreArgs, tag: &str, out: OutputArgs) -> anyhow::Result<ExitCode> {
    use larder::cache::tags;
    tags::validate(tag).map_err(Usage::err)?;
    let mac = mac_key(store)?;
    let (_, tier) = open(store).await?;
    let record = tags::record_key(tag);
    tags::invalidate_in(&*tier, &mac, tag)
        .await
        .map_err(|e| anyhow!("cannot write the record of tag {tag}: {e}"))?;
    tier.publish_invalidation(&tags::message(tag)).await.map_err(|e| {
        anyhow!("invalidated tag {tag} in the shared tier, but cannot tell other processes (they stop serving local copies within their tag_recheck): {e}")
    })?;
    if out.json() {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "tag": tag, "record": record }))?);
    } else {
        println!("invalidated tag {tag} (record {record})");
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

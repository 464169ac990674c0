//! `larder keys init|list|rotate|add-index`: the local keyring file. The file format, its permissions
//! checks and rotation all live in `larder::envelope::LocalKeyring`; this only reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use larder::envelope::LocalKeyring;

use crate::cli::KeysCommand;
use crate::util;

pub fn run(keyring: Option<PathBuf>, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let path = util::keyring_path(keyring)?;
    match command {
        KeysCommand::Init(out) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                create_private_dir(dir)?;
            }
            let ring = LocalKeyring::init(&path)
                .with_context(|| format!("cannot create the keyring {}", path.display()))?;
            if out.json() {
                let v = serde_json::json!({ "keyring": path.display().to_string(), "primary": ring_primary(&ring) });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "created keyring {} (mode 0600) with primary key {}",
                path.display(),
                ring_primary(&ring)
            );
            println!("keep it secret and backed up: without it, nothing encrypted with it can be decrypted");
        }
        KeysCommand::List(out) => {
            let ring = load(&path)?;
            if out.json() {
                let keys: Vec<serde_json::Value> = ring
                    .key_infos()
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id,
                            "primary": k.primary,
                            "created_unix": k.created_unix,
                            "created_utc": utc(k.created_unix),
                        })
                    })
                    .collect();
                let v = serde_json::json!({ "keyring": path.display().to_string(), "keys": keys });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("keyring {}", path.display());
            println!("{:<12} {:<8} created (UTC)", "key id", "role");
            for k in ring.key_infos() {
                let role = if k.primary { "primary" } else { "old" };
                println!("{:<12} {:<8} {}", k.id, role, utc(k.created_unix));
            }
        }
        KeysCommand::Rotate(out) => {
            let id = LocalKeyring::rotate(&path)
                .with_context(|| format!("cannot rotate the keyring {}", path.display()))?;
            if out.json() {
                let v = serde_json::json!({ "keyring": path.display().to_string(), "primary": id });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("new primary key {id} in {}", path.display());
            println!("older keys stay in the file and still decrypt what they encrypted; running processes use the new key once they reload the keyring");
        }
        KeysCommand::AddIndex => {
            let id = LocalKeyring::add_index_key(&path)
                .with_context(|| format!("cannot add an index key to {}", path.display()))?;
            println!("added the blind-index key {id} to {}", path.display());
            println!("`larder index` and BlindIndexer use it; it never encrypts data, and replacing it changes every index value");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the keyring at `path`, with a hint when it does not exist yet.
pub fn load(path: &Path) -> anyhow::Result<LocalKeyring> {
    if !path.exists() {
        anyhow::bail!(
            "no keyring at {}: create one with `larder keys init` (or pass --keyring PATH / set LARDER_KEYRING)",
            path.display()
        );
    }
    LocalKeyring::load(path).with_context(|| format!("cannot load the keyring {}", path.display()))
}

fn ring_primary(ring: &LocalKeyring) -> String {
    use larder::envelope::Keyring as _;
    ring.primary_key_id()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the directory {}", dir.display()))
}

/// `YYYY-MM-DD HH:MM:SS` for seconds since the Unix epoch (civil-from-days, proleptic
/// Gregorian), so listing keys needs no date library.
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_763_895_600), "2025-11-23 11:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
    }
}

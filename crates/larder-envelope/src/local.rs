//! [`LocalKeyring`]: AES-256 master keys kept in a local keyring file.
//!
//! The file format is documented in `docs/keyring-format.md`:
//!
//! ```text
//! larder-keyring 1
//! # comments and blank lines are ignored
//! key k1 1763895600 old AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
//! key k2 1763899200 primary BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
//! ```
// Length: the keyring file's parser, its permission checks and the wrapping are one
// format (`docs/keyring-format.md`); the file passes 700 lines only with its unit tests of the
// parser (from `mod tests`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

use crate::crypto::{aes_from, os_random, unwrap_with, wrap_with, NONCE_LEN};
use crate::error::KeyringFileError;
use crate::keyring::{BoxFuture, DataKey, EncryptedDataKey, GeneratedKey, Keyring, KeyringKind};
use crate::{EncryptionContext, EnvelopeError};

const HEADER: &str = "larder-keyring";
const FORMAT_VERSION: &str = "1";
const MAX_FILE_LEN: u64 = 1 << 20;
const WRAP_LABEL: &[u8] = b"larder-envelope local wrap v1";

/// The most data keys one process wraps under one master key (2^31): every wrap uses a random
/// 96-bit nonce, and NIST SP 800-38D bounds random nonces to 2^32 per key. Half of that per
/// process leaves room for a second process; above it, `generate_data_key` fails with
/// [`EnvelopeError::WrapLimitReached`] until the keyring is rotated (`docs/keyring-format.md`).
pub const MAX_WRAPS_PER_MASTER_KEY: u64 = 1 << 31;

/// One master key: the expanded AES key (zeroized on drop) and its metadata.
struct MasterKey {
    cipher: Aes256Gcm,
    created_unix: u64,
    /// Data keys this process has wrapped under this key.
    wraps: AtomicU64,
}

/// Public, secret-free facts about one key of a local keyring (for `larder keys list`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalKeyInfo {
    /// The key id written into ciphertexts.
    pub id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// True for the key new data keys are generated under.
    pub primary: bool,
}

/// A keyring of AES-256 master keys held in memory, usually loaded from a keyring file.
///
/// Data keys are random 256-bit keys wrapped with AES-256-GCM under the primary master key; the
/// AAD binds the wrapped key to the key id and the encryption context. The keyring refuses to
/// open an EDK whose key id is not in the file. Meant for development, tests, the demo and
/// single-host deployments; production on AWS uses the KMS keyring.
pub struct LocalKeyring {
    keys: BTreeMap<String, MasterKey>,
    primary: String,
    wrap_limit: u64,

    /// The blind-index key (`index` record), if the file has one: never an encryption key.
    index_key: Option<(String, Zeroizing<[u8; 32]>)>,
}

impl fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyring")
            .field("primary", &self.primary)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The parsed file, raw key bytes included (kept only while reading or rewriting the file).
struct FileKey {
    id: String,
    created_unix: u64,
    primary: bool,
    key: Zeroizing<[u8; 32]>,

    /// An `index` record (the blind-index key) rather than a master key.
    index: bool,
}

fn io_err(path: &Path, e: std::io::Error) -> EnvelopeError {
    EnvelopeError::KeyringFile(KeyringFileError::Io {
        path: path.display().to_string(),
        kind: format!("{:?}", e.kind()),
        message: e.to_string(),
    })
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn bad(line: usize, problem: &'static str) -> EnvelopeError {
    EnvelopeError::KeyringFile(KeyringFileError::BadLine { line, problem })
}

fn parse_file(text: &str) -> Result<Vec<FileKey>, EnvelopeError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    let (_, first) = lines.next().ok_or(EnvelopeError::KeyringFile(KeyringFileError::BadHeader))?;
    let mut head = first.split_ascii_whitespace();
    if head.next() != Some(HEADER) {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::BadHeader));
    }
    match (head.next(), head.next()) {
        (Some(FORMAT_VERSION), None) => {}
        (Some(v), None) => {
            return Err(EnvelopeError::KeyringFile(KeyringFileError::UnsupportedVersion(
                v.chars().take(16).collect(),
            )))
        }
        _ => return Err(EnvelopeError::KeyringFile(KeyringFileError::BadHeader)),
    }
    let mut keys: Vec<FileKey> = Vec::new();
    for (idx, line) in lines {
        let n = idx + 1;
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.first() == Some(&"index") {
            keys.push(parse_index_record(n, &fields, &keys)?);
            continue;
        }
        let [tag, id, created, role, key_b64] = fields.as_slice() else {
            return Err(bad(n, "expected `key <id> <created-unix-seconds> <primary|old> <base64url key>`"));
        };
        if *tag != "key" {
            return Err(bad(n, "unknown record (expected `key`)"));
        }
        if !valid_key_id(id) {
            return Err(bad(n, "key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"));
        }
        let created_unix: u64 =
            created.parse().map_err(|_| bad(n, "created time is not a number of seconds"))?;
        let primary = match *role {
            "primary" => true,
            "old" => false,
            _ => return Err(bad(n, "role must be `primary` or `old`")),
        };
        let raw = Zeroizing::new(
            URL_SAFE_NO_PAD.decode(key_b64).map_err(|_| bad(n, "key is not base64url without padding"))?,
        );
        if raw.len() != 32 {
            return Err(bad(n, "key is not 32 bytes"));
        }
        // Copied straight into its zeroize-on-drop home: no stack copy of the key is left.
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&raw);
        if keys.iter().any(|k| k.id == *id) {
            return Err(EnvelopeError::KeyringFile(KeyringFileError::DuplicateKeyId((*id).to_owned())));
        }
        keys.push(FileKey { id: (*id).to_owned(), created_unix, primary, key, index: false });
    }
    match keys.iter().filter(|k| k.primary).count() {
        0 => Err(EnvelopeError::KeyringFile(KeyringFileError::NoPrimary)),
        1 => Ok(keys),
        _ => Err(EnvelopeError::KeyringFile(KeyringFileError::MultiplePrimaries)),
    }
}

/// `index <id> <created-unix-seconds> <base64url key>`: the blind-index key (at most one).
fn parse_index_record(n: usize, fields: &[&str], seen: &[FileKey]) -> Result<FileKey, EnvelopeError> {
    let [_, id, created, key_b64] = fields else {
        return Err(bad(n, "expected `index <id> <created-unix-seconds> <base64url key>`"));
    };
    if !valid_key_id(id) {
        return Err(bad(n, "key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"));
    }
    let created_unix: u64 = created.parse().map_err(|_| bad(n, "created time is not a number of seconds"))?;
    let raw = Zeroizing::new(
        URL_SAFE_NO_PAD.decode(key_b64).map_err(|_| bad(n, "key is not base64url without padding"))?,
    );
    let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| bad(n, "key is not 32 bytes"))?;
    if seen.iter().any(|k| k.id == *id) {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::DuplicateKeyId((*id).to_owned())));
    }
    if seen.iter().any(|k| k.index) {
        return Err(bad(n, "a keyring holds at most one `index` record"));
    }
    Ok(FileKey { id: (*id).to_owned(), created_unix, primary: false, key: Zeroizing::new(arr), index: true })
}

fn render_file(keys: &[FileKey]) -> Zeroizing<String> {
    use std::fmt::Write as _;
    // Sized up front so the buffer never reallocates (a reallocation would leave a copy of the
    // keys behind in freed memory); the base64 of each key is written straight into it.
    let per_key = 4 + 64 + 1 + 20 + 1 + 7 + 1 + 43 + 1;
    let mut s = Zeroizing::new(String::with_capacity(256 + keys.len() * per_key));
    s.push_str("larder-keyring 1\n");
    s.push_str("# larder local keyring: AES-256 master keys. Secret: keep mode 0600, never commit.\n");
    s.push_str("# key <id> <created-unix-seconds> <primary|old> <base64url 32-byte key>\n");
    if keys.iter().any(|k| k.index) {
        s.push_str("# index <id> <created-unix-seconds> <base64url 32-byte blind-index key>\n");
    }
    for k in keys {
        if k.index {
            // Writing into a String cannot fail; the key is encoded straight into `s` (no
            // temporary copy of it to zeroize).
            let _ = write!(s, "index {} {} ", k.id, k.created_unix);
            URL_SAFE_NO_PAD.encode_string(k.key.as_ref(), &mut s);
            s.push('\n');
            continue;
        }
        let role = if k.primary { "primary" } else { "old" };
        // Writing into a String cannot fail.
        let _ = write!(s, "key {} {} {role} ", k.id, k.created_unix);
        URL_SAFE_NO_PAD.encode_string(k.key.as_ref(), &mut s);
        s.push('\n');
    }
    s
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), EnvelopeError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        }));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), EnvelopeError> {
    Ok(())
}

/// The file must belong to the user this process runs as (like ssh with its keys): a keyring
/// someone else owns could be theirs to read or to swap.
#[cfg(unix)]
fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), EnvelopeError> {
    use std::os::unix::fs::MetadataExt;
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::NotOwned {
            path: path.display().to_string(),
            owner: meta.uid(),
            euid,
        }));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_path: &Path, _meta: &fs::Metadata) -> Result<(), EnvelopeError> {
    Ok(())
}

/// The directory holding the keyring must not let other users replace the file: no group or
/// other write bit, unless the sticky bit is set (as on /tmp, where only a file's owner may
/// rename or delete it).
#[cfg(unix)]
fn check_directory(path: &Path) -> Result<(), EnvelopeError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = fs::metadata(dir).map_err(|e| io_err(dir, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::InsecureDirectory {
            path: dir.display().to_string(),
            mode,
        }));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_directory(_path: &Path) -> Result<(), EnvelopeError> {
    Ok(())
}

fn create_new_private(path: &Path) -> Result<fs::File, EnvelopeError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            EnvelopeError::KeyringFile(KeyringFileError::AlreadyExists(path.display().to_string()))
        } else {
            io_err(path, e)
        }
    })
}

fn read_file(path: &Path) -> Result<Vec<FileKey>, EnvelopeError> {
    check_directory(path)?;
    let mut file = fs::File::open(path).map_err(|e| io_err(path, e))?;
    // Checked on the opened file, so a file swapped in afterwards is not the one read.
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::NotAFile(path.display().to_string())));
    }
    check_owner(path, &meta)?;
    check_permissions(path, &meta)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::TooLarge(path.display().to_string())));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    (&mut file).take(MAX_FILE_LEN + 1).read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(EnvelopeError::KeyringFile(KeyringFileError::TooLarge(path.display().to_string())));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad(1, "file is not UTF-8 text"))?;
    parse_file(text)
}

fn write_new(path: &Path, keys: &[FileKey]) -> Result<(), EnvelopeError> {
    check_directory(path)?;
    let mut f = create_new_private(path)?;
    let text = render_file(keys);
    f.write_all(text.as_bytes()).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

/// Rewrites the keyring file atomically: reads it, lets `edit` change the records, writes
/// `<path>.rotate` (created exclusively, mode 0600), syncs it and renames it over the file. The
/// exclusive temporary file serializes concurrent rewrites ([`KeyringFileError::RotationInProgress`]).
fn replace_file(
    path: &Path,
    edit: impl FnOnce(&mut Vec<FileKey>) -> Result<String, EnvelopeError>,
) -> Result<String, EnvelopeError> {
    let tmp = {
        let mut p = path.as_os_str().to_owned();
        p.push(".rotate");
        std::path::PathBuf::from(p)
    };
    let mut f = create_new_private(&tmp).map_err(|e| match e {
        EnvelopeError::KeyringFile(KeyringFileError::AlreadyExists(p)) => {
            EnvelopeError::KeyringFile(KeyringFileError::RotationInProgress(p))
        }
        other => other,
    })?;
    let result = (|| {
        let mut keys = read_file(path)?;
        let id = edit(&mut keys)?;
        let text = render_file(&keys);
        f.write_all(text.as_bytes()).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        Ok(id)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl LocalKeyring {
    /// Creates a new keyring file at `path` (mode 0600) holding one fresh primary key `k1`, and
    /// returns the keyring. Refuses to overwrite an existing file.
    pub fn init(path: impl AsRef<Path>) -> Result<Self, EnvelopeError> {
        let path = path.as_ref();
        let keys = vec![FileKey {
            id: "k1".into(),
            created_unix: now_unix(),
            primary: true,
            key: os_random()?,
            index: false,
        }];
        write_new(path, &keys)?;
        Self::from_file_keys(&keys)
    }

    /// Loads a keyring file. Refuses files readable or writable by group or others, files that
    /// are not regular files, and anything that does not parse exactly (typed errors).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, EnvelopeError> {
        Self::from_file_keys(&read_file(path.as_ref())?)
    }

    /// Adds a fresh key to the file at `path` and makes it the primary; older keys stay (as
    /// `old`) so existing ciphertexts still decrypt. Returns the new key id. The file is replaced
    /// atomically (written to `<path>.rotate` with mode 0600, synced, renamed); a concurrent
    /// rotation fails with [`KeyringFileError::RotationInProgress`] instead of losing a key.
    /// Running processes keep their loaded keyring until they load the file again.
    pub fn rotate(path: impl AsRef<Path>) -> Result<String, EnvelopeError> {
        replace_file(path.as_ref(), |keys| {
            let next = keys
                .iter()
                .filter(|k| !k.index)
                .filter_map(|k| k.id.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()))
                .max()
                .unwrap_or(0)
                .saturating_add(1);
            let mut id = format!("k{next}");
            while keys.iter().any(|k| k.id == id) {
                id.push('x');
            }
            for k in keys.iter_mut() {
                k.primary = false;
            }
            keys.push(FileKey {
                id: id.clone(),
                created_unix: now_unix(),
                primary: true,
                key: os_random()?,
                index: false,
            });
            Ok(id)
        })
    }

    /// Adds a fresh blind-index key (an `index` record, id `i1`) to the file at `path`, the
    /// same atomic way as [`LocalKeyring::rotate`]; see [`crate::blind`]. Refuses when the file
    /// already has one: a new index key changes every index value, so replacing it means
    /// recomputing every stored index (docs/blind-index.md). Returns the new key's id.
    pub fn add_index_key(path: impl AsRef<Path>) -> Result<String, EnvelopeError> {
        replace_file(path.as_ref(), |keys| {
            if let Some(k) = keys.iter().find(|k| k.index) {
                return Err(EnvelopeError::Keyring(format!(
                    "the keyring already has the index key {:?}; a second one would change every blind index",
                    k.id
                )));
            }
            let mut id = String::from("i1");
            while keys.iter().any(|k| k.id == id) {
                id.push('x');
            }
            keys.push(FileKey {
                id: id.clone(),
                created_unix: now_unix(),
                primary: false,
                key: os_random()?,
                index: true,
            });
            Ok(id)
        })
    }

    /// The blind indexer over this file's index key, or `None` when the file has no `index`
    /// record (add one with [`LocalKeyring::add_index_key`] / `larder keys add-index`).
    pub fn blind_indexer(&self) -> Option<crate::blind::BlindIndexer> {
        self.index_key.as_ref().map(|(id, key)| crate::blind::BlindIndexer::from_key_bytes(id, **key))
    }

    /// A keyring of one primary key given in memory (for tests and test vectors). `id` must be
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub fn from_key_bytes(id: &str, mut key: [u8; 32]) -> Result<Self, EnvelopeError> {
        // Our copy of the caller's bytes is wiped; the caller wipes theirs.
        let mut owned = Zeroizing::new([0u8; 32]);
        owned.copy_from_slice(&key);
        zeroize::Zeroize::zeroize(&mut key);
        let key = owned;
        if !valid_key_id(id) {
            return Err(EnvelopeError::Keyring(
                "key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            ));
        }
        Self::from_file_keys(&[FileKey {
            id: id.into(),
            created_unix: now_unix(),
            primary: true,
            key,
            index: false,
        }])
    }

    fn from_file_keys(keys: &[FileKey]) -> Result<Self, EnvelopeError> {
        let mut map = BTreeMap::new();
        let mut primary = None;
        let mut index_key = None;
        for k in keys {
            if k.index {
                index_key = Some((k.id.clone(), Zeroizing::new(*k.key)));
                continue;
            }
            if k.primary {
                primary = Some(k.id.clone());
            }
            map.insert(
                k.id.clone(),
                MasterKey {
                    cipher: aes_from(&k.key),
                    created_unix: k.created_unix,
                    wraps: AtomicU64::new(0),
                },
            );
        }
        let primary = primary.ok_or(EnvelopeError::KeyringFile(KeyringFileError::NoPrimary))?;
        Ok(LocalKeyring { keys: map, primary, wrap_limit: MAX_WRAPS_PER_MASTER_KEY, index_key })
    }

    /// Lowers the number of data keys this keyring wraps under one master key before refusing
    /// with [`EnvelopeError::WrapLimitReached`] (default and maximum
    /// [`MAX_WRAPS_PER_MASTER_KEY`]). A warning is logged at half the limit.
    #[must_use]
    pub fn with_wrap_limit(mut self, limit: u64) -> Self {
        self.wrap_limit = limit.clamp(1, MAX_WRAPS_PER_MASTER_KEY);
        self
    }

    /// Data keys this process has wrapped under master key `key_id` so far.
    pub fn wraps(&self, key_id: &str) -> Option<u64> {
        self.keys.get(key_id).map(|k| k.wraps.load(Ordering::Relaxed))
    }

    /// Counts one wrap under the primary key; refuses beyond the limit.
    fn count_wrap(&self, master: &MasterKey) -> Result<(), EnvelopeError> {
        let n = master.wraps.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n > self.wrap_limit {
            master.wraps.fetch_sub(1, Ordering::Relaxed);
            return Err(EnvelopeError::WrapLimitReached {
                key_id: self.primary.clone(),
                limit: self.wrap_limit,
            });
        }
        if n == self.wrap_limit.div_ceil(2) {
            tracing::warn!(
                key_id = %self.primary,
                wraps = n,
                limit = self.wrap_limit,
                "half of the data-key wraps allowed under this local master key are used; rotate the keyring \
                 (`larder keys rotate`)"
            );
        }
        Ok(())
    }

    /// Ids, creation times and the primary marker of the keys (no key material).
    pub fn key_infos(&self) -> Vec<LocalKeyInfo> {
        self.keys
            .iter()
            .map(|(id, k)| LocalKeyInfo {
                id: id.clone(),
                created_unix: k.created_unix,
                primary: *id == self.primary,
            })
            .collect()
    }

    fn wrap_aad(key_id: &str, context: &EncryptionContext) -> Result<Vec<u8>, EnvelopeError> {
        let ctx = context.canonical()?;
        let mut aad = Vec::with_capacity(WRAP_LABEL.len() + 1 + key_id.len() + ctx.len());
        aad.extend_from_slice(WRAP_LABEL);
        // Key ids are at most 64 bytes (checked on load), so the length fits a byte.
        aad.push(u8::try_from(key_id.len()).unwrap_or(u8::MAX));
        aad.extend_from_slice(key_id.as_bytes());
        aad.extend_from_slice(ctx);
        Ok(aad)
    }

    fn generate_sync(&self, context: &EncryptionContext) -> Result<GeneratedKey, EnvelopeError> {
        let master =
            self.keys.get(&self.primary).ok_or_else(|| EnvelopeError::UnknownKeyId(self.primary.clone()))?;
        let aad = Self::wrap_aad(&self.primary, context)?;
        self.count_wrap(master)?;
        // Data key and wrap nonce straight from the OS: no user-space generator state that a
        // forked sibling could share (docs/keyring-format.md).
        let key = os_random::<32>()?;
        let nonce = os_random::<NONCE_LEN>()?;
        let wrapped = wrap_with(&master.cipher, *nonce, &aad, key.as_ref())?;
        Ok(GeneratedKey {
            plaintext: DataKey::from_slice(key.as_ref())?,
            edk: EncryptedDataKey {
                kind: KeyringKind::Local,
                key_id: self.primary.clone(),
                ciphertext: wrapped,
            },
        })
    }

    fn decrypt_sync(
        &self,
        edk: &EncryptedDataKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, EnvelopeError> {
        if edk.kind != KeyringKind::Local {
            return Err(EnvelopeError::UnsupportedKeyring(edk.kind.to_byte()));
        }
        let master =
            self.keys.get(&edk.key_id).ok_or_else(|| EnvelopeError::UnknownKeyId(edk.key_id.clone()))?;
        if edk.ciphertext.len() != NONCE_LEN + 32 + crate::crypto::TAG_LEN {
            return Err(EnvelopeError::InvalidEncryptedDataKey(
                "wrapped data key has the wrong length".into(),
            ));
        }
        let plain = unwrap_with(&master.cipher, &Self::wrap_aad(&edk.key_id, context)?, &edk.ciphertext)?;
        DataKey::from_slice(&plain)
    }

    /// Wraps another keyring's data key under the primary master key (a fresh OS nonce), the
    /// same EDK `generate_data_key` would have made for it.
    fn wrap_existing(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<EncryptedDataKey, EnvelopeError> {
        let master =
            self.keys.get(&self.primary).ok_or_else(|| EnvelopeError::UnknownKeyId(self.primary.clone()))?;
        let aad = Self::wrap_aad(&self.primary, context)?;
        self.count_wrap(master)?;
        let nonce = os_random::<NONCE_LEN>()?;
        let wrapped = wrap_with(&master.cipher, *nonce, &aad, key.expose_secret())?;
        Ok(EncryptedDataKey { kind: KeyringKind::Local, key_id: self.primary.clone(), ciphertext: wrapped })
    }

    /// Test-vector path: wraps a given data key with a given nonce. Deterministic output;
    /// never use outside test vectors (reusing a nonce under a master key breaks AES-GCM).
    /// Only compiled with the `test-vectors` feature.
    #[cfg(feature = "test-vectors")]
    pub fn dangerous_wrap_fixed(
        &self,
        data_key: [u8; 32],
        nonce: [u8; 12],
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, EnvelopeError> {
        let data_key = Zeroizing::new(data_key);
        let master =
            self.keys.get(&self.primary).ok_or_else(|| EnvelopeError::UnknownKeyId(self.primary.clone()))?;
        self.count_wrap(master)?;
        let wrapped =
            wrap_with(&master.cipher, nonce, &Self::wrap_aad(&self.primary, context)?, data_key.as_ref())?;
        Ok(GeneratedKey {
            plaintext: DataKey::from_slice(data_key.as_ref())?,
            edk: EncryptedDataKey {
                kind: KeyringKind::Local,
                key_id: self.primary.clone(),
                ciphertext: wrapped,
            },
        })
    }
}

impl Keyring for LocalKeyring {
    fn kind(&self) -> KeyringKind {
        KeyringKind::Local
    }

    fn primary_key_id(&self) -> String {
        self.primary.clone()
    }

    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        Box::pin(async move { self.generate_sync(context) })
    }

    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        Box::pin(async move { self.decrypt_sync(edk, context) })
    }

    fn encrypt_data_key<'a>(
        &'a self,
        key: &'a DataKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<EncryptedDataKey, EnvelopeError>> {
        Box::pin(async move { self.wrap_existing(key, context) })
    }

    fn accepts(&self, edk: &EncryptedDataKey) -> bool {
        edk.kind == KeyringKind::Local && self.keys.contains_key(&edk.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_bad_files_with_typed_errors() {
        let k = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let ok = format!("larder-keyring 1\nkey k1 10 primary {k}\n");
        assert_eq!(parse_file(&ok).unwrap().len(), 1);
        let cases: Vec<(String, EnvelopeError)> = vec![
            (String::new(), EnvelopeError::KeyringFile(KeyringFileError::BadHeader)),
            ("nope 1\n".into(), EnvelopeError::KeyringFile(KeyringFileError::BadHeader)),
            (
                "larder-keyring 2\n".into(),
                EnvelopeError::KeyringFile(KeyringFileError::UnsupportedVersion("2".into())),
            ),
            ("larder-keyring 1\n".into(), EnvelopeError::KeyringFile(KeyringFileError::NoPrimary)),
            (
                format!("larder-keyring 1\nkey k1 10 primary {k}\nkey k1 11 old {k}\n"),
                EnvelopeError::KeyringFile(KeyringFileError::DuplicateKeyId("k1".into())),
            ),
            (
                format!("larder-keyring 1\nkey k1 10 primary {k}\nkey k2 11 primary {k}\n"),
                EnvelopeError::KeyringFile(KeyringFileError::MultiplePrimaries),
            ),
            (
                format!("larder-keyring 1\nkey k1 x primary {k}\n"),
                bad(2, "created time is not a number of seconds"),
            ),
            (format!("larder-keyring 1\nkey k1 10 boss {k}\n"), bad(2, "role must be `primary` or `old`")),
            ("larder-keyring 1\nkey k1 10 primary AAAA\n".into(), bad(2, "key is not 32 bytes")),
            (
                "larder-keyring 1\nkey k1 10 primary !!!!\n".into(),
                bad(2, "key is not base64url without padding"),
            ),
            (
                format!("larder-keyring 1\nkey k/1 10 primary {k}\n"),
                bad(2, "key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            ),
            (
                format!("larder-keyring 1\nkey k1 10 primary {k} extra\n"),
                bad(2, "expected `key <id> <created-unix-seconds> <primary|old> <base64url key>`"),
            ),
            (format!("larder-keyring 1\nkye k1 10 primary {k}\n"), bad(2, "unknown record (expected `key`)")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_file(&text).err(), Some(want), "{text:?}");
        }
    }

    #[test]
    fn debug_prints_ids_only() {
        let kr = LocalKeyring::from_key_bytes("k1", [0x42; 32]).unwrap();
        let d = format!("{kr:?}");
        assert_eq!(d, "LocalKeyring { primary: \"k1\", key_ids: [\"k1\"] }");
    }
}

//! The keyring configuration file (`--config larder.toml` or `LARDER_CONFIG`): several keyrings
//! in order (local keyring files, AWS KMS keys), their decrypt allow-lists and where the
//! blind-index key comes from. Used by `encrypt`, `decrypt`, `rewrap` and `index`; documented in
//! docs/keyring-config.md with the complete example docs/larder.example.toml.
//!
//! Parsing is defensive: the file is read as a TOML table and walked field by field, so every
//! mistake (a missing file, a syntax error, an unknown or misspelt field, a wrong type, a bad
//! ARN) is a [`ConfigError`] that names the file and the field (`keyring[2].key_arn`), never a
//! panic and never a silently ignored setting.
// Length: one file format: its schema, the defensive checks that name each field, and the
// building of keyrings from it; about a third is the field-by-field error reporting the
// format promises. Unit tests from `mod tests`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use larder::envelope::{
    DataKey, EncryptedDataKey, EncryptionContext, Envelope, EnvelopeError, GeneratedKey, Keyring,
    KeyringKind, LocalKeyring,
};
use toml::{Table, Value};

/// The environment variable naming the configuration file.
pub const ENV: &str = "LARDER_CONFIG";

/// The only `version` this larder reads.
pub const VERSION: i64 = 1;

/// A mistake in the configuration file. Every variant names the file, and the field where there
/// is one (`keyring[1].region`, counting from 0 as TOML arrays do).
#[derive(Debug)]
pub enum ConfigError {
    /// The file does not exist.
    NotFound { path: PathBuf },
    /// The file exists but cannot be read.
    Io { path: PathBuf, source: std::io::Error },
    /// Not valid TOML (the message carries the line and column).
    Syntax { path: PathBuf, message: String },
    /// A field this larder does not know (a typo, or a newer larder's setting).
    UnknownField { path: PathBuf, field: String, expected: &'static [&'static str] },
    /// A required field is absent.
    MissingField { path: PathBuf, field: String },
    /// A field has the wrong TOML type.
    WrongType { path: PathBuf, field: String, expected: &'static str },
    /// A field has a value of the right type that is not allowed.
    BadValue { path: PathBuf, field: String, reason: String },
    /// An AWS KMS key ARN that is not one.
    BadArn { path: PathBuf, field: String, value: String, reason: &'static str },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotFound { path } => write!(
                f,
                "the keyring configuration file {} does not exist (--config / {ENV}; see docs/keyring-config.md)",
                path.display()
            ),
            ConfigError::Io { path, source } => {
                write!(f, "cannot read the keyring configuration file {}: {source}", path.display())
            }
            ConfigError::Syntax { path, message } => {
                write!(f, "{}: not valid TOML: {}", path.display(), message.trim_end())
            }
            ConfigError::UnknownField { path, field, expected } => write!(
                f,
                "{}: unknown field `{field}` (expected one of: {})",
                path.display(),
                expected.join(", ")
            ),
            ConfigError::MissingField { path, field } => {
                write!(f, "{}: missing field `{field}`", path.display())
            }
            ConfigError::WrongType { path, field, expected } => {
                write!(f, "{}: `{field}` must be {expected}", path.display())
            }
            ConfigError::BadValue { path, field, reason } => {
                write!(f, "{}: `{field}`: {reason}", path.display())
            }
            ConfigError::BadArn { path, field, value, reason } => write!(
                f,
                "{}: `{field}` = {value:?} is not an AWS KMS key ARN: {reason} (expected \
                 arn:aws:kms:REGION:ACCOUNT:key/KEY_ID or arn:aws:kms:REGION:ACCOUNT:alias/NAME)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a keyring after the first does with new data keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every new data key is also wrapped under it (one more EDK per ciphertext, format v2).
    Wrap,
    /// Only tried to decrypt (old ciphertexts; an escrow copy kept offline).
    Decrypt,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Wrap => "wrap",
            Role::Decrypt => "decrypt",
        }
    }
}

/// An AWS KMS key ARN, checked: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` or `…:alias/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsArn {
    pub arn: String,
    pub region: String,
}

/// Where one keyring's keys are.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local keyring file; `decrypt_key_ids` limits which of its master keys may open data
    /// keys (`None`: all of them).
    Local { path: PathBuf, decrypt_key_ids: Option<Vec<String>> },
    /// An AWS KMS key; `decrypt_key_arns` are further keys it may decrypt under (the key itself
    /// always may).
    AwsKms { key: KmsArn, region: String, endpoint: Option<String>, decrypt_key_arns: Vec<KmsArn> },
}

/// One `[[keyring]]` entry.
#[derive(Debug, Clone)]
pub struct KeyringConfig {
    /// `name`, or `keyring[N]`.
    pub name: String,
    /// The field path prefix in messages (`keyring[N]`).
    pub field: String,
    pub role: Role,
    pub source: Source,
}

/// A parsed configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (relative paths inside are relative to its directory).
    pub path: PathBuf,
    /// In order: the first makes the data keys; decryption tries them in this order.
    pub keyrings: Vec<KeyringConfig>,
    /// The local keyring file whose `index` record is the blind-index key (`[index] path`),
    /// else the first local keyring's.
    pub index_path: Option<PathBuf>,
}

const TOP_FIELDS: &[&str] = &["version", "keyring", "index"];
const KEYRING_COMMON: &[&str] = &["type", "name", "role"];
const LOCAL_FIELDS: &[&str] = &["type", "name", "role", "path", "decrypt_key_ids"];
const KMS_FIELDS: &[&str] = &["type", "name", "role", "key_arn", "region", "endpoint", "decrypt_key_arns"];
const INDEX_FIELDS: &[&str] = &["path"];

struct Walker<'a> {
    path: &'a Path,
    dir: PathBuf,
}

impl Walker<'_> {
    fn unknown(
        &self,
        table: &Table,
        prefix: &str,
        allowed: &'static [&'static str],
    ) -> Result<(), ConfigError> {
        match table.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ConfigError::UnknownField {
                path: self.path.to_owned(),
                field: join(prefix, k),
                expected: allowed,
            }),
            None => Ok(()),
        }
    }

    fn wrong(&self, field: String, expected: &'static str) -> ConfigError {
        ConfigError::WrongType { path: self.path.to_owned(), field, expected }
    }

    fn bad(&self, field: String, reason: impl Into<String>) -> ConfigError {
        ConfigError::BadValue { path: self.path.to_owned(), field, reason: reason.into() }
    }

    fn string(&self, table: &Table, prefix: &str, key: &str) -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(self.bad(join(prefix, key), "must not be empty"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(join(prefix, key), "a string")),
        }
    }

    fn required(&self, table: &Table, prefix: &str, key: &str) -> Result<String, ConfigError> {
        self.string(table, prefix, key)?
            .ok_or_else(|| ConfigError::MissingField { path: self.path.to_owned(), field: join(prefix, key) })
    }

    fn strings(&self, table: &Table, prefix: &str, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let field = join(prefix, key);
        match table.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                        Value::String(_) => {
                            return Err(self.bad(format!("{field}[{i}]"), "must not be empty"))
                        }
                        _ => return Err(self.wrong(format!("{field}[{i}]"), "a string")),
                    }
                }
                if out.is_empty() {
                    return Err(self.bad(
                        field,
                        "an empty allow-list would refuse everything; leave the field out to allow every key",
                    ));
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.wrong(field, "an array of strings")),
        }
    }

    fn file(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }

    fn arn(&self, field: String, value: &str) -> Result<KmsArn, ConfigError> {
        parse_arn(value).map_err(|reason| ConfigError::BadArn {
            path: self.path.to_owned(),
            field,
            value: value.to_owned(),
            reason,
        })
    }

    fn keyring(&self, i: usize, v: &Value) -> Result<KeyringConfig, ConfigError> {
        let prefix = format!("keyring[{i}]");
        let Value::Table(t) = v else {
            return Err(self.wrong(prefix, "a table ([[keyring]])"));
        };
        let kind = self.required(t, &prefix, "type")?;
        let name = self.string(t, &prefix, "name")?.unwrap_or_else(|| prefix.clone());
        let role = match self.string(t, &prefix, "role")?.as_deref() {
            None | Some("wrap") => Role::Wrap,
            Some("decrypt") => Role::Decrypt,
            Some(other) => {
                return Err(
                    self.bad(join(&prefix, "role"), format!("{other:?}: expected \"wrap\" or \"decrypt\""))
                )
            }
        };
        if i == 0 && role == Role::Decrypt {
            return Err(self.bad(
                join(&prefix, "role"),
                "the first keyring makes the data keys, so it cannot be decrypt-only; list a writing keyring first",
            ));
        }
        let source = match kind.as_str() {
            "local" => {
                self.unknown(t, &prefix, LOCAL_FIELDS)?;
                let path = self.file(&self.required(t, &prefix, "path")?);
                let decrypt_key_ids = self.strings(t, &prefix, "decrypt_key_ids")?;
                Source::Local { path, decrypt_key_ids }
            }
            "aws-kms" => {
                self.unknown(t, &prefix, KMS_FIELDS)?;
                let arn_field = join(&prefix, "key_arn");
                let key = self.arn(arn_field, &self.required(t, &prefix, "key_arn")?)?;
                let region = match self.string(t, &prefix, "region")? {
                    None => key.region.clone(),
                    Some(r) if r == key.region => r,
                    Some(r) => {
                        return Err(self.bad(
                            join(&prefix, "region"),
                            format!(
                                "{r:?} differs from the key ARN's region {:?}; a KMS key is only used in its own region (leave `region` out to use the ARN's)",
                                key.region
                            ),
                        ))
                    }
                };
                let endpoint = self.string(t, &prefix, "endpoint")?;
                if let Some(e) = &endpoint {
                    if !(e.starts_with("https://") || e.starts_with("http://")) {
                        return Err(
                            self.bad(join(&prefix, "endpoint"), format!("{e:?} is not an http(s):// URL"))
                        );
                    }
                }
                let mut decrypt_key_arns = Vec::new();
                for (j, a) in
                    self.strings(t, &prefix, "decrypt_key_arns")?.unwrap_or_default().iter().enumerate()
                {
                    let field = format!("{prefix}.decrypt_key_arns[{j}]");
                    let arn = self.arn(field.clone(), a)?;
                    if arn.region != region {
                        return Err(self.bad(
                            field,
                            format!(
                                "{a:?} is in region {:?}, this keyring calls KMS in {region:?}",
                                arn.region
                            ),
                        ));
                    }
                    decrypt_key_arns.push(arn);
                }
                Source::AwsKms { key, region, endpoint, decrypt_key_arns }
            }
            other => {
                self.unknown(t, &prefix, KEYRING_COMMON).ok();
                return Err(
                    self.bad(join(&prefix, "type"), format!("{other:?}: expected \"local\" or \"aws-kms\""))
                );
            }
        };
        Ok(KeyringConfig { name, field: prefix, role, source })
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Checks an AWS KMS key or alias ARN and returns it with its region.
pub fn parse_arn(s: &str) -> Result<KmsArn, &'static str> {
    if !s.starts_with("arn:") {
        return Err("a full ARN is needed (it names the region), not a bare key id or alias");
    }
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts.as_slice() else {
        return Err("an ARN has six `:`-separated parts");
    };
    if !partition.starts_with("aws") || !partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        return Err("the partition must be aws, aws-cn, aws-us-gov, …");
    }
    if *service != "kms" {
        return Err("not a KMS ARN (the service part must be `kms`)");
    }
    let region_ok = !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    if !region_ok {
        return Err("the region part must be a region name such as ap-northeast-2");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the account part must be 12 digits");
    }
    let ok = match resource.split_once('/') {
        Some(("key", id)) => {
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        Some(("alias", name)) => {
            !name.is_empty()
                && name.len() <= 250
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        }
        _ => false,
    };
    if !ok {
        return Err("the resource part must be key/KEY_ID or alias/NAME");
    }
    Ok(KmsArn { arn: s.to_owned(), region: (*region).to_owned() })
}

/// Reads and checks the configuration file at `path` (its keyring files are not opened yet).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound { path: path.to_owned() })
        }
        Err(source) => return Err(ConfigError::Io { path: path.to_owned(), source }),
    };
    let text = String::from_utf8(text).map_err(|_| ConfigError::Syntax {
        path: path.to_owned(),
        message: "the file is not UTF-8".into(),
    })?;
    parse(path, &text)
}

/// Checks configuration text as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let table: Table = text
        .parse::<Table>()
        .map_err(|e| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
    let dir = path.parent().map(Path::to_owned).unwrap_or_default();
    let w = Walker { path, dir };
    w.unknown(&table, "", TOP_FIELDS)?;
    match table.get("version") {
        None => {}
        Some(Value::Integer(VERSION)) => {}
        Some(Value::Integer(v)) => {
            return Err(w.bad(
                "version".into(),
                format!("{v} is not a version this larder reads (it reads {VERSION})"),
            ))
        }
        Some(_) => return Err(w.wrong("version".into(), "an integer")),
    }
    let keyrings = match table.get("keyring") {
        None => return Err(ConfigError::MissingField { path: path.to_owned(), field: "keyring".into() }),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(w.bad("keyring".into(), "at least one [[keyring]] is needed"))
        }
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, v)| w.keyring(i, v)).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(w.wrong("keyring".into(), "an array of tables ([[keyring]])")),
    };
    let mut names = BTreeSet::new();
    for k in &keyrings {
        if !names.insert(k.name.clone()) {
            return Err(w.bad(format!("{}.name", k.field), format!("{:?} names two keyrings", k.name)));
        }
    }
    let index_path = match table.get("index") {
        None => keyrings.iter().find_map(|k| match &k.source {
            Source::Local { path, .. } => Some(path.clone()),
            Source::AwsKms { .. } => None,
        }),
        Some(Value::Table(t)) => {
            w.unknown(t, "index", INDEX_FIELDS)?;
            Some(w.file(&w.required(t, "index", "path")?))
        }
        Some(_) => return Err(w.wrong("index".into(), "a table ([index])")),
    };
    Ok(Config { path: path.to_owned(), keyrings, index_path })
}

/// A keyring that opens only EDKs of the listed master key ids (a local keyring's
/// `decrypt_key_ids`): `accepts` says no, and `decrypt_data_key` refuses, for any other id.
struct AllowListed<K> {
    inner: K,
    allowed: Vec<String>,
}

impl<K: Keyring> Keyring for AllowListed<K> {
    fn kind(&self) -> KeyringKind {
        self.inner.kind()
    }

    fn primary_key_id(&self) -> String {
        self.inner.primary_key_id()
    }

    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> larder::envelope::BoxFuture<'a, Result<GeneratedKey, EnvelopeError>> {
        self.inner.generate_data_key(context)
    }

    fn decrypt_data_key<'a>(
        &'a self,
        edk: &'a EncryptedDataKey,
        context: &'a EncryptionContext,
    ) -> larder::envelope::BoxFuture<'a, Result<DataKey, EnvelopeError>> {
        if self.allowed.contains(&edk.key_id) {
            self.inner.decrypt_data_key(edk, context)
        } else {
            let id = edk.key_id.clone();
            Box::pin(async move { Err(EnvelopeError::UnknownKeyId(id)) })
        }
    }

    fn encrypt_data_key<'a>(
        &'a self,
        key: &'a DataKey,
        context: &'a EncryptionContext,
    ) -> larder::envelope::BoxFuture<'a, Result<EncryptedDataKey, EnvelopeError>> {
        self.inner.encrypt_data_key(key, context)
    }

    fn accepts(&self, edk: &EncryptedDataKey) -> bool {
        self.allowed.contains(&edk.key_id) && self.inner.accepts(edk)
    }
}

/// Opens the local keyring file of a `[[keyring]]` entry, with its allow-list.
fn local_keyring(
    k: &KeyringConfig,
    path: &Path,
    allow: &Option<Vec<String>>,
) -> anyhow::Result<Arc<dyn Keyring>> {
    let ring = LocalKeyring::load(path).with_context(|| {
        format!("{} ({}): cannot open the local keyring {}", k.field, k.name, path.display())
    })?;
    let Some(allowed) = allow else { return Ok(Arc::new(ring)) };
    let ids: Vec<String> = ring.key_infos().into_iter().map(|i| i.id).collect();
    for (j, id) in allowed.iter().enumerate() {
        if !ids.contains(id) {
            anyhow::bail!(
                "{}.decrypt_key_ids[{j}]: {id:?} is not a key of {} (its keys: {})",
                k.field,
                path.display(),
                ids.join(", ")
            );
        }
    }
    if k.role == Role::Wrap && !allowed.contains(&ring.primary_key_id()) {
        anyhow::bail!(
            "{}.decrypt_key_ids: leaves out {:?}, the primary key new data keys are wrapped under, so this keyring could not open what it writes",
            k.field,
            ring.primary_key_id()
        );
    }
    Ok(Arc::new(AllowListed { inner: ring, allowed: allowed.clone() }))
}

#[cfg(feature = "kms")]
async fn kms_keyring(
    _k: &KeyringConfig,
    key: &KmsArn,
    region: &str,
    endpoint: Option<&str>,
    more: &[KmsArn],
) -> anyhow::Result<Arc<dyn Keyring>> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()));
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    let mut b = larder::envelope::AwsKmsKeyring::builder(aws_sdk_kms::Client::new(&conf), key.arn.clone());
    for a in more {
        b = b.additional_key_id(a.arn.clone());
    }
    Ok(Arc::new(b.build()))
}

#[cfg(not(feature = "kms"))]
async fn kms_keyring(
    k: &KeyringConfig,
    _key: &KmsArn,
    _region: &str,
    _endpoint: Option<&str>,
    _more: &[KmsArn],
) -> anyhow::Result<Arc<dyn Keyring>> {
    Err(crate::util::Usage::err(format!(
        "{} ({}): type \"aws-kms\" needs a larder built with AWS KMS support (the `kms` feature): \
         `cargo install larder-cli --features kms`",
        k.field, k.name
    )))
}

impl Config {
    /// The envelope: the first keyring makes data keys, `wrap` keyrings add an EDK each,
    /// `decrypt` keyrings are only tried to decrypt; v2 when asked or when more than one keyring
    /// wraps.
    pub async fn envelope(&self, v2: bool) -> anyhow::Result<Envelope> {
        let mut rings = Vec::with_capacity(self.keyrings.len());
        for k in &self.keyrings {
            let ring = match &k.source {
                Source::Local { path, decrypt_key_ids } => local_keyring(k, path, decrypt_key_ids)?,
                Source::AwsKms { key, region, endpoint, decrypt_key_arns } => {
                    kms_keyring(k, key, region, endpoint.as_deref(), decrypt_key_arns).await?
                }
            };
            rings.push((k.role, ring));
        }
        let mut it = rings.into_iter();
        let Some((_, primary)) = it.next() else {
            anyhow::bail!("{}: no keyring", self.path.display());
        };
        let mut b = Envelope::builder_shared(primary);
        for (role, ring) in it {
            b = match role {
                Role::Wrap => b.with_keyring_shared(ring),
                Role::Decrypt => b.decrypt_with_shared(ring),
            };
        }
        Ok(if v2 { b.format_v2() } else { b }.build())
    }

    /// The local keyring file holding the blind-index key.
    pub fn index_keyring(&self) -> anyhow::Result<&Path> {
        self.index_path.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no local keyring to take the blind-index key from: add `[index] path = \"…\"` (a keyring file with an index key, `larder keys add-index`)",
                self.path.display()
            )
        })
    }

    /// A JSON description (no secrets: paths, ARNs, roles, allow-lists).
    pub fn describe(&self) -> serde_json::Value {
        let rings: Vec<serde_json::Value> = self
            .keyrings
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let role = if i == 0 { "primary" } else { k.role.name() };
                match &k.source {
                    Source::Local { path, decrypt_key_ids } => serde_json::json!({
                        "name": k.name, "role": role, "type": "local",
                        "path": path.display().to_string(), "decrypt_key_ids": decrypt_key_ids,
                    }),
                    Source::AwsKms { key, region, endpoint, decrypt_key_arns } => serde_json::json!({
                        "name": k.name, "role": role, "type": "aws-kms", "key_arn": key.arn,
                        "region": region, "endpoint": endpoint,
                        "decrypt_key_arns": decrypt_key_arns.iter().map(|a| a.arn.clone()).collect::<Vec<_>>(),
                    }),
                }
            })
            .collect();
        serde_json::json!({
            "config": self.path.display().to_string(),
            "keyrings": rings,
            "index_keyring": self.index_path.as_ref().map(|p| p.display().to_string()),
        })
    }
}

/// Where a subcommand's keyrings come from: the local keyring file (`--keyring`, default
/// location) or a configuration file (`--config`).
pub enum Keyrings {
    /// The one local keyring file (`--keyring`/`LARDER_KEYRING`, else the default location).
    File(Option<PathBuf>),
    /// A parsed configuration file.
    Config(Box<Config>),
}

impl Keyrings {
    /// Reads `--config` when given (it and `--keyring` exclude each other).
    pub fn new(keyring: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<Keyrings> {
        match (keyring, config) {
            (Some(k), Some(c)) => Err(crate::util::Usage::err(format!(
                "both a keyring file ({}) and a configuration file ({}) are given (--keyring/LARDER_KEYRING and \
                 --config/{ENV}); the configuration file names its keyrings, so give only one",
                k.display(),
                c.display()
            ))),
            (_, Some(c)) => Ok(Keyrings::Config(Box::new(load(&c)?))),
            (k, None) => Ok(Keyrings::File(k)),
        }
    }

    /// The local keyring file holding the blind-index key.
    pub fn index_keyring(&self) -> anyhow::Result<PathBuf> {
        match self {
            Keyrings::Config(c) => Ok(c.index_keyring()?.to_owned()),
            Keyrings::File(k) => crate::util::keyring_path(k.clone()),
        }
    }
}

/// `larder config check`.
pub fn run(
    config: Option<PathBuf>,
    command: crate::cli::ConfigCommand,
) -> anyhow::Result<std::process::ExitCode> {
    let crate::cli::ConfigCommand::Check(out) = command;
    let Some(path) = config else {
        return Err(crate::util::Usage::err(format!(
            "no configuration file: pass --config PATH or set {ENV}"
        )));
    };
    let cfg = load(&path)?;
    // Open every local keyring (permissions, allow-lists against the file's keys); no KMS call.
    for k in &cfg.keyrings {
        if let Source::Local { path, decrypt_key_ids } = &k.source {
            local_keyring(k, path, decrypt_key_ids)?;
        }
    }
    let index = match &cfg.index_path {
        Some(p) => {
            let ring =
                LocalKeyring::load(p).with_context(|| format!("index: cannot open {}", p.display()))?;
            Some((p.clone(), ring.blind_indexer().is_some()))
        }
        None => None,
    };
    if out.json() {
        let mut v = cfg.describe();
        v["index_key_present"] = serde_json::json!(index.as_ref().map(|(_, has)| *has));
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!("{}: {} keyring(s), in decryption order", cfg.path.display(), cfg.keyrings.len());
    for (i, k) in cfg.keyrings.iter().enumerate() {
        let role = if i == 0 { "primary" } else { k.role.name() };
        match &k.source {
            Source::Local { path, decrypt_key_ids } => {
                let allow = decrypt_key_ids.as_ref().map_or("every key".to_owned(), |ids| ids.join(", "));
                println!(
                    "  {}. {:<8} local    {} ({}; decrypts with {allow})",
                    i + 1,
                    role,
                    path.display(),
                    k.name
                );
            }
            Source::AwsKms { key, region, endpoint, decrypt_key_arns } => {
                let ep = endpoint.as_deref().map(|e| format!(", endpoint {e}")).unwrap_or_default();
                println!("  {}. {:<8} aws-kms  {} ({}; region {region}{ep})", i + 1, role, key.arn, k.name);
                for a in decrypt_key_arns {
                    println!("       also decrypts under {}", a.arn);
                }
            }
        }
    }
    match index {
        Some((p, true)) => println!("blind-index key: {}", p.display()),
        Some((p, false)) => {
            println!("blind-index key: none yet in {} (`larder keys add-index`)", p.display())
        }
        None => println!("blind-index key: none (no local keyring; add [index] path = \"…\")"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("/etc/larder.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn arns() {
        let a = parse_arn("arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
            .unwrap();
        assert_eq!(a.region, "ap-northeast-2");
        assert!(parse_arn("arn:aws-cn:kms:cn-north-1:111122223333:alias/pii").is_ok());
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/pii",
            "arn:aws:s3:ap-northeast-2:111122223333:key/x",
            "arn:aws:kms::111122223333:key/x",
            "arn:aws:kms:ap-northeast-2:1111:key/x",
            "arn:aws:kms:ap-northeast-2:111122223333:key/",
            "arn:aws:kms:ap-northeast-2:111122223333:grant/x",
            "arn:aws:kms:ap-northeast-2:111122223333",
            "arn:gcp:kms:ap-northeast-2:111122223333:key/x",
        ] {
            assert!(parse_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("", "missing field `keyring`"),
            ("keyring = []", "at least one"),
            ("keyring = 3", "`keyring` must be an array of tables"),
            ("[[keyring]]\npath = \"a\"", "missing field `keyring[0].type`"),
            ("[[keyring]]\ntype = \"local\"", "missing field `keyring[0].path`"),
            ("[[keyring]]\ntype = \"local\"\npath = \"a\"\npaht = \"b\"", "unknown field `keyring[0].paht`"),
            ("colour = 1\n[[keyring]]\ntype = \"local\"\npath = \"a\"", "unknown field `colour`"),
            ("[[keyring]]\ntype = \"vault\"", "`keyring[0].type`: \"vault\""),
            ("[[keyring]]\ntype = \"local\"\npath = 7", "`keyring[0].path` must be a string"),
            ("[[keyring]]\ntype = \"local\"\npath = \"a\"\nrole = \"decrypt\"", "cannot be decrypt-only"),
            (
                "[[keyring]]\ntype = \"local\"\npath = \"a\"\n[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"alias/pii\"",
                "`keyring[1].key_arn` = \"alias/pii\" is not an AWS KMS key ARN",
            ),
            (
                "[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"arn:aws:kms:ap-northeast-2:111122223333:alias/a\"\nregion = \"us-east-1\"",
                "`keyring[0].region`",
            ),
            (
                "[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"arn:aws:kms:ap-northeast-2:111122223333:alias/a\"\nendpoint = \"localhost:4566\"",
                "`keyring[0].endpoint`",
            ),
            (
                "[[keyring]]\ntype = \"aws-kms\"\nkey_arn = \"arn:aws:kms:ap-northeast-2:111122223333:alias/a\"\ndecrypt_key_arns = [\"arn:aws:kms:ap-northeast-2:111122223333:nope\"]",
                "`keyring[0].decrypt_key_arns[0]`",
            ),
            ("[[keyring]]\ntype = \"local\"\npath = \"a\"\ndecrypt_key_ids = []", "`keyring[0].decrypt_key_ids`"),
            ("[[keyring]]\ntype = \"local\"\npath = \"a\"\ndecrypt_key_ids = [1]", "`keyring[0].decrypt_key_ids[0]` must be a string"),
            ("version = 2\n[[keyring]]\ntype = \"local\"\npath = \"a\"", "`version`: 2"),
            ("[[keyring]]\ntype = \"local\"\npath = \"a\"\n[index]\nkeyring = \"b\"", "unknown field `index.keyring`"),
            ("[[keyring]]\ntype = \"local\"\npath = \"a\"\nname = \"x\"\n[[keyring]]\ntype = \"local\"\npath = \"b\"\nname = \"x\"", "names two keyrings"),
            ("[[keyring]\ntype = \"local\"", "not valid TOML"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text:?}\n  got:  {got}\n  want: {want}");
            assert!(got.starts_with("/etc/larder.toml"), "names the file: {got}");
        }
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let c = parse(
            Path::new("/etc/larder/larder.toml"),
            "[[keyring]]\ntype = \"local\"\npath = \"keys/a\"\n[[keyring]]\ntype = \"local\"\npath = \"/abs/b\"\nrole = \"decrypt\"",
        )
        .unwrap();
        let paths: Vec<_> = c
            .keyrings
            .iter()
            .map(|k| match &k.source {
                Source::Local { path, .. } => path.clone(),
                Source::AwsKms { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(paths, [PathBuf::from("/etc/larder/keys/a"), PathBuf::from("/abs/b")]);
        assert_eq!(c.index_path, Some(PathBuf::from("/etc/larder/keys/a")));
        assert_eq!(c.keyrings[1].role, Role::Decrypt);
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let e = load(Path::new("/nonexistent/larder.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::NotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/larder.toml does not exist"));
    }
}

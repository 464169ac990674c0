//! The command line: every subcommand, its flags and its `--help` example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

/// `larder --version`: the version and whether this build has AWS KMS keyrings (the `kms`
/// feature), so a script or test can tell before it needs them.
#[cfg(feature = "kms")]
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\nfeatures: kms (AWS KMS keyrings)");
#[cfg(not(feature = "kms"))]
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "\nfeatures: none (no AWS KMS keyrings: build with --features kms)");

/// larder: stable cache keys, a memo cache shared by every worker, envelope encryption of
/// personal data with a data-key cache that is safe under any concurrency.
#[derive(Parser)]
#[command(
    name = "larder",
    version,
    long_version = LONG_VERSION,
    about,
    after_help = "Start here:  larder demo     (a few seconds, no servers needed)\n\
                  Output:      -o json (--output json) on every subcommand that prints data\n\
                  Exit codes:  0 ok, 1 operational error, 2 usage error"
)]
pub struct Cli {
    /// The local keyring file [default: $XDG_DATA_HOME/larder/keyring, or
    /// ~/.local/share/larder/keyring].
    #[arg(long, global = true, env = "LARDER_KEYRING", value_name = "PATH")]
    pub keyring: Option<PathBuf>,

    /// A keyring configuration file (TOML): several keyrings in order (local files, AWS KMS
    /// keys), decrypt allow-lists, the blind-index key. Used by encrypt, decrypt, rewrap and
    /// index instead of --keyring/--kms. See docs/keyring-config.md.
    #[arg(long, global = true, env = "LARDER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show both problems larder solves, with real processes, threads and numbers.
    ///
    /// Part 1 runs the same requests through worker processes sharing one cache twice: with keys
    /// from Rust's per-process seeded hasher (the bug behind "the cache that never hit") and with
    /// larder's stable keys and single-flight. Part 2 encrypts and decrypts phone numbers from
    /// 100 threads through one envelope, with and without the data-key cache.
    #[command(after_help = "Examples:\n  \
        larder demo\n  \
        larder demo --json --requests 200 --inputs 20 --phones 2000\n  \
        larder demo --store redis://127.0.0.1:6379/\n  \
        larder demo --store redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002\n  \
        larder demo --kms aws:alias/larder-demo --kms-endpoint http://127.0.0.1:5000")]
    Demo(DemoArgs),

    /// Manage the local keyring file (AES-256 master keys, mode 0600).
    #[command(after_help = "Examples:\n  \
        larder keys init\n  \
        larder --keyring ./dev.keyring keys init\n  \
        larder keys list\n  \
        larder keys rotate")]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },

    /// Encrypt stdin (or --input) to stdout with envelope encryption.
    #[command(after_help = "Examples:\n  \
        printf 010-1234-5678 | larder encrypt --text --context table=customers --context column=phone\n  \
        larder encrypt --lines --context column=phone < phones.txt > phones.enc\n  \
        larder encrypt --kms aws:alias/pii --input photo.jpg > photo.jpg.lde")]
    Encrypt(CryptArgs),

    /// Decrypt stdin (or --input) to stdout; the same --context as at encryption is required.
    #[command(after_help = "Examples:\n  \
        larder decrypt --text --context table=customers --context column=phone < value.txt\n  \
        larder decrypt --lines --context column=phone < phones.enc > phones.txt\n  \
        larder decrypt --input photo.jpg.lde > photo.jpg")]
    Decrypt(CryptArgs),

    /// Print the header of a ciphertext (binary or text form); never prints secrets.
    #[command(after_help = "Examples:\n  \
        printf 010-1234-5678 | larder encrypt --text | larder inspect\n  \
        larder inspect --input photo.jpg.lde")]
    Inspect(InspectArgs),

    /// Mask personal data for display: phone numbers, e-mail addresses, names.
    #[command(after_help = "Examples:\n  \
        larder mask phone 010-1234-5678        # 010-****-5678\n  \
        larder mask email hong.gildong@example.com\n  \
        larder mask name 홍길동                 # 홍*동")]
    Mask {
        /// What kind of value.
        kind: MaskKind,
        /// One or more values; each masked value is printed on its own line.
        #[arg(required = true)]
        values: Vec<String>,
        #[command(flatten)]
        out: OutputArgs,
    },

    /// Print the blind index of values (exact-match search over an encrypted column).
    ///
    /// The index key is the keyring file's `index` record (`larder keys add-index`), never an
    /// encryption key. Values are normalized first, so every spelling of one phone number gives
    /// one index. See docs/blind-index.md for choosing --bits.
    #[command(after_help = "Examples:\n  \
        larder index phone 010-1234-5678 01012345678     # the same index twice\n  \
        larder index phone 010-1234-5678 --bits 20 --int --context table=customers --context column=phone\n  \
        larder index phone 010-1234-5678 --part last4 --name phone_last4 --bits 8\n  \
        larder index email ' Hong.GilDong@Example.COM'")]
    Index(IndexArgs),

    /// Re-encrypt a database column in place: plaintext → ciphertext, or to the current master
    /// key / KMS / format v2. Batches in transactions, resumable after a crash, idempotent.
    ///
    /// The table needs an integer key column (--key). Each batch updates its rows and records
    /// the last key in `larder_rewrap_progress` in one transaction; a rerun resumes there, and
    /// values that are already current are never touched again.
    #[command(after_help = "Examples:\n  \
        larder rewrap --db sqlite:app.db --table customers --column phone --mode encrypt --context column=phone\n  \
        larder keys rotate && larder rewrap --db postgresql://app@127.0.0.1/app --table customers --column phone --mode rotate --json\n  \
        larder rewrap --db sqlite:app.db --table customers --column phone --mode rotate --to-kms aws:alias/pii --verify 100\n  \
        larder rewrap --db sqlite:app.db --table customers --column phone --mode rotate --v2 --rate 2000")]
    Rewrap(RewrapArgs),

    /// Check a keyring configuration file (--config or LARDER_CONFIG) and print its keyrings in
    /// order; opens the local keyring files, contacts no KMS.
    #[command(after_help = "Examples:\n  \
        larder --config /etc/larder/larder.toml config check\n  \
        LARDER_CONFIG=larder.toml larder config check -o json")]
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },

    /// Print the cache key text of a JSON value, as a service using larder would compute it.
    #[command(after_help = "Example:\n  \
        larder key --namespace loan_calc --version 1 --json '{\"user_id\":7}'\n  \
        larder key --namespace loan_calc --value 7 -o json")]
    Key {
        /// The key space's namespace ([a-z0-9_.-], 1-64 bytes).
        #[arg(long)]
        namespace: String,
        /// The key space's version.
        #[arg(long, default_value_t = 1)]
        version: u32,
        /// The value, as JSON (a negative number may follow directly: --json -5). This is the
        /// INPUT; the output format is -o/--output, as everywhere.
        #[arg(long, visible_alias = "value", allow_hyphen_values = true, value_name = "JSON")]
        json: String,
        #[command(flatten)]
        out: OutputArgs,
    },

    /// Look at and invalidate entries of a shared cache tier (SQLite file or Redis).
    #[command(after_help = "Examples:\n  \
        larder cache stats --store sqlite:/var/tmp/larder.db -o json\n  \
        larder cache get --store redis://127.0.0.1:6379 --namespace loan_calc --value 7\n  \
        larder cache invalidate --store redis://127.0.0.1:6379 --key loan_calc:v1:6a4w7dnilsmi2vbtef7eijaezryzvv2c")]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },

    /// Internal: one worker process of `larder demo`.
    #[command(name = "__worker", hide = true)]
    Worker(WorkerArgs),
}

/// The output format of every subcommand that prints data: `-o json` / `--output json`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on stdout, for programs.
    Json,
}

/// `-o/--output FORMAT`, the same on every subcommand that prints data.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct OutputArgs {
    /// Output format: `text` for people, `json` for programs (one JSON document on stdout).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text, value_name = "FORMAT")]
    pub output: Output,
}

impl OutputArgs {
    /// Whether to print JSON.
    pub fn json(self) -> bool {
        self.output == Output::Json
    }
}

/// `larder keys ...`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a new keyring file with one fresh master key (refuses to overwrite).
    Init(OutputArgs),
    /// List the master keys (ids and which is primary; never key bytes).
    List(OutputArgs),
    /// Add a new primary master key; older keys still decrypt what they encrypted.
    Rotate(OutputArgs),
    /// Add the blind-index key (`larder index`); refuses if the keyring already has one.
    AddIndex,
}

/// `larder config ...`
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Parse the file, open its local keyrings, print the keyrings in order.
    Check(OutputArgs),
}

/// `larder cache ...`
#[derive(Subcommand)]
pub enum CacheCommand {
    /// What the shared tier holds: entries, bytes, expired entries, leases, by namespace.
    #[command(after_help = "Examples:\n  \
        larder cache stats --store sqlite:/var/tmp/larder.db\n  \
        larder cache stats --store 'redis://:PASSWORD@127.0.0.1:6379?prefix=app1:' -o json")]
    Stats {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// One entry: its state (fresh, expired, missing, refused), times and payload. The MAC is
    /// checked with LARDER_KEY_SECRET, as the services check it.
    #[command(after_help = "Examples:\n  \
        larder cache get --store sqlite:/var/tmp/larder.db --namespace loan_calc --value '{\"user_id\":7}'\n  \
        larder cache get --key loan_calc:v1:6a4w7dnilsmi2vbtef7eijaezryzvv2c -o json")]
    Get {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Delete one entry from the shared tier and tell every process to drop its local copy
    /// (Redis backplane; SQLite processes drop theirs within 30 s). With --tag: retire every
    /// entry stored under a tag instead (one write; see docs/cache.md, "Tags").
    #[command(after_help = "Examples:\n  \
        larder cache invalidate --store sqlite:/var/tmp/larder.db --namespace loan_calc --value '{\"user_id\":7}'\n  \
        larder cache invalidate --key loan_calc:v1:6a4w7dnilsmi2vbtef7eijaezryzvv2c\n  \
        larder cache invalidate --tag user:7 --store redis://127.0.0.1:6379")]
    Invalidate {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Retire every entry stored under this tag (in every process: at once through the
        /// Redis backplane, within their tag_recheck, 1 s by default, otherwise). The tag
        /// record is sealed with the services' secret, as `cache get` checks entries.
        #[arg(long, value_name = "TAG", group = "KeyArgs", conflicts_with_all = ["key", "namespace", "value"])]
        tag: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// Which shared tier `larder cache` talks to.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// The shared tier: `sqlite:PATH`, `redis://…`, `rediss://…`, `redis+cluster://…` (the
    /// Redis URL grammar of the library), or a whole LARDER_CACHE value (its shared tier is used).
    #[arg(long, env = "LARDER_CACHE", value_name = "URL")]
    pub store: String,
}

/// Which entry: its key text, or the namespace and value a service would key it with.
#[derive(Args, Clone, Debug)]
#[group(required = true, multiple = true)]
pub struct KeyArgs {
    /// The key text (`namespace:vN:digest`, as `larder key` or `quote::key(…)` print it).
    #[arg(long, conflicts_with_all = ["namespace", "value"])]
    pub key: Option<String>,
    /// The namespace the service uses (with --value).
    #[arg(long, requires = "value")]
    pub namespace: Option<String>,
    /// The namespace version (with --namespace).
    #[arg(long, default_value_t = 1)]
    pub version: u32,
    /// The arguments, as JSON (keyed as `larder key` keys them; with --namespace).
    #[arg(long, allow_hyphen_values = true, requires = "namespace")]
    pub value: Option<String>,
}

/// Where data keys come from: the local keyring file, or AWS KMS.
#[derive(Args, Clone, Debug, Default)]
pub struct KmsArgs {
    /// Use AWS KMS instead of the local keyring: `aws:KEY_ID` (a key id, ARN or alias).
    /// Credentials and region come from the usual AWS environment. Needs a larder built with
    /// the `kms` feature (`cargo install larder-cli --features kms`).
    #[arg(long, value_name = "aws:KEY_ID")]
    pub kms: Option<String>,
    /// A KMS endpoint URL (for example a local test server).
    #[arg(long, value_name = "URL", requires = "kms")]
    pub kms_endpoint: Option<String>,
}

/// Flags shared by `encrypt` and `decrypt`.
#[derive(Args)]
pub struct CryptArgs {
    /// An encryption context pair (repeatable); decryption needs exactly the same pairs.
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Use the text form (`lv1.` and base64url) instead of raw bytes. Encrypting, one trailing
    /// newline of the input is dropped; decrypting, the value is printed with a newline.
    #[arg(long)]
    pub text: bool,
    /// One value per line (implies --text for the ciphertexts): a failing line is reported with
    /// its line number on stderr and left out of the output; the other lines are still
    /// processed, and the exit code is 1 if any line failed.
    #[arg(long)]
    pub lines: bool,
    /// Read from this file instead of stdin.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Encrypt an empty input instead of refusing it (an empty value is usually a mistake).
    #[arg(long)]
    pub allow_empty: bool,
    #[command(flatten)]
    pub kms: KmsArgs,
}

/// Flags of `inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Read from this file instead of stdin.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print the header as JSON (the same as -o json).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What `larder mask` masks.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum MaskKind {
    /// Phone numbers: 010-1234-5678 → 010-****-5678 (also landlines and +82).
    Phone,
    /// E-mail addresses.
    Email,
    /// Personal names: 홍길동 → 홍*동.
    Name,
}

/// Flags of `larder demo`.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// The shared cache tier: `sqlite:PATH`, `redis://…` or `redis+cluster://h:p,h:p`
    /// [default: a SQLite file in a new temporary directory].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    #[command(flatten)]
    pub kms: KmsArgs,
    /// Print machine-readable results (JSON) on stdout instead of tables (the same as -o json).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    /// Requests served by the workers in each run.
    #[arg(long, default_value_t = 2000)]
    pub requests: u32,
    /// Distinct inputs the requests are drawn from (Zipf-skewed).
    #[arg(long, default_value_t = 200)]
    pub inputs: u32,
    /// Zipf exponent of the input distribution (1.0 is the classic "few hot, long tail").
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    pub workers: u32,
    /// Concurrent requests (threads) per worker process.
    #[arg(long, default_value_t = 8)]
    pub threads: u32,
    /// Duration of one computation, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub compute_ms: u64,
    /// Seed of the request generator (the same seed gives the same requests).
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Phone numbers encrypted and decrypted with the data-key cache on.
    #[arg(long, default_value_t = 100_000)]
    pub phones: u32,
    /// Phone numbers for the (shorter, extrapolated) run with the data-key cache off.
    #[arg(long, default_value_t = 5_000)]
    pub phones_uncached: u32,
    /// Threads sharing the one envelope.
    #[arg(long, default_value_t = 100)]
    pub phone_threads: u32,
    /// Simulated KMS latency per local-keyring call, in milliseconds (ignored with --kms).
    #[arg(long, default_value_t = 5)]
    pub kms_latency_ms: u64,
    /// Sustained encrypt+decrypt rate (per second) the monthly KMS cost is stated for.
    #[arg(long, default_value_t = 1000)]
    pub cost_rate: u64,
    /// Run only one part of the demo.
    #[arg(long, value_enum)]
    pub only: Option<DemoPart>,
}

/// A part of the demo.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoPart {
    /// Worker processes sharing a cache (story A).
    Workers,
    /// Envelope encryption of phone numbers (story B).
    Phones,
}

/// Flags of `larder index`.
#[derive(Args)]
pub struct IndexArgs {
    /// How values are normalized.
    pub kind: IndexKind,
    /// One or more values; each index is printed on its own line.
    #[arg(required = true)]
    pub values: Vec<String>,
    /// Size of the index in bits (1-256): fewer bits, more false positives and less leakage
    /// (docs/blind-index.md).
    #[arg(long, default_value_t = larder::envelope::blind::DEFAULT_BITS)]
    pub bits: u16,
    /// The part indexed: full, lastN (e.g. last4), firstN, or domain (email).
    #[arg(long, default_value = "full")]
    pub part: String,
    /// The index name (A-Z a-z 0-9 . _ -) [default: the kind].
    #[arg(long)]
    pub name: Option<String>,
    /// An encryption context pair (repeatable): the column the index belongs to.
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Print the index as an integer (for a bigint column; --bits 63 or fewer) instead of hex.
    #[arg(long)]
    pub int: bool,
}

/// What `larder index` normalizes.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum IndexKind {
    /// Phone numbers: digits only; 010-1234-5678, 01012345678 and +82 10-1234-5678 are one.
    Phone,
    /// E-mail addresses: trimmed, lowercased.
    Email,
    /// Names: white space collapsed, lowercased.
    Name,
    /// Any text: trimmed only.
    Text,
}

/// Flags of `larder rewrap`.
#[derive(Args)]
pub struct RewrapArgs {
    /// The database: `sqlite:PATH` or `postgresql://user@host:port/db`.
    #[arg(long, value_name = "URL")]
    pub db: String,
    /// The table.
    #[arg(long)]
    pub table: String,
    /// The column holding the values (text).
    #[arg(long)]
    pub column: String,
    /// The table's integer key column (rows are processed in its order).
    #[arg(long, default_value = "id")]
    pub key: String,
    /// What to do: encrypt plaintext values, or rotate ciphertexts to how this keyring writes now.
    #[arg(long, value_enum)]
    pub mode: RewrapModeArg,
    /// An encryption context pair (repeatable), the same for every row of the column.
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Rows per batch (one transaction each).
    #[arg(long, default_value_t = 500)]
    pub batch: u32,
    /// At most this many rows per second.
    #[arg(long, value_name = "ROWS")]
    pub rate: Option<u64>,
    /// After the run, decrypt this many sampled rows and report.
    #[arg(long, value_name = "N")]
    pub verify: Option<u32>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// The job name in the progress table [default: TABLE.COLUMN].
    #[arg(long)]
    pub job: Option<String>,
    /// Write under AWS KMS (`aws:KEY_ID`), decrypting old rows with the local keyring.
    #[arg(long, value_name = "aws:KEY_ID")]
    pub to_kms: Option<String>,
    /// A KMS endpoint URL (for example a local test server).
    #[arg(long, value_name = "URL", requires = "to_kms")]
    pub kms_endpoint: Option<String>,
    /// Write ciphertext format v2 (`lv2.`).
    #[arg(long)]
    pub v2: bool,
}

/// What `larder rewrap` does to each value.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RewrapModeArg {
    /// Plaintext → ciphertext (values that already are ciphertexts are left alone).
    Encrypt,
    /// Ciphertexts not under the current master key(s) / format → re-encrypted.
    Rotate,
}

/// How a `larder demo` worker builds its cache keys.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// The seed's bug: a u64 from `std`'s per-process seeded hasher (`RandomState`).
    StdHasher,
    /// larder's stable key of the input itself.
    Larder,
}

/// Arguments of the hidden `larder __worker` mode (set by `larder demo`).
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    pub store: String,
    #[arg(long, value_enum)]
    pub mode: KeyMode,
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub index: u32,
    #[arg(long)]
    pub workers: u32,
    #[arg(long)]
    pub requests: u32,
    #[arg(long)]
    pub inputs: u32,
    #[arg(long)]
    pub zipf: f64,
    #[arg(long)]
    pub seed: u64,
    #[arg(long)]
    pub threads: u32,
    #[arg(long)]
    pub compute_ms: u64,
}

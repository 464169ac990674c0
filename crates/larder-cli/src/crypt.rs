//! `larder encrypt|decrypt|inspect`: values and columns through one envelope. The format, the
//! keyrings and the data-key cache are the envelope crate's; this module moves bytes and
//! reports.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use larder::envelope::{EncryptionContext, Envelope, EnvelopeError, Keyring};

use crate::cli::{CryptArgs, InspectArgs, KmsArgs};
use crate::config::Keyrings;
use crate::util::{self, Usage};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

pub fn encrypt(keyring: Keyrings, args: CryptArgs) -> anyhow::Result<ExitCode> {
    crypt(keyring, args, Direction::Encrypt)
}

pub fn decrypt(keyring: Keyrings, args: CryptArgs) -> anyhow::Result<ExitCode> {
    crypt(keyring, args, Direction::Decrypt)
}

fn crypt(keyring: Keyrings, args: CryptArgs, dir: Direction) -> anyhow::Result<ExitCode> {
    let context: EncryptionContext = util::parse_context(&args.context)?.into_iter().collect();
    if args.allow_empty && dir == Direction::Decrypt {
        return Err(Usage::err("--allow-empty only applies to encrypt"));
    }
    let rt = runtime()?;
    let envelope = rt.block_on(open_envelope(keyring, &args.kms))?;
    if args.lines {
        let reader: Box<dyn BufRead> = match &args.input {
            Some(path) => Box::new(BufReader::new(
                std::fs::File::open(path)
                    .with_context(|| format!("cannot read input file {}", path.display()))?,
            )),
            None => Box::new(BufReader::new(std::io::stdin())),
        };
        return rt.block_on(lines(&envelope, &context, reader, dir));
    }
    let input = util::read_input(args.input.as_deref())?;
    let mut out = std::io::stdout().lock();
    match dir {
        Direction::Encrypt => {
            let value = if args.text { strip_one_newline(&input) } else { &input[..] };
            if value.is_empty() && !args.allow_empty {
                bail!(
                    "the input is empty: nothing to encrypt (pass --allow-empty to encrypt an empty value)"
                );
            }
            if args.text {
                let text = std::str::from_utf8(value).map_err(|_| {
                    anyhow!("--text needs UTF-8 text input; drop --text to encrypt raw bytes")
                })?;
                let ct = rt.block_on(envelope.encrypt_text(text, &context))?;
                writeln!(out, "{ct}")?;
            } else {
                let ct = rt.block_on(envelope.encrypt(value, &context))?;
                out.write_all(&ct)?;
            }
        }
        Direction::Decrypt => {
            if input.is_empty() {
                bail!("the input is empty: expected a larder ciphertext");
            }
            if args.text {
                let text = std::str::from_utf8(&input).map_err(|_| {
                    anyhow!("--text expects the text form (lv1.…), but the input is not text")
                })?;
                let plain = rt.block_on(envelope.decrypt_text(text.trim(), &context)).map_err(explain)?;
                writeln!(out, "{}", &*plain)?;
            } else {
                if looks_like_text_form(&input) {
                    return Err(Usage::err("the input is a ciphertext in text form (lv1.…): add --text"));
                }
                let plain = rt.block_on(envelope.decrypt(&input, &context)).map_err(explain)?;
                out.write_all(&plain)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One value per line. A failing line is reported on stderr with its number and left out of the
/// output; the others are still processed.
async fn lines(
    envelope: &Envelope,
    context: &EncryptionContext,
    mut reader: Box<dyn BufRead>,
    dir: Direction,
) -> anyhow::Result<ExitCode> {
    let verb = if dir == Direction::Encrypt { "encrypted" } else { "decrypted" };
    let bar = util::progress(None, verb);
    bar.set_message("lines");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut n, mut ok, mut failed_lines) = (0u64, 0u64, Vec::<u64>::new());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).context("cannot read the input")?;
        if read == 0 {
            break;
        }
        n += 1;
        let line = strip_one_newline(&buf);
        let result: Result<String, String> = match std::str::from_utf8(line) {
            Err(_) => Err("not UTF-8 text".into()),
            Ok(text) => match dir {
                Direction::Encrypt => envelope.encrypt_text(text, context).await.map_err(|e| e.to_string()),
                Direction::Decrypt if text.trim().is_empty() => {
                    Err("empty line, expected a ciphertext".into())
                }
                Direction::Decrypt => envelope
                    .decrypt_text(text.trim(), context)
                    .await
                    .map(|p| p.to_string())
                    .map_err(|e| explain(e).to_string()),
            },
        };
        match result {
            Ok(s) => {
                if s.contains('\n') {
                    bar.suspend(|| eprintln!("larder: line {n}: the decrypted value contains a line break"));
                    failed_lines.push(n);
                } else {
                    writeln!(out, "{s}")?;
                    ok += 1;
                }
            }
            Err(e) => {
                bar.suspend(|| eprintln!("larder: line {n}: {e}"));
                failed_lines.push(n);
            }
        }
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    if n == 0 {
        bail!(
            "the input is empty: no lines to {}",
            if dir == Direction::Encrypt { "encrypt" } else { "decrypt" }
        );
    }
    if failed_lines.is_empty() {
        eprintln!("larder: {verb} {ok} lines");
        Ok(ExitCode::SUCCESS)
    } else {
        let shown: Vec<String> = failed_lines.iter().take(20).map(u64::to_string).collect();
        let more = if failed_lines.len() > 20 { ", …" } else { "" };
        eprintln!(
            "larder: {verb} {ok} of {n} lines; {} failed (line {}{more}) and were left out of the output",
            failed_lines.len(),
            shown.join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let input = util::read_input(args.input.as_deref())?;
    if input.is_empty() {
        bail!("the input is empty: not a larder ciphertext");
    }
    if !looks_like_text_form(&input) && is_plain_text(&input) {
        bail!(
            "not a larder ciphertext: the input is plain text, and larder's text form starts with {:?}",
            larder::envelope::format::TEXT_PREFIX
        );
    }
    let (info, form) = if looks_like_text_form(&input) {
        let text = std::str::from_utf8(&input)
            .map_err(|_| anyhow!("not a larder ciphertext: the text form is not UTF-8"))?;
        (Envelope::inspect_text(text.trim()), "text")
    } else {
        (Envelope::inspect(&input), "binary")
    };
    let info = info.map_err(|e| anyhow!("not a larder ciphertext: {e}"))?;
    if args.json {
        let v = serde_json::json!({
            "form": form,
            "version": info.version,
            "algorithm": info.algorithm,
            "algorithm_name": info.algorithm_name,
            "keyring": info.keyring.name(),
            "key_id": info.key_id,
            "edk_bytes": info.edk_len,
            "plaintext_bytes": info.plaintext_len,
            "total_bytes": info.total_len,
            "overhead_bytes": info.overhead,
            "edks": info.edks.iter().map(|e| serde_json::json!({
                "keyring": e.keyring.name(),
                "key_id": e.key_id,
                "edk_bytes": e.edk_len,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("larder ciphertext ({form} form)");
        println!("  format version  {}", info.version);
        println!("  algorithm       {} ({})", info.algorithm, info.algorithm_name);
        if info.edks.len() > 1 {
            println!("  EDKs            {} (any one keyring decrypts)", info.edks.len());
            for (i, e) in info.edks.iter().enumerate() {
                println!("    {}. {:<8} {} ({} bytes)", i + 1, e.keyring.name(), e.key_id, e.edk_len);
            }
        } else {
            println!("  keyring         {}", info.keyring.name());
            println!("  key id          {}", info.key_id);
            println!("  EDK size        {} bytes", info.edk_len);
        }
        println!("  plaintext size  {} bytes", info.plaintext_len);
        println!("  total size      {} bytes (binary form)", info.total_len);
        println!("  overhead        {} bytes", info.overhead);
    }
    Ok(ExitCode::SUCCESS)
}

/// The envelope for `--config FILE`, `--kms aws:KEY_ID` or the local keyring file.
pub async fn open_envelope(keyring: Keyrings, kms: &KmsArgs) -> anyhow::Result<Envelope> {
    let keyring = match keyring {
        Keyrings::Config(cfg) => {
            if kms.kms.is_some() {
                return Err(Usage::err(
                    "--kms and --config both name keyrings; put the KMS key in the configuration file ([[keyring]] type = \"aws-kms\")",
                ));
            }
            return cfg.envelope(false).await;
        }
        Keyrings::File(k) => k,
    };
    match &kms.kms {
        Some(spec) => {
            let key_id = parse_kms(spec)?;
            Ok(Envelope::builder(aws_keyring(key_id, kms.kms_endpoint.as_deref()).await?).build())
        }
        None => {
            let path = util::keyring_path(keyring)?;
            let ring = crate::keys::load(&path)?;
            Ok(Envelope::builder(ring).build())
        }
    }
}

/// An AWS KMS keyring for `key_id`, with credentials and region from the standard AWS sources
/// (environment, profile, instance role) and an optional endpoint override.
#[cfg(feature = "kms")]
pub async fn aws_keyring(key_id: &str, endpoint: Option<&str>) -> anyhow::Result<Box<dyn Keyring>> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    if conf.region().is_none() {
        bail!("no AWS region for --kms: set AWS_REGION (for example us-east-1)");
    }
    let client = aws_sdk_kms::Client::new(&conf);
    Ok(Box::new(larder::envelope::AwsKmsKeyring::new(client, key_id)))
}

/// Without the `kms` feature there is no AWS keyring; `parse_kms` already refused `--kms`.
#[cfg(not(feature = "kms"))]
pub async fn aws_keyring(_key_id: &str, _endpoint: Option<&str>) -> anyhow::Result<Box<dyn Keyring>> {
    Err(no_kms())
}

#[cfg(not(feature = "kms"))]
fn no_kms() -> anyhow::Error {
    Usage::err(
        "--kms: this larder was built without AWS KMS support (the `kms` feature); build it with \
         `cargo run --release -p larder-cli --features kms -- …` or `cargo install larder-cli --features kms`",
    )
}

/// `aws:KEY_ID` → `KEY_ID`.
pub fn parse_kms(spec: &str) -> anyhow::Result<&str> {
    match spec.split_once(':') {
        #[cfg(not(feature = "kms"))]
        Some(("aws", id)) if !id.is_empty() => Err(no_kms()),
        #[cfg(feature = "kms")]
        Some(("aws", id)) if !id.is_empty() => Ok(id),
        _ => Err(Usage::err(format!("--kms {spec:?}: expected aws:KEY_ID (a key id, ARN or alias/NAME)"))),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Adds what a person can do about the common decryption failures.
fn explain(e: EnvelopeError) -> anyhow::Error {
    match e {
        EnvelopeError::AuthenticationFailed | EnvelopeError::InvalidEncryptedDataKey(_) => {
            anyhow!("{e} (check that every --context pair is exactly the one used to encrypt, and that this is the keyring that encrypted it)")
        }
        EnvelopeError::UnknownKeyId(_) => anyhow!("{e} (was it encrypted with another keyring?)"),
        other => anyhow!(other),
    }
}

fn strip_one_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Printable UTF-8 text (whitespace allowed, no other control characters): never a binary
/// ciphertext, whose header starts with small binary bytes.
fn is_plain_text(input: &[u8]) -> bool {
    std::str::from_utf8(input).is_ok_and(|s| s.chars().all(|c| !c.is_control() || c.is_whitespace()))
}

fn looks_like_text_form(input: &[u8]) -> bool {
    let trimmed =
        input.iter().position(|c| !c.is_ascii_whitespace()).and_then(|i| input.get(i..)).unwrap_or(&[]);
    trimmed.starts_with(larder::envelope::format::TEXT_PREFIX.as_bytes())
        || trimmed.starts_with(larder::envelope::format::TEXT_PREFIX_V2.as_bytes())
}

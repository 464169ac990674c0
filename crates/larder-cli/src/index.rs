//! `larder index phone|email|name|text VALUE...`: the blind index of each value, as a service
//! using `larder_envelope::blind` computes it (same key, normalization, part, bits and
//! context), one per output line. A value the normalizer refuses is reported, never indexed.

use std::io::Write;
use std::process::ExitCode;

use anyhow::anyhow;
use larder::envelope::blind::{IndexSpec, Normalizer, Part};
use larder::envelope::EncryptionContext;

use crate::cli::{IndexArgs, IndexKind};
use crate::config::Keyrings;
use crate::util::{self, Usage};

pub fn run(keyring: Keyrings, args: IndexArgs) -> anyhow::Result<ExitCode> {
    let normalizer = match args.kind {
        IndexKind::Phone => Normalizer::Phone,
        IndexKind::Email => Normalizer::Email,
        IndexKind::Name => Normalizer::Name,
        IndexKind::Text => Normalizer::Text,
    };
    let part = Part::parse(&args.part).ok_or_else(|| {
        Usage::err(format!("--part {:?}: expected full, lastN, firstN or domain", args.part))
    })?;
    let name = args.name.unwrap_or_else(|| normalizer.name().to_owned());
    let spec = IndexSpec::new(&name, normalizer, args.bits)
        .and_then(|s| s.part(part))
        .map_err(|e| Usage::err(e.to_string()))?;
    if args.int && args.bits > 63 {
        return Err(Usage::err("--int needs --bits 63 or fewer (a signed 64-bit column)"));
    }
    let context: EncryptionContext = util::parse_context(&args.context)?.into_iter().collect();
    let path = keyring.index_keyring()?;
    let indexer = crate::keys::load(&path)?.blind_indexer().ok_or_else(|| {
        anyhow!(
            "the keyring {} has no index key: add one with `larder keys add-index` (it is kept apart from the encryption keys)",
            path.display()
        )
    })?;
    let prepared = indexer.prepare(&spec, &context)?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0usize;
    for (i, v) in args.values.iter().enumerate() {
        match prepared.compute(&[v]) {
            Ok(ix) => match (args.int, ix.to_i64()) {
                (true, Some(n)) => writeln!(out, "{n}")?,
                _ => writeln!(out, "{}", ix.to_hex())?,
            },
            Err(e) => {
                out.flush()?;
                // The value is personal data: report its position, not the value.
                eprintln!("larder: value {}: {e}; nothing printed for it", i + 1);
                failed += 1;
            }
        }
    }
    out.flush()?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

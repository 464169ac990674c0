//! `larder mask phone|email|name VALUE...`: the envelope crate's masking rules, one value per
//! output line. A value the rules do not recognise is reported (never printed half-masked).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::MaskKind;

pub fn run(kind: MaskKind, values: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = 0usize;
    for v in &values {
        let masked = match kind {
            MaskKind::Phone => larder::envelope::mask::phone(v),
            MaskKind::Email => larder::envelope::mask::email(v),
            MaskKind::Name => larder::envelope::mask::name(v),
        };
        match masked {
            Ok(m) => writeln!(out, "{m}")?,
            Err(e) => {
                out.flush()?;
                eprintln!("larder: {v:?}: {e}; nothing printed for it");
                failed += 1;
            }
        }
    }
    out.flush()?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

//! `larder mask phone|email|name VALUE...`: the envelope crate's masking rules, one value per
//! output line. A value the rules do not recognise is reported (never printed half-masked).

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{MaskKind, OutputArgs};

pub fn run(kind: MaskKind, values: Vec<String>, format: OutputArgs) -> anyhow::Result<ExitCode> {
    let mask = |v: &str| match kind {
        MaskKind::Phone => larder::envelope::mask::phone(v),
        MaskKind::Email => larder::envelope::mask::email(v),
        MaskKind::Name => larder::envelope::mask::name(v),
    };
    if format.json() {
        // One array, in input order; a value the rules do not recognise carries an error
        // instead of a masked form (the input itself is never echoed: it is personal data).
        let mut failed = 0usize;
        let items: Vec<serde_json::Value> = values
            .iter()
            .map(|v| match mask(v) {
                Ok(m) => serde_json::json!({ "masked": m }),
                Err(e) => {
                    failed += 1;
                    serde_json::json!({ "masked": null, "error": e.to_string() })
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let mut out = std::io::stdout().lock();
    let mut failed = 0usize;
    for v in &values {
        let masked = mask(v);
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

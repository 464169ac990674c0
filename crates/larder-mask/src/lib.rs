//! Masking personal data for display (customer service screens, logs).
//!
//! A crate of its own, with no dependencies, so a service that only masks (or only caches and
//! masks) does not build the envelope's cryptography; `larder::mask` and
//! `larder_envelope::mask` are this crate.
//!
//! Every function returns the masked text or a [`MaskError`] saying the input was not
//! recognized; never an empty string and never the input unmasked. Rules:
//!
//! | kind | rule | examples |
//! |---|---|---|
//! | phone | Korean numbers: keep the prefix (mobile `01x`, area code, `070`) and the last 4 digits, mask the middle group digit by digit; output is always hyphenated. `+82` (E.164) input keeps the `+82 ` form without the trunk `0` | `010-1234-5678` / `01012345678` → `010-****-5678`; `02-123-4567` → `02-***-4567`; `+82 10-1234-5678` → `+82 10-****-5678` |
//! | email | keep the first 2 characters of the local part (1 if it has only 2, none if it has 1), mask every other character of it one `*` each; keep the domain | `hong.gildong@example.com` → `ho**********@example.com`; `ab@x.kr` → `a*@x.kr` |
//! | name (Hangul) | 2 syllables: keep the first (`김수` → `김*`); 3 or more: keep the first and last, mask the middle (`홍길동` → `홍*동`, `남궁민수` → `남**수`) | |
//! | name (Latin) | each word keeps its first letter; its other letters become `*`; `-`, `'` and `.` stay | `John Smith` → `J*** S****`, `Mary-Jane O'Neil` → `M***-**** O'****` |
//!
//! Separators accepted in phone numbers: `-`, space, `.`. Inputs longer than 64 (phone) or 254
//! (e-mail) characters are refused.
//!
//! # Example
//!
//! ```
//! assert_eq!(larder_mask::phone("01012345678").as_deref(), Ok("010-****-5678"));
//! assert_eq!(larder_mask::email("hong.gildong@example.com").as_deref(), Ok("ho**********@example.com"));
//! assert_eq!(larder_mask::name("홍길동").as_deref(), Ok("홍*동"));
//! assert!(larder_mask::phone("not a number").is_err());
//! ```
//!
//! # What this crate does not do
//!
//! * It does not detect personal data in free text; it masks a value you already know is a
//!   phone number, e-mail address or name.
//! * Masking is for display only: it is not anonymization, and a masked value must not be
//!   used as a key or stored in place of an encrypted one.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;

/// The input was not recognized, so nothing could be masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaskError {
    /// Not a Korean phone number this module knows.
    NotAPhoneNumber,
    /// Not an e-mail address.
    NotAnEmail,
    /// Not a Hangul name of 2–10 syllables or a Latin-letter name.
    NotAName,
}

impl fmt::Display for MaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaskError::NotAPhoneNumber => "not a recognized Korean phone number",
            MaskError::NotAnEmail => "not an e-mail address",
            MaskError::NotAName => "not a recognized name (Hangul or Latin letters)",
        })
    }
}

impl std::error::Error for MaskError {}

/// Masks a Korean phone number (see the [module docs](self) for the rule).
pub fn phone(input: &str) -> Result<String, MaskError> {
    let s = input.trim();
    if s.is_empty() || s.chars().count() > 64 {
        return Err(MaskError::NotAPhoneNumber);
    }
    let (international, rest) = match s.strip_prefix("+82") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | ' ' | '.' => {}
            _ => return Err(MaskError::NotAPhoneNumber),
        }
    }
    // With separators, the groups must be exactly prefix, middle and last four digits.
    let groups: Vec<&str> = rest.split(['-', ' ', '.']).filter(|g| !g.is_empty()).collect();
    if international {
        if digits.starts_with('0') {
            return Err(MaskError::NotAPhoneNumber);
        }
        digits.insert(0, '0');
    }
    let prefix_len = korean_prefix_len(&digits).ok_or(MaskError::NotAPhoneNumber)?;
    let total = digits.len();
    let middle_len = total.checked_sub(prefix_len + 4).ok_or(MaskError::NotAPhoneNumber)?;
    if !(3..=4).contains(&middle_len) {
        return Err(MaskError::NotAPhoneNumber);
    }
    let prefix = digits.get(..prefix_len).ok_or(MaskError::NotAPhoneNumber)?;
    let last = digits.get(total - 4..).ok_or(MaskError::NotAPhoneNumber)?;
    if groups.len() > 1 {
        let first_len = if international { prefix_len - 1 } else { prefix_len };
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [first_len, middle_len, 4] {
            return Err(MaskError::NotAPhoneNumber);
        }
    }
    let stars = "*".repeat(middle_len);
    Ok(if international {
        let national = prefix.get(1..).ok_or(MaskError::NotAPhoneNumber)?;
        format!("+82 {national}-{stars}-{last}")
    } else {
        format!("{prefix}-{stars}-{last}")
    })
}

/// Length of the prefix (mobile carrier code or area code) of a national number with its
/// leading `0`, or `None` if it is not a Korean number.
fn korean_prefix_len(d: &str) -> Option<usize> {
    let b = d.as_bytes();
    match (b.first(), b.get(1), b.get(2)) {
        (Some(b'0'), Some(b'2'), _) => Some(2),
        (Some(b'0'), Some(b'1'), Some(b'0' | b'1' | b'6' | b'7' | b'8' | b'9')) => Some(3),
        (Some(b'0'), Some(b'7'), Some(b'0')) => Some(3),
        (Some(b'0'), Some(b'3'..=b'6'), Some(b'1'..=b'5')) => Some(3),
        _ => None,
    }
}

/// Masks an e-mail address (see the [module docs](self) for the rule).
pub fn email(input: &str) -> Result<String, MaskError> {
    let s = input.trim();
    if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(MaskError::NotAnEmail);
    }
    let (local, domain) = s.split_once('@').ok_or(MaskError::NotAnEmail)?;
    if local.is_empty()
        || local.chars().count() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
    {
        return Err(MaskError::NotAnEmail);
    }
    let n = local.chars().count();
    let keep = match n {
        1 => 0,
        2 => 1,
        _ => 2,
    };
    let mut out: String = local.chars().take(keep).collect();
    out.extend(std::iter::repeat_n('*', n - keep));
    out.push('@');
    out.push_str(domain);
    Ok(out)
}

fn is_hangul_syllable(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// Masks a person's name (see the [module docs](self) for the rule).
pub fn name(input: &str) -> Result<String, MaskError> {
    let s = input.trim();
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 2 || chars.len() > 100 {
        return Err(MaskError::NotAName);
    }
    if chars.iter().all(|c| is_hangul_syllable(*c)) {
        if chars.len() > 10 {
            return Err(MaskError::NotAName);
        }
        let (first, last) = match (chars.first(), chars.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => return Err(MaskError::NotAName),
        };
        return Ok(if chars.len() == 2 {
            format!("{first}*")
        } else {
            let mut out = String::new();
            out.push(first);
            out.extend(std::iter::repeat_n('*', chars.len() - 2));
            out.push(last);
            out
        });
    }
    let latin_ok = chars
        .iter()
        .all(|c| c.is_alphabetic() && !is_hangul_syllable(*c) || matches!(c, ' ' | '-' | '\'' | '.'));
    if !latin_ok || !chars.iter().any(|c| c.is_alphabetic()) {
        return Err(MaskError::NotAName);
    }
    let words: Vec<String> = s
        .split_whitespace()
        .map(|w| {
            let mut seen_letter = false;
            w.chars()
                .map(|c| {
                    if !c.is_alphabetic() {
                        c
                    } else if seen_letter {
                        '*'
                    } else {
                        seen_letter = true;
                        c
                    }
                })
                .collect()
        })
        .collect();
    Ok(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        for (i, o) in [
            ("010-1234-5678", "010-****-5678"),
            ("01012345678", "010-****-5678"),
            ("010 1234 5678", "010-****-5678"),
            ("010.1234.5678", "010-****-5678"),
            ("011-123-4567", "011-***-4567"),
            ("02-123-4567", "02-***-4567"),
            ("02-1234-5678", "02-****-5678"),
            ("021234567", "02-***-4567"),
            ("031-123-4567", "031-***-4567"),
            ("064-1234-5678", "064-****-5678"),
            ("070-1234-5678", "070-****-5678"),
            ("+82 10-1234-5678", "+82 10-****-5678"),
            ("+821012345678", "+82 10-****-5678"),
            ("+82-2-123-4567", "+82 2-***-4567"),
            ("  010-1234-5678 ", "010-****-5678"),
        ] {
            assert_eq!(phone(i).as_deref(), Ok(o), "{i}");
        }
        for bad in [
            "",
            " ",
            "010",
            "010-1234-567",
            "010-12345-67890",
            "1588-1234",
            "+82 010-1234-5678",
            "+1 202-555-0100",
            "010-1234-567a",
            "080-123-4567",
            "999-1234-5678",
            "0101234567890",
            "02-12-3456",
            "010‑1234‑5678",
            "0101-234-5678",
            "010-12345678",
        ] {
            assert_eq!(phone(bad), Err(MaskError::NotAPhoneNumber), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(email("hong.gildong@example.com").as_deref(), Ok("ho**********@example.com"));
        assert_eq!(email("abc@x.kr").as_deref(), Ok("ab*@x.kr"));
        assert_eq!(email("ab@x.kr").as_deref(), Ok("a*@x.kr"));
        assert_eq!(email("a@x.kr").as_deref(), Ok("*@x.kr"));
        assert_eq!(email("홍길동@예시.한국").as_deref(), Ok("홍길*@예시.한국"));
        for bad in
            ["", "no-at.example.com", "@example.com", "a@b", "a@@b.com", "a b@c.com", "a@b..com", "a@.com"]
        {
            assert_eq!(email(bad), Err(MaskError::NotAnEmail), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name("홍길동").as_deref(), Ok("홍*동"));
        assert_eq!(name("남궁민수").as_deref(), Ok("남**수"));
        assert_eq!(name("김수").as_deref(), Ok("김*"));
        assert_eq!(name("John Smith").as_deref(), Ok("J*** S****"));
        assert_eq!(name("Mary-Jane O'Neil").as_deref(), Ok("M***-**** O'****"));
        assert_eq!(name("Zoë").as_deref(), Ok("Z**"));
        for bad in ["", "김", "J", "홍길동1", "홍 길동", "John3", "홍John", "---", "가나다라마바사아자차카"]
        {
            assert_eq!(name(bad), Err(MaskError::NotAName), "{bad:?}");
        }
    }

    #[test]
    fn never_blank_never_identity() {
        for input in ["010-1234-5678", "hong.gildong@example.com", "홍길동", "John Smith"] {
            let outs = [phone(input), email(input), name(input)];
            for o in outs.into_iter().flatten() {
                assert!(!o.is_empty());
                assert_ne!(o, input);
            }
        }
    }
}

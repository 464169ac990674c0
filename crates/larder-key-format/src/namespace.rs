//! The namespace rule: 1 to [`MAX_LEN`] bytes of `[a-z0-9_.-]`.
//!
//! A namespace is the first part of every key text (`{namespace}:v{version}:{digest}`), so it
//! must not contain the `:` separator, and it is kept to characters that are safe in Redis
//! key patterns, file names and metric labels. `KeySpace::new` checks it at run time,
//! `#[memoize(namespace = "…")]` at compile time; both call [`check`].

/// The longest namespace, in bytes.
pub const MAX_LEN: usize = 64;

/// What is wrong with a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// It is empty.
    Empty,
    /// It is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// It has a character outside `[a-z0-9_.-]`.
    Character,
}

impl Problem {
    /// The reason in words, for an error message (`invalid key namespace "…": {reason}`).
    pub fn reason(self) -> &'static str {
        match self {
            Problem::Empty => "it is empty",
            Problem::TooLong => "it is longer than 64 bytes",
            Problem::Character => "only lowercase ASCII letters, digits, '_', '.' and '-' are allowed",
        }
    }
}

/// Whether `b` may appear in a namespace: `[a-z0-9_.-]`.
pub fn allowed_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
}

/// Checks a namespace: 1 to [`MAX_LEN`] bytes of `[a-z0-9_.-]`.
pub fn check(namespace: &str) -> Result<(), Problem> {
    if namespace.is_empty() {
        return Err(Problem::Empty);
    }
    if namespace.len() > MAX_LEN {
        return Err(Problem::TooLong);
    }
    if !namespace.bytes().all(allowed_byte) {
        return Err(Problem::Character);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for good in ["loan_calc", "a.b-c_9", "0", &"x".repeat(MAX_LEN)] {
            assert_eq!(check(good), Ok(()), "{good:?}");
        }
        assert_eq!(check(""), Err(Problem::Empty));
        assert_eq!(check(&"x".repeat(MAX_LEN + 1)), Err(Problem::TooLong));
        for bad in ["Loan", "a b", "a:b", "ü", "a/b"] {
            assert_eq!(check(bad), Err(Problem::Character), "{bad:?}");
        }
        assert!(Problem::TooLong.reason().contains(&MAX_LEN.to_string()));
    }
}

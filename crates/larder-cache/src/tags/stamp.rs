//! An entry's tags with the generation tokens it was stored under: what a local entry and a
//! tagged frame carry. A leaf (the local tier holds a [`Stamp`] without depending on the rest
//! of `tags`).

use std::sync::Arc;

use crate::frame::{self, FrameTags};

/// A tag's generation token.
pub type Token = [u8; frame::TOKEN_LEN];

/// An entry's tags with the tokens it was stored under.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(super) tags: Box<[(Box<str>, Token)]>,
}

impl Stamp {
    pub(crate) fn from_frame(tags: FrameTags<'_>) -> Option<Arc<Stamp>> {
        if tags.is_empty() {
            return None;
        }
        Some(Arc::new(Stamp { tags: tags.iter().map(|(t, k)| (Box::from(t), k)).collect() }))
    }

    /// As [`frame::seal_tagged`] takes them.
    pub(crate) fn pairs(&self) -> Vec<(&str, Token)> {
        self.tags.iter().map(|(t, k)| (&**t, *k)).collect()
    }
}

/// What a call stores its value with.
pub(crate) enum Stamped {
    /// No tags were given.
    Untagged,
    /// The tags and the tokens read before the computation.
    Tagged(Arc<Stamp>),
    /// Tags were given but their tokens could not be read (tier error) or the tags are
    /// invalid: store nothing.
    Unavailable,
}

impl Stamped {
    /// Whether the value may be stored, and under which stamp.
    pub(crate) fn storable(&self) -> Option<Option<&Arc<Stamp>>> {
        match self {
            Stamped::Untagged => Some(None),
            Stamped::Tagged(s) => Some(Some(s)),
            Stamped::Unavailable => None,
        }
    }
}

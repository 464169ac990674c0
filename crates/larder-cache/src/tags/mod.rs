//! Tags: retiring every entry stored under a tag — in the shared tier and in every process's
//! local tier — without finding those entries. Design and costs: `docs/cache.md`, "Tags".
//!
//! * Each tag has a *record* in the shared tier (key text [`record_key`]): a MAC'd frame
//!   (flag [`FLAG_TAG_RECORD`]) holding a random 16-byte generation token.
//!   [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) writes a new token: one `SET`,
//!   whatever the number of entries.
//! * A tagged entry carries, inside its own MAC'd frame, each tag's token as read *before* its
//!   value was computed, and is served only while every token still matches the record. A
//!   missing, expired, corrupt or forged record matches nothing. No clock is compared.
//! * Each process keeps a bounded table of the tokens it confirmed recently ([`TagTable`]), so
//!   a local hit checks its tags without a round trip — for at most `tag_recheck` after the
//!   last confirmation, sooner when the backplane reports the invalidation.
//!
//! This module does not delete tagged entries (they stop matching and age out), and does not
//! take tags from a computed value: a token read after the computation could not tell whether
//! an invalidation happened during it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::{PoisonError, RwLock};

use crate::frame::{self, FrameError, FrameMeta, MacKey, FLAG_TAG_RECORD, MAX_TAGS, MAX_TAG_LEN};
use crate::local::{self, Instant};
use crate::tags::stamp::Stamp;
pub use crate::tags::stamp::Token;
use crate::tier::{SharedTier, TierError};

mod inner;
pub(crate) mod stamp;

/// How long a tag record is kept in the shared tier. An entry that outlives its tag's record
/// is recomputed once (a missing record matches no entry).
pub const RECORD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Prefix of the backplane message that announces a tag's invalidation (`#tag:{tag}`). No key
/// text starts with `#` (namespaces cannot), so no process mistakes it for a key.
pub const MESSAGE_PREFIX: &str = "#tag:";

/// Default bound on how long a process serves a tagged local entry without confirming its
/// tags against the shared tier (`CacheBuilder::tag_recheck`).
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(1);

/// Checks a tag: 1 to [`MAX_TAG_LEN`] bytes.
pub fn validate(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("a tag cannot be empty".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("a tag is at most {MAX_TAG_LEN} bytes (this one has {})", tag.len()));
    }
    Ok(())
}

/// The key text of `tag`'s record: `#tag:v1:` and 32 hex digits of BLAKE3(tag).
pub fn record_key(tag: &str) -> String {
    let h = blake3::hash(tag.as_bytes());
    let mut s = String::with_capacity(8 + 32);
    s.push_str("#tag:v1:");
    for b in &h.as_bytes()[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The backplane message announcing `tag`'s invalidation.
pub fn message(tag: &str) -> String {
    format!("{MESSAGE_PREFIX}{tag}")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh random token (larder-fork's generator: a forked child never repeats its parent's).
pub fn new_token() -> Token {
    let mut t = [0u8; frame::TOKEN_LEN];
    if larder_fork::fill(&mut t).is_err() {
        // Only uniqueness matters: time, pid and a counter.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
            ^ (u128::from(std::process::id()) << 64)
            ^ u128::from(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) << 96;
        t.copy_from_slice(&n.to_le_bytes());
    }
    t
}

/// The record frame holding `token` for `tag`.
pub fn record_frame(mac: &MacKey, tag: &str, token: &Token) -> Result<Vec<u8>, FrameError> {
    let meta = FrameMeta {
        written_ms: unix_ms(),
        ttl_ms: u64::try_from(RECORD_TTL.as_millis()).unwrap_or(u64::MAX),
        delta_ms: 0,
    };
    frame::seal_with_flags(mac, &record_key(tag), meta, FLAG_TAG_RECORD, token)
}

/// The token in a record read for `tag`: `Ok(None)` when the record has expired; an error for
/// anything that is not a genuine record of this tag.
pub fn read_record(mac: &MacKey, tag: &str, bytes: &[u8]) -> Result<Option<Token>, FrameError> {
    let fr = frame::open(mac, &record_key(tag), bytes)?;
    if fr.flags != FLAG_TAG_RECORD {
        return Err(FrameError::BadFlags(fr.flags));
    }
    let token: Token = fr.payload.try_into().map_err(|_| FrameError::BadTags)?;
    Ok((unix_ms() < fr.meta.expires_ms()).then_some(token))
}

/// Writes a new generation for `tag` into `tier` (one `SET`) and returns its token. Every
/// entry stored under `tag` before this is refused from then on. The caller tells other
/// processes (publish [`message`]`(tag)`); without that they stop serving their local copies
/// within their `tag_recheck`.
pub async fn invalidate_in(tier: &dyn SharedTier, mac: &MacKey, tag: &str) -> Result<Token, TierError> {
    validate(tag).map_err(TierError::Config)?;
    let token = new_token();
    let framed = record_frame(mac, tag, &token).map_err(|e| TierError::Config(e.to_string()))?;
    tier.set(&record_key(tag), &framed, RECORD_TTL).await?;
    Ok(token)
}

/// The tags a call stores its entry under (checked once, when given).
#[derive(Debug, Clone)]
pub(crate) struct TagSet {
    tags: Box<[Box<str>]>,
    /// Why the tags cannot be used, if they cannot (the call then stores nothing).
    refused: Option<String>,
}

impl TagSet {
    pub(crate) fn new<I, T>(tags: I) -> TagSet
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let mut v: Vec<Box<str>> = tags.into_iter().map(|t| t.into().into_boxed_str()).collect();
        v.sort_unstable();
        v.dedup();
        let refused = if v.len() > MAX_TAGS {
            Some(format!("an entry has at most {MAX_TAGS} tags ({} given)", v.len()))
        } else {
            v.iter().find_map(|t| validate(t).err())
        };
        TagSet { tags: v.into_boxed_slice(), refused }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// What this process knows of one tag.
#[derive(Debug, Clone, Copy)]
struct TagState {
    /// The current token as last seen; `None`: unknown (announced invalidated, or no record).
    token: Option<Token>,
    /// When that was true (for a read: when the read started).
    at: Instant,
}

const SHARDS: usize = 16;
/// Tags remembered per shard; a full shard is emptied (its tags are then confirmed again).
const SHARD_CAP: usize = 4096;

type Shard = RwLock<HashMap<Box<str>, TagState, foldhash::fast::RandomState>>;

/// The process's view of tag tokens, consulted by every local hit on a tagged entry.
pub(crate) struct TagTable {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
    recheck: coarsetime::Duration,
    /// No shared tier: this table is the authority (tokens never need confirming).
    authoritative: bool,
}

impl TagTable {
    pub(crate) fn new(recheck: Duration, authoritative: bool) -> TagTable {
        TagTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            recheck: local::dur(recheck),
            authoritative,
        }
    }

    fn shard(&self, tag: &str) -> &Shard {
        let i = usize::try_from(self.hasher.hash_one(tag)).unwrap_or(0) % SHARDS;
        &self.shards[i]
    }

    /// May a local entry with this stamp be served now? Untagged: always.
    #[inline]
    pub(crate) fn admits(&self, stamp: Option<&Stamp>, now: Instant) -> bool {
        match stamp {
            None => true,
            Some(s) => self.admits_tags(s, now),
        }
    }

    fn admits_tags(&self, s: &Stamp, now: Instant) -> bool {
        s.tags.iter().all(|(tag, token)| {
            match self.shard(tag).read().unwrap_or_else(PoisonError::into_inner).get(&**tag) {
                Some(st) => st.token == Some(*token) && (self.authoritative || now < st.at + self.recheck),
                None => false,
            }
        })
    }

    /// Records what a read that started at `started` found, unless something newer is known.
    pub(crate) fn learn(&self, tag: &str, token: Option<Token>, started: Instant) {
        let mut m = self.shard(tag).write().unwrap_or_else(PoisonError::into_inner);
        if let Some(st) = m.get_mut(tag) {
            if st.at < started {
                *st = TagState { token, at: started };
            }
            return;
        }
        if m.len() >= SHARD_CAP {
            m.clear();
        }
        m.insert(Box::from(tag), TagState { token, at: started });
    }

    /// Records a token this process just wrote (an invalidation), overriding everything.
    pub(crate) fn set(&self, tag: &str, token: Option<Token>) {
        let mut m = self.shard(tag).write().unwrap_or_else(PoisonError::into_inner);
        if m.len() >= SHARD_CAP && !m.contains_key(tag) {
            m.clear();
        }
        m.insert(Box::from(tag), TagState { token, at: local::now() });
    }

    /// The token to store a local-only entry under (the table is the authority).
    fn current_or_new(&self, tag: &str) -> Token {
        if let Some(Some(t)) =
            self.shard(tag).read().unwrap_or_else(PoisonError::into_inner).get(tag).map(|st| st.token)
        {
            return t;
        }
        let mut m = self.shard(tag).write().unwrap_or_else(PoisonError::into_inner);
        if let Some(Some(t)) = m.get(tag).map(|st| st.token) {
            return t;
        }
        if m.len() >= SHARD_CAP {
            m.clear();
        }
        let t = new_token();
        m.insert(Box::from(tag), TagState { token: Some(t), at: local::now() });
        t
    }
}

/// Runs every future to completion concurrently (a tag check issues one `GET` per tag; on a
/// multiplexed Redis connection they share one round trip).
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(tag: &str, token: Token) -> Stamp {
        Stamp { tags: vec![(Box::from(tag), token)].into_boxed_slice() }
    }

    #[test]
    fn table_admits_only_current_recent_tokens() {
        let t = TagTable::new(Duration::from_secs(60), false);
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        let now = local::now();
        assert!(t.admits(None, now));
        assert!(!t.admits(Some(&stamp("user:7", a)), now), "unknown tag");
        t.learn("user:7", Some(a), now);
        assert!(t.admits(Some(&stamp("user:7", a)), now));
        assert!(!t.admits(Some(&stamp("user:7", b)), now));
        // Past the recheck window: not admitted until confirmed again.
        assert!(!t.admits(Some(&stamp("user:7", a)), now + local::dur(Duration::from_secs(61))));
        // An announced invalidation forgets the token; an older read cannot bring it back.
        t.set("user:7", None);
        t.learn("user:7", Some(a), now);
        assert!(!t.admits(Some(&stamp("user:7", a)), local::now()));
    }

    #[test]
    fn authoritative_table_keeps_one_token_until_invalidated() {
        let t = TagTable::new(Duration::from_millis(1), true);
        let a = t.current_or_new("x");
        assert_eq!(t.current_or_new("x"), a);
        assert!(t.admits(Some(&stamp("x", a)), local::now() + local::dur(Duration::from_secs(3600))));
        t.set("x", Some(new_token()));
        assert!(!t.admits(Some(&stamp("x", a)), local::now()));
    }

    #[test]
    fn records_round_trip_and_refuse_everything_else() {
        let mac = MacKey::from_secret(&larder_key::KeySecret::from_hex(&"11".repeat(32)).unwrap());
        let tok = new_token();
        let f = record_frame(&mac, "user:7", &tok).unwrap();
        assert_eq!(read_record(&mac, "user:7", &f), Ok(Some(tok)));
        assert!(read_record(&mac, "user:8", &f).is_err(), "another tag's record");
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x01;
            assert!(read_record(&mac, "user:7", &g).is_err(), "flip at {i}");
        }
        // A value frame under the record's key (forged or misplaced): refused.
        let meta = FrameMeta { written_ms: unix_ms(), ttl_ms: 60_000, delta_ms: 0 };
        let value = frame::seal(&mac, &record_key("user:7"), meta, &tok).unwrap();
        assert!(read_record(&mac, "user:7", &value).is_err());
        assert!(record_key("user:7").starts_with("#tag:v1:"));
        assert_eq!(record_key("user:7").len(), 8 + 32);
    }

    #[test]
    fn tag_sets_are_checked() {
        assert!(TagSet::new(["a", "b", "a"]).refused.is_none());
        assert_eq!(TagSet::new(["a", "b", "a"]).tags.len(), 2);
        assert!(TagSet::new([""]).refused.is_some());
        assert!(TagSet::new(["x".repeat(MAX_TAG_LEN + 1)]).refused.is_some());
        assert!(TagSet::new((0..=MAX_TAGS).map(|i| i.to_string())).refused.is_some());
    }
}

//! The core's tag operations (`impl Inner`): reading and creating tag records through the
//! breaker-guarded tier call, checking a shared hit's tags, stamping a computation before it
//! runs, and invalidating. Apart from the rest of `tags` so that `cache.rs` can hold a
//! `TagTable` without an import cycle (this module uses `cache`, nothing in `cache` uses it).

use std::sync::Arc;

use crate::cache::Inner;
use crate::error::CacheError;
use crate::local;
use crate::stats::Event;
use crate::tags::stamp::{Stamp, Stamped, Token};
use crate::tags::{
    invalidate_in, join_all, message, new_token, read_record, record_frame, record_key, validate, TagSet,
    MESSAGE_PREFIX, RECORD_TTL,
};
use crate::tier::{SharedTier, TierError};

impl Inner {
    /// Reads `tag`'s current token from the shared tier (and tells the table). `Ok(None)`: no
    /// usable record (absent, expired, or refused and counted as corrupt); `Err`: the tier
    /// did not answer.
    async fn read_token(&self, tier: &dyn SharedTier, tag: &str) -> Result<Option<Token>, TierError> {
        let started = local::now();
        let key = record_key(tag);
        let token = match self.tier_call(tier, tier.get(&key)).await? {
            None => None,
            Some(bytes) => match read_record(&self.mac, tag, &bytes) {
                Ok(t) => t,
                Err(e) => {
                    self.corrupt(&key, &e.to_string());
                    None
                }
            },
        };
        self.tags.learn(tag, token, started);
        Ok(token)
    }

    /// Is an entry read from the shared tier with this stamp still current? Reads every
    /// tag's record (concurrently). A refused entry is counted ([`Event::TagStale`]: stats
    /// and metrics).
    pub(crate) async fn tags_current(&self, stamp: &Stamp) -> bool {
        let ok = match self.shared() {
            None => self.tags.admits(Some(stamp), local::now()),
            Some(tier) => {
                let tier = &*tier;
                let checks = stamp.tags.iter().map(|(tag, token)| async move {
                    matches!(self.read_token(tier, tag).await, Ok(Some(t)) if t == *token)
                });
                join_all(checks.collect()).await.into_iter().all(|b| b)
            }
        };
        if !ok {
            self.record(Event::TagStale);
        }
        ok
    }

    /// The tokens to store a value under, read before it is computed.
    pub(crate) async fn stamp_for(&self, tags: Option<&TagSet>) -> Stamped {
        let Some(tags) = tags.filter(|t| !t.is_empty()) else { return Stamped::Untagged };
        if let Some(why) = &tags.refused {
            tracing::warn!(reason = %why, "cache tags refused; the value is computed but not stored");
            return Stamped::Unavailable;
        }
        let Some(tier) = self.shared() else { return Stamped::Tagged(self.stamp_local(tags)) };
        let tier = &*tier;
        let tokens = join_all(tags.tags.iter().map(|tag| self.token_for_store(tier, tag)).collect()).await;
        let mut pairs = Vec::with_capacity(tokens.len());
        for (tag, token) in tags.tags.iter().zip(tokens) {
            match token {
                Some(t) => pairs.push((tag.clone(), t)),
                None => return Stamped::Unavailable,
            }
        }
        Stamped::Tagged(Arc::new(Stamp { tags: pairs.into_boxed_slice() }))
    }

    /// [`stamp_for`](Self::stamp_for) without a shared tier (no runtime needed).
    pub(crate) fn stamp_local_for(&self, tags: Option<&TagSet>) -> Stamped {
        match tags.filter(|t| !t.is_empty()) {
            None => Stamped::Untagged,
            Some(t) if t.refused.is_some() => Stamped::Unavailable,
            Some(t) => Stamped::Tagged(self.stamp_local(t)),
        }
    }

    fn stamp_local(&self, tags: &TagSet) -> Arc<Stamp> {
        Arc::new(Stamp { tags: tags.tags.iter().map(|t| (t.clone(), self.tags.current_or_new(t))).collect() })
    }

    /// `tag`'s current token, creating the record (set-if-absent, so workers starting together
    /// agree on one) when there is none.
    async fn token_for_store(&self, tier: &dyn SharedTier, tag: &str) -> Option<Token> {
        if let Some(t) = self.read_token(tier, tag).await.ok()? {
            return Some(t);
        }
        let mine = new_token();
        let framed = record_frame(&self.mac, tag, &mine).ok()?;
        let key = record_key(tag);
        let started = local::now();
        if self.tier_call(tier, tier.set_if_absent(&key, &framed, RECORD_TTL)).await.ok()? {
            self.tags.learn(tag, Some(mine), started);
            return Some(mine);
        }
        // Someone else's record is there: use it — unless it is unusable (corrupt, forged),
        // which matches no entry anyway, so replacing it retires nothing.
        if let Some(t) = self.read_token(tier, tag).await.ok()? {
            return Some(t);
        }
        let started = local::now();
        self.tier_call(tier, tier.set(&key, &framed, RECORD_TTL)).await.ok()?;
        self.tags.learn(tag, Some(mine), started);
        Some(mine)
    }

    /// [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) without a shared tier.
    pub(crate) fn invalidate_tag_local(&self, tag: &str) -> Result<(), CacheError> {
        validate(tag).map_err(CacheError::Config)?;
        self.tags.set(tag, Some(new_token()));
        Ok(())
    }

    /// [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
    pub(crate) async fn invalidate_tag(&self, tag: &str) -> Result<(), CacheError> {
        validate(tag).map_err(CacheError::Config)?;
        match self.shared() {
            None => return self.invalidate_tag_local(tag),
            Some(tier) => {
                let token = self.tier_call(&*tier, invalidate_in(&*tier, &self.mac, tag)).await?;
                self.tags.set(tag, Some(token));
                if let Err(e) = self.tier_call(&*tier, tier.publish_invalidation(&message(tag))).await {
                    tracing::warn!(tag, error = %e, "tag invalidated in the shared tier, but not announced; \
                        other processes stop serving local copies within tag_recheck");
                }
            }
        }
        Ok(())
    }

    /// A backplane message: `true` if it was a tag's (handled here).
    pub(crate) fn on_tag_message(&self, text: &str) -> bool {
        match text.strip_prefix(MESSAGE_PREFIX) {
            Some(tag) => {
                self.tags.set(tag, None);
                true
            }
            None => false,
        }
    }
}

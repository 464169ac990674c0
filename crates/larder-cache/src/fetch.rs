//! Everything between a local miss and the computation: the shared tier read, XFetch, and the
//! lease loop (take the lease, or wait for its holder's value up to `lease_wait`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use larder_key::KeySpace;
use tracing::Instrument;

use crate::cache::{ms, rand_unit, unix_ms, CacheValue, Inner};
use crate::local::LocalKey;
use crate::stats::Event;
use crate::tier::Lease;

/// A lease token. Tokens must differ between every two workers, forked siblings included,
/// which larder-fork's generator guarantees (it reseeds from the OS in a child).
pub(crate) fn random_token() -> [u8; 16] {
    let mut t = [0u8; 16];
    if larder_fork::fill(&mut t).is_err() {
        // Tokens only need to differ between workers; fall back to time, pid and counter.
        let n = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        t.copy_from_slice(&(n ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    t
}

/// XFetch (Vattani et al., VLDB 2015): recompute early when `now − δ·β·ln(rand) ≥ expiry`.
pub(crate) fn xfetch_due(now_ms: u64, expires_ms: u64, delta_ms: u32, beta: f64) -> bool {
    if beta <= 0.0 || delta_ms == 0 {
        return now_ms >= expires_ms;
    }
    let gap = -(f64::from(delta_ms)) * beta * rand_unit().ln(); // ≥ 0
    (now_ms as f64) + gap >= expires_ms as f64
}

/// How the function of a call may run (see `refresh.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// In the caller's request, always (the plain API: the function may borrow).
    Inline,
    /// Off the request path when a value can be served meanwhile (the detached API): a
    /// fresh value XFetch wants refreshed, or an expired one inside the stale-while-revalidate
    /// window, is returned as [`Fetched::Revalidate`]; a lease wait holding a fail-safe value
    /// is cut at `soft` ([`Fetched::Stale`]).
    Detached { soft: Option<Duration> },
}

pub(crate) enum Fetched<V> {
    /// A fresh value: done.
    Value(V),
    /// Serve `value` now and refresh the entry in the background (detached mode only).
    /// `written_ms`: when the served entry was written (a newer one needs no refresh).
    Revalidate { value: V, written_ms: u64 },
    /// A fail-safe value served because another worker's computation passed the soft
    /// timeout (detached mode only).
    Stale(V),
    /// Compute; `lease` says whether we hold the shared lease; `stale` is a value to serve if
    /// the computation fails.
    Compute { key_text: Option<String>, lease: Option<[u8; 16]>, stale: Option<V> },
}

impl Inner {
    /// Everything before the computation: the shared tier, XFetch and the lease.
    pub(crate) async fn fetch<V: CacheValue>(
        &self,
        space: &KeySpace,
        key: &LocalKey,
        cap: Option<Duration>,
    ) -> Fetched<V> {
        self.fetch_in(space, key, cap, Mode::Inline).await
    }

    /// [`fetch`](Self::fetch) for a call whose function may run in `mode`.
    pub(crate) async fn fetch_in<V: CacheValue>(
        &self,
        space: &KeySpace,
        key: &LocalKey,
        cap: Option<Duration>,
        mode: Mode,
    ) -> Fetched<V> {
        let Some(tier) = self.shared() else {
            return Fetched::Compute { key_text: None, lease: None, stale: None };
        };
        let text = String::from(space.key_from_encoding(key.encoding()));
        let mut fresh_but_due: Option<V> = None;
        let mut stale: Option<V> = None;
        match self.shared_get::<V>(&text).await {
            Some((v, meta, size, stamp)) => {
                let now = unix_ms();
                let expires = meta.expires_ms();
                if now < expires {
                    if !xfetch_due(now, expires, meta.delta_ms, self.opts.xfetch_beta) {
                        self.record(Event::SharedHit(space.namespace()));
                        self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp);
                        return Fetched::Value(v);
                    }
                    self.record(Event::EarlyRefresh(space.namespace()));
                    if let Mode::Detached { .. } = mode {
                        // Served now (and kept locally while it is fresh); the refresh runs in
                        // the background, under the lease.
                        self.record(Event::SharedHit(space.namespace()));
                        self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp.clone());
                        return Fetched::Revalidate { value: v, written_ms: meta.written_ms };
                    }
                    fresh_but_due = Some(v);
                } else {
                    self.record(Event::SharedMiss(space.namespace()));
                    if let (Mode::Detached { .. }, Some(w)) = (mode, self.opts.stale_window) {
                        if now < expires.saturating_add(ms(w)) {
                            self.record(Event::StaleServed);
                            return Fetched::Revalidate { value: v, written_ms: meta.written_ms };
                        }
                    }
                    if let Some(w) = self.opts.fail_safe {
                        if now < expires.saturating_add(ms(w)) {
                            stale = Some(v);
                        }
                    }
                }
            }
            None => {
                self.record(Event::SharedMiss(space.namespace()));
            }
        }
        // The lease loop is boxed: its futures (lease calls, waits, sleeps) would otherwise
        // make every call's future larger, and a future is moved (copied) as it is built and
        // spawned — a cost every shared-tier hit paid without ever entering the loop.
        Box::pin(self.lease_loop(space, key, cap, mode, tier, text, fresh_but_due, stale)).await
    }

    /// After a shared-tier miss (or an XFetch refresh): take the lease and compute, or wait for
    /// its holder's value (up to `lease_wait`).
    #[allow(clippy::too_many_arguments)]
    async fn lease_loop<V: CacheValue>(
        &self,
        space: &KeySpace,
        key: &LocalKey,
        cap: Option<Duration>,
        mode: Mode,
        tier: std::sync::Arc<dyn crate::tier::SharedTier>,
        text: String,
        fresh_but_due: Option<V>,
        stale: Option<V>,
    ) -> Fetched<V> {
        let token = random_token();
        // Waiting for another worker's lease is bounded by `lease_wait` in total. When a
        // holder dies or gives up, its lease disappears without a value: the waiters then try
        // to take the lease themselves (one wins and computes, the others wait for it) rather
        // than all computing at once.
        // Detached, with a fail-safe value and a soft timeout shorter than `lease_wait`: wait
        // for another worker's computation only until the soft timeout, then serve the value.
        let soft_cut = match mode {
            Mode::Detached { soft: Some(soft) } if stale.is_some() && soft < self.opts.lease_wait => {
                Some(soft)
            }
            _ => None,
        };
        let deadline = tokio::time::Instant::now() + soft_cut.unwrap_or(self.opts.lease_wait);
        let mut waited_once = false;
        let mut timed_out = false;
        loop {
            match self.tier_call(tier.as_ref(), tier.try_lease(&text, &token, self.opts.lease_ttl)).await {
                Ok(Lease::Acquired) => {
                    // Look again after winning the lease: another worker may have stored the
                    // value and released its lease between our miss above and our lease (its
                    // release is what let us win). Computing now would run the function twice
                    // for the fleet. (Read quietly: an entry refused above was already
                    // counted as corrupt.)
                    if fresh_but_due.is_none() {
                        if let Ok(Some(bytes)) = self.tier_call(tier.as_ref(), tier.get(&text)).await {
                            if let Some((v, meta, size, stamp)) = self.accept::<V>(&text, &bytes, true).await
                            {
                                if unix_ms() < meta.expires_ms() {
                                    self.release(Some(&text), Some(token)).await;
                                    self.record(Event::SharedHit(space.namespace()));
                                    self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp);
                                    return Fetched::Value(v);
                                }
                            }
                        }
                    }
                    return Fetched::Compute {
                        key_text: Some(text),
                        lease: Some(token),
                        stale: fresh_but_due.or(stale),
                    };
                }
                Ok(Lease::HeldByOther) => {
                    if let Some(v) = fresh_but_due {
                        // Someone else is already refreshing; the current value is still good.
                        return Fetched::Value(v);
                    }
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        timed_out = true;
                        break;
                    }
                    if !waited_once {
                        self.record(Event::LeaseWait(space.namespace()));
                        waited_once = true;
                    }
                    let wait = deadline - now;
                    let waited =
                        tokio::time::timeout(wait + self.opts.op_timeout, tier.wait_for_value(&text, wait))
                            .instrument(tracing::debug_span!(
                                "larder_cache.lease_wait",
                                namespace = space.namespace()
                            ))
                            .await;
                    let got = match waited {
                        Ok(Ok(Some(bytes))) => self.accept::<V>(&text, &bytes, false).await,
                        Ok(Ok(None)) => None,
                        Ok(Err(e)) => {
                            self.tier_result::<()>(&Err(e));
                            break;
                        }
                        Err(_) => {
                            timed_out = true;
                            break;
                        }
                    };
                    if let Some((v, meta, size, stamp)) = got {
                        if unix_ms() < meta.expires_ms() {
                            self.record(Event::SharedHit(space.namespace()));
                            self.insert_local(key.clone(), Some(&text), &v, &meta, size, cap, stamp);
                            return Fetched::Value(v);
                        }
                    }
                    // No value: the lease expired or was released empty. Try to take it (after a
                    // poll interval, so a tier that answers "no value" at once cannot spin us).
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(self.opts.poll_interval.min(left)).await;
                }
                Err(_) => {
                    return Fetched::Compute {
                        key_text: Some(text),
                        lease: None,
                        stale: fresh_but_due.or(stale),
                    }
                }
            }
        }
        if let (true, Some(_), Some(v)) = (timed_out, soft_cut, stale.clone()) {
            self.record(Event::StaleServedByTimeout);
            return Fetched::Stale(v);
        }
        self.record(Event::LeaseTimeout(space.namespace()));
        Fetched::Compute { key_text: Some(text), lease: None, stale }
    }
}

//! The pub/sub side of a Redis tier: the hub of waiters and invalidation handlers, and the
//! background task that owns the subscription and reconnects with capped backoff.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisError;
use tokio::sync::{watch, Notify};

use crate::tier::InvalidationHandler;

/// State shared with the background listener.
pub(super) struct Hub {
    pub(super) waiters: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    pub(super) handlers: Mutex<Vec<InvalidationHandler>>,
    pub(super) started: AtomicBool,
    /// True while the listener is subscribed.
    pub(super) subscribed: watch::Sender<bool>,
}

impl Hub {
    pub(super) fn register(self: &Arc<Self>, key: &str) -> WaiterGuard {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(key.to_string()).or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        WaiterGuard { hub: Arc::clone(self), key: key.to_string(), notify: Arc::clone(&entry.0) }
    }

    fn wake(&self, key: &str) {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = map.get(key) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for (n, _) in map.values() {
            n.notify_waiters();
        }
    }

    fn dispatch_invalidation(&self, key: &str) {
        let handlers: Vec<InvalidationHandler> =
            self.handlers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for h in handlers {
            // A panicking handler must not take the listener (and every later invalidation)
            // down with it.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(key))).is_err() {
                tracing::error!("an invalidation handler panicked; the listener goes on");
            }
        }
    }
}

pub(super) struct WaiterGuard {
    hub: Arc<Hub>,
    key: String,
    pub(super) notify: Arc<Notify>,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut map = self.hub.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&self.key) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The background task owning the pub/sub connection.
pub(super) struct Listener {
    pub(super) hub: Arc<Hub>,
    pub(super) clients: Vec<redis::Client>,
    pub(super) release_channel: String,
    pub(super) invalidate_channel: String,
    pub(super) timeout: Duration,
    pub(super) shutdown: watch::Receiver<()>,
}

impl Listener {
    pub(super) async fn run(mut self) {
        let mut backoff = Duration::from_millis(20);
        let mut node = 0usize;
        loop {
            if self.shutdown.has_changed().is_err() {
                return;
            }
            let client = &self.clients[node % self.clients.len()];
            let connected = tokio::time::timeout(self.timeout, async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&[self.release_channel.as_str(), self.invalidate_channel.as_str()]).await?;
                Ok::<_, RedisError>(ps)
            })
            .await;
            match connected {
                Ok(Ok(ps)) => {
                    backoff = Duration::from_millis(20);
                    self.hub.subscribed.send_replace(true);
                    // Notifications may have been lost while disconnected: let waiters re-check.
                    self.hub.wake_all();
                    let mut stream = ps.into_on_message();
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => {
                                    let Ok(key) = std::str::from_utf8(msg.get_payload_bytes()) else {
                                        continue;
                                    };
                                    if msg.get_channel_name() == self.release_channel {
                                        self.hub.wake(key);
                                    } else {
                                        self.hub.dispatch_invalidation(key);
                                    }
                                }
                                None => break,
                            },
                            changed = self.shutdown.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    self.hub.subscribed.send_replace(false);
                    tracing::debug!("redis pub/sub connection lost; reconnecting");
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "redis pub/sub connect failed");
                    node += 1;
                }
                Err(_) => node += 1,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

//! What a request asks of the cache when its copy of the key will not do: which key to send
//! now, or which load to wait for. One decision for every client of the cache (the layer's
//! service and the adapters of features `grpc` and `async-openai`).

use std::sync::Arc;

use tokio::time::Instant;

use super::{detached, Current, KeyCache, LoadFuture, LoadSettings};
use crate::KeyError;

/// The key to send now, or the load to wait for.
pub(crate) enum KeyNow {
    Ready(Arc<Current>),
    Wait(LoadFuture),
    Failed(KeyError),
}

impl KeyCache {
    /// The key for a request now: the first load; a due refresh, driven by this request while
    /// every other keeps the current key; an expired key waits for the refresh another request
    /// drives; and while the refresh of an expired key backs off, a failure at once.
    ///
    /// Loads run as tasks of their own, started now: a future kept unpolled does not hold
    /// them up, and a caller's timeout that drops the request does not cancel them.
    pub(crate) fn key_now(self: &Arc<Self>, settings: &Arc<LoadSettings>) -> KeyNow {
        let Some(current) = self.current() else {
            return KeyNow::Wait(detached(self.clone().load_first(settings.clone())));
        };
        let now = Instant::now();
        let expired = current.is_expired(now);
        if !current.is_due(now) {
            if expired {
                return KeyNow::Failed(self.expired(&current, settings, now));
            }
            self.ensure_timer(&current, now);
        } else if let Some(claim) = self.claim_refresh() {
            return KeyNow::Wait(detached(claim.refresh(settings.clone())));
        } else if expired {
            return KeyNow::Wait(detached(self.clone().refresh(settings.clone())));
        }
        KeyNow::Ready(current)
    }

    /// The key a load gave, unless it expired meanwhile: a failed refresh gives the old key
    /// back, to be sent only while it lives.
    pub(crate) fn usable(
        &self,
        loaded: Result<Arc<Current>, KeyError>,
        settings: &LoadSettings,
    ) -> Result<Arc<Current>, KeyError> {
        let current = loaded?;
        let now = Instant::now();
        if current.is_expired(now) {
            return Err(self.expired(&current, settings, now));
        }
        Ok(current)
    }
}

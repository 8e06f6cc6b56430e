//! How the cache tells the world about its key: the hooks of every layer value that shares it,
//! the counters behind [`KeyStatus`](super::KeyStatus), and (feature `metrics`) the metrics.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use std::time::SystemTime;

use tokio::time::Instant;

use super::{Current, KeyCache, LoadSettings};
use crate::event::{Expiry, KeyEvent};
use crate::{ApiKey, KeyError};

/// Counters and the last failure, written on loads, 401s and replays (never per request), read
/// by `status()` without touching the single-flight lock.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) loads: AtomicU64,
    pub(super) replays: AtomicU64,
    pub(super) failures: AtomicU32,
    pub(super) last_error: Mutex<Option<KeyError>>,
}

/// The settings of every layer value that shares a cache, weakly: a change of the key is
/// reported to the hooks of all of them, whichever drove it.
#[derive(Default)]
pub(super) struct HookSets(Mutex<Vec<Weak<LoadSettings>>>);

impl KeyCache {
    /// Makes the hooks of `settings` hear every event of the key from now on.
    pub(crate) fn register(&self, settings: &Arc<LoadSettings>) {
        let Ok(mut sets) = self.hook_sets.0.lock() else {
            return;
        };
        sets.retain(|set| set.strong_count() > 0);
        if !sets.iter().any(|set| set.as_ptr() == Arc::as_ptr(settings)) {
            sets.push(Arc::downgrade(settings));
        }
    }

    /// Runs every registered hook once (a hook set before a layer was cloned is in both
    /// clones' settings), the driver's own included. A panicking hook is caught and logged.
    pub(crate) fn emit(&self, driver: &LoadSettings, event: &KeyEvent) {
        #[cfg(feature = "metrics")]
        super::metrics::record(driver, event);
        let sets: Vec<Arc<LoadSettings>> = self
            .hook_sets
            .0
            .lock()
            .map(|sets| sets.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let mut ran: Vec<*const ()> = Vec::new();
        let all = std::iter::once(driver).chain(sets.iter().map(|s| &**s));
        for hook in all.flat_map(|set| set.hooks.iter()) {
            let id = Arc::as_ptr(hook) as *const ();
            if ran.contains(&id) {
                continue;
            }
            ran.push(id);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(event)));
            if let Err(payload) = outcome {
                // A payload whose own drop panics must not unwind into the request either.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
                tracing::error!("a key event hook panicked; the layer went on");
            }
        }
    }

    /// A load finished: counts it, and keeps its error (or clears the last one).
    pub(super) fn count_load(
        &self,
        settings: &LoadSettings,
        outcome: Result<&ApiKey, &KeyError>,
        failures: u32,
    ) {
        #[cfg(feature = "metrics")]
        super::metrics::load(settings, outcome);
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        self.set_failures(settings, failures);
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = outcome.err().cloned();
        }
    }

    /// The error for a request that finds `current` expired; the first such request reports
    /// [`KeyEvent::Expired`] for the key.
    pub(crate) fn expired(
        &self,
        current: &Current,
        settings: &LoadSettings,
        now: Instant,
    ) -> KeyError {
        self.report_expired(current, settings);
        current.expired_error(now)
    }

    pub(super) fn report_expired(&self, current: &Current, settings: &LoadSettings) {
        if current.expiry_reported.swap(true, Ordering::AcqRel) {
            return;
        }
        let expiry = Expiry {
            fingerprint: current.key.fingerprint().to_owned(),
            expired_at: current.key.expiry().unwrap_or_else(SystemTime::now),
        };
        tracing::error!(
            fingerprint = current.key.fingerprint(),
            "the API key expired and no new key could be loaded"
        );
        self.emit(settings, &KeyEvent::Expired(expiry));
    }

    /// Loads that failed in a row (or brought back a rejected key), for `status()` and metrics.
    pub(super) fn set_failures(&self, settings: &LoadSettings, failures: u32) {
        #[cfg(feature = "metrics")]
        super::metrics::failures(settings, failures);
        #[cfg(not(feature = "metrics"))]
        let _ = settings;
        self.stats.failures.store(failures, Ordering::Relaxed);
    }

    /// A 401 was replayed with a new key.
    pub(crate) fn count_replay(&self) {
        self.stats.replays.fetch_add(1, Ordering::Relaxed);
    }
}

//! One load from the source, and what a failed one leaves behind: the single-flight lock, the
//! load with its timeout and panic guard, and the record and report of a failure.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::MutexGuard;

use super::current::arrived_expired;
use super::detach::CatchUnwind;
use super::schedule::backoff;
use super::{Current, Flight, KeyCache, LoadSettings};
use crate::event::{KeyEvent, LoadFailure};
use crate::rotation::RotationReason;
use crate::{ApiKey, KeyError, KeyErrorKind};

impl KeyCache {
    /// The single-flight lock, waited for at most a load's timeout and a second: a load stuck
    /// on a runtime that is no longer driven must not hang every other caller for good.
    pub(super) async fn lock_flight(
        &self,
        settings: &LoadSettings,
    ) -> Result<MutexGuard<'_, Flight>, KeyError> {
        let wait = settings.load_timeout.saturating_add(Duration::from_secs(1));
        tokio::time::timeout(wait, self.flight.lock())
            .await
            .map_err(|_| {
                self.own_error(
                    KeyErrorKind::Timeout,
                    format!(
                        "another load of the key has not finished within {wait:?} (is the \
                         runtime it runs on still driven?)"
                    ),
                )
            })
    }

    /// A load without the single-flight lock, because the load holding it is stuck (on a
    /// runtime that is no longer driven): one such load at a time, its outcome kept as any
    /// other's. Callers that find one running get `stuck`.
    pub(super) async fn rescue(
        self: &Arc<Self>,
        settings: &LoadSettings,
        stuck: KeyError,
    ) -> Result<Arc<Current>, KeyError> {
        if self.rescuing.swap(true, Ordering::AcqRel) {
            return Err(stuck);
        }
        struct Release<'a>(&'a AtomicBool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _release = Release(&self.rescuing);
        tracing::warn!("a key load holding the single-flight lock is stuck; loading without it");
        let mut flight = Flight::default();
        match self.load_once(&mut flight, settings).await {
            Ok(key) => Ok(self.install(&mut flight, settings, key, RotationReason::Initial)),
            Err(err) => {
                let delay = self.record_failure(&mut flight, settings, &err);
                self.report_failure(settings, &err, false, Some(delay));
                Err(err)
            }
        }
    }

    /// An error the cache makes itself, named after the source when it says where it looks.
    pub(super) fn own_error(&self, kind: KeyErrorKind, cause: String) -> KeyError {
        let err = KeyError::new(kind, cause);
        match self.source.describe() {
            Some(origin) => err.with_origin(origin),
            None => err,
        }
    }

    /// One load from the source, bounded by the layer's timeout. The caller holds the flight.
    pub(super) async fn load_once(
        &self,
        flight: &mut Flight,
        settings: &LoadSettings,
    ) -> Result<ApiKey, KeyError> {
        let index = self.started.fetch_add(1, Ordering::AcqRel);
        let timeout = settings.load_timeout;
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| self.source.load())) {
            // A panic in `load()` itself, before it returned its future, is a failed load too.
            Err(_) => Err(self.own_error(
                KeyErrorKind::Other,
                "the key source panicked while loading".to_owned(),
            )),
            Ok(load) => match tokio::time::timeout(timeout, CatchUnwind::new(load)).await {
                Ok(result) => result,
                Err(_) => Err(self.own_error(
                    KeyErrorKind::Timeout,
                    format!("loading the key took longer than {timeout:?}"),
                )),
            },
        };
        flight.last_load = Some(index);
        tracing::debug!(ok = result.is_ok(), "key source loaded");
        let key = result?;
        match arrived_expired(&key) {
            Some(err) => Err(err),
            None => Ok(key),
        }
    }

    /// Records a failed load (for the backoff and `status`); returns how long until the next
    /// may run: the backoff, or the store's own `Retry-After` when longer (capped). The caller
    /// stores what the failure leaves, then [`report_failure`](KeyCache::report_failure)s it,
    /// so a hook that reads the status sees the failure.
    pub(super) fn record_failure(
        &self,
        flight: &mut Flight,
        settings: &LoadSettings,
        err: &KeyError,
    ) -> Duration {
        flight.last_error = Some(err.clone());
        let asked = err
            .retry_after()
            .map_or(Duration::ZERO, |wait| wait.min(KeyError::MAX_RETRY_AFTER));
        let delay = backoff(flight.failures).max(asked);
        flight.failures = flight.failures.saturating_add(1);
        self.count_load(settings, Err(err), flight.failures);
        delay
    }

    pub(super) fn report_failure(
        &self,
        settings: &LoadSettings,
        err: &KeyError,
        serving_stale: bool,
        next_load_in: Option<Duration>,
    ) {
        let failure = LoadFailure {
            error: err.clone(),
            serving_stale,
            next_load_in,
        };
        self.emit(settings, &KeyEvent::LoadFailed(failure));
    }
}

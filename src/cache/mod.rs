//! The key cache one layer shares with all its services and handles.
//!
//! Reads are lock-free: services compare one atomic counter (`epoch`) with the copy they hold and
//! only look further when it moved. Every load goes through one async mutex (single flight), and
//! each path re-checks after taking it whether the load it wanted already happened.

mod alarm;
mod claim;
mod current;
mod detach;
mod handle;
mod load;
#[cfg(feature = "metrics")]
mod metrics;
mod rejected;
mod report;
mod request;
mod schedule;
mod status;
mod timer;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

pub(crate) use alarm::{running as alarm_running, Epoch};
pub(crate) use current::{Current, LoadSettings};
pub(crate) use detach::detached;
pub use handle::KeyHandle;
pub(crate) use request::KeyNow;
pub use status::{KeyState, KeyStatus};

use crate::event::KeyEvent;
use crate::rotation::{RotationEvent, RotationReason};
use crate::{ApiKey, KeyError, KeyErrorKind, KeySource};
use rejected::RejectedReplays;
use report::{HookSets, Stats};
use schedule::{backoff, deadline};
use timer::TimerSlot;

const HISTORY: usize = 8;

pub(crate) struct KeyCache {
    /// For the refresh timers, which must not keep the cache alive.
    me: Weak<KeyCache>,
    source: Box<dyn KeySource>,
    current: ArcSwapOption<Current>,
    /// Moves whenever `current` is replaced, becomes due, or a refresh claim is given back.
    /// Services hold the value they saw (and the `Arc`: see [`Epoch`]).
    epoch: Arc<Epoch>,
    /// Counts loads started; a load's index is the count before it started.
    started: AtomicU64,
    /// A load runs without the single-flight lock, whose holder is stuck (`rescue`).
    rescuing: AtomicBool,
    /// A request holds the [`claim::RefreshClaim`]: others keep using the current key.
    refreshing: AtomicBool,
    flight: tokio::sync::Mutex<Flight>,
    /// Digests of the last few keys by generation, so a replay never reuses a rejected key
    /// even after A -> B -> A. Digests, not keys: old secrets are not kept.
    history: Mutex<VecDeque<(u64, u64)>>,
    timer: TimerSlot,
    /// Held while a key is stored (see `store`).
    storing: Mutex<()>,
    hook_sets: HookSets,
    stats: Stats,
    rejected_replays: RejectedReplays,
}

#[derive(Default)]
struct Flight {
    /// The index of the last load that finished, and its error if it failed.
    last_load: Option<u64>,
    last_error: Option<KeyError>,
    /// Consecutive loads that failed or brought back a rejected key.
    failures: u32,
    /// No key yet and the last load failed: no new first load before then.
    first_retry_at: Option<Instant>,
    /// A 401 reload brought back the same key: no new reload for this generation before then.
    rejected_retry_at: Option<(u64, Instant)>,
}

impl KeyCache {
    pub(crate) fn new(source: Box<dyn KeySource>) -> Arc<KeyCache> {
        Arc::new_cyclic(|me| KeyCache {
            me: me.clone(),
            source,
            current: ArcSwapOption::const_empty(),
            epoch: Arc::default(),
            started: AtomicU64::new(0),
            rescuing: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
            flight: tokio::sync::Mutex::new(Flight::default()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            timer: TimerSlot::default(),
            storing: Mutex::new(()),
            hook_sets: HookSets::default(),
            stats: Stats::default(),
            rejected_replays: RejectedReplays::default(),
        })
    }

    #[cfg(test)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// The epoch itself, for services to read without going through the cache.
    pub(crate) fn epoch_cell(&self) -> Arc<Epoch> {
        self.epoch.clone()
    }

    fn bump_epoch(&self) {
        self.epoch.bump();
    }

    pub(crate) fn current(&self) -> Option<Arc<Current>> {
        self.current.load_full()
    }

    /// Arms a refresh timer on the caller's runtime when the key has a refresh point and no
    /// timer is armed (the last one's runtime went away).
    pub(crate) fn ensure_timer(&self, current: &Current, now: Instant) {
        // A point already past is due now: the caller refreshes, no timer needed (one would
        // fire at once and send every service down the slow path again).
        let ahead = current.refresh_at.is_some_and(|at| at > now);
        if ahead && !self.timer.is_armed() {
            self.timer.arm(&self.me, current.deadlines());
        }
    }

    /// First load: single flight, errors shared with everyone who waited. After a failure,
    /// requests in the backoff window get that failure without a new load.
    pub(crate) async fn load_first(
        self: Arc<Self>,
        settings: Arc<LoadSettings>,
    ) -> Result<Arc<Current>, KeyError> {
        let mut flight = match self.lock_flight(&settings).await {
            Ok(flight) => flight,
            Err(stuck) => return self.rescue(&settings, stuck).await,
        };
        if let Some(cur) = self.current() {
            return Ok(cur);
        }
        if let (Some(err), Some(until)) = (&flight.last_error, flight.first_retry_at) {
            if Instant::now() < until {
                return Err(err.clone());
            }
        }
        match self.load_once(&mut flight, &settings).await {
            Ok(key) => Ok(self.install(&mut flight, &settings, key, RotationReason::Initial)),
            Err(err) => {
                let delay = self.record_failure(&mut flight, &settings, &err);
                flight.first_retry_at = deadline(Instant::now(), delay);
                tracing::warn!(error = %err, retry_in = ?delay, "loading the first key failed");
                self.report_failure(&settings, &err, false, Some(delay));
                Err(err)
            }
        }
    }

    /// A due refresh, driven by the holder of a [`claim::RefreshClaim`] (or awaited by a
    /// request whose key expired while another request refreshes it). Never fails while a key
    /// exists: a failed refresh keeps the old key, with the failure, and backs off; the caller
    /// checks the key's expiry before it sends it.
    pub(crate) async fn refresh(
        self: Arc<Self>,
        settings: Arc<LoadSettings>,
    ) -> Result<Arc<Current>, KeyError> {
        let mut flight = match self.lock_flight(&settings).await {
            Ok(flight) => flight,
            // The load that holds the lock is stuck: the key there is, if any (a request
            // checks its expiry), else a load of our own.
            Err(stuck) => match self.current() {
                Some(cur) => return Ok(cur),
                None => return self.rescue(&settings, stuck).await,
            },
        };
        let Some(cur) = self.current() else {
            drop(flight);
            return self.clone().load_first(settings).await;
        };
        if !cur.is_due(Instant::now()) {
            return Ok(cur);
        }
        match self.load_once(&mut flight, &settings).await {
            Ok(key) => Ok(self.install(&mut flight, &settings, key, RotationReason::Refresh)),
            Err(err) => {
                let delay = self.record_failure(&mut flight, &settings, &err);
                tracing::warn!(
                    fingerprint = cur.key.fingerprint(),
                    error = %err,
                    retry_in = ?delay,
                    "key refresh failed; still using the current key"
                );
                // Served stale until the key expires at the latest: a request checks that
                // before it sends (`Current::is_expired`).
                let now = Instant::now();
                let retry_at = deadline(now, delay);
                // A 401 with this key waits for the same window: one load per window.
                if let Some((gen, _)) = flight.rejected_retry_at {
                    if gen == cur.generation {
                        flight.rejected_retry_at = retry_at.map(|at| (gen, at));
                    }
                }
                let kept = self.store(cur.after_failure(retry_at, err.clone()));
                self.report_failure(&settings, &err, !kept.is_expired(now), Some(delay));
                Ok(kept)
            }
        }
    }

    /// The server answered 401 to the key of `generation`. Reloads once for all requests that
    /// got a 401 with that key; returns the key to use now.
    ///
    /// Only a load that started after this call may be shared: one already running when the
    /// 401 arrived may have read the very key the server just revoked.
    pub(crate) async fn reject(
        self: Arc<Self>,
        generation: u64,
        settings: Arc<LoadSettings>,
    ) -> Result<Arc<Current>, KeyError> {
        let ticket = self.started.load(Ordering::Acquire);
        let mut flight = self.lock_flight(&settings).await?;
        let cur = self.current();
        if let Some(cur) = &cur {
            if cur.generation != generation {
                return Ok(cur.clone()); // a newer key is already here
            }
            tracing::debug!(fingerprint = cur.key.fingerprint(), "key rejected with 401");
        }
        if flight.last_load.is_some_and(|index| index >= ticket) {
            // A load that started after the 401 came back: share its outcome.
            return match (&flight.last_error, cur) {
                (Some(err), _) => Err(err.clone()),
                (None, Some(cur)) => Ok(cur),
                (None, None) => Err(KeyError::new(KeyErrorKind::Other, "no key loaded")),
            };
        }
        if let (Some((gen, until)), Some(cur)) = (flight.rejected_retry_at, &cur) {
            if gen == generation && Instant::now() < until {
                return Ok(cur.clone()); // the source gave this key back lately: no storm
            }
        }
        if let Some(cur) = &cur {
            if self.replay_backoff_holds(generation, Instant::now()) {
                return Ok(cur.clone()); // a replay with this very key was rejected lately
            }
        }
        match self.load_once(&mut flight, &settings).await {
            Ok(key) => {
                let same = cur.as_ref().is_some_and(|c| c.key.same_secret(&key));
                let installed = self.install(&mut flight, &settings, key, RotationReason::Rejected);
                if same {
                    let delay = backoff(flight.failures);
                    flight.failures = flight.failures.saturating_add(1);
                    self.set_failures(&settings, flight.failures);
                    flight.rejected_retry_at =
                        deadline(Instant::now(), delay).map(|at| (generation, at));
                    tracing::warn!(
                        fingerprint = installed.key.fingerprint(),
                        "the server rejected the key and the source gave the same key back"
                    );
                }
                Ok(installed)
            }
            Err(err) => {
                let delay = self.record_failure(&mut flight, &settings, &err);
                let now = Instant::now();
                let retry_at = deadline(now, delay);
                flight.rejected_retry_at = retry_at.map(|at| (generation, at));
                tracing::warn!(error = %err, "reloading the rejected key failed");
                let mut stale = false;
                if let Some(cur) = &cur {
                    // Still sent (the server may accept it again), but no longer healthy: a
                    // load after the backoff clears it, or at the key's own refresh point if
                    // that comes first (one already past would skip the backoff).
                    let retry_at = match (cur.refresh_at.filter(|a| *a > now), retry_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => b.or(a),
                    };
                    stale = !self
                        .store(cur.after_failure(retry_at, err.clone()))
                        .is_expired(now);
                }
                self.report_failure(&settings, &err, stale, Some(delay));
                Err(err)
            }
        }
    }

    /// Whether `current` holds a different secret from the key of `generation`. Unknown
    /// (too old) generations count as the same: never risk a replay with a rejected key.
    pub(crate) fn is_new_key(&self, generation: u64, current: &Current) -> bool {
        if current.generation == generation {
            return false;
        }
        let Ok(history) = self.history.lock() else {
            return false;
        };
        history
            .iter()
            .find(|(g, _)| *g == generation)
            .is_some_and(|(_, digest)| *digest != current.key.digest())
    }

    /// A manual rotation: loads now, whatever the state.
    pub(crate) async fn rotate(
        self: Arc<Self>,
        settings: &LoadSettings,
    ) -> Result<Arc<Current>, KeyError> {
        let mut flight = self.lock_flight(settings).await?;
        match self.load_once(&mut flight, settings).await {
            Ok(key) => Ok(self.install(&mut flight, settings, key, RotationReason::Manual)),
            Err(err) => {
                // Counts for the health (`status`), and so for the backoff of the next load;
                // a manual rotation schedules nothing itself.
                self.record_failure(&mut flight, settings, &err);
                let now = Instant::now();
                let stale = self.current().is_some_and(|cur| {
                    // The key is still sent, but the status says the source is failing.
                    self.store(cur.after_failure(cur.refresh_at, err.clone()));
                    !cur.is_expired(now)
                });
                self.report_failure(settings, &err, stale, None);
                Err(err)
            }
        }
    }

    /// Makes `key` current; reports a rotation when the secret changed.
    fn install(
        &self,
        flight: &mut Flight,
        settings: &LoadSettings,
        key: ApiKey,
        reason: RotationReason,
    ) -> Arc<Current> {
        flight.last_error = None;
        flight.first_retry_at = None;
        let old = self.current();
        let changed = old.as_ref().is_none_or(|o| !o.key.same_secret(&key));
        if changed {
            flight.rejected_retry_at = None;
        }
        // A good load ends a run of failures, the same key included; only the same key back
        // after a 401 keeps counting (`reject`), so its backoff grows.
        if changed || reason != RotationReason::Rejected {
            flight.failures = 0;
        }
        let generation = match &old {
            Some(o) if !changed => o.generation,
            Some(o) => o.generation + 1,
            None => 1,
        };
        let installed = self.store(Current::fresh(key, generation, Instant::now()));
        self.count_load(settings, Ok(&installed.key), flight.failures);
        if changed {
            if let Ok(mut history) = self.history.lock() {
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back((generation, installed.key.digest()));
            }
            let event = RotationEvent::new(
                reason,
                old.map(|o| o.key.fingerprint().to_owned()),
                installed.key.fingerprint().to_owned(),
            )
            .with_expiry(installed.key.expiry());
            tracing::info!(
                reason = ?reason,
                old = event.old_fingerprint(),
                new = event.new_fingerprint(),
                "API key rotated"
            );
            self.emit(settings, &KeyEvent::Rotated(event));
        }
        installed
    }

    /// Publishes a snapshot and arms the timer and the alarm that mark it due.
    fn store(&self, current: Current) -> Arc<Current> {
        // Armed and published as one: of two stores at once (a rescue load beside the stuck
        // one), the key that stays is the one whose deadlines the timer and the alarm keep.
        let _one_at_a_time = self.storing.lock().unwrap_or_else(PoisonError::into_inner);
        self.timer.arm(&self.me, current.deadlines());
        self.epoch.alarm_at(current.deadlines());
        let current = Arc::new(current);
        self.current.store(Some(current.clone()));
        self.bump_epoch();
        current
    }
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        self.timer.abort();
        self.epoch.cancel_alarm();
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cur = self.current();
        f.debug_struct("KeyCache")
            .field("fingerprint", &cur.as_ref().map(|c| c.key.fingerprint()))
            .field("generation", &cur.as_ref().map(|c| c.generation))
            .finish_non_exhaustive()
    }
}

/// A load in flight, as a request's response future holds it (slow path only).
pub(crate) type LoadFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Arc<Current>, KeyError>> + Send + 'static>,
>;

//! The key in use, as one immutable snapshot, and what a load needs from its layer.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::schedule::{deadline, refresh_ahead, refresh_before_expiry};
use crate::event::EventHook;
use crate::{ApiKey, KeyError, KeyErrorKind};

/// Default bound on one `KeySource::load`.
pub(crate) const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The key in use, as one immutable snapshot.
pub(crate) struct Current {
    pub(crate) key: ApiKey,
    /// Bumped each time the secret changes; a 401 names the generation it was sent with.
    pub(crate) generation: u64,
    /// When the next refresh is due (refresh-ahead point, or the end of a backoff).
    pub(crate) refresh_at: Option<Instant>,
    /// The key's hard expiry on this clock: it is never sent at or after it.
    pub(crate) expires_at: Option<Instant>,
    /// Why the last refresh of this key failed, if one did: the cause an `Expired` error gives.
    pub(crate) failure: Option<KeyError>,
    /// When this key was loaded (kept across failed refreshes).
    pub(crate) loaded_at: Instant,
    /// `KeyEvent::Expired` was reported for this key: once per key.
    pub(crate) expiry_reported: AtomicBool,
}

impl Current {
    /// A key just loaded: its refresh point is the earlier of the one its hint asks for and the
    /// one its expiry needs. (The load refused a key that arrived expired; one that expired in
    /// the nanoseconds since is due and expired at once.)
    pub(crate) fn fresh(key: ApiKey, generation: u64, now: Instant) -> Current {
        let by_hint = key.refresh_hint().map(refresh_ahead);
        let (by_expiry, expires_at) = match key.expiry().map(remaining) {
            None => (None, None),
            Some(None) => (Some(Duration::ZERO), Some(now)),
            Some(Some(left)) => (Some(refresh_before_expiry(left)), deadline(now, left)),
        };
        let ahead = match (by_hint, by_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Current {
            key,
            generation,
            refresh_at: ahead.and_then(|wait| deadline(now, wait)),
            expires_at,
            failure: None,
            loaded_at: now,
            expiry_reported: AtomicBool::new(false),
        }
    }

    /// This key again after a failed refresh: kept until `retry_at` (or its expiry).
    pub(crate) fn after_failure(&self, retry_at: Option<Instant>, err: KeyError) -> Current {
        Current {
            key: self.key.clone(),
            generation: self.generation,
            refresh_at: retry_at,
            expires_at: self.expires_at,
            failure: Some(err),
            loaded_at: self.loaded_at,
            expiry_reported: AtomicBool::new(self.expiry_reported.load(Ordering::Relaxed)),
        }
    }

    /// Past its refresh point; or expired by the wall clock with no failed load yet (see
    /// [`is_expired`](Current::is_expired)), which a refresh must follow at once.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|at| now >= at)
            || (self.failure.is_none() && self.is_past_expiry_by_the_wall_clock())
    }

    /// At or past the expiry, by either clock: the monotonic clock (which tokio's paused time
    /// drives, and a wall-clock step cannot move back), or the wall clock, which the monotonic
    /// one does not follow across a suspend of the host.
    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at) || self.is_past_expiry_by_the_wall_clock()
    }

    fn is_past_expiry_by_the_wall_clock(&self) -> bool {
        self.key.expiry().is_some_and(|at| SystemTime::now() >= at)
    }

    /// Until when a copy of the header may be sent without asking the cache again: the
    /// earlier of the refresh point and the expiry.
    pub(crate) fn usable_until(&self) -> Option<Instant> {
        match (self.refresh_at, self.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The points at which copies of this key must look again, earliest first: its refresh
    /// point and its expiry (a refresh due but still running must not see the key sent past
    /// its expiry).
    pub(crate) fn deadlines(&self) -> [Option<Instant>; 2] {
        match (self.refresh_at, self.expires_at) {
            (Some(a), Some(b)) if a < b => [Some(a), Some(b)],
            (Some(a), Some(b)) if b < a => [Some(b), Some(a)],
            (a, b) => [a.or(b), None],
        }
    }

    /// What a request gets instead of an expired key.
    pub(crate) fn expired_error(&self, now: Instant) -> KeyError {
        let ago = self
            .expires_at
            .map(|at| now.saturating_duration_since(at).as_secs())
            .unwrap_or(0);
        let when = self
            .key
            .expiry()
            .map(crate::timefmt::http_date)
            .unwrap_or_default();
        let fingerprint = self.key.fingerprint();
        match &self.failure {
            Some(failure) => {
                let cause = format!(
                    "the key {fingerprint} expired {ago} s ago ({when}) and reloading it failed: {}",
                    failure.cause()
                );
                let err = KeyError::new(KeyErrorKind::Expired, cause);
                let err = match failure.origin() {
                    Some(origin) => err.with_origin(origin.to_owned()),
                    None => err,
                };
                err.with_source(failure.clone())
            }
            None => KeyError::new(
                KeyErrorKind::Expired,
                format!("the key {fingerprint} expired {ago} s ago ({when}); no new key yet"),
            ),
        }
    }
}

/// How long until `expiry`; `None` when it is now or past.
fn remaining(expiry: SystemTime) -> Option<Duration> {
    expiry
        .duration_since(SystemTime::now())
        .ok()
        .filter(|left| !left.is_zero())
}

/// The error for a key that a source returned already expired.
pub(crate) fn arrived_expired(key: &ApiKey) -> Option<KeyError> {
    let expiry = key.expiry()?;
    if remaining(expiry).is_some() {
        return None;
    }
    Some(KeyError::new(
        KeyErrorKind::Expired,
        format!(
            "the source returned a key ({}) that expired at {}",
            key.fingerprint(),
            crate::timefmt::http_date(expiry)
        ),
    ))
}

/// What a load needs from the layer that asked for it. Part of the layer's configuration, so
/// setting a hook or a timeout on a clone of a layer leaves the original alone.
#[derive(Clone)]
pub(crate) struct LoadSettings {
    pub(crate) hooks: Vec<EventHook>,
    pub(crate) load_timeout: Duration,
    /// The layer's name, for logs and metrics labels.
    pub(crate) name: Option<Arc<str>>,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            hooks: Vec::new(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            name: None,
        }
    }
}

impl fmt::Debug for LoadSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadSettings")
            .field("hooks", &self.hooks.len())
            .field("load_timeout", &self.load_timeout)
            .field("name", &self.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::new("sk-expiry-test-0123456789").unwrap()
    }

    #[test]
    fn refresh_comes_before_expiry_however_short_the_life() {
        let now = Instant::now();
        for secs in [1u64, 2, 30, 3600, 86_400 * 400] {
            let life = Duration::from_secs(secs);
            let key = key().expires_at(SystemTime::now() + life);
            let cur = Current::fresh(key, 1, now);
            let refresh = cur.refresh_at.unwrap() - now;
            let expires = cur.expires_at.unwrap() - now;
            assert!(refresh < expires, "{secs} s: refresh {refresh:?}");
            // no earlier than 80% of the life (or half, for a short one; less the time the
            // test takes), and at least half a second before the end
            let floor = life.mul_f64(0.8).min(life / 2) - Duration::from_millis(50);
            assert!(refresh >= floor, "{secs} s: {refresh:?}");
            assert!(
                expires - refresh >= Duration::from_millis(400),
                "{secs} s: {refresh:?}"
            );
            assert_eq!(cur.usable_until(), cur.refresh_at);
        }
    }

    #[test]
    fn the_hint_wins_when_it_is_earlier() {
        let now = Instant::now();
        let key = key()
            .refresh_after(Duration::from_secs(60))
            .expires_at(SystemTime::now() + Duration::from_secs(3600));
        let cur = Current::fresh(key, 1, now);
        assert!(cur.refresh_at.unwrap() - now <= Duration::from_secs(60));
    }

    #[test]
    fn an_expired_key_is_refused_and_an_absurd_expiry_does_not_overflow() {
        let past = key().expires_at(SystemTime::now() - Duration::from_secs(1));
        let now = Instant::now();
        let cur = Current::fresh(past.clone(), 1, now);
        assert!(cur.is_expired(now) && cur.is_due(now));
        let err = arrived_expired(&past).expect("refused");
        assert_eq!(err.kind(), KeyErrorKind::Expired);
        assert!(err.to_string().contains("sk-…6789"), "{err}");
        assert!(!err.to_string().contains("0123456789"), "{err}");
        let epoch = key().expires_at(SystemTime::UNIX_EPOCH);
        assert!(arrived_expired(&epoch).is_some());
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let cur = Current::fresh(key().expires_at(far), 1, Instant::now());
        assert!(cur.refresh_at.is_some());
    }
}

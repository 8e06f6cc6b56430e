//! [`KeyStatus`]: a snapshot of the key's health, for health checks and readiness probes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::KeyCache;
use crate::KeyError;

/// The health of the layer's key, as [`KeyStatus::state`] gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyState {
    /// No key yet, and no load has failed: nothing was asked of the source yet.
    Empty,
    /// A key is loaded and its last load went well. A key that fell due or expired while no
    /// request came stays `Fresh` (with [`expires_in`](KeyStatus::expires_in) at zero): the
    /// next request reloads it. A probe that must know whether that reload works calls
    /// [`KeyHandle::ready`](crate::KeyHandle::ready), which loads when the key expired.
    Fresh,
    /// A key is served, but the last load failed (a refresh, or the reload after a 401): the
    /// layer keeps sending the key it has, until it expires if it does, and tries again.
    Stale,
    /// No key, and loading one failed: requests fail.
    Failing,
    /// The key expired and loading a new one failed: requests fail with
    /// [`KeyErrorKind::Expired`](crate::KeyErrorKind::Expired) until a load succeeds.
    Expired,
}

impl KeyState {
    /// Whether requests can get a key in this state (`Fresh` or `Stale`): what a readiness
    /// probe asks.
    pub fn is_serving(self) -> bool {
        matches!(self, KeyState::Fresh | KeyState::Stale)
    }
}

/// A snapshot of the layer's key: [`KeyHandle::status`](crate::KeyHandle::status).
///
/// Taking it reads a few atomics and one short lock that requests never take: cheap enough for
/// a health endpoint polled every second. It holds the key's fingerprint, never the key.
#[derive(Clone)]
pub struct KeyStatus {
    pub(super) state: KeyState,
    pub(super) fingerprint: Option<String>,
    pub(super) age: Option<Duration>,
    pub(super) expires_in: Option<Duration>,
    pub(super) consecutive_failures: u32,
    pub(super) last_error: Option<KeyError>,
    pub(super) loads: u64,
    pub(super) replays: u64,
}

impl KeyStatus {
    /// The key's health.
    pub fn state(&self) -> KeyState {
        self.state
    }

    /// The fingerprint of the key in use, if there is one.
    pub fn fingerprint(&self) -> Option<String> {
        self.fingerprint.clone()
    }

    /// How long ago the key in use was loaded.
    pub fn age(&self) -> Option<Duration> {
        self.age
    }

    /// How long until the key in use expires (zero once it has), if it has an expiry.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// Loads that failed in a row (a load that brought back a key the server had just
    /// rejected counts too); 0 after a good one.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The error of the last load, if it failed (a clone: one reference count).
    pub fn last_error(&self) -> Option<KeyError> {
        self.last_error.clone()
    }

    /// Loads from the source so far, good and failed.
    pub fn loads(&self) -> u64 {
        self.loads
    }

    /// Requests replayed with a new key after a 401.
    pub fn replays(&self) -> u64 {
        self.replays
    }
}

impl fmt::Debug for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStatus")
            .field("state", &self.state)
            .field("fingerprint", &self.fingerprint)
            .field("age", &self.age)
            .field("expires_in", &self.expires_in)
            .field("consecutive_failures", &self.consecutive_failures)
            .field(
                "last_error",
                &self.last_error.as_ref().map(ToString::to_string),
            )
            .field("loads", &self.loads)
            .field("replays", &self.replays)
            .finish()
    }
}

impl KeyCache {
    pub(crate) fn status(&self) -> KeyStatus {
        let now = Instant::now();
        let current = self.current();
        let last_error = self.stats.last_error.lock().ok().and_then(|e| e.clone());
        let state = match &current {
            None if last_error.is_some() => KeyState::Failing,
            None => KeyState::Empty,
            // Expired with no failure: no request came since; the next one (or `ready()`)
            // loads a new key, nothing is known to be wrong.
            Some(c) if c.is_expired(now) && c.failure.is_some() => KeyState::Expired,
            Some(c) if c.failure.is_some() => KeyState::Stale,
            Some(_) => KeyState::Fresh,
        };
        KeyStatus {
            state,
            fingerprint: current.as_ref().map(|c| c.key.fingerprint().to_owned()),
            age: current
                .as_ref()
                .map(|c| now.saturating_duration_since(c.loaded_at)),
            expires_in: current
                .as_ref()
                .and_then(|c| c.expires_at)
                .map(|at| at.saturating_duration_since(now)),
            consecutive_failures: self.stats.failures.load(Ordering::Relaxed),
            last_error,
            loads: self.stats.loads.load(Ordering::Relaxed),
            replays: self.stats.replays.load(Ordering::Relaxed),
        }
    }
}

//! What the layer reports about its key: [`KeyEvent`], given to the hooks set with
//! [`BearerAuthLayer::on_event`](crate::BearerAuthLayer::on_event).
//!
//! ```
//! use tower_bearer::{ApiKey, BearerAuthLayer, KeyEvent, StaticKey};
//!
//! let layer = BearerAuthLayer::new(StaticKey::new(ApiKey::new("sk-example-0123456789abcdef").unwrap()))
//!     .name("azerion")
//!     .on_event(|event| match event {
//!         KeyEvent::LoadFailed(failure) if !failure.serving_stale() => {
//!             eprintln!("no API key: {}", failure.error())
//!         }
//!         other => println!("{other}"),
//!     });
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{KeyError, RotationEvent};

pub(crate) type EventHook = Arc<dyn Fn(&KeyEvent) + Send + Sync + 'static>;

/// Something that happened to the layer's key. Every variant carries fingerprints at most,
/// never a key, so an event is safe to log whole (`Display`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeyEvent {
    /// The cached key changed (what [`on_rotate`](crate::BearerAuthLayer::on_rotate) hooks
    /// hear).
    Rotated(RotationEvent),
    /// A load from the source failed.
    LoadFailed(LoadFailure),
    /// A request that got a 401 was sent once more, with a new key.
    Replayed(Replay),
    /// A request that got a 401 was not sent again; its 401 went back to the caller.
    ReplaySkipped(ReplaySkip),
    /// The key reached its hard expiry with no new key to take its place: requests fail with
    /// [`KeyErrorKind::Expired`](crate::KeyErrorKind::Expired) until a load succeeds. Reported
    /// once per key.
    Expired(Expiry),
}

impl fmt::Display for KeyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEvent::Rotated(rotation) => rotation.fmt(f),
            KeyEvent::LoadFailed(failure) => {
                write!(f, "key load failed: {}", failure.error)?;
                if failure.serving_stale {
                    f.write_str(" (still using the current key)")?;
                }
                match failure.next_load_in {
                    Some(wait) => write!(f, "; next load in {:.1} s", wait.as_secs_f64()),
                    None => Ok(()),
                }
            }
            KeyEvent::Replayed(replay) => {
                write!(f, "401 replayed with key {}", replay.fingerprint)
            }
            KeyEvent::ReplaySkipped(skip) => write!(f, "401 not replayed: {}", skip.reason),
            KeyEvent::Expired(expiry) => write!(
                f,
                "key {} expired at {} and no new key could be loaded",
                expiry.fingerprint,
                crate::timefmt::http_date(expiry.expired_at)
            ),
        }
    }
}

/// A failed load: [`KeyEvent::LoadFailed`].
#[derive(Clone, Debug)]
pub struct LoadFailure {
    pub(crate) error: KeyError,
    pub(crate) serving_stale: bool,
    pub(crate) next_load_in: Option<Duration>,
}

impl LoadFailure {
    /// Why the load failed.
    pub fn error(&self) -> &KeyError {
        &self.error
    }

    /// Whether requests still get the key loaded before (until it expires, if it does).
    pub fn serving_stale(&self) -> bool {
        self.serving_stale
    }

    /// How long until the layer may load again (its backoff, or the store's `Retry-After`);
    /// `None` after a manual [`rotate`](crate::KeyHandle::rotate), which does not schedule.
    pub fn next_load_in(&self) -> Option<Duration> {
        self.next_load_in
    }
}

/// A 401 replayed with a new key: [`KeyEvent::Replayed`].
#[derive(Clone, Debug)]
pub struct Replay {
    pub(crate) fingerprint: String,
}

impl Replay {
    /// The fingerprint of the key the request was sent again with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// A 401 that was not replayed: [`KeyEvent::ReplaySkipped`].
#[derive(Clone, Debug)]
pub struct ReplaySkip {
    pub(crate) reason: SkipReason,
}

impl ReplaySkip {
    /// Why the request was not sent again.
    pub fn reason(&self) -> SkipReason {
        self.reason
    }
}

/// Why a 401 was not replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The request's body cannot be had again (see
    /// [`retry_on_unauthorized`](crate::BearerAuthLayer::retry_on_unauthorized)).
    BodyNotReplayable,
    /// The source gave back the key the server had just rejected.
    SameKey,
    /// Reloading the key failed.
    ReloadFailed,
    /// The key reloaded has expired.
    KeyExpired,
    /// The copy kept of the request could not be sent as it was: its head did not parse back,
    /// or it was out of the layer's scope. Neither happens to a request the layer sent; it is
    /// checked so that no slip can put the new key on another request.
    CopyUnusable,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::BodyNotReplayable => "the request body cannot be sent again",
            SkipReason::SameKey => "the source gave back the rejected key",
            SkipReason::ReloadFailed => "reloading the key failed",
            SkipReason::KeyExpired => "the reloaded key has expired",
            SkipReason::CopyUnusable => "the copy of the request could not be sent as it was",
        })
    }
}

/// A key past its expiry: [`KeyEvent::Expired`].
#[derive(Clone, Debug)]
pub struct Expiry {
    pub(crate) fingerprint: String,
    pub(crate) expired_at: SystemTime,
}

impl Expiry {
    /// The fingerprint of the key that expired.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// When it expired.
    pub fn expired_at(&self) -> SystemTime {
        self.expired_at
    }
}

//! What the layer reports when its key changes: [`RotationEvent`] and its [`RotationReason`].

use std::fmt;
use std::time::SystemTime;

/// Why the cached key changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RotationReason {
    /// The first key was loaded.
    Initial,
    /// The key's refresh hint passed and the source had a new key.
    Refresh,
    /// The server answered 401 and the source had a new key.
    Rejected,
    /// [`KeyHandle::rotate`](crate::KeyHandle::rotate) was called and the source had a new key.
    Manual,
}

/// A change of the cached key, given to the hooks set with
/// [`BearerAuthLayer::on_rotate`](crate::BearerAuthLayer::on_rotate).
///
/// It carries fingerprints only, so it is safe to log whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationEvent {
    reason: RotationReason,
    old: Option<String>,
    new: String,
    expiry: Option<SystemTime>,
}

impl RotationEvent {
    pub(crate) fn new(reason: RotationReason, old: Option<String>, new: String) -> Self {
        RotationEvent {
            reason,
            old,
            new,
            expiry: None,
        }
    }

    pub(crate) fn with_expiry(mut self, expiry: Option<SystemTime>) -> Self {
        self.expiry = expiry;
        self
    }

    /// Why the key changed.
    pub fn reason(&self) -> RotationReason {
        self.reason
    }

    /// The fingerprint of the key replaced; `None` for the first key.
    pub fn old_fingerprint(&self) -> Option<&str> {
        self.old.as_deref()
    }

    /// The fingerprint of the key now in use.
    pub fn new_fingerprint(&self) -> &str {
        &self.new
    }

    /// When the key now in use expires, if its source said (see
    /// [`ApiKey::expires_at`](crate::ApiKey::expires_at)).
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
    }
}

impl fmt::Display for RotationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.reason {
            RotationReason::Initial => "loaded",
            RotationReason::Refresh => "refreshed",
            RotationReason::Rejected => "rotated after a 401",
            RotationReason::Manual => "rotated by hand",
        };
        match &self.old {
            Some(old) => write!(f, "key {reason}: {old} -> {}", self.new)?,
            None => write!(f, "key {reason}: {}", self.new)?,
        }
        match self.expiry {
            Some(at) => write!(f, " (expires {})", crate::timefmt::http_date(at)),
            None => Ok(()),
        }
    }
}

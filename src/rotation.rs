//! What the layer reports when its key changes: [`RotationEvent`], and [`KeyHandle`] to
//! rotate by hand.

use std::fmt;
use std::sync::Arc;

use crate::cache::KeyCache;
use crate::KeyError;

pub(crate) type RotateHook = Arc<dyn Fn(&RotationEvent) + Send + Sync + 'static>;

/// Why the cached key changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RotationReason {
    /// The first key was loaded.
    Initial,
    /// The key's refresh hint passed and the source had a new key.
    Refresh,
    /// The server answered 401 and the source had a new key.
    Rejected,
    /// [`KeyHandle::rotate`] was called and the source had a new key.
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
}

impl RotationEvent {
    pub(crate) fn new(reason: RotationReason, old: Option<String>, new: String) -> Self {
        RotationEvent { reason, old, new }
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
            Some(old) => write!(f, "key {reason}: {old} -> {}", self.new),
            None => write!(f, "key {reason}: {}", self.new),
        }
    }
}

/// A handle on a layer's key cache, shared with every service the layer made.
///
/// ```
/// # async fn demo() -> Result<(), tower_bearer::KeyError> {
/// use tower_bearer::{BearerAuthLayer, EnvKeySource};
///
/// let layer = BearerAuthLayer::new(EnvKeySource::azerion());
/// let handle = layer.handle();
/// // The key leaked: revoke it at the provider, update the variable or file, then:
/// handle.rotate().await?;
/// println!("now using {:?}", handle.fingerprint());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KeyHandle {
    pub(crate) cache: Arc<KeyCache>,
}

impl KeyHandle {
    /// Loads the key from the source now, whatever its freshness, and makes it current.
    ///
    /// Waits for a load already running, then loads again. On error the cached key stays.
    pub async fn rotate(&self) -> Result<(), KeyError> {
        self.cache.clone().rotate().await.map(drop)
    }

    /// The fingerprint of the key in use; `None` before the first load.
    pub fn fingerprint(&self) -> Option<String> {
        self.cache.current().map(|c| c.key.fingerprint().to_owned())
    }
}

impl fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHandle")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

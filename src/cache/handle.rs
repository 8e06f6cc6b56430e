//! [`KeyHandle`]: the layer's key cache, from outside the request path.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::{detached, KeyCache, KeyStatus, LoadSettings};
use crate::KeyError;

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
///
/// # Clone
///
/// Clones share the key cache, and the hooks and load timeout of the layer the handle came from.
#[derive(Clone)]
pub struct KeyHandle {
    cache: Arc<KeyCache>,
    settings: Arc<LoadSettings>,
}

impl KeyHandle {
    pub(crate) fn new(cache: Arc<KeyCache>, settings: Arc<LoadSettings>) -> Self {
        KeyHandle { cache, settings }
    }

    /// Loads the key from the source now, whatever its freshness, and makes it current.
    ///
    /// Waits for a load already running, then loads again. On error the cached key stays.
    pub async fn rotate(&self) -> Result<(), KeyError> {
        self.cache.clone().rotate(&self.settings).await.map(drop)
    }

    /// Loads the first key now, if there is none yet, and says whether the layer has a key to
    /// send: a service can refuse to start, or report not ready, instead of failing its first
    /// request.
    ///
    /// Shares the load with requests (single flight) and keeps to the backoff after a failed
    /// load (a readiness probe polled every second does not hammer the source): within it,
    /// the last error comes back at once. An expired key counts as none: a load is tried.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tower_bearer::{BearerAuthLayer, EnvKeySource, KeyErrorKind};
    ///
    /// let layer = BearerAuthLayer::new(EnvKeySource::new("A_VARIABLE_NOBODY_SET"));
    /// let err = layer.handle().ready().await.unwrap_err();
    /// assert_eq!(err.kind(), KeyErrorKind::Missing);
    /// # }
    /// ```
    pub async fn ready(&self) -> Result<(), KeyError> {
        let cache = &self.cache;
        let settings = &self.settings;
        let current = match cache.current() {
            Some(current) => current,
            None => detached(cache.clone().load_first(settings.clone())).await?,
        };
        if !current.is_expired(Instant::now()) {
            return Ok(());
        }
        let current = detached(cache.clone().refresh(settings.clone())).await?;
        let now = Instant::now();
        if current.is_expired(now) {
            return Err(cache.expired(&current, settings, now));
        }
        Ok(())
    }

    /// A snapshot of the key's health, for a health check: its [`KeyState`](crate::KeyState),
    /// fingerprint, age, time to expiry, failures and counters. Cheap (no load, and no lock
    /// that requests take); see [`KeyStatus`].
    ///
    /// ```
    /// use tower_bearer::{ApiKey, BearerAuthLayer, KeyState, StaticKey};
    ///
    /// let layer = BearerAuthLayer::new(StaticKey::new(ApiKey::new("sk-example-0123456789abcdef").unwrap()));
    /// let status = layer.handle().status();
    /// assert_eq!(status.state(), KeyState::Empty); // nothing loaded before the first request
    /// assert_eq!(status.loads(), 0);
    /// ```
    pub fn status(&self) -> KeyStatus {
        self.cache.status()
    }

    /// The fingerprint of the key in use; `None` before the first load.
    pub fn fingerprint(&self) -> Option<String> {
        self.cache.current().map(|c| c.key.fingerprint().to_owned())
    }

    /// When the key in use expires, if its source said (see
    /// [`ApiKey::expires_at`](crate::ApiKey::expires_at)); `None` before the first load.
    pub fn expiry(&self) -> Option<std::time::SystemTime> {
        self.cache.current().and_then(|c| c.key.expiry())
    }
}

impl fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHandle")
            .field("fingerprint", &self.fingerprint())
            .field("expiry", &self.expiry())
            .finish()
    }
}

//! [`KeyHandle`]: the layer's key cache, from outside the request path.

use std::fmt;
use std::sync::Arc;

use super::{KeyCache, LoadSettings};
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

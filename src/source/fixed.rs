use std::fmt;

use crate::{ApiKey, KeyFuture, KeySource};

/// A fixed key: for tests and for keys that come from explicit configuration.
///
/// It never rotates: a layer over it hands a 401 back as it came, without a reload or a
/// replay, and keeps no copy of the request for one (see [`KeySource::is_static`]).
///
/// ```
/// use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};
///
/// let key = ApiKey::new("sk-test-0000000000000000").unwrap();
/// let layer = BearerAuthLayer::new(StaticKey::new(key));
/// ```
#[derive(Clone)]
pub struct StaticKey {
    key: ApiKey,
}

impl StaticKey {
    /// Serves `key` on every load.
    pub fn new(key: ApiKey) -> StaticKey {
        StaticKey { key }
    }
}

impl KeySource for StaticKey {
    fn load(&self) -> KeyFuture<'_> {
        let key = self.key.clone();
        Box::pin(async move { Ok(key) })
    }

    fn is_static(&self) -> bool {
        true
    }

    fn describe(&self) -> Option<String> {
        Some("static key".to_owned())
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKey").field("key", &self.key).finish()
    }
}

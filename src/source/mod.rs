//! Where keys come from: the [`KeySource`] trait and the built-in sources.
//!
//! A source only loads; the layer caches, refreshes and rotates. Writing your own is one method:
//!
//! ```
//! use tower_bearer::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};
//!
//! /// Reads the key from a secret manager the crate does not know about.
//! struct MySecretManager;
//!
//! impl KeySource for MySecretManager {
//!     fn load(&self) -> KeyFuture<'_> {
//!         Box::pin(async move {
//!             let secret = String::from("sk-from-my-secret-manager-0001"); // fetch it here
//!             ApiKey::new(secret).map_err(|e| e.with_origin("my secret manager"))
//!         })
//!     }
//! }
//!
//! let layer = tower_bearer::BearerAuthLayer::new(MySecretManager);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{ApiKey, KeyError};

mod chain;
#[cfg(feature = "command")]
mod command;
#[cfg(feature = "env")]
mod env;
#[cfg(feature = "file")]
mod file;
mod fixed;
// The HTTPS transport the network sources share.
#[cfg(any(feature = "vault", feature = "oauth2"))]
mod https;
#[cfg(feature = "oauth2")]
mod oauth2;
// `pub(crate)`: `crate::fuzzing` reaches the parsers of `vault::response`.
#[cfg(feature = "vault")]
pub(crate) mod vault;

pub use chain::KeySourceChain;
#[cfg(feature = "command")]
#[cfg_attr(docsrs, doc(cfg(feature = "command")))]
pub use command::{CommandKeySource, DEFAULT_COMMAND_TIMEOUT};
#[cfg(feature = "env")]
#[cfg_attr(docsrs, doc(cfg(feature = "env")))]
pub use env::EnvKeySource;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use file::{FileKeySource, DEFAULT_FILE_REFRESH};
pub use fixed::StaticKey;
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use oauth2::{OAuth2ClientAuth, OAuth2ClientCredentials, OAuth2ClientCredentialsBuilder};
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub use vault::{VaultKeySource, VaultKeySourceBuilder};

/// The future a [`KeySource`] returns. Boxed: loads are rare (first use, refresh, 401, manual
/// rotation), and a boxed future keeps the trait object safe so `Arc<dyn KeySource>` works.
pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<ApiKey, KeyError>> + Send + 'a>>;

/// Loads API keys.
///
/// Called on first use, when the key's refresh hint ([`ApiKey::refresh_after`]) has passed,
/// after the server rejected the current key (401), and on a manual rotation. The layer makes
/// sure only one load runs at a time, so a source need not guard against load storms itself.
pub trait KeySource: Send + Sync + 'static {
    /// Loads a fresh key.
    fn load(&self) -> KeyFuture<'_>;

    /// Whether every load gives the same key, as [`StaticKey`]'s do (default `false`).
    ///
    /// A layer over a static source skips what rotation needs: a 401 goes back as it came, with
    /// no reload (it would give the same key) and no copy of the request kept for a replay (it
    /// could never be sent with another key). Say `true` only if the key can never change.
    fn is_static(&self) -> bool {
        false
    }

    /// Where this source looks for its key, for logs and errors (default `None`): the built-in
    /// sources say `environment variable AZERION_API_KEY`, `key file /run/secrets/api-key`,
    /// `credential helper gcloud`… A [`KeySourceChain`] names the link that answered with it.
    ///
    /// ```
    /// use tower_bearer::{FileKeySource, KeySource};
    ///
    /// let source = FileKeySource::new("/run/secrets/api-key");
    /// assert_eq!(source.describe().as_deref(), Some("key file /run/secrets/api-key"));
    /// ```
    fn describe(&self) -> Option<String> {
        None
    }
}

impl<K: KeySource + ?Sized> KeySource for Arc<K> {
    fn load(&self) -> KeyFuture<'_> {
        (**self).load()
    }
    fn is_static(&self) -> bool {
        (**self).is_static()
    }
    fn describe(&self) -> Option<String> {
        (**self).describe()
    }
}

impl<K: KeySource + ?Sized> KeySource for Box<K> {
    fn load(&self) -> KeyFuture<'_> {
        (**self).load()
    }
    fn is_static(&self) -> bool {
        (**self).is_static()
    }
    fn describe(&self) -> Option<String> {
        (**self).describe()
    }
}

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

/// No link has answered yet.
const NONE: usize = usize::MAX;

/// Tries key sources in order: an environment variable, else a file, else Vault.
///
/// Each load walks the links from the first. A link that answers
/// [`Missing`](KeyErrorKind::Missing) (an unset variable, a missing file, a secret or field
/// that is not there) passes to the next; the first key found is the answer, and any other
/// error (denied, unavailable, invalid, a timeout…) stops the walk and is the answer, so a
/// store that is down is never papered over by a fallback. When every link is missing, the
/// error is `Missing` and lists what each link said.
///
/// The link that answered is logged (`tracing`, debug level) and reported by
/// [`answered_by`](KeySourceChain::answered_by), by its [`describe`](KeySource::describe) or,
/// for a source that does not describe itself, as `link N` (from 1).
///
/// ```
/// use tower_bearer::{BearerAuthLayer, EnvKeySource, FileKeySource, KeySourceChain};
///
/// let chain = KeySourceChain::new(EnvKeySource::new("MY_API_KEY"))
///     .or(FileKeySource::new("/run/secrets/my-api-key"))
///     .or(FileKeySource::new("/etc/my-app/api-key"));
/// let layer = BearerAuthLayer::new(chain);
/// ```
#[derive(Clone)]
pub struct KeySourceChain {
    links: Vec<Arc<dyn KeySource>>,
    /// The index of the link that gave the last key, or [`NONE`].
    answered: Arc<AtomicUsize>,
}

impl KeySourceChain {
    /// A chain whose first link is `first`.
    ///
    /// ```
    /// # use tower_bearer::{EnvKeySource, KeySourceChain};
    /// let chain = KeySourceChain::new(EnvKeySource::new("MY_API_KEY"));
    /// assert_eq!(chain.len(), 1);
    /// ```
    pub fn new(first: impl KeySource) -> KeySourceChain {
        KeySourceChain {
            links: vec![Arc::new(first)],
            answered: Arc::new(AtomicUsize::new(NONE)),
        }
    }

    /// Adds `next` as the last link, asked when every link before it is missing its key.
    ///
    /// ```
    /// # use tower_bearer::{EnvKeySource, KeySourceChain};
    /// let chain = KeySourceChain::new(EnvKeySource::new("MY_API_KEY"))
    ///     .or(EnvKeySource::new("LEGACY_API_KEY"));
    /// assert_eq!(chain.len(), 2);
    /// ```
    pub fn or(mut self, next: impl KeySource) -> KeySourceChain {
        self.links.push(Arc::new(next));
        self
    }

    /// The number of links.
    ///
    /// ```
    /// # use tower_bearer::{EnvKeySource, KeySourceChain};
    /// let chain = KeySourceChain::new(EnvKeySource::new("A")).or(EnvKeySource::new("B"));
    /// assert_eq!(chain.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Always `false`: a chain has its first link from the start.
    ///
    /// ```
    /// # use tower_bearer::{EnvKeySource, KeySourceChain};
    /// assert!(!KeySourceChain::new(EnvKeySource::new("A")).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The link that gave the last key this chain (or a clone of it) loaded, by its
    /// [`describe`](KeySource::describe) or as `link N`; `None` before the first key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use tower_bearer::{ApiKey, EnvKeySource, KeySource, KeySourceChain, StaticKey};
    ///
    /// let fallback = StaticKey::new(ApiKey::new("sk-fallback-0123456789").unwrap());
    /// let chain = KeySourceChain::new(EnvKeySource::new("SURELY_UNSET_API_KEY_0451"))
    ///     .or(fallback);
    /// assert_eq!(chain.answered_by(), None);
    /// chain.load().await.unwrap();
    /// assert_eq!(chain.answered_by().as_deref(), Some("static key"));
    /// # }
    /// ```
    pub fn answered_by(&self) -> Option<String> {
        let index = self.answered.load(Ordering::Relaxed);
        self.links.get(index).map(|link| name(link.as_ref(), index))
    }

    async fn walk(&self) -> Result<ApiKey, KeyError> {
        let mut missing = Vec::with_capacity(self.links.len());
        for (index, link) in self.links.iter().enumerate() {
            match link.load().await {
                Ok(key) => {
                    tracing::debug!(
                        link = index + 1,
                        source = %name(link.as_ref(), index),
                        "key source chain: this link gave the key"
                    );
                    self.answered.store(index, Ordering::Relaxed);
                    return Ok(key);
                }
                Err(err) if err.kind() == KeyErrorKind::Missing => {
                    tracing::debug!(link = index + 1, error = %err, "key source chain: link has no key, next");
                    missing.push(match err.origin() {
                        Some(_) => err.to_string(),
                        None => format!("{}: {err}", name(link.as_ref(), index)),
                    });
                }
                Err(err) => {
                    tracing::debug!(link = index + 1, error = %err, "key source chain: link failed, stopping");
                    return Err(err);
                }
            }
        }
        Err(KeyError::new(
            KeyErrorKind::Missing,
            format!("no source has a key: {}", missing.join("; ")),
        )
        .with_origin("key source chain"))
    }
}

/// How a link is named: its own description, else its place.
fn name(link: &dyn KeySource, index: usize) -> String {
    link.describe()
        .unwrap_or_else(|| format!("link {}", index + 1))
}

impl KeySource for KeySourceChain {
    fn load(&self) -> KeyFuture<'_> {
        Box::pin(self.walk())
    }

    /// Static when the first link is: it always answers, so the others are never asked.
    fn is_static(&self) -> bool {
        self.links.first().is_some_and(|link| link.is_static())
    }

    fn describe(&self) -> Option<String> {
        let names: Vec<String> = self
            .links
            .iter()
            .enumerate()
            .map(|(i, link)| name(link.as_ref(), i))
            .collect();
        Some(format!("key source chain ({})", names.join(", else ")))
    }
}

impl fmt::Debug for KeySourceChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .links
            .iter()
            .enumerate()
            .map(|(i, link)| name(link.as_ref(), i))
            .collect();
        f.debug_struct("KeySourceChain")
            .field("links", &names)
            .field("answered_by", &self.answered_by())
            .finish()
    }
}

//! Why a key could not be had: [`KeyError`] and [`KeyErrorKind`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure a [`KeyError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The key was found but breaks a validation rule (empty, control character, too long…).
    Invalid,
    /// The key is not there: unset variable, missing file, missing secret or field.
    Missing,
    /// The key's store could not be read: permission denied, I/O error, not UTF-8.
    Unreadable,
    /// The key's store refused us: HTTP 401/403 from a secret manager.
    Denied,
    /// The key's store is temporarily unavailable: 5xx, sealed, rate limited, connection refused.
    Unavailable,
    /// Loading the key took longer than the allowed time.
    Timeout,
    /// The configuration of the source is wrong (bad URL, bad option).
    Config,
    /// The last key expired (see [`ApiKey::expires_at`](crate::ApiKey::expires_at)) and no new
    /// one could be loaded; also a key that was already expired when its source returned it.
    Expired,
    /// Anything else.
    Other,
}

/// Why a key could not be had.
///
/// `Display` names where the key was looked for (the variable, path or URL) and the cause, and
/// never the key. Cloning is cheap: one failed load is shared by every request that waited on it.
///
/// Custom [`KeySource`](crate::KeySource)s build their errors with [`KeyError::new`]:
///
/// ```
/// use tower_bearer::{KeyError, KeyErrorKind};
///
/// let err = KeyError::new(KeyErrorKind::Unavailable, "secret manager answered 503")
///     .with_origin("secret manager https://secrets.internal/azerion");
/// assert_eq!(
///     err.to_string(),
///     "secret manager https://secrets.internal/azerion: secret manager answered 503"
/// );
/// ```
#[derive(Clone)]
pub struct KeyError {
    inner: Arc<KeyErrorInner>,
}

struct KeyErrorInner {
    kind: KeyErrorKind,
    origin: Option<Cow<'static, str>>,
    cause: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    retry_after: Option<Duration>,
}

impl KeyError {
    /// An error of `kind` with a cause. The cause must not contain the key.
    pub fn new(kind: KeyErrorKind, cause: impl Into<Cow<'static, str>>) -> KeyError {
        KeyError {
            inner: Arc::new(KeyErrorInner {
                kind,
                origin: None,
                cause: cause.into(),
                source: None,
                retry_after: None,
            }),
        }
    }

    pub(crate) fn invalid(cause: impl Into<Cow<'static, str>>) -> KeyError {
        KeyError::new(KeyErrorKind::Invalid, cause)
    }

    /// Names where the key was looked for, e.g. `environment variable AZERION_API_KEY`.
    /// Replaces an origin set before.
    pub fn with_origin(self, origin: impl Into<Cow<'static, str>>) -> KeyError {
        self.map_inner(|inner| inner.origin = Some(origin.into()))
    }

    /// Attaches the underlying error (an I/O error, say), returned by
    /// [`source`](std::error::Error::source). It must not contain the key.
    pub fn with_source(
        self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> KeyError {
        let source = source.into();
        self.map_inner(|inner| inner.source = Some(source))
    }

    fn map_inner(self, f: impl FnOnce(&mut KeyErrorInner)) -> KeyError {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            // Shared already: rebuild (the source, not clonable, stays with the other holders).
            Err(shared) => KeyErrorInner {
                kind: shared.kind,
                origin: shared.origin.clone(),
                cause: shared.cause.clone(),
                source: None,
                retry_after: shared.retry_after,
            },
        };
        f(&mut inner);
        KeyError {
            inner: Arc::new(inner),
        }
    }

    /// Says when the store may be asked again: a source whose store answered 429 or 503 with a
    /// `Retry-After` sets it, and the layer waits at least that long (at most
    /// [`MAX_RETRY_AFTER`](crate::KeyError::MAX_RETRY_AFTER)) before its next load, instead of
    /// its own shorter backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::{KeyError, KeyErrorKind};
    ///
    /// let err = KeyError::new(KeyErrorKind::Unavailable, "token endpoint answered 429")
    ///     .with_retry_after(Duration::from_secs(20));
    /// assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
    /// ```
    pub fn with_retry_after(self, wait: Duration) -> KeyError {
        self.map_inner(|inner| inner.retry_after = Some(wait))
    }

    /// The wait set with [`with_retry_after`](KeyError::with_retry_after), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The longest [`retry_after`](KeyError::retry_after) the layer honours: a store asking
    /// for more is asked again after this.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

    /// The kind of failure.
    pub fn kind(&self) -> KeyErrorKind {
        self.inner.kind
    }

    /// Where the key was looked for, if the source said.
    pub fn origin(&self) -> Option<&str> {
        self.inner.origin.as_deref()
    }

    /// The cause, without the origin.
    pub fn cause(&self) -> &str {
        &self.inner.cause
    }

    /// Whether trying again later may succeed (the store was unavailable or slow).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.inner.kind,
            KeyErrorKind::Unavailable | KeyErrorKind::Timeout
        )
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.origin {
            Some(origin) => write!(f, "{origin}: {}", self.inner.cause),
            None => f.write_str(&self.inner.cause),
        }
    }
}

impl fmt::Debug for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyError")
            .field("kind", &self.inner.kind)
            .field("origin", &self.inner.origin)
            .field("cause", &self.inner.cause)
            .field("source", &self.inner.source)
            .field("retry_after", &self.inner.retry_after)
            .finish()
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_error_display_has_origin_and_cause() {
        let err = KeyError::new(KeyErrorKind::Missing, "not set").with_origin("env var X");
        assert_eq!(err.to_string(), "env var X: not set");
        assert_eq!(err.origin(), Some("env var X"));
        assert!(!err.is_transient());
    }
}

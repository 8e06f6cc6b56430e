//! Key material: [`ApiKey`] (validated secret + prebuilt header) and [`KeyError`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

mod error;

pub use error::{KeyError, KeyErrorKind};

/// Longest key accepted, in bytes. Real API keys are well under this; anything longer is
/// almost certainly a file or a token pasted by mistake.
pub const MAX_KEY_LEN: usize = 4096;

/// Keys shorter than this get a fingerprint that shows none of their characters.
const MIN_LEN_FOR_AFFIXES: usize = 16;

/// A validated API key, ready to be sent as `Authorization: Bearer <key>`.
///
/// The secret is held in a [`SecretString`] (zeroized on drop) and the header value is built once,
/// here, and marked sensitive, so sending a request never formats or allocates a header.
/// `Debug` and [`fingerprint`](ApiKey::fingerprint) never show more than 7 characters of the key.
///
/// Cloning is cheap (one reference count).
///
/// ```
/// use tower_bearer::ApiKey;
///
/// let key = ApiKey::new("sk-0123456789abcdef0123").unwrap();
/// assert_eq!(key.fingerprint(), "sk-…0123");
/// assert!(!format!("{key:?}").contains("456789"));
///
/// // A pasted "Bearer " prefix, a newline or a space is refused, without echoing the key.
/// let err = ApiKey::new("Bearer sk-0123456789abcdef").unwrap_err();
/// assert!(err.to_string().contains("Bearer"));
/// assert!(!err.to_string().contains("0123456789"));
/// ```
#[derive(Clone)]
pub struct ApiKey {
    inner: Arc<KeyMaterial>,
    refresh_after: Option<Duration>,
    expires_at: Option<SystemTime>,
}

struct KeyMaterial {
    secret: SecretString,
    // The bytes of the `HeaderValue` cannot be zeroized: `http` keeps them in a `Bytes` that
    // requests share. It is built once per key so at least no copies multiply per request.
    header: HeaderValue,
    fingerprint: Box<str>,
}

impl ApiKey {
    /// Validates `secret` and builds its `Bearer` header value.
    ///
    /// Refused, each with a [`KeyError`] that names the rule and never the key: an empty or
    /// whitespace-only key, a key longer than 4 KiB, a pasted `Bearer ` prefix, any control
    /// character (CR, LF, NUL, TAB, DEL…), any space, and any character that is not visible ASCII.
    pub fn new(secret: impl Into<String>) -> Result<ApiKey, KeyError> {
        let secret = SecretString::from(secret.into());
        let raw = secret.expose_secret();
        validate(raw)?;
        let mut value = Vec::with_capacity(7 + raw.len());
        value.extend_from_slice(b"Bearer ");
        value.extend_from_slice(raw.as_bytes());
        let mut header = HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
            .map_err(|_| KeyError::invalid("the key is not a valid header value"))?;
        header.set_sensitive(true);
        let fingerprint = fingerprint_of(raw).into_boxed_str();
        Ok(ApiKey {
            inner: Arc::new(KeyMaterial {
                secret,
                header,
                fingerprint,
            }),
            refresh_after: None,
            expires_at: None,
        })
    }

    /// A short, log-safe identifier of the key.
    ///
    /// For keys of 16 characters or more: the first 3 and last 4 characters around an ellipsis
    /// (`sk-…wxyz`), as API dashboards show them. Shorter keys show none of their characters:
    /// `#` and 8 hex digits of a non-cryptographic hash, enough to tell two keys apart in a log.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Sets the freshness hint: the key should be reloaded from its source after `ttl`.
    ///
    /// Sources set it (the file source every 60 s by default, Vault from its lease); the layer
    /// starts the reload a little before the hint, while requests keep using this key.
    pub fn refresh_after(mut self, ttl: Duration) -> ApiKey {
        self.refresh_after = Some(ttl);
        self
    }

    /// The freshness hint set with [`refresh_after`](ApiKey::refresh_after), if any.
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_after
    }

    /// Sets the hard expiry: the layer never sends this key at or after `at`.
    ///
    /// Sources of short-lived tokens set it (an OAuth2 `expires_in`, a Kubernetes
    /// `ExecCredential`'s `expirationTimestamp`). The layer reloads the key ahead of the earlier
    /// of the refresh hint and the expiry (in the last tenth of the remaining lifetime, and a few
    /// seconds before the end at the latest), keeps serving it while a reload fails only until
    /// it expires, and then fails requests with [`KeyErrorKind::Expired`]. A key that is
    /// already expired when a source returns it is refused as a failed load.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_bearer::ApiKey;
    ///
    /// let at = SystemTime::now() + Duration::from_secs(3600);
    /// let key = ApiKey::new("a-short-lived-token-0123").unwrap().expires_at(at);
    /// assert_eq!(key.expiry(), Some(at));
    /// ```
    pub fn expires_at(mut self, at: SystemTime) -> ApiKey {
        self.expires_at = Some(at);
        self
    }

    /// The hard expiry set with [`expires_at`](ApiKey::expires_at), if any.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The secret itself, for sources and tests that must compare or forward it.
    ///
    /// Prefer not to call this: every copy of the secret is one more place it can leak from.
    pub fn expose_secret(&self) -> &str {
        self.inner.secret.expose_secret()
    }

    /// The prebuilt `Bearer <key>` header value, marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        &self.inner.header
    }

    /// A 64-bit digest of the secret, to recognise a key later without keeping it.
    pub(crate) fn digest(&self) -> u64 {
        fnv1a(self.inner.header.as_bytes())
    }

    /// Whether two keys hold the same secret (ignores the refresh hint and the expiry).
    pub fn same_secret(&self, other: &ApiKey) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || self.inner.header.as_bytes() == other.inner.header.as_bytes()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("fingerprint", &self.fingerprint())
            .field("refresh_after", &self.refresh_after)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fingerprint())
    }
}

fn validate(raw: &str) -> Result<(), KeyError> {
    if raw.is_empty() {
        return Err(KeyError::invalid("the key is empty"));
    }
    if raw.chars().all(char::is_whitespace) {
        return Err(KeyError::invalid("the key is only whitespace"));
    }
    if raw.len() > MAX_KEY_LEN {
        return Err(KeyError::invalid(format!(
            "the key is {} bytes long, over the limit of {MAX_KEY_LEN} bytes",
            raw.len()
        )));
    }
    if raw.len() >= 7 && raw.as_bytes()[..7].eq_ignore_ascii_case(b"bearer ") {
        return Err(KeyError::invalid(
            "the key starts with a pasted \"Bearer \" prefix; give the key alone",
        ));
    }
    for (pos, c) in raw.char_indices() {
        let what = match c {
            '\r' => "a carriage return (CR)",
            '\n' => "a line feed (LF)",
            '\0' => "a NUL byte",
            '\t' => "a tab",
            '\x7f' => "a DEL character",
            ' ' => "a space",
            c if c.is_control() => "a control character",
            c if !c.is_ascii() => "a non-ASCII character",
            _ => continue,
        };
        return Err(KeyError::invalid(format!(
            "the key contains {what} at byte {pos}; keys are visible ASCII only"
        )));
    }
    Ok(())
}

fn fingerprint_of(raw: &str) -> String {
    // `raw` is validated ASCII, so byte slicing is on character boundaries.
    if raw.len() >= MIN_LEN_FOR_AFFIXES {
        format!("{}…{}", &raw[..3], &raw[raw.len() - 4..])
    } else {
        format!("#{:08x}", fnv1a(raw.as_bytes()) as u32)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejects(key: &str, needle: &str) {
        let err = ApiKey::new(key).expect_err(needle);
        let msg = err.to_string();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        assert_eq!(err.kind(), KeyErrorKind::Invalid);
        let body: String = key.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        if body.len() >= 4 {
            assert!(!msg.contains(&body), "{msg:?} leaks the key");
            assert!(!format!("{err:?}").contains(&body));
        }
    }

    #[test]
    fn validation_rules_each_have_their_own_message() {
        rejects("", "empty");
        rejects("   \t ", "only whitespace");
        rejects(&"k".repeat(MAX_KEY_LEN + 1), "over the limit of 4096");
        rejects("Bearer sk-abcdefghijklmnop", "Bearer");
        rejects("bearer sk-abcdefghijklmnop", "Bearer");
        rejects("sk-abcdef\r\nX-Evil: 1", "carriage return");
        rejects("sk-abcdefghijklmnop\n", "line feed");
        rejects("sk-abc\0defghijklmnop", "NUL");
        rejects("sk-abc\tdefghijklmnop", "tab");
        rejects("sk-abc\x7fdefghijklmnop", "DEL");
        rejects("sk-abc defghijklmnop", "space");
        rejects(" sk-abcdefghijklmnop", "space");
        rejects("sk-abc\x1bdefghijklmnop", "control character");
        rejects("sk-аbcdefghijklmnop", "non-ASCII"); // Cyrillic а
        rejects("sk-abc\u{a0}defghijklmnop", "non-ASCII");
    }

    #[test]
    fn accepts_the_longest_allowed_key() {
        assert!(ApiKey::new("k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn header_is_bearer_and_sensitive() {
        let key = ApiKey::new("sk-test-0123456789abcdef").unwrap();
        assert_eq!(key.header_value(), "Bearer sk-test-0123456789abcdef");
        assert!(key.header_value().is_sensitive());
    }

    #[test]
    fn fingerprints_show_at_most_seven_characters() {
        let long = ApiKey::new("sk-live-0123456789abcdefWXYZ").unwrap();
        assert_eq!(long.fingerprint(), "sk-…WXYZ");
        let short = ApiKey::new("tiny-key-123").unwrap();
        assert!(short.fingerprint().starts_with('#'));
        assert!(!short.fingerprint().contains("tiny"));
        assert!(!short.fingerprint().contains("123"));
        let other = ApiKey::new("tiny-key-124").unwrap();
        assert_ne!(short.fingerprint(), other.fingerprint());
    }

    #[test]
    fn debug_and_display_show_only_the_fingerprint() {
        let key = ApiKey::new("sk-live-0123456789abcdefWXYZ").unwrap();
        for s in [format!("{key:?}"), format!("{key}"), format!("{key:#?}")] {
            assert!(!s.contains("0123456789"), "{s}");
            assert!(s.contains("sk-…WXYZ"), "{s}");
        }
    }

    #[test]
    fn same_secret_ignores_the_hint() {
        let a = ApiKey::new("sk-aaaaaaaaaaaaaaaaaa").unwrap();
        let b = ApiKey::new("sk-aaaaaaaaaaaaaaaaaa")
            .unwrap()
            .refresh_after(Duration::from_secs(1));
        let c = ApiKey::new("sk-bbbbbbbbbbbbbbbbbb").unwrap();
        assert!(a.same_secret(&b));
        assert!(!a.same_secret(&c));
    }
}

//! [`OAuth2ClientCredentials`]: the key is an OAuth2 access token had by the client-credentials
//! grant (RFC 6749 section 4.4), feature `oauth2`.
//!
//! The modules: `builder` (options and their checks), `secret` (the client secret, re-read at
//! each load), `form` (the request's form body and Basic credentials, zeroed buffers),
//! `response` (pure JSON parsing), `error` (answers to [`KeyError`]s). HTTP goes through the
//! HTTPS transport the Vault source uses too (`crate::source::https`).
//!
//! Tested against a real authorization server, oxide-auth's client-credentials and resource
//! flows behind axum (`tests/oauth2.rs`, `tests/oauth2_errors.rs`, `tests/support/oauth2_server/`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Uri};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::source::https::{within_budget, Peer, Transport};
use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

mod builder;
mod error;
mod form;
mod response;
mod secret;

pub use builder::OAuth2ClientCredentialsBuilder;

use error::{is_error_response, status_error, token_error, transport_error};
use form::{basic_authorization, Form};
use response::{parse_token_response, TokenError};
use secret::ClientSecret;

/// The token endpoint, as the shared transport names it in messages.
static TOKEN_ENDPOINT: Peer = Peer {
    name: "the token endpoint",
    credential: "the client secret",
    redirect_hint: None,
};

/// How the client proves who it is to the token endpoint (RFC 6749 section 2.3.1).
///
/// ```
/// use tower_bearer::{OAuth2ClientAuth, OAuth2ClientCredentials};
///
/// # fn main() -> Result<(), tower_bearer::KeyError> {
/// assert_eq!(OAuth2ClientAuth::default(), OAuth2ClientAuth::Basic);
/// // A server that wants client_id and client_secret in the form:
/// let source = OAuth2ClientCredentials::builder()
///     .token_url("https://login.example.com/oauth2/token")
///     .client_id("billing-service")
///     .client_secret_env("BILLING_CLIENT_SECRET")
///     .client_auth(OAuth2ClientAuth::RequestBody)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OAuth2ClientAuth {
    /// `Authorization: Basic` with the client id and secret, each form-urlencoded first as the
    /// RFC asks (`client_secret_basic`). The default: every server must support it.
    ///
    /// A server that does not decode them (oxide-auth, for one) only accepts ids and secrets
    /// made of letters, digits and `*-._` this way; use [`RequestBody`](Self::RequestBody) for
    /// those.
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form parameters of the body
    /// (`client_secret_post`), for servers that ask for it.
    RequestBody,
}

/// Gets the key as an OAuth2 access token by the client-credentials grant, at every load.
///
/// Built with [`OAuth2ClientCredentials::builder`]; see [`OAuth2ClientCredentialsBuilder`] for
/// every option.
///
/// ```
/// use tower_bearer::{BearerAuthLayer, OAuth2ClientCredentials};
///
/// # fn main() -> Result<(), tower_bearer::KeyError> {
/// let source = OAuth2ClientCredentials::builder()
///     .token_url("https://login.example.com/oauth2/token")
///     .client_id("billing-service")
///     .client_secret_env("BILLING_CLIENT_SECRET") // read at each token request
///     .scope("invoices.read")
///     .build()?;
/// let layer = BearerAuthLayer::new(source);
/// # Ok(()) }
/// ```
///
/// # What a load does
///
/// - One `POST` to the token URL, `Content-Type: application/x-www-form-urlencoded`, with
///   `grant_type=client_credentials`, `scope` (the scopes, space-separated) when set, and the
///   [`param`](OAuth2ClientCredentialsBuilder::param)s. The client authenticates with HTTP
///   Basic (the id and the secret form-urlencoded first, as RFC 6749 section 2.3.1 asks) or
///   with `client_id` and `client_secret` in the body
///   ([`OAuth2ClientAuth::RequestBody`]).
/// - The answer's `access_token` becomes the key; its `token_type` must be `Bearer` (any
///   case); its `expires_in` becomes the key's [expiry](ApiKey::expires_at), counted from when
///   the request was sent (so the source never thinks a token lives longer than it does).
///   Without `expires_in`, the token is taken to live
///   [`default_lifetime`](OAuth2ClientCredentialsBuilder::default_lifetime) (1 hour).
/// - The layer asks again in the last 10–15% of the token's lifetime (at least min(5 s, half its
///   life) before the end); keeps the token while a new one cannot be had, only until it expires;
///   and asks at once when the API answers 401 (a revoked token).
/// - A secret from a [file](OAuth2ClientCredentialsBuilder::client_secret_file) or a
///   [variable](OAuth2ClientCredentialsBuilder::client_secret_env) is read at each load, so a
///   rotated secret is used from the next token request on.
/// - A `307`/`308` is followed, up to 3 hops, only to the same origin, never from `https` to
///   `http`; the whole load shares one deadline, the
///   [`timeout`](OAuth2ClientCredentialsBuilder::timeout) (4 s).
///
/// # Safety of the secrets
///
/// The client secret and the token appear in no `Debug` output, log or error: the secret is
/// held in a `SecretString`, the request body, the Basic credentials and the answer in buffers
/// zeroed when dropped, and the `Authorization` header is marked sensitive. The server's
/// `error_description` and `error_uri` are redacted as any server text is, and the client
/// secret is cut out of them wherever the server echoed it. Plain `http://` is refused unless
/// the host is loopback or
/// [`allow_insecure_http`](OAuth2ClientCredentialsBuilder::allow_insecure_http) says so.
/// Answers are read up to 1 MiB.
///
/// # Errors
///
/// Each failure is a [`KeyError`] whose origin names the token URL and the client, e.g.
/// `oauth2 token endpoint https://login.example.com/oauth2/token (client billing-service)`,
/// and whose cause names what failed, the server's error code and description, and the status:
/// `client authentication failed (invalid_client): Invalid client secret (HTTP 401; …)`.
///
/// | answer | kind |
/// |---|---|
/// | `invalid_client`, `unauthorized_client`, `access_denied`; a 401 or 403 without a code | `Denied` |
/// | `invalid_scope`, `invalid_grant`, `unsupported_grant_type`, `invalid_request`; 400, 404, 405 without a code | `Config` |
/// | any 5xx or 429 (its `Retry-After` honoured, see [`KeyError::retry_after`]), `temporarily_unavailable`, `server_error`; connection refused | `Unavailable` |
/// | no answer within the timeout | `Timeout` |
/// | a success that is not JSON, has no `access_token`, or a bad `expires_in` | `Unreadable` |
/// | a `token_type` other than `Bearer`; a token that is not a valid key | `Invalid` |
/// | a token that expires in 0 s | `Expired` |
/// | the secret file or variable missing or empty | `Missing` |
/// | a redirect to another origin or to clear text; bad options at `build` | `Config` |
#[derive(Clone)]
pub struct OAuth2ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    token_url: Uri,
    client_id: String,
    secret: ClientSecret,
    /// The `scope` parameter, space-separated, when any scope was asked for.
    scope: Option<String>,
    params: Vec<(String, String)>,
    client_auth: OAuth2ClientAuth,
    default_lifetime: Duration,
    /// `oauth2 token endpoint {url} (client {id})`.
    origin: String,
}

impl OAuth2ClientCredentials {
    /// A builder; see [`OAuth2ClientCredentialsBuilder`] for every option.
    pub fn builder() -> OAuth2ClientCredentialsBuilder {
        OAuth2ClientCredentialsBuilder::new()
    }

    /// Where the token is had, as error messages name it:
    /// `oauth2 token endpoint {url} (client {id})`.
    ///
    /// ```
    /// # fn main() -> Result<(), tower_bearer::KeyError> {
    /// let source = tower_bearer::OAuth2ClientCredentials::builder()
    ///     .token_url("https://login.example.com/oauth2/token")
    ///     .client_id("billing-service")
    ///     .client_secret("s3cr3t")
    ///     .build()?;
    /// assert_eq!(
    ///     source.origin(),
    ///     "oauth2 token endpoint https://login.example.com/oauth2/token (client billing-service)"
    /// );
    /// # Ok(()) }
    /// ```
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    async fn fetch(&self, deadline: Instant) -> Result<ApiKey, KeyError> {
        let inner = &*self.inner;
        let secret = inner.secret.read().await?;
        let (headers, body) = inner.request(&secret);
        let sent_at = SystemTime::now();
        let reply = inner
            .transport
            .send(
                Method::POST,
                inner.token_url.clone(),
                headers,
                Some(body),
                deadline,
            )
            .await
            .map_err(transport_error)?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, &secret));
        }
        let token = match parse_token_response(&reply.body) {
            Ok(token) => token,
            Err(TokenError::NoToken(_)) if is_error_response(&reply) => {
                return Err(status_error(&reply, &secret))
            }
            Err(e) => return Err(token_error(&e)),
        };
        drop(reply); // zeroes the body
        let lifetime = token.expires_in.unwrap_or(inner.default_lifetime);
        if lifetime.is_zero() {
            return Err(KeyError::new(
                KeyErrorKind::Expired,
                "the token endpoint issued a token that expires in 0 s (expires_in 0)",
            ));
        }
        let mut access_token = token.access_token;
        let key = ApiKey::new(std::mem::take(&mut *access_token)).map_err(|e| {
            KeyError::new(
                e.kind(),
                format!("the access_token is not a valid key: {}", e.cause()),
            )
        })?;
        tracing::debug!(
            key = key.fingerprint(),
            expires_in = ?lifetime,
            from_expires_in = token.expires_in.is_some(),
            "got a token from the OAuth2 token endpoint"
        );
        // Both bounded (10 years), but a clock set far ahead must not make this panic.
        let Some(expiry) = sent_at.checked_add(lifetime) else {
            return Err(KeyError::new(
                KeyErrorKind::Invalid,
                format!("the token's lifetime of {lifetime:?} overflows the clock"),
            ));
        };
        Ok(key.expires_at(expiry))
    }
}

impl Inner {
    /// The request's headers and form body, with the client's credentials in one or the other.
    fn request(&self, secret: &SecretString) -> (HeaderMap, bytes::Bytes) {
        let secret = secret.expose_secret();
        let text_len = 64
            + self.scope.as_deref().map_or(0, str::len)
            + self
                .params
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + self.client_id.len()
            + secret.len();
        let mut form = Form::with_text_len(text_len);
        form.pair("grant_type", "client_credentials");
        if let Some(scope) = &self.scope {
            form.pair("scope", scope);
        }
        for (name, value) in &self.params {
            form.pair(name, value);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        match self.client_auth {
            OAuth2ClientAuth::Basic => {
                headers.insert(AUTHORIZATION, basic_authorization(&self.client_id, secret));
            }
            OAuth2ClientAuth::RequestBody => {
                form.pair("client_id", &self.client_id);
                form.pair("client_secret", secret);
            }
        }
        (headers, form.into_bytes())
    }
}

impl KeySource for OAuth2ClientCredentials {
    fn load(&self) -> KeyFuture<'_> {
        let budget = self.inner.transport.timeout();
        Box::pin(within_budget(budget, &self.inner.origin, |deadline| {
            self.fetch(deadline)
        }))
    }

    fn describe(&self) -> Option<String> {
        Some(self.inner.origin.clone())
    }
}

impl fmt::Debug for OAuth2ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let param_names: Vec<&str> = inner.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OAuth2ClientCredentials")
            .field("origin", &inner.origin)
            .field("secret", &inner.secret.describe())
            .field("scope", &inner.scope)
            .field("param_names", &param_names)
            .field("client_auth", &inner.client_auth)
            .field("default_lifetime", &inner.default_lifetime)
            .field("transport", &inner.transport)
            .finish()
    }
}

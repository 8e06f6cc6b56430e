//! [`OAuth2ClientCredentialsBuilder`]: the options and their checks at `build`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use secrecy::{ExposeSecret, SecretString};

use super::secret::ClientSecret;
use super::{Inner, OAuth2ClientAuth, OAuth2ClientCredentials, TOKEN_ENDPOINT};
use crate::source::https::{cleartext_refusal, show, Transport};
use crate::{KeyError, KeyErrorKind};

/// Default bound on a load (the token request, its redirects and reading the answer): below the
/// layer's default load timeout (5 s), so a slow token endpoint is reported as one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a token is taken to live when the token response has no `expires_in`.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const CONFIG_ORIGIN: &str = "oauth2 client credentials configuration";
/// Form parameters the source sets itself.
const RESERVED: [&str; 4] = ["grant_type", "scope", "client_id", "client_secret"];

/// Options of an [`OAuth2ClientCredentials`] source; made by
/// [`OAuth2ClientCredentials::builder`].
///
/// Required: a token URL, a client id and a client secret (given, or read from a file or a
/// variable at each load). Every setter but [`scope`](Self::scope) and [`param`](Self::param)
/// replaces the value set before; the three secret setters replace each other. Nothing is
/// checked or read before [`build`](Self::build), which reports each mistake as a
/// [`KeyError`] of kind `Config`.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{OAuth2ClientAuth, OAuth2ClientCredentials};
///
/// # fn main() -> Result<(), tower_bearer::KeyError> {
/// let source = OAuth2ClientCredentials::builder()
///     .token_url("https://login.example.com/oauth2/token")
///     .client_id("billing-service")
///     .client_secret_file("/run/secrets/oauth-client-secret")
///     .scope("invoices.read")
///     .scope("invoices.write")
///     .param("audience", "https://api.example.com/")
///     .client_auth(OAuth2ClientAuth::RequestBody)
///     .timeout(Duration::from_secs(3))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct OAuth2ClientCredentialsBuilder {
    token_url: Option<String>,
    client_id: Option<String>,
    secret: Option<ClientSecret>,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    client_auth: OAuth2ClientAuth,
    timeout: Duration,
    ca_cert: Option<PathBuf>,
    default_lifetime: Duration,
    allow_insecure_http: bool,
}

impl OAuth2ClientCredentialsBuilder {
    pub(crate) fn new() -> Self {
        OAuth2ClientCredentialsBuilder {
            token_url: None,
            client_id: None,
            secret: None,
            scopes: Vec::new(),
            params: Vec::new(),
            client_auth: OAuth2ClientAuth::Basic,
            timeout: DEFAULT_TIMEOUT,
            ca_cert: None,
            default_lifetime: DEFAULT_LIFETIME,
            allow_insecure_http: false,
        }
    }

    /// The token endpoint, e.g. `https://login.example.com/oauth2/token` (a query is kept, as
    /// RFC 6749 section 3.2 asks). Plain `http://` only to loopback unless
    /// [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The client's id, as registered with the authorization server.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The client secret, given as it is (held in a `SecretString`, zeroed when dropped).
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(ClientSecret::Value(SecretString::from(secret.into())));
        self
    }

    /// Reads the client secret from this file at each load (trimmed), so a rotated secret is
    /// picked up at the next token request: a Kubernetes secret volume, a Vault Agent sink.
    pub fn client_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret = Some(ClientSecret::File(path.into()));
        self
    }

    /// Reads the client secret from this environment variable at each load (trimmed).
    pub fn client_secret_env(mut self, var: impl Into<String>) -> Self {
        self.secret = Some(ClientSecret::Env(var.into()));
        self
    }

    /// Asks for a scope; call it once per scope, or give several separated by spaces. Sent as
    /// one `scope` parameter, space-separated, in the order given (duplicates dropped).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds a form parameter to the token request, e.g. `("audience", "https://api.example.com/")`
    /// or `("resource", …)`. Repeatable; a name may repeat (RFC 8707 allows several
    /// `resource`s). `grant_type`, `scope`, `client_id` and `client_secret` are the source's own:
    /// naming one is a `Config` error at `build`.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// How the client authenticates: [`OAuth2ClientAuth::Basic`] (the default) or
    /// [`OAuth2ClientAuth::RequestBody`].
    pub fn client_auth(mut self, method: OAuth2ClientAuth) -> Self {
        self.client_auth = method;
        self
    }

    /// Bounds a whole load (default 4 s): reading the secret, the token request, its redirects
    /// and the answer. Keep it below the layer's
    /// [`load_timeout`](crate::BearerAuthLayer::load_timeout) (5 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts the CA certificates in this PEM file (read at `build`) and nothing else: for a
    /// token endpoint with a private CA. The public (webpki) roots are then not trusted.
    pub fn ca_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(pem_file.into());
        self
    }

    /// How long a token lives when the token response has no `expires_in` (default 1 hour):
    /// the token's expiry is then this long after the request. A token that dies sooner is
    /// replaced when the API answers 401.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Allows plain `http://` to a token endpoint that is not on loopback. Off by default: the
    /// client secret would cross the network in clear text.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Checks the options, reads the CA file if any, and builds the source. Connects to
    /// nothing and reads no secret file or variable: that is done at each load.
    pub fn build(self) -> Result<OAuth2ClientCredentials, KeyError> {
        let url_text = self.token_url.as_deref().map(str::trim).unwrap_or("");
        if url_text.is_empty() {
            return Err(config(
                "no token URL: call .token_url(\"https://login.example.com/oauth2/token\")",
            ));
        }
        let token_url: Uri = url_text
            .parse()
            .map_err(|e| config(format!("token URL {url_text:?} is not a URL: {e}")))?;
        if token_url.scheme().is_none() || token_url.authority().is_none() {
            return Err(config(format!(
                "token URL {url_text:?} must be absolute, e.g. https://login.example.com/oauth2/token"
            )));
        }
        if let Some(why) = cleartext_refusal(&token_url, self.allow_insecure_http, &TOKEN_ENDPOINT)
        {
            return Err(config(format!("token URL {}: {why}", show(&token_url))));
        }
        let client_id = self.client_id.as_deref().map(str::trim).unwrap_or("");
        if client_id.is_empty() {
            return Err(config("no client id: call .client_id(..)"));
        }
        if client_id.chars().any(char::is_control) {
            return Err(config("the client id has a control character"));
        }
        let secret = match self.secret {
            None => {
                return Err(config(
                    "no client secret: call .client_secret(..), .client_secret_file(..) or \
                     .client_secret_env(..)",
                ))
            }
            Some(ClientSecret::Value(s)) if s.expose_secret().trim().is_empty() => {
                return Err(config("the client secret is empty"))
            }
            Some(ClientSecret::Env(var)) if var.is_empty() || var.contains(['=', '\0']) => {
                return Err(config(format!(
                    "client_secret_env({var:?}) is not a variable name"
                )))
            }
            Some(secret) => secret,
        };
        let scope = scopes(&self.scopes)?;
        for (name, _) in &self.params {
            if name.is_empty() {
                return Err(config("param(\"\", ..): a parameter needs a name"));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(config(format!(
                    "param({name:?}, ..): the source sets {name} itself{}",
                    if name == "scope" {
                        "; use .scope(..)"
                    } else {
                        ""
                    }
                )));
            }
        }
        if self.timeout.is_zero() {
            return Err(config("timeout must be more than zero"));
        }
        if self.default_lifetime.is_zero() {
            return Err(config("default_lifetime must be more than zero"));
        }
        let transport = Transport::new(
            &TOKEN_ENDPOINT,
            self.timeout,
            self.allow_insecure_http,
            self.ca_cert.as_deref(),
            Vec::new(),
        )
        .map_err(config)?;
        let origin = format!(
            "oauth2 token endpoint {} (client {client_id})",
            show(&token_url)
        );
        Ok(OAuth2ClientCredentials {
            inner: Arc::new(Inner {
                transport,
                token_url,
                client_id: client_id.to_owned(),
                secret,
                scope,
                params: self.params,
                client_auth: self.client_auth,
                default_lifetime: self.default_lifetime,
                origin,
            }),
        })
    }
}

/// The `scope` parameter: each scope split at spaces, checked against RFC 6749 section 3.3
/// (printable ASCII but `"` and `\`), duplicates dropped; `None` when there is none.
fn scopes(given: &[String]) -> Result<Option<String>, KeyError> {
    let mut tokens: Vec<&str> = Vec::new();
    for token in given.iter().flat_map(|s| s.split_ascii_whitespace()) {
        let ok = token
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e));
        if !ok {
            return Err(config(format!(
                "scope {token:?}: a scope is printable ASCII without '\"' or '\\' (RFC 6749 section 3.3)"
            )));
        }
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    Ok((!tokens.is_empty()).then(|| tokens.join(" ")))
}

impl Default for OAuth2ClientCredentialsBuilder {
    fn default() -> Self {
        OAuth2ClientCredentialsBuilder::new()
    }
}

impl fmt::Debug for OAuth2ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let param_names: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OAuth2ClientCredentialsBuilder")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(ClientSecret::describe))
            .field("scopes", &self.scopes)
            .field("param_names", &param_names)
            .field("client_auth", &self.client_auth)
            .field("timeout", &self.timeout)
            .field("ca_cert", &self.ca_cert)
            .field("default_lifetime", &self.default_lifetime)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

fn config(cause: impl Into<String>) -> KeyError {
    KeyError::new(KeyErrorKind::Config, cause.into()).with_origin(CONFIG_ORIGIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_split_checked_and_deduplicated() {
        let s = |v: &[&str]| scopes(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]).unwrap(), None);
        assert_eq!(s(&["  "]).unwrap(), None);
        assert_eq!(
            s(&["read", "write read", " api://x/.default "])
                .unwrap()
                .as_deref(),
            Some("read write api://x/.default")
        );
        assert!(s(&["a\"b"]).is_err());
        assert!(s(&["é"]).is_err());
    }
}

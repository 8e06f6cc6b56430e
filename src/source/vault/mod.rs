//! [`VaultKeySource`]: the key from a field of a HashiCorp Vault KV secret (feature `vault`).
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::{BearerAuthLayer, VaultKeySource};
//!
//! # fn main() -> Result<(), tower_bearer::KeyError> {
//! // GET https://vault.example.com:8200/v1/secret/data/azerion, field "api_key" of the latest version
//! let source = VaultKeySource::builder()
//!     .address("https://vault.example.com:8200")
//!     .token("hvs.EXAMPLE") // or .approle_secret_id_file(..), .kubernetes(..)
//!     .mount("secret")
//!     .path("azerion")
//!     .field("api_key")
//!     .refresh_after(Duration::from_secs(300))
//!     .build()?;
//! let layer = BearerAuthLayer::new(source);
//! # Ok(()) }
//! ```
//!
//! The modules: `builder` (configuration), `env` (the Vault CLI's variables), `transport` (hyper-util over
//! rustls, redirects, body cap), `auth` (token, AppRole, Kubernetes, renew-self), `response`
//! (pure JSON parsing), `error` (answers to [`KeyError`]s).
//!
//! Tested against the responses Vault's API docs print, served byte for byte by a fixture
//! server on loopback (`tests/support/vault_server.rs`), not against a live Vault.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::StatusCode;
use secrecy::ExposeSecret;

use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

mod auth;
mod builder;
mod env;
mod error;
mod response;
mod transport;

pub use builder::VaultKeySourceBuilder;
// For `crate::__fuzz`: the pure parsers, fed any bytes by the fuzz targets and property tests.
pub(crate) use response::{parse_auth_response, vault_messages};

use auth::{Auth, Token};
use error::{kv_error, status_error, transport_error, Step};
pub(crate) use response::{parse_kv_response, KvError};
use transport::Endpoint;

/// How often a key read from Vault is read again when neither
/// [`refresh_after`](VaultKeySourceBuilder::refresh_after) nor a KV v1 lease says otherwise.
pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The shortest refresh hint given when the Vault token's renewal is near.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// Reads the key from a field of a HashiCorp Vault KV secret (version 2 or 1), at every load.
///
/// Built with [`VaultKeySource::builder`], or with [`VaultKeySource::from_env`] the way the
/// Vault CLI is configured (`VAULT_ADDR`, `VAULT_TOKEN` or `~/.vault-token`,
/// `VAULT_NAMESPACE`, `VAULT_CACERT`).
///
/// ```
/// use tower_bearer::{BearerAuthLayer, VaultKeySource};
///
/// # fn main() -> Result<(), tower_bearer::KeyError> {
/// // In a pod: log in with its service account, read kv-v2 "secret/azerion", field "api_key".
/// let source = VaultKeySource::builder()
///     .address("https://vault.example.com:8200")
///     .kubernetes("azerion-client")
///     .mount("secret")
///     .path("azerion")
///     .field("api_key")
///     .build()?;
/// let layer = BearerAuthLayer::new(source);
/// # Ok(()) }
/// ```
///
/// # What a load does
///
/// - KV v2 (the default): `GET /v1/{mount}/data/{path}`, the key is `data.data.{field}` of
///   the latest version. KV v1: `GET /v1/{mount}/{path}`, the key is `data.{field}`.
/// - Every request carries `X-Vault-Request: true`, `X-Vault-Namespace` when a namespace is
///   set, and the Vault token in `X-Vault-Token`, marked sensitive.
/// - A token had by logging in (AppRole, Kubernetes) is renewed with
///   `POST /v1/auth/token/renew-self` once a third of its lease is left (when Vault says it
///   is renewable), and had again by logging in when it is about to expire or Vault answers
///   403 to it. A token given as it is is used as it is.
/// - A `307`/`308` from a standby node is followed, up to 3 hops, each hop held to the
///   clear-text rule below.
/// - The key carries a refresh hint: [`refresh_after`](VaultKeySourceBuilder::refresh_after)
///   if set, else a KV v1 secret's `lease_duration` when Vault gives one, else 5 minutes;
///   and never later than the token's renewal point, so the token stays alive. A 401 from
///   the API makes the layer load again at once whatever the hint.
///
/// # Safety of the secrets
///
/// The token is held in a `SecretString` and appears in no `Debug` output, log or error. Plain
/// `http://` is refused unless the host is loopback or
/// [`allow_insecure_http`](VaultKeySourceBuilder::allow_insecure_http) says so, at build
/// time and on every redirect. Answers are read up to 1 MiB.
///
/// # Errors
///
/// Each failure is a [`KeyError`] whose origin names the address, the API path and the field,
/// e.g. `vault https://vault.example.com:8200 secret/data/azerion (field api_key)`, and whose
/// cause names the step and the reason, with Vault's own `errors` strings (capped):
///
/// | failure | kind |
/// |---|---|
/// | 403 permission denied, refused login | `Denied` |
/// | 404, a deleted or destroyed version, a missing field | `Missing` |
/// | a field that is not a string, or not a valid key | `Invalid` |
/// | 503 sealed, 429 rate limited, 412, other 5xx, connection refused | `Unavailable` |
/// | no answer within the [`timeout`](VaultKeySourceBuilder::timeout) | `Timeout` |
/// | an answer that is not JSON or not a KV read | `Unreadable` |
/// | a redirect to clear text or too many redirects; bad configuration at `build` | `Config` |
///
/// # Testing
///
/// This source is tested against the responses documented in Vault's API docs, served byte
/// for byte by a fixture server on loopback, not against a live Vault.
#[derive(Clone)]
pub struct VaultKeySource {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    auth: Auth,
    read_url: http::Uri,
    /// `secret/data/azerion`, as named in messages.
    api_path: String,
    field: String,
    kv_version: u8,
    refresh_after: Option<Duration>,
    /// `vault {address} {api_path} (field {field})`.
    origin: String,
    namespace: Option<String>,
}

impl VaultKeySource {
    /// A builder; see [`VaultKeySourceBuilder`] for every option.
    pub fn builder() -> VaultKeySourceBuilder {
        VaultKeySourceBuilder::new()
    }

    /// Reads `field` of the secret at `path` of the KV v2 mount `mount`, with the Vault CLI's
    /// configuration: `VAULT_ADDR` (default `https://127.0.0.1:8200`), `VAULT_TOKEN` or else
    /// the token helper's file `~/.vault-token`, `VAULT_NAMESPACE` and `VAULT_CACERT`.
    ///
    /// The variables and the token file are read now, not at each load. For more options
    /// (KV v1, a timeout, a refresh interval), use
    /// [`VaultKeySourceBuilder::cli_env`] and the other builder methods.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), tower_bearer::KeyError> {
    /// let source = tower_bearer::VaultKeySource::from_env("secret", "azerion", "api_key")?;
    /// # Ok(()) }
    /// ```
    pub fn from_env(
        mount: impl Into<String>,
        path: impl Into<String>,
        field: impl Into<String>,
    ) -> Result<VaultKeySource, KeyError> {
        VaultKeySource::builder()
            .cli_env()?
            .mount(mount)
            .path(path)
            .field(field)
            .build()
    }

    /// Where the key is read, as error messages name it:
    /// `vault {address} {api path} (field {field})`.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    async fn fetch(&self) -> Result<ApiKey, KeyError> {
        let inner = &*self.inner;
        let token = inner.auth.token(&inner.endpoint).await?;
        match self.read(&token).await {
            Err(e) if e.kind() == KeyErrorKind::Denied && token.can_relogin && !token.fresh => {
                tracing::info!(
                    method = inner.auth.method_name(),
                    "Vault refused the token; logging in again"
                );
                inner.auth.forget(&token).await;
                let token = inner.auth.token(&inner.endpoint).await?;
                self.read(&token).await
            }
            other => other,
        }
    }

    async fn read(&self, token: &Token) -> Result<ApiKey, KeyError> {
        let inner = &*self.inner;
        let step = Step::Read(&inner.api_path);
        let reply = inner
            .endpoint
            .call(
                Method::GET,
                inner.read_url.clone(),
                Some(&token.secret),
                None,
            )
            .await
            .map_err(|e| transport_error(step, e))?;
        if reply.status == StatusCode::NOT_FOUND && inner.kv_version == 2 {
            // A deleted or destroyed version comes as a 404 with the version's metadata.
            if let Err(e @ (KvError::Deleted { .. } | KvError::Destroyed { .. })) =
                parse_kv_response(2, &reply.body, &inner.field)
            {
                return Err(kv_error(step, reply.status, &e));
            }
        }
        if !reply.status.is_success() {
            return Err(status_error(step, &reply));
        }
        let secret = parse_kv_response(inner.kv_version, &reply.body, &inner.field)
            .map_err(|e| kv_error(step, reply.status, &e))?;
        let key = ApiKey::new(secret.value.expose_secret()).map_err(|e| {
            KeyError::new(
                e.kind(),
                format!(
                    "{step}: field {:?} does not hold a valid key: {}",
                    inner.field,
                    e.cause()
                ),
            )
        })?;
        let mut hint = inner
            .refresh_after
            .or(secret.lease)
            .unwrap_or(DEFAULT_REFRESH);
        if let Some(renew_in) = token.renew_in {
            hint = hint.min(renew_in.max(MIN_REFRESH));
        }
        tracing::debug!(
            key = key.fingerprint(),
            version = secret.version,
            refresh_after = ?hint,
            "read the key from Vault"
        );
        Ok(key.refresh_after(hint))
    }
}

impl KeySource for VaultKeySource {
    fn load(&self) -> KeyFuture<'_> {
        Box::pin(async move {
            self.fetch()
                .await
                .map_err(|e| e.with_origin(self.inner.origin.clone()))
        })
    }
}

impl fmt::Debug for VaultKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("VaultKeySource")
            .field("origin", &inner.origin)
            .field("kv_version", &inner.kv_version)
            .field("namespace", &inner.namespace)
            .field("auth", &inner.auth)
            .field("refresh_after", &inner.refresh_after)
            .finish_non_exhaustive()
    }
}

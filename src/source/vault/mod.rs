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
//!     .token("hvs.EXAMPLE") // or .token_file(..), .approle_secret_id_file(..), .kubernetes(..)
//!     .mount("secret")
//!     .path("azerion")
//!     .field("api_key")
//!     .refresh_after(Duration::from_secs(300))
//!     .build()?;
//! let layer = BearerAuthLayer::new(source);
//! # Ok(()) }
//! ```
//!
//! The modules: `builder` (configuration), `env` (the Vault CLI's variables), `transport` (Vault's
//! headers over the shared HTTPS transport, `crate::source::https`: hyper-util over rustls,
//! redirects, body cap), `auth` (token, AppRole, Kubernetes, renew-self), `response`
//! (pure JSON parsing), `error` (answers to [`KeyError`]s).
//!
//! Tested against a real OpenBao dev server (`tests/openbao/`) and against the responses
//! Vault's API docs print, served byte for byte by a fixture server on loopback
//! (`tests/support/vault_server.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::StatusCode;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::source::https::within_budget;
use crate::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

mod auth;
mod builder;
mod env;
mod error;
pub(crate) mod response;
mod transport;

pub use builder::VaultKeySourceBuilder;

use auth::{Auth, Check, Credential, Token, MAX_LEASE};
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
/// - A token from a [`token_file`](VaultKeySourceBuilder::token_file) (a Vault Agent's or
///   Proxy's sink) is read from the file at each load, and again after a 403: when the agent
///   has written a new one, the secret is read once more with it.
/// - A token had by logging in (AppRole, Kubernetes) is renewed with
///   `POST /v1/auth/token/renew-self` once a third of its lease is left (when Vault says it
///   is renewable; [`renew_token_within`](VaultKeySourceBuilder::renew_token_within) changes
///   the margin, capped at half the lease), and had again by logging in when it is about to
///   expire. A token given as it is is used as it is.
/// - A 403 on the read is not taken as a dead token on its own word (Vault answers
///   "permission denied" both to a policy that forbids the path and to a revoked token): the
///   source asks `GET /v1/auth/token/lookup-self`. If the token is valid, the 403 is the
///   policy's and is reported, with no login. If Vault refuses that too, the source logs in
///   again (at most once per 30 s), keeps the old token until the new login succeeds, then
///   revokes it (`revoke-self`, best effort, in the background).
/// - A refused login (wrong or used-up secret_id, a JWT Vault does not accept) is remembered
///   as a keyed digest of the credential, never the credential: the same credential is not
///   sent again for 5 minutes, unless the file or variable it comes from changes. Each
///   refused login counts toward Vault's lockout of the role, which would hit every
///   instance of the service.
/// - A `307`/`308` from a standby node is followed, up to 3 hops, only to the request's own
///   origin (scheme, host and port) or to nodes named with
///   [`allow_redirects_to`](VaultKeySourceBuilder::allow_redirects_to); never from `https`
///   to `http`; each hop held to the clear-text rule below.
/// - The whole load (every request above) shares one deadline, the
///   [`timeout`](VaultKeySourceBuilder::timeout).
/// - The key carries a refresh hint: [`refresh_after`](VaultKeySourceBuilder::refresh_after)
///   if set, else a KV v1 secret's `lease_duration` when the secret sets a `ttl` field (a KV
///   v1 mount answers every read with its default lease, 32 days, otherwise), else 5
///   minutes; at most a year; and never later than the token's renewal point, so the token
///   stays alive. A 401 from the API makes the layer load again at once whatever the hint.
///
/// # Safety of the secrets
///
/// The token is held in a `SecretString` and appears in no `Debug` output, log or error.
/// Login credentials, the login request body and Vault's answers are held in buffers that
/// are zeroed when dropped. Plain
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
/// | a redirect to another origin, to clear text, or too many; bad configuration at `build` | `Config` |
///
/// A 429 or 503 with a `Retry-After` (OpenBao and Vault send one on a rate-limit quota's 429
/// when `sys/quotas/config` has `enable_rate_limit_response_headers`) gives an error with
/// [`KeyError::retry_after`] set: the layer waits at least that long (at most
/// [`KeyError::MAX_RETRY_AFTER`]) before it loads again, instead of its shorter backoff.

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

    async fn fetch(&self, deadline: Instant) -> Result<ApiKey, KeyError> {
        let inner = &*self.inner;
        let token = inner.auth.token(&inner.endpoint, deadline).await?;
        let denied = match self.read(&token, deadline).await {
            Err(e) if e.kind() == KeyErrorKind::Denied && token.can_relogin && !token.fresh => e,
            other => return other,
        };
        if let Some(file) = inner.auth.token_file() {
            return self.file_token_denied(file, &token, denied, deadline).await;
        }
        // A 403 is the policy's or the token's: Vault's body is the same for both, so ask.
        match inner.auth.check(&inner.endpoint, &token, deadline).await {
            Check::Valid => Err(KeyError::new(
                KeyErrorKind::Denied,
                format!(
                    "{}; the token itself is valid (auth/token/lookup-self), so not logging in again",
                    denied.cause()
                ),
            )),
            Check::Unknown(why) => {
                tracing::info!(error = %why, "Vault refused the read and the token check failed; not logging in again");
                Err(denied)
            }
            Check::Refused => {
                tracing::info!(
                    method = inner.auth.method_name(),
                    "Vault refused the token; logging in again"
                );
                let token = inner
                    .auth
                    .replace(&inner.endpoint, &token, deadline)
                    .await
                    .map_err(|e| {
                        KeyError::new(e.kind(), format!("{}; {}", denied.cause(), e.cause()))
                    })?;
                self.read(&token, deadline).await
            }
        }
    }

    /// A 403 to a token read from a file: the agent writing the file may have replaced the
    /// token since this load read it (and revoked the old one), so the file is read again and,
    /// if it changed, the secret once more. Otherwise `lookup-self` says whose refusal it is.
    async fn file_token_denied(
        &self,
        file: &Credential,
        token: &Token,
        denied: KeyError,
        deadline: Instant,
    ) -> Result<ApiKey, KeyError> {
        let inner = &*self.inner;
        let again = inner.auth.token(&inner.endpoint, deadline).await?;
        if again.secret.expose_secret() != token.secret.expose_secret() {
            tracing::info!(token = %file.describe(), "Vault refused the token; the file holds a new one");
            return self.read(&again, deadline).await;
        }
        let why = match inner.auth.check(&inner.endpoint, token, deadline).await {
            Check::Valid => format!(
                "the token from {} is valid (auth/token/lookup-self): its policy does not allow the read",
                file.describe()
            ),
            Check::Refused => format!(
                "Vault refused the token from {} at auth/token/lookup-self too (revoked or \
                 expired?) and the file still holds it: whatever writes the file (a Vault \
                 Agent or Proxy) has not replaced it",
                file.describe()
            ),
            Check::Unknown(_) => return Err(denied),
        };
        Err(KeyError::new(
            KeyErrorKind::Denied,
            format!("{}; {why}", denied.cause()),
        ))
    }

    async fn read(&self, token: &Token, deadline: Instant) -> Result<ApiKey, KeyError> {
        let inner = &*self.inner;
        let step = Step::Read(&inner.api_path);
        let reply = inner
            .endpoint
            .call(
                Method::GET,
                inner.read_url.clone(),
                Some(&token.secret),
                None,
                deadline,
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
        drop(reply); // zeroes the body
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
            .unwrap_or(DEFAULT_REFRESH)
            .min(MAX_LEASE);
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
        // One deadline for the whole load: read, lookup-self, login and read again.
        let budget = self.inner.endpoint.timeout();
        Box::pin(within_budget(budget, &self.inner.origin, |deadline| {
            self.fetch(deadline)
        }))
    }

    fn describe(&self) -> Option<String> {
        Some(self.inner.origin.to_string())
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

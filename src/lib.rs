//! Tower middleware that puts `Authorization: Bearer <key>` on every request, with the key from
//! a source you choose (an environment variable, a file, a credential helper program, HashiCorp
//! Vault, a chain of them, your own), kept fresh, rotated when the server rejects it, and never
//! leaked.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_bearer::{azerion, ErrorMappingLayer};
//!
//! # #[tokio::main] async fn main() -> Result<(), tower::BoxError> {
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_webpki_roots()
//!     .https_only()
//!     .enable_http1()
//!     .build();
//! let client = ServiceBuilder::new()
//!     .layer(ErrorMappingLayer::new()) // a status >= 400 becomes a typed ApiError
//!     .layer(azerion::layer()) // key from AZERION_API_KEY(_FILE), sent to api.azerion.ai only
//!     .service(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https));
//!
//! let request = http::Request::get(format!("{}/models", azerion::BASE_URL)).body(Empty::new())?;
//! let response = client.oneshot(request).await?;
//! println!("{}", String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()));
//! # Ok(()) }
//! ```
//!
//! # The layers
//!
//! | layer | what it does |
//! |-------|--------------|
//! | [`BearerAuthLayer`] | adds the header from a [`KeySource`]; caches, refreshes, rotates on 401 and replays once |
//! | [`ErrorMappingLayer`] | turns a status of 400 or more into an [`ApiError`] (kind, message, code, Retry-After, request id) |
//! | [`TransientRetryLayer`] | retries 408, 409, 429 and 5xx (not 501) and refused connections, with backoff and a budget |
//!
//! Stack them outermost first: `TransientRetryLayer`, `ErrorMappingLayer`, `BearerAuthLayer`,
//! then the client, so each retry goes through the bearer layer and picks up a rotated key (see
//! [`errors`]).
//!
//! # How a request flows
//!
//! 1. `poll_ready` forwards to the inner service.
//! 2. `call` reads the cached key: one atomic load and a clone of this service's own copy of
//!    the header value; no lock, no allocation (and a clock read for a key with a refresh
//!    hint). The source is asked only when there is no key yet or its refresh hint is near,
//!    and then by one caller at a time: the others wait on that load (first use) or keep the
//!    current key (refresh). A load runs as a task of its own: a caller that gives up (a
//!    timeout, `select!`) does not cancel it, and a source that panics counts as one that
//!    failed.
//! 3. The header is inserted, marked sensitive. A caller's own `Authorization` header wins
//!    unless [`BearerAuthLayer::override_existing`] is set.
//! 4. A 401: the key that was sent is marked rejected and reloaded once, however many requests
//!    got the 401; if the source has a new key and the body can be sent again (see
//!    [`ReplayableBody`]), the request is replayed once with it.
//! 5. The response goes back unchanged.
//!
//! # Security
//!
//! The key goes only to the hosts set with [`BearerAuthLayer::restrict_to_hosts`] (the
//! [`azerion`] presets scope to `api.azerion.ai`), never over plain `http://` to a host that is
//! not loopback unless [`BearerAuthLayer::allow_insecure_http`] says so, and never into a log, a
//! `Debug` string, an error message or a panic message: those show the key's
//! [fingerprint](ApiKey::fingerprint) at most. The secret is held in a
//! [`secrecy::SecretString`], zeroized on drop; the bytes of the prebuilt header value cannot be
//! (the `http` crate shares them by reference count), which is why it is built once per key.
//!
//! # Runtime
//!
//! Loads run on tokio, as tasks of their own: the load timeout, the refresh timer and the file
//! source's blocking read need a tokio runtime with its time driver on (`#[tokio::main]` and
//! `Builder::enable_all()` have it), as hyper-util's client does in practice.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---------|---------|--------------|
//! | `env`   | yes     | [`EnvKeySource`] (and its `_FILE` variable, with `file`), [`azerion::layer`] |
//! | `file`  | yes     | [`FileKeySource`] |
//! | `command` | yes   | [`CommandKeySource`]: a credential helper program (plain text, Kubernetes `ExecCredential` or OAuth2 token JSON); enables tokio's `process` and `io-util` |
//! | `vault` | no      | `VaultKeySource` (HashiCorp Vault KV v1/v2; token, AppRole, Kubernetes auth) |
//! | `full`  | no      | all of the above |
//!
//! [`KeySourceChain`] (an environment variable, else a file, else Vault…) and [`StaticKey`] are
//! always there.

#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
pub mod azerion;
mod cache;
pub mod errors;
mod key;
mod net;
mod replay;
mod rotation;
pub mod source;

pub use auth::{BearerAuth, BearerAuthLayer, ResponseFuture, ScopeError};
pub use cache::KeyHandle;
pub use errors::{
    ApiError, ApiErrorKind, ErrorMapping, ErrorMappingLayer, TransientRetryLayer,
    TransientRetryPolicy,
};
pub use key::{ApiKey, KeyError, KeyErrorKind, MAX_KEY_LEN};
pub use replay::{ReplayableBody, DEFAULT_REPLAY_CAP};
pub use rotation::{RotationEvent, RotationReason};
#[cfg(feature = "command")]
#[cfg_attr(docsrs, doc(cfg(feature = "command")))]
pub use source::CommandKeySource;
#[cfg(feature = "env")]
#[cfg_attr(docsrs, doc(cfg(feature = "env")))]
pub use source::EnvKeySource;
#[cfg(feature = "file")]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub use source::FileKeySource;
pub use source::{KeyFuture, KeySource, KeySourceChain, StaticKey};
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub use source::{VaultKeySource, VaultKeySourceBuilder};

/// Pure parsers exposed for the fuzz targets in `fuzz/` and the property tests. Not part of
/// the public API: no stability promise, hidden from the docs.
#[doc(hidden)]
pub mod __fuzz {
    /// What [`parse_error_body`] understood of an error body.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct ErrorBodyFields {
        /// The message (`error.message`, `message`, `detail`, `errors`…).
        pub message: Option<String>,
        /// The error's `type`.
        pub error_type: Option<String>,
        /// The error's `code`.
        pub code: Option<String>,
        /// The error's `param`.
        pub param: Option<String>,
    }

    /// The error-body parser behind [`ApiError::message`](crate::ApiError::message).
    pub fn parse_error_body(bytes: &[u8]) -> ErrorBodyFields {
        let parsed = crate::errors::parse_error_body(bytes);
        ErrorBodyFields {
            message: parsed.message,
            error_type: parsed.error_type,
            code: parsed.code,
            param: parsed.param,
        }
    }

    /// The redaction and cut that [`ApiError`](crate::ApiError)'s `Display` applies to a
    /// server's message.
    pub fn safe_message(message: &str, max: usize) -> String {
        crate::errors::safe_message(message, max)
    }

    /// What [`parse_vault_kv`] read. No `Debug`: it holds the secret.
    #[cfg(feature = "vault")]
    #[allow(missing_debug_implementations)]
    pub struct VaultKvRead {
        /// The field's value.
        pub value: String,
        /// KV v1's `lease_duration`, when set.
        pub lease: Option<std::time::Duration>,
        /// KV v2's `metadata.version`, when present.
        pub version: Option<u64>,
    }

    /// The parser of a Vault KV read's body (`data.data.{field}` for v2, `data.{field}` for
    /// v1); the error is the cause `VaultKeySource` reports.
    #[cfg(feature = "vault")]
    pub fn parse_vault_kv(kv_version: u8, body: &[u8], field: &str) -> Result<VaultKvRead, String> {
        use secrecy::ExposeSecret;
        crate::source::parse_kv_response(kv_version, body, field)
            .map(|read| VaultKvRead {
                value: read.value.expose_secret().to_owned(),
                lease: read.lease,
                version: read.version,
            })
            .map_err(|e| e.to_string())
    }

    /// The parser of a Vault login or `renew-self` answer: `(client_token, lease, renewable)`.
    #[cfg(feature = "vault")]
    pub fn parse_vault_auth(body: &[u8]) -> Result<(String, std::time::Duration, bool), String> {
        use secrecy::ExposeSecret;
        crate::source::parse_auth_response(body).map(|auth| {
            let token = auth.client_token.expose_secret().to_owned();
            (token, auth.lease, auth.renewable)
        })
    }

    /// Vault's `errors` (or `warnings`) strings from an error body, as error messages quote them.
    #[cfg(feature = "vault")]
    pub fn vault_messages(body: &[u8]) -> Vec<String> {
        crate::source::vault_messages(body)
    }
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

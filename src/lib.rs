//! Tower middleware that puts `Authorization: Bearer <key>` on every request, with the key from
//! a source you choose (an environment variable, a file, a credential helper program, HashiCorp
//! Vault, an OAuth2 token endpoint, a chain of them, your own), kept fresh, rotated when the server rejects it, and never
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
//! [where the layers go](retry#where-the-layers-go)). Their modules, [`map_error`] and
//! [`retry`], hold their other types and settings.
//!
//! For clients that are not a plain `Service<http::Request<B>>` over HTTP, two adapters take a
//! `BearerAuthLayer` (its key cache, options and hooks) as it is: `grpc::GrpcAuthLayer` for
//! tonic (feature `grpc`: a call replayed after `UNAUTHENTICATED`) and
//! `async_openai::AuthLayer` for async-openai's middleware stack (feature `async-openai`: a 401
//! replayed by rebuilding the request).
//!
//! # How a request flows
//!
//! 1. `poll_ready` forwards to the inner service.
//! 2. `call` reads the cached key: one atomic load and a clone of this service's own copy of
//!    the header value; no lock, no allocation, no clock read (but one of the wall clock for
//!    a key with a hard expiry). The source is asked only when there is no key yet or its
//!    refresh hint is near, and then by one caller at a time: the others wait on that load
//!    (first use) or keep the current key (refresh); a thread of the crate's marks the key due
//!    at its refresh point, whatever runtime is driven or not. A load runs as a task of its
//!    own: a caller that gives up (a timeout, `select!`) does not cancel it, and a source that
//!    panics counts as one that failed.
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
//! | `oauth2` | no     | `OAuth2ClientCredentials` (an OAuth2 access token by the client-credentials grant; the same HTTPS transport as `vault`) |
//! | `metrics` | no    | the key's health through the `metrics` facade: loads, rotations, replays, expiries, failures in a row, when the key was loaded and when it expires |
//! | `grpc`  | no      | `grpc::GrpcAuthLayer`: tonic 0.14 clients, a call replayed after `UNAUTHENTICATED` (needs Rust 1.88, as tonic does) |
//! | `async-openai` | no | `async_openai::AuthLayer`: the key on async-openai 0.43's requests through its `middleware` stack, a 401 replayed by rebuilding the request |
//! | `full`  | no      | all of the above |
//!
//! [`KeySourceChain`] (an environment variable, else a file, else Vault…) and [`StaticKey`] are
//! always there.

#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "async-openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "async-openai")))]
pub mod async_openai;
mod auth;
pub mod azerion;
mod cache;
pub mod errors;
pub mod event;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
mod key;
pub mod map_error;
mod net;
mod redact;
mod replay;
pub mod retry;
mod rotation;
pub mod source;
mod timefmt;

pub use auth::{BearerAuth, BearerAuthLayer, Rejection, ResponseFuture, ScopeError};
pub use cache::{KeyHandle, KeyState, KeyStatus};
pub use event::KeyEvent;
pub use key::{ApiKey, KeyError, KeyErrorKind, MAX_KEY_LEN};
pub use map_error::{ApiError, ApiErrorKind, ErrorMapping, ErrorMappingLayer};
pub use replay::{ReplayableBody, DEFAULT_REPLAY_CAP};
pub use retry::{TransientRetryLayer, TransientRetryPolicy};
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
#[cfg(feature = "oauth2")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
pub use source::{OAuth2ClientAuth, OAuth2ClientCredentials, OAuth2ClientCredentialsBuilder};
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub use source::{VaultKeySource, VaultKeySourceBuilder};

/// The pure parsers, re-exported for the fuzz targets in `fuzz/`. Compiled only under
/// `--cfg fuzzing` (cargo-fuzz sets it; `.ci/run` checks the targets with it): not part of the
/// API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::map_error::body::{parse_error_body, ErrorBody};
    pub use crate::redact::safe_message;
    #[cfg(feature = "vault")]
    pub use crate::source::vault::response::{
        parse_auth_response, parse_kv_response, vault_messages, AuthInfo, KvError, KvSecret,
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

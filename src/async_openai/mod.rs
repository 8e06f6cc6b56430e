//! async-openai clients (feature `async-openai`): [`AuthLayer`] puts the key of a
//! [`BearerAuthLayer`] on every request an [`async_openai::Client`]
//! sends through its `middleware` stack, reloads it when the server answers 401, and sends the
//! request once more with the new key.
//!
//! async-openai (0.43, feature `middleware`) hands its tower stack an
//! [`HttpRequestFactory`], not a request: a closure that builds a fresh `reqwest::Request` each
//! time it is called. [`Auth`] wraps the factory so that each request it builds is checked
//! against the layer's host scope and cleartext rule and gets `Authorization: Bearer <key>`,
//! replacing the header async-openai's own config put there. A replay builds the request again
//! from the factory, so every request replays, multipart uploads included.
//!
//! The key cache, options, hooks and handles are the [`BearerAuthLayer`]'s: build the layer as
//! for any client, then hand it over. Rejections are the layer's too (401 by default; see
//! [`rejected_when`](BearerAuthLayer::rejected_when)).
//!
//! ```
//! use async_openai::{config::OpenAIConfig, middleware::ReqwestService, Client};
//! use tower::ServiceBuilder;
//! use tower_bearer::{async_openai::AuthLayer, azerion, BearerAuthLayer, FileKeySource};
//!
//! # let _ = rustls::crypto::ring::default_provider().install_default(); // the crate's tests build reqwest without one
//! let layer = BearerAuthLayer::new(FileKeySource::new("/run/secrets/azerion-api-key"))
//!     .restrict_to_hosts(["api.azerion.ai"]);
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(layer))
//!     .service(ReqwestService::new(reqwest::Client::new()));
//! // The config's own key is not used: the layer's replaces it.
//! let client = Client::with_config(OpenAIConfig::new().with_api_base(azerion::BASE_URL))
//!     .with_http_service(service);
//! # let _ = client;
//! ```
//!
//! Errors are [`OpenAIError`]s: the inner service's pass through unchanged, and the layer's
//! own (no key, a destination out of scope) are `OpenAIError::Boxed`, downcastable to
//! [`KeyError`](crate::KeyError) or [`ScopeError`](crate::ScopeError). Responses go back as
//! they came, so async-openai makes its own `ApiError` of a 404 or a 401 that was not healed.
//!
//! `with_http_service` replaces async-openai's default stack, its retry layer included: add
//! `OpenAIRetryLayer` (429 and 5xx) back if you want it. Outside `AuthLayer`, each retry goes
//! through it and picks up a rotated key; inside, a retry rebuilds the request with the key it
//! was first given. Either way a 401 is not retried there and comes back to be handled
//! here. `examples/async_openai_azerion.rs` runs it against a stand-in Azerion API.

mod future;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::async_openai::error::OpenAIError;
use ::async_openai::middleware::HttpRequestFactory;
use http::header::AUTHORIZATION;
use http::HeaderValue;
use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;

use crate::auth::adapter::{Adapter, KeyNow};
use crate::{BearerAuthLayer, KeyHandle};
use future::{key_error, Cold, Sent};

/// A [`BearerAuthLayer`] for async-openai's middleware stack: see the [module docs](self).
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct AuthLayer {
    adapter: Arc<Adapter>,
}

impl AuthLayer {
    /// The bearer layer `layer`, for async-openai: the same key cache, options and hooks.
    pub fn new(layer: BearerAuthLayer) -> Self {
        AuthLayer {
            adapter: Arc::new(Adapter::new(&layer)),
        }
    }

    /// A handle on the key cache, the same as the bearer layer's.
    pub fn handle(&self) -> KeyHandle {
        self.adapter.handle()
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("adapter", &self.adapter)
            .finish()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            adapter: self.adapter.clone(),
        }
    }
}

/// The service made by [`AuthLayer`], for a `Service<HttpRequestFactory>` (async-openai's
/// `ReqwestService`, or a stack over it). `Clone` when `S` is; clones share the key cache.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    adapter: Arc<Adapter>,
}

impl<S> Auth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("adapter", &self.adapter)
            .finish()
    }
}

impl<S> Service<HttpRequestFactory> for Auth<S>
where
    S: Service<HttpRequestFactory, Response = reqwest::Response> + Clone,
    S::Error: Into<OpenAIError>,
{
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture<S>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, factory: HttpRequestFactory) -> ResponseFuture<S> {
        let adapter = &self.adapter;
        match adapter.key_now() {
            KeyNow::Ready(current) => {
                let keyed = with_key(&factory, current.key.header_value(), adapter);
                let sent = adapter.handles_rejections().then(|| Sent {
                    generation: current.generation,
                    replay: adapter.replays().then(|| self.inner.clone()),
                    factory,
                    adapter: adapter.clone(),
                });
                ResponseFuture::sending(self.inner.call(keyed), sent)
            }
            KeyNow::Wait(load) => {
                // The inner service was made ready by `poll_ready`; take that one, leave a clone.
                let clone = self.inner.clone();
                ResponseFuture::cold(Cold::Loading {
                    load,
                    service: std::mem::replace(&mut self.inner, clone),
                    factory,
                    adapter: adapter.clone(),
                })
            }
            KeyNow::Failed(err) => ResponseFuture::cold(Cold::Failed {
                error: key_error(err),
            }),
        }
    }
}

/// `factory`, building each request with `header` on it, once its URL and `Host` pass the
/// layer's scope and cleartext rule.
fn with_key(
    factory: &HttpRequestFactory,
    header: &HeaderValue,
    adapter: &Arc<Adapter>,
) -> HttpRequestFactory {
    let (factory, header, adapter) = (factory.clone(), header.clone(), adapter.clone());
    HttpRequestFactory::new(move || {
        let (factory, header, adapter) = (factory.clone(), header.clone(), adapter.clone());
        async move {
            let mut request = factory.build().await?;
            adapter
                .check_destination(request.url().as_str(), request.headers())
                .map_err(|refused| OpenAIError::Boxed(Box::new(refused)))?;
            request.headers_mut().insert(AUTHORIZATION, header);
            Ok(request)
        }
    })
}

//! tonic clients (feature `grpc`): [`GrpcAuthLayer`] puts a [`BearerAuthLayer`] on a tonic
//! `Channel` (or any `Service<http::Request<tonic::body::Body>>`), with the key reloaded and
//! the call sent again when the server answers `UNAUTHENTICATED`.
//!
//! A [`BearerAuthLayer`] alone cannot replay a tonic call: tonic's request body,
//! [`tonic::body::Body`], is a stream, not one of the bodies that can be had again. The
//! [`GrpcAuth`] service this layer makes takes the body whole before the call when it is ready
//! (a unary or server-streaming call's one message, encoded at once), so the replay has the
//! very bytes that were sent, whatever the server answered and however far the client had got
//! in sending them. A streaming request is sent as it comes, recorded up to a cap (64 KiB by
//! default), and replayed only if it had ended within the cap.
//!
//! What is and is not replayed:
//!
//! - **A rejection in the response headers** (a trailers-only response, which is how tonic's
//!   interceptors and most servers refuse a call): the key is reloaded and the call sent once
//!   more with the new key, as for a 401.
//! - **A rejection in a streamed response's trailers** (the server began the response, then
//!   ended it with `UNAUTHENTICATED`): the response had already gone back to the caller, who
//!   sees the status; it is not replayed. The key is reloaded all the same, so the next call
//!   carries the new key.
//!
//! Requests from a generated client are in origin form (`/pkg.Service/Method`, no scheme or
//! host): the bearer layer needs [`origin`](BearerAuthLayer::origin) to judge them by the host
//! scope and the cleartext rule. Without it they are refused; with `http://` only a loopback
//! origin gets the key.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
//! use tower::{service_fn, ServiceBuilder};
//! use tower_bearer::grpc::GrpcAuthLayer;
//! use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Stands in for `tonic::transport::Channel::from_static("https://grpc.example.com").connect().await?`:
//! // answers every call with a trailers-only response, the way a server refuses a key.
//! let channel = service_fn(|req: Request<tonic::body::Body>| async move {
//!     assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
//!     assert!(req.headers()["authorization"].is_sensitive());
//!     let refused = Response::builder()
//!         .header("content-type", "application/grpc")
//!         .header("grpc-status", "16")
//!         .body(Full::new(Bytes::new()))?;
//!     Ok::<_, http::Error>(refused)
//! });
//!
//! let key = ApiKey::new("sk-grpc-example-0000000000")?;
//! let layer = BearerAuthLayer::new(StaticKey::new(key)).origin("https://grpc.example.com");
//! let channel = ServiceBuilder::new()
//!     .layer(GrpcAuthLayer::new(layer))
//!     .service(channel);
//!
//! let mut client = HealthClient::new(channel);
//! let status = client.check(HealthCheckRequest::default()).await.unwrap_err();
//! assert_eq!(status.code(), tonic::Code::Unauthenticated);
//! # Ok(()) }
//! ```
//!
//! `examples/grpc_client.rs` runs a tonic client through the layer to a tonic server over h2c
//! on loopback, with the key rotated in a file.

mod buffer;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body as TonicBody;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

pub use watch::{ResponseBody, Watch, WatchFuture};

use crate::auth::adapter::Adapter;
use crate::{BearerAuth, BearerAuthLayer, KeyHandle, Rejection, ReplayableBody};

/// A [`BearerAuthLayer`] for tonic clients: see the [module docs](self).
///
/// Built from the layer, it shares its key cache, options, hooks and handles, and adds
/// [`Rejection::GrpcUnauthenticated`] to the rejections the layer was given (the others, such
/// as `GrpcPermissionDenied` for servers that answer a revoked key that way, stay as set).
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct GrpcAuthLayer {
    bearer: BearerAuthLayer,
    adapter: Arc<Adapter>,
    cap: usize,
}

impl GrpcAuthLayer {
    /// The bearer layer `layer`, for tonic clients.
    pub fn new(layer: BearerAuthLayer) -> Self {
        let bearer = layer.also_rejected_when(Rejection::GrpcUnauthenticated);
        GrpcAuthLayer {
            adapter: Arc::new(Adapter::new(&bearer)),
            bearer,
            cap: crate::DEFAULT_REPLAY_CAP,
        }
    }

    /// How many bytes of a request body are kept for a replay (default
    /// [`DEFAULT_REPLAY_CAP`](crate::DEFAULT_REPLAY_CAP), 64 KiB). A call whose request is
    /// bigger is sent, but not replayed.
    pub fn replay_cap(mut self, bytes: usize) -> Self {
        self.cap = bytes;
        self
    }

    /// A handle on the key cache, the same as the bearer layer's.
    pub fn handle(&self) -> KeyHandle {
        self.adapter.handle()
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner: self.bearer.layer(Watch::new(inner, self.adapter.clone())),
            cap: self.cap,
        }
    }
}

impl fmt::Debug for GrpcAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuthLayer")
            .field("bearer", &self.bearer)
            .field("replay_cap", &self.cap)
            .finish()
    }
}

/// The service made by [`GrpcAuthLayer`]: a [`BearerAuth`] for tonic requests.
///
/// Errors are [`tower::BoxError`], as [`BearerAuth`]'s: tonic turns them into a `Status` of
/// code `Unknown` whose [`source`](std::error::Error::source) is the original (a
/// [`ScopeError`](crate::ScopeError), a [`KeyError`](crate::KeyError), or the channel's own).
#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: BearerAuth<Watch<S>>,
    cap: usize,
}

impl<S> GrpcAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut().get_mut()
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner()
    }
}

impl<S: fmt::Debug> fmt::Debug for GrpcAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuth")
            .field("inner", &self.inner)
            .field("replay_cap", &self.cap)
            .finish()
    }
}

impl<S, ResBody> Service<Request<TonicBody>> for GrpcAuth<S>
where
    S: Service<Request<TonicBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = crate::ResponseFuture<Watch<S>, ReplayableBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<TonicBody>) -> Self::Future {
        let cap = self.cap;
        self.inner
            .call(req.map(|body| buffer::take_ready(body, cap)))
    }
}

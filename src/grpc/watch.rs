//! Below the bearer layer: the body goes back to tonic's type, and a streamed response's
//! trailers are watched for a rejection of the key that was sent.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::body::Body as TonicBody;
use tower_service::Service;

use crate::auth::adapter::Adapter;
use crate::ReplayableBody;

/// The service [`GrpcAuth`](super::GrpcAuth) puts between the bearer layer and yours: it hands
/// the request on with a [`tonic::body::Body`], and wraps the response body in a
/// [`ResponseBody`] that watches the trailers. Made by [`GrpcAuthLayer`](super::GrpcAuthLayer);
/// it appears in [`GrpcAuth`](super::GrpcAuth)'s future type.
#[derive(Clone)]
pub struct Watch<S> {
    inner: S,
    adapter: Arc<Adapter>,
}

impl<S> Watch<S> {
    pub(super) fn new(inner: S, adapter: Arc<Adapter>) -> Self {
        Watch { inner, adapter }
    }

    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(super) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(super) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Watch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").field("inner", &self.inner).finish()
    }
}

impl<S, B> Service<Request<ReplayableBody>> for Watch<S>
where
    S: Service<Request<TonicBody>, Response = Response<B>>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = WatchFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReplayableBody>) -> Self::Future {
        let watch = req
            .headers()
            .get(AUTHORIZATION)
            .map(|sent| (sent.clone(), self.adapter.clone()));
        WatchFuture {
            inner: self.inner.call(req.map(TonicBody::new)),
            watch,
        }
    }
}

pin_project! {
    /// Response future of [`Watch`]: the inner future, its body wrapped in a [`ResponseBody`].
    pub struct WatchFuture<F> {
        #[pin]
        inner: F,
        watch: Option<(HeaderValue, Arc<Adapter>)>,
    }
}

impl<F> fmt::Debug for WatchFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for WatchFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let watch = this.watch.take();
        Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, watch })))
    }
}

pin_project! {
    /// Response body of [`GrpcAuth`](super::GrpcAuth): the inner body, unchanged, with its
    /// trailers read on the way. A gRPC status there that rejects the key this request carried
    /// (see [`GrpcAuthLayer`](super::GrpcAuthLayer)) reloads the key for the next call.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        watch: Option<(HeaderValue, Arc<Adapter>)>,
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let (Some(trailers), Some((sent, adapter))) = (frame.trailers_ref(), &*this.watch) {
                adapter.trailers(sent, trailers);
                *this.watch = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

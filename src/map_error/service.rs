//! [`ErrorMapping`].

use std::task::{Context, Poll};

use http::Response;
use tower::BoxError;
use tower_service::Service;

use super::config::Config;
use super::future::ResponseFuture;

/// The service made by [`ErrorMappingLayer`](crate::ErrorMappingLayer): responses of 400 and
/// above become [`ApiError`](crate::ApiError)s; everything else passes through untouched.
///
/// Its error is a [`tower::BoxError`]: an [`ApiError`](crate::ApiError) for a mapped status, or
/// the inner service's own error, unchanged (downcast it to its own type).
#[derive(Clone, Debug)]
pub struct ErrorMapping<S> {
    inner: S,
    config: Config,
}

impl<S> ErrorMapping<S> {
    /// Wraps `inner` with the defaults of [`ErrorMappingLayer::new`](crate::ErrorMappingLayer::new).
    pub fn new(inner: S) -> Self {
        ErrorMapping::with_config(inner, Config::default())
    }

    pub(crate) fn with_config(inner: S, config: Config) -> Self {
        ErrorMapping { inner, config }
    }

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

impl<S, Req, ResBody> Service<Req> for ErrorMapping<S>
where
    S: Service<Req, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: http_body::Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.config)
    }
}

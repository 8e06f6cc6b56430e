//! Shared test plumbing: a real hyper 1 server on 127.0.0.1 (the examples' own, so tests and
//! examples run the same server code) and a hyper-util client.
#![allow(dead_code, unused_imports)]

#[path = "../../examples/support/mod.rs"]
mod examples_support;
pub mod logs;

pub use examples_support::{serve, stand_in};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// A plain-http hyper-util client for request bodies of type `B`.
pub fn client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response with `status` and `body`.
pub fn respond(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .unwrap()
}

/// The bearer token of a request, if it has one.
pub fn bearer<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

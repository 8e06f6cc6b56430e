//! The stacks the benches compare, their inner services, requests and key file: what the
//! `kube_compare` crate shares too (it includes this file), so only tower, tower-http, tokio
//! and tower-bearer here.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Service};
use tower_bearer::{ApiKey, BearerAuthLayer, KeyFuture, KeySource, StaticKey};

/// Builds a fresh request.
pub type Make = fn() -> Request<Full<Bytes>>;

pub const KEY: &str = "sk-bench-0123456789abcdef0123456789";
pub const URL: &str = "https://api.azerion.ai/v1/models";

/// A GET with an empty body and no headers of its own.
#[inline(never)]
pub fn request() -> Request<Full<Bytes>> {
    Request::get(URL).body(Full::new(Bytes::new())).unwrap()
}

/// A GET over plain http to a loopback address: the layer checks the host is loopback.
#[inline(never)]
pub fn request_loopback() -> Request<Full<Bytes>> {
    Request::get("http://127.0.0.1:8080/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST carrying two headers of its own (one standard, one custom).
#[inline(never)]
pub fn request_with_headers() -> Request<Full<Bytes>> {
    Request::post(URL)
        .header("content-type", "application/json")
        .header("x-request-id", "4f1c2a")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST whose body shares `body` (a reference count, as a client holding the bytes does).
pub fn request_with_body(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post(URL).body(Full::new(body.clone())).unwrap()
}

/// The inner service of every stack: answers 200 at once, like a client with the answer ready.
pub async fn ok<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    std::hint::black_box(&req);
    Ok(Response::new(Full::new(Bytes::new())))
}

pub fn bare() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send {
    service_fn(ok::<Full<Bytes>>)
}

pub fn tower_http() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send {
    tower_http_over(service_fn(ok::<Full<Bytes>>))
}

/// A source whose key can change, as an environment variable, a file or Vault can: what users
/// run. (A [`StaticKey`] lets the layer skip the 401 machinery; see [`tower_bearer_static`].)
pub struct RotatingSource(ApiKey);

impl KeySource for RotatingSource {
    fn load(&self) -> KeyFuture<'_> {
        let key = self.0.clone();
        Box::pin(async move { Ok(key) })
    }
}

pub fn layer(retry: bool) -> BearerAuthLayer {
    BearerAuthLayer::new(RotatingSource(ApiKey::new(KEY).unwrap())).retry_on_unauthorized(retry)
}

/// `BearerAuth` over a [`StaticKey`], with the key already cached: no reload, no replay copy.
pub fn tower_bearer_static() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = tower::BoxError,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, tower::BoxError>> + Send,
> + Clone
       + Send {
    let layer = BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()));
    tower_bearer_over(&layer, service_fn(ok::<Full<Bytes>>))
}

/// `BearerAuth` over a rotating source, with the key already cached.
pub fn tower_bearer(
    retry: bool,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = tower::BoxError,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, tower::BoxError>> + Send,
> + Clone
       + Send {
    tower_bearer_over(&layer(retry), service_fn(ok::<Full<Bytes>>))
}

/// The inner service of the `tiny` stacks: answers 200 like [`ok`], but its future holds
/// nothing (1 byte: the request is dropped in `call`), as a client's whose work is elsewhere.
/// Over it, a layer's own future is all that moves at each `.await`.
pub fn tiny() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send {
    service_fn(|req: Request<Full<Bytes>>| {
        drop(std::hint::black_box(req));
        async { Ok(Response::new(Full::new(Bytes::new()))) }
    })
}

/// tower-http's static header over `inner`.
pub fn tower_http_over<S>(inner: S) -> tower_http::auth::AddAuthorization<S> {
    tower::Layer::layer(&tower_http::auth::AddAuthorizationLayer::bearer(KEY), inner)
}

/// `layer` over `inner`, with the key already cached.
pub fn tower_bearer_over<S>(layer: &BearerAuthLayer, inner: S) -> tower_bearer::BearerAuth<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>> + Clone,
    S::Error: Into<tower::BoxError>,
{
    let mut svc = tower::Layer::layer(layer, inner);
    warm(&mut svc);
    svc
}

/// A key file in the temporary directory, removed on drop.
pub struct KeyFile(pub std::path::PathBuf);

impl KeyFile {
    /// A file holding the key and a newline, as a hand-written secret file does.
    pub fn new() -> KeyFile {
        KeyFile::with_contents(&format!("{KEY}\n"))
    }

    /// A key file holding exactly `contents`.
    pub fn with_contents(contents: &str) -> KeyFile {
        let path = std::env::temp_dir().join(format!(
            "tower-bearer-bench-key-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        KeyFile(path)
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `BearerAuth` over a [`FileKeySource`] (a rotating source with a 60 s refresh hint, replay
/// on: the defaults), with the key already cached.
pub fn tower_bearer_file(
    file: &KeyFile,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = tower::BoxError,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, tower::BoxError>> + Send,
> + Clone
       + Send {
    let layer = BearerAuthLayer::new(tower_bearer::FileKeySource::new(&file.0));
    tower_bearer_over(&layer, service_fn(ok::<Full<Bytes>>))
}

/// Sends two requests: the first loads the key, the second fills the service's own copy of it.
pub fn warm<S, E>(svc: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    warm_with(svc, request);
}

/// [`warm`] with requests from `make`, of any body type.
pub fn warm_with<S, B>(svc: &mut S, make: fn() -> Request<B>)
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    runtime().block_on(async {
        for _ in 0..2 {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            svc.call(make()).await.unwrap();
        }
    });
}

/// One request through `svc` without a runtime: `poll_ready`, `call`, one poll of a future
/// that is ready at once. The cheapest driver, for instruction and allocation counts.
#[inline(always)]
pub fn send_now<S, E>(svc: &mut S, req: Request<Full<Bytes>>) -> Response<Full<Bytes>>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("service not ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("inner service not ready at once"),
    }
}

/// `poll_ready` (each stack here is ready at once) and `call`: the future, for a runtime to
/// drive. What criterion's async benches time.
#[inline(always)]
pub fn call_now<S, E>(svc: &mut S, req: Request<Full<Bytes>>) -> S::Future
where
    S: Service<Request<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("service not ready"),
    }
    svc.call(req)
}

/// A current-thread runtime with time and I/O, as the benches' `to_async` uses.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

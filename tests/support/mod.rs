//! Shared test plumbing: a real hyper 1 server on 127.0.0.1 (the examples' own, so tests and
//! examples run the same server code) and a hyper-util client.
#![allow(dead_code, unused_imports)]

#[path = "../../examples/support/mod.rs"]
mod examples_support;
pub mod logs;
pub mod sources;

pub use examples_support::{gateway, health, serve, stand_in};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The process environment is one for all the tests of a binary, which run on threads of one
/// process: a test that sets or unsets a variable, or reads one through a source, holds this
/// lock meanwhile. Async, as such tests hold it across awaits; a test that fails while holding
/// it does not poison it.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the lock on the process environment (see [`ENV`]).
pub async fn env_lock() -> tokio::sync::MutexGuard<'static, ()> {
    ENV.lock().await
}

/// Moves tokio's paused clock by `by` and lets the tasks it woke (the refresh timer) run.
pub async fn advance(by: std::time::Duration) {
    tokio::time::advance(by).await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

/// Sends with `send` on a runtime with the real clock, one request every `every`, until one
/// carries `want`; panics if none did within `within`. For what only the passing of real time
/// can show: the alarm thread that marks keys due follows no runtime's clock, paused or not.
/// Returns how many requests went out with another key, and how long it took.
pub fn real_time_until(
    want: &str,
    every: std::time::Duration,
    within: std::time::Duration,
    mut send: impl AsyncFnMut() -> String,
) -> (usize, std::time::Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    runtime.block_on(async {
        let mut other = 0;
        while send().await != want {
            other += 1;
            assert!(
                start.elapsed() < within,
                "{other} requests over {within:?} and still not {want}"
            );
            tokio::time::sleep(every).await;
        }
        (other, start.elapsed())
    })
}

/// A current-thread runtime with time and I/O on, its clock paused: for tests that need a
/// runtime of their own (one that goes away, or is kept idle).
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// An error of the inner service, told apart from the layer's own by its type.
#[derive(Debug)]
pub struct InnerFailure;

impl std::fmt::Display for InnerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the inner service failed")
    }
}

impl std::error::Error for InnerFailure {}

/// The plain-http client of [`client`] for `Full<Bytes>` bodies.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

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

/// Answers every connection on 127.0.0.1 with `raw` bytes, written as they are after the
/// request head was read, for responses hyper would not send (a body cut short, a body that
/// never ends). With `hold_open`, the connection stays open after `raw` until the runtime ends;
/// without it, it is closed.
pub async fn serve_raw(raw: &'static [u8], hold_open: bool) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if stream.write_all(raw).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
                if hold_open {
                    std::future::pending::<()>().await;
                }
            });
        }
    });
    addr
}

/// An address of 127.0.0.1 where nothing listens: connecting to it is refused.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A response body fed through a channel: each `Ok` is a data frame, an `Err` fails the body,
/// and dropping the sender ends it. Keep the sender to make a body that never ends.
#[derive(Debug)]
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>);

/// The error type of [`ChannelBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`ChannelBody`] and its sender (which buffers up to 16 items).
pub fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>,
    ChannelBody,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    (tx, ChannelBody(rx))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(http_body::Frame::data)))
    }
}

/// A rotation hook that records every event, and the list it records into.
pub fn recorder() -> (
    std::sync::Arc<std::sync::Mutex<Vec<tower_bearer::RotationEvent>>>,
    impl Fn(&tower_bearer::RotationEvent) + Send + Sync,
) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e: &tower_bearer::RotationEvent| {
        sink.lock().unwrap().push(e.clone())
    })
}

/// Bytes in one chunk of [`serve_huge_error`]'s body.
pub const CHUNK_LEN: usize = 64 * 1024;
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

/// A server on 127.0.0.1 whose first response is a 500 with a body of `chunks` chunks of
/// 64 KiB (with a `content-length` when `with_length`), made one by one as hyper polls for
/// them. Returns the address, the count of chunks made, and a receiver told when the body is
/// dropped (the connection was closed under it, or it was sent in full).
pub async fn serve_huge_error(
    chunks: usize,
    with_length: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let produced = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
    let counter = produced.clone();
    let addr = serve(move |_| {
        let dropped = slot.lock().unwrap().take();
        let produced = counter.clone();
        async move {
            let mut response = Response::builder().status(500);
            if with_length {
                response = response.header("content-length", (chunks * CHUNK_LEN).to_string());
            }
            response
                .body(CountedBody {
                    left: chunks,
                    produced,
                    dropped,
                })
                .unwrap()
        }
    })
    .await;
    (addr, produced, rx)
}

/// The body of [`serve_huge_error`].
struct CountedBody {
    left: usize,
    produced: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    dropped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        self.produced
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some(tx) = self.dropped.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `fut` once, without a runtime (no allocation for a waker): it must be ready.
pub fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("expected a ready future"),
    }
}

/// Makes `svc` ready (it must be at once) and calls it.
pub fn call_now<S: tower::Service<R>, R>(svc: &mut S, req: R) -> S::Future
where
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(ready) => ready.unwrap(),
        Poll::Pending => panic!("service not ready"),
    }
    svc.call(req)
}

/// A server on loopback that records the `Authorization` of every request it gets.
pub async fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let addr = serve(move |req| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(bearer(&req));
            Response::new(Empty::<Bytes>::new())
        }
    })
    .await;
    (addr, seen)
}

/// The resolver of [`plain_client`].
pub type Resolve = tower::util::ServiceFn<
    fn(Name) -> std::future::Ready<Result<std::vec::IntoIter<SocketAddr>, Infallible>>,
>;

/// A hyper-util client for which every name resolves to 127.0.0.1 and any scheme goes over
/// plain TCP (`enforce_http(false)`): what reaches a "remote" host in clear shows on loopback.
pub fn plain_client() -> Client<HttpConnector<Resolve>, Empty<Bytes>> {
    let resolve: fn(Name) -> _ =
        |_| std::future::ready(Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter()));
    let mut http = HttpConnector::new_with_resolver(tower::service_fn(resolve));
    http.enforce_http(false);
    Client::builder(TokioExecutor::new()).build(http)
}

/// A request extension whose `Clone` panics while its flag is set: user code that fails in
/// the middle of the layer's copy of a request.
#[derive(Debug)]
pub struct Grenade(pub Arc<std::sync::atomic::AtomicBool>);

impl Clone for Grenade {
    fn clone(&self) -> Self {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("an extension's Clone panics");
        }
        Grenade(self.0.clone())
    }
}

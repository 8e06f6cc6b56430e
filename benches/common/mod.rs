//! What the benches share: the key, the inner service, the requests and the stacks compared
//! (`stacks.rs`), the interleaved harnesses' reports (`report.rs`), criterion's settings,
//! bodies and a loopback server and client.
#![allow(dead_code)]

mod report;
mod stacks;

#[allow(unused_imports)] // only the interleaved harness reports
pub use report::*;
pub use stacks::*;

use std::convert::Infallible;
use std::future::Future;
use std::task::Poll;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::Service;

/// Criterion settings that keep a whole bench binary to seconds, not minutes.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(40)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .configure_from_args()
}

/// Body sizes of the body-size comparison.
pub const BODY_SIZES: [usize; 4] = [0, 1024, 64 * 1024, 1024 * 1024];

/// A body of `size` bytes, already in the shared form a client's cloned `Bytes` has.
pub fn body_of(size: usize) -> Bytes {
    let body = Bytes::from(vec![b'x'; size]);
    drop(body.clone());
    body
}

/// A hyper HTTP/1.1 server on 127.0.0.1 answering `200 ok` to everything, on the current
/// runtime.
pub async fn loopback_server() -> std::net::SocketAddr {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A hyper-util client for `Full<Bytes>` bodies.
pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

/// Polls every future to completion, all at once (no spawning, no allocation per poll).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// Wall time for `threads` threads, each sending `iters` requests through its own clone.
pub fn run_threads<S, E>(svc: &S, threads: usize, iters: u64) -> std::time::Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E> + Clone + Send,
    E: std::fmt::Debug,
{
    let clones: Vec<S> = (0..threads).map(|_| svc.clone()).collect();
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = clones
            .into_iter()
            .map(|mut clone| {
                let barrier = &barrier;
                scope.spawn(move || {
                    // A long-lived clone's steady state, reached on the thread that uses it:
                    // past its first requests, which share the parent's state, and with its
                    // own copy of the key.
                    for _ in 0..16 {
                        drop(send_now(&mut clone, request()));
                    }
                    barrier.wait();
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        drop(std::hint::black_box(send_now(&mut clone, request())));
                    }
                    (start, std::time::Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let spans: Vec<(std::time::Instant, std::time::Instant)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let start = spans.iter().map(|s| s.0).min().unwrap();
        let end = spans.iter().map(|s| s.1).max().unwrap();
        end - start
    })
}

//! The slow paths, per request that takes them (`cargo bench --bench reload`):
//!
//! - `cached`: the hot path, for scale;
//! - `unauthorized_round`: the server rejects the key with 401, the layer reloads it (single
//!   flight), replays the request with the new key and the server accepts it: two inner calls,
//!   one load, one rotation, one replay copy turned back into a request;
//! - `refresh_hint`: the key's refresh hint has passed (its timer fired), so the request
//!   reloads it from the source before it is sent, and arms the next timer.
//!
//! The key source makes a new key on each load; the inner service accepts each key once.
//! The bench checks that every timed request took its path (loads per request).

mod common;

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, ServiceBuilder};
use tower_bearer::{ApiKey, BearerAuthLayer, KeyFuture, KeySource};

use common::*;

/// A new key on every load, optionally with a refresh hint.
struct Rotating {
    loads: Arc<AtomicU64>,
    ttl: Option<Duration>,
}

impl KeySource for Rotating {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.loads.fetch_add(1, Ordering::Relaxed) + 1;
        let ttl = self.ttl;
        Box::pin(async move {
            let key = ApiKey::new(format!("sk-bench-rotating-{n:012}"))?;
            Ok(match ttl {
                Some(ttl) => key.refresh_after(ttl),
                None => key,
            })
        })
    }
}

/// The key number a request carries.
fn key_number<B>(req: &Request<B>) -> u64 {
    let value = req.headers()["authorization"].to_str().unwrap();
    value[value.len() - 12..].parse().unwrap()
}

fn unauthorized_round(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("reload");

    let mut cached = tower_bearer(true);
    group.bench_function("cached", |b| {
        b.to_async(&rt).iter(|| {
            let fut = call_now(&mut cached, request());
            async move { fut.await.unwrap() }
        })
    });

    // Accepts each key once: the first request with a key is its replay after a reload.
    let loads = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let last_accepted = Arc::new(AtomicU64::new(0));
    let inner = {
        let (calls, last_accepted) = (calls.clone(), last_accepted.clone());
        service_fn(move |req: Request<Full<Bytes>>| {
            calls.fetch_add(1, Ordering::Relaxed);
            let n = key_number(&req);
            let status = if last_accepted.fetch_max(n, Ordering::Relaxed) < n {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = status;
            std::future::ready(Ok::<_, Infallible>(res))
        })
    };
    let layer = BearerAuthLayer::new(Rotating {
        loads: loads.clone(),
        ttl: None,
    });
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    warm(&mut svc);
    let (loads0, calls0) = (loads.load(Ordering::Relaxed), calls.load(Ordering::Relaxed));
    let mut requests = 0u64;
    group.bench_function("unauthorized_round", |b| {
        b.to_async(&rt).iter(|| {
            requests += 1;
            // Every request is rejected once: the key it carries was accepted before.
            let fut = call_now(&mut svc, request());
            async move {
                let res = fut.await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                res
            }
        })
    });
    println!(
        "unauthorized_round: {:.2} loads and {:.2} inner calls per request",
        (loads.load(Ordering::Relaxed) - loads0) as f64 / requests as f64,
        (calls.load(Ordering::Relaxed) - calls0) as f64 / requests as f64,
    );
    group.finish();
}

fn refresh_hint(c: &mut Criterion) {
    // Paused time: each iteration moves the clock past the key's refresh hint (its timer fires
    // outside the timed part), then times the request that reloads the key.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    const TTL: Duration = Duration::from_secs(60);
    let loads = Arc::new(AtomicU64::new(0));
    let layer = BearerAuthLayer::new(Rotating {
        loads: loads.clone(),
        ttl: Some(TTL),
    });
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(ok::<Full<Bytes>>));
    rt.block_on(async {
        call_now(&mut svc, request()).await.unwrap();
    });
    let svc = RefCell::new(svc);
    let svc = &svc;
    let loads0 = loads.load(Ordering::Relaxed);
    let mut requests = 0u64;
    let mut group = c.benchmark_group("reload");
    group.bench_function("refresh_hint", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            requests += iters;
            async move {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    tokio::time::advance(TTL).await;
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                    let start = Instant::now();
                    let fut = call_now(&mut *svc.borrow_mut(), request());
                    std::hint::black_box(fut.await.unwrap());
                    timed += start.elapsed();
                }
                timed
            }
        })
    });
    println!(
        "refresh_hint: {:.2} loads per request",
        (loads.load(Ordering::Relaxed) - loads0) as f64 / requests as f64
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = unauthorized_round, refresh_hint
}
criterion_main!(benches);

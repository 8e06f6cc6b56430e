//! End to end: a hyper-util client sending to a hyper server on 127.0.0.1, both on one
//! current-thread runtime, with and without the layer. `cargo bench --bench e2e` (seconds).
//!
//! - `e2e/sequential`: one request at a time (latency);
//! - `e2e/concurrent_32`: 32 requests in flight at once over the client's pool (throughput).
//!
//! Target: throughput with the layer at least 0.99x without. The layer's cost (tens of
//! nanoseconds) is small beside a loopback round trip (tens of microseconds).

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::Request;
use http_body_util::{BodyExt, Full};
use tower::ServiceBuilder;

use common::*;

const CONCURRENCY: usize = 32;

fn e2e(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(loopback_server());
    let url = format!("http://{addr}/v1/models");
    let make = || {
        Request::get(url.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let mut plain = client();
    let mut layered = ServiceBuilder::new().layer(layer(true)).service(client());
    // Open the connections and cache the key before timing.
    rt.block_on(async {
        for _ in 0..2 {
            let futs: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    let a = call_now(&mut plain, make());
                    let b = call_now(&mut layered, make());
                    async move {
                        a.await.unwrap().into_body().collect().await.unwrap();
                        b.await.unwrap().into_body().collect().await.unwrap();
                    }
                })
                .collect();
            join_all(futs).await;
        }
    });

    let mut group = c.benchmark_group("e2e");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("sequential", "without_layer"), |b| {
        b.to_async(&rt).iter(|| {
            let fut = call_now(&mut plain, make());
            async move { fut.await.unwrap().into_body().collect().await.unwrap() }
        })
    });
    group.bench_function(BenchmarkId::new("sequential", "with_layer"), |b| {
        b.to_async(&rt).iter(|| {
            let fut = call_now(&mut layered, make());
            async move { fut.await.unwrap().into_body().collect().await.unwrap() }
        })
    });

    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function(BenchmarkId::new("concurrent_32", "without_layer"), |b| {
        b.to_async(&rt).iter(|| {
            let futs: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    let fut = call_now(&mut plain, make());
                    async move { fut.await.unwrap().into_body().collect().await.unwrap() }
                })
                .collect();
            join_all(futs)
        })
    });
    group.bench_function(BenchmarkId::new("concurrent_32", "with_layer"), |b| {
        b.to_async(&rt).iter(|| {
            let futs: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    let fut = call_now(&mut layered, make());
                    async move { fut.await.unwrap().into_body().collect().await.unwrap() }
                })
                .collect();
            join_all(futs)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = e2e
}
criterion_main!(benches);

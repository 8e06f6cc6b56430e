//! Per-request cost of the layer with a cached key, against a bare service and tower-http's
//! static `AddAuthorizationLayer`, on the same inner service (answers 200 at once). Requests
//! are built fresh in each iteration, as a client does; the futures run on a current-thread
//! runtime. `cargo bench --bench hot_path`.
//!
//! - `per_request`: bare, tower-http, tower-bearer (retry on, the default, and off), for a
//!   request with no headers of its own and one with two;
//! - `body_size`: tower-http and tower-bearer (retry on) with `Full<Bytes>` bodies of 0 B to
//!   1 MiB: the replay copy takes the body by reference count, so the overhead is flat.
//!
//! The ratios in BENCHMARKS.md come from `benches/interleaved.rs`, which alternates the stacks
//! within each round; criterion runs one stack after the other.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use common::*;

fn per_request(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("per_request");
    for (label, make) in [
        ("plain", request as Make),
        ("2_headers", request_with_headers),
    ] {
        let mut svc = bare();
        group.bench_function(BenchmarkId::new("bare", label), |b| {
            b.to_async(&rt).iter(|| {
                let fut = call_now(&mut svc, make());
                async move { fut.await.unwrap() }
            })
        });
        let mut svc = tower_http();
        group.bench_function(BenchmarkId::new("tower_http", label), |b| {
            b.to_async(&rt).iter(|| {
                let fut = call_now(&mut svc, make());
                async move { fut.await.unwrap() }
            })
        });
        for retry in [true, false] {
            let mut svc = tower_bearer(retry);
            let name = if retry {
                "tower_bearer"
            } else {
                "tower_bearer_retry_off"
            };
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.to_async(&rt).iter(|| {
                    let fut = call_now(&mut svc, make());
                    async move { fut.await.unwrap() }
                })
            });
        }
    }
    group.finish();
}

fn body_size(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("body_size");
    for size in BODY_SIZES {
        let body = body_of(size);
        let mut svc = tower_http();
        group.bench_function(BenchmarkId::new("tower_http", size), |b| {
            b.to_async(&rt).iter(|| {
                let fut = call_now(&mut svc, request_with_body(&body));
                async move { fut.await.unwrap() }
            })
        });
        let mut svc = tower_bearer(true);
        group.bench_function(BenchmarkId::new("tower_bearer", size), |b| {
            b.to_async(&rt).iter(|| {
                let fut = call_now(&mut svc, request_with_body(&body));
                async move { fut.await.unwrap() }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = per_request, body_size
}
criterion_main!(benches);

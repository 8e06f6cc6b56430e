//! Per-request cost of the layer with a cached key, against a bare service and tower-http's
//! static `AddAuthorizationLayer`. Requests are built fresh in each iteration, as a client does.

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};

const KEY: &str = "sk-bench-0123456789abcdef0123456789";

fn request() -> Request<Full<Bytes>> {
    Request::get("https://api.azerion.ai/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn ok(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    std::hint::black_box(&req);
    Ok(Response::new(Full::new(Bytes::new())))
}

fn hot_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("per_request");

    let mut bare = service_fn(ok);
    group.bench_function("bare", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let fut = bare.call(req);
                async move { fut.await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });

    let mut static_auth = ServiceBuilder::new()
        .layer(tower_http::auth::AddAuthorizationLayer::bearer(KEY))
        .service(service_fn(ok));
    group.bench_function("tower_http_static", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let fut = static_auth.call(req);
                async move { fut.await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });

    for retry in [true, false] {
        let layer = BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()))
            .retry_on_unauthorized(retry);
        let mut bearer = ServiceBuilder::new().layer(layer).service(service_fn(ok));
        rt.block_on(async { bearer.ready().await.unwrap().call(request()).await.unwrap() });
        group.bench_function(format!("tower_bearer_retry_{retry}"), |b| {
            b.to_async(&rt).iter_batched(
                request,
                |req| {
                    let fut = bearer.call(req);
                    async move { fut.await.unwrap() }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);

//! TransientRetryPolicy / TransientRetryLayer: counts, delays, Retry-After, idempotency, the
//! budget (in-process services under tokio's paused time), and body replay, key rotation and
//! connection errors over real hyper on loopback.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use support::sources::Fresh;
use tokio::time::Instant;
use tower::retry::budget::TpsBudget;
use tower::retry::RetryLayer;
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    ApiError, ApiErrorKind, BearerAuthLayer, ErrorMappingLayer, ReplayableBody,
    TransientRetryLayer, TransientRetryPolicy,
};

// ---- in-process inner services under paused time -------------------------------------------

/// What the inner service saw: when, which method, which body.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Instant, Method, Bytes)>>>);

impl Log {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.0.lock().unwrap();
        calls.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }
    fn bodies(&self) -> Vec<Bytes> {
        self.0.lock().unwrap().iter().map(|c| c.2.clone()).collect()
    }
}

type Script = Arc<dyn Fn(usize) -> Result<Response<Full<Bytes>>, BoxError> + Send + Sync>;

/// An inner service that logs each call and answers call `n` with `script(n)`.
fn scripted(
    log: &Log,
    script: impl Fn(usize) -> Result<Response<Full<Bytes>>, BoxError> + Send + Sync + 'static,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let log = log.clone();
    let script: Script = Arc::new(script);
    service_fn(move |req: Request<Full<Bytes>>| {
        let log = log.clone();
        let script = script.clone();
        async move {
            let method = req.method().clone();
            let body = req.into_body().collect().await?.to_bytes();
            let n = {
                let mut calls = log.0.lock().unwrap();
                calls.push((Instant::now(), method, body));
                calls.len() - 1
            };
            script(n)
        }
    })
}

fn status(code: u16) -> Response<Full<Bytes>> {
    support::respond(
        code,
        format!(r#"{{"error":{{"message":"status {code}"}}}}"#),
    )
}

fn status_with(code: u16, name: &'static str, value: &'static str) -> Response<Full<Bytes>> {
    let mut response = status(code);
    response
        .headers_mut()
        .insert(name, http::HeaderValue::from_static(value));
    response
}

fn get() -> Request<Full<Bytes>> {
    Request::get("https://api.azerion.ai/v1/models")
        .body(Full::default())
        .unwrap()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("https://api.azerion.ai/v1/chat/completions")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn assert_between(gap: Duration, low: Duration, high: Duration) {
    assert!(
        gap >= low && gap <= high,
        "{gap:?} not in {low:?}..={high:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_persistent_503_is_tried_three_times_then_returned() {
    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| Ok(status(503))));
    let response = svc.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 503, "the last attempt's response");
    assert_eq!(log.count(), 3, "1 attempt + 2 retries");
    let gaps = log.gaps();
    assert_between(gaps[0], ms(375), ms(500));
    assert_between(gaps[1], ms(750), ms(1000));
}

#[tokio::test(start_paused = true)]
async fn with_error_mapping_inside_the_last_api_error_is_returned() {
    let log = Log::default();
    let svc = ServiceBuilder::new()
        .layer(TransientRetryLayer::new())
        .layer(ErrorMappingLayer::new())
        .service(scripted(&log, |_| Ok(status(502))));
    let err = svc.oneshot(get()).await.unwrap_err();
    let api = err.downcast_ref::<ApiError>().expect("an ApiError");
    assert_eq!(api.kind(), ApiErrorKind::Server);
    assert_eq!(api.message(), Some("status 502"));
    assert_eq!(log.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_then_success() {
    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |n| Ok(status([503, 429, 200][n]))));
    let response = svc.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(log.count(), 3);
}

/// How many times the inner service is called for a request answered `code` every time, with
/// the error mapping inside the retry (`mapped`) or not.
async fn attempts_for(code: u16, mapped: bool) -> usize {
    let log = Log::default();
    let inner = scripted(&log, move |_| Ok(status(code)));
    let layer = TransientRetryLayer::new();
    let _ = if mapped {
        layer
            .layer(ErrorMappingLayer::new().layer(inner))
            .oneshot(get())
            .await
            .map(drop)
    } else {
        layer.layer(inner).oneshot(get()).await.map(drop)
    };
    log.count()
}

#[tokio::test(start_paused = true)]
async fn which_statuses_are_retried() {
    for (codes, attempts) in [
        (&[408, 409, 429, 500, 502, 503, 504, 599][..], 3),
        (&[200, 204, 304, 400, 401, 403, 404, 413, 422, 501][..], 1),
    ] {
        for &code in codes {
            for mapped in [false, true] {
                assert_eq!(
                    attempts_for(code, mapped).await,
                    attempts,
                    "{code} (mapped: {mapped})"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn other_errors_are_not_retried() {
    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| Err("a bug".into())));
    let err = svc.oneshot(get()).await.unwrap_err();
    assert_eq!(err.to_string(), "a bug");
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_max() {
    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .max_retries(6)
        .layer(scripted(&log, |_| Ok(status(500))));
    let started = Instant::now();
    svc.oneshot(get()).await.unwrap();
    assert_eq!(log.count(), 7);
    let full = [500, 1000, 2000, 4000, 8000, 8000];
    for (gap, full) in log.gaps().into_iter().zip(full) {
        assert_between(gap, ms(full * 3 / 4), ms(full));
    }
    println!("6 retries took {:?} of paused time", started.elapsed());

    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .max_retries(3)
        .base_backoff(ms(100))
        .max_backoff(ms(150))
        .layer(scripted(&log, |_| Ok(status(500))));
    svc.oneshot(get()).await.unwrap();
    let gaps = log.gaps();
    assert_between(gaps[0], ms(75), ms(100));
    assert_between(gaps[1], ms(112), ms(150));
    assert_between(gaps[2], ms(112), ms(150));
}

#[tokio::test(start_paused = true)]
async fn retry_after_wins_exactly() {
    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .layer(scripted(&log, |_| Ok(status_with(429, "retry-after", "3"))));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(log.gaps(), [Duration::from_secs(3); 2]);

    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| {
        Ok(status_with(503, "retry-after-ms", "250"))
    }));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(log.gaps(), [ms(250); 2]);

    // With the error mapping inside, the wait comes from ApiError::retry_after.
    let log = Log::default();
    let svc =
        TransientRetryLayer::new().layer(ErrorMappingLayer::new().layer(scripted(&log, |_| {
            Ok(status_with(429, "retry-after", "1.5"))
        })));
    svc.oneshot(get()).await.unwrap_err();
    assert_eq!(log.gaps(), [ms(1500); 2]);

    // Garbage is ignored: the computed backoff applies.
    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| {
        Ok(status_with(429, "retry-after", "whenever"))
    }));
    svc.oneshot(get()).await.unwrap();
    assert_between(log.gaps()[0], ms(375), ms(500));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_over_the_cap_is_not_retried() {
    // The server will not take the request sooner: no early retry, at once, whatever the cap.
    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| {
        Ok(status_with(503, "retry-after", "600"))
    }));
    let started = Instant::now();
    assert_eq!(svc.oneshot(get()).await.unwrap().status(), 503);
    assert_eq!(
        log.count(),
        1,
        "600 s is over the default 60 s cap: not retried"
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "and not waited for");

    // Over a cap of 5 s by a second: not retried, and the caller can read the wait.
    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .retry_after_cap(Duration::from_secs(5))
        .layer(
            ErrorMappingLayer::new()
                .layer(scripted(&log, |_| Ok(status_with(429, "retry-after", "6")))),
        );
    let err = svc.oneshot(get()).await.unwrap_err();
    let api = err.downcast_ref::<ApiError>().unwrap();
    assert_eq!(api.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(log.count(), 1);

    // At the cap exactly: retried, after the server's wait.
    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .retry_after_cap(Duration::from_secs(5))
        .layer(scripted(&log, |_| Ok(status_with(503, "retry-after", "5"))));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(log.gaps(), [Duration::from_secs(5); 2]);

    // Absent or unparseable is not "too long": the computed backoff applies.
    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .retry_after_cap(Duration::from_secs(5))
        .layer(scripted(&log, |_| {
            Ok(status_with(503, "retry-after", "soon-ish"))
        }));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(log.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn only_idempotent_methods_unless_opted_in() {
    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| Ok(status(503))));
    svc.clone().oneshot(post("{}")).await.unwrap();
    assert_eq!(log.count(), 1, "POST is not retried by default");

    for method in [Method::PUT, Method::DELETE, Method::HEAD, Method::OPTIONS] {
        let log = Log::default();
        let svc = TransientRetryLayer::new().layer(scripted(&log, |_| Ok(status(503))));
        let mut req = get();
        *req.method_mut() = method.clone();
        svc.oneshot(req).await.unwrap();
        assert_eq!(log.count(), 3, "{method}");
    }

    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .retry_non_idempotent(true)
        .layer(scripted(&log, |_| Ok(status(503))));
    svc.oneshot(post("{\"a\":1}")).await.unwrap();
    assert_eq!(log.count(), 3, "opted in");
    assert_eq!(log.bodies(), vec![Bytes::from_static(b"{\"a\":1}"); 3]);

    let log = Log::default();
    let svc = TransientRetryLayer::new().layer(scripted(&log, |_| Ok(status(503))));
    let mut req = post("{\"b\":2}");
    req.headers_mut()
        .insert("idempotency-key", "7f1c-retry-test".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    assert_eq!(log.count(), 3, "Idempotency-Key counts as opting in");
    for call in log.0.lock().unwrap().iter() {
        assert_eq!(call.1, Method::POST);
    }
}

#[tokio::test(start_paused = true)]
async fn bodies_that_cannot_be_replayed_are_sent_once() {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let inner = service_fn(move |_req: Request<UnsyncBoxBody<Bytes, BoxError>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(status(503)) }
    });
    let svc = TransientRetryLayer::new().layer(inner);
    let req = Request::get("https://api.azerion.ai/v1/models")
        .body(
            Full::new(Bytes::from_static(b"x"))
                .map_err(Into::into)
                .boxed_unsync(),
        )
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 503);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn max_retries_zero_turns_retries_off() {
    let log = Log::default();
    let svc = TransientRetryLayer::new()
        .max_retries(0)
        .layer(scripted(&log, |_| Ok(status(503))));
    svc.oneshot(get()).await.unwrap();
    assert_eq!(log.count(), 1);
}

/// Sends `requests` GETs one after the other to a service that always answers 503, with no
/// backoff (so the budget's clock stands still), and counts the calls.
async fn sustained_outage(layer: TransientRetryLayer, requests: usize) -> usize {
    let log = Log::default();
    let mut svc = layer
        .base_backoff(Duration::ZERO)
        .layer(scripted(&log, |_| Ok(status(503))));
    for _ in 0..requests {
        let response = svc.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(response.status(), 503);
    }
    log.count()
}

#[tokio::test(start_paused = true)]
async fn the_budget_limits_retries_under_a_sustained_outage() {
    // Without a budget limit (a huge one), every request is tried 3 times.
    let unlimited = TpsBudget::new(Duration::from_secs(10), 100_000, 1000.0);
    let calls = sustained_outage(TransientRetryLayer::new().budget(unlimited), 100).await;
    assert_eq!(calls, 300);

    // 20 % of requests and no reserve: at most 20 retries for 100 requests.
    let tight = TpsBudget::new(Duration::from_secs(10), 0, 0.2);
    let calls = sustained_outage(TransientRetryLayer::new().budget(tight), 100).await;
    println!("20% budget, no reserve: 100 requests -> {calls} calls");
    assert!((115..=120).contains(&calls), "{calls}");

    // The default: 20 % plus a reserve of one retry a second over the 10 s window.
    let calls = sustained_outage(TransientRetryLayer::new(), 1000).await;
    println!("default budget: 1000 requests -> {calls} calls");
    assert!(calls <= 1000 + 200 + 10 + 1, "{calls}");
    assert!(calls >= 1000 + 190, "{calls}");
}

#[tokio::test(start_paused = true)]
async fn one_budget_is_shared_by_clones_and_by_tower_retry_layer() {
    let log = Log::default();
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.2));
    let policy = TransientRetryPolicy::new()
        .base_backoff(Duration::ZERO)
        .budget(budget.clone());
    // Two services made by one tower RetryLayer: their policies share the budget.
    let layer = RetryLayer::new(policy);
    let inner = scripted(&log, |_| Ok(status(503)));
    let a = layer.layer(inner.clone());
    let b = layer.layer(inner);
    for i in 0..50 {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        svc.oneshot(get()).await.unwrap();
    }
    assert_eq!(log.count(), 60, "50 requests + 20 % of them");
}

// ---- real hyper on loopback ------------------------------------------------------------------

/// A server that answers the first `failures` requests with 503 (after reading their bodies in
/// full) and the rest with 200, and records every body it read.
async fn flaky_server(failures: usize) -> (std::net::SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = support::serve(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut seen = log.lock().unwrap();
                seen.push(body);
                seen.len()
            };
            if n <= failures {
                support::respond(503, r#"{"error":{"message":"overloaded"}}"#)
            } else {
                support::respond(200, "ok")
            }
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test]
async fn a_full_body_is_replayed_through_the_shared_replay_code() {
    let (addr, seen) = flaky_server(1).await;
    let client = ServiceBuilder::new()
        .layer(TransientRetryLayer::new().base_backoff(ms(1)))
        .layer(ErrorMappingLayer::new())
        .service(support::client::<Full<Bytes>>());
    let body = include_str!("fixtures/azerion/chat_completions_request_documented.json");
    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("idempotency-key", "abc-123")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client.oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], body.as_bytes());
    assert_eq!(
        seen[1],
        body.as_bytes(),
        "the server saw the same body twice"
    );
}

#[tokio::test]
async fn a_streaming_replayable_body_is_replayed() {
    let (addr, seen) = flaky_server(2).await;
    let client = ServiceBuilder::new()
        .layer(
            TransientRetryLayer::new()
                .base_backoff(ms(1))
                .retry_non_idempotent(true),
        )
        .layer(ErrorMappingLayer::new())
        .service(support::client::<ReplayableBody>());
    let (tx, stream) = support::channel_body();
    for chunk in [&b"{\"model\":"[..], b"\"m\",", b"\"stream\":true}"] {
        tx.send(Ok(Bytes::from_static(chunk))).await.unwrap();
    }
    drop(tx);
    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(ReplayableBody::new(stream))
        .unwrap();
    let response = client.oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for body in seen.iter() {
        assert_eq!(body, "{\"model\":\"m\",\"stream\":true}");
    }
}

#[tokio::test]
async fn an_empty_replayable_body_is_replayed() {
    // hyper never polls an empty body (its `is_end_stream()` is true): a GET wrapped in a
    // ReplayableBody, as a gateway wraps every incoming body, must still be retried.
    let (addr, seen) = flaky_server(1).await;
    let client = ServiceBuilder::new()
        .layer(TransientRetryLayer::new().base_backoff(ms(1)))
        .layer(ErrorMappingLayer::new())
        .service(support::client::<ReplayableBody>());
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(ReplayableBody::new(Empty::<Bytes>::new()))
        .unwrap();
    let response = client.oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200, "retried after the 503");
    assert_eq!(*seen.lock().unwrap(), [Bytes::new(), Bytes::new()]);
}

#[tokio::test]
async fn a_streaming_body_over_the_replay_cap_is_not_replayed() {
    let (addr, seen) = flaky_server(1).await;
    let client = ServiceBuilder::new()
        .layer(
            TransientRetryLayer::new()
                .base_backoff(ms(1))
                .retry_non_idempotent(true),
        )
        .layer(ErrorMappingLayer::new())
        .service(support::client::<ReplayableBody>());
    let (tx, stream) = support::channel_body();
    tx.send(Ok(Bytes::from(vec![b'z'; 100]))).await.unwrap();
    drop(tx);
    let req = Request::post(format!("http://{addr}/upload"))
        .body(ReplayableBody::with_cap(stream, 10))
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert_eq!(err.downcast_ref::<ApiError>().unwrap().status(), 503);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn error_mapping_outside_the_retry_works_too() {
    let (addr, seen) = flaky_server(usize::MAX).await;
    let client = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .layer(TransientRetryLayer::new().base_backoff(ms(1)))
        .map_err(BoxError::from)
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(Empty::new())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    let api = err.downcast_ref::<ApiError>().unwrap();
    assert_eq!(api.message(), Some("overloaded"));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn retry_after_over_the_wire() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = support::serve(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                let mut response = support::respond(429, "{}");
                response
                    .headers_mut()
                    .insert("retry-after-ms", "120".parse().unwrap());
                response
            } else {
                support::respond(200, "ok")
            }
        }
    })
    .await;
    // A computed backoff would take at least 7.5 s: only the server's 120 ms fits the bound.
    let client = ServiceBuilder::new()
        .layer(TransientRetryLayer::new().base_backoff(Duration::from_secs(10)))
        .layer(ErrorMappingLayer::new())
        .service(support::client::<Empty<Bytes>>());
    let started = std::time::Instant::now();
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 200);
    let took = started.elapsed();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(
        took >= ms(120) && took < Duration::from_secs(5),
        "{took:?}: Retry-After, not the 10 s backoff"
    );
}

/// A server that answers every request with 429 and `retry-after: value`, and counts them.
async fn quota_server(value: String) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = support::serve(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut response = support::respond(429, r#"{"error":{"message":"quota exhausted"}}"#);
        response
            .headers_mut()
            .insert("retry-after", value.parse().unwrap());
        async move { response }
    })
    .await;
    (addr, hits)
}

#[tokio::test]
async fn a_long_retry_after_over_the_wire_is_not_retried_early() {
    let tomorrow =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(86_400));
    for (value, want) in [
        ("3601".to_owned(), Duration::from_secs(3601)),
        (tomorrow, Duration::from_secs(86_400)),
    ] {
        let (addr, hits) = quota_server(value.clone()).await;
        let client = ServiceBuilder::new()
            .layer(TransientRetryLayer::new())
            .layer(ErrorMappingLayer::new())
            .service(support::client::<Empty<Bytes>>());
        let req = Request::get(format!("http://{addr}/v1/models"))
            .body(Empty::new())
            .unwrap();
        let err = client.oneshot(req).await.unwrap_err();
        let api = err.downcast_ref::<ApiError>().expect("an ApiError");
        assert_eq!(api.status(), 429);
        let got = api.retry_after().expect("the server's wait is kept");
        assert!(
            got <= want && got + Duration::from_secs(5) >= want,
            "{value}: {got:?}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "{value}: asked once, not again early"
        );

        // Without the error mapping, the raw 429 goes back the same way.
        let (addr, hits) = quota_server(value.clone()).await;
        let client = TransientRetryLayer::new()
            .layer(support::client::<Empty<Bytes>>().map_err(BoxError::from));
        let req = Request::get(format!("http://{addr}/v1/models"))
            .body(Empty::new())
            .unwrap();
        assert_eq!(client.oneshot(req).await.unwrap().status(), 429);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{value}: raw response");
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_its_error_returned() {
    let addr = support::closed_port().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let client = ServiceBuilder::new()
        .layer(TransientRetryLayer::new().base_backoff(ms(1)))
        .layer(ErrorMappingLayer::new())
        .map_request(move |req| {
            counter.fetch_add(1, Ordering::SeqCst);
            req
        })
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let inner = err
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .expect("the client's own error");
    assert!(inner.is_connect());
}

#[tokio::test]
async fn retry_outside_the_bearer_layer_picks_up_a_rotated_key() {
    // Hands out `sk-rotating-key-1`, `sk-rotating-key-2`, … one per load.
    let bearer = BearerAuthLayer::new(Fresh::new("sk-rotating-key-"));
    let handle = bearer.handle();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = support::serve(move |req: Request<Incoming>| {
        let log = log.clone();
        let handle = handle.clone();
        async move {
            let key = support::bearer(&req).unwrap();
            let first = {
                let mut seen = log.lock().unwrap();
                seen.push(key);
                seen.len() == 1
            };
            if first {
                // The key is rotated while the first attempt is in flight.
                handle.rotate().await.unwrap();
                support::respond(503, "{}")
            } else {
                support::respond(200, "ok")
            }
        }
    })
    .await;
    let client = ServiceBuilder::new()
        .layer(TransientRetryLayer::new().base_backoff(ms(1)))
        .layer(ErrorMappingLayer::new())
        .layer(bearer)
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(Empty::new())
        .unwrap();
    assert_eq!(client.oneshot(req).await.unwrap().status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        ["sk-rotating-key-1", "sk-rotating-key-2"]
    );
}

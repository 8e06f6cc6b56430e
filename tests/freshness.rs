//! Refresh hints, serve-stale with backoff, load timeouts and cancellation, under tokio's paused
//! clock. The inner service is an in-process `service_fn`: paused time and real sockets do not
//! mix (the clock jumps while a socket waits), and what is under test here is the clock.

mod support;

use support::advance;
use support::sources::Steered;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, KeyError, KeyErrorKind, RotationReason};

const KEY_A: &str = "sk-fresh-key-AAAAAAAAAAAAAA";
const KEY_B: &str = "sk-fresh-key-BBBBBBBBBBBBBB";
const TTL: Duration = Duration::from_secs(60);

type EchoFn = fn(Request<Empty<Bytes>>) -> std::future::Ready<Result<Response<String>, Infallible>>;
type Svc = tower_bearer::BearerAuth<tower::util::ServiceFn<EchoFn>>;

/// A service whose response body is the bearer token it got.
fn echo(layer: &BearerAuthLayer) -> Svc {
    let f: EchoFn =
        |req| std::future::ready(Ok(Response::new(support::bearer(&req).unwrap_or_default())));
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(f))
}

async fn token(svc: &mut Svc) -> Result<String, BoxError> {
    let req = Request::get("https://api.azerion.ai/v1/models")
        .body(Empty::new())
        .unwrap();
    Ok(svc.ready().await?.call(req).await?.into_body())
}

#[tokio::test(start_paused = true)]
async fn the_refresh_hint_is_honoured() {
    let source = Steered::new(KEY_A, Some(TTL));
    let (events, hook) = support::recorder();
    let layer = BearerAuthLayer::new(source.clone()).on_rotate(hook);
    let mut svc = echo(&layer);

    assert_eq!(token(&mut svc).await.unwrap(), KEY_A);
    assert_eq!(source.loads(), 1);
    advance(Duration::from_secs(50)).await; // before the last tenth of the TTL
    for _ in 0..10 {
        assert_eq!(token(&mut svc).await.unwrap(), KEY_A);
    }
    assert_eq!(source.loads(), 1, "no reload before the hint");

    source.set(Some(KEY_B));
    advance(Duration::from_secs(11)).await; // past the hint
    assert_eq!(
        token(&mut svc).await.unwrap(),
        KEY_B,
        "the first request after the hint reloads"
    );
    assert_eq!(token(&mut svc).await.unwrap(), KEY_B);
    assert_eq!(source.loads(), 2);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.last().unwrap().reason(), RotationReason::Refresh);
}

#[tokio::test(start_paused = true)]
async fn the_refresh_starts_in_the_last_tenth_of_the_ttl() {
    let source = Steered::new(KEY_A, Some(TTL));
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = echo(&layer);
    token(&mut svc).await.unwrap();
    advance(Duration::from_secs(53)).await;
    token(&mut svc).await.unwrap();
    assert_eq!(source.loads(), 1, "not before 90% of the TTL");
    advance(Duration::from_millis(6_999)).await; // 59.999 s: still inside the hint
    token(&mut svc).await.unwrap();
    assert_eq!(source.loads(), 2, "refreshed ahead of the hint");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_last_good_key_and_backs_off() {
    let source = Steered::new(KEY_A, Some(TTL));
    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = echo(&layer);
    token(&mut svc).await.unwrap();

    source.set(None);
    advance(TTL).await;
    assert_eq!(token(&mut svc).await.unwrap(), KEY_A, "serve stale");
    assert_eq!(source.loads(), 2);
    for _ in 0..20 {
        assert_eq!(token(&mut svc).await.unwrap(), KEY_A);
    }
    assert_eq!(source.loads(), 2, "not a load per request: backing off");
    let text = logs.text();
    assert!(text.contains("key refresh failed"), "{text}");
    assert!(
        text.contains("sk-…AAAA"),
        "the warning names the fingerprint: {text}"
    );
    assert!(text.contains("store is down"), "and the cause: {text}");
    assert!(!text.contains(KEY_A));

    advance(Duration::from_millis(700)).await; // first backoff: 0.5 s ± 20%
    assert_eq!(token(&mut svc).await.unwrap(), KEY_A);
    assert_eq!(source.loads(), 3);
    advance(Duration::from_millis(700)).await; // second backoff is 1 s ± 20%: not yet
    token(&mut svc).await.unwrap();
    assert_eq!(source.loads(), 3, "the backoff grows");

    source.set(Some(KEY_B));
    advance(Duration::from_millis(600)).await;
    assert_eq!(
        token(&mut svc).await.unwrap(),
        KEY_B,
        "recovers when the source is back"
    );
    assert_eq!(source.loads(), 4);
}

#[tokio::test(start_paused = true)]
async fn with_no_key_at_all_the_request_fails_with_the_key_error() {
    let source = Steered::new(KEY_A, Some(TTL));
    source.set(None);
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = echo(&layer);
    let err = token(&mut svc).await.unwrap_err();
    let key_err = err.downcast_ref::<KeyError>().expect("a KeyError");
    assert_eq!(key_err.to_string(), "steered source: store is down");
    assert_eq!(source.loads(), 1);
    source.set(Some(KEY_A));
    // Within the backoff window (0.5 s ± 20%) the failure is shared: no load back to back.
    for _ in 0..20 {
        let err = token(&mut svc).await.unwrap_err();
        assert!(err.downcast_ref::<KeyError>().is_some(), "{err}");
    }
    assert_eq!(source.loads(), 1, "no new load within the backoff window");
    advance(Duration::from_millis(700)).await;
    assert_eq!(
        token(&mut svc).await.unwrap(),
        KEY_A,
        "the first request after the window tries again"
    );
    assert_eq!(source.loads(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_source_failing_fast_before_the_first_key_is_asked_once_per_backoff_window() {
    let source = Steered::new(KEY_A, Some(TTL));
    source.set(None);
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = echo(&layer);
    // 2 s of requests, one every 10 ms: 200 requests, and the backoff doubles from 0.5 s.
    for _ in 0..200 {
        assert!(token(&mut svc).await.is_err());
        advance(Duration::from_millis(10)).await;
    }
    let loads = source.loads();
    // 0.5 s, 1 s (± 20%) windows in 2 s: at most 3 loads, never one per request.
    assert!((2..=3).contains(&loads), "{loads} loads for 200 requests");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_source_times_out_for_every_waiter() {
    let source = Steered::new(KEY_A, Some(TTL));
    source.gate(); // never opened: the loads hang
    let layer = BearerAuthLayer::new(source.clone()).load_timeout(Duration::from_secs(2));
    let svc = echo(&layer);
    let started = tokio::time::Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let req = Request::get("https://api.azerion.ai/")
                .body(Empty::new())
                .unwrap();
            tokio::spawn(svc.clone().oneshot(req))
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        let key_err = err.downcast_ref::<KeyError>().expect("a KeyError");
        assert_eq!(key_err.kind(), KeyErrorKind::Timeout);
    }
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        source.loads(),
        1,
        "the waiters shared the one timed-out load"
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_dropped_mid_load_does_not_cancel_the_load() {
    let source = Steered::new(KEY_A, Some(TTL));
    source.gate(); // never opened: the loads hang
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = echo(&layer);
    let req = Request::get("https://api.azerion.ai/")
        .body(Empty::new())
        .unwrap();
    let fut = svc.ready().await.unwrap().call(req);
    // Poll it into the load, then drop it.
    let dropped = tokio::time::timeout(Duration::from_millis(10), fut).await;
    assert!(dropped.is_err());
    source.ungate(); // the load started stays hung; the next ones give KEY_A
                     // The load goes on without its caller (a caller's timeout must not restart a slow load):
                     // the next request waits for it rather than start another, and shares its outcome.
    let err = token(&mut svc).await.unwrap_err();
    let key_err = err.downcast_ref::<KeyError>().expect("a KeyError");
    assert_eq!(key_err.kind(), KeyErrorKind::Timeout);
    assert_eq!(source.loads(), 1);
    advance(Duration::from_secs(1)).await; // past the backoff
    assert_eq!(token(&mut svc).await.unwrap(), KEY_A);
    assert_eq!(source.loads(), 2);
}

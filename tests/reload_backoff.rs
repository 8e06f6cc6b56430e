//! One load per backoff window when the key is revoked and the store refuses: found by the
//! fleet simulation against a rate-limited OpenBao (`tests/openbao/fleet.rs`), where an
//! instance read the store twice within 6 ms at the end of each window: the retry a failed
//! 401 reload schedules and the next 401's own reload, each unaware of the other's failure.
//!
//! In-process with tokio's paused clock: every request is a 401 (the key is revoked), the
//! source fails every load, requests come every 50 ms.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use support::sources::Steered;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, KeyError, KeyErrorKind};

const OLD: &str = "sk-backoff-old-key-00000001";

/// Sends a request every 50 ms for `span` against an API that refuses every key, and returns
/// the times (from the start) at which the source was asked.
async fn loads_over(
    source: &Arc<Steered>,
    layer: &BearerAuthLayer,
    span: Duration,
) -> Vec<Duration> {
    let api = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, BoxError>(
            Response::builder()
                .status(401)
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
    });
    let client = ServiceBuilder::new().layer(layer.clone()).service(api);
    let start = tokio::time::Instant::now();
    let mut at = Vec::new();
    let mut seen = source.loads();
    while start.elapsed() < span {
        let request = Request::get("https://api.azerion.ai/v1/models")
            .body(Full::<Bytes>::default())
            .unwrap();
        let _ = client.clone().oneshot(request).await;
        for _ in seen..source.loads() {
            at.push(start.elapsed());
        }
        seen = source.loads();
        support::advance(Duration::from_millis(50)).await;
    }
    at
}

#[tokio::test(start_paused = true)]
async fn a_revoked_key_and_a_refusing_store_make_one_load_per_backoff_window() {
    let source = Steered::new(OLD, None);
    let layer = BearerAuthLayer::new(source.clone());
    let ok = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, BoxError>(Response::new(Full::<Bytes>::default()))
    });
    let first = Request::get("https://api.azerion.ai/v1/models")
        .body(Full::<Bytes>::default())
        .unwrap();
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(ok)
        .oneshot(first)
        .await
        .unwrap();
    assert_eq!(source.loads(), 1);
    source.fail_with(KeyError::new(
        KeyErrorKind::Unavailable,
        "store rate-limited (HTTP 429)",
    ));

    let at = loads_over(&source, &layer, Duration::from_secs(20)).await;
    // Windows of 0.5 s, 1 s, 2 s, 4 s, 8 s (each at least 80% of that): the n-th load comes
    // at least 0.4 * (2^(n-1) - 1) s after the first, so at most 6 in 20 s.
    assert!(at.len() <= 6, "{} loads: {at:?}", at.len());
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(400),
            "two loads {gap:?} apart: {at:?}"
        );
    }
}

//! `/healthz` and `/metrics` for a service that calls an API through `BearerAuthLayer`.
//!
//! - `/healthz`: 200 while the layer has a key to send (`Fresh`, or `Stale`: the last good key
//!   while refreshes fail), 503 once it has none (`Failing`) or its key expired and could not
//!   be replaced (`Expired`). A probe that finds no usable key, or an expired one, asks for one
//!   (`KeyHandle::ready`, which keeps to the layer's backoff): the service goes red when the
//!   store is down even with no traffic, and green again as soon as the store is back. The body is a line of JSON with the state, the key's age and time to expiry, and
//!   the failures in a row: no key, and no fingerprint (health endpoints are often reachable
//!   by more people than logs are).
//! - `/metrics`: the Prometheus text of the recorder installed at start (the layer records
//!   through the `metrics` facade when the crate's `metrics` feature is on).
//!
//! Serve these on an internal port or behind your own access rule in production.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_bearer::{KeyHandle, KeyState};

#[derive(Clone)]
struct Health {
    key: KeyHandle,
    metrics: Option<PrometheusHandle>,
}

/// The routes `/healthz` and `/metrics` (the latter 404 without a `metrics` handle).
pub fn routes(key: KeyHandle, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(Health { key, metrics })
}

async fn healthz(State(health): State<Health>) -> Response {
    let mut status = health.key.status();
    let expired = status.expires_in() == Some(std::time::Duration::ZERO);
    if !status.state().is_serving() || expired {
        // The probe drives the recovery: a load now, unless within the backoff.
        let _ = health.key.ready().await;
        status = health.key.status();
    }
    let code = if status.state().is_serving() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let state = match status.state() {
        KeyState::Empty => "empty",
        KeyState::Fresh => "fresh",
        KeyState::Stale => "stale",
        KeyState::Failing => "failing",
        KeyState::Expired => "expired",
        _ => "unknown",
    };
    let seconds =
        |d: Option<std::time::Duration>| d.map_or("null".to_owned(), |d| d.as_secs().to_string());
    let body = format!(
        "{{\"state\":\"{state}\",\"age_seconds\":{},\"expires_in_seconds\":{},\"consecutive_failures\":{}}}\n",
        seconds(status.age()),
        seconds(status.expires_in()),
        status.consecutive_failures()
    );
    (code, [("content-type", "application/json")], body).into_response()
}

async fn render_metrics(State(health): State<Health>) -> Response {
    match health.metrics {
        Some(handle) => (
            [("content-type", "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

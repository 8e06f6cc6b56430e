//! An axum gateway that forwards `/v1/*` to the Azerion AI API through a client that holds the
//! key, so browsers and front ends never see it. Used by `examples/axum_gateway.rs` and by
//! `tests/axum_gateway.rs`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::{BoxError, Service, ServiceExt};
use tower_bearer::{KeyError, ReplayableBody, ScopeError};

/// Headers that belong to one hop, or to the caller, and must not be forwarded upstream.
const NOT_FORWARDED: [header::HeaderName; 5] = [
    header::AUTHORIZATION, // the browser's own credentials are not the API key
    header::COOKIE,
    header::HOST,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
];

/// A router forwarding `/v1/{*path}` to `upstream` (e.g. `https://api.azerion.ai`) through
/// `client`, a service that adds the key (a `BearerAuthLayer` over a hyper-util client).
pub fn router<C>(upstream: Uri, client: C) -> Router
where
    C: Service<
            http::Request<ReplayableBody>,
            Response = http::Response<hyper::body::Incoming>,
            Error = BoxError,
        > + Clone
        + Send
        + Sync
        + 'static,
    C::Future: Send,
{
    Router::new()
        .route("/v1/{*path}", any(forward::<C>))
        .with_state((upstream, client))
}

async fn forward<C>(State((upstream, client)): State<(Uri, C)>, request: Request) -> Response
where
    C: Service<
            http::Request<ReplayableBody>,
            Response = http::Response<hyper::body::Incoming>,
            Error = BoxError,
        > + Clone,
{
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{upstream}{}", path_and_query.trim_start_matches('/')).parse::<Uri>()
    else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    for name in NOT_FORWARDED {
        parts.headers.remove(name);
    }
    parts.uri = uri;
    // Small bodies (up to 64 KiB) are kept so a 401 can be replayed with a rotated key.
    let upstream_request = http::Request::from_parts(parts, ReplayableBody::new(body));
    match client.oneshot(upstream_request).await {
        Ok(response) => response.map(Body::new).into_response(),
        Err(error) => error_response(&error),
    }
}

/// What the browser learns of a failure: the kind, never the key or its source's details.
fn error_response(error: &BoxError) -> Response {
    let (status, message) = if error.is::<KeyError>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway has no API key available",
        )
    } else if error.is::<ScopeError>() {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the gateway refused to send its key there",
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            "the upstream API could not be reached",
        )
    };
    tracing::warn!(%error, "gateway request failed");
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

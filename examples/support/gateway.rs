//! An axum gateway that forwards `/v1/*` to the Azerion AI API through a client that holds the
//! key, so browsers and front ends never see it. Used by `examples/axum_gateway.rs` and by
//! `tests/axum_gateway.rs`.
//!
//! # What it protects
//!
//! The key: it is added by the client behind the gateway and never goes back to a caller. And,
//! because a gateway that adds a key for whoever asks lets anyone spend that key, each request
//! must pass four checks before anything goes upstream:
//!
//! 1. **`Host`** must be one of [`Gateway::hosts`] (exactly one `Host`, agreeing with the
//!    request's authority, if it has one): a page on another site that rebinds its DNS name to
//!    the gateway's address cannot read the answers. Refused with 421.
//! 2. **Cross-site requests** are refused (403): an `Origin` not in [`Gateway::origins`] (a form
//!    that a page on `evil.example` posts, `text/plain` or not), and, without an `Origin`, a
//!    `Sec-Fetch-Site: cross-site`.
//! 3. **The caller** must be authenticated: see [`authenticate_caller`], the one place to put
//!    your own check. As shipped it wants `Authorization: Bearer <Gateway::caller_token>`,
//!    compared in constant time, and refuses every request (401) when no token is set.
//! 4. **The path** must stay under `/v1`: a dot segment, raw or percent-encoded (`/v1/../admin`,
//!    `/v1/%2e%2e/admin`, `/v1/..%2fadmin`, double-encoded `%252e`), is refused (400).
//!
//! Forwarding: the caller's `Authorization` and `Cookie` are not sent upstream, nor the
//! RFC 9110 §7.6.1 hop-by-hop headers (`Connection`, `Keep-Alive`, `Proxy-Authorization`,
//! `Proxy-Authenticate`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-Connection`)
//! and the headers `Connection` names, in either direction; the upstream's `Set-Cookie` does not
//! reach the caller. Failures tell the caller the kind, never the key or its source's details.
//!
//! # What it does not
//!
//! - **No TLS.** It listens on plain HTTP: put it behind a TLS proxy (and list the proxy's public
//!   name in `hosts`), or serve it with rustls.
//! - **No quotas.** An authenticated caller spends the key as fast as it likes, on any `/v1`
//!   endpoint (files, fine-tuning…): add a rate limit (`tower::limit`, `tower_governor`) and an
//!   allowlist of paths and methods if callers are not fully trusted.
//! - **No CORS.** It sends no `Access-Control-*` headers: serve the front end from one of
//!   `origins`, or add `tower_http::cors::CorsLayer` with the same list.
//! - **No body limit** beyond the upstream's own; no audit log of who spent what.
//! - **A shared token is not a user login**: anyone who has it is "the caller". Put your session,
//!   OIDC or mTLS check in [`authenticate_caller`] instead.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::{BoxError, Service, ServiceExt};
use tower_bearer::{KeyError, ReplayableBody, ScopeError};

/// What the gateway forwards where, and who may use it.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// Where `/v1/*` goes, e.g. `https://api.azerion.ai/`.
    pub upstream: Uri,
    /// The `Host` values it answers to, as `host:port` (`"127.0.0.1:3000"`,
    /// `"gateway.example.com"` behind a TLS proxy on 443), compared without regard to case.
    pub hosts: Vec<String>,
    /// The origins whose pages may call it (`"https://app.example.com"`); every other `Origin`
    /// is refused.
    pub origins: Vec<String>,
    /// The token callers present as `Authorization: Bearer <token>`. `None`: every request is
    /// refused. See [`authenticate_caller`].
    pub caller_token: Option<String>,
}

/// Headers that belong to one hop (RFC 9110 §7.6.1, and the obsolete `Proxy-Connection`): never
/// forwarded, in either direction.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Headers of the caller's that are not the upstream's business.
const CALLER_ONLY: [header::HeaderName; 3] = [
    header::AUTHORIZATION, // the caller's own credentials are not the API key
    header::COOKIE,
    header::HOST,
];

/// A router forwarding `/v1/{*path}` to `gateway.upstream` through `client`, a service that adds
/// the key (a `BearerAuthLayer` over a hyper-util client).
pub fn router<C>(gateway: Gateway, client: C) -> Router
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
        .with_state((std::sync::Arc::new(gateway), client))
}

type GatewayState<C> = (std::sync::Arc<Gateway>, C);

async fn forward<C>(State((gateway, client)): State<GatewayState<C>>, request: Request) -> Response
where
    C: Service<
            http::Request<ReplayableBody>,
            Response = http::Response<hyper::body::Incoming>,
            Error = BoxError,
        > + Clone,
{
    let (mut parts, body) = request.into_parts();
    if let Err(refusal) = check(&gateway, &parts.headers, &parts.uri) {
        tracing::info!(?refusal, "gateway request refused");
        return refusal.into_response();
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!(
        "{}{}",
        gateway.upstream,
        path_and_query.trim_start_matches('/')
    )
    .parse::<Uri>() else {
        return refuse(StatusCode::BAD_REQUEST, "bad path");
    };
    strip_hop_by_hop(&mut parts.headers);
    for name in CALLER_ONLY {
        parts.headers.remove(name);
    }
    parts.uri = uri;
    // Small bodies (up to 64 KiB) are kept so a 401 can be replayed with a rotated key.
    let upstream_request = http::Request::from_parts(parts, ReplayableBody::new(body));
    match client.oneshot(upstream_request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            // The upstream's cookies are for the gateway's client, not for every caller.
            parts.headers.remove(header::SET_COOKIE);
            Response::from_parts(parts, Body::new(body))
        }
        Err(error) => error_response(&error),
    }
}

/// Why a request was refused before anything went upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Host,
    CrossSite,
    Caller,
    DotSegment,
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Host => refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "this gateway does not answer to that host",
            ),
            Refusal::CrossSite => refuse(StatusCode::FORBIDDEN, "cross-site requests are refused"),
            Refusal::Caller => {
                let mut refusal = refuse(StatusCode::UNAUTHORIZED, "caller not authenticated");
                refusal.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gateway\""),
                );
                refusal
            }
            Refusal::DotSegment => {
                refuse(StatusCode::BAD_REQUEST, "dot segments are refused in paths")
            }
        }
    }
}

/// The four checks of the module docs, in order.
fn check(gateway: &Gateway, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    if !host_allowed(gateway, headers, uri) {
        return Err(Refusal::Host);
    }
    if is_cross_site(gateway, headers) {
        return Err(Refusal::CrossSite);
    }
    if !authenticate_caller(gateway, headers) {
        return Err(Refusal::Caller);
    }
    if has_dot_segment(uri.path()) {
        return Err(Refusal::DotSegment);
    }
    Ok(())
}

/// Exactly one `Host` (or, over HTTP/2, the `:authority`), in the allowlist, and agreeing with
/// the request's authority when it has one (an absolute-form request line).
fn host_allowed(gateway: &Gateway, headers: &HeaderMap, uri: &Uri) -> bool {
    let mut values = headers.get_all(header::HOST).iter();
    let host = match (values.next(), values.next()) {
        (Some(value), None) => match value.to_str() {
            Ok(host) => host,
            Err(_) => return false,
        },
        (None, _) => match uri.authority() {
            Some(authority) => authority.as_str(),
            None => return false,
        },
        (Some(_), Some(_)) => return false,
    };
    if let Some(authority) = uri.authority() {
        if !authority.as_str().eq_ignore_ascii_case(host) {
            return false;
        }
    }
    gateway.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
}

/// An `Origin` that is not allowed (or more than one), or, without one, `Sec-Fetch-Site:
/// cross-site`.
fn is_cross_site(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(origin), None) => !gateway
            .origins
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
        (Some(_), Some(_)) => true,
        (None, _) => headers
            .get_all("sec-fetch-site")
            .iter()
            .any(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site")),
    }
}

/// ─── CALLER AUTHENTICATION GOES HERE ───
///
/// Whether the caller may spend the gateway's key. As shipped: exactly one
/// `Authorization: Bearer <token>` equal to [`Gateway::caller_token`], compared in constant time;
/// with no token set, nobody may. Replace the body with your own check (a session cookie and a
/// CSRF token, an OIDC access token, the client certificate of an mTLS proxy) and keep the
/// default of refusing.
pub fn authenticate_caller(gateway: &Gateway, headers: &HeaderMap) -> bool {
    let Some(expected) = gateway.caller_token.as_deref() else {
        return false;
    };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let given = value.as_bytes();
    match given.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            !expected.is_empty() && constant_time_eq(&given[7..], expected.as_bytes())
        }
        _ => false,
    }
}

/// `a == b`, in a time that depends on their lengths only, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether `path` holds a `.` or `..` segment once percent-decoded (with `/` or `\` as
/// separators), or an encoded `.`, `/` or `\` that is still encoded after one decoding (a
/// double-encoded traversal for a server that decodes twice).
fn has_dot_segment(path: &str) -> bool {
    let decoded = percent_decode(path.as_bytes());
    let still_encoded = decoded
        .windows(3)
        .any(|w| w[0] == b'%' && matches!(&w[1..].to_ascii_lowercase()[..], b"2e" | b"2f" | b"5c"));
    still_encoded
        || decoded
            .split(|&b| b == b'/' || b == b'\\')
            .any(|segment| segment == b"." || segment == b"..")
}

/// `bytes` with each `%XX` decoded once; a `%` not followed by two hex digits is kept as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Removes the hop-by-hop headers and every header that `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A refusal: a short text, not cached.
fn refuse(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What the caller learns of a failure: the kind, never the key or its source's details.
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
    refuse(status, message)
}

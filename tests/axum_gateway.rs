//! The axum gateway of `examples/axum_gateway.rs` against the stand-in API, over loopback:
//! the browser never sends or sees the key, rotation heals through the gateway (POST and GET),
//! upstream errors pass through, a missing key gives a generic 503; and the gateway's own
//! defences: a foreign `Host`, a cross-site request, an unauthenticated caller and a path that
//! leaves `/v1` are refused before anything goes upstream, and hop-by-hop headers cross in
//! neither direction.

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::gateway::Gateway;
use support::stand_in::StandInApi;
use tower::ServiceBuilder;
use tower_bearer::{ApiKey, BearerAuthLayer, FileKeySource, KeySource, ReplayableBody, StaticKey};

const KEY_1: &str = "sk-gateway-test-key-000001";
const KEY_2: &str = "sk-gateway-test-key-000002";
/// The token callers of the test gateway present.
const CALLER: &str = "caller-token-0123456789";
/// The one other origin the test gateway lets call it.
const APP_ORIGIN: &str = "https://app.example";

/// A gateway on 127.0.0.1 forwarding to `upstream` with the key from `source`, answering to its
/// own `127.0.0.1:port` only, for pages of `APP_ORIGIN` and its own origin, and callers holding
/// `caller_token`.
async fn start_gateway_to(
    upstream: Uri,
    source: impl KeySource,
    caller_token: Option<&str>,
) -> SocketAddr {
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).restrict_to_hosts(["127.0.0.1"]))
        .service(Client::builder(TokioExecutor::new()).build_http::<ReplayableBody>());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway {
        upstream,
        hosts: vec![addr.to_string()],
        origins: vec![format!("http://{addr}"), APP_ORIGIN.to_owned()],
        caller_token: caller_token.map(str::to_owned),
    };
    let app = support::gateway::router(gateway, client);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn start_gateway(api: &StandInApi, key_file: &std::path::Path) -> SocketAddr {
    let upstream = format!("http://{}/", api.addr()).parse().unwrap();
    start_gateway_to(upstream, FileKeySource::new(key_file), Some(CALLER)).await
}

/// A request to the gateway from an authenticated caller.
fn to(gateway: SocketAddr, method: Method, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(format!("http://{gateway}{path}"))
        .header("authorization", format!("Bearer {CALLER}"))
}

async fn call(req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let (status, _, body) = call_with_headers(req).await;
    (status, body)
}

async fn call_with_headers(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
    let res = support::client::<Full<Bytes>>().request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn forwards_with_the_key_and_heals_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, KEY_1).unwrap();
    let api = StandInApi::start(&[KEY_1]).await;
    let gateway = start_gateway(&api, &key_file).await;

    // The caller's own credentials are dropped: the gateway's key is what the API sees (with
    // the caller's token, the stand-in would answer 401).
    let req = to(gateway, Method::GET, "/v1/models")
        .header("cookie", "session=abc")
        .body(Full::default())
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("model-id-1"));
    assert!(!body.contains(KEY_1));
    assert_eq!(api.unauthorized(), 0);

    // Rotate and revoke: a POST with a JSON body heals through one 401 and a replay.
    std::fs::write(&key_file, KEY_2).unwrap();
    api.accept(KEY_2);
    api.revoke(KEY_1);
    let chat = r#"{"model":"model-id-1","messages":[{"role":"user","content":"hi"}]}"#;
    let req = to(gateway, Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(chat.as_bytes())))
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("chat.completion"));
    assert_eq!(api.unauthorized(), 1, "one 401, healed by the replay");

    // Upstream errors pass through as they are.
    let req = to(gateway, Method::GET, "/v1/models/nope")
        .body(Full::default())
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 404);
    assert!(body.contains("model_not_found"), "{body}");
}

#[tokio::test]
async fn a_get_heals_a_rotation_too() {
    // A GET has an empty body, which hyper never polls: it must still count as replayable.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, KEY_1).unwrap();
    let api = StandInApi::start(&[KEY_1]).await;
    let gateway = start_gateway(&api, &key_file).await;
    let models = || {
        to(gateway, Method::GET, "/v1/models")
            .body(Full::default())
            .unwrap()
    };
    let (status, body) = call(models()).await;
    assert_eq!(status, 200, "{body}");

    std::fs::write(&key_file, KEY_2).unwrap();
    api.accept(KEY_2);
    api.revoke(KEY_1);
    let (status, body) = call(models()).await;
    assert_eq!(status, 200, "the 401 to the old key heals: {body}");
    assert!(body.contains("model-id-1"));
    assert_eq!(api.unauthorized(), 1, "one 401, healed by the replay");
}

#[tokio::test]
async fn a_missing_key_is_a_generic_503() {
    let dir = tempfile::tempdir().unwrap();
    let api = StandInApi::start(&[KEY_1]).await;
    let gateway = start_gateway(&api, &dir.path().join("absent")).await;
    let req = to(gateway, Method::GET, "/v1/models")
        .body(Full::default())
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "the gateway has no API key available");
    assert_eq!(api.requests(), 0, "nothing went upstream");
}

/// A gateway to a stand-in API that accepts its key, and the stand-in.
async fn gateway_to_stand_in() -> (SocketAddr, StandInApi) {
    let api = StandInApi::start(&[KEY_1]).await;
    let upstream = format!("http://{}/", api.addr()).parse().unwrap();
    let source = StaticKey::new(ApiKey::new(KEY_1).unwrap());
    (start_gateway_to(upstream, source, Some(CALLER)).await, api)
}

fn models(gateway: SocketAddr) -> http::request::Builder {
    to(gateway, Method::GET, "/v1/models")
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    // DNS rebinding: a page on evil.example whose name now points at the gateway.
    let (gateway, api) = gateway_to_stand_in().await;
    let req = models(gateway)
        .header("host", format!("evil.example:{}", gateway.port()))
        .body(Full::default())
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert_eq!(body, "this gateway does not answer to that host");

    let req = models(gateway)
        .header("host", gateway.to_string())
        .header("host", "evil.example")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        call(req).await.0,
        StatusCode::MISDIRECTED_REQUEST,
        "two Hosts"
    );
    assert_eq!(api.requests(), 0, "nothing went upstream");

    let req = models(gateway)
        .header("host", gateway.to_string().to_uppercase())
        .body(Full::default())
        .unwrap();
    assert_eq!(call(req).await.0, 200, "its own host, in any case");
}

#[tokio::test]
async fn cross_site_requests_are_refused() {
    let (gateway, api) = gateway_to_stand_in().await;
    // The form a page on evil.example posts: text/plain needs no CORS preflight.
    let chat = r#"{"model":"model-id-1","messages":[{"role":"user","content":"hi"}]}"#;
    let form = |origin: &str| {
        to(gateway, Method::POST, "/v1/chat/completions")
            .header("content-type", "text/plain")
            .header("origin", origin)
            .body(Full::new(Bytes::from_static(chat.as_bytes())))
            .unwrap()
    };
    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.evil.example",
    ] {
        let (status, body) = call(form(origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert_eq!(body, "cross-site requests are refused");
    }
    let req = models(gateway)
        .header("sec-fetch-site", "cross-site")
        .body(Full::default())
        .unwrap();
    assert_eq!(call(req).await.0, StatusCode::FORBIDDEN, "Sec-Fetch-Site");
    assert_eq!(api.requests(), 0, "nothing went upstream");

    // Allowed: a listed origin, the gateway's own, and same-origin fetches.
    assert_eq!(call(form(APP_ORIGIN)).await.0, 200);
    assert_eq!(call(form(&format!("http://{gateway}"))).await.0, 200);
    let req = models(gateway)
        .header("sec-fetch-site", "same-origin")
        .body(Full::default())
        .unwrap();
    assert_eq!(call(req).await.0, 200);
    assert_eq!(api.requests(), 3);
}

#[tokio::test]
async fn callers_must_authenticate() {
    let (gateway, api) = gateway_to_stand_in().await;
    let url = format!("http://{gateway}/v1/models");
    for authorization in [
        None,
        Some("Bearer wrong-token-0123456789".to_owned()),
        Some(format!("Bearer {CALLER}x")),
        Some(format!("Basic {CALLER}")),
        Some(KEY_1.to_owned()),
    ] {
        let mut req = Request::get(&url);
        if let Some(value) = &authorization {
            req = req.header("authorization", value);
        }
        let (status, headers, body) = call_with_headers(req.body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(body, "caller not authenticated");
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"gateway\"");
        assert!(!body.contains(KEY_1) && !body.contains(CALLER));
    }
    assert_eq!(api.requests(), 0, "nothing went upstream");
    let req = Request::get(&url)
        .header("authorization", format!("bearer {CALLER}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(call(req).await.0, 200);

    // No caller token configured: nobody gets through, whatever they send.
    let upstream = format!("http://{}/", api.addr()).parse().unwrap();
    let closed =
        start_gateway_to(upstream, StaticKey::new(ApiKey::new(KEY_1).unwrap()), None).await;
    for authorization in ["Bearer ", "Bearer", ""] {
        let req = to(closed, Method::GET, "/v1/models")
            .header("authorization", authorization)
            .body(Full::default())
            .unwrap();
        assert_eq!(call(req).await.0, StatusCode::UNAUTHORIZED);
    }
    let req = to(closed, Method::GET, "/v1/models")
        .body(Full::default())
        .unwrap();
    assert_eq!(call(req).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.requests(), 1);
}

#[tokio::test]
async fn paths_cannot_leave_v1() {
    let (gateway, api) = gateway_to_stand_in().await;
    for path in [
        "/v1/../admin",
        "/v1/./models",
        "/v1/models/..",
        "/v1/%2e%2e/admin",
        "/v1/%2E%2e/admin",
        "/v1/..%2fadmin",
        "/v1/..%2Fadmin",
        "/v1/.%2e/admin",
        "/v1/%2e%2e%2fadmin",
        "/v1/..%5cadmin",
        "/v1/%252e%252e/admin",
        "/v1/x/%2e%2e/%2e%2e/admin?q=1",
    ] {
        let req = to(gateway, Method::GET, path)
            .body(Full::default())
            .unwrap();
        let (status, body) = call(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body, "dot segments are refused in paths");
    }
    assert_eq!(api.requests(), 0, "nothing went upstream");
    // Dots inside a segment are fine.
    let req = to(gateway, Method::GET, "/v1/models/meta.llama3..x?v=1.2")
        .body(Full::default())
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 404, "forwarded: {body}");
    assert_eq!(api.requests(), 1);
}

/// Hop-by-hop request headers the tests send, besides the one `Connection` names.
const HOP_REQUEST: [(&str, &str); 6] = [
    ("keep-alive", "timeout=5"),
    ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
    ("proxy-connection", "keep-alive"),
    ("te", "trailers"),
    ("trailer", "x-checksum"),
    ("upgrade", "h2c"),
];

#[tokio::test]
async fn hop_by_hop_headers_cross_in_neither_direction() {
    // An upstream that records what it was sent and answers with hop-by-hop headers of its own.
    let seen = Arc::new(Mutex::new(Vec::<HeaderMap>::new()));
    let log = seen.clone();
    let upstream = support::serve(move |req: Request<Incoming>| {
        log.lock().unwrap().push(req.headers().clone());
        async move {
            http::Response::builder()
                .header("connection", "x-upstream-hop")
                .header("x-upstream-hop", "for the gateway only")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic realm=\"proxy\"")
                .header("trailer", "x-checksum")
                .header("set-cookie", "upstream_session=s3cr3t; HttpOnly")
                .header("x-end-to-end", "kept")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        }
    })
    .await;
    let upstream = format!("http://{upstream}/").parse().unwrap();
    let gateway = start_gateway_to(
        upstream,
        StaticKey::new(ApiKey::new(KEY_1).unwrap()),
        Some(CALLER),
    )
    .await;

    let mut req = to(gateway, Method::GET, "/v1/models")
        .header("connection", "x-hop-a, X-Hop-B")
        .header("x-hop-a", "1")
        .header("x-hop-b", "2")
        .header("x-end-to-end", "kept")
        .header("cookie", "session=abc");
    for (name, value) in HOP_REQUEST {
        req = req.header(name, value);
    }
    let (status, headers, body) = call_with_headers(req.body(Full::default()).unwrap()).await;
    assert_eq!(status, 200, "{body}");

    let sent = seen
        .lock()
        .unwrap()
        .pop()
        .expect("the request went upstream");
    for (name, _) in HOP_REQUEST {
        assert!(
            !sent.contains_key(name),
            "{name} forwarded upstream: {sent:?}"
        );
    }
    for name in ["connection", "x-hop-a", "x-hop-b", "cookie"] {
        assert!(
            !sent.contains_key(name),
            "{name} forwarded upstream: {sent:?}"
        );
    }
    assert_eq!(sent["x-end-to-end"], "kept");
    assert_eq!(sent["authorization"], format!("Bearer {KEY_1}"));

    for name in [
        "connection",
        "x-upstream-hop",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "set-cookie",
    ] {
        assert!(!headers.contains_key(name), "{name} sent back: {headers:?}");
    }
    assert_eq!(headers["x-end-to-end"], "kept");
}

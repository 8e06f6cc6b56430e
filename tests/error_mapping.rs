//! ErrorMappingLayer over real hyper on loopback: every status to its kind, every body shape,
//! Retry-After, request ids, capped and stalled bodies, streaming successes, inner errors.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    ApiError, ApiErrorKind, ApiKey, BearerAuthLayer, ErrorMapping, ErrorMappingLayer, StaticKey,
};

const DOCUMENTED: &str = include_str!("fixtures/azerion/error_documented.json");
const ASSUMED_401: &str = include_str!("fixtures/azerion/assumed_error_openai_shape_401.json");

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

fn mapped(layer: ErrorMappingLayer) -> ErrorMapping<Client> {
    ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Empty<Bytes>>())
}

async fn get(addr: SocketAddr, path: &str) -> Result<Response<Incoming>, BoxError> {
    get_with(ErrorMappingLayer::new(), addr, path).await
}

async fn get_with(
    layer: ErrorMappingLayer,
    addr: SocketAddr,
    path: &str,
) -> Result<Response<Incoming>, BoxError> {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    mapped(layer).oneshot(req).await
}

fn api_error(result: Result<Response<Incoming>, BoxError>) -> ApiError {
    match result {
        Ok(response) => panic!("expected an ApiError, got {}", response.status()),
        Err(error) => *error
            .downcast::<ApiError>()
            .unwrap_or_else(|e| panic!("not an ApiError: {e}")),
    }
}

/// A server answering `/NNN` with status NNN and a small OpenAI-shaped body.
async fn status_server() -> SocketAddr {
    support::serve(|req: Request<Incoming>| async move {
        let code: u16 = req.uri().path()[1..].parse().unwrap();
        let body = format!(r#"{{"error":{{"message":"status {code}","type":"t","code":{code}}}}}"#);
        support::respond(code, body)
    })
    .await
}

#[tokio::test]
async fn every_status_maps_to_its_kind() {
    use ApiErrorKind::*;
    let addr = status_server().await;
    let table = [
        (400, BadRequest, false),
        (401, Unauthorized, false),
        (402, Other, false),
        (403, Forbidden, false),
        (404, NotFound, false),
        (405, Other, false),
        (408, Timeout, true),
        (409, Conflict, true),
        (410, Other, false),
        (413, Other, false),
        (418, Other, false),
        (422, Unprocessable, false),
        (429, RateLimited, true),
        (451, Other, false),
        (500, Server, true),
        (501, Server, false),
        (502, Server, true),
        (503, Server, true),
        (504, Timeout, true),
        (505, Server, true),
        (507, Server, true),
        (599, Server, true),
    ];
    for (code, kind, retryable) in table {
        let err = api_error(get(addr, &format!("/{code}")).await);
        assert_eq!(err.status().as_u16(), code);
        assert_eq!(err.kind(), kind, "{code}");
        assert_eq!(err.is_retryable(), retryable, "{code}");
        let expected = format!("status {code}");
        assert_eq!(err.message(), Some(expected.as_str()));
        assert_eq!(err.code(), Some(code.to_string().as_str()), "numeric code");
        assert!(!err.body_truncated());
    }
    for code in [200, 201, 202, 204, 301, 302, 304, 307, 399] {
        let response = get(addr, &format!("/{code}"))
            .await
            .unwrap_or_else(|e| panic!("{code} mapped to an error: {e}"));
        assert_eq!(response.status().as_u16(), code);
    }
}

#[tokio::test]
async fn documented_azerion_error_body() {
    let addr = support::serve(|_| async { support::respond(400, DOCUMENTED) }).await;
    let err = api_error(get(addr, "/v1/chat/completions").await);
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(err.kind(), ApiErrorKind::BadRequest);
    assert_eq!(err.message(), Some("Description of what went wrong"));
    assert_eq!(err.error_type(), Some("error_type"));
    assert_eq!(err.code(), Some("specific_error_code"));
    assert_eq!(err.param(), None);
    assert_eq!(err.body(), DOCUMENTED.as_bytes());
    assert_eq!(
        err.to_string(),
        "HTTP 400 Bad Request (bad request): Description of what went wrong"
    );
}

#[tokio::test]
async fn openai_shaped_401_body() {
    let addr = support::serve(|_| async { support::respond(401, ASSUMED_401) }).await;
    let err = api_error(get(addr, "/v1/models").await);
    assert_eq!(err.kind(), ApiErrorKind::Unauthorized);
    assert_eq!(err.message(), Some("Incorrect API key provided."));
    assert_eq!(err.error_type(), Some("invalid_request_error"));
    assert_eq!(err.code(), Some("invalid_api_key"));
    assert_eq!(err.param(), None);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn message_for_every_body_shape() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            r#"{"error":{"message":"m1","type":"t","code":"c","param":"model","status_code":400}}"#,
            Some("m1"),
        ),
        (
            r#"{"error":"plain error string"}"#,
            Some("plain error string"),
        ),
        (
            r#"{"message":"top-level message"}"#,
            Some("top-level message"),
        ),
        (
            r#"{"detail":"Not authenticated"}"#,
            Some("Not authenticated"),
        ),
        (
            r#"{"detail":[{"loc":["body","model"],"msg":"field required","type":"missing"}]}"#,
            Some("body.model: field required"),
        ),
        (
            r#"{"errors":["permission denied"]}"#,
            Some("permission denied"),
        ),
        (
            r#"{"errors":[{"message":"first"},{"message":"second"}]}"#,
            Some("first; second"),
        ),
        (r#"{"errors":[]}"#, None),
        (r#"{"status":"fail"}"#, None),
        ("[]", None),
        ("not json at all", None),
        ("", None),
    ];
    let addr = support::serve(|req: Request<Incoming>| async move {
        let i: usize = req.uri().path()[1..].parse().unwrap();
        support::respond(422, MESSAGE_BODIES[i])
    })
    .await;
    assert_eq!(cases.len(), MESSAGE_BODIES.len());
    for (i, (body, expected)) in cases.iter().enumerate() {
        assert_eq!(MESSAGE_BODIES[i], *body);
        let err = api_error(get(addr, &format!("/{i}")).await);
        assert_eq!(err.kind(), ApiErrorKind::Unprocessable);
        assert_eq!(err.message(), *expected, "{body}");
        assert_eq!(err.body(), body.as_bytes());
    }
    let err = api_error(get(addr, "/0").await);
    assert_eq!(err.param(), Some("model"));
    assert_eq!(err.error_type(), Some("t"));
}

const MESSAGE_BODIES: &[&str] = &[
    r#"{"error":{"message":"m1","type":"t","code":"c","param":"model","status_code":400}}"#,
    r#"{"error":"plain error string"}"#,
    r#"{"message":"top-level message"}"#,
    r#"{"detail":"Not authenticated"}"#,
    r#"{"detail":[{"loc":["body","model"],"msg":"field required","type":"missing"}]}"#,
    r#"{"errors":["permission denied"]}"#,
    r#"{"errors":[{"message":"first"},{"message":"second"}]}"#,
    r#"{"errors":[]}"#,
    r#"{"status":"fail"}"#,
    "[]",
    "not json at all",
    "",
];

fn with_headers(status: u16, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut response = support::respond(status, "{}");
    for (name, value) in headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

#[tokio::test]
async fn retry_after_in_all_forms() {
    let addr = support::serve(|req: Request<Incoming>| async move {
        let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let headers: Vec<(&str, String)> = match req.uri().path() {
            "/seconds" => vec![("retry-after", "7".into())],
            "/decimal" => vec![("retry-after", "1.5".into())],
            "/ms" => vec![("retry-after-ms", "250".into())],
            "/ms-wins" => vec![("retry-after-ms", "40".into()), ("retry-after", "9".into())],
            "/date" => vec![("retry-after", in_30s)],
            "/garbage" => vec![("retry-after", "later, maybe".into())],
            "/negative" => vec![("retry-after", "-3".into())],
            "/nan" => vec![("retry-after-ms", "NaN".into())],
            "/tomorrow" => vec![("retry-after", "86400".into())],
            "/none" => vec![],
            other => panic!("{other}"),
        };
        with_headers(429, &headers)
    })
    .await;
    let wait = |path: &'static str| async move { api_error(get(addr, path).await).retry_after() };
    assert_eq!(wait("/seconds").await, Some(Duration::from_secs(7)));
    assert_eq!(wait("/decimal").await, Some(Duration::from_millis(1500)));
    assert_eq!(wait("/ms").await, Some(Duration::from_millis(250)));
    assert_eq!(wait("/ms-wins").await, Some(Duration::from_millis(40)));
    let date = wait("/date").await.expect("an HTTP date");
    // HTTP dates have whole seconds: 30 s from the server's now, read a moment later.
    assert!(
        date > Duration::from_secs(28) && date <= Duration::from_secs(30),
        "{date:?}"
    );
    // A long wait is the server's answer, not garbage: kept (the retry does not retry it).
    assert_eq!(wait("/tomorrow").await, Some(Duration::from_secs(86_400)));
    for path in ["/garbage", "/negative", "/nan", "/none"] {
        assert_eq!(wait(path).await, None, "{path}");
    }
}

#[tokio::test]
async fn request_id_from_either_header() {
    let addr = support::serve(|req: Request<Incoming>| async move {
        let headers: Vec<(&str, String)> = match req.uri().path() {
            "/x" => vec![("x-request-id", "req_abc".into())],
            "/plain" => vec![("request-id", "req_def".into())],
            "/both" => vec![
                ("request-id", "req_second".into()),
                ("x-request-id", "req_first".into()),
            ],
            _ => vec![],
        };
        with_headers(500, &headers)
    })
    .await;
    let id = |path: &'static str| async move {
        api_error(get(addr, path).await)
            .request_id()
            .map(str::to_owned)
    };
    assert_eq!(id("/x").await.as_deref(), Some("req_abc"));
    assert_eq!(id("/plain").await.as_deref(), Some("req_def"));
    assert_eq!(id("/both").await.as_deref(), Some("req_first"));
    assert_eq!(id("/none").await, None);
}

#[tokio::test]
async fn html_error_body() {
    const HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n";
    let addr = support::serve(|_| async {
        let mut response = support::respond(502, HTML);
        response
            .headers_mut()
            .insert("content-type", "text/html".parse().unwrap());
        response
    })
    .await;
    let err = api_error(get(addr, "/").await);
    assert_eq!(err.kind(), ApiErrorKind::Server);
    assert_eq!(err.message(), None);
    assert_eq!(err.body(), HTML.as_bytes());
    assert_eq!(err.headers()["content-type"], "text/html");
    assert_eq!(err.to_string(), "HTTP 502 Bad Gateway (server error)");
}

#[tokio::test]
async fn empty_error_body() {
    let addr = support::serve(|_| async { support::respond(503, "") }).await;
    let err = api_error(get(addr, "/").await);
    assert_eq!(err.message(), None);
    assert!(err.body().is_empty());
    assert!(!err.body_truncated());
}

#[tokio::test]
async fn an_8_mib_error_body_is_captured_to_the_cap_and_not_read_further() {
    const TOTAL_CHUNKS: usize = 8 * 1024 * 1024 / support::CHUNK_LEN;
    let (addr, produced, rx) = support::serve_huge_error(TOTAL_CHUNKS, false).await;

    let err = api_error(get(addr, "/").await);
    assert_eq!(err.body().len(), 64 * 1024);
    assert!(err.body_truncated());
    assert_eq!(
        err.message(),
        None,
        "a cut JSON or non-JSON body has no message"
    );
    drop(err);

    // The client stopped reading and closed the connection; the server's body goes with it.
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the server noticed the closed connection")
        .unwrap();
    let sent = produced.load(Ordering::SeqCst);
    println!(
        "server produced {sent} of {TOTAL_CHUNKS} chunks ({} KiB of 8192 KiB)",
        sent * 64
    );
    assert!(sent < TOTAL_CHUNKS, "the whole 8 MiB body was pulled");
}

#[tokio::test]
async fn body_cap_is_configurable_and_exact() {
    let addr = support::serve(|req: Request<Incoming>| async move {
        let n: usize = req.uri().path()[1..].parse().unwrap();
        support::respond(500, vec![b'a'; n])
    })
    .await;
    let layer = ErrorMappingLayer::new().body_cap(10);
    for (len, kept, truncated) in [
        (0, 0, false),
        (9, 9, false),
        (10, 10, false),
        (11, 10, true),
    ] {
        let err = api_error(get_with(layer, addr, &format!("/{len}")).await);
        assert_eq!(err.body().len(), kept, "{len}");
        assert_eq!(err.body_truncated(), truncated, "{len}");
    }
    let err = api_error(get_with(ErrorMappingLayer::new().body_cap(0), addr, "/5").await);
    assert!(err.body().is_empty());
    assert!(err.body_truncated());
}

#[tokio::test]
async fn success_bodies_stream_through_untouched() {
    let (tx, body) = support::channel_body();
    let slot = Arc::new(std::sync::Mutex::new(Some(body)));
    let addr = support::serve(move |_| {
        let body = slot.lock().unwrap().take().expect("one request");
        async move {
            // no content-length: chunked, streamed as the test sends it
            Response::builder().status(200).body(body).unwrap()
        }
    })
    .await;

    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    // The response comes back while the body is still open: nothing waits for (or reads) it.
    let response: Response<Incoming> = get(addr, "/stream").await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");
    tx.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "second");
    drop(tx);
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn an_error_body_that_stalls_gives_what_was_read_at_the_timeout() {
    let (tx, body) = support::channel_body();
    let slot = Arc::new(std::sync::Mutex::new(Some(body)));
    let addr = support::serve(move |_| {
        let body = slot.lock().unwrap().take().expect("one request");
        async move { Response::builder().status(503).body(body).unwrap() }
    })
    .await;
    tx.send(Ok(Bytes::from_static(b"{\"error\":{\"mess")))
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let layer = ErrorMappingLayer::new().body_timeout(Duration::from_millis(750));
    let err = api_error(get_with(layer, addr, "/").await);
    let took = started.elapsed();
    assert_eq!(err.body(), "{\"error\":{\"mess");
    assert!(err.body_truncated());
    assert_eq!(err.message(), None);
    assert_eq!(err.kind(), ApiErrorKind::Server);
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(tx); // the server's body was open all along
}

#[tokio::test]
async fn an_error_body_cut_short_gives_what_was_read() {
    let addr = support::serve_raw(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\nx-request-id: req_cut\r\ncontent-length: 100\r\n\r\n{\"error\":",
        false,
    )
    .await;
    let err = api_error(get(addr, "/").await);
    assert_eq!(err.status(), 500);
    assert_eq!(err.body(), "{\"error\":");
    assert!(err.body_truncated());
    assert_eq!(err.message(), None);
    assert_eq!(err.request_id(), Some("req_cut"));
}

#[tokio::test]
async fn the_inner_error_passes_through_downcastable() {
    let addr = support::closed_port().await;
    let err = get(addr, "/").await.unwrap_err();
    assert!(err.downcast_ref::<ApiError>().is_none());
    let inner = err
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .expect("hyper-util's own error");
    assert!(inner.is_connect());
}

#[tokio::test]
async fn no_secret_reaches_display_or_debug() {
    const KEY: &str = "sk-live-ABCDEF0123456789secret";
    let addr = support::serve(|req: Request<Incoming>| async move {
        let sent = support::bearer(&req).unwrap_or_default();
        let body = format!(
            r#"{{"error":{{"message":"Incorrect API key provided: {sent}. Header was Bearer {sent}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
        );
        let mut response = support::respond(401, body);
        let headers = response.headers_mut();
        headers.insert("set-cookie", "session=cookie-secret-42".parse().unwrap());
        headers.insert("www-authenticate", "Bearer realm=\"api\"".parse().unwrap());
        headers.insert("x-request-id", "req_401".parse().unwrap());
        response
    })
    .await;

    let client = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .layer(BearerAuthLayer::new(StaticKey::new(
            ApiKey::new(KEY).unwrap(),
        )))
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(Empty::new())
        .unwrap();
    let err = api_error(client.oneshot(req).await);
    assert_eq!(err.kind(), ApiErrorKind::Unauthorized);
    assert!(
        err.message().unwrap().contains(KEY),
        "message() is the raw text"
    );

    let shown = err.to_string();
    let debug = format!("{err:?}");
    for text in [&shown, &debug] {
        assert!(!text.contains("ABCDEF0123456789"), "{text}");
        assert!(!text.contains("cookie-secret-42"), "{text}");
    }
    assert!(!shown.contains("req_401"), "no header in Display: {shown}");
    assert!(debug.contains("req_401"), "{debug}");
    assert!(
        shown.starts_with(
            "HTTP 401 Unauthorized (unauthorized): Incorrect API key provided: [redacted]"
        ),
        "{shown}"
    );
}

#[tokio::test]
async fn long_messages_are_cut_in_display() {
    let addr = support::serve(|_| async {
        let message = "word ".repeat(2000);
        support::respond(400, format!(r#"{{"message":"{message}"}}"#))
    })
    .await;
    let err = api_error(get(addr, "/").await);
    assert_eq!(err.message().unwrap().len(), 10_000);
    let shown = err.to_string();
    assert!(shown.ends_with('…'));
    assert!(shown.chars().count() < 400, "{}", shown.chars().count());
}

// ---- in-process inner services under paused time ------------------------------------------

type ChannelResult = Result<Response<support::ChannelBody>, BoxError>;

fn channel_service(
    status: u16,
    body: support::ChannelBody,
) -> impl Service<Request<Empty<Bytes>>, Response = Response<support::ChannelBody>, Error = BoxError>
{
    let slot = std::sync::Mutex::new(Some(body));
    service_fn(move |_req: Request<Empty<Bytes>>| {
        let body = slot.lock().unwrap().take().expect("one request");
        async move { ChannelResult::Ok(Response::builder().status(status).body(body)?) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out_at_the_configured_time() {
    let (tx, body) = support::channel_body();
    tx.send(Ok(Bytes::from_static(b"partial"))).await.unwrap();
    let service = ErrorMappingLayer::new().layer(channel_service(504, body));
    let started = tokio::time::Instant::now();
    let err = service
        .oneshot(Request::new(Empty::new()))
        .await
        .unwrap_err()
        .downcast::<ApiError>()
        .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(10),
        "the default timeout"
    );
    assert_eq!(err.kind(), ApiErrorKind::Timeout);
    assert_eq!(err.body(), "partial");
    assert!(err.body_truncated());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_body_error_mid_read_gives_what_was_read() {
    let (tx, body) = support::channel_body();
    tx.send(Ok(Bytes::from_static(b"{\"message\":")))
        .await
        .unwrap();
    tx.send(Err("connection lost".into())).await.unwrap();
    let service = ErrorMappingLayer::new().layer(channel_service(500, body));
    let started = tokio::time::Instant::now();
    let err = service
        .oneshot(Request::new(Empty::new()))
        .await
        .unwrap_err()
        .downcast::<ApiError>()
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.body(), "{\"message\":");
    assert!(err.body_truncated());
}

#[tokio::test]
async fn the_inner_services_own_error_type_survives() {
    #[derive(Debug)]
    struct Mine(u32);
    impl std::fmt::Display for Mine {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "mine {}", self.0)
        }
    }
    impl std::error::Error for Mine {}

    let service = ErrorMappingLayer::new().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<Full<Bytes>>, _>(Mine(7))
    }));
    let err = service.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Mine>().map(|m| m.0), Some(7));
}

// ---- the success path allocates nothing ------------------------------------------------------

/// Counts the allocations made by the current thread.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn the_success_path_allocates_nothing() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let inner = service_fn(|_req: ()| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"ok"),
        ))))
    });
    let mut service = ErrorMappingLayer::new().layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());

    let before = allocations();
    let future = service.call(());
    let mut future = std::pin::pin!(future);
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        panic!("a ready success");
    };
    let after = allocations();
    assert_eq!(response.status(), 200);
    assert_eq!(after - before, 0, "allocations on the success path");
    println!(
        "ResponseFuture: {} bytes around an inner future of {} bytes",
        std::mem::size_of_val(&*future),
        std::mem::size_of::<std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>>()
    );
}

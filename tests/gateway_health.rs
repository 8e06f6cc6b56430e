//! The gateway example's `/healthz` and `/metrics` (examples/support/health.rs), over real HTTP:
//! a source that starts failing turns the health check red once its key expires, and green
//! again when it recovers, with no traffic through the gateway needed.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_bearer::{
    ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeyFuture, KeySource, ReplayableBody,
};

/// Tokens that live `LIFE`; loads fail while `down`.
struct TokenService {
    down: AtomicBool,
    issued: AtomicUsize,
}

const LIFE: Duration = Duration::from_secs(2);

impl KeySource for TokenService {
    fn load(&self) -> KeyFuture<'_> {
        let down = self.down.load(Ordering::SeqCst);
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if down {
                return Err(KeyError::new(
                    KeyErrorKind::Unavailable,
                    "token service down",
                ));
            }
            Ok(
                ApiKey::new(format!("sk-health-token-{n:06}"))?
                    .expires_at(SystemTime::now() + LIFE),
            )
        })
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Polls `/healthz` until it answers `want` (a deadline, not a sleep: the token's real life
/// must pass); returns the body.
async fn healthz_until(addr: std::net::SocketAddr, want: StatusCode) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(addr, "/healthz").await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn healthz_turns_red_when_the_key_expires_and_green_when_the_source_recovers() {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this binary");
    let source = Arc::new(TokenService {
        down: AtomicBool::new(false),
        issued: AtomicUsize::new(0),
    });
    let upstream = support::serve(|_req| async { support::respond(200, "ok") }).await;
    let auth = BearerAuthLayer::new(source.clone())
        .restrict_to_hosts(["127.0.0.1"])
        .name("health-test");
    let key = auth.handle();
    let client = ServiceBuilder::new()
        .layer(auth)
        .service(Client::builder(TokioExecutor::new()).build_http::<ReplayableBody>());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = support::gateway::Gateway {
        upstream: format!("http://{upstream}/").parse().unwrap(),
        hosts: vec![addr.to_string()],
        origins: vec![format!("http://{addr}")],
        caller_token: Some("health-test-caller".to_owned()),
    };
    let app = support::gateway::router(gateway, client)
        .merge(support::health::routes(key, Some(metrics)));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // No key yet: the probe asks for one and is green at once.
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"state\":\"fresh\""), "{body}");
    assert!(!body.contains("sk-"), "no key, no fingerprint: {body}");
    assert_eq!(source.issued.load(Ordering::SeqCst), 1);

    // The token service goes down: green while the token lives, red once it expired.
    source.down.store(true, Ordering::SeqCst);
    let body = healthz_until(addr, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body.contains("\"state\":\"expired\""), "{body}");
    assert!(body.contains("\"expires_in_seconds\":0"), "{body}");

    // It comes back: the probe itself reloads (after the backoff), and turns green.
    source.down.store(false, Ordering::SeqCst);
    let body = healthz_until(addr, StatusCode::OK).await;
    assert!(body.contains("\"state\":\"fresh\""), "{body}");
    assert!(body.contains("\"consecutive_failures\":0"), "{body}");

    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    if cfg!(feature = "metrics") {
        assert!(
            text.contains("tower_bearer_loads_total{layer=\"health-test\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "tower_bearer_loads_total{layer=\"health-test\",outcome=\"unavailable\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("tower_bearer_expired_total{layer=\"health-test\"} 1"),
            "{text}"
        );
        assert!(!text.contains("sk-"), "{text}");
    }
}

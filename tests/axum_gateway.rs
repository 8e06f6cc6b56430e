//! The axum gateway of `examples/axum_gateway.rs` against the stand-in API, over loopback:
//! the browser never sends or sees the key, rotation heals through the gateway, upstream
//! errors pass through, and a missing key gives a generic 503.

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::stand_in::StandInApi;
use tower::ServiceBuilder;
use tower_bearer::{BearerAuthLayer, FileKeySource, ReplayableBody};

const KEY_1: &str = "sk-gateway-test-key-000001";
const KEY_2: &str = "sk-gateway-test-key-000002";

async fn start_gateway(api: &StandInApi, key_file: &std::path::Path) -> SocketAddr {
    let upstream = format!("http://{}/", api.addr()).parse().unwrap();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(FileKeySource::new(key_file)).restrict_to_hosts(["127.0.0.1"]))
        .service(Client::builder(TokioExecutor::new()).build_http::<ReplayableBody>());
    let app = support::gateway::router(upstream, client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn call(req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let res = support::client::<Full<Bytes>>().request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn forwards_with_the_key_and_heals_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, KEY_1).unwrap();
    let api = StandInApi::start(&[KEY_1]).await;
    let gateway = start_gateway(&api, &key_file).await;

    // A browser's own credentials are dropped: the gateway's key is what the API sees.
    let req = Request::get(format!("http://{gateway}/v1/models"))
        .header("authorization", "Bearer browser-session-token")
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
    let req = Request::post(format!("http://{gateway}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(chat.as_bytes())))
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("chat.completion"));
    assert_eq!(api.unauthorized(), 1, "one 401, healed by the replay");

    // Upstream errors pass through as they are.
    let req = Request::get(format!("http://{gateway}/v1/models/nope"))
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
        Request::get(format!("http://{gateway}/v1/models"))
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
    let req = Request::get(format!("http://{gateway}/v1/models"))
        .body(Full::default())
        .unwrap();
    let (status, body) = call(req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "the gateway has no API key available");
    assert_eq!(api.requests(), 0, "nothing went upstream");
}

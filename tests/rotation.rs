//! Key freshness over real hyper on loopback: 401 reload and replay, single flight under a
//! revoked key, no retry storms, rotation hooks, file rotation, streaming bodies.

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use support::sources::{Counted, Fresh, Steered};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{
    ApiKey, BearerAuthLayer, FileKeySource, KeyErrorKind, KeySource, ReplayableBody, RotationReason,
};

const KEY_A: &str = "sk-rotation-key-AAAAAAAAAAAA";
const KEY_B: &str = "sk-rotation-key-BBBBBBBBBBBB";

/// A loopback API that accepts only its current key (`None`: rejects every key) and records
/// each request's token and body.
#[derive(Default)]
struct Api {
    current: Mutex<Option<String>>,
    seen: Mutex<Vec<(String, Bytes)>>,
}

impl Api {
    async fn start(key: Option<&str>) -> (Arc<Api>, std::net::SocketAddr) {
        let api = Arc::new(Api::default());
        *api.current.lock().unwrap() = key.map(str::to_owned);
        let handler_api = api.clone();
        let addr = support::serve(move |req| {
            let api = handler_api.clone();
            async move {
                let token = support::bearer(&req).unwrap_or_default();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                api.seen.lock().unwrap().push((token.clone(), body.clone()));
                if api.current.lock().unwrap().as_deref() == Some(token.as_str()) {
                    support::respond(200, body)
                } else {
                    support::respond(401, r#"{"error":{"message":"Invalid API key"}}"#)
                }
            }
        })
        .await;
        (api, addr)
    }
    fn revoke_all_but(&self, key: &str) {
        *self.current.lock().unwrap() = Some(key.to_owned());
    }
    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn tokens(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

fn post(addr: std::net::SocketAddr, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_rotated_key_file_heals_through_one_401_with_the_same_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    std::fs::write(&path, format!("{KEY_A}\n")).unwrap();
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let (events, hook) = support::recorder();
    let layer = BearerAuthLayer::new(FileKeySource::new(&path)).on_rotate(hook);
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());

    let res = client.clone().oneshot(post(addr, "first")).await.unwrap();
    assert_eq!(res.status(), 200);

    // Rotate: new file content, the old key revoked at once.
    std::fs::write(&path, format!("{KEY_B}\n")).unwrap();
    api.revoke_all_but(KEY_B);

    let res = client.clone().oneshot(post(addr, "second")).await.unwrap();
    assert_eq!(
        res.status(),
        200,
        "the caller sees only the replay's answer"
    );
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "second"
    );
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1], (KEY_A.to_owned(), Bytes::from("second")));
    assert_eq!(
        seen[2],
        (KEY_B.to_owned(), Bytes::from("second")),
        "same body replayed"
    );

    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].reason(), RotationReason::Initial);
    assert_eq!(events[1].reason(), RotationReason::Rejected);
    assert_eq!(events[1].old_fingerprint(), Some("sk-…AAAA"));
    assert_eq!(events[1].new_fingerprint(), "sk-…BBBB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_requests_with_a_revoked_key_cause_one_reload() {
    let source = Steered::new(KEY_A, None);
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::client::<Full<Bytes>>());
    client.clone().oneshot(post(addr, "warm-up")).await.unwrap();
    assert_eq!(source.loads(), 1);

    source.set(Some(KEY_B));
    api.revoke_all_but(KEY_B);
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(client.clone().oneshot(post(addr, "x"))))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(source.loads(), 2, "initial load + one reload for all 100");
    let tokens = api.tokens();
    let with_b = tokens.iter().filter(|t| *t == KEY_B).count();
    assert_eq!(
        with_b, 100,
        "each request succeeded exactly once with the new key"
    );
}

#[tokio::test]
async fn a_server_that_rejects_every_key_gets_exactly_one_retry() {
    let source = Fresh::new("sk-fresh-key-");
    let (api, addr) = Api::start(None).await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::client::<Full<Bytes>>());
    let res = client.clone().oneshot(post(addr, "x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.hits(), 2, "the original and one replay");
    let tokens = api.tokens();
    assert_ne!(tokens[0], tokens[1], "never a retry with the rejected key");
    assert_eq!(source.loads(), 2);
}

#[tokio::test]
async fn a_reload_that_gives_the_same_key_does_not_retry() {
    let source = Steered::new(KEY_A, None);
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::client::<Full<Bytes>>());
    client.clone().oneshot(post(addr, "ok")).await.unwrap();
    api.revoke_all_but(KEY_B); // revoked, but the source has nothing new yet
    let res = client.clone().oneshot(post(addr, "x")).await.unwrap();
    assert_eq!(res.status(), 401, "the original 401 goes back");
    assert_eq!(api.hits(), 2, "no replay");
    assert_eq!(source.loads(), 2, "one reload");
    // The source gave the same key back: more 401s right away do not reload again.
    for _ in 0..5 {
        let res = client.clone().oneshot(post(addr, "x")).await.unwrap();
        assert_eq!(res.status(), 401);
    }
    assert_eq!(source.loads(), 2, "no reload storm");
}

#[tokio::test]
async fn with_retry_off_the_401_goes_back_but_the_key_rotates() {
    let source = Steered::new(KEY_A, None);
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let layer = BearerAuthLayer::new(source.clone()).retry_on_unauthorized(false);
    let handle = layer.handle();
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());
    client.clone().oneshot(post(addr, "ok")).await.unwrap();
    source.set(Some(KEY_B));
    api.revoke_all_but(KEY_B);
    let res = client.clone().oneshot(post(addr, "x")).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(api.hits(), 2);
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…BBBB"));
    let res = client.clone().oneshot(post(addr, "y")).await.unwrap();
    assert_eq!(res.status(), 200, "the next request uses the new key");
}

#[tokio::test]
async fn manual_rotation_loads_now_and_reports_it() {
    let source = Steered::new(KEY_A, None);
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let (events, hook) = support::recorder();
    let layer = BearerAuthLayer::new(source.clone()).on_rotate(hook);
    let handle = layer.handle();
    assert_eq!(handle.fingerprint(), None);
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());
    client.clone().oneshot(post(addr, "a")).await.unwrap();
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…AAAA"));

    source.set(Some(KEY_B));
    api.revoke_all_but(KEY_B);
    handle.rotate().await.unwrap();
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…BBBB"));
    let last = events.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.reason(), RotationReason::Manual);
    assert_eq!(last.old_fingerprint(), Some("sk-…AAAA"));

    let res = client.clone().oneshot(post(addr, "b")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(api.tokens().last().unwrap(), KEY_B, "no 401 needed");
    assert_eq!(api.hits(), 2);

    // A failed manual rotation keeps the key in use.
    source.set(None);
    let err = handle.rotate().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable);
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…BBBB"));
}

#[cfg(unix)]
#[tokio::test]
async fn a_kubernetes_style_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The layout kubelet writes: api-key -> ..data/api-key, ..data -> ..<timestamp>/
    std::fs::create_dir(d.join("..2026_11_28_01")).unwrap();
    std::fs::write(d.join("..2026_11_28_01/api-key"), KEY_A).unwrap();
    symlink("..2026_11_28_01", d.join("..data")).unwrap();
    symlink("..data/api-key", d.join("api-key")).unwrap();

    let (api, addr) = Api::start(Some(KEY_A)).await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(FileKeySource::new(d.join("api-key"))))
        .service(support::client::<Full<Bytes>>());
    assert_eq!(
        client
            .clone()
            .oneshot(post(addr, "a"))
            .await
            .unwrap()
            .status(),
        200
    );

    // The atomic swap: new timestamped dir, new ..data link renamed over the old one.
    std::fs::create_dir(d.join("..2026_11_28_02")).unwrap();
    std::fs::write(d.join("..2026_11_28_02/api-key"), KEY_B).unwrap();
    symlink("..2026_11_28_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_11_28_01")).unwrap();
    api.revoke_all_but(KEY_B);

    assert_eq!(
        client
            .clone()
            .oneshot(post(addr, "b"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(api.tokens(), [KEY_A, KEY_A, KEY_B]);
}

fn streaming(chunks: usize, chunk_len: usize, cap: usize) -> ReplayableBody {
    let frames = (0..chunks).map(move |i| {
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'a' + i as u8; chunk_len])))
    });
    ReplayableBody::with_cap(StreamBody::new(futures_util::stream::iter(frames)), cap)
}

#[tokio::test]
async fn a_streaming_body_under_the_cap_is_replayed() {
    let source = Steered::new(KEY_A, None);
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::client::<ReplayableBody>());
    let first = Request::post(format!("http://{addr}/"))
        .body(streaming(1, 10, 1024))
        .unwrap();
    assert_eq!(client.clone().oneshot(first).await.unwrap().status(), 200);

    source.set(Some(KEY_B));
    api.revoke_all_but(KEY_B);
    let req = Request::post(format!("http://{addr}/"))
        .body(streaming(4, 100, 1024))
        .unwrap();
    let res = client.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].1.len(), 400);
    assert_eq!(
        seen[1].1, seen[2].1,
        "the replay carries the same 400 bytes"
    );
    assert_eq!(seen[2].0, KEY_B);
}

#[tokio::test]
async fn a_streaming_body_over_the_cap_is_not_replayed_but_the_key_rotates() {
    let source = Steered::new(KEY_A, None);
    let (api, addr) = Api::start(Some(KEY_A)).await;
    let layer = BearerAuthLayer::new(source.clone());
    let handle = layer.handle();
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<ReplayableBody>());
    let first = Request::post(format!("http://{addr}/"))
        .body(streaming(1, 10, 64))
        .unwrap();
    assert_eq!(client.clone().oneshot(first).await.unwrap().status(), 200);

    source.set(Some(KEY_B));
    api.revoke_all_but(KEY_B);
    let req = Request::post(format!("http://{addr}/"))
        .body(streaming(4, 100, 64))
        .unwrap();
    let res = client.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 401, "400 bytes over a 64-byte cap: no replay");
    assert_eq!(api.hits(), 2);
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…BBBB"));
}

#[tokio::test]
async fn a_static_source_hands_a_401_back_without_reloading() {
    let source = Counted::new(tower_bearer::StaticKey::new(ApiKey::new(KEY_A).unwrap()));
    // Through `Arc<dyn KeySource>`: the blanket impls pass `is_static` on.
    let dynamic: Arc<dyn KeySource> = source.clone();
    assert!(dynamic.is_static());
    let (api, addr) = Api::start(Some(KEY_B)).await; // rejects the static key
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(dynamic))
        .service(support::client::<Full<Bytes>>());
    for _ in 0..3 {
        let res = client.clone().oneshot(post(addr, "x")).await.unwrap();
        assert_eq!(res.status(), 401);
    }
    assert_eq!(api.hits(), 3, "no replays");
    assert_eq!(source.loads(), 1, "no reloads: only the first load");
}

//! Tests of the service: clones, their state, and the replay's last checks.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::{ApiKey, BearerAuthLayer, KeyFuture, KeySource};

/// Key `n` on the n-th load.
#[derive(Default)]
struct Counting(AtomicUsize);

impl KeySource for Counting {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { ApiKey::new(format!("sk-clone-test-key-{n:04}")) })
    }
}

/// Accepts only the newest key it has seen loaded (`accept`), answers 401 to any other.
fn api(
    accept: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<String>>>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<Full<Bytes>>| {
        let token = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
        seen.lock().unwrap().push(token.clone());
        let ok = *accept.lock().unwrap() == token;
        let mut res = Response::new(Full::new(Bytes::new()));
        if !ok {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok(res))
    })
}

fn req() -> Request<Full<Bytes>> {
    Request::post("https://api.example/v1/x")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

#[tokio::test]
async fn clones_of_a_template_that_never_sent_replay_after_a_401() {
    let accept = Arc::new(Mutex::new("Bearer sk-clone-test-key-0001".to_owned()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = BearerAuthLayer::new(Counting::default());
    let template = layer.layer(api(accept.clone(), seen.clone()));
    // The first clone loads the key (slow path); later ones start from the cache's key.
    for _ in 0..3 {
        let res = template.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The server moves to key 2: a fresh clone's request gets a 401, reloads, replays.
    *accept.lock().unwrap() = "Bearer sk-clone-test-key-0002".to_owned();
    let res = template.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen[3].ends_with("0001") && seen[4].ends_with("0002"));
    }
    // And the next fresh clone starts on the new key: no 401 on the way.
    let res = template.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(seen[5].ends_with("0002"));
}

#[tokio::test]
async fn a_long_lived_clone_makes_its_own_copy_and_follows_rotations() {
    let accept = Arc::new(Mutex::new("Bearer sk-clone-test-key-0001".to_owned()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = BearerAuthLayer::new(Counting::default());
    let mut parent = layer.layer(api(accept.clone(), seen.clone()));
    parent.ready().await.unwrap().call(req()).await.unwrap();
    let mut clone = parent.clone();
    assert!(
        Arc::ptr_eq(&clone.shared, &parent.shared),
        "borrows at first"
    );
    for i in 0..(BORROW_FOR + 2) {
        let res = clone.ready().await.unwrap().call(req()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
    }
    assert!(
        !Arc::ptr_eq(&clone.shared, &parent.shared),
        "its own after a few"
    );
    assert_eq!(clone.borrowing, 0);
    // A rotation reaches the detached clone and its parent.
    *accept.lock().unwrap() = "Bearer sk-clone-test-key-0002".to_owned();
    layer.handle().rotate().await.unwrap();
    for svc in [&mut clone, &mut parent] {
        let res = svc.ready().await.unwrap().call(req()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(seen.lock().unwrap().last().unwrap().ends_with("0002"));
    }
    // A clone of a clone works too, and its 401 replays with a service of its own.
    *accept.lock().unwrap() = "Bearer sk-clone-test-key-0003".to_owned();
    let res = clone.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(seen.lock().unwrap().last().unwrap().ends_with("0003"));
}

/// A copy the scope refuses (which no request the layer sent can give) is not replayed,
/// and the skip is reported: `SkipReason::CopyUnusable`.
#[tokio::test]
async fn a_copy_out_of_scope_is_not_replayed_and_is_reported() {
    use crate::event::{KeyEvent, SkipReason};
    use crate::replay::ReplayCopy;

    let accept = Arc::new(Mutex::new("Bearer sk-clone-test-key-0001".to_owned()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let skips = Arc::new(Mutex::new(Vec::new()));
    let sink = skips.clone();
    let layer = BearerAuthLayer::new(Counting::default()).on_event(move |event| {
        if let KeyEvent::ReplaySkipped(skip) = event {
            sink.lock().unwrap().push(skip.reason());
        }
    });
    let mut svc = layer.layer(api(accept, seen.clone()));
    // The first request loads the key in its future; the second takes it into the clone.
    for _ in 0..2 {
        svc.ready().await.unwrap().call(req()).await.unwrap();
    }
    let generation = svc.local.generation;
    assert_ne!(generation, 0);
    // The key it was sent with is rotated out: a 401 to it has a new key to replay with.
    layer.handle().rotate().await.unwrap();
    // A request the scope refuses (clear text to a remote host), copied as if it was sent.
    let off_scope = Request::get("http://remote.example/v1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(svc.shared.config.scope.check(&off_scope).is_err());
    let sent =
        crate::auth::state::Sent::new(svc.shared.clone(), generation, ReplayCopy::of(&off_scope));
    let reloaded = sent.reload().await;
    assert!(reloaded.is_ok(), "a new key to replay with");
    assert!(sent.into_replay(reloaded).is_none(), "not replayed");
    assert_eq!(*skips.lock().unwrap(), [SkipReason::CopyUnusable]);
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "nothing sent after the two requests"
    );
}

#[tokio::test]
async fn a_clone_made_before_a_rotation_sends_the_new_key() {
    let accept = Arc::new(Mutex::new("Bearer sk-clone-test-key-0001".to_owned()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = BearerAuthLayer::new(Counting::default());
    let mut parent = layer.layer(api(accept.clone(), seen.clone()));
    parent.ready().await.unwrap().call(req()).await.unwrap();
    let clone = parent.clone();
    *accept.lock().unwrap() = "Bearer sk-clone-test-key-0002".to_owned();
    layer.handle().rotate().await.unwrap();
    let res = clone.oneshot(req()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "no 401 on the way: {seen:?}");
    assert!(seen[1].ends_with("0002"));
}

//! The core layer over real hyper on loopback: header, sensitivity, sources, scoping, the
//! caller's header, single-flight first load, error types.

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use support::sources::Steered;
use support::InnerFailure;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    azerion, ApiKey, BearerAuthLayer, EnvKeySource, KeyError, KeyErrorKind, KeySource, ScopeError,
    StaticKey,
};

const KEY: &str = "sk-test-0123456789abcdefXYZ1";

/// A loopback server that echoes the bearer token it got, and counts hits.
async fn echo_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = support::serve(move |req| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let token = support::bearer(&req).unwrap_or_else(|| "<none>".into());
            support::respond(200, token)
        }
    })
    .await;
    (addr, hits)
}

async fn body_text(res: Response<hyper::body::Incoming>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn adds_the_bearer_header_over_real_http() {
    let (addr, _) = echo_server().await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticKey::new(
            ApiKey::new(KEY).unwrap(),
        )))
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/v1/models"))
        .body(Empty::new())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(body_text(res).await, KEY);
}

#[tokio::test]
async fn the_header_is_marked_sensitive() {
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticKey::new(
            ApiKey::new(KEY).unwrap(),
        )))
        .service(service_fn(move |req: Request<Empty<Bytes>>| {
            *seen2.lock().unwrap() = req.headers().get("authorization").cloned();
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        }));
    let mut svc = svc;
    for _ in 0..3 {
        // first call loads, later ones take the cached path
        let req = Request::get("https://api.azerion.ai/v1/models")
            .body(Empty::new())
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
        let header = seen.lock().unwrap().take().expect("header sent");
        assert!(header.is_sensitive());
        assert_eq!(header, format!("Bearer {KEY}").as_str());
        assert!(!format!("{header:?}").contains("0123456789"));
    }
}

#[tokio::test]
async fn env_source_over_real_http() {
    let _env = support::env_lock().await;
    std::env::set_var("TB_TEST_ENV_KEY", KEY);
    let (addr, _) = echo_server().await;
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(EnvKeySource::new("TB_TEST_ENV_KEY")))
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(body_text(res).await, KEY);
}

async fn key_error_of(source: impl KeySource, addr: std::net::SocketAddr) -> KeyError {
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source))
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    err.downcast_ref::<KeyError>()
        .unwrap_or_else(|| panic!("not a KeyError: {err}"))
        .clone()
}

#[tokio::test]
async fn env_errors_name_the_variable_and_send_nothing() {
    let _env = support::env_lock().await;
    let (addr, hits) = echo_server().await;
    std::env::remove_var("TB_TEST_UNSET");
    let err = key_error_of(EnvKeySource::new("TB_TEST_UNSET"), addr).await;
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert_eq!(
        err.to_string(),
        "environment variable TB_TEST_UNSET: is not set"
    );

    std::env::set_var("TB_TEST_EMPTY", "");
    let err = key_error_of(EnvKeySource::new("TB_TEST_EMPTY"), addr).await;
    assert!(err.to_string().contains("TB_TEST_EMPTY"), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");

    std::env::set_var("TB_TEST_BAD", "sk-has a-space-0123456789");
    let err = key_error_of(EnvKeySource::new("TB_TEST_BAD"), addr).await;
    assert_eq!(err.kind(), KeyErrorKind::Invalid);
    assert!(err.to_string().contains("TB_TEST_BAD"), "{err}");
    assert!(err.to_string().contains("space"), "{err}");
    assert!(!err.to_string().contains("0123456789"), "{err}");

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::env::set_var(
            "TB_TEST_NOT_UNICODE",
            std::ffi::OsStr::from_bytes(b"sk-\xff\xfe"),
        );
        let err = key_error_of(EnvKeySource::new("TB_TEST_NOT_UNICODE"), addr).await;
        assert!(err.to_string().contains("not valid Unicode"), "{err}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request went out without a key"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_first_calls_load_once() {
    let (addr, hits) = echo_server().await;
    let source = Steered::new(KEY, None);
    source.gate();
    let layer = BearerAuthLayer::new(source.clone());
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Empty<Bytes>>());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("http://{addr}/"))
                .body(Empty::new())
                .unwrap();
            client.oneshot(req).await
        }));
    }
    // Let every task reach the load before it finishes.
    source.started(1).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    source.open_all();
    for task in tasks {
        let res = task.await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(source.loads(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn a_failed_first_load_is_shared_by_its_waiters() {
    let source = Steered::new(KEY, None);
    source.fail_with(KeyError::new(KeyErrorKind::Unavailable, "down").with_origin("test source"));
    source.gate();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(service_fn(|_: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(svc.oneshot(Request::get("https://x.test/").body(Empty::new()).unwrap()))
        })
        .collect();
    source.started(1).await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    source.open_all();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "test source: down");
    }
    assert_eq!(source.loads(), 1, "one load for all waiters");
}

#[tokio::test]
async fn the_callers_own_header_wins_unless_overridden() {
    let (addr, _) = echo_server().await;
    let own = "caller-token-000000000000";
    for (override_existing, expected) in [(false, own), (true, KEY)] {
        let client = ServiceBuilder::new()
            .layer(
                BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()))
                    .override_existing(override_existing),
            )
            .service(support::client::<Empty<Bytes>>());
        let req = Request::get(format!("http://{addr}/"))
            .header("authorization", format!("Bearer {own}"))
            .body(Empty::new())
            .unwrap();
        let res = client.oneshot(req).await.unwrap();
        assert_eq!(body_text(res).await, expected);
    }
}

#[tokio::test]
async fn cleartext_to_a_remote_host_is_refused() {
    let source = Steered::new(KEY, None);
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let inner = service_fn(move |_: Request<Empty<Bytes>>| {
        calls2.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(inner.clone());
    let req = Request::get("http://api.azerion.ai/v1/models")
        .body(Empty::new())
        .unwrap();
    let err = svc.clone().oneshot(req).await.unwrap_err();
    let refused = err.downcast_ref::<ScopeError>().expect("a ScopeError");
    assert!(refused.is_cleartext());
    assert_eq!(refused.host(), Some("api.azerion.ai"));
    assert!(err.to_string().contains("http://"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was sent");
    assert_eq!(source.loads(), 0, "no key was even loaded");

    // Loopback is always fine; anything else only when allowed.
    for uri in [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://[::1]:9/",
    ] {
        let req = Request::get(uri).body(Empty::new()).unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let open = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()).allow_insecure_http(true))
        .service(inner);
    let req = Request::get("http://api.azerion.ai/v1/models")
        .body(Empty::new())
        .unwrap();
    open.oneshot(req).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn host_scope_refuses_other_hosts_and_sends_nothing() {
    let (addr, hits) = echo_server().await;
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()))
                .restrict_to_hosts(["api.azerion.ai"]),
        )
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    let refused = err.downcast_ref::<ScopeError>().expect("a ScopeError");
    assert_eq!(refused.host(), Some("127.0.0.1"));
    assert!(err.to_string().contains("127.0.0.1"));
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Scoped to the loopback host, it goes through.
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()))
                .restrict_to_hosts(["127.0.0.1"]),
        )
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    assert_eq!(body_text(client.oneshot(req).await.unwrap()).await, KEY);
}

#[tokio::test]
async fn azerion_preset_reads_its_variable_and_stays_on_its_host() {
    let _env = support::env_lock().await;
    std::env::set_var(azerion::API_KEY_VAR, KEY);
    assert_eq!(azerion::BASE_URL, "https://api.azerion.ai/v1");
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(azerion::layer())
        .service(service_fn(move |req: Request<Empty<Bytes>>| {
            *seen2.lock().unwrap() = req.headers().get("authorization").cloned();
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        }));
    let req = Request::get(format!("{}/models", azerion::BASE_URL))
        .body(Empty::new())
        .unwrap();
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().take().unwrap(),
        format!("Bearer {KEY}").as_str()
    );

    let req = Request::get("https://api.openai.com/v1/models")
        .body(Empty::new())
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.is::<ScopeError>());
    assert!(err.to_string().contains("api.openai.com"));
}

#[tokio::test]
async fn arc_dyn_key_source_works() {
    let source: Arc<dyn KeySource> = Arc::new(StaticKey::new(ApiKey::new(KEY).unwrap()));
    let boxed: Box<dyn KeySource> = Box::new(StaticKey::new(ApiKey::new(KEY).unwrap()));
    let (addr, _) = echo_server().await;
    for layer in [BearerAuthLayer::new(source), BearerAuthLayer::new(boxed)] {
        let client = ServiceBuilder::new()
            .layer(layer)
            .service(support::client::<Empty<Bytes>>());
        let req = Request::get(format!("http://{addr}/"))
            .body(Empty::new())
            .unwrap();
        assert_eq!(body_text(client.oneshot(req).await.unwrap()).await, KEY);
    }
}

#[tokio::test]
async fn the_inner_error_passes_through() {
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticKey::new(
            ApiKey::new(KEY).unwrap(),
        )))
        .service(service_fn(|_: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(InnerFailure)
        }));
    let req = Request::get("https://api.azerion.ai/")
        .body(Full::default())
        .unwrap();
    let err: BoxError = svc.oneshot(req).await.unwrap_err();
    assert!(err.downcast_ref::<InnerFailure>().is_some(), "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_the_clients_error() {
    // A port that nothing listens on: bind then drop.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(StaticKey::new(
            ApiKey::new(KEY).unwrap(),
        )))
        .service(support::client::<Empty<Bytes>>());
    let req = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert!(err.is::<hyper_util::client::legacy::Error>(), "{err:?}");
    assert!(!format!("{err:?}").contains("0123456789"));
}

#[tokio::test]
async fn debug_of_every_public_type_hides_the_key() {
    let key = ApiKey::new(KEY).unwrap();
    let layer = BearerAuthLayer::new(StaticKey::new(key.clone())).on_rotate(|_| {});
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }));
    let req = Request::get("https://api.azerion.ai/")
        .body(Empty::new())
        .unwrap();
    let fut = svc.ready().await.unwrap().call(req);
    let future_text = format!("{fut:?}");
    assert_eq!(future_text, "ResponseFuture { state: \"loading the key\" }");
    fut.await.unwrap();
    let texts = [
        future_text,
        format!("{key:?}"),
        format!("{key}"),
        format!("{layer:?}"),
        format!("{handle:?}"),
        format!("{:?}", StaticKey::new(key.clone())),
        format!("{:?}", EnvKeySource::azerion()),
        format!("{:?}", tower_bearer::FileKeySource::new("/tmp/k")),
        format!("{:?}", KeyError::new(KeyErrorKind::Other, "x")),
        format!("{:?}", ApiKey::new("Bearer x").unwrap_err()),
        format!("{svc:?}"),
    ];
    for text in texts {
        assert!(!text.contains("0123456789"), "leak in {text}");
    }
    assert_eq!(handle.fingerprint().as_deref(), Some("sk-…XYZ1"));
}

//! Secret hygiene across a full run: every `tracing` event at TRACE level, and the `Debug` and
//! `Display` of every public type and every error, must not show any key, nor any run of more
//! than 7 of its characters (the fingerprint shows at most 3 + 4).
//!
//! The run: a first load, a 401 answered by a rotation and a replay, a refresh that fails and is
//! served stale, a manual rotation that fails, the env and file sources (one file readable by
//! others, one holding junk), a request out of scope, and an error-mapping run with a transient
//! retry where the server echoes the key in its 401 and 429 bodies; with feature `vault`, a key
//! read from the fixture Vault, then Vault refusing, failing with a body that echoes the token
//! and the key, holding an invalid key, and a configuration refused at build. Current-thread
//! runtime, so every event lands in this test's dispatcher.

#![cfg(all(feature = "env", feature = "file"))]

mod support;
#[cfg(feature = "vault")]
#[path = "support/vault_server.rs"]
mod vault_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use support::sources::Steered;
use tower::retry::Policy;
use tower::{service_fn, BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_bearer::{
    ApiError, ApiErrorKind, ApiKey, BearerAuthLayer, EnvKeySource, ErrorMapping, ErrorMappingLayer,
    FileKeySource, KeyError, KeyErrorKind, KeySource, ReplayableBody, RotationEvent,
    RotationReason, ScopeError, StaticKey, TransientRetryLayer, TransientRetryPolicy,
};

// Keys with punctuation in them: the redaction of echoed keys must not stop at a `!` or `#`.
const KEY_A: &str = "sk-hyg!A7q2Zp9Lm4Xc8Vb1Nd6";
const KEY_B: &str = "sk-hyg#B3w8Ks5Jh2Qe7Rt4Yu9";
const ENV_KEY: &str = "sk-env-Q9w8E7r6T5y4U3i2O1p0";
const FILE_KEY: &str = "sk-file-M1n2B3v4C5x6Z7l8K9j0";
const VAULT_KEY: &str = "sk-vault-H4g5F6d7S8a9P0o1I2u3";

/// Every secret of the run: the keys, and (with feature `vault`) the Vault token.
fn secrets() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut all = vec![KEY_A, KEY_B, ENV_KEY, FILE_KEY, VAULT_KEY];
    #[cfg(feature = "vault")]
    all.push(vault_server::ROOT_TOKEN);
    all
}

/// Whether `text` shows any run of 8 consecutive characters of `secret`, as it is or as
/// `Debug` escapes it.
fn shows_more_than_7_chars(text: &str, secret: &str) -> bool {
    let escaped = format!("{secret:?}");
    [secret, &escaped[1..escaped.len() - 1]].iter().any(|s| {
        let chars: Vec<char> = s.chars().collect();
        chars
            .windows(8)
            .any(|w| text.contains(&w.iter().collect::<String>()))
    })
}

/// The failure of the steered source: its store answered 503.
fn store_answered_503() -> KeyError {
    KeyError::new(KeyErrorKind::Unavailable, "secret store answered 503")
        .with_origin("steered source")
}

/// A loopback API: `/ok` needs the accepted key; `/echo401` and `/echo429` answer with a body
/// that echoes whatever key came, as careless servers do.
async fn api(accepted: Arc<Mutex<&'static str>>) -> std::net::SocketAddr {
    support::serve(move |req: Request<Incoming>| {
        let accepted = accepted.clone();
        async move {
            let sent = support::bearer(&req).unwrap_or_default();
            let echo = |status: u16| {
                let body = serde_json::json!({"error": {
                    "message": format!("Incorrect API key provided: {sent}. Header: Bearer {sent}"),
                    "type": "invalid_request_error",
                    "code": sent,
                    "param": format!("authorization={sent}"),
                }});
                let mut res = support::respond(status, body.to_string());
                res.headers_mut()
                    .insert("retry-after-ms", "1".parse().unwrap());
                res.headers_mut().insert(
                    "x-echo-authorization",
                    format!("Bearer {sent}").parse().unwrap(),
                );
                res.headers_mut()
                    .insert("set-cookie", format!("k={sent}").parse().unwrap());
                res
            };
            match req.uri().path() {
                "/echo401" => echo(401),
                "/echo429" => echo(429),
                _ if sent == *accepted.lock().unwrap() => support::respond(200, "ok"),
                _ => echo(401),
            }
        }
    })
    .await
}

fn get(addr: std::net::SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn no_key_in_any_log_line_debug_or_display() {
    // Step 7 sets and reads a variable.
    let _env = support::env_lock().await;
    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let mut shown: Vec<(&str, String)> = Vec::new();
    macro_rules! show {
        ($what:expr, $value:expr) => {{
            shown.push(($what, format!("{:?}", $value)));
            shown.push(($what, format!("{:#?}", $value)));
        }};
        ($what:expr, $value:expr, display) => {{
            show!($what, $value);
            shown.push(($what, format!("{}", $value)));
        }};
    }

    let accepted = Arc::new(Mutex::new(KEY_A));
    let addr = api(accepted.clone()).await;
    let source = Steered::new(KEY_A, None);
    let events = Arc::new(Mutex::new(Vec::<RotationEvent>::new()));
    let sink = events.clone();
    let layer = BearerAuthLayer::new(source.clone()).on_rotate(move |event| {
        tracing::info!(%event, ?event, "rotation hook");
        sink.lock().unwrap().push(event.clone());
    });
    let handle = layer.handle();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(support::client::<Full<Bytes>>());
    let post = |body: &'static str| {
        Request::post(format!("http://{addr}/ok"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };

    // 1. First load.
    let res = client.clone().oneshot(post("one")).await.unwrap();
    assert_eq!(res.status(), 200);

    // 2. The key is revoked and rotated: a 401, one reload, one replay.
    source.set(Some(KEY_B));
    *accepted.lock().unwrap() = KEY_B;
    let res = client.clone().oneshot(post("two")).await.unwrap();
    assert_eq!(res.status(), 200, "healed by the replay");

    // 3. A refresh that fails: the key is made due at once (a zero hint counts as the 1 s
    //    floor, so the test waits out that second: a deadline, not another task), the source
    //    is down, the current key is served stale.
    source.set_ttl(Some(Duration::ZERO));
    handle.rotate().await.unwrap();
    source.fail_with(store_answered_503());
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let loads = source.loads();
    let res = client.clone().oneshot(post("three")).await.unwrap();
    assert_eq!(res.status(), 200, "served stale");
    assert_eq!(source.loads(), loads + 1, "one refresh tried");

    // 4. A manual rotation that fails keeps the key, and says why.
    let err = handle.rotate().await.unwrap_err();
    show!("failed rotate", err, display);

    // 5. Error mapping with a transient retry outside: the server echoes the key in a 429
    //    (retried, then returned) and in a 401 (the source gives the same key back: no replay).
    source.set(Some(KEY_B));
    source.set_ttl(None);
    let mapped = ServiceBuilder::new()
        .layer(TransientRetryLayer::new().max_retries(1))
        .layer(ErrorMappingLayer::new())
        .layer(layer.clone())
        .service(support::client::<Empty<Bytes>>());
    for (path, kind) in [
        ("/echo429", ApiErrorKind::RateLimited),
        ("/echo401", ApiErrorKind::Unauthorized),
    ] {
        let err: BoxError = mapped.clone().oneshot(get(addr, path)).await.unwrap_err();
        let api = err.downcast_ref::<ApiError>().expect("an ApiError");
        assert_eq!(api.kind(), kind);
        assert!(
            api.message().unwrap().contains(KEY_B),
            "message() is the raw text"
        );
        show!("api error", api, display);
        show!("api error as BoxError", err, display);
    }

    // 6. No key at all: the KeyError reaches the caller through the layer.
    let failing = Steered::new(KEY_A, None);
    failing.fail_with(store_answered_503());
    let err = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(failing))
        .service(support::client::<Empty<Bytes>>())
        .oneshot(get(addr, "/ok"))
        .await
        .unwrap_err();
    assert!(err.is::<KeyError>());
    show!("key error through the layer", err, display);

    // 7. The env source, good and bad.
    let var = "TOWER_BEARER_HYGIENE_KEY";
    std::env::set_var(var, ENV_KEY);
    *accepted.lock().unwrap() = ENV_KEY;
    let env_layer = BearerAuthLayer::new(EnvKeySource::new(var));
    let res = ServiceBuilder::new()
        .layer(env_layer.clone())
        .service(support::client::<Empty<Bytes>>())
        .oneshot(get(addr, "/ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    show!("env layer", env_layer);
    std::env::set_var(var, format!("{ENV_KEY} trailing"));
    let err = EnvKeySource::new(var).load().await.unwrap_err();
    assert!(err.to_string().contains("space"));
    show!("env key error", err, display);
    std::env::remove_var(var);

    // 8. The file source: a file others can read (a warning), then junk in the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    std::fs::write(&path, format!("{FILE_KEY}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    *accepted.lock().unwrap() = FILE_KEY;
    let file_source = FileKeySource::new(&path);
    let file_layer = BearerAuthLayer::new(file_source.clone());
    let res = ServiceBuilder::new()
        .layer(file_layer.clone())
        .service(support::client::<Empty<Bytes>>())
        .oneshot(get(addr, "/ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    show!("file source", file_source);
    show!("file layer", file_layer);
    std::fs::write(&path, format!("{FILE_KEY} {FILE_KEY}\n")).unwrap();
    let err = file_layer.handle().rotate().await.unwrap_err();
    show!("file key error", err, display);
    std::fs::write(&path, format!("{FILE_KEY}\n{KEY_A}\n")).unwrap();
    let err = file_source.load().await.unwrap_err();
    show!("file key error, two lines", err, display);

    // 9. Out of scope: refused, nothing sent.
    let scoped = BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY_A).unwrap()))
        .restrict_to_hosts(["api.azerion.ai"]);
    let err = ServiceBuilder::new()
        .layer(scoped.clone())
        .service(support::client::<Empty<Bytes>>())
        .oneshot(get(addr, "/ok"))
        .await
        .unwrap_err();
    let scope = err.downcast_ref::<ScopeError>().expect("a ScopeError");
    show!("scope error", scope, display);
    show!("scoped layer", scoped);

    // 9b. Vault: a key read through the layer, then every kind of failure.
    #[cfg(feature = "vault")]
    {
        use tower_bearer::VaultKeySource;
        use vault_server::{kv2_body, Mode, VaultFixture, DENIED, ROOT_TOKEN};
        let vault = VaultFixture::start().await;
        vault.put_kv2("azerion", "api_key", VAULT_KEY);
        *accepted.lock().unwrap() = VAULT_KEY;
        let builder = VaultKeySource::builder()
            .address(vault.url())
            .token(ROOT_TOKEN)
            .mount("secret")
            .path("azerion")
            .field("api_key")
            .timeout(Duration::from_secs(10));
        show!("VaultKeySourceBuilder", builder);
        let source = builder.clone().build().unwrap();
        show!("VaultKeySource", source);
        let vault_layer = BearerAuthLayer::new(source.clone());
        let res = ServiceBuilder::new()
            .layer(vault_layer.clone())
            .service(support::client::<Empty<Bytes>>())
            .oneshot(get(addr, "/ok"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        show!("vault layer", vault_layer);
        let echo = serde_json::json!({"errors": [
            format!("token {ROOT_TOKEN} may not read {VAULT_KEY}"),
            format!("X-Vault-Token={ROOT_TOKEN}"),
        ]});
        for mode in [
            Mode::Fail(403, DENIED.to_owned()),
            Mode::Fail(500, echo.to_string()),
            Mode::Fail(503, echo.to_string()),
            Mode::Fail(
                200,
                kv2_body("api_key", &format!("{VAULT_KEY} {ROOT_TOKEN}").into()),
            ),
            Mode::Fail(200, kv2_body("other", &VAULT_KEY.into())),
        ] {
            vault.set_mode(mode);
            let err = vault_layer.handle().rotate().await.unwrap_err();
            show!("vault error", err, display);
        }
        vault.set_mode(Mode::Normal);
        vault.revoke(ROOT_TOKEN);
        let err = source.load().await.unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Denied);
        show!("vault error, token revoked", err, display);
        let err = builder
            .address("http://vault.example.com:8200")
            .build()
            .unwrap_err();
        show!("vault build error", err, display);
        show!("vault source after the run", source);
    }

    // 10. What the inner service sees: the request's Debug shows the header as sensitive.
    let seen = Arc::new(Mutex::new(String::new()));
    let seen_in = seen.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        *seen_in.lock().unwrap() = format!("{req:?}");
        async { Ok::<_, BoxError>(Response::new(Full::new(Bytes::new()))) }
    });
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    let req = Request::get("https://api.azerion.ai/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    svc.clone().oneshot(req).await.unwrap();
    let inner_view = seen.lock().unwrap().clone();
    assert!(inner_view.contains("Sensitive"), "{inner_view}");
    shown.push(("request as the inner service sees it", inner_view));

    // 11. Debug/Display of every public type, in the state the run left them in.
    let key = ApiKey::new(KEY_A)
        .unwrap()
        .refresh_after(Duration::from_secs(60));
    show!("ApiKey", key, display);
    show!("ApiKey header", key.header_value());
    show!(
        "KeyError (invalid key)",
        ApiKey::new(format!("Bearer {KEY_A}")).unwrap_err(),
        display
    );
    show!(
        "KeyError (space)",
        ApiKey::new(format!("{KEY_A} {KEY_B}")).unwrap_err(),
        display
    );
    show!(
        "KeyError (non-ASCII)",
        ApiKey::new(format!("{KEY_A}é")).unwrap_err(),
        display
    );
    show!("KeyErrorKind", KeyErrorKind::Invalid);
    show!("BearerAuthLayer", layer);
    show!("BearerAuth", client);
    show!("BearerAuth (in-process)", svc);
    show!("KeyHandle", handle);
    show!("fingerprint", handle.fingerprint());
    let events = events.lock().unwrap().clone();
    let reasons: Vec<_> = events.iter().map(RotationEvent::reason).collect();
    assert_eq!(
        reasons,
        [RotationReason::Initial, RotationReason::Rejected],
        "the stale refresh and the same-key reloads rotate nothing"
    );
    for event in &events {
        show!("RotationEvent", event, display);
        show!("RotationReason", event.reason());
    }
    show!("StaticKey", StaticKey::new(key.clone()));
    show!("EnvKeySource", EnvKeySource::azerion());
    show!("FileKeySource", FileKeySource::new(&path));
    show!("ErrorMappingLayer", ErrorMappingLayer::new());
    let mapping: ErrorMapping<_> = ErrorMappingLayer::new().layer(client.clone());
    show!("ErrorMapping", mapping);
    let api = ApiError::new(
        StatusCode::UNAUTHORIZED,
        {
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("Bearer {KEY_A}").parse().unwrap());
            h.insert("x-api-key", KEY_B.parse().unwrap());
            h
        },
        Bytes::from(format!(r#"{{"error":{{"message":"bad key {KEY_A}"}}}}"#)),
    );
    show!("ApiError (by hand)", api, display);
    show!("ApiErrorKind", api.kind(), display);
    show!("TransientRetryLayer", TransientRetryLayer::new());
    let mut policy = TransientRetryPolicy::new();
    show!("TransientRetryPolicy", policy);
    let mut req = Request::get("https://api.azerion.ai/")
        .body(Full::new(Bytes::from(KEY_A)))
        .unwrap();
    let mut result: Result<Response<Full<Bytes>>, BoxError> = Ok(support::respond(503, KEY_A));
    let delay = policy
        .retry(&mut req, &mut result)
        .expect("a 503 is retried");
    show!("RetryDelay", delay);
    show!("TransientRetryPolicy after a retry", policy);
    let mapped_future = ErrorMappingLayer::new()
        .layer(service_fn(|_: ()| async {
            Ok::<_, BoxError>(Response::new(Empty::<Bytes>::new()))
        }))
        .oneshot(());
    show!("errors::ResponseFuture", mapped_future);
    let body = ReplayableBody::new(Full::new(Bytes::from(format!("{{\"key\":\"{KEY_A}\"}}"))));
    show!("ReplayableBody", body);
    let sent = body.collect().await.unwrap().to_bytes();
    assert!(sent.len() > KEY_A.len());

    // The run did what it says: each step left its mark in the log.
    let text = logs.text();
    for expected in [
        "API key rotated",
        "rotation hook",
        "key rejected with 401",
        "replaying after 401",
        "key refresh failed; still using the current key",
        "secret store answered 503",
        "the server rejected the key and the source gave the same key back",
        "retrying after a transient failure",
        "readable by group or others",
        "sk-…1Nd6",
    ] {
        assert!(text.contains(expected), "{expected:?} not logged:\n{text}");
    }
    shown.push(("tracing output", text));

    let mut leaks = Vec::new();
    for (what, text) in &shown {
        for secret in secrets() {
            if shows_more_than_7_chars(text, secret) {
                leaks.push(format!("{what} shows {secret}: {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
    println!(
        "checked {} Debug/Display texts and {} log lines",
        shown.len(),
        shown.last().unwrap().1.lines().count()
    );
}

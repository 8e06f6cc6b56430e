//! `OAuth2ClientCredentials` against a real authorization server: oxide-auth's
//! client-credentials flow and resource flow behind axum, on loopback
//! (`tests/support/oauth2_server.rs`). The API the layer calls checks each token against the
//! tokens the server issued, so a refused, revoked or expired token is refused for real.
//!
//! Short lifetimes are real seconds (oxide-auth's clock cannot be paused): the refresh test
//! takes about 1 s, the outage test about 4 s.

#[path = "support/oauth2_server.rs"]
mod oauth2_server;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use oauth2_server::{AuthServer, Setup, CLIENT_ID, CLIENT_SECRET, SCOPE};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    BearerAuthLayer, KeyError, KeyErrorKind, KeyEvent, KeyHandle, KeySource, OAuth2ClientAuth,
    OAuth2ClientCredentials, OAuth2ClientCredentialsBuilder, RotationReason,
};

const WAIT: Duration = Duration::from_secs(10);

fn source(server: &AuthServer) -> OAuth2ClientCredentialsBuilder {
    OAuth2ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .scope(SCOPE)
}

type Client = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    tower::BoxError,
>;

/// The layer over a plain hyper-util client, and its key handle.
fn client(layer: BearerAuthLayer) -> (Client, KeyHandle) {
    let handle = layer.handle();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());
    (tower::util::BoxCloneSyncService::new(service), handle)
}

/// GETs the API; the status, or the layer's error.
async fn call(client: &Client, server: &AuthServer) -> Result<StatusCode, tower::BoxError> {
    let request = Request::get(server.api_url())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.clone().oneshot(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// The layer's error as a `KeyError`.
fn key_error(result: Result<StatusCode, tower::BoxError>) -> KeyError {
    let err = result.expect_err("the request should fail");
    err.downcast_ref::<KeyError>()
        .unwrap_or_else(|| panic!("not a KeyError: {err}"))
        .clone()
}

/// Asserts that neither the secret nor any token the server issued is in `text`.
#[track_caller]
fn secret_free(text: &str, server: &AuthServer, secrets: &[&str]) {
    assert!(
        !text.contains(CLIENT_SECRET),
        "the client secret in {text:?}"
    );
    for secret in secrets {
        assert!(!text.contains(secret), "a secret in {text:?}");
    }
    for token in server.issued() {
        assert!(!text.contains(&token), "a token in {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_make_one_token_request() {
    let server = AuthServer::start(Setup::default()).await;
    let (client, handle) = client(BearerAuthLayer::new(source(&server).build().unwrap()));
    let calls = (0..100).map(|_| call(&client, &server));
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| matches!(s, Ok(StatusCode::OK))));
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.api_ok(), 100);
    let issued = server.issued();
    assert_eq!(issued.len(), 1);
    assert!(server.api_seen().iter().all(|t| *t == issued[0]));
    // The token's expiry is the server's expires_in (3599 or 3600 s), counted from the request.
    let left = handle
        .expiry()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

/// Steady traffic, 10 requests a second, each answered 200, until `done` says so; panics
/// after [`WAIT`]. Refreshes are started by requests past a key's refresh point (the layer
/// has no background reload), so a test of them needs traffic.
async fn traffic_until(client: &Client, server: &AuthServer, mut done: impl FnMut() -> bool) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let give_up = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "not done within {WAIT:?}"
        );
        tick.tick().await;
        assert_eq!(call(client, server).await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires() {
    // expires_in 2: the layer refreshes 1 s in.
    let server = AuthServer::start(Setup {
        lifetime: Duration::from_secs(3),
        ..Setup::default()
    })
    .await;
    let (client, handle) = client(BearerAuthLayer::new(source(&server).build().unwrap()));
    traffic_until(&client, &server, || server.token_requests() >= 2).await;
    let requests = server.requests();
    let (first, first_dies) = requests[0].issued.clone().unwrap();
    assert!(
        requests[1].at < first_dies,
        "the second token request came {:?} after the first token died",
        requests[1].at - first_dies
    );
    let (second, _) = requests[1].issued.clone().unwrap();
    assert_ne!(first, second);
    // The next request goes with the new token (a request may have raced the refresh).
    let before = server.api_seen().len();
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);
    let seen = server.api_seen();
    assert_eq!(seen[before], second);
    assert!(seen[..before].iter().all(|t| *t == first || *t == second));
    assert!(seen[..before].contains(&first));
    assert_eq!(
        server.api_refused(),
        0,
        "no request ever went with a dead token"
    );
    assert_eq!(handle.status().loads(), 2);
}

#[tokio::test]
async fn a_revoked_token_gets_one_new_token_and_the_request_is_replayed() {
    let server = AuthServer::start(Setup::default()).await;
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let sink = reasons.clone();
    let layer = BearerAuthLayer::new(source(&server).build().unwrap())
        .on_rotate(move |e| sink.lock().unwrap().push(e.reason()));
    let (client, _) = client(layer);
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);
    let first = server.issued()[0].clone();
    server.revoke(&first);
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);
    assert_eq!(server.token_requests(), 2);
    let second = server.issued()[1].clone();
    assert_eq!(server.api_seen(), vec![first.clone(), first, second]);
    assert_eq!((server.api_ok(), server.api_refused()), (2, 1));
    assert_eq!(
        *reasons.lock().unwrap(),
        [RotationReason::Initial, RotationReason::Rejected]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_secret_is_denied_with_the_servers_code() {
    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let server = AuthServer::start(Setup::default()).await;
    let wrong = "WrongSecretWrongSecret42";
    let built = source(&server).client_secret(wrong).build().unwrap();
    let err = built.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    let msg = err.to_string();
    let origin = format!(
        "oauth2 token endpoint {} (client {CLIENT_ID})",
        server.token_url()
    );
    assert!(msg.starts_with(&origin), "{msg}");
    assert!(msg.contains("(invalid_client)"), "{msg}");
    assert!(msg.contains("HTTP 401"), "{msg}");
    // Through the layer: the request fails with the same error, and nothing reaches the API.
    let (client, handle) = client(BearerAuthLayer::new(built.clone()));
    let err = key_error(call(&client, &server).await);
    assert_eq!(err.kind(), KeyErrorKind::Denied);
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert_eq!(server.api_seen().len(), 0);
    let everything = format!(
        "{err} {err:?} {built:?} {:?} {:?} {}",
        handle.status(),
        source(&server).client_secret(wrong),
        logs.text()
    );
    secret_free(&everything, &server, &[wrong]);
    assert!(!logs.text().is_empty(), "the failure was logged");
}

#[tokio::test]
async fn a_rotated_secret_file_is_picked_up() {
    let server = AuthServer::start(Setup::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client-secret");
    std::fs::write(&file, format!("{CLIENT_SECRET}\n")).unwrap();
    let source = source(&server).client_secret_file(&file).build().unwrap();
    let (client, handle) = client(BearerAuthLayer::new(source));
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);

    // The server rotates first: the file's secret is now refused.
    let rotated = "N3wSecretAfterRotation0";
    server.rotate_secret(rotated);
    let err = handle.rotate().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert_eq!(
        call(&client, &server).await.unwrap(),
        StatusCode::OK,
        "the old token still works"
    );

    // Then the file: the next load reads it.
    std::fs::write(&file, rotated).unwrap();
    handle.rotate().await.unwrap();
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);
    let issued = server.issued();
    assert_eq!(issued.len(), 2);
    assert_eq!(server.api_seen().last(), Some(&issued[1]));
    let basic = server.requests()[2].authorization.clone().unwrap();
    assert_eq!(
        basic,
        format!("Basic {}", base64(&format!("{CLIENT_ID}:{rotated}")))
    );
    secret_free(&format!("{err} {err:?}"), &server, &[rotated]);
}

#[tokio::test]
async fn with_the_endpoint_down_the_valid_token_is_used_until_it_expires_then_expired() {
    // expires_in 4: the layer refreshes 2 s in; the token expires 4 s in.
    let server = AuthServer::start(Setup {
        lifetime: Duration::from_secs(5),
        ..Setup::default()
    })
    .await;
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sink = failures.clone();
    let layer = BearerAuthLayer::new(source(&server).build().unwrap()).on_event(move |e| {
        if let KeyEvent::LoadFailed(f) = e {
            sink.lock()
                .unwrap()
                .push((f.error().clone(), f.serving_stale()));
        }
    });
    let (client, handle) = client(layer);
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);
    let token = server.issued()[0].clone();
    server.take_token_endpoint_down();

    // The refresh fails; the token is still good, and still sent.
    traffic_until(&client, &server, || !failures.lock().unwrap().is_empty()).await;
    let (error, serving_stale) = failures.lock().unwrap()[0].clone();
    assert_eq!(error.kind(), KeyErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("cannot connect"), "{error}");
    assert!(serving_stale);
    let expiry = handle.expiry().unwrap();
    assert!(
        SystemTime::now() < expiry,
        "the refresh failed after the expiry"
    );
    assert_eq!(call(&client, &server).await.unwrap(), StatusCode::OK);
    let seen = server.api_seen();
    assert!(seen.len() >= 2 && seen.iter().all(|t| *t == token));

    // Past the expiry (real time: oxide-auth's clock is the system's): Expired, naming why no
    // new token came, and nothing sent.
    let wait = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let err = key_error(call(&client, &server).await);
    assert_eq!(err.kind(), KeyErrorKind::Expired, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert_eq!(server.api_seen().len(), seen.len());
    assert_eq!(server.token_requests(), 1);
    assert_eq!(server.api_refused(), 0);
}

#[tokio::test]
async fn credentials_in_the_body_scopes_and_params_reach_the_server() {
    let server = AuthServer::start(Setup {
        credentials_in_body: true,
        secret: "p@ss w/rd&more=+%".into(),
        ..Setup::default()
    })
    .await;
    let source = source(&server)
        .client_secret("p@ss w/rd&more=+%")
        .client_auth(OAuth2ClientAuth::RequestBody)
        .scope("reports.read")
        .param("audience", "https://api.example.com/")
        .param("resource", "urn:a")
        .param("resource", "urn:b")
        .build()
        .unwrap();
    let key = source.load().await.unwrap();
    assert_eq!(key.expose_secret(), server.issued()[0]);
    let request = &server.requests()[0];
    assert_eq!(request.authorization, None);
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(&str, &str)> = request
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [
            ("grant_type", "client_credentials"),
            ("scope", "invoices reports.read"),
            ("audience", "https://api.example.com/"),
            ("resource", "urn:a"),
            ("resource", "urn:b"),
            ("client_id", CLIENT_ID),
            ("client_secret", "p@ss w/rd&more=+%"),
        ]
    );
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_first() {
    let server = AuthServer::start(Setup::default()).await;
    let source = source(&server)
        .client_secret("p@ss w/rd:1")
        .build()
        .unwrap();
    // oxide-auth compares the Basic password as sent, so it refuses the encoded form of a
    // secret with such characters (`OAuth2ClientAuth::Basic` says so); what matters here is
    // what went on the wire.
    let _ = source.load().await;
    let basic = server.requests()[0].authorization.clone().unwrap();
    assert_eq!(
        basic,
        format!(
            "Basic {}",
            base64(&format!("{CLIENT_ID}:p%40ss+w%2Frd%3A1"))
        )
    );
    let form = &server.requests()[0].form;
    assert!(form
        .iter()
        .all(|(k, _)| k != "client_secret" && k != "client_id"));
}

#[tokio::test]
async fn refusals_and_outages_have_their_kinds() {
    let server = AuthServer::start(Setup::default()).await;
    // The server takes credentials by Basic only: in the body they are an invalid request.
    let err = source(&server)
        .client_auth(OAuth2ClientAuth::RequestBody)
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Config, "{err}");
    assert!(err.to_string().contains("(invalid_request)"), "{err}");
    // An unknown client.
    let err = source(&server)
        .client_id("nobody")
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    // 503 with Retry-After, 429 without.
    server.fail_with(503, Some("7"));
    let err = source(&server).build().unwrap().load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("down for maintenance"), "{err}");
    server.fail_with(429, None);
    let err = source(&server).build().unwrap().load().await.unwrap_err();
    assert_eq!(
        (err.kind(), err.retry_after()),
        (KeyErrorKind::Unavailable, None)
    );
    server.recover();
    source(&server).build().unwrap().load().await.unwrap();
    // Nothing listening.
    let closed = support::closed_port().await;
    let err = OAuth2ClientCredentials::builder()
        .token_url(format!("http://{closed}/oauth2/token"))
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn a_handle_reports_the_source() {
    let server = AuthServer::start(Setup::default()).await;
    let source = source(&server).build().unwrap();
    assert_eq!(
        source.describe().unwrap(),
        format!(
            "oauth2 token endpoint {} (client {CLIENT_ID})",
            server.token_url()
        )
    );
    let layer = BearerAuthLayer::new(source);
    let handle = layer.handle();
    handle.ready().await.unwrap();
    assert_eq!(server.token_requests(), 1);
    let mut service = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());
    let request = Request::get(server.api_url())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn over_https_with_a_private_ca() {
    let server = AuthServer::start(Setup {
        tls: true,
        ..Setup::default()
    })
    .await;
    assert!(server.token_url().starts_with("https://127.0.0.1:"));
    let key = source(&server)
        .ca_cert(AuthServer::ca_cert())
        .build()
        .unwrap()
        .load()
        .await
        .unwrap();
    assert_eq!(key.expose_secret(), server.issued()[0]);
    // Without the CA, the public roots do not know the certificate.
    let err = source(&server).build().unwrap().load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn the_secret_from_a_variable_is_read_at_each_load() {
    let _env = support::env_lock().await;
    let var = "TOWER_BEARER_TEST_OAUTH2_CLIENT_SECRET";
    let server = AuthServer::start(Setup::default()).await;
    let source = source(&server).client_secret_env(var).build().unwrap();
    std::env::remove_var(var);
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("client secret variable {var}: is not set")),
        "{err}"
    );
    assert_eq!(server.token_requests(), 0);
    std::env::set_var(var, CLIENT_SECRET);
    source.load().await.unwrap();
    std::env::set_var(var, "NotTheSecretAnyMore");
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    std::env::remove_var(var);
    secret_free(
        &format!("{err} {err:?} {source:?}"),
        &server,
        &["NotTheSecretAnyMore"],
    );
}

#[test]
fn clear_text_to_another_host_is_refused_at_build() {
    let err = OAuth2ClientCredentials::builder()
        .token_url("http://auth.example.com/oauth2/token")
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Config);
    assert_eq!(
        err.to_string(),
        "oauth2 client credentials configuration: token URL http://auth.example.com/oauth2/token: \
         plain http:// to auth.example.com, which is not loopback, would send the client secret \
         in clear text; use https:// or allow_insecure_http(true)"
    );
    OAuth2ClientCredentials::builder()
        .token_url("http://auth.example.com/oauth2/token")
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .allow_insecure_http(true)
        .build()
        .unwrap();
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn every_configuration_mistake_is_a_clear_config_error() {
    let ok = || {
        OAuth2ClientCredentials::builder()
            .token_url("https://auth.example.com/oauth2/token")
            .client_id(CLIENT_ID)
            .client_secret(CLIENT_SECRET)
    };
    let cases: Vec<(OAuth2ClientCredentialsBuilder, &str)> = vec![
        (OAuth2ClientCredentials::builder(), "no token URL"),
        (ok().token_url("  "), "no token URL"),
        (ok().token_url("not a url"), "is not a URL"),
        (ok().token_url("/oauth2/token"), "must be absolute"),
        (ok().token_url("ftp://auth.example.com/t"), "scheme must be http or https"),
        (ok().client_id(" "), "no client id"),
        (ok().client_id("a\nb"), "control character"),
        (
            OAuth2ClientCredentials::builder()
                .token_url("https://auth.example.com/t")
                .client_id(CLIENT_ID),
            "no client secret: call .client_secret(..), .client_secret_file(..) or .client_secret_env(..)",
        ),
        (ok().client_secret(" "), "the client secret is empty"),
        (ok().client_secret_env(""), "is not a variable name"),
        (ok().scope("a\\b"), "RFC 6749 section 3.3"),
        (ok().param("scope", "x"), "use .scope(..)"),
        (ok().param("client_secret", "x"), "the source sets client_secret itself"),
        (ok().param("", "x"), "a parameter needs a name"),
        (ok().timeout(Duration::ZERO), "timeout must be more than zero"),
        (ok().default_lifetime(Duration::ZERO), "default_lifetime must be more than zero"),
        (ok().ca_cert("/nonexistent/ca.pem"), "CA certificate file /nonexistent/ca.pem"),
    ];
    for (builder, needle) in cases {
        let debug = format!("{builder:?}");
        assert!(!debug.contains(CLIENT_SECRET), "{debug}");
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Config, "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("oauth2 client credentials configuration: "),
            "{msg}"
        );
        assert!(msg.contains(needle), "{msg:?} does not say {needle:?}");
        assert!(!msg.contains(CLIENT_SECRET), "{msg}");
    }
}

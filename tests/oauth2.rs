//! `OAuth2ClientCredentials` against a real authorization server: oxide-auth's
//! client-credentials flow and resource flow behind axum, on loopback
//! (`tests/support/oauth2_server/`). The API the layer calls checks each token against the
//! tokens the server issued, so a refused, revoked or expired token is refused for real.
//!
//! The flows through the layer: one token for many requests, refresh before expiry, a revoked
//! token, a rotated secret, the endpoint down. Short lifetimes are real seconds (oxide-auth's
//! clock cannot be paused): the refresh test takes about 1 s, the outage test about 4 s.
//! Errors, configuration and what goes on the wire: `tests/oauth2_errors.rs`.

#[path = "support/oauth2_client.rs"]
mod oauth2_client;
#[path = "support/oauth2_server/mod.rs"]
mod oauth2_server;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use oauth2_client::*;
use oauth2_server::{AuthServer, Setup, CLIENT_ID, CLIENT_SECRET};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, KeyErrorKind, KeyEvent, KeySource, RotationReason};

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

//! What the OAuth2 tests share: a source for the server's client, the layer over a hyper-util
//! client, a GET of the API, steady traffic, and the check that nothing leaked.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{
    BearerAuthLayer, KeyError, KeyHandle, OAuth2ClientCredentials, OAuth2ClientCredentialsBuilder,
};

use crate::oauth2_server::{AuthServer, CLIENT_ID, CLIENT_SECRET, SCOPE};
use crate::support;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn source(server: &AuthServer) -> OAuth2ClientCredentialsBuilder {
    OAuth2ClientCredentials::builder()
        .token_url(server.token_url())
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .scope(SCOPE)
}

pub type Client = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    tower::BoxError,
>;

/// The layer over a plain hyper-util client, and its key handle.
pub fn client(layer: BearerAuthLayer) -> (Client, KeyHandle) {
    let handle = layer.handle();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(support::client::<Full<Bytes>>());
    (tower::util::BoxCloneSyncService::new(service), handle)
}

/// GETs the API; the status, or the layer's error.
pub async fn call(client: &Client, server: &AuthServer) -> Result<StatusCode, tower::BoxError> {
    let request = Request::get(server.api_url())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.clone().oneshot(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// The layer's error as a `KeyError`.
pub fn key_error(result: Result<StatusCode, tower::BoxError>) -> KeyError {
    let err = result.expect_err("the request should fail");
    err.downcast_ref::<KeyError>()
        .unwrap_or_else(|| panic!("not a KeyError: {err}"))
        .clone()
}

/// Asserts that neither the secret nor any token the server issued is in `text`.
#[track_caller]
pub fn secret_free(text: &str, server: &AuthServer, secrets: &[&str]) {
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

/// Steady traffic, 10 requests a second, each answered 200, until `done` says so; panics
/// after [`WAIT`]. Refreshes are started by requests past a key's refresh point (the layer
/// has no background reload), so a test of them needs traffic.
pub async fn traffic_until(client: &Client, server: &AuthServer, mut done: impl FnMut() -> bool) {
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

pub fn base64(text: &str) -> String {
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

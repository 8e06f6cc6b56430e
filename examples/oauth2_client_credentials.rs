//! The bearer token from an OAuth2 token endpoint, by the client-credentials grant.
//!
//! ```text
//! cargo run --example oauth2_client_credentials --features oauth2
//! ```
//!
//! With `OAUTH2_TOKEN_URL` set, the token comes from that endpoint, for the client
//! `OAUTH2_CLIENT_ID` with the secret in `OAUTH2_CLIENT_SECRET` (read at each token request),
//! scopes from `OAUTH2_SCOPE` if set, and one GET goes to `API_URL`. Without it, the example
//! starts a real authorization server on 127.0.0.1 (oxide-auth, as the tests use) with an API
//! that checks each token, so it runs anywhere: 20 concurrent requests make one token request,
//! and a revoked token is replaced and the request sent again.

#[path = "../tests/support/oauth2_server/mod.rs"]
mod oauth2_server;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, KeySource, OAuth2ClientCredentials};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    if let Ok(token_url) = std::env::var("OAUTH2_TOKEN_URL") {
        let mut builder = OAuth2ClientCredentials::builder()
            .token_url(token_url)
            .client_id(std::env::var("OAUTH2_CLIENT_ID")?)
            .client_secret_env("OAUTH2_CLIENT_SECRET"); // or .client_secret_file(path)
        if let Ok(scope) = std::env::var("OAUTH2_SCOPE") {
            builder = builder.scope(scope); // space-separated scopes are fine too
        }
        let api_url = std::env::var("API_URL")?;
        let host = api_url
            .parse::<http::Uri>()?
            .host()
            .unwrap_or("")
            .to_owned();
        return live(builder.build()?, &api_url, host).await;
    }

    let server = oauth2_server::AuthServer::start(oauth2_server::Setup::default()).await;
    println!(
        "OAUTH2_TOKEN_URL is not set: a stand-in authorization server at {}",
        server.token_url()
    );
    let source = OAuth2ClientCredentials::builder()
        .token_url(server.token_url()) // plain http is allowed to loopback only
        .client_id(oauth2_server::CLIENT_ID)
        .client_secret(oauth2_server::CLIENT_SECRET) // or _file(..) / _env(..), re-read per load
        .scope(oauth2_server::SCOPE)
        .build()?;
    println!("token from {}", source.origin());
    let layer = BearerAuthLayer::new(source).restrict_to_hosts(["127.0.0.1"]);
    let handle = layer.handle();
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    let get = || {
        let client = client.clone();
        let url = server.api_url();
        async move {
            let response = client
                .oneshot(http::Request::get(url).body(Empty::new())?)
                .await?;
            Ok::<_, tower::BoxError>(response.status())
        }
    };
    let statuses = futures_util::future::join_all((0..20).map(|_| get())).await;
    let ok = statuses
        .iter()
        .filter(|s| matches!(s, Ok(s) if s.is_success()))
        .count();
    println!(
        "20 concurrent requests: {ok} answered 200, {} token request(s); token {} expires {}",
        server.token_requests(),
        handle.fingerprint().unwrap_or_default(),
        httpdate::fmt_http_date(handle.expiry().expect("tokens carry their expiry"))
    );

    // The server revokes the token: the API answers 401, the layer gets one new token and
    // sends the request again with it.
    server.revoke(&server.issued()[0]);
    let status = get().await?;
    println!(
        "after a revocation: {status}, {} token requests, new token {}",
        server.token_requests(),
        handle.fingerprint().unwrap_or_default()
    );
    assert_eq!((ok, server.token_requests()), (20, 2));
    Ok(())
}

/// One GET to a real API with a token from a real endpoint.
async fn live(
    source: OAuth2ClientCredentials,
    api_url: &str,
    host: String,
) -> Result<(), tower::BoxError> {
    println!("token from {}", source.origin());
    // Errors name the endpoint, the server's error code and description, never the secret.
    if let Err(err) = source.load().await {
        return Err(format!("no token ({:?}): {err}", err.kind()).into());
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_only()
        .enable_http1()
        .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).restrict_to_hosts([host]))
        .service(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https));
    let response = client
        .oneshot(http::Request::get(api_url).body(Empty::new())?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("GET {api_url}: {status}, {} bytes", body.len());
    Ok(())
}

//! The Azerion API key from HashiCorp Vault.
//!
//! ```text
//! cargo run --example vault --features vault
//! ```
//!
//! With `VAULT_ADDR` set, the key is read from that Vault the way the Vault CLI is configured
//! (`VAULT_TOKEN` or `~/.vault-token`, `VAULT_NAMESPACE`, `VAULT_CACERT`), from KV v2 mount
//! `secret`, path `azerion`, field `api_key`, and one request goes to the real Azerion API.
//! Without it, the example starts a stand-in Vault and a stand-in Azerion API on 127.0.0.1,
//! so it runs anywhere.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::{azerion, BearerAuthLayer, KeySource, VaultKeySource};

/// The key the stand-in Vault holds and the stand-in API accepts.
const DEMO_KEY: &str = "sk-example-0000000000000000";

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    // The hosts the key may go to: the real API only in live mode; loopback only for the
    // stand-in.
    let (source, base_url, hosts) = if std::env::var_os("VAULT_ADDR").is_some() {
        // What `vault kv get -field=api_key secret/azerion` would read.
        let source = VaultKeySource::from_env("secret", "azerion", "api_key")?;
        (source, azerion::BASE_URL.to_owned(), vec!["api.azerion.ai"])
    } else {
        let vault = stand_in_vault().await;
        let api = support::stand_in::StandInApi::start(&[DEMO_KEY]).await;
        println!(
            "VAULT_ADDR is not set: stand-in Vault at http://{vault}, stand-in API at {}",
            api.base_url()
        );
        let source = VaultKeySource::builder()
            .address(format!("http://{vault}")) // plain http is allowed to loopback only
            .token("hvs.example-token") // or .approle_secret_id_file(..) / .kubernetes(..)
            .mount("secret")
            .path("azerion")
            .field("api_key")
            .build()?;
        (source, api.base_url(), vec!["127.0.0.1"])
    };
    println!("key from {}", source.origin());

    // The layer calls `load` itself (first use, refresh hint, 401). Called here once to show
    // what comes back: errors name the path and the cause, never the token; keys print as a
    // fingerprint.
    match source.load().await {
        Ok(key) => println!("key {key}, read again after {:?}", key.refresh_hint()),
        Err(err) => return Err(format!("no key ({:?}): {err}", err.kind()).into()),
    }

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).restrict_to_hosts(hosts))
        .service(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https));

    let request = http::Request::get(format!("{base_url}/models")).body(Empty::new())?;
    let response = client.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("GET {base_url}/models: {status}, {} bytes", body.len());
    Ok(())
}

/// A stand-in for Vault's `GET /v1/secret/data/azerion`, answering in the shape of Vault's
/// docs (`data.data.{field}` plus `data.metadata`).
async fn stand_in_vault() -> std::net::SocketAddr {
    support::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let token_ok = req
            .headers()
            .get("x-vault-token")
            .is_some_and(|t| t == "hvs.example-token");
        let (status, body) = match (token_ok, req.uri().path()) {
            (false, _) => (403, r#"{"errors":["permission denied"]}"#.to_owned()),
            (true, "/v1/secret/data/azerion") => (
                200,
                format!(
                    r#"{{"data":{{"data":{{"api_key":"{DEMO_KEY}"}},"metadata":{{"version":1}}}}}}"#
                ),
            ),
            (true, _) => (404, r#"{"errors":[]}"#.to_owned()),
        };
        http::Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    })
    .await
}

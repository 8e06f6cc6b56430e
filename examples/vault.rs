//! The Azerion API key from HashiCorp Vault.
//!
//! ```text
//! cargo run --example vault --features vault
//! ```
//!
//! With `VAULT_ADDR` set, the key is read from that Vault the way the Vault CLI is configured
//! (`VAULT_TOKEN` or `~/.vault-token`, `VAULT_NAMESPACE`, `VAULT_CACERT`), from KV v2 mount
//! `secret`, path `azerion`, field `api_key`. Without it, the example starts a tiny stand-in
//! Vault on 127.0.0.1 that answers like Vault's docs show, so it runs anywhere.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceBuilder;
use tower_bearer::{BearerAuthLayer, KeySource, VaultKeySource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = if std::env::var_os("VAULT_ADDR").is_some() {
        // Exactly what `vault kv get -field=api_key secret/azerion` would use.
        VaultKeySource::from_env("secret", "azerion", "api_key")?
    } else {
        let addr = stand_in_vault().await?;
        println!("VAULT_ADDR is not set: using a stand-in Vault at http://{addr}");
        VaultKeySource::builder()
            .address(format!("http://{addr}")) // plain http is allowed to loopback only
            .token("hvs.example-token") // or .approle_secret_id_file(..) / .kubernetes(..)
            .mount("secret")
            .path("azerion")
            .field("api_key")
            .refresh_after(Duration::from_secs(300)) // pick up a rotated secret within 5 min
            .build()?
    };
    println!("reading {}", source.origin());

    // The layer calls `load` itself (first use, refresh, 401); here we call it once to show
    // what comes back: only a fingerprint is ever printable.
    match source.load().await {
        Ok(key) => println!("key {} (refresh after {:?})", key, key.refresh_hint()),
        Err(err) => println!("no key: {err} ({:?})", err.kind()), // names path and cause, never the token
    }

    // In an application: the source goes into the layer over any HTTP client.
    let _client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).restrict_to_hosts(["api.azerion.ai"]))
        .service(
            Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(HttpConnector::new()),
        );
    Ok(())
}

/// A stand-in for Vault's `GET /v1/secret/data/azerion`, in the shape of Vault's docs.
async fn stand_in_vault() -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let token_ok = req
                        .headers()
                        .get("x-vault-token")
                        .is_some_and(|t| t == "hvs.example-token");
                    let (status, body) = match (token_ok, req.uri().path()) {
                        (false, _) => (403, r#"{"errors":["permission denied"]}"#),
                        (true, "/v1/secret/data/azerion") => (
                            200,
                            r#"{"data":{"data":{"api_key":"sk-example-0000000000000000"},"metadata":{"version":1}}}"#,
                        ),
                        (true, _) => (404, r#"{"errors":[]}"#),
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from(body)));
                    Ok::<_, Infallible>(response.expect("a valid response"))
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

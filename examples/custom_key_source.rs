//! Your own key source: caching, refresh, single flight and 401 rotation come for free.
//!
//! ```sh
//! cargo run --example custom_key_source
//! ```
//!
//! The source here asks a (stand-in) cloud secret manager over HTTP for the current key, the
//! way a source for AWS Secrets Manager, GCP Secret Manager or an internal service would. It
//! implements one method, `load`; everything else is the layer's. The layer is set up as for
//! production: the key goes to the API's host only, a load that hangs is cut off, and the
//! secret manager's answer is read up to a cap.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeyFuture, KeySource};

use support::stand_in::StandInApi;

/// The most of the secret manager's answer that is read: a key is a few hundred bytes.
const MAX_ANSWER: usize = 16 * 1024;

/// Reads `{"SecretString": "<key>"}` from `GET {url}` — a secret manager's shape.
struct SecretManagerSource {
    url: String,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl KeySource for SecretManagerSource {
    fn load(&self) -> KeyFuture<'_> {
        Box::pin(async move {
            // Errors name where we looked and why — never the secret.
            let origin = format!("secret manager {}", self.url);
            let fail = |kind, cause: String| KeyError::new(kind, cause).with_origin(origin.clone());

            let request = Request::get(&self.url)
                .body(Empty::new())
                .map_err(|e| fail(KeyErrorKind::Config, e.to_string()))?;
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| fail(KeyErrorKind::Unavailable, format!("request failed: {e}")))?;
            if !response.status().is_success() {
                return Err(fail(
                    KeyErrorKind::Unavailable,
                    format!("answered {}", response.status()),
                ));
            }
            // A bounded read: a broken or hostile endpoint cannot make the load buffer gigabytes.
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    fail(
                        KeyErrorKind::Unavailable,
                        format!("body failed or is over {MAX_ANSWER} bytes: {e}"),
                    )
                })?
                .to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| fail(KeyErrorKind::Unreadable, "the answer is not JSON".into()))?;
            let secret = json["SecretString"].as_str().ok_or_else(|| {
                fail(
                    KeyErrorKind::Missing,
                    "no SecretString in the answer".into(),
                )
            })?;
            // Validate, and ask to be re-read in five minutes.
            Ok(ApiKey::new(secret)
                .map_err(|e| e.with_origin(origin.clone()))?
                .refresh_after(Duration::from_secs(300)))
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A stand-in secret manager holding the current key, and the stand-in API.
    let current = Arc::new(Mutex::new(String::from("sk-custom-source-key-0001")));
    let reads = Arc::new(AtomicUsize::new(0));
    let (held, counter) = (current.clone(), reads.clone());
    let manager = support::serve(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::json!({ "SecretString": *held.lock().unwrap() }).to_string();
        async move { Response::new(Full::new(Bytes::from(body))) }
    })
    .await;
    let api = StandInApi::start(&["sk-custom-source-key-0001"]).await;

    let source = SecretManagerSource {
        url: format!("http://{manager}/secrets/azerion-api-key"),
        http: Client::builder(TokioExecutor::new()).build_http(),
    };
    let client = ServiceBuilder::new()
        .layer(
            BearerAuthLayer::new(source)
                // The key goes to the API's host only (here the stand-in's; api.azerion.ai for real).
                .restrict_to_hosts(["127.0.0.1"])
                // A secret manager that hangs fails the load after 5 s instead of holding requests.
                .load_timeout(Duration::from_secs(5))
                .on_rotate(|e| println!("  {e}")),
        )
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    let models = || Request::get(format!("{}/models", api.base_url())).body(Empty::new());
    for _ in 0..3 {
        let status = client.clone().oneshot(models()?).await?.status();
        println!("GET /v1/models -> {status}");
    }
    println!(
        "three requests, {} secret manager read(s): the key is cached",
        reads.load(Ordering::SeqCst)
    );

    // Rotate in the secret manager and revoke at the API: the next request heals by itself.
    *current.lock().unwrap() = "sk-custom-source-key-0002".into();
    api.accept("sk-custom-source-key-0002");
    api.revoke("sk-custom-source-key-0001");
    let status = client.clone().oneshot(models()?).await?.status();
    println!(
        "after rotation: GET /v1/models -> {status} ({} secret manager reads)",
        reads.load(Ordering::SeqCst)
    );
    assert!(status.is_success());
    Ok(())
}

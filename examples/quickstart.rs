//! The five-minute tour, with no key and no network:
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! It starts a stand-in for the Azerion AI API on 127.0.0.1, keeps the API key in a file (as a
//! Kubernetes secret would), lists the models, rotates the key (the old one revoked at once),
//! lists them again — healed through one 401 — and shows a typed error.
//!
//! With a real key, the same client code calls the real API over TLS:
//!
//! ```sh
//! AZERION_API_KEY=sk-... cargo run --example quickstart -- --live
//! # or, with the key in a file (a Docker or Kubernetes secret):
//! AZERION_API_KEY_FILE=/run/secrets/azerion-api-key cargo run --example quickstart -- --live
//! ```

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{azerion, ApiError, BearerAuthLayer, ErrorMappingLayer, FileKeySource};

use support::stand_in::StandInApi;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    if std::env::args().any(|a| a == "--live") {
        return live().await;
    }

    // 1. A stand-in for https://api.azerion.ai/v1 on a random port of 127.0.0.1.
    let first_key = new_key();
    let api = StandInApi::start(&[&first_key]).await;
    println!("1. Started a stand-in Azerion API at {}", api.base_url());

    // 2. The key lives in a file, never in the code.
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("azerion-api-key");
    write_key(&key_file, &first_key)?;
    println!("2. Wrote the API key to {}", key_file.display());

    // 3. The client: hyper-util, wrapped in error mapping and the bearer layer.
    let auth = BearerAuthLayer::new(FileKeySource::new(&key_file))
        .restrict_to_hosts(["127.0.0.1"]) // the key goes nowhere else
        .on_rotate(|event| println!("   on_rotate: {event}")); // fingerprints only
    let client = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .layer(auth)
        .service(http_client());
    println!("3. Built the client: ErrorMappingLayer -> BearerAuthLayer(FileKeySource) -> hyper");

    println!("4. Listing the models:");
    for model in list_models(client.clone(), &api.base_url()).await? {
        println!("   - {model}");
    }

    // 5. Rotate: a new key in the file; the provider revokes the old one at once.
    let second_key = new_key();
    write_key(&key_file, &second_key)?;
    api.accept(&second_key);
    api.revoke(&first_key);
    println!("5. Rotated the key in the file and revoked the old one on the server");

    println!("6. Listing the models again (the old key is cached, so the server says 401 once):");
    let models = list_models(client.clone(), &api.base_url()).await?;
    println!(
        "   got {} models; the server answered 401 {} time(s) and the layer healed it",
        models.len(),
        api.unauthorized()
    );

    println!("7. A request the server refuses comes back as a typed ApiError:");
    let request =
        Request::get(format!("{}/models/no-such-model", api.base_url())).body(Empty::new())?;
    match client.clone().oneshot(request).await {
        Ok(response) => return Err(format!("expected a 404, got {}", response.status()).into()),
        Err(error) => {
            let api_error = error.downcast_ref::<ApiError>().ok_or(error.to_string())?;
            println!("   {api_error}");
            println!(
                "   status {}, kind {:?}, code {:?}, request id {:?}",
                api_error.status().as_u16(),
                api_error.kind(),
                api_error.code(),
                api_error.request_id()
            );
        }
    }
    println!("Done.");
    Ok(())
}

/// The same client code against the real API: key from AZERION_API_KEY (or the file named by
/// AZERION_API_KEY_FILE), sent to api.azerion.ai only, over TLS.
async fn live() -> Result<(), BoxError> {
    let client = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new())
        .layer(azerion::layer())
        .service(http_client());
    println!("Listing the models of {}:", azerion::BASE_URL);
    match list_models(client, azerion::BASE_URL).await {
        Ok(models) => models.iter().for_each(|m| println!("   - {m}")),
        Err(error) => match error.downcast_ref::<ApiError>() {
            // Display: the status and the server's message, cut and redacted (never the raw
            // body, which may echo the key).
            Some(api) => println!("Error: {api}"),
            None => println!("Error: {error}"),
        },
    }
    Ok(())
}

/// `GET {base}/models`, returning the model ids.
async fn list_models<S>(client: S, base_url: &str) -> Result<Vec<String>, BoxError>
where
    S: Service<
        Request<Empty<Bytes>>,
        Response = http::Response<hyper::body::Incoming>,
        Error = BoxError,
    >,
{
    let request = Request::get(format!("{base_url}/models")).body(Empty::new())?;
    let response = client.oneshot(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    let ids = list["data"]
        .as_array()
        .ok_or("the models list has no `data` array")?
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect();
    Ok(ids)
}

/// A hyper-util client for https (webpki roots) and, for the stand-in, plain http.
fn http_client() -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A fresh demo key. Real keys come from the provider.
fn new_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "sk-quickstart-{:016x}",
        nanos as u64 ^ 0x5eed_5eed_5eed_5eed
    )
}

/// Writes the key file readable by its owner only, as a secret should be.
fn write_key(path: &std::path::Path, key: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{key}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

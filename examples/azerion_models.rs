//! List the Azerion AI API's models with the preset layer: the key from `AZERION_API_KEY` (or
//! the file `AZERION_API_KEY_FILE` names), sent to `api.azerion.ai` only, over TLS.
//!
//! ```sh
//! AZERION_API_KEY=sk-... cargo run --example azerion_models
//! ```
//!
//! Errors are printed as the status code and the server's message, through `ApiError`'s
//! `Display`: cut to one line, with anything that looks like a key or token redacted. (The raw
//! body is `api.body()`; do not log it as it is: a server may echo the key.)

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{azerion, ApiError, ErrorMappingLayer, KeyError};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_only()
        .enable_http1()
        .build();
    let client = ServiceBuilder::new()
        .layer(ErrorMappingLayer::new()) // non-2xx -> ApiError
        .layer(azerion::layer()) // AZERION_API_KEY, api.azerion.ai only
        .service(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https));

    let request = Request::get(format!("{}/models", azerion::BASE_URL)).body(Empty::new())?;
    match client.oneshot(request).await {
        Ok(response) => {
            let body = response.into_body().collect().await?.to_bytes();
            let models: serde_json::Value = serde_json::from_slice(&body)?;
            for model in models["data"].as_array().into_iter().flatten() {
                println!("{}", model["id"].as_str().unwrap_or("?"));
            }
        }
        Err(error) => {
            if let Some(api) = error.downcast_ref::<ApiError>() {
                println!("Error: {api}"); // e.g. HTTP 401 Unauthorized (unauthorized): Incorrect API key provided: [redacted]
            } else if let Some(key) = error.downcast_ref::<KeyError>() {
                println!("No API key: {key}"); // e.g. AZERION_API_KEY is not set
            } else {
                println!("Request failed: {error}");
            }
            std::process::exit(1);
        }
    }
    Ok(())
}

//! An axum 0.8 gateway: browsers call `/v1/*` on it, it forwards to the Azerion AI API with
//! the key added by `BearerAuthLayer`, so the key never reaches a browser.
//!
//! ```sh
//! cargo run --example axum_gateway            # forwards to a stand-in API on 127.0.0.1
//! AZERION_API_KEY=sk-... cargo run --example axum_gateway -- --live   # to api.azerion.ai
//! ```
//!
//! Then `curl http://127.0.0.1:3000/v1/models`. The routing lives in
//! `examples/support/gateway.rs`, shared with `tests/axum_gateway.rs`.

mod support;

use http::Uri;
use tower::{BoxError, ServiceBuilder};
use tower_bearer::{azerion, BearerAuthLayer, ReplayableBody, StaticKey};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, ReplayableBody>(https);

    let (upstream, auth) = if std::env::args().any(|a| a == "--live") {
        // The real API: the preset reads AZERION_API_KEY and sends it to api.azerion.ai only.
        ("https://api.azerion.ai/".parse::<Uri>()?, azerion::layer())
    } else {
        // No key, no network: a stand-in API and a demo key.
        let key = "sk-gateway-demo-key-000000";
        let api = support::stand_in::StandInApi::start(&[key]).await;
        let upstream = format!("http://{}/", api.addr()).parse::<Uri>()?;
        let auth = BearerAuthLayer::new(StaticKey::new(tower_bearer::ApiKey::new(key)?))
            .restrict_to_hosts(["127.0.0.1"]);
        (upstream, auth)
    };
    let client = ServiceBuilder::new().layer(auth).service(http);
    let app = support::gateway::router(upstream, client);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "gateway on http://{}/v1/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

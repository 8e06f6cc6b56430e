//! An axum 0.8 gateway: browsers call `/v1/*` on it, it forwards to the Azerion AI API with
//! the key added by `BearerAuthLayer`, so the key never reaches a browser.
//!
//! ```sh
//! cargo run --example axum_gateway            # forwards to a stand-in API on 127.0.0.1
//! AZERION_API_KEY=sk-... GATEWAY_TOKEN=... cargo run --example axum_gateway -- --live
//! ```
//!
//! Then `curl -H "Authorization: Bearer $GATEWAY_TOKEN" http://127.0.0.1:3000/v1/models`.
//! `curl http://127.0.0.1:3000/healthz` says whether the gateway has a usable key (503 when
//! not), and `/metrics` gives the layer's metrics in Prometheus text (build with
//! `--features metrics` for the layer to record them): see `examples/support/health.rs`.
//!
//! The gateway answers only to the `Host`s in [`HOSTS`], refuses cross-site requests (an `Origin`
//! not in [`ORIGINS`], `Sec-Fetch-Site: cross-site`), wants the caller's `GATEWAY_TOKEN` (without
//! one it refuses every request: see `authenticate_caller` in `examples/support/gateway.rs`, where
//! your own caller check goes), keeps paths under `/v1` and forwards no hop-by-hop header. It has
//! no TLS, no rate limit and no CORS: the module docs of `examples/support/gateway.rs` say what it
//! protects and what it does not. The routing lives there, shared with `tests/axum_gateway.rs`.

mod support;

use http::Uri;
use tower::{BoxError, ServiceBuilder};
use tower_bearer::{azerion, BearerAuthLayer, ReplayableBody, StaticKey};

/// Where the gateway listens.
const LISTEN: &str = "127.0.0.1:3000";
/// The `Host` values it answers to: add the public name a TLS proxy in front of it serves.
const HOSTS: [&str; 2] = ["127.0.0.1:3000", "localhost:3000"];
/// The origins whose pages may call it: add your front end's.
const ORIGINS: [&str; 2] = ["http://127.0.0.1:3000", "http://localhost:3000"];
/// The stand-in mode's caller token when `GATEWAY_TOKEN` is unset (the live mode has none).
const DEMO_CALLER_TOKEN: &str = "demo-caller-token-not-for-production";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, ReplayableBody>(https);

    let live = std::env::args().any(|a| a == "--live");
    let caller_token = match std::env::var("GATEWAY_TOKEN") {
        Ok(token) if !token.is_empty() => Some(token),
        _ if live => {
            eprintln!("GATEWAY_TOKEN is not set: every request will be refused with 401");
            None
        }
        _ => {
            println!("caller token (stand-in mode): {DEMO_CALLER_TOKEN}");
            Some(DEMO_CALLER_TOKEN.to_owned())
        }
    };
    let (upstream, auth) = if live {
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
    // The key's health and metrics: a Prometheus recorder for the `metrics` facade, and a
    // handle on the layer's key for `/healthz`.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let auth = auth.name("azerion");
    let key = auth.handle();
    let client = ServiceBuilder::new().layer(auth).service(http);
    let gateway = support::gateway::Gateway {
        upstream,
        hosts: HOSTS.map(String::from).to_vec(),
        origins: ORIGINS.map(String::from).to_vec(),
        caller_token,
    };
    let app = support::gateway::router(gateway, client)
        .merge(support::health::routes(key, Some(metrics)));

    let listener = tokio::net::TcpListener::bind(LISTEN).await?;
    println!(
        "gateway on http://{}/v1/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

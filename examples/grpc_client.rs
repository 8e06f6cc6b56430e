//! A tonic client through the bearer layer, with no key and no network:
//!
//! ```sh
//! cargo run --example grpc_client --features grpc
//! ```
//!
//! It starts a gRPC server on 127.0.0.1 (the standard health service, over h2c) that accepts
//! one bearer key, keeps the key in a file, calls `Check` through a tonic `Channel` wrapped in
//! `GrpcAuthLayer`, rotates the key (the server answers the old one with UNAUTHENTICATED at
//! once), and calls again: healed, through one reload and one replay.

#[path = "support/grpc_server.rs"]
mod grpc_server;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tower_bearer::grpc::GrpcAuthLayer;
use tower_bearer::{BearerAuthLayer, FileKeySource, KeyEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // 1. A gRPC server that checks `authorization: Bearer <key>`.
    let first_key = new_key();
    let server = grpc_server::Checked::default();
    server.accept(&first_key);
    let addr = grpc_server::start_server(server.clone()).await;
    println!("1. Started a gRPC health server at http://{addr} (h2c)");

    // 2. The key lives in a file, as a Kubernetes secret would.
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("grpc-api-key");
    write_key(&key_file, &first_key)?;
    println!("2. Wrote the key to {}", key_file.display());

    // 3. The client: a tonic Channel, wrapped in the layer. A generated client sends requests
    //    in origin form (a path alone): `origin` says where they go, so that the host scope and
    //    the cleartext rule can judge them (plain http only to loopback).
    let layer = BearerAuthLayer::new(FileKeySource::new(&key_file))
        .origin(format!("http://{addr}"))
        .on_event(|event| match event {
            KeyEvent::Rotated(_) | KeyEvent::Replayed(_) | KeyEvent::ReplaySkipped(_) => {
                println!("   event: {event}")
            }
            _ => {}
        });
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(
        ServiceBuilder::new()
            .layer(GrpcAuthLayer::new(layer))
            .service(channel),
    );
    let reply = health.check(HealthCheckRequest::default()).await?;
    println!("3. Check: {:?}", reply.into_inner().status());

    // 4. Rotate: a new key in the file, the old one refused by the server from now on.
    let second_key = new_key();
    write_key(&key_file, &second_key)?;
    server.accept(&second_key);
    println!("4. Rotated the key; the server now answers the old one with UNAUTHENTICATED");

    // 5. The same client, unchanged: UNAUTHENTICATED, a reload, one replay.
    let reply = health.check(HealthCheckRequest::default()).await?;
    println!("5. Check: {:?} (healed)", reply.into_inner().status());
    let calls: Vec<_> = server
        .seen()
        .into_iter()
        .map(|(method, _)| method)
        .collect();
    println!("   calls the server saw: {calls:?} (the second refused, then replayed)");
    assert_eq!(calls.len(), 3);
    Ok(())
}

/// A fresh key, different at every run.
fn new_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("sk-grpc-example-{nanos:024}")
}

fn write_key(path: &Path, key: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{key}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

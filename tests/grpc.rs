//! tonic clients through `grpc::GrpcAuthLayer` to a real tonic server over h2c on loopback:
//! the gRPC health service (tonic-health's generated code, no protoc), implemented here to
//! check the bearer key. A unary call refused with a trailers-only UNAUTHENTICATED heals; a
//! server-streaming call refused in its trailers is not replayed, but the next call carries
//! the new key; origin-form requests are judged by the layer's origin.

#[path = "../examples/support/grpc_server.rs"]
mod grpc_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use grpc_server::{start_server, Checked};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::Layer;
use tower_bearer::event::SkipReason;
use tower_bearer::grpc::{GrpcAuth, GrpcAuthLayer};
use tower_bearer::{BearerAuthLayer, FileKeySource, KeyEvent, RotationReason, ScopeError};

const OLD: &str = "sk-grpc-old-key-000000000";
const NEW: &str = "sk-grpc-new-key-111111111";

/// A key file holding `key`, and its directory (removed on drop).
fn key_file(key: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    write_key(&path, key);
    (dir, path)
}

fn write_key(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A client over a tonic `Channel` (h2c) to `addr`, through `layer`.
async fn client(layer: &GrpcAuthLayer, addr: SocketAddr) -> HealthClient<GrpcAuth<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(layer.layer(channel))
}

/// Every event the layer reports, as they come.
fn events(layer: BearerAuthLayer) -> (BearerAuthLayer, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let layer = layer.on_event(move |event| {
        let name = match event {
            KeyEvent::Rotated(r) if r.reason() == RotationReason::Rejected => "rotated: rejected",
            KeyEvent::Rotated(_) => "rotated",
            KeyEvent::Replayed(_) => "replayed",
            KeyEvent::ReplaySkipped(s) if s.reason() == SkipReason::BodyNotReplayable => {
                "skipped: body"
            }
            KeyEvent::ReplaySkipped(_) => "skipped",
            _ => "other",
        };
        let _ = tx.send(name.to_owned());
    });
    (layer, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_heals_through_unauthenticated() {
    let server = Checked::default();
    server.accept(OLD);
    let addr = start_server(server.clone()).await;
    let (_dir, path) = key_file(OLD);
    // No `rejected_when`: GrpcAuthLayer adds UNAUTHENTICATED to the layer's rejections.
    let (bearer, mut events) =
        events(BearerAuthLayer::new(FileKeySource::new(&path)).origin(format!("http://{addr}")));
    let layer = GrpcAuthLayer::new(bearer);
    let mut health = client(&layer, addr).await;

    let reply = health.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status, ServingStatus::Serving as i32);
    assert_eq!(drain(&mut events), ["rotated"]);

    // Rotated: the new key in the file, the old one revoked at the server.
    write_key(&path, NEW);
    server.accept(NEW);
    let reply = health.check(check()).await.unwrap().into_inner();
    assert_eq!(reply.status, ServingStatus::Serving as i32);
    let tokens: Vec<_> = server.seen().into_iter().map(|(_, t)| t).collect();
    assert_eq!(tokens, [OLD, OLD, NEW], "replayed once, with the new key");
    assert_eq!(drain(&mut events), ["rotated: rejected", "replayed"]);
    assert_eq!(layer.handle().status().replays(), 1);

    // Concurrent calls after another rotation: one reload for all, each call replayed.
    write_key(&path, OLD);
    server.accept(OLD);
    let calls = (0..8).map(|_| {
        let mut health = health.clone();
        tokio::spawn(async move { health.check(check()).await })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(
            call.await.unwrap().unwrap().into_inner().status,
            ServingStatus::Serving as i32
        );
    }
    let events = drain(&mut events);
    assert_eq!(
        events.iter().filter(|e| e.starts_with("rotated")).count(),
        1,
        "{events:?}"
    );
    // A call that started after the reload sent the new key at once; each other was refused
    // and replayed.
    let refused = server.seen()[3..].iter().filter(|(_, t)| t == NEW).count();
    assert!(refused >= 1);
    assert_eq!(server.seen().len(), 3 + 8 + refused);
    assert_eq!(
        events.iter().filter(|e| *e == "replayed").count(),
        refused,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_request_over_the_replay_cap_is_not_replayed() {
    let server = Checked::default();
    server.accept(NEW);
    let addr = start_server(server.clone()).await;
    let (_dir, path) = key_file(OLD);
    let (bearer, mut events) =
        events(BearerAuthLayer::new(FileKeySource::new(&path)).origin(format!("http://{addr}")));
    let layer = GrpcAuthLayer::new(bearer).replay_cap(16);
    let mut health = client(&layer, addr).await;
    layer.handle().ready().await.unwrap();
    write_key(&path, NEW);

    let big = HealthCheckRequest {
        service: "s".repeat(64),
    };
    let status = health.check(big).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        drain(&mut events),
        ["rotated", "rotated: rejected", "skipped: body"]
    );
    // The key was reloaded all the same: the next call, small or not, carries the new one.
    health.check(check()).await.unwrap();
    let tokens: Vec<_> = server.seen().into_iter().map(|(_, t)| t).collect();
    assert_eq!(tokens, [OLD, NEW]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_refused_in_its_trailers_is_not_replayed_but_the_next_call_has_the_new_key() {
    let server = Checked::default();
    server.accept(OLD);
    let addr = start_server(server.clone()).await;
    let (_dir, path) = key_file(OLD);
    let (bearer, mut events) =
        events(BearerAuthLayer::new(FileKeySource::new(&path)).origin(format!("http://{addr}")));
    let layer = GrpcAuthLayer::new(bearer);
    let mut health = client(&layer, addr).await;

    let mut stream = health.watch(check()).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    assert!(stream.message().await.unwrap().is_none(), "ends with OK");
    assert_eq!(drain(&mut events), ["rotated"]);

    write_key(&path, NEW);
    server.accept(NEW);
    // The response begins (headers, no status), then ends with UNAUTHENTICATED: the caller
    // has its stream already, and sees the status.
    let mut stream = health.watch(check()).await.unwrap().into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token revoked");
    // The key is reloaded for the next call: wait for that rotation, then call.
    let rotated = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv());
    let rotated = rotated.await.expect("a reload after the trailers");
    assert_eq!(rotated.as_deref(), Some("rotated: rejected"));
    health.check(check()).await.unwrap();
    assert_eq!(
        server.seen(),
        [
            ("watch", OLD.to_owned()),
            ("watch", OLD.to_owned()),
            ("check", NEW.to_owned()),
        ],
        "the refused stream was not sent again, and the next call had the new key at once"
    );
    assert!(drain(&mut events).is_empty(), "no replay, nothing else");
}

fn scope_error(status: &Status) -> &ScopeError {
    let source = std::error::Error::source(status).expect("the layer's error as the source");
    source
        .downcast_ref::<ScopeError>()
        .unwrap_or_else(|| panic!("not a ScopeError: {source}"))
}

#[tokio::test]
async fn origin_form_calls_are_judged_by_the_origin() {
    let server = Checked::default();
    server.accept(OLD);
    let addr = start_server(server.clone()).await;
    let (_dir, path) = key_file(OLD);
    let source = || BearerAuthLayer::new(FileKeySource::new(&path));

    // No origin: a generated client's requests name no host, so the key goes nowhere.
    let mut health = client(&GrpcAuthLayer::new(source()), addr).await;
    let status = health.check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert!(
        scope_error(&status).to_string().contains("origin"),
        "{status}"
    );

    // An origin in clear text to a remote host: refused as cleartext.
    let remote = GrpcAuthLayer::new(source().origin("http://grpc.example.com:50051"));
    let status = client(&remote, addr)
        .await
        .check(check())
        .await
        .unwrap_err();
    let refused = scope_error(&status);
    assert!(refused.is_cleartext(), "{refused}");
    assert_eq!(refused.host(), Some("grpc.example.com"));
    assert!(
        server.seen().is_empty(),
        "no refused call reached the server"
    );

    // Loopback in clear text: allowed.
    let local = GrpcAuthLayer::new(source().origin(format!("http://{addr}")));
    client(&local, addr).await.check(check()).await.unwrap();
    assert_eq!(server.seen(), [("check", OLD.to_owned())]);
}

//! Origin-form requests (`BearerAuthLayer::origin`) and rejection signals other than 401
//! (`rejected_when`: 403, gRPC UNAUTHENTICATED in a trailers-only response), over hyper on
//! loopback. The client below the layer plays a gRPC channel: it sends origin-form requests to
//! the one server it is bound to.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::sources::Steered;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, Rejection, ScopeError};

const OLD: &str = "sk-rejection-old-key-0000";
const NEW: &str = "sk-rejection-new-key-1111";

/// A server that accepts `accepted` and rejects any other key the way `reject` says.
async fn server(
    accepted: Arc<Mutex<String>>,
    reject: fn() -> Response<Full<Bytes>>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let addr = support::serve(move |req| {
        let token = support::bearer(&req).unwrap_or_default();
        sink.lock().unwrap().push(token.clone());
        let ok = *accepted.lock().unwrap() == token;
        async move {
            if ok {
                support::respond(200, "ok")
            } else {
                reject()
            }
        }
    })
    .await;
    (addr, seen)
}

fn grpc_unauthenticated() -> Response<Full<Bytes>> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", "16")
        .header("grpc-message", "invalid token")
        .body(Full::default())
        .unwrap()
}

fn forbidden() -> Response<Full<Bytes>> {
    support::respond(403, "forbidden")
}

/// Sends `path` through `layer` over a client bound to `addr`, as a gRPC channel is: the
/// request leaves the layer in origin form, and only below it gets the server's address.
async fn call(
    layer: &BearerAuthLayer,
    addr: SocketAddr,
    path: &str,
) -> Result<Response<hyper::body::Incoming>, BoxError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .map_request(move |mut req: Request<Full<Bytes>>| {
            let path = req.uri().path_and_query().unwrap().as_str().to_owned();
            *req.uri_mut() = format!("http://{addr}{path}").parse::<Uri>().unwrap();
            req
        })
        .service(client);
    let req = Request::post(path)
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    svc.oneshot(req).await
}

fn scope_error(err: BoxError) -> ScopeError {
    err.downcast::<ScopeError>()
        .map(|e| *e)
        .unwrap_or_else(|e| panic!("not a ScopeError: {e}"))
}

#[tokio::test]
async fn origin_form_needs_an_origin_and_is_judged_by_it() {
    let (addr, seen) = server(Arc::new(Mutex::new(OLD.into())), forbidden).await;
    let source = Steered::new(OLD, None);
    let path = "/grpc.health.v1.Health/Check";

    let err = scope_error(
        call(&BearerAuthLayer::new(source.clone()), addr, path)
            .await
            .unwrap_err(),
    );
    assert!(err.to_string().contains("origin"), "{err}");

    let loopback = BearerAuthLayer::new(source.clone()).origin(format!("http://{addr}"));
    let res = call(&loopback, addr, path).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap().as_slice(), [OLD.to_owned()]);

    let remote = BearerAuthLayer::new(source.clone()).origin("http://grpc.example.com:50051");
    let err = scope_error(call(&remote, addr, path).await.unwrap_err());
    assert!(err.is_cleartext(), "{err}");
    assert_eq!(err.host(), Some("grpc.example.com"));

    let scoped = BearerAuthLayer::new(source.clone())
        .origin("https://grpc.example.com")
        .restrict_to_hosts(["api.azerion.ai"]);
    let err = scope_error(call(&scoped, addr, path).await.unwrap_err());
    assert_eq!(err.host(), Some("grpc.example.com"), "{err}");
    assert!(!err.is_cleartext());

    for (bad, why) in [
        ("grpc.example.com", "no scheme"),
        ("https://user:hunter2@grpc.example.com", "user information"),
        ("https://grpc.example.com/v1", "path"),
        ("not a uri at all", "parse"),
    ] {
        let layer = BearerAuthLayer::new(source.clone()).origin(bad);
        let err = scope_error(call(&layer, addr, path).await.unwrap_err());
        let text = err.to_string();
        assert!(text.contains(why), "{bad}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no refused request reached the server"
    );
}

#[tokio::test]
async fn a_grpc_unauthenticated_trailers_only_response_heals_when_asked_for() {
    let accepted = Arc::new(Mutex::new(OLD.to_owned()));
    let (addr, seen) = server(accepted.clone(), grpc_unauthenticated).await;
    let source = Steered::new(OLD, None);
    let layer = BearerAuthLayer::new(source.clone())
        .origin(format!("http://{addr}"))
        .rejected_when([Rejection::Status401, Rejection::GrpcUnauthenticated]);
    let path = "/grpc.health.v1.Health/Check";
    assert!(call(&layer, addr, path)
        .await
        .unwrap()
        .headers()
        .get("grpc-status")
        .is_none());
    // Rotated at the server: the old key gets UNAUTHENTICATED, with HTTP 200.
    source.set(Some(NEW));
    *accepted.lock().unwrap() = NEW.to_owned();
    let res = call(&layer, addr, path).await.unwrap();
    assert!(
        res.headers().get("grpc-status").is_none(),
        "healed: {:?}",
        res.headers()
    );
    assert_eq!(seen.lock().unwrap().as_slice(), [OLD, OLD, NEW]);
    assert_eq!(source.loads(), 2);

    // Without the signal, the layer does not see it: the caller gets status 16.
    let plain_source = Steered::new(OLD, None);
    let plain = BearerAuthLayer::new(plain_source.clone()).origin(format!("http://{addr}"));
    let res = call(&plain, addr, path).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(plain_source.loads(), 1, "no reload");
}

#[tokio::test]
async fn a_403_heals_only_when_opted_in() {
    let accepted = Arc::new(Mutex::new(OLD.to_owned()));
    let (addr, _) = server(accepted.clone(), forbidden).await;
    let origin = format!("http://{addr}");
    for (opt_in, healed) in [(false, false), (true, true)] {
        *accepted.lock().unwrap() = OLD.to_owned();
        let source = Steered::new(OLD, None);
        let mut layer = BearerAuthLayer::new(source.clone()).origin(&origin);
        if opt_in {
            layer = layer.rejected_when([Rejection::Status401, Rejection::Status403]);
        }
        call(&layer, addr, "/v1/models").await.unwrap();
        source.set(Some(NEW));
        *accepted.lock().unwrap() = NEW.to_owned();
        let status = call(&layer, addr, "/v1/models").await.unwrap().status();
        assert_eq!(
            status == StatusCode::OK,
            healed,
            "opt in: {opt_in}: {status}"
        );
        assert_eq!(source.loads(), if opt_in { 2 } else { 1 });
    }
}

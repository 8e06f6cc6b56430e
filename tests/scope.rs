//! Where the key may go, end to end: hyper-util's client on loopback, with a resolver that maps
//! every name to 127.0.0.1 so that "a remote host" is testable, and a connector that, like
//! hyper-util's `HttpConnector` with `enforce_http(false)`, puts any scheme on a plain socket.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use support::{plain_client, recording_server};
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_bearer::{ApiKey, BearerAuthLayer, ScopeError, StaticKey};

const KEY: &str = "sk-scope-test-key-00000000";

fn layer() -> BearerAuthLayer {
    BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()))
}

async fn send(layer: &BearerAuthLayer, req: Request<Empty<Bytes>>) -> Result<(), BoxError> {
    layer.layer(plain_client()).oneshot(req).await.map(drop)
}

fn get(uri: impl Into<Uri>) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = uri.into();
    req
}

#[tokio::test]
async fn no_scheme_but_https_carries_the_key_to_a_remote_host() {
    let (addr, seen) = recording_server().await;
    let port = addr.port();
    let upper_http = Uri::builder()
        .scheme("HTTP")
        .authority(format!("remote.example:{port}"))
        .path_and_query("/v1")
        .build()
        .unwrap();
    let cases: Vec<(&str, Uri)> = vec![
        (
            "http",
            format!("http://remote.example:{port}/v1").parse().unwrap(),
        ),
        (
            "ws",
            format!("ws://remote.example:{port}/v1").parse().unwrap(),
        ),
        (
            "custom",
            format!("x-plain://remote.example:{port}/v1")
                .parse()
                .unwrap(),
        ),
        ("HTTP, stored as unknown", upper_http),
    ];
    // A scheme built from the text `HTTPS` is not http's `https`: this connector (and any
    // that chooses TLS by `Scheme::HTTPS`) puts it on a plain socket too.
    let mut cases = cases;
    for scheme in ["HTTPS", "Https"] {
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(format!("remote.example:{port}"))
            .path_and_query("/v1")
            .build()
            .unwrap();
        cases.push(("HTTPS, stored as unknown", uri));
    }
    for (name, uri) in cases {
        let err = send(&layer(), get(uri)).await.expect_err(name);
        let refused = err.downcast_ref::<ScopeError>().expect(name);
        assert!(refused.is_cleartext(), "{name}");
        assert_eq!(refused.host(), Some("remote.example"), "{name}");
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    // The same connector does put a request on the wire: with the rule lifted, it arrives.
    let open = layer().allow_insecure_http(true);
    let uri: Uri = format!("x-plain://remote.example:{port}/v1")
        .parse()
        .unwrap();
    send(&open, get(uri)).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(KEY.to_owned())]);
}

#[tokio::test]
async fn loopback_needs_no_https() {
    let (addr, seen) = recording_server().await;
    for uri in [
        format!("http://127.0.0.1:{}/v1", addr.port()),
        format!("ws://localhost:{}/v1", addr.port()),
    ] {
        send(&layer(), get(uri.parse::<Uri>().unwrap()))
            .await
            .unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_origin_form_request_is_refused_unless_told_where_it_goes() {
    let inner = service_fn(|req: Request<Empty<Bytes>>| async move {
        Ok::<_, Infallible>(Response::new(req.headers().contains_key(AUTHORIZATION)))
    });
    let mut req = get(Uri::from_static("/v1/models"));
    req.headers_mut()
        .insert(HOST, "remote.example".parse().unwrap());
    let err = layer().layer(inner).oneshot(req).await.unwrap_err();
    let refused = err.downcast_ref::<ScopeError>().expect("a ScopeError");
    assert!(refused.is_cleartext());
    assert!(err.to_string().contains("origin form"), "{err}");
    let mut req = get(Uri::from_static("/v1/models"));
    req.headers_mut()
        .insert(HOST, "remote.example".parse().unwrap());
    let open = layer().allow_insecure_http(true);
    assert!(*open.layer(inner).oneshot(req).await.unwrap().body());
}

#[tokio::test]
async fn with_a_scope_every_host_header_must_name_the_uris_host() {
    let (addr, seen) = recording_server().await;
    let scoped = || {
        layer()
            .restrict_to_hosts(["api.azerion.ai"])
            .allow_insecure_http(true)
    };
    let uri = format!("http://api.azerion.ai:{}/v1", addr.port());
    // The URI is in scope, the Host header is not: the server would route by the header.
    let mut req = get(uri.parse::<Uri>().unwrap());
    req.headers_mut()
        .insert(HOST, "evil.example".parse().unwrap());
    let err = send(&scoped(), req).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<ScopeError>().unwrap().host(),
        Some("evil.example")
    );
    // Two Host headers, the first in scope.
    let mut req = get(uri.parse::<Uri>().unwrap());
    req.headers_mut()
        .append(HOST, "api.azerion.ai".parse().unwrap());
    req.headers_mut()
        .append(HOST, "evil.example".parse().unwrap());
    let err = send(&scoped(), req).await.unwrap_err();
    assert!(err.to_string().contains("more than one Host"), "{err}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    // A Host header that agrees is fine.
    let mut req = get(uri.parse::<Uri>().unwrap());
    req.headers_mut().insert(
        HOST,
        format!("api.azerion.ai:{}", addr.port()).parse().unwrap(),
    );
    send(&scoped(), req).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(KEY.to_owned())]);
}

#[tokio::test]
async fn the_callers_own_header_to_an_out_of_scope_host_passes_through() {
    let inner = service_fn(|req: Request<Empty<Bytes>>| async move {
        Ok::<_, Infallible>(Response::new(support::bearer(&req)))
    });
    let scoped = layer().restrict_to_hosts(["api.azerion.ai"]);
    let mut req = get(Uri::from_static("https://other.example/v1"));
    req.headers_mut()
        .insert(AUTHORIZATION, "Bearer callers-own-token".parse().unwrap());
    let res = scoped.layer(inner).oneshot(req).await.unwrap();
    assert_eq!(res.into_body().as_deref(), Some("callers-own-token"));
    // Without the caller's header, the layer's key is at stake: refused.
    let req = get(Uri::from_static("https://other.example/v1"));
    let err = scoped.layer(inner).oneshot(req).await.unwrap_err();
    assert!(err.downcast_ref::<ScopeError>().is_some());
}

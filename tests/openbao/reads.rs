//! Reads against the real server: KV v1 and v2, a least-privilege token, a new version
//! healing a 401, and clear errors that never hold a secret.

use std::time::Duration;

use http::Method;
use serde_json::json;
use tower_bearer::VaultKeySourceBuilder;
use tower_bearer::{KeyErrorKind, KeySource, VaultKeySource};

use crate::common::{approle_setup, approle_source, no_secret, secret_file};
use crate::openbao::proxy::Proxy;
use crate::openbao::{openbao, unique};
use crate::support;

/// Issue 19 Medium 3: a real KV v1 read carries the mount's default lease (32 days) unless the
/// secret has a `ttl`: the key was re-read every 32 days instead of every 5 minutes.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn kv1_without_ttl_refreshes_within_the_default() {
    let bao = openbao();
    let mount = unique("kv1-ttl");
    bao.mount_kv(&mount, 1).await;
    bao.ok(
        Method::POST,
        &format!("{mount}/plain"),
        Some(json!({ "api_key": "sk-openbao-plain-0001" })),
    )
    .await;
    bao.ok(
        Method::POST,
        &format!("{mount}/timed"),
        Some(json!({ "api_key": "sk-openbao-timed-0001", "ttl": "90s" })),
    )
    .await;
    let source = |path: &str| {
        VaultKeySource::builder()
            .address(bao.url())
            .token(bao.root_token())
            .mount(&mount)
            .kv_version(1)
            .path(path)
            .field("api_key")
            .build()
            .unwrap()
    };
    let plain = source("plain").load().await.unwrap();
    assert_eq!(plain.refresh_hint(), Some(Duration::from_secs(300)));
    let timed = source("timed").load().await.unwrap();
    assert_eq!(timed.refresh_hint(), Some(Duration::from_secs(90)));
}

/// KV v2 with a token that may read one path and nothing else (no default policy).
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn kv2_with_a_least_privilege_token() {
    let bao = openbao();
    let mount = unique("kv2");
    bao.mount_kv(&mount, 2).await;
    for (path, key) in [
        ("azerion", "sk-openbao-kv2-0001"),
        ("private", "sk-openbao-private-01"),
    ] {
        bao.ok(
            Method::POST,
            &format!("{mount}/data/{path}"),
            Some(json!({ "data": { "api_key": key } })),
        )
        .await;
    }
    let policy = unique("kv2-reader");
    bao.policy(
        &policy,
        &format!(r#"path "{mount}/data/azerion" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let token = bao.token(&[&policy], true).await;
    let source = |path: &str| {
        VaultKeySource::builder()
            .address(bao.url())
            .token(&token)
            .mount(&mount)
            .path(path)
            .field("api_key")
            .build()
            .unwrap()
    };
    let key = source("azerion").load().await.unwrap();
    assert_eq!(key.expose_secret(), "sk-openbao-kv2-0001");
    let err = source("private").load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied);
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(
        err.to_string().contains(&format!("{mount}/data/private")),
        "{err}"
    );
    no_secret(&err, &[&token, "sk-openbao-private-01", bao.root_token()]);
}

/// A new secret version and the old key revoked by the API at once: ten requests in flight
/// get a 401 each, and the layer heals them all with exactly one more read, counted at the
/// server.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_new_version_heals_through_one_401() {
    use bytes::Bytes;
    use http_body_util::Full;
    use std::sync::{Arc, Mutex};
    use tower::{ServiceBuilder, ServiceExt};

    const OLD: &str = "sk-openbao-rotate-old-0001";
    const NEW: &str = "sk-openbao-rotate-new-0002";
    let bao = openbao();
    let proxy = Proxy::start(bao.addr).await;
    let mount = unique("kv2-rotate");
    bao.mount_kv(&mount, 2).await;
    bao.kv2_put(&mount, "azerion", json!({ "api_key": OLD }))
        .await;
    let policy = unique("rotate-reader");
    let read = format!("{mount}/data/azerion");
    bao.policy(
        &policy,
        &format!(r#"path "{read}" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let token = bao.token(&[&policy], true).await;
    let accepted = Arc::new(Mutex::new(OLD));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let (a, st) = (accepted.clone(), statuses.clone());
    let api = support::serve(move |req| {
        let (a, st) = (a.clone(), st.clone());
        async move {
            let ok = support::bearer(&req).as_deref() == Some(*a.lock().unwrap());
            let status = if ok { 200 } else { 401 };
            st.lock().unwrap().push(status);
            support::respond(status, "{}")
        }
    })
    .await;
    let source = VaultKeySource::builder()
        .address(proxy.url())
        .token(&token)
        .mount(&mount)
        .path("azerion")
        .field("api_key")
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(tower_bearer::BearerAuthLayer::new(source))
        .service(support::client::<Full<Bytes>>());
    let request = || {
        http::Request::get(format!("http://{api}/v1/models"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        client.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    assert_eq!(proxy.reads(&read).len(), 1);

    bao.kv2_put(&mount, "azerion", json!({ "api_key": NEW }))
        .await;
    *accepted.lock().unwrap() = NEW;
    statuses.lock().unwrap().clear();
    let replies =
        futures_util::future::join_all((0..10).map(|_| client.clone().oneshot(request()))).await;
    for reply in replies {
        assert_eq!(reply.unwrap().status(), 200);
    }
    let mut seen = statuses.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [[200; 10], [401; 10]].concat(),
        "each request: a 401, then its replay"
    );
    let reads = proxy.reads(&read);
    assert_eq!(
        reads.len(),
        2,
        "exactly one more read of the store: {reads:?}"
    );
    assert!(reads.iter().all(|r| r.status == 200));
    assert_eq!(proxy.hits().len(), 2, "nothing else asked of the server");
}

/// Real failures give clear errors and never a secret: a wrong secret_id, a missing path, a
/// missing field, a refused static token.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn no_secret_in_any_error_message() {
    let bao = openbao();
    let s = approle_setup(bao, "*", json!({})).await;
    let secret_id = bao.secret_id(&s.role).await;
    let secrets = [
        secret_id.as_str(),
        s.role_id.as_str(),
        bao.root_token(),
        "sk-openbao-app-key-0001",
    ];
    let file = secret_file(&secret_id);
    let cases: Vec<(VaultKeySourceBuilder, KeyErrorKind, &str)> = vec![
        (
            approle_source(bao, &s, &file, "nothing-here"),
            KeyErrorKind::Missing,
            "not found",
        ),
        (
            approle_source(bao, &s, &file, "app").field("nope"),
            KeyErrorKind::Missing,
            "no field \"nope\"",
        ),
        (
            approle_source(bao, &s, &file, "app").token("s.not-a-real-token-000000"),
            KeyErrorKind::Denied,
            "permission denied",
        ),
        (
            approle_source(bao, &s, &file, "app").auth_mount("nowhere"),
            KeyErrorKind::Denied,
            "AppRole login at auth/nowhere/login: permission denied",
        ),
    ];
    for (builder, kind, needle) in cases {
        let err = builder.build().unwrap().load().await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(err.to_string().contains(&bao.url()), "{err}");
        no_secret(&err, &secrets);
    }
    let wrong = secret_file("11111111-2222-3333-4444-555555555555");
    let err = approle_source(bao, &s, &wrong, "app")
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid role or secret ID"),
        "{err}"
    );
    no_secret(
        &err,
        &[&secrets[..], &["11111111-2222-3333-4444-555555555555"]].concat(),
    );
}

//! `VaultKeySource` against a real OpenBao dev server (`tests/support/openbao.rs`).
//!
//! Ignored by default, so `cargo test --all-features` passes on a machine without OpenBao.
//! CI runs them (`.ci/run`); locally:
//!
//! ```text
//! BAO_BIN="$(.ci/install-openbao)" cargo test --all-features --test openbao -- --ignored
//! ```
//!
//! One server per test binary; each test makes its own mounts, policies and roles.

#[path = "support/openbao.rs"]
mod openbao;
mod support;

use std::time::Duration;

use http::Method;
use serde_json::json;
use tower_bearer::{KeyError, KeyErrorKind, KeySource, VaultKeySource, VaultKeySourceBuilder};

use openbao::{openbao, unique, OpenBao};
use support::sources::Counted;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Asserts that no message or `Debug` form of `err` holds any of `secrets`.
#[track_caller]
fn no_secret(err: &KeyError, secrets: &[&str]) {
    let (msg, debug) = (err.to_string(), format!("{err:?}"));
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!msg.contains(secret), "{msg:?} leaks a secret");
        assert!(!debug.contains(secret), "{debug:?} leaks a secret");
    }
}

/// A KV v1 mount with one secret `app` holding `api_key`, a policy `read-{mount}` allowing
/// read on `{mount}/{readable}` only, and an AppRole role with that policy. Returns the
/// mount, the role and its role_id.
async fn approle_setup(bao: &OpenBao, readable: &str, role_options: serde_json::Value) -> Setup {
    let mount = unique("kv1");
    bao.mount_kv(&mount, 1).await;
    bao.ok(
        Method::POST,
        &format!("{mount}/app"),
        Some(json!({ "api_key": "sk-openbao-app-key-0001" })),
    )
    .await;
    let policy = format!("read-{mount}");
    bao.policy(
        &policy,
        &format!(r#"path "{mount}/{readable}" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let role = unique("role");
    let mut options = json!({ "token_policies": policy, "token_ttl": "1h" });
    options
        .as_object_mut()
        .unwrap()
        .extend(role_options.as_object().unwrap().clone());
    let role_id = bao.role(&role, options).await;
    Setup {
        mount,
        policy,
        role,
        role_id,
    }
}

struct Setup {
    mount: String,
    policy: String,
    role: String,
    role_id: String,
}

fn secret_file(secret_id: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), secret_id).unwrap();
    file
}

fn approle_source(
    bao: &OpenBao,
    s: &Setup,
    file: &tempfile::NamedTempFile,
    path: &str,
) -> VaultKeySourceBuilder {
    VaultKeySource::builder()
        .address(bao.url())
        .approle_secret_id_file(&s.role_id, file.path())
        .mount(&s.mount)
        .kv_version(1)
        .path(path)
        .field("api_key")
        .timeout(TIMEOUT)
}

/// Issue 19 High 1: a read denied by policy made one login per load (4 loads: 3 live tokens
/// and a used-up secret_id, then locked out after the policy was fixed). Now: one login,
/// however many loads, and the source reads once the policy allows it.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_policy_denied_read_does_not_log_in_again_nor_lock_the_source_out() {
    let bao = openbao();
    let s = approle_setup(bao, "app", json!({ "secret_id_num_uses": 3 })).await;
    bao.ok(
        Method::POST,
        &format!("{}/other", s.mount),
        Some(json!({ "api_key": "sk-openbao-other-key-0002" })),
    )
    .await;
    let secret_id = bao.secret_id(&s.role).await;
    let file = secret_file(&secret_id);
    let source = approle_source(bao, &s, &file, "other").build().unwrap();
    let mut errors = Vec::new();
    for _ in 0..20 {
        errors.push(source.load().await.unwrap_err());
    }
    // Before the fix: 3 logins (the secret_id used up), 3 live tokens, then refused logins.
    assert_eq!(
        bao.secret_id_uses_left(&s.role, &secret_id).await,
        2,
        "20 denied loads spent one secret_id use (one login)"
    );
    assert_eq!(
        bao.role_token_accessors(&s.role).await.len(),
        1,
        "one live token"
    );
    for (i, err) in errors.iter().enumerate() {
        assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("permission denied"), "{msg}");
        if i > 0 {
            // The first load's token is fresh from its login: no check needed.
            assert!(msg.contains("the token itself is valid"), "{msg}");
        }
        no_secret(err, &[&secret_id, &s.role_id, bao.root_token()]);
    }

    // The policy is fixed: the same token reads.
    let both = format!(
        r#"path "{m}/app" {{ capabilities = ["read"] }} path "{m}/other" {{ capabilities = ["read"] }}"#,
        m = s.mount
    );
    bao.policy(&s.policy, &both).await;
    let key = source.load().await.unwrap();
    assert_eq!(key.expose_secret(), "sk-openbao-other-key-0002");
    assert_eq!(bao.secret_id_uses_left(&s.role, &secret_id).await, 2);
}

/// Issue 19 High 2: an instance with a stale secret_id retried its login at every load until
/// OpenBao locked the role out, for every instance. Now it sends it once.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_stale_secret_id_does_not_lock_out_a_healthy_instance() {
    let bao = openbao();
    let s = approle_setup(bao, "app", json!({})).await;
    let stale = "00000000-0000-0000-0000-000000000000";
    let stale_file = secret_file(stale);
    let stale_source = approle_source(bao, &s, &stale_file, "app").build().unwrap();
    let mut errors = Vec::new();
    for _ in 0..10 {
        errors.push(stale_source.load().await.unwrap_err());
    }
    // Before the fix: 10 logins, the role locked out after 5, the healthy instance refused.
    assert!(
        !bao.locked_out(&s.role_id).await,
        "the role is not locked out"
    );
    let secret_id = bao.secret_id(&s.role).await;
    let file = secret_file(&secret_id);
    let healthy = approle_source(bao, &s, &file, "app").build().unwrap();
    assert_eq!(
        healthy.load().await.unwrap().expose_secret(),
        "sk-openbao-app-key-0001",
        "a healthy instance of the same role logs in"
    );
    let path = stale_file.path().display().to_string();
    for (i, err) in errors.iter().enumerate() {
        assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&path), "{msg}");
        if i == 0 {
            assert!(msg.contains("invalid role or secret ID"), "{msg}");
            assert!(msg.contains("not sent again until the file"), "{msg}");
        } else {
            assert!(msg.contains("refused the same secret_id"), "{msg}");
        }
        no_secret(err, &[stale, &s.role_id, bao.root_token()]);
    }

    // The stale instance gets a new secret_id in its file: it is tried at once.
    let fresh = bao.secret_id(&s.role).await;
    std::fs::write(stale_file.path(), &fresh).unwrap();
    assert!(stale_source.load().await.is_ok());
}

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

/// The token AppRole gave is revoked (by an operator): the source logs in again, once.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn approle_logs_in_again_after_its_token_is_revoked() {
    let bao = openbao();
    let s = approle_setup(bao, "app", json!({ "secret_id_num_uses": 10 })).await;
    let secret_id = bao.secret_id(&s.role).await;
    let file = secret_file(&secret_id);
    let source = approle_source(bao, &s, &file, "app").build().unwrap();
    source.load().await.unwrap();
    source.load().await.unwrap();
    assert_eq!(bao.secret_id_uses_left(&s.role, &secret_id).await, 9);
    bao.revoke_role_tokens(&s.role).await;
    let key = source.load().await.unwrap();
    assert_eq!(key.expose_secret(), "sk-openbao-app-key-0001");
    assert_eq!(
        bao.secret_id_uses_left(&s.role, &secret_id).await,
        8,
        "one login"
    );
    assert_eq!(bao.role_token_accessors(&s.role).await.len(), 1);
    source.load().await.unwrap();
    assert_eq!(bao.secret_id_uses_left(&s.role, &secret_id).await, 8);
}

/// A token refused although alive (its role gives no default policy, so `lookup-self` is
/// refused too): the source logs in again at most once per interval, and revokes the token
/// it replaces when it can.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_refused_token_is_replaced_at_most_once_per_interval() {
    let bao = openbao();
    let s = approle_setup(
        bao,
        "app",
        json!({ "secret_id_num_uses": 50, "token_no_default_policy": true }),
    )
    .await;
    bao.ok(
        Method::POST,
        &format!("{}/other", s.mount),
        Some(json!({ "api_key": "sk-openbao-other-key-0003" })),
    )
    .await;
    let secret_id = bao.secret_id(&s.role).await;
    let file = secret_file(&secret_id);
    let source = approle_source(bao, &s, &file, "other").build().unwrap();
    for _ in 0..20 {
        let err = source.load().await.unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
        no_secret(&err, &[&secret_id, &s.role_id, bao.root_token()]);
    }
    let used = 50 - bao.secret_id_uses_left(&s.role, &secret_id).await;
    assert_eq!(used, 2, "the first login and one forced login in 20 loads");
}

/// Issue 19 High 1 through the layer: 20 requests while the read is denied (the worst case:
/// a token that may not even look itself up) made 20 logins and left 20 live tokens. Now at
/// most two logins, whatever the request count.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn requests_through_the_layer_do_not_log_in_per_request() {
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt};

    let bao = openbao();
    let s = approle_setup(
        bao,
        "app",
        json!({ "secret_id_num_uses": 100, "token_no_default_policy": true }),
    )
    .await;
    let secret_id = bao.secret_id(&s.role).await;
    let file = secret_file(&secret_id);
    let source = approle_source(bao, &s, &file, "other").build().unwrap();
    let api = support::serve(|_req| async { support::respond(200, "{}") }).await;
    let client = ServiceBuilder::new()
        .layer(tower_bearer::BearerAuthLayer::new(source))
        .service(support::client::<Full<Bytes>>());
    for _ in 0..20 {
        let request = http::Request::get(format!("http://{api}/v1/models"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = client.clone().oneshot(request).await.unwrap_err();
        let err = err.downcast_ref::<KeyError>().expect("a key error");
        no_secret(err, &[&secret_id, &s.role_id, bao.root_token()]);
    }
    let logins = 100 - bao.secret_id_uses_left(&s.role, &secret_id).await;
    assert!(logins <= 2, "{logins} logins for 20 requests");
    let live = bao.role_token_accessors(&s.role).await.len();
    assert!(live <= 2, "{live} live tokens");
}

/// A namespace: the source sends `X-Vault-Namespace`; an empty namespace means none.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn kv2_in_a_namespace() {
    let bao = openbao();
    let ns = unique("ns");
    bao.ok(Method::POST, &format!("sys/namespaces/{ns}"), None)
        .await;
    let nsh = format!("{ns}/");
    let (status, _) = bao
        .api_in(
            &nsh,
            bao.root_token(),
            Method::POST,
            "sys/mounts/kv",
            Some(json!({ "type": "kv", "options": { "version": "2" } })),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = bao
        .api_in(
            &nsh,
            bao.root_token(),
            Method::POST,
            "kv/data/azerion",
            Some(json!({ "data": { "api_key": "sk-openbao-ns-0001" } })),
        )
        .await;
    assert_eq!(status, 200);
    let source = |namespace: &str| {
        VaultKeySource::builder()
            .address(bao.url())
            .token(bao.root_token())
            .namespace(namespace)
            .mount("kv")
            .path("azerion")
            .field("api_key")
            .build()
            .unwrap()
    };
    let key = source(&format!("{ns}/")).load().await.unwrap();
    assert_eq!(key.expose_secret(), "sk-openbao-ns-0001");
    let err = source("").load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    assert!(!err.to_string().contains("namespace"), "{err}");
    no_secret(&err, &[bao.root_token()]);
}

/// A new secret version and the old key revoked by the API: the layer heals through one 401
/// with exactly one more read of the store.
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
    let mount = unique("kv2-rotate");
    bao.mount_kv(&mount, 2).await;
    let write = |key: &'static str| {
        let path = format!("{mount}/data/azerion");
        async move {
            bao.ok(
                Method::POST,
                &path,
                Some(json!({ "data": { "api_key": key } })),
            )
            .await;
        }
    };
    write(OLD).await;
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
        .address(bao.url())
        .token(bao.root_token())
        .mount(&mount)
        .path("azerion")
        .field("api_key")
        .build()
        .unwrap();
    // Each load is one read of the store.
    let source = Counted::new(source);
    let layer = tower_bearer::BearerAuthLayer::new(source.clone());
    let client = ServiceBuilder::new()
        .layer(layer)
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
    write(NEW).await;
    *accepted.lock().unwrap() = NEW;
    assert_eq!(
        client.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    assert_eq!(*statuses.lock().unwrap(), [200, 401, 200]);
    assert_eq!(source.loads(), 2, "one read per key");
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

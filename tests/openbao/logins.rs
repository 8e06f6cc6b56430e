//! AppRole against the real server: the login discipline of issue 19 (no login per denied
//! read, no lockout by a stale secret_id) and a new login after revocation.

use http::Method;
use serde_json::json;
use tower_bearer::{KeyError, KeyErrorKind, KeySource};

use crate::common::{approle_setup, approle_source, no_secret, secret_file};
use crate::openbao::openbao;
use crate::support;

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

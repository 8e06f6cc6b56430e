//! KV v2 versions and token lifetimes against the real server: a soft-deleted and a destroyed
//! latest version, a missing path and field, and `renew-self` of a short-lived token.

use std::time::Duration;

use http::Method;
use serde_json::json;
use tower_bearer::{KeyErrorKind, KeySource, KeyState, VaultKeySource};

use crate::common::{approle_setup, no_secret, secret_file, TIMEOUT};
use crate::harness::{layered, send, Api};
use crate::openbao::{openbao, poll_until, unique};

/// The latest version soft-deleted, then a newer one destroyed: each a `Missing` error that
/// says which version and what to do, while the layer keeps serving the key it had; a missing
/// path and a missing field say so too. No message holds a key or the token.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn deleted_destroyed_and_missing_give_clear_errors() {
    const KEYS: [&str; 3] = [
        "sk-openbao-version-0001",
        "sk-openbao-version-0002",
        "sk-openbao-version-0003",
    ];
    let bao = openbao();
    let mount = unique("kv2-versions");
    bao.mount_kv(&mount, 2).await;
    let policy = unique("versions-reader");
    bao.policy(
        &policy,
        &format!(r#"path "{mount}/data/*" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let token = bao.token(&[&policy], true).await;
    let source = |path: &str, field: &str| {
        VaultKeySource::builder()
            .address(bao.url())
            .token(&token)
            .mount(&mount)
            .path(path)
            .field(field)
            .timeout(TIMEOUT)
            .build()
            .unwrap()
    };
    let secrets = [KEYS[0], KEYS[1], KEYS[2], &token, bao.root_token()];
    bao.kv2_put(&mount, "app", json!({ "api_key": KEYS[0] }))
        .await;
    let api = Api::new(&KEYS);
    let (client, handle, _) = layered(source("app", "api_key"), &api);
    assert_eq!(send(&client).await, Ok(200));

    // Version 2 written, then soft-deleted: the latest version is deleted.
    bao.kv2_put(&mount, "app", json!({ "api_key": KEYS[1] }))
        .await;
    bao.ok(Method::DELETE, &format!("{mount}/data/app"), None)
        .await;
    let err = source("app", "api_key").load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("version 2 of the secret was deleted at 20"),
        "{msg}"
    );
    assert!(msg.contains("undelete it or write a new version"), "{msg}");
    assert!(msg.contains(&format!("reading {mount}/data/app")), "{msg}");
    assert!(msg.contains("HTTP 404"), "{msg}");
    no_secret(&err, &secrets);
    // The layer's manual rotation fails the same way and keeps the key it has.
    let err = handle.rotate().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert_eq!(handle.status().consecutive_failures(), 1);
    assert_eq!(handle.status().state(), KeyState::Stale);
    assert_eq!(send(&client).await, Ok(200));
    assert_eq!(api.seen().last().unwrap().0, KEYS[0]);

    // Version 3 written, then destroyed: the latest version is gone for good.
    bao.kv2_put(&mount, "app", json!({ "api_key": KEYS[2] }))
        .await;
    bao.ok(
        Method::POST,
        &format!("{mount}/destroy/app"),
        Some(json!({ "versions": [3] })),
    )
    .await;
    let err = source("app", "api_key").load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("version 3 of the secret was destroyed; write a new version"),
        "{msg}"
    );
    no_secret(&err, &secrets);

    // A path with no secret, a secret without the field.
    let err = source("nothing-here", "api_key").load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("reading {mount}/data/nothing-here: not found")),
        "{msg}"
    );
    assert!(msg.contains("no secret at this path"), "{msg}");
    no_secret(&err, &secrets);
    bao.kv2_put(
        &mount,
        "other",
        json!({ "user": "someone", "password": KEYS[2] }),
    )
    .await;
    let err = source("other", "api_key").load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("the secret has no field \"api_key\" (its fields: password, user)"),
        "{msg}"
    );
    no_secret(&err, &secrets);
}

/// A token from an AppRole login with a 20 s TTL, renewed within 10 s of its end: the key's
/// refresh hint stops at the token's renewal point, and a load within the renewal margin
/// renews the same token with `renew-self` (its TTL back up, no new login).
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_short_lived_token_is_renewed_with_renew_self() {
    let bao = openbao();
    let s = approle_setup(
        bao,
        "app",
        json!({ "secret_id_num_uses": 10, "token_ttl": "20s", "token_max_ttl": "1h" }),
    )
    .await;
    let secret_id = bao.secret_id(&s.role).await;
    let file = secret_file(&secret_id);
    let source = VaultKeySource::builder()
        .address(bao.url())
        .approle_secret_id_file(&s.role_id, file.path())
        .mount(&s.mount)
        .kv_version(1)
        .path("app")
        .field("api_key")
        .renew_token_within(Duration::from_secs(10))
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let key = source.load().await.unwrap();
    let hint = key.refresh_hint().unwrap();
    assert!(
        hint <= Duration::from_secs(10) && hint >= Duration::from_secs(9),
        "the key is read again by the token's renewal point: {hint:?}"
    );
    let accessors = bao.role_token_accessors(&s.role).await;
    assert_eq!(accessors.len(), 1);
    let accessor = &accessors[0];
    let ttl = |data: serde_json::Value| data["ttl"].as_u64().unwrap();
    let before = bao.lookup_accessor(accessor).await.unwrap();
    assert!(before["last_renewal_time"].is_null() || before["last_renewal_time"] == 0);

    // Into the renewal margin (less than 10 s left) and well before the source would log in
    // again instead (2 s left). The server counts from its issue time, the source from the
    // login's answer, a few ms later: a second of slack.
    poll_until(
        "the token's TTL under 9 s",
        Duration::from_secs(30),
        || async { matches!(bao.lookup_accessor(accessor).await.map(ttl), Some(t) if t <= 8) },
    )
    .await;
    let key = source.load().await.unwrap();
    assert_eq!(key.expose_secret(), "sk-openbao-app-key-0001");
    let after = bao
        .lookup_accessor(accessor)
        .await
        .expect("the same token lives");
    assert!(ttl(after.clone()) >= 18, "renewed to its 20 s TTL: {after}");
    assert!(
        after["last_renewal_time"].as_i64().unwrap_or(0) > 0,
        "{after}"
    );
    assert_eq!(
        bao.secret_id_uses_left(&s.role, &secret_id).await,
        9,
        "no second login"
    );
    assert_eq!(bao.role_token_accessors(&s.role).await.len(), 1);
}

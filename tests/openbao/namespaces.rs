//! Namespaces against the real server (OpenBao has them since 2.3; the dev server too):
//! `X-Vault-Namespace` on the read, the login, `lookup-self` and `renew-self`.

use http::Method;
use serde_json::{json, Value};
use tower_bearer::{KeyErrorKind, KeySource, VaultKeySource};

use crate::common::{no_secret, secret_file, TIMEOUT};
use crate::openbao::proxy::Proxy;
use crate::openbao::{openbao, unique, OpenBao};

/// Calls the API as root in `namespace`, asserting a 2xx.
async fn ns_ok(
    bao: &OpenBao,
    namespace: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (status, value) = bao
        .api_in(namespace, bao.root_token(), method.clone(), path, body)
        .await;
    assert!(
        (200..300).contains(&status),
        "{namespace} {method} {path}: {status} {value}"
    );
    value
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

/// Everything in a namespace of its own: AppRole, a policy, a KV v2 mount. An AppRole source
/// with the namespace logs in there and reads; after its token is revoked, `lookup-self` and
/// the new login go to the namespace too. A least-privilege token of the namespace reads its
/// one path, is refused another (the message names the namespace), and means nothing without
/// the namespace.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn approle_and_a_least_privilege_token_in_a_namespace() {
    const KEY: &str = "sk-openbao-ns-approle-0001";
    let bao = openbao();
    let proxy = Proxy::start(bao.addr).await;
    let ns = unique("team");
    bao.ok(Method::POST, &format!("sys/namespaces/{ns}"), None)
        .await;
    let kv = Some(json!({ "type": "kv", "options": { "version": "2" } }));
    ns_ok(bao, &ns, Method::POST, "sys/mounts/kv", kv).await;
    let approle = Some(json!({ "type": "approle" }));
    ns_ok(bao, &ns, Method::POST, "sys/auth/approle", approle).await;
    for (path, key) in [("azerion", KEY), ("private", "sk-openbao-ns-private-01")] {
        let data = Some(json!({ "data": { "api_key": key } }));
        ns_ok(bao, &ns, Method::POST, &format!("kv/data/{path}"), data).await;
    }
    let policy = json!({ "policy": r#"path "kv/data/azerion" { capabilities = ["read"] }"# });
    ns_ok(
        bao,
        &ns,
        Method::PUT,
        "sys/policies/acl/reader",
        Some(policy),
    )
    .await;
    let role = json!({ "token_policies": "reader", "token_ttl": "1h" });
    ns_ok(bao, &ns, Method::POST, "auth/approle/role/app", Some(role)).await;
    let v = ns_ok(bao, &ns, Method::GET, "auth/approle/role/app/role-id", None).await;
    let role_id = v["data"]["role_id"].as_str().unwrap().to_owned();
    let v = ns_ok(
        bao,
        &ns,
        Method::POST,
        "auth/approle/role/app/secret-id",
        None,
    )
    .await;
    let secret_id = v["data"]["secret_id"].as_str().unwrap().to_owned();
    let file = secret_file(&secret_id);
    let builder = |path: &str| {
        VaultKeySource::builder()
            .address(proxy.url())
            .namespace(&ns)
            .mount("kv")
            .path(path)
            .field("api_key")
            .timeout(TIMEOUT)
    };

    let source = builder("azerion")
        .approle_secret_id_file(&role_id, file.path())
        .build()
        .unwrap();
    assert_eq!(source.load().await.unwrap().expose_secret(), KEY);
    let logins = || proxy.to("auth/approle/login").len();
    assert_eq!(logins(), 1);
    // Revoke every token of the namespace's role: the next load finds out and logs in again.
    let v = ns_ok(
        bao,
        &ns,
        Method::from_bytes(b"LIST").unwrap(),
        "auth/token/accessors",
        None,
    )
    .await;
    for accessor in v["data"]["keys"].as_array().unwrap() {
        let body = Some(json!({ "accessor": accessor }));
        ns_ok(bao, &ns, Method::POST, "auth/token/revoke-accessor", body).await;
    }
    assert_eq!(source.load().await.unwrap().expose_secret(), KEY);
    assert_eq!(logins(), 2, "one more login, in the namespace");
    let lookups = proxy.to("auth/token/lookup-self");
    assert_eq!(lookups.len(), 1);
    assert_eq!(
        lookups[0].status, 403,
        "the revoked token, refused in the namespace"
    );

    let body = Some(json!({ "policies": ["reader"], "no_default_policy": true, "ttl": "1h" }));
    let v = ns_ok(bao, &ns, Method::POST, "auth/token/create", body).await;
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let secrets = [
        KEY,
        "sk-openbao-ns-private-01",
        &token,
        &secret_id,
        &role_id,
        bao.root_token(),
    ];
    let source = builder("azerion").token(&token).build().unwrap();
    assert_eq!(source.load().await.unwrap().expose_secret(), KEY);
    let err = builder("private")
        .token(&token)
        .build()
        .unwrap()
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("kv/data/private (field api_key, namespace {ns})")),
        "{msg}"
    );
    assert!(msg.contains("permission denied"), "{msg}");
    no_secret(&err, &secrets);
    let outside = VaultKeySource::builder()
        .address(bao.url())
        .token(&token)
        .mount("kv")
        .path("azerion")
        .field("api_key")
        .build()
        .unwrap();
    let err = outside.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    no_secret(&err, &secrets);
}

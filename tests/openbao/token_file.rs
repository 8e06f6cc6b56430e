//! `token_file`: the token a Vault Agent or Vault Proxy sink writes, against the real server.
//! The test plays the agent: it writes a token to the file, rotates it, revokes the old one.
//! Requests are counted at the server through the proxy.

use std::sync::{Arc, Mutex};

use http::Method;
use serde_json::json;
use tower_bearer::{KeyErrorKind, KeySource, VaultKeySource};

use crate::common::{no_secret, TIMEOUT};
use crate::openbao::proxy::{token_digest, Proxy};
use crate::openbao::{openbao, unique};

const KEY: &str = "sk-openbao-token-file-0001";

/// The agent writes a new token and revokes the old one: the next load reads the new one from
/// the file (one read, no 403). The agent rotates between a load's read of the file and its
/// request: the 403 makes the source read the file again and the secret once more (two reads,
/// no lookup, no login). The agent's token revoked and not replaced: a `Denied` error that
/// names the file and says the token itself is refused. A token whose policy does not allow
/// the read: the error says so. No message holds a token or the key.
#[tokio::test]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_token_file_rotated_by_an_agent_is_followed() {
    let bao = openbao();
    let proxy = Proxy::start(bao.addr).await;
    let mount = unique("kv2-agent");
    bao.mount_kv(&mount, 2).await;
    bao.kv2_put(&mount, "app", json!({ "api_key": KEY })).await;
    let read = format!("{mount}/data/app");
    let policy = unique("agent-reader");
    bao.policy(
        &policy,
        &format!(r#"path "{read}" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent-token");
    let agent_writes = |token: &str| std::fs::write(&path, format!("{token}\n")).unwrap();
    let a = bao.token(&[&policy], true).await;
    agent_writes(&a);
    let source = VaultKeySource::builder()
        .address(proxy.url())
        .token_file(&path)
        .mount(&mount)
        .path("app")
        .field("api_key")
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    let requests_since = |n: usize| -> Vec<(String, u16, u64)> {
        proxy.hits()[n..]
            .iter()
            .map(|h| (h.path.clone(), h.status, h.token))
            .collect()
    };

    assert_eq!(source.load().await.unwrap().expose_secret(), KEY);
    assert_eq!(requests_since(0), [(read.clone(), 200, token_digest(&a))]);

    // Rotated by the agent between two loads.
    let b = bao.token(&[&policy], true).await;
    agent_writes(&b);
    bao.revoke_token(&a).await;
    assert_eq!(source.load().await.unwrap().expose_secret(), KEY);
    assert_eq!(requests_since(1), [(read.clone(), 200, token_digest(&b))]);

    // Rotated while the load's request is on its way: the server refuses `b`.
    let c = bao.token(&[&policy], true).await;
    let armed = Arc::new(Mutex::new(Some((token_digest(&b), b.clone(), c.clone()))));
    let (hook_path, hook_read) = (path.clone(), read.clone());
    proxy.on_request(Arc::new(move |parts| {
        let token = parts
            .headers
            .get("x-vault-token")
            .map(|t| t.to_str().unwrap().to_owned());
        let mine = parts.uri.path() == format!("/v1/{hook_read}");
        let fire = match (&*armed.lock().unwrap(), token) {
            (Some((digest, ..)), Some(t)) => mine && token_digest(&t) == *digest,
            _ => false,
        };
        let rotation = if fire {
            armed.lock().unwrap().take()
        } else {
            None
        };
        let path = hook_path.clone();
        Box::pin(async move {
            if let Some((_, old, new)) = rotation {
                std::fs::write(&path, &new).unwrap();
                openbao().revoke_token(&old).await;
            }
        })
    }));
    assert_eq!(source.load().await.unwrap().expose_secret(), KEY);
    assert_eq!(
        requests_since(2),
        [
            (read.clone(), 403, token_digest(&b)),
            (read.clone(), 200, token_digest(&c)),
        ],
        "the file read again after the 403, and the secret once more"
    );

    // Revoked, and the agent has not written a new one.
    bao.revoke_token(&c).await;
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    let msg = err.to_string();
    let file = path.display().to_string();
    assert!(
        msg.contains(&format!("reading {read}: permission denied")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "Vault refused the token from file {file} at auth/token/lookup-self too"
        )),
        "{msg}"
    );
    assert!(msg.contains("has not replaced it"), "{msg}");
    assert_eq!(
        requests_since(4),
        [
            (read.clone(), 403, token_digest(&c)),
            ("auth/token/lookup-self".into(), 403, token_digest(&c)),
        ]
    );
    let secrets = [KEY, &a, &b, &c, bao.root_token()];
    no_secret(&err, &secrets);

    // A live token whose policy does not cover the path.
    let other = unique("agent-other");
    bao.policy(&other, r#"path "nowhere/*" { capabilities = ["read"] }"#)
        .await;
    let d = bao.token(&[&other, "default"], false).await;
    agent_writes(&d);
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("the token from file {file} is valid (auth/token/lookup-self): its policy does not allow the read")),
        "{msg}"
    );
    no_secret(&err, &[&secrets[..], &[d.as_str()]].concat());

    // The file gone, then empty: named, and nothing is asked of the server.
    let before = proxy.hits().len();
    std::fs::remove_file(&path).unwrap();
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("the Vault token from file {file}")),
        "{err}"
    );
    std::fs::write(&path, "\n").unwrap();
    let err = source.load().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing, "{err}");
    assert!(err.to_string().contains("is empty"), "{err}");
    assert_eq!(proxy.hits().len(), before);
    assert!(!proxy
        .hits()
        .iter()
        .any(|h| h.method == Method::POST && h.path.contains("login")));
}

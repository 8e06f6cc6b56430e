//! Faults of the real server, each on a server of its own: sealed then unsealed, killed then
//! restarted on the same port. The layer keeps serving the last good key, backs off, and
//! recovers by itself.

use std::time::Duration;

use serde_json::json;
use tower_bearer::{KeyErrorKind, KeyState, RotationReason, VaultKeySource};

use crate::common::no_secret;
use crate::harness::{layered, send, Api, Traffic};
use crate::openbao::proxy::Proxy;
use crate::openbao::OpenBao;

const OLD: &str = "sk-openbao-fault-old-0001";
const NEW: &str = "sk-openbao-fault-new-0002";
/// How long any awaited event may take; far above what each takes.
const WITHIN: Duration = Duration::from_secs(30);
const READ: &str = "kv/data/app";

/// Mount `kv` (v2), `app` holding `key`, and a policy `reader` that may read it alone.
async fn kv_setup(bao: &OpenBao, key: &str) {
    bao.mount_kv("kv", 2).await;
    bao.kv2_put("kv", "app", json!({ "api_key": key })).await;
    bao.policy(
        "reader",
        &format!(r#"path "{READ}" {{ capabilities = ["read"] }}"#),
    )
    .await;
}

/// A least-privilege token with an id the test chooses, so it can be made again on a
/// restarted (empty) server.
async fn reader_token(bao: &OpenBao, id: &str) {
    bao.ok(
        http::Method::POST,
        "auth/token/create",
        Some(json!({ "id": id, "policies": ["reader"], "no_default_policy": true, "ttl": "1h" })),
    )
    .await;
}

/// Sealed: every refresh gets 503 "Vault is sealed"; requests keep getting the last good key;
/// loads back off (0.5 s, 1 s, 2 s, jittered ±20%), one read each at the server; after the
/// unseal, the next load brings the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn sealed_serves_the_last_key_with_backoff_and_recovers_after_unseal() {
    let bao = OpenBao::start();
    let proxy = Proxy::start(bao.addr).await;
    kv_setup(&bao, OLD).await;
    let token = "fault-sealed-reader-token-0001";
    reader_token(&bao, token).await;
    let source = VaultKeySource::builder()
        .address(proxy.url())
        .token(token)
        .mount("kv")
        .path("app")
        .field("api_key")
        .refresh_after(Duration::from_secs(1))
        .build()
        .unwrap();
    let api = Api::new(&[OLD, NEW]);
    let (client, handle, events) = layered(source, &api);
    assert_eq!(send(&client).await, Ok(200));

    bao.seal().await;
    let sealed_at = proxy.now();
    let traffic = Traffic::start(&client, Duration::from_millis(20));
    events.until(WITHIN, |e| e.failures().len() >= 3).await;
    let failures = events.failures();
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Stale);
    assert_eq!(status.consecutive_failures(), 3);

    // One read per load at the server, each a 503, spaced at least by the backoff.
    let reads: Vec<_> = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.at >= sealed_at)
        .collect();
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert!(reads.iter().all(|h| h.status == 503), "{reads:?}");
    assert_eq!(
        proxy.hits().len(),
        4,
        "nothing but reads: {:?}",
        proxy.hits()
    );
    for (i, failure) in failures.iter().take(3).enumerate() {
        let err = failure.error();
        assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
        assert!(err.is_transient());
        let msg = err.to_string();
        assert!(
            msg.contains("Vault is sealed") && msg.contains("HTTP 503"),
            "{msg}"
        );
        assert!(msg.contains(&proxy.url()) && msg.contains(READ), "{msg}");
        no_secret(err, &[OLD, token, &bao.unseal_key(), bao.root_token()]);
        assert!(failure.serving_stale(), "the last good key is served");
        let wait = failure.next_load_in().unwrap();
        let base = Duration::from_millis(500 << i);
        assert!(
            wait >= base.mul_f64(0.8) && wait <= base.mul_f64(1.2),
            "backoff {i}: {wait:?}"
        );
        if let Some(next) = reads.get(i + 1) {
            let gap = next.at - reads[i].at;
            assert!(
                gap + Duration::from_millis(20) >= wait,
                "{gap:?} < {wait:?}"
            );
        }
    }
    let seen = api.seen();
    assert!(seen.len() > 10, "traffic went on: {}", seen.len());
    assert!(
        seen.iter()
            .all(|(key, status)| key == OLD && *status == 200),
        "every request got the last good key"
    );
    assert!(traffic.outcomes().iter().all(|o| *o == Ok(200)));

    // Unsealed, with a new version: the next load (after the backoff) takes it.
    bao.unseal().await;
    bao.kv2_put("kv", "app", json!({ "api_key": NEW })).await;
    events.until(WITHIN, |e| e.rotations().len() >= 2).await;
    let rotation = events.rotations().pop().unwrap();
    assert_eq!(rotation.reason(), RotationReason::Refresh);
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Fresh);
    assert_eq!(status.consecutive_failures(), 0);
    let after: Vec<_> = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.at >= sealed_at && h.status == 200)
        .collect();
    assert_eq!(after.len(), 1, "one read after the unseal: {after:?}");
    drop(traffic);
    assert_eq!(send(&client).await, Ok(200));
    assert_eq!(api.seen().last().unwrap().0, NEW);
}

/// Killed, then restarted on the same port (empty: a dev server keeps nothing; the test sets
/// the secret, the policy, the token and AppRole up again with the same ids). Meanwhile the
/// loads fail with "cannot connect" and back off, requests keep the last good key; after the
/// restart both sources recover: the token source with the same token, the AppRole source by
/// logging in again (its token died with the old server), each without a restart of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_killed_and_restarted_server_is_recovered_from() {
    const ROLE_ID: &str = "fault-restart-role-id-0001";
    const SECRET_ID: &str = "fault-restart-secret-id-0001";
    const TOKEN: &str = "fault-restart-reader-token-0001";
    let bao = OpenBao::start();
    let setup = |key: &'static str| {
        let bao = &bao;
        async move {
            kv_setup(bao, key).await;
            reader_token(bao, TOKEN).await;
            let options = json!({ "token_policies": "reader", "token_ttl": "1h" });
            bao.role_with_ids("app", options, ROLE_ID, SECRET_ID).await;
        }
    };
    setup(OLD).await;
    let secret_file = crate::common::secret_file(SECRET_ID);
    let builder = || {
        VaultKeySource::builder()
            .address(bao.url())
            .mount("kv")
            .path("app")
            .field("api_key")
            .refresh_after(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
    };
    let approle = builder()
        .approle_secret_id_file(ROLE_ID, secret_file.path())
        .build()
        .unwrap();
    let token = builder().token(TOKEN).build().unwrap();
    let api = Api::new(&[OLD, NEW]);
    let (approle, approle_handle, approle_events) = layered(approle, &api);
    let (token, token_handle, token_events) = layered(token, &api);
    assert_eq!(send(&approle).await, Ok(200));
    assert_eq!(send(&token).await, Ok(200));
    assert_eq!(bao.role_token_accessors("app").await.len(), 1);

    bao.stop();
    let approle_traffic = Traffic::start(&approle, Duration::from_millis(20));
    let token_traffic = Traffic::start(&token, Duration::from_millis(20));
    for events in [&approle_events, &token_events] {
        events.until(WITHIN, |e| e.failures().len() >= 2).await;
    }
    for failure in [approle_events.failures(), token_events.failures()].concat() {
        let err = failure.error();
        assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cannot connect to {}", bao.addr)),
            "{msg}"
        );
        assert!(failure.serving_stale());
        no_secret(err, &[OLD, TOKEN, SECRET_ID, ROLE_ID, bao.root_token()]);
    }
    // The AppRole layer makes no load while its server is being set up again (a dev server
    // starts empty; a real one keeps its roles): its traffic stops meanwhile.
    drop(approle_traffic);
    bao.restart();
    setup(NEW).await;
    let approle_traffic = Traffic::start(&approle, Duration::from_millis(20));
    for events in [&approle_events, &token_events] {
        events.until(WITHIN, |e| e.rotations().len() >= 2).await;
        let rotation = events.rotations().pop().unwrap();
        assert_eq!(rotation.reason(), RotationReason::Refresh);
    }
    for handle in [&approle_handle, &token_handle] {
        assert_eq!(handle.status().state(), KeyState::Fresh);
    }
    assert_eq!(
        bao.role_token_accessors("app").await.len(),
        1,
        "one login on the new server"
    );
    for traffic in [&approle_traffic, &token_traffic] {
        assert!(
            traffic.outcomes().iter().all(|o| *o == Ok(200)),
            "served throughout"
        );
    }
    assert!(api.seen().iter().all(|(_, status)| *status == 200));
}

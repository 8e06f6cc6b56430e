//! A rate-limit quota (`sys/quotas/rate-limit`) on the KV mount, on a server of its own (the
//! quota's response headers are a server-wide setting): 429s are transient, a `Retry-After`
//! is honoured, and a storm of requests never becomes a storm of reads.

use std::time::Duration;

use serde_json::json;
use tower_bearer::{KeyErrorKind, KeyState, RotationReason, VaultKeySource};

use crate::common::no_secret;
use crate::harness::{layered, send, Api, Traffic};
use crate::openbao::proxy::Proxy;
use crate::openbao::OpenBao;

const OLD: &str = "sk-openbao-quota-old-0001";
const NEW: &str = "sk-openbao-quota-new-0002";
const WITHIN: Duration = Duration::from_secs(30);
const READ: &str = "kv/data/app";

/// A server, a proxy in front, `kv/app` holding `OLD`, and a source reading it through the
/// proxy with the root token (quotas apply to root as to anyone).
async fn setup(refresh: Duration) -> (OpenBao, Proxy, VaultKeySource) {
    let bao = OpenBao::start();
    let proxy = Proxy::start(bao.addr).await;
    bao.mount_kv("kv", 2).await;
    bao.kv2_put("kv", "app", json!({ "api_key": OLD })).await;
    let source = VaultKeySource::builder()
        .address(proxy.url())
        .token(bao.root_token())
        .mount("kv")
        .path("app")
        .field("api_key")
        .refresh_after(refresh)
        .build()
        .unwrap();
    (bao, proxy, source)
}

/// With `enable_rate_limit_response_headers`, OpenBao's 429 says `Retry-After: N`: the
/// error carries it, the layer waits at least that long (not its 0.5 s backoff) before it
/// reads again, and serves the last good key meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_429_retry_after_is_honoured() {
    let (bao, proxy, source) = setup(Duration::from_secs(1)).await;
    let api = Api::new(&[OLD]);
    let (client, handle, events) = layered(source, &api);
    bao.rate_limit_headers(true).await;
    // One read per 6 s: the first load takes it, the first refresh (after ~1 s) is refused.
    bao.rate_limit("kv", json!({ "path": "kv/", "rate": 1, "interval": "6s" }))
        .await;
    assert_eq!(send(&client).await, Ok(200));
    let traffic = Traffic::start(&client, Duration::from_millis(20));
    events.until(WITHIN, |e| !e.failures().is_empty()).await;

    let failure = events.failures().remove(0);
    let err = failure.error();
    let refused = proxy
        .reads(READ)
        .into_iter()
        .find(|h| h.status == 429)
        .unwrap();
    let said: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!(
        said >= 2,
        "OpenBao asks to wait {said} s, more than the 0.5 s backoff"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(said)));
    assert_eq!(err.kind(), KeyErrorKind::Unavailable);
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("rate limited") && msg.contains("HTTP 429"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("Vault asks to wait {said} s")),
        "{msg}"
    );
    no_secret(err, &[OLD, bao.root_token()]);
    assert!(failure.serving_stale());
    assert!(failure.next_load_in().unwrap() >= Duration::from_secs(said));
    assert_eq!(handle.status().state(), KeyState::Stale);
    assert!(api
        .seen()
        .iter()
        .all(|(key, status)| key == OLD && *status == 200));

    // Lifted, with a new version: the next read comes no sooner than asked, and takes it.
    bao.remove_rate_limit("kv").await;
    bao.kv2_put("kv", "app", json!({ "api_key": NEW })).await;
    api.accept(&[OLD, NEW]);
    events.until(WITHIN, |e| e.rotations().len() >= 2).await;
    assert_eq!(
        events.rotations().pop().unwrap().reason(),
        RotationReason::Refresh
    );
    let after: Vec<_> = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.at > refused.at)
        .collect();
    assert_eq!(after.len(), 1, "{after:?}");
    let gap = after[0].at - refused.at;
    assert!(
        gap + Duration::from_millis(20) >= Duration::from_secs(said),
        "read again after {gap:?}, asked {said} s"
    );
    assert!(traffic.outcomes().iter().all(|o| *o == Ok(200)));
    assert_eq!(handle.status().state(), KeyState::Fresh);
}

/// The worst case: the key is revoked at once (every request gets a 401, and a 401 asks for
/// a reload) while the store answers 429 without a `Retry-After`. Hundreds of requests make
/// a handful of reads, spaced by the doubling backoff; once the quota is lifted, the next
/// load heals the layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao)"]
async fn a_401_storm_against_a_rate_limited_store_is_no_read_storm() {
    let (bao, proxy, source) = setup(Duration::from_secs(300)).await;
    let api = Api::new(&[OLD]);
    let (client, handle, events) = layered(source, &api);
    assert_eq!(send(&client).await, Ok(200));
    // One request per minute on kv/: the write of the new version takes it.
    bao.rate_limit("kv", json!({ "path": "kv/", "rate": 1, "interval": "1m" }))
        .await;
    bao.kv2_put("kv", "app", json!({ "api_key": NEW })).await;
    api.accept(&[NEW]);
    let start = proxy.now();
    let traffic: Vec<_> = (0..8)
        .map(|_| Traffic::start(&client, Duration::from_millis(5)))
        .collect();
    events.until(WITHIN, |e| e.failures().len() >= 4).await;
    let window = proxy.now() - start;
    let requests = api.seen().len();
    let reads = proxy.reads(READ);
    let refused: Vec<_> = reads.iter().filter(|h| h.at >= start).collect();
    assert!(refused
        .iter()
        .all(|h| h.status == 429 && h.retry_after.is_none()));
    // Loads at 0, then >= 0.4, 1.2, 2.8 s (0.5, 1, 2 s backoff at -20%): four in the window.
    assert_eq!(
        refused.len(),
        4,
        "{requests} requests made these reads: {refused:?}"
    );
    assert!(requests > 200, "{requests} requests in {window:?}");
    assert_eq!(proxy.hits().len(), reads.len(), "nothing but reads");
    for failure in events.failures() {
        assert_eq!(failure.error().kind(), KeyErrorKind::Unavailable);
        assert!(failure.error().to_string().contains("rate limited"));
        assert_eq!(failure.error().retry_after(), None);
        no_secret(failure.error(), &[OLD, NEW, bao.root_token()]);
    }
    println!(
        "{requests} requests with a revoked key in {window:?}: {} reads",
        refused.len()
    );

    bao.remove_rate_limit("kv").await;
    events.until(WITHIN, |e| e.rotations().len() >= 2).await;
    // The next 401 reloads, or the retry the failed reload scheduled does: either heals.
    let reason = events.rotations().pop().unwrap().reason();
    assert!(
        matches!(reason, RotationReason::Rejected | RotationReason::Refresh),
        "{reason:?}"
    );
    drop(traffic);
    assert_eq!(send(&client).await, Ok(200));
    assert_eq!(handle.status().consecutive_failures(), 0);
    let healed = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.status == 200)
        .count();
    assert_eq!(healed, 2, "the first read, and one after the quota went");
}

//! The refresh and reload machinery under cancellation, huge hints, stale in-flight loads and
//! runtimes that go away: the audit's findings, each as the program that showed it.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::StatusCode;
use http_body_util::Full;
use support::advance;
use support::sources::{accepting, api, keyed_on_an_idle_runtime, req, send, Steered};
use tower::{Layer, Service, ServiceExt};
use tower_bearer::{ApiKey, BearerAuthLayer, FileKeySource, StaticKey};

const KEY_A: &str = "sk-refresh-key-AAAAAAAAAAAA";
const KEY_B: &str = "sk-refresh-key-BBBBBBBBBBBB";
const TTL: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_refresh_future_dropped_before_its_first_poll_does_not_switch_refresh_off() {
    let source = Steered::new(KEY_A, Some(TTL));
    // The server takes both keys: only a refresh, not a 401, can bring B.
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api(accepting("*")));
    assert_eq!(send(&mut svc).await.unwrap().1, KEY_A);
    advance(TTL).await; // due
    source.set(Some(KEY_B));
    // This request claims the refresh; its future is dropped unpolled, as tower's Buffer and
    // select! do.
    let fut = svc.ready().await.unwrap().call(req());
    drop(fut);
    // The refresh goes on without it, and lands.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let (status, token) = send(&mut svc).await.unwrap();
    assert_eq!((status, token.as_str()), (StatusCode::OK, KEY_B));
    assert_eq!(source.loads(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_whose_request_is_cancelled_mid_load_still_lands_for_every_clone() {
    let source = Steered::new(KEY_A, Some(TTL));
    // The server takes both keys: only a refresh, not a 401, can bring B.
    let layer = BearerAuthLayer::new(source.clone());
    let mut refresher = layer.layer(api(accepting("*")));
    let mut long_lived = refresher.clone();
    // Both know the key, and the long-lived clone has its own state.
    for _ in 0..10 {
        send(&mut long_lived).await.unwrap();
    }
    send(&mut refresher).await.unwrap();
    advance(TTL).await;
    source.set(Some(KEY_B));
    source.gate();
    let loads = source.loads();
    let mut refresh = refresher.ready().await.unwrap().call(req());
    assert!(
        (&mut refresh).now_or_never().is_none(),
        "the refresh is loading"
    );
    source.started(loads + 1).await;
    // Meanwhile the long-lived clone keeps the current key.
    assert_eq!(send(&mut long_lived).await.unwrap().1, KEY_A);
    drop(refresh); // the request is cancelled mid-load (a caller's timeout, select!)
    source.open(); // the load was not: it finishes
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let (status, token) = send(&mut long_lived).await.unwrap();
    assert_eq!((status, token.as_str()), (StatusCode::OK, KEY_B));
    assert_eq!(source.loads(), loads + 1, "one load, not restarted");
}

#[tokio::test(start_paused = true)]
async fn a_huge_refresh_hint_means_never_and_panics_nothing() {
    for hint in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(1 << 62),
    ] {
        let key = ApiKey::new(KEY_A).unwrap().refresh_after(hint);
        let layer = BearerAuthLayer::new(StaticKey::new(key));
        let mut svc = layer.layer(api(accepting(KEY_A)));
        assert_eq!(send(&mut svc).await.unwrap().1, KEY_A, "{hint:?}");

        let source = Steered::new(KEY_A, Some(hint));
        let layer = BearerAuthLayer::new(source.clone());
        let mut svc = layer.layer(api(accepting(KEY_A)));
        assert_eq!(send(&mut svc).await.unwrap().1, KEY_A, "{hint:?}");
        advance(Duration::from_secs(3600 * 24 * 30)).await;
        assert_eq!(send(&mut svc).await.unwrap().1, KEY_A, "{hint:?}");
        assert_eq!(source.loads(), 1, "{hint:?}: not due within a month");
    }
}

#[tokio::test]
async fn a_file_source_with_a_huge_refresh_panics_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{KEY_A}\n")).unwrap();
    let source = FileKeySource::new(&path).refresh_after(Duration::from_secs(u64::MAX));
    let mut svc = BearerAuthLayer::new(source).layer(api(accepting(KEY_A)));
    assert_eq!(send(&mut svc).await.unwrap().1, KEY_A);
    assert_eq!(send(&mut svc).await.unwrap().1, KEY_A);
}

#[tokio::test(start_paused = true)]
async fn a_401_does_not_take_the_result_of_a_load_that_started_before_it() {
    let source = Steered::new(KEY_A, Some(TTL));
    let accepted = accepting(KEY_A);
    let layer = BearerAuthLayer::new(source.clone());
    let mut first = layer.layer(api(accepted.clone()));
    let mut second = first.clone();
    send(&mut first).await.unwrap();
    advance(TTL).await;
    // A refresh reads key A from the store and is held in flight.
    source.gate();
    let refresh = tokio::spawn(first.ready().await.unwrap().call(req()));
    source.started(2).await;
    // Now the store rotates to B and the server revokes A.
    source.set(Some(KEY_B));
    *accepted.lock().unwrap() = KEY_B.to_owned();
    // A request sent with A gets a 401 and waits for the refresh in flight.
    let rejected = tokio::spawn(second.ready().await.unwrap().call(req()));
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert!(!rejected.is_finished());
    // The refresh comes back with A; the 401 must load again rather than take it.
    source.open();
    source.open();
    source.open();
    let res = rejected.await.unwrap().unwrap();
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::OK, KEY_B),
        "the rejected request healed with B"
    );
    let res = refresh.await.unwrap().unwrap();
    assert_eq!((res.status(), res.body().as_str()), (StatusCode::OK, KEY_B));
}

#[test]
fn the_refresh_survives_the_runtime_that_stored_the_key() {
    let source = Steered::new(KEY_A, Some(TTL));
    // The server takes both keys: only a refresh, not a 401, can bring B.
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api::<Full<Bytes>>(accepting("*")));
    // A warm-up runtime loads the key (and its refresh timer lives there), then goes away.
    let warm_up = support::paused_runtime();
    warm_up.block_on(async {
        // Two requests: the first loads, the second takes the key into the service's copy.
        for _ in 0..2 {
            assert_eq!(send(&mut svc).await.unwrap().1, KEY_A);
        }
    });
    drop(warm_up);
    source.set(Some(KEY_B));
    support::paused_runtime().block_on(async {
        advance(TTL + Duration::from_secs(5)).await;
        let (status, token) = send(&mut svc).await.unwrap();
        assert_eq!((status, token.as_str()), (StatusCode::OK, KEY_B));
    });
}

/// The timer lives on `idle`, which is kept and never driven again: the alarm thread, on no
/// runtime, marks the key due in real time.
#[test]
fn the_refresh_survives_a_runtime_that_is_kept_but_never_driven() {
    let ttl = Duration::from_secs(1);
    let source = Steered::new(KEY_A, Some(ttl));
    let (mut svc, idle) = keyed_on_an_idle_runtime(&source, KEY_A);
    source.set(Some(KEY_B));
    let stored = std::time::Instant::now();
    let (_, _) = support::real_time_until(
        KEY_B,
        Duration::from_millis(20),
        Duration::from_secs(20),
        async || send(&mut svc).await.unwrap().1,
    );
    // Not before its refresh point (at least 90% of the hint).
    assert!(
        stored.elapsed() >= ttl.mul_f64(0.9),
        "{:?}",
        stored.elapsed()
    );
    assert_eq!(source.loads(), 2, "one load, one refresh");
    drop(idle);
}

#[tokio::test(start_paused = true)]
async fn setters_on_a_clone_of_a_layer_leave_the_original_alone() {
    let source = Steered::new(KEY_A, None);
    let heard = Arc::new(AtomicUsize::new(0));
    let original = BearerAuthLayer::new(source.clone());
    let heard2 = heard.clone();
    let _clone = original
        .clone()
        .on_rotate(move |_| {
            heard2.fetch_add(1, Ordering::SeqCst);
        })
        .load_timeout(Duration::from_millis(1));
    // A source slower than the clone's timeout, well within the original's 5 s.
    source.gate();
    let mut svc = original.layer(api(accepting(KEY_A)));
    let call = tokio::spawn(async move { send(&mut svc).await.map(|(_, t)| t) });
    source.started(1).await;
    advance(Duration::from_millis(100)).await;
    source.open();
    assert_eq!(
        call.await.unwrap().unwrap(),
        KEY_A,
        "the original's timeout is its own"
    );
    // The clone's hook watches the key the two share: it hears the change the original drove.
    assert_eq!(heard.load(Ordering::SeqCst), 1);
}

//! Hard expiry (`ApiKey::expires_at`): a key is refreshed before it expires, never sent at or
//! after its expiry, served stale only until then, and a source's expired key is refused.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use support::advance;
use support::sources::{accepting, api, send};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{BoxError, Layer};
use tower_bearer::{ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeyFuture, KeySource};

/// Gives key `<prefix>-<n>` on the n-th load, living `life` from when it is loaded; fails while
/// `down`, and holds each load at a gate while `gated`.
struct Expiring {
    life: Mutex<Duration>,
    down: std::sync::atomic::AtomicBool,
    gated: std::sync::atomic::AtomicBool,
    gate: Semaphore,
    loads: AtomicUsize,
}

impl Expiring {
    fn new(life: Duration) -> Arc<Self> {
        Arc::new(Expiring {
            life: Mutex::new(life),
            down: false.into(),
            gated: false.into(),
            gate: Semaphore::new(0),
            loads: AtomicUsize::new(0),
        })
    }
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn key_n(n: usize) -> String {
    format!("sk-expiring-token-{n:06}")
}

impl KeySource for Expiring {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
        let life = *self.life.lock().unwrap();
        let down = self.down.load(Ordering::SeqCst);
        let gated = self.gated.load(Ordering::SeqCst);
        Box::pin(async move {
            if gated {
                self.gate.acquire().await.expect("gate").forget();
            }
            if down {
                return Err(
                    KeyError::new(KeyErrorKind::Unavailable, "token endpoint is down")
                        .with_origin("test token endpoint"),
                );
            }
            // `SystemTime` does not move with tokio's paused clock: the layer reads the
            // remaining life when the key arrives.
            Ok(ApiKey::new(key_n(n))?.expires_at(SystemTime::now() + life))
        })
    }
}

fn key_error(err: &BoxError) -> &KeyError {
    err.downcast_ref::<KeyError>().expect("a KeyError")
}

#[tokio::test(start_paused = true)]
async fn a_token_is_refreshed_before_it_expires_and_never_sent_after() {
    const LIFE: Duration = Duration::from_secs(60);
    let source = Expiring::new(LIFE);
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api(accepting("*")));
    let start = Instant::now();
    // Every 250 ms for 10 lives: each token is used only within its own life.
    let mut first_use: Vec<(String, Instant)> = Vec::new();
    while start.elapsed() < LIFE * 10 {
        let (status, token) = send(&mut svc).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let n: usize = token.rsplit('-').next().unwrap().parse().unwrap();
        if first_use.last().map(|(t, _)| t != &token).unwrap_or(true) {
            first_use.push((token.clone(), Instant::now()));
        }
        // Token n was loaded no earlier than its first use; it expires LIFE after its load.
        let (_, since) = first_use.iter().find(|(t, _)| *t == token).unwrap();
        assert!(
            since.elapsed() < LIFE,
            "token {n} used {:?} after its first use",
            since.elapsed()
        );
        advance(Duration::from_millis(250)).await;
    }
    // Refreshed ahead (in the last part of each life), not at a 401 or at expiry: about one
    // load per 0.85–0.9 of a life.
    let loads = source.loads();
    assert!((11..=13).contains(&loads), "{loads} loads in 10 lives");
}

#[tokio::test(start_paused = true)]
async fn a_two_second_token_is_used_and_refreshed_in_time() {
    let source = Expiring::new(Duration::from_secs(2));
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api(accepting("*")));
    let mut seen = Vec::new();
    for _ in 0..40 {
        let (status, token) = send(&mut svc).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        if seen.last() != Some(&token) {
            seen.push(token);
        }
        advance(Duration::from_millis(100)).await;
    }
    // 4 s of traffic on 2 s tokens refreshed at half their life: about 4 tokens, none reused.
    assert!((4..=5).contains(&seen.len()), "{seen:?}");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_serves_the_key_until_it_expires_then_fails_then_recovers() {
    const LIFE: Duration = Duration::from_secs(100);
    let source = Expiring::new(LIFE);
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api(accepting("*")));
    assert_eq!(send(&mut svc).await.unwrap().1, key_n(1));
    source.set_down(true);
    // Past the refresh point (at most 90 s), before the expiry: stale but valid.
    advance(Duration::from_secs(91)).await;
    assert_eq!(send(&mut svc).await.unwrap().1, key_n(1), "served stale");
    assert!(source.loads() >= 2, "the refresh was tried");
    // Past the expiry: an error at once, naming the kind, the source and the cause.
    advance(Duration::from_secs(10)).await;
    let loads_before = source.loads();
    let mut errors = Vec::new();
    for _ in 0..50 {
        let err = send(&mut svc).await.unwrap_err();
        errors.push(key_error(&err).clone());
    }
    let err = &errors[0];
    assert_eq!(err.kind(), KeyErrorKind::Expired, "{err}");
    let text = err.to_string();
    assert!(text.contains("test token endpoint"), "{text}");
    assert!(text.contains("token endpoint is down"), "{text}");
    assert!(text.contains("expired"), "{text}");
    assert!(
        !text.contains("000001") || text.contains("sk-…0001"),
        "fingerprint only: {text}"
    );
    assert!(errors.iter().all(|e| e.kind() == KeyErrorKind::Expired));
    // 50 requests in the same instant: the backoff, not the traffic, decides the loads.
    assert!(
        source.loads() - loads_before <= 1,
        "{} loads",
        source.loads() - loads_before
    );
    // The endpoint comes back: after the backoff, a new token.
    source.set_down(false);
    advance(Duration::from_secs(31)).await;
    assert_eq!(send(&mut svc).await.unwrap().1, key_n(source.loads()));
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_for_the_refresh_in_flight_rather_than_send_an_expired_key() {
    const LIFE: Duration = Duration::from_secs(20);
    let source = Expiring::new(LIFE);
    let layer = BearerAuthLayer::new(source.clone());
    let svc = layer.layer(api(accepting("*")));
    let mut first = svc.clone();
    assert_eq!(send(&mut first).await.unwrap().1, key_n(1));
    // The refresh starts and hangs at the source; the key expires meanwhile.
    source.gated.store(true, Ordering::SeqCst);
    advance(Duration::from_secs(18)).await;
    let mut refresher = svc.clone();
    let refresh = tokio::spawn(async move { send(&mut refresher).await });
    advance(Duration::from_secs(3)).await; // past the expiry
    let mut late = svc.clone();
    let waiting = tokio::spawn(async move { send(&mut late).await });
    advance(Duration::from_millis(10)).await;
    assert!(
        !waiting.is_finished(),
        "waits for the load, not sends the expired key"
    );
    source.gate.add_permits(2);
    let (_, token) = waiting.await.unwrap().unwrap();
    assert_eq!(token, key_n(2));
    // The refreshing request itself: its key expired while it waited for the load, so it
    // sends the new one.
    assert_eq!(refresh.await.unwrap().unwrap().1, key_n(2));
}

#[tokio::test(start_paused = true)]
async fn an_expired_key_from_the_source_is_a_failed_load() {
    let source = Expiring::new(Duration::ZERO);
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api(accepting("*")));
    let err = send(&mut svc).await.unwrap_err();
    let err = key_error(&err);
    assert_eq!(err.kind(), KeyErrorKind::Expired, "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");
    assert_eq!(layer.handle().fingerprint(), None, "nothing installed");
}

#[tokio::test(start_paused = true)]
async fn rotation_events_and_the_handle_show_the_expiry() {
    let source = Expiring::new(Duration::from_secs(3600));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = BearerAuthLayer::new(source.clone())
        .on_rotate(move |event| seen.lock().unwrap().push(event.clone()));
    let mut svc = layer.layer(api(accepting("*")));
    send(&mut svc).await.unwrap();
    let expiry = layer.handle().expiry().expect("an expiry");
    let left = expiry.duration_since(SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].expiry(), Some(expiry));
    let shown = events[0].to_string();
    assert!(
        shown.contains("expires") && !shown.contains(&key_n(1)),
        "{shown}"
    );
}

/// The timer that marks a key due lives on the runtime that stored it; that runtime may be kept
/// and never driven again. The alarm thread marks it due in real time all the same, and a key
/// with an expiry is checked against the wall clock on every request.
#[test]
fn an_expiring_key_is_checked_on_every_request_even_when_its_timer_never_runs() {
    // Refreshed after half its life at the latest (1 s), expired after 2 s.
    let source = Expiring::new(Duration::from_secs(2));
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api(accepting("*")));
    let idle = support::paused_runtime();
    // Key 1 is stored, and its timer armed, on `idle`, which is then never driven again.
    assert_eq!(idle.block_on(send(&mut svc)).unwrap().1, key_n(1));
    let stored = std::time::Instant::now();
    support::real_time_until(
        &key_n(2),
        Duration::from_millis(20),
        Duration::from_secs(20),
        async || send(&mut svc).await.unwrap().1,
    );
    assert!(stored.elapsed() < Duration::from_secs(20));
    assert_eq!(source.loads(), 2);
    drop(idle);
}

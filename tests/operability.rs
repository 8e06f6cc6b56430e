//! Operability: `KeyHandle::status()` through every state, `KeyHandle::ready()`, the events
//! `on_event` hooks hear (in order), and a source's `retry_after` delaying the next load.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use support::advance;
use support::sources::{accepting, api, send};
use tower::Layer;
use tower_bearer::event::SkipReason;
use tower_bearer::{
    ApiKey, BearerAuthLayer, EnvKeySource, KeyError, KeyErrorKind, KeyEvent, KeyFuture, KeySource,
    KeyState, RotationReason,
};

/// Key `sk-ops-key-<n>` where n is set by the test; fails while `down` (with `retry_after`,
/// if set); keys live `life` when set; each load can be held for `delay`.
#[derive(Default)]
struct Source {
    n: AtomicUsize,
    down: AtomicBool,
    retry_after_secs: AtomicU64,
    life_secs: AtomicU64,
    delay_secs: AtomicU64,
    loads: AtomicUsize,
}

impl Source {
    fn new(n: usize) -> Arc<Self> {
        let source = Source::default();
        source.n.store(n, Ordering::SeqCst);
        Arc::new(source)
    }
    fn set(&self, n: usize) {
        self.n.store(n, Ordering::SeqCst);
    }
    fn down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

fn key(n: usize) -> String {
    format!("sk-ops-key-{n:08}")
}

impl KeySource for Source {
    fn load(&self) -> KeyFuture<'_> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let n = self.n.load(Ordering::SeqCst);
        let down = self.down.load(Ordering::SeqCst);
        let retry_after = self.retry_after_secs.load(Ordering::SeqCst);
        let life = self.life_secs.load(Ordering::SeqCst);
        let delay = self.delay_secs.load(Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(delay)).await;
            if down {
                let err = KeyError::new(KeyErrorKind::Unavailable, "store answered 503")
                    .with_origin("ops test store");
                return Err(match retry_after {
                    0 => err,
                    secs => err.with_retry_after(Duration::from_secs(secs)),
                });
            }
            let key = ApiKey::new(key(n))?;
            Ok(match life {
                0 => key,
                secs => key.expires_at(SystemTime::now() + Duration::from_secs(secs)),
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn status_goes_through_every_state() {
    let source = Source::new(1);
    source.life_secs.store(100, Ordering::SeqCst);
    let layer = BearerAuthLayer::new(source.clone());
    let handle = layer.handle();
    let mut svc = layer.layer(api(accepting("*")));

    let status = handle.status();
    assert_eq!(status.state(), KeyState::Empty);
    assert!(!status.state().is_serving());
    assert_eq!((status.loads(), status.fingerprint()), (0, None));

    source.down(true);
    send(&mut svc).await.unwrap_err();
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Failing);
    assert_eq!(status.consecutive_failures(), 1);
    assert_eq!(
        status.last_error().unwrap().kind(),
        KeyErrorKind::Unavailable
    );

    source.down(false);
    advance(Duration::from_secs(1)).await; // past the first-load backoff
    send(&mut svc).await.unwrap();
    advance(Duration::from_secs(10)).await;
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Fresh);
    assert!(status.state().is_serving());
    assert_eq!(status.fingerprint().as_deref(), Some("sk-…0001"));
    assert_eq!(status.age(), Some(Duration::from_secs(10)));
    let left = status.expires_in().unwrap();
    assert!(
        left <= Duration::from_secs(90) && left > Duration::from_secs(89),
        "{left:?}"
    );
    assert_eq!((status.loads(), status.consecutive_failures()), (2, 0));
    assert!(status.last_error().is_none());

    // The refresh (due by 90 s into the life) fails: the key is still served.
    source.down(true);
    advance(Duration::from_secs(85)).await;
    send(&mut svc).await.unwrap();
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Stale);
    assert!(status.state().is_serving());
    assert_eq!(status.consecutive_failures(), 1);
    assert_eq!(
        status.age(),
        Some(Duration::from_secs(95)),
        "the age of the key served"
    );

    advance(Duration::from_secs(10)).await; // past the expiry
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Expired);
    assert!(!status.state().is_serving());
    assert_eq!(status.expires_in(), Some(Duration::ZERO));

    source.down(false);
    source.set(2);
    advance(Duration::from_secs(31)).await; // past any backoff
    assert_eq!(send(&mut svc).await.unwrap().1, key(2));
    let status = handle.status();
    assert_eq!(status.state(), KeyState::Fresh);
    assert_eq!(status.fingerprint().as_deref(), Some("sk-…0002"));
    assert_eq!(status.consecutive_failures(), 0);
}

#[tokio::test(start_paused = true)]
async fn status_counts_replays() {
    let source = Source::new(1);
    let layer = BearerAuthLayer::new(source.clone());
    let accepted = accepting(&key(1));
    let mut svc = layer.layer(api(accepted.clone()));
    send(&mut svc).await.unwrap();
    source.set(2);
    *accepted.lock().unwrap() = key(2);
    assert_eq!(send(&mut svc).await.unwrap(), (StatusCode::OK, key(2)));
    let status = layer.handle().status();
    assert_eq!((status.loads(), status.replays()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn ready_loads_the_first_key_or_says_why_not() {
    let source = Source::new(1);
    let layer = BearerAuthLayer::new(source.clone());
    layer.handle().ready().await.unwrap();
    assert_eq!(source.loads(), 1, "loaded before any request");
    assert_eq!(layer.handle().status().state(), KeyState::Fresh);
    layer.handle().ready().await.unwrap();
    assert_eq!(source.loads(), 1, "a key there: no new load");

    let missing = BearerAuthLayer::new(EnvKeySource::new("TOWER_BEARER_OPS_NEVER_SET"));
    let err = missing.handle().ready().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Missing);
    assert!(
        err.to_string().contains("TOWER_BEARER_OPS_NEVER_SET"),
        "{err}"
    );

    let slow = Source::new(3);
    slow.delay_secs.store(2, Ordering::SeqCst);
    let layer = BearerAuthLayer::new(slow.clone());
    let handle = layer.handle();
    let ready = tokio::spawn(async move { handle.ready().await });
    advance(Duration::from_secs(1)).await;
    assert!(!ready.is_finished(), "waits for the load");
    advance(Duration::from_secs(1)).await;
    ready.await.unwrap().unwrap();

    let too_slow = Source::new(4);
    too_slow.delay_secs.store(60, Ordering::SeqCst);
    let layer = BearerAuthLayer::new(too_slow).load_timeout(Duration::from_secs(5));
    let err = layer.handle().ready().await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Timeout);
    assert_eq!(layer.handle().status().state(), KeyState::Failing);
}

fn recorder() -> (Arc<Mutex<Vec<KeyEvent>>>, impl Fn(&KeyEvent) + Send + Sync) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    (events, move |event: &KeyEvent| {
        seen.lock().unwrap().push(event.clone())
    })
}

fn describe(event: &KeyEvent) -> String {
    match event {
        KeyEvent::Rotated(r) => format!("rotated {:?}", r.reason()),
        KeyEvent::LoadFailed(f) => format!(
            "load failed stale={} next={}",
            f.serving_stale(),
            f.next_load_in().is_some()
        ),
        KeyEvent::Replayed(r) => format!("replayed {}", r.fingerprint()),
        KeyEvent::ReplaySkipped(s) => format!("skipped {:?}", s.reason()),
        KeyEvent::Expired(e) => format!("expired {}", e.fingerprint()),
        other => format!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn every_event_in_order() {
    let source = Source::new(1);
    source.life_secs.store(100, Ordering::SeqCst);
    let (events, hook) = recorder();
    let layer = BearerAuthLayer::new(source.clone()).on_event(hook);
    let accepted = accepting(&key(1));
    let mut svc = layer.layer(api(accepted.clone()));
    send(&mut svc).await.unwrap();
    // A 401 and a new key: rotated, then replayed.
    source.set(2);
    *accepted.lock().unwrap() = key(2);
    send(&mut svc).await.unwrap();
    // A 401 and the same key back: skipped.
    *accepted.lock().unwrap() = key(3);
    assert_eq!(send(&mut svc).await.unwrap().0, StatusCode::UNAUTHORIZED);
    // The refresh fails (the key still served), then the key expires: the next load fails
    // with no key to serve, and one Expired however many requests.
    *accepted.lock().unwrap() = "*".to_owned();
    source.down(true);
    advance(Duration::from_secs(91)).await;
    send(&mut svc).await.unwrap();
    advance(Duration::from_secs(10)).await;
    for _ in 0..3 {
        send(&mut svc).await.unwrap_err();
    }
    let got: Vec<String> = events.lock().unwrap().iter().map(describe).collect();
    assert_eq!(
        got,
        [
            "rotated Initial",
            "rotated Rejected",
            "replayed sk-…0002",
            "skipped SameKey",
            "load failed stale=true next=true",
            "load failed stale=false next=true",
            "expired sk-…0002",
        ],
        "{got:#?}"
    );
    // Every event prints without the key.
    for event in events.lock().unwrap().iter() {
        let shown = event.to_string();
        assert!(
            !shown.contains(&key(2)) && !shown.contains(&key(1)),
            "{shown}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_fails_after_a_401_is_reported_and_skips_the_replay() {
    let source = Source::new(1);
    let (events, hook) = recorder();
    let layer = BearerAuthLayer::new(source.clone()).on_event(hook);
    let accepted = accepting(&key(1));
    let mut svc = layer.layer(api(accepted.clone()));
    send(&mut svc).await.unwrap();
    source.down(true);
    *accepted.lock().unwrap() = key(2);
    assert_eq!(send(&mut svc).await.unwrap().0, StatusCode::UNAUTHORIZED);
    let got: Vec<String> = events.lock().unwrap().iter().map(describe).collect();
    assert_eq!(
        got,
        [
            "rotated Initial",
            "load failed stale=true next=true",
            "skipped ReloadFailed",
        ]
    );
    assert_eq!(layer.handle().status().state(), KeyState::Stale);
    let _ = SkipReason::BodyNotReplayable; // the other reasons are public too
    let _ = RotationReason::Manual;
}

#[tokio::test(start_paused = true)]
async fn a_source_retry_after_delays_the_next_load_and_is_capped() {
    for (asked, waited) in [(20, 20), (3600, 300)] {
        let source = Source::new(1);
        source.down(true);
        source.retry_after_secs.store(asked, Ordering::SeqCst);
        let (events, hook) = recorder();
        let layer = BearerAuthLayer::new(source.clone()).on_event(hook);
        let mut svc = layer.layer(api(accepting("*")));
        send(&mut svc).await.unwrap_err();
        assert_eq!(source.loads(), 1);
        let next = match &events.lock().unwrap()[0] {
            KeyEvent::LoadFailed(failure) => failure.next_load_in().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(next, Duration::from_secs(waited), "asked {asked} s");
        source.down(false);
        advance(Duration::from_secs(waited - 1)).await;
        let err = send(&mut svc).await.unwrap_err();
        let err = err.downcast_ref::<KeyError>().unwrap();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(asked)));
        assert_eq!(
            source.loads(),
            1,
            "asked {asked} s: no load before {waited} s"
        );
        advance(Duration::from_secs(1)).await;
        assert_eq!(send(&mut svc).await.unwrap().1, key(1));
        assert_eq!(source.loads(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_manual_rotation_shows_as_stale_until_a_good_load() {
    let source = Source::new(1);
    let layer = BearerAuthLayer::new(source.clone());
    let handle = layer.handle();
    let mut svc = layer.layer(api(accepting("*")));
    send(&mut svc).await.unwrap();
    source.down(true);
    handle.rotate().await.unwrap_err();
    assert_eq!(handle.status().state(), KeyState::Stale);
    assert_eq!(send(&mut svc).await.unwrap().1, key(1), "still served");
    source.down(false);
    source.set(2);
    handle.rotate().await.unwrap();
    assert_eq!(handle.status().state(), KeyState::Fresh);
    assert_eq!(send(&mut svc).await.unwrap().1, key(2));
}

//! Faults the other suites do not stage: a key file deleted, replaced by a directory or made
//! unreadable while its key is cached; the inner service failing or panicking in a replay; a
//! 401 storm from a server that rejects every key, with concurrent requests; a caller dropping
//! its future while the replay is in flight.
//!
//! Timing uses tokio's paused clock or notifications, never sleeps. (Slow and hanging sources,
//! source errors with a cached key, and cancellation mid-load are in `freshness.rs`; a single
//! request against a server that rejects every key is in `rotation.rs`.)

#![cfg(all(feature = "env", feature = "file"))]

mod support;

use support::advance;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use support::sources::{Counted, Fresh, Steered};
use support::InnerFailure;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{BearerAuthLayer, FileKeySource, RotationEvent, RotationReason};

const KEY_A: &str = "sk-faults-key-AAAAAAAAAAAAAA";
const KEY_B: &str = "sk-faults-key-BBBBBBBBBBBBBB";
const TTL: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The key file goes bad while its key is cached.
// ---------------------------------------------------------------------------------------------

type EchoFn = fn(Request<Empty<Bytes>>) -> std::future::Ready<Result<Response<String>, Infallible>>;

/// A service whose response body is the bearer token it got. In-process: paused time and
/// sockets do not mix.
fn echo(layer: &BearerAuthLayer) -> tower_bearer::BearerAuth<tower::util::ServiceFn<EchoFn>> {
    let f: EchoFn =
        |req| std::future::ready(Ok(Response::new(support::bearer(&req).unwrap_or_default())));
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(f))
}

async fn token<S>(svc: &mut S) -> String
where
    S: Service<Request<Empty<Bytes>>, Response = Response<String>, Error = BoxError>,
{
    let req = Request::get("https://api.azerion.ai/v1/models")
        .body(Empty::new())
        .unwrap();
    svc.ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
        .into_body()
}

/// A cached key from a file; `break_file` ruins the file; the layer keeps serving the cached
/// key, backs off, and picks up the new key once `repair` wrote it.
async fn file_fault(break_file: impl FnOnce(&Path), repair: impl FnOnce(&Path), cause: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api-key");
    write_private(&path, KEY_A);
    let (dispatch, logs) = support::logs::capture();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let source = Counted::new(FileKeySource::new(&path).refresh_after(TTL));
    let events = Arc::new(Mutex::new(Vec::<RotationEvent>::new()));
    let sink = events.clone();
    let layer = BearerAuthLayer::new(source.clone())
        .on_rotate(move |e| sink.lock().unwrap().push(e.clone()));
    let mut svc = echo(&layer);

    assert_eq!(token(&mut svc).await, KEY_A);
    assert_eq!(source.loads(), 1);

    break_file(&path);
    advance(TTL).await;
    assert_eq!(
        token(&mut svc).await,
        KEY_A,
        "the cached key is served stale"
    );
    assert_eq!(source.loads(), 2, "one refresh tried");
    for _ in 0..50 {
        assert_eq!(token(&mut svc).await, KEY_A);
    }
    assert_eq!(source.loads(), 2, "backing off: not a read per request");
    let text = logs.text();
    assert!(text.contains("key refresh failed"), "{text}");
    assert!(
        text.contains(cause),
        "the warning names the cause {cause:?}: {text}"
    );

    advance(Duration::from_millis(700)).await; // past the first backoff (0.5 s ± 20%)
    assert_eq!(token(&mut svc).await, KEY_A);
    assert_eq!(source.loads(), 3, "tried again after the backoff");
    advance(Duration::from_millis(700)).await; // the second backoff is 1 s ± 20%: not yet
    assert_eq!(token(&mut svc).await, KEY_A);
    assert_eq!(source.loads(), 3, "the backoff grows");

    repair(&path);
    advance(Duration::from_millis(600)).await; // 1.3 s in: past the second backoff
    assert_eq!(
        token(&mut svc).await,
        KEY_B,
        "recovered once the file is back"
    );
    assert_eq!(source.loads(), 4);
    assert_eq!(token(&mut svc).await, KEY_B);
    assert_eq!(
        source.loads(),
        4,
        "and no more reads until the next refresh"
    );

    let reasons: Vec<_> = events.lock().unwrap().iter().map(|e| e.reason()).collect();
    assert_eq!(reasons, [RotationReason::Initial, RotationReason::Refresh]);
    let text = logs.text();
    assert!(
        !text.contains("AAAAAAAAAA") && !text.contains("BBBBBBBBBB"),
        "{text}"
    );
}

fn write_private(path: &Path, key: &str) {
    std::fs::write(path, format!("{key}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_key_file_deleted_mid_run() {
    file_fault(
        |path| std::fs::remove_file(path).unwrap(),
        |path| write_private(path, KEY_B),
        "does not exist",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_key_file_replaced_by_a_directory_mid_run() {
    file_fault(
        |path| {
            std::fs::remove_file(path).unwrap();
            std::fs::create_dir(path).unwrap();
        },
        |path| {
            std::fs::remove_dir(path).unwrap();
            write_private(path, KEY_B);
        },
        "is a directory",
    )
    .await;
}

#[cfg(unix)]
async fn permissions_removed_scenario() {
    use std::os::unix::fs::PermissionsExt;
    file_fault(
        |path| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap(),
        |path| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
            write_private(path, KEY_B);
        },
        "permission denied",
    )
    .await;
}

/// Whether file modes bind this process (they do not bind root).
#[cfg(unix)]
fn file_modes_bind() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, "x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::read(&probe).is_err()
}

/// Permissions removed while the key is cached. Root reads any file whatever its mode, so as
/// root (CI containers) this test runs its scenario in a copy of this test binary started as
/// the unprivileged user 65534 (`nobody`), which can only be root's doing: no skip.
#[cfg(unix)]
#[test]
fn a_key_file_made_unreadable_mid_run() {
    use std::os::unix::process::CommandExt;
    if file_modes_bind() {
        return support::paused_runtime().block_on(permissions_removed_scenario());
    }
    use std::os::unix::fs::PermissionsExt;
    // A copy of this test binary where user 65534 can reach it (the build directory may sit
    // under a home it cannot enter).
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.path().join("faults");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = std::process::Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            "unprivileged_permissions_removed",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir("/")
        .env("TMPDIR", std::env::temp_dir())
        .uid(65534)
        .gid(65534)
        .output()
        .expect("start the test binary as user 65534");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the scenario as user 65534 failed:\n{stdout}\n{stderr}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("test result"))
        .unwrap_or_default();
    println!("as user 65534: {summary}");
}

/// The scenario of `a_key_file_made_unreadable_mid_run`, for the unprivileged child.
#[cfg(unix)]
#[test]
#[ignore = "run by a_key_file_made_unreadable_mid_run as an unprivileged user"]
fn unprivileged_permissions_removed() {
    assert!(file_modes_bind(), "must run as a user that file modes bind");
    support::paused_runtime().block_on(permissions_removed_scenario());
}

// ---------------------------------------------------------------------------------------------
// The inner service fails in the replay.
// ---------------------------------------------------------------------------------------------

/// What the inner service does with a request carrying the key it accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OnAccepted {
    Answer,
    Fail,
    PanicInFuture,
    PanicInCall,
    /// Announce the call, then never answer.
    Hang,
}

/// Inner service state: the key it accepts (others get a 401), and what it does then.
struct Inner {
    accepted: Mutex<&'static str>,
    mode: Mutex<OnAccepted>,
    calls: AtomicUsize,
    started: tokio::sync::Notify,
    hung_future_dropped: AtomicBool,
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type InnerSvc =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, BoxError>;

fn inner_service(state: Arc<Inner>) -> InnerSvc {
    tower::util::BoxCloneSyncService::new(service_fn(move |req: Request<Full<Bytes>>| {
        let state = state.clone();
        state.calls.fetch_add(1, Ordering::SeqCst);
        let token = support::bearer(&req).unwrap_or_default();
        let accepted = token == *state.accepted.lock().unwrap();
        let mode = *state.mode.lock().unwrap();
        if accepted && mode == OnAccepted::PanicInCall {
            panic!("inner service panicked in call");
        }
        async move {
            if !accepted {
                return Ok(support::respond(401, "invalid key"));
            }
            match mode {
                OnAccepted::Answer | OnAccepted::PanicInCall => Ok(support::respond(200, token)),
                OnAccepted::Fail => Err(BoxError::from(InnerFailure)),
                OnAccepted::PanicInFuture => panic!("inner service panicked in its future"),
                OnAccepted::Hang => {
                    let _dropped = SetOnDrop(&state.hung_future_dropped);
                    state.started.notify_one();
                    std::future::pending().await
                }
            }
        }
    }))
}

struct Rig {
    source: Arc<Steered>,
    inner: Arc<Inner>,
    svc: tower_bearer::BearerAuth<InnerSvc>,
    layer: BearerAuthLayer,
}

/// A layer whose cached key is KEY_A, then revoked: the source now has KEY_B, the inner service
/// accepts only KEY_B, and does `mode` with it.
async fn rotated_rig(mode: OnAccepted) -> Rig {
    let source = Steered::new(KEY_A, None);
    let inner = Arc::new(Inner {
        accepted: Mutex::new(KEY_A),
        mode: Mutex::new(OnAccepted::Answer),
        calls: AtomicUsize::new(0),
        started: tokio::sync::Notify::new(),
        hung_future_dropped: AtomicBool::new(false),
    });
    let layer = BearerAuthLayer::new(source.clone());
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(inner_service(inner.clone()));
    let res = svc.clone().oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);
    source.set(Some(KEY_B));
    *inner.accepted.lock().unwrap() = KEY_B;
    *inner.mode.lock().unwrap() = mode;
    Rig {
        source,
        inner,
        svc,
        layer,
    }
}

fn post() -> Request<Full<Bytes>> {
    Request::post("https://api.azerion.ai/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"x\"}")))
        .unwrap()
}

/// After the fault: the key is KEY_B, loaded once for the 401, and requests go through.
async fn assert_cache_consistent(rig: &Rig) {
    *rig.inner.mode.lock().unwrap() = OnAccepted::Answer;
    assert_eq!(
        rig.layer.handle().fingerprint().as_deref(),
        Some("sk-…BBBB")
    );
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(rig.svc.clone().oneshot(post())))
        .collect();
    for call in calls {
        let res = call.await.expect("no panic").expect("no error");
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        rig.source.loads(),
        2,
        "the initial load and the one reload for the 401"
    );
}

#[tokio::test]
async fn an_inner_error_in_the_replay_reaches_the_caller() {
    let rig = rotated_rig(OnAccepted::Fail).await;
    let err = rig.svc.clone().oneshot(post()).await.unwrap_err();
    assert!(
        err.downcast_ref::<InnerFailure>().is_some(),
        "the inner error, unchanged: {err:?}"
    );
    assert_eq!(
        rig.inner.calls.load(Ordering::SeqCst),
        3,
        "warm-up, 401, replay"
    );
    assert_cache_consistent(&rig).await;
}

#[tokio::test]
async fn a_panic_in_the_replay_is_a_panic_of_that_future_only() {
    for mode in [OnAccepted::PanicInFuture, OnAccepted::PanicInCall] {
        let rig = rotated_rig(mode).await;
        let join = tokio::spawn(rig.svc.clone().oneshot(post())).await;
        let err = join.expect_err("the request's task panicked");
        assert!(err.is_panic(), "{mode:?}: {err}");
        let payload = err.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            message.starts_with("inner service panicked"),
            "{mode:?}: {message}"
        );
        assert_eq!(
            rig.inner.calls.load(Ordering::SeqCst),
            3,
            "{mode:?}: warm-up, 401, replay"
        );
        assert_cache_consistent(&rig).await;
    }
}

#[tokio::test]
async fn a_caller_dropped_mid_replay_leaves_the_cache_usable() {
    let rig = rotated_rig(OnAccepted::Hang).await;
    let request = rig.svc.clone().oneshot(post());
    tokio::select! {
        res = request => panic!("the hung replay answered: {:?}", res.map(|r| r.status())),
        () = rig.inner.started.notified() => {} // the replay is in flight: drop the request
    }
    assert!(
        rig.inner.hung_future_dropped.load(Ordering::SeqCst),
        "dropping the caller's future dropped the replay's inner future"
    );
    assert_eq!(
        rig.inner.calls.load(Ordering::SeqCst),
        3,
        "warm-up, 401, replay"
    );
    assert_cache_consistent(&rig).await;
}

// ---------------------------------------------------------------------------------------------
// A 401 storm: the server rejects every key, many requests at once.
// ---------------------------------------------------------------------------------------------

/// The storm's source hands out these keys: the first load gives `sk-storm-key-1`.
const STORM_KEYS: &str = "sk-storm-key-";
const FIRST_STORM_KEY: &str = "sk-storm-key-1";

/// Every request the server saw: (`x-request` id, bearer token).
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A loopback server that answers 401 to every key. With `gate`, requests carrying the first
/// key wait until `gate` of them arrived, so they all hold the same key when the 401s come.
async fn rejecting_server(gate: Option<usize>) -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let barrier = gate.map(|n| Arc::new(tokio::sync::Barrier::new(n)));
    let record = seen.clone();
    let addr = support::serve(move |req| {
        let seen = record.clone();
        let barrier = barrier.clone();
        async move {
            let id: usize = req.headers()["x-request"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let token = support::bearer(&req).unwrap_or_default();
            seen.lock().unwrap().push((id, token.clone()));
            if let Some(barrier) = barrier {
                if token == FIRST_STORM_KEY {
                    barrier.wait().await;
                }
            }
            support::respond(401, r#"{"error":{"message":"Invalid API key"}}"#)
        }
    })
    .await;
    (addr, seen)
}

async fn storm(concurrency: usize, gate: bool) -> (usize, HashMap<usize, Vec<String>>) {
    let (addr, seen) = rejecting_server(gate.then_some(concurrency)).await;
    let source = Fresh::new(STORM_KEYS);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::client::<Full<Bytes>>());
    let calls: Vec<_> = (0..concurrency)
        .map(|id| {
            let req = Request::post(format!("http://{addr}/v1/chat/completions"))
                .header("x-request", id)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            tokio::spawn(client.clone().oneshot(req))
        })
        .collect();
    let all = async {
        for call in calls {
            let res = call.await.unwrap().unwrap();
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "the replay's 401 goes back"
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the storm ended");
    let mut per_request: HashMap<usize, Vec<String>> = HashMap::new();
    for (id, token) in seen.lock().unwrap().iter() {
        per_request.entry(*id).or_default().push(token.clone());
    }
    (source.loads(), per_request)
}

fn assert_one_retry_each(concurrency: usize, per_request: &HashMap<usize, Vec<String>>) {
    assert_eq!(per_request.len(), concurrency);
    for (id, tokens) in per_request {
        assert_eq!(
            tokens.len(),
            2,
            "request {id}: the original and exactly one replay"
        );
        assert_ne!(
            tokens[0], tokens[1],
            "request {id}: never a replay with the rejected key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_storm_with_one_shared_key_reloads_once() {
    const N: usize = 32;
    let (loads, per_request) = storm(N, true).await;
    assert_one_retry_each(N, &per_request);
    assert_eq!(loads, 2, "the first load, then one reload for all {N} 401s");
    let replay_keys: std::collections::HashSet<_> = per_request.values().map(|t| &t[1]).collect();
    assert_eq!(
        replay_keys.len(),
        1,
        "every replay used the one reloaded key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_storm_loads_at_most_once_per_rejected_key() {
    const N: usize = 64;
    let (loads, per_request) = storm(N, false).await;
    assert_one_retry_each(N, &per_request);
    let first_sends: std::collections::HashSet<_> = per_request.values().map(|t| &t[0]).collect();
    let all_keys: std::collections::HashSet<_> = per_request.values().flatten().collect();
    println!(
        "401 storm of {N}: {loads} loads, {} distinct keys on first sends, {} keys in all",
        first_sends.len(),
        all_keys.len()
    );
    assert_eq!(
        loads,
        all_keys.len(),
        "every key loaded was sent, none loaded twice"
    );
    assert!(
        loads <= first_sends.len() + 1,
        "one reload per key rejected on a first send, no more: {loads} loads"
    );
}

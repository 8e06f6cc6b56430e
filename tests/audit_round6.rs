//! Round-6 audit of the alarm thread (ad500d3, aa73a36): one process-wide std thread
//! (`src/cache/alarm.rs`) moves a cache's epoch at its key's refresh point and expiry, and
//! services no longer read the monotonic clock per request while `alarm::running()` says the
//! thread runs.
//!
//! Tests named `finding_*` fail on the audited code; each doc comment gives the severity, what
//! goes wrong, why, and a suggested fix. Tests named `holds_*` are attacks the code withstood.
//!
//! Some scenarios need a process of their own: one blocks or kills the process-wide alarm
//! thread (which would disturb every other test of this binary), one forks. They run as
//! `child_*` tests (ignored; they do nothing unless `AUDIT6_CHILD` is set) in a fresh process
//! of this same test binary, started by the `finding_*`/`holds_*` test that reports them.
//!
//! The alarm thread can only run a source's `Drop` when its `Weak::upgrade` races with the
//! user's drop of the last reference: [`race_a_drop_onto_the_alarm_thread`] provokes that race
//! deliberately (thousands of caches whose expiries, hence alarm deadlines, are spaced 20 µs
//! apart, each dropped by the test at its deadline plus a sweep of offsets). It landed ~10
//! times per round on a 2-core machine against the audited code.
//!
//! Fixed (all three): the alarm holds each cache's `Epoch`, an allocation of its own, never the
//! cache, so no source is ever dropped on its thread and no user code runs there (the race
//! now runs 2 rounds, as a regression check, and lands 0 times); a forked child notices at its
//! next store of a key that the thread stayed with the parent, and its services read the clock
//! again. No sleeps as synchronisation: real-time waits only for real-time properties, by
//! polling with a deadline.

#![cfg(unix)]

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use support::sources::{accepting, api, keyed_on_an_idle_runtime, req, send, Steered};
use tower::{Layer, ServiceExt};
use tower_bearer::{ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeyFuture, KeySource};

const KEY_A: &str = "sk-audit6-key-AAAAAAAAAAAA";
const KEY_B: &str = "sk-audit6-key-BBBBBBBBBBBB";
const CHILD_ENV: &str = "AUDIT6_CHILD";
/// `comm` is cut to 15 bytes: "tower-bearer-alarm" shows as this.
const ALARM_COMM: &str = "tower-bearer-al";

// ---------------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------------

/// Runs the ignored test `name` of this binary in a process of its own; its success and its
/// output.
fn run_child(name: &str) -> (bool, String) {
    // One child at a time: the race needs the CPU.
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Whether this process has a thread named like the alarm.
fn alarm_thread_alive() -> bool {
    std::fs::read_dir("/proc/self/task").unwrap().any(|task| {
        let comm = task.unwrap().path().join("comm");
        std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == ALARM_COMM)
    })
}

fn on_alarm_thread() -> bool {
    std::thread::current().name() == Some("tower-bearer-alarm")
}

/// What a [`Racer`]'s `Drop` does when it runs on the alarm thread.
static ON_ALARM_MODE: AtomicU8 = AtomicU8::new(MODE_COUNT);
const MODE_COUNT: u8 = 0;
/// Blocks until [`release`] (at most 30 s): a source whose `Drop` joins a worker, drops a
/// `tokio::runtime::Runtime` with a blocking task, waits on a channel...
const MODE_BLOCK: u8 = 1;
/// Panics.
const MODE_PANIC: u8 = 2;
/// Panics with a payload whose own `Drop` panics.
const MODE_PANIC_BOMB: u8 = 3;

/// `Racer` drops that ran on the alarm thread.
static ON_ALARM: AtomicUsize = AtomicUsize::new(0);
static RELEASE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn release() {
    *RELEASE.0.lock().unwrap() = true;
    RELEASE.1.notify_all();
}

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a panic payload that panics when dropped");
    }
}

/// A source whose key expires at a set wall-clock time (so its alarm deadline is known to a
/// few µs), and whose `Drop` notices the alarm thread.
struct Racer(SystemTime);

impl KeySource for Racer {
    fn load(&self) -> KeyFuture<'_> {
        let expiry = self.0;
        Box::pin(async move { Ok(ApiKey::new("sk-audit6-racer-0123456789")?.expires_at(expiry)) })
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        if !on_alarm_thread() {
            return;
        }
        ON_ALARM.fetch_add(1, Ordering::SeqCst);
        match ON_ALARM_MODE.load(Ordering::SeqCst) {
            MODE_BLOCK => {
                let guard = RELEASE.0.lock().unwrap();
                let _ = RELEASE
                    .1
                    .wait_timeout_while(guard, Duration::from_secs(30), |released| !*released);
            }
            MODE_PANIC => panic!("a key source's Drop panicked"),
            MODE_PANIC_BOMB => std::panic::panic_any(Bomb),
            _ => {}
        }
    }
}

/// Makes the alarm thread hold the last reference to a cache at least once: rounds of `n`
/// layers whose keys expire 20 µs apart, each dropped at its expiry plus an offset swept over
/// 0..100 µs (where the alarm, woken at that deadline, is between its `upgrade` and its
/// `drop`). Returns how many sources the alarm thread dropped (0 if none in `rounds`).
fn race_a_drop_onto_the_alarm_thread(rounds: usize) -> usize {
    const N: usize = 10_000;
    const GAP_US: u64 = 20;
    for round in 0..rounds {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (wall, mono) = (SystemTime::now(), Instant::now());
        let lead = Duration::from_millis(2500);
        let layers: Vec<_> = runtime.block_on(async {
            let mut layers = Vec::with_capacity(N);
            for i in 0..N {
                let expiry = wall + lead + Duration::from_micros(GAP_US * i as u64);
                let layer = BearerAuthLayer::new(Racer(expiry));
                layer
                    .handle()
                    .ready()
                    .await
                    .expect("loaded before its expiry");
                layers.push(layer);
            }
            layers
        });
        drop(runtime);
        for (i, layer) in layers.into_iter().enumerate() {
            let at = mono + lead + Duration::from_micros(GAP_US * i as u64 + (i % 100) as u64);
            while Instant::now() < at {
                std::hint::spin_loop();
            }
            drop(layer);
        }
        let hits = ON_ALARM.load(Ordering::SeqCst);
        eprintln!("race round {round}: {hits} sources dropped on the alarm thread");
        if hits > 0 {
            return hits;
        }
    }
    0
}

/// A layer whose key (KEY_A, refresh hint 1 s) was stored on a runtime that is kept and never
/// driven again (its refresh timer never fires), then sends on a real-time runtime every 20 ms
/// for up to `within`. Returns how long until a request carried KEY_B, if one did.
fn refresh_seen_within(within: Duration) -> Option<Duration> {
    let source = Steered::new(KEY_A, Some(Duration::from_secs(1)));
    let (mut svc, idle) = keyed_on_an_idle_runtime(&source, KEY_A);
    source.set(Some(KEY_B));
    let start = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = runtime.block_on(async {
        while start.elapsed() < within {
            if send(&mut svc).await.unwrap().1 == KEY_B {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    });
    drop(idle);
    seen
}

// ---------------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------------

/// **Medium.** The alarm thread runs user code: it can drop the last `Arc<KeyCache>`, and with
/// it the `KeySource` (and the `KeyError`s the cache keeps, whose `source()` is user code too).
/// A source whose `Drop` blocks (joins a worker thread, drops a `tokio::runtime::Runtime` that
/// has a blocking task, flushes to a slow disk, waits for a lease revocation) then stalls the
/// one thread every cache of the process relies on, while `alarm::running()` still says it
/// runs: no service reads the clock, so every key whose refresh timer is not on a driven
/// runtime is sent past its refresh point for as long as the drop blocks (forever, for a
/// deadlock). Here: while one source's `Drop` blocks on the alarm thread, an unrelated layer's
/// key, due after 1 s, is still sent 5 s later (before the change it was noticed by the clock).
///
/// Why: `fire()` does `Weak::upgrade`, bumps the epoch, then drops that strong reference; when
/// the user drops the last other reference in between (one layer per request, a reloaded
/// config), the cache is destroyed on the alarm thread. `catch_unwind` guards panics only.
/// The drop also runs with no tokio runtime in context (a `Drop` that `tokio::spawn`s a cleanup
/// panics there, and the cleanup is lost).
///
/// Fix: never take a strong reference on the alarm thread. Keep the epoch in an
/// `Arc<AtomicU64>` of its own (as the ticket slot already is) and give the alarm entry that
/// `Arc` instead of a `Weak<KeyCache>`: `fire` is then one `fetch_add`, and a cache is always
/// dropped by its user. (Or hand strong references that turn out last to a drop thread.)
#[test]
fn finding_a_blocking_source_drop_on_the_alarm_thread_stalls_every_refresh() {
    let (ok, out) = run_child("child_blocking_drop_on_the_alarm_thread");
    assert!(ok, "child failed:\n{out}");
}

#[test]
#[ignore = "run by finding_a_blocking_source_drop_on_the_alarm_thread_stalls_every_refresh"]
fn child_blocking_drop_on_the_alarm_thread() {
    if !is_child() {
        return;
    }
    ON_ALARM_MODE.store(MODE_BLOCK, Ordering::SeqCst);
    let hits = race_a_drop_onto_the_alarm_thread(2);
    // With the race lost (as after the fix), the alarm works and the refresh is seen.
    let seen = refresh_seen_within(Duration::from_secs(5));
    release();
    assert!(
        hits == 0 && seen.is_some(),
        "the alarm thread dropped a key source (user code) {hits} time(s); meanwhile another \
         layer's key due after 1 s was refreshed after: {seen:?} (None: still sent after 5 s)"
    );
}

/// **Low.** A source whose `Drop` panics with a payload that itself panics when dropped kills
/// the alarm thread. `fire` does `let _ = catch_unwind(..)`: the payload is dropped outside
/// the `catch_unwind`, and that second panic unwinds `Alarm::run`. The `Dying` guard then
/// turns `running()` off and fires the heap, but the caches popped into `due` after the
/// dying one are never fired (`due` is dropped before `Dying`): their services' copies, taken
/// with `due_at: None`, keep a key past its refresh point until something else moves the
/// epoch. The crate guards exactly this in `detach.rs` (`CatchUnwind` drops the payload inside
/// a second `catch_unwind`); `fire` does not. And from then on every service of the process
/// reads the clock per request again (the cost the change removed).
///
/// Fix: drop the payload inside its own `catch_unwind` (as `CatchUnwind` does), fire what is
/// in `due` from `Dying` too, or (better, see the finding above) never drop a cache there.
#[test]
fn finding_a_panic_payload_that_panics_on_drop_kills_the_alarm_thread() {
    let (ok, out) = run_child("child_panic_bomb_on_the_alarm_thread");
    assert!(ok, "child failed:\n{out}");
}

#[test]
#[ignore = "run by finding_a_panic_payload_that_panics_on_drop_kills_the_alarm_thread"]
fn child_panic_bomb_on_the_alarm_thread() {
    if !is_child() {
        return;
    }
    ON_ALARM_MODE.store(MODE_PANIC_BOMB, Ordering::SeqCst);
    let hits = race_a_drop_onto_the_alarm_thread(2);
    eprintln!("{hits} source drop(s) on the alarm thread");
    // The thread ends (if it does) as soon as the payload is dropped: poll for a little while.
    let start = Instant::now();
    let mut alive = alarm_thread_alive();
    while alive && start.elapsed() < Duration::from_secs(2) {
        std::thread::yield_now();
        alive = alarm_thread_alive();
    }
    assert!(alive, "the alarm thread died on a panicking panic payload");
}

/// **Low.** After `fork()` the child process has no alarm thread, but `ALARM` (a static copied
/// by the fork) still says `alive`, so `running()` is true and services read no clock: in the
/// child, a key whose refresh timer is not on a driven runtime is never noticed due (stale
/// forever; keys with an expiry are still caught by the wall clock). Before the change the
/// per-request clock read bounded it. Pre-fork servers, `daemonize` after a warm-up load,
/// Python extensions and test harnesses fork after threads exist.
///
/// Fix: record the owning pid in `Alarm` and have `alarm()` restart the thread when
/// `getpid()` differs (on the store path, not per request), and have `running()` compare a
/// generation that a `pthread_atfork` child handler bumps (or clear `alive` in that handler).
#[test]
fn finding_after_fork_the_child_trusts_an_alarm_thread_it_does_not_have() {
    let (ok, out) = run_child("child_fork_after_the_alarm_started");
    assert!(ok, "child failed:\n{out}");
}

unsafe extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
}

#[test]
#[ignore = "run by finding_after_fork_the_child_trusts_an_alarm_thread_it_does_not_have"]
fn child_fork_after_the_alarm_started() {
    if !is_child() {
        return;
    }
    // Any key with a deadline starts the alarm thread.
    let warm = BearerAuthLayer::new(Steered::new(KEY_A, Some(Duration::from_secs(3600))));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(warm.handle().ready()).unwrap();
    drop(runtime);
    let start = Instant::now();
    while !alarm_thread_alive() {
        assert!(start.elapsed() < Duration::from_secs(5), "no alarm thread");
        std::thread::yield_now();
    }
    // SAFETY: this process runs this test alone; the child only builds runtimes, sends through
    // an in-process service and leaves with `_exit`.
    let pid = unsafe { fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match std::panic::catch_unwind(|| refresh_seen_within(Duration::from_secs(5))) {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(_) => 2,
        };
        unsafe { _exit(code) }
    }
    let mut status = 0;
    assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
    let code = (status >> 8) & 0xff;
    assert_eq!(
        code, 0,
        "in the forked child a key due after 1 s was still sent after 5 s (exit {code})"
    );
}

// ---------------------------------------------------------------------------------------------
// Holds
// ---------------------------------------------------------------------------------------------

/// A plain panic in a source's `Drop` on the alarm thread is caught: the thread lives on and
/// later refresh points are still noticed without any clock read per request.
#[test]
fn holds_a_panicking_source_drop_on_the_alarm_thread() {
    let (ok, out) = run_child("child_panicking_drop_on_the_alarm_thread");
    assert!(ok, "child failed:\n{out}");
}

#[test]
#[ignore = "run by holds_a_panicking_source_drop_on_the_alarm_thread"]
fn child_panicking_drop_on_the_alarm_thread() {
    if !is_child() {
        return;
    }
    ON_ALARM_MODE.store(MODE_PANIC, Ordering::SeqCst);
    let hits = race_a_drop_onto_the_alarm_thread(2);
    eprintln!("{hits} source drop(s) on the alarm thread");
    assert!(alarm_thread_alive());
    let seen = refresh_seen_within(Duration::from_secs(10));
    assert!(seen.is_some(), "a key due after 1 s still sent after 10 s");
}

/// With the alarm running, a key stored on a runtime kept and never driven is noticed due in
/// real time, and not before its refresh point.
#[test]
fn holds_an_idle_timer_runtime_with_the_alarm_running() {
    let took = refresh_seen_within(Duration::from_secs(20)).expect("refreshed");
    assert!(took >= Duration::from_millis(850), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A template service that never sends, cloned for each request across the refresh point:
/// the first clone after it refreshes (its `Clone` checks the clock), none sends the old key.
#[tokio::test(start_paused = true)]
async fn holds_a_template_cloned_per_request_across_the_refresh_point() {
    let source = Steered::new(KEY_A, Some(Duration::from_secs(60)));
    let layer = BearerAuthLayer::new(source.clone());
    let template = layer.layer(api::<Full<Bytes>>(accepting("*")));
    for _ in 0..5 {
        let res = template.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.into_body(), KEY_A);
    }
    source.set(Some(KEY_B));
    support::advance(Duration::from_secs(61)).await;
    for i in 0..5 {
        let res = template.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.into_body(), KEY_B, "clone {i} after the refresh point");
    }
    assert_eq!(source.loads(), 2);
}

/// A key with a hard expiry whose refresh is stuck (the source hangs up to the load timeout):
/// services keep the key while it lives, and no request carries it at or past its expiry,
/// though the wall clock (not paused) says it has not expired: the timer moves the epoch at
/// the expiry too, now that it sleeps through both deadlines.
#[tokio::test(start_paused = true)]
async fn holds_a_stuck_refresh_never_sends_the_key_past_its_expiry() {
    /// The first load gives KEY_A expiring in 60 s; later loads hang.
    struct Hanging(AtomicUsize);
    impl KeySource for Hanging {
        fn load(&self) -> KeyFuture<'_> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n > 0 {
                    std::future::pending::<()>().await;
                }
                Ok(ApiKey::new(KEY_A)?.expires_at(SystemTime::now() + Duration::from_secs(60)))
            })
        }
    }
    let layer =
        BearerAuthLayer::new(Hanging(AtomicUsize::new(0))).load_timeout(Duration::from_secs(120));
    let mut a = layer.layer(api::<Full<Bytes>>(accepting("*")));
    let mut b = a.clone();
    assert_eq!(send(&mut a).await.unwrap().1, KEY_A);
    assert_eq!(send(&mut b).await.unwrap().1, KEY_A);
    // Past the refresh point (at most 55 s), before the expiry: `a` drives the stuck refresh.
    support::advance(Duration::from_secs(56)).await;
    let stuck = tokio::spawn(async move { send(&mut a).await });
    support::advance(Duration::ZERO).await;
    // `b` keeps the key while it lives...
    assert_eq!(send(&mut b).await.unwrap().1, KEY_A);
    // ...and not past its expiry.
    support::advance(Duration::from_secs(5)).await;
    let late = send(&mut b).await;
    let err = late.expect_err("sent at or past its expiry");
    let err = err.downcast_ref::<KeyError>().expect("a KeyError");
    assert_eq!(err.kind(), KeyErrorKind::Expired, "{err}");
    assert!(stuck.await.unwrap().is_err());
}

/// A failed refresh keeps the old key and is retried once its backoff (stored as the new
/// refresh point, so as an alarm deadline) passes.
#[tokio::test(start_paused = true)]
async fn holds_a_failed_refresh_is_retried_after_its_backoff() {
    let source = Steered::new(KEY_A, Some(Duration::from_secs(60)));
    let layer = BearerAuthLayer::new(source.clone());
    let mut svc = layer.layer(api::<Full<Bytes>>(accepting("*")));
    assert_eq!(send(&mut svc).await.unwrap().1, KEY_A);
    source.set(None);
    support::advance(Duration::from_secs(61)).await;
    assert_eq!(
        send(&mut svc).await.unwrap().1,
        KEY_A,
        "refresh fails: old key"
    );
    support::advance(Duration::ZERO).await;
    assert_eq!(send(&mut svc).await.unwrap().1, KEY_A, "within the backoff");
    let loads = source.loads();
    source.set(Some(KEY_B));
    support::advance(Duration::from_secs(31)).await; // past any backoff (30 s max, +20%)
    let mut token = send(&mut svc).await.unwrap().1;
    if token == KEY_A {
        // the request that found it due drove the refresh; the next one has its key
        token = send(&mut svc).await.unwrap().1;
    }
    assert_eq!(token, KEY_B);
    assert_eq!(source.loads(), loads + 1);
}

/// Two threads sending on their own clones of one service, on a multi-thread runtime, both
/// move to the refreshed key in real time (epoch Acquire/Release, no clock per request).
#[test]
fn holds_clones_on_two_threads_follow_the_alarm() {
    let source = Steered::new(KEY_A, Some(Duration::from_secs(1)));
    let layer = BearerAuthLayer::new(source.clone());
    let svc = layer.layer(api::<Full<Bytes>>(accepting("*")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut first = svc.clone();
        assert_eq!(send(&mut first).await.unwrap().1, KEY_A);
        source.set(Some(KEY_B));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let mut own = svc.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    loop {
                        let token = send(&mut own).await.unwrap().1;
                        if token == KEY_B {
                            return start.elapsed();
                        }
                        assert!(start.elapsed() < Duration::from_secs(20), "still {token}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            let took = task.await.unwrap();
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
    });
    assert_eq!(source.loads(), 2);
}

/// Absurd deadlines do not hurt the alarm: a key expiring in ~1.5e11 years (and a hint of
/// `Duration::MAX`, clamped to a year) is stored and used; another cache's near deadline is
/// still fired on time.
#[test]
fn holds_absurd_deadlines_do_not_stall_the_alarm() {
    struct Far;
    impl KeySource for Far {
        fn load(&self) -> KeyFuture<'_> {
            let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
            Box::pin(async move {
                Ok(ApiKey::new("sk-audit6-far-key-0000000")?
                    .expires_at(far)
                    .refresh_after(Duration::MAX))
            })
        }
    }
    let far = BearerAuthLayer::new(Far);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(far.handle().ready()).unwrap();
    drop(runtime);
    let took = refresh_seen_within(Duration::from_secs(20)).expect("refreshed");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

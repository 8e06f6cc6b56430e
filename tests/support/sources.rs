//! The key sources the tests use, one of each behaviour, and an in-process API that accepts one
//! key.
//!
//! - [`Steered`]: the test sets its key, refresh hint, failure, latency and panics, and can hold
//!   its loads at a gate.
//! - [`Fresh`]: a new key at every load.
//! - [`Counted`]: any source, its loads counted.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::{watch, Semaphore};
use tower::{BoxError, Service, ServiceExt};
use tower_bearer::{ApiKey, KeyError, KeyErrorKind, KeyFuture, KeySource};

/// A source whose key, refresh hint, failure, latency and panics the test sets. A load reads
/// the key when it starts (as a real source reads its store), then, when gated, waits for
/// [`Steered::open`], then for its latency, then panics if told to.
pub struct Steered {
    key: Mutex<Option<String>>,
    failure: Mutex<KeyError>,
    ttl: Mutex<Option<Duration>>,
    delay: Mutex<Duration>,
    panics: AtomicBool,
    loads: AtomicUsize,
    finished: AtomicUsize,
    gated: AtomicBool,
    gate: Semaphore,
    started: watch::Sender<usize>,
}

impl Steered {
    /// Gives `key` with a refresh hint of `ttl`.
    pub fn new(key: &str, ttl: Option<Duration>) -> Arc<Self> {
        Arc::new(Steered {
            key: Mutex::new(Some(key.to_owned())),
            failure: Mutex::new(
                KeyError::new(KeyErrorKind::Unavailable, "store is down")
                    .with_origin("steered source"),
            ),
            ttl: Mutex::new(ttl),
            delay: Mutex::new(Duration::ZERO),
            panics: AtomicBool::new(false),
            loads: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            gated: AtomicBool::new(false),
            gate: Semaphore::new(0),
            started: watch::Sender::new(0),
        })
    }
    /// The key the next load reads; `None` fails the load (`steered source: store is down`,
    /// unless [`Steered::fail_with`] said otherwise).
    pub fn set(&self, key: Option<&str>) {
        *self.key.lock().unwrap() = key.map(str::to_owned);
    }
    /// From now on loads fail with `error`, until [`Steered::set`] gives a key.
    pub fn fail_with(&self, error: KeyError) {
        *self.failure.lock().unwrap() = error;
        self.set(None);
    }
    /// The refresh hint of the keys loaded from now on.
    pub fn set_ttl(&self, ttl: Option<Duration>) {
        *self.ttl.lock().unwrap() = ttl;
    }
    /// How long the loads started from now on take (on tokio's clock).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }
    /// Whether loads panic (a bug in a source, or in a library it calls), checked when a load
    /// has waited out its gate and latency.
    pub fn set_panics(&self, panics: bool) {
        self.panics.store(panics, Ordering::SeqCst);
    }
    /// From now on each load waits for one [`Steered::open`] after reading the key; a load
    /// never opened hangs.
    pub fn gate(&self) {
        self.gate.forget_permits(usize::MAX);
        self.gated.store(true, Ordering::SeqCst);
    }
    /// Lets one gated load finish.
    pub fn open(&self) {
        self.gate.add_permits(1);
    }
    /// Loads started from now on are not gated; those waiting at the gate still wait.
    pub fn ungate(&self) {
        self.gated.store(false, Ordering::SeqCst);
    }
    /// Ends the gate: the loads waiting at it finish, and those to come are not gated.
    pub fn open_all(&self) {
        self.ungate();
        self.gate.add_permits(1 << 20);
    }
    /// Resolves once `n` loads in all have started.
    pub async fn started(&self, n: usize) {
        let mut seen = self.started.subscribe();
        seen.wait_for(|started| *started >= n)
            .await
            .expect("source alive");
    }
    /// Loads started.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    /// Loads that ran to their end: not dropped, not panicked.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

impl KeySource for Steered {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
        let key = self.key.lock().unwrap().clone();
        let failure = self.failure.lock().unwrap().clone();
        let ttl = *self.ttl.lock().unwrap();
        let delay = *self.delay.lock().unwrap();
        let gated = self.gated.load(Ordering::SeqCst);
        self.started.send_replace(n);
        Box::pin(async move {
            if gated {
                self.gate.acquire().await.expect("gate open").forget();
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if self.panics.load(Ordering::SeqCst) {
                panic!("bug in the key source");
            }
            self.finished.fetch_add(1, Ordering::SeqCst);
            let key = ApiKey::new(key.ok_or(failure)?)?;
            Ok(match ttl {
                Some(ttl) => key.refresh_after(ttl),
                None => key,
            })
        })
    }
}

/// A new key at every load: `{prefix}1`, `{prefix}2`, … Each load takes one turn of the
/// scheduler before it answers, so loads overlap with whatever else runs.
pub struct Fresh {
    prefix: &'static str,
    ttl: Option<Duration>,
    loads: AtomicUsize,
    newest: Mutex<String>,
}

impl Fresh {
    /// Keys with no refresh hint.
    pub fn new(prefix: &'static str) -> Arc<Self> {
        Fresh::refreshing_after(prefix, None)
    }
    /// Keys with a refresh hint of `ttl`.
    pub fn refreshing_after(prefix: &'static str, ttl: Option<Duration>) -> Arc<Self> {
        Arc::new(Fresh {
            prefix,
            ttl,
            loads: AtomicUsize::new(0),
            newest: Mutex::new(String::new()),
        })
    }
    /// Loads started.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    /// The key of the load started last (empty before the first).
    pub fn newest(&self) -> String {
        self.newest.lock().unwrap().clone()
    }
}

impl KeySource for Fresh {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
        let key = format!("{}{n}", self.prefix);
        *self.newest.lock().unwrap() = key.clone();
        Box::pin(async move {
            tokio::task::yield_now().await;
            let key = ApiKey::new(key)?;
            Ok(match self.ttl {
                Some(ttl) => key.refresh_after(ttl),
                None => key,
            })
        })
    }
}

/// `S`, its loads counted; static when `S` is.
pub struct Counted<S> {
    source: S,
    loads: AtomicUsize,
}

impl<S: KeySource> Counted<S> {
    pub fn new(source: S) -> Arc<Self> {
        Arc::new(Counted {
            source,
            loads: AtomicUsize::new(0),
        })
    }
    /// Loads started.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl<S: KeySource> KeySource for Counted<S> {
    fn load(&self) -> KeyFuture<'_> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.source.load()
    }
    fn is_static(&self) -> bool {
        self.source.is_static()
    }
}

/// An in-process API that accepts one key (the value of `accepted`; `*` accepts any) and
/// answers 401 to any other; the body is the token it got.
pub fn api<B: Send + 'static>(
    accepted: Arc<Mutex<String>>,
) -> impl tower::Service<
    Request<B>,
    Response = Response<String>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<String>, Infallible>>,
> + Clone
       + Send {
    tower::service_fn(move |req: Request<B>| {
        let token = super::bearer(&req).unwrap_or_default();
        let mut res = Response::new(token.clone());
        let accepted = accepted.lock().unwrap();
        if *accepted != "*" && *accepted != token {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok(res))
    })
}

/// The key value `api` accepts, to change mid-test; `*` accepts any.
pub fn accepting(key: &str) -> Arc<Mutex<String>> {
    Arc::new(Mutex::new(key.to_owned()))
}

/// A POST with a small in-memory body (replayable) to the Azerion API.
pub fn req() -> Request<Full<Bytes>> {
    Request::post("https://api.azerion.ai/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// Sends [`req`] through `svc`: the status `api` answered and the token it saw.
pub async fn send<S>(svc: &mut S) -> Result<(StatusCode, String), BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<String>, Error = BoxError>,
{
    let res = svc.ready().await?.call(req()).await?;
    Ok((res.status(), res.into_body()))
}

/// A service over a layer on `source` whose key (`first`, which `source` gives now) was
/// loaded, and its refresh timer armed, on the returned runtime: keep that runtime and never
/// drive it again, and the timer never fires. What the alarm thread is there for.
pub fn keyed_on_an_idle_runtime(
    source: &Arc<Steered>,
    first: &str,
) -> (
    impl Service<Request<Full<Bytes>>, Response = Response<String>, Error = BoxError>,
    tokio::runtime::Runtime,
) {
    let layer = tower_bearer::BearerAuthLayer::new(source.clone());
    let mut svc = tower::Layer::layer(&layer, api::<Full<Bytes>>(accepting("*")));
    let idle = super::paused_runtime();
    idle.block_on(async {
        // The first request loads the key, the second makes the service's copy of it.
        for _ in 0..2 {
            assert_eq!(send(&mut svc).await.unwrap().1, first);
        }
    });
    (svc, idle)
}

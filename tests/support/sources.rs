//! Key sources the tests steer, and an in-process API that accepts one key.

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

/// A source whose key, refresh hint and failures the test sets. A load reads the key when it
/// starts (as a real source reads its store), then, when gated, waits for [`Steered::open`].
pub struct Steered {
    key: Mutex<Option<String>>,
    ttl: Mutex<Option<Duration>>,
    loads: AtomicUsize,
    gated: AtomicBool,
    gate: Semaphore,
    started: watch::Sender<usize>,
}

impl Steered {
    /// Gives `key` with a refresh hint of `ttl`.
    pub fn new(key: &str, ttl: Option<Duration>) -> Arc<Self> {
        Arc::new(Steered {
            key: Mutex::new(Some(key.to_owned())),
            ttl: Mutex::new(ttl),
            loads: AtomicUsize::new(0),
            gated: AtomicBool::new(false),
            gate: Semaphore::new(0),
            started: watch::Sender::new(0),
        })
    }
    /// The key the next load reads; `None` fails the load.
    pub fn set(&self, key: Option<&str>) {
        *self.key.lock().unwrap() = key.map(str::to_owned);
    }
    /// The refresh hint of the keys loaded from now on.
    pub fn set_ttl(&self, ttl: Option<Duration>) {
        *self.ttl.lock().unwrap() = ttl;
    }
    /// From now on each load waits for one [`Steered::open`] after reading the key.
    pub fn gate(&self) {
        self.gated.store(true, Ordering::SeqCst);
    }
    /// Lets one gated load finish.
    pub fn open(&self) {
        self.gate.add_permits(1);
    }
    /// Resolves once `n` loads in all have started.
    pub async fn started(&self, n: usize) {
        let mut seen = self.started.subscribe();
        seen.wait_for(|started| *started >= n)
            .await
            .expect("source alive");
    }
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl KeySource for Steered {
    fn load(&self) -> KeyFuture<'_> {
        let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
        let key = self.key.lock().unwrap().clone();
        let ttl = *self.ttl.lock().unwrap();
        let gated = self.gated.load(Ordering::SeqCst);
        self.started.send_replace(n);
        Box::pin(async move {
            if gated {
                self.gate.acquire().await.expect("gate open").forget();
            }
            let Some(key) = key else {
                return Err(KeyError::new(KeyErrorKind::Unavailable, "store is down")
                    .with_origin("steered source"));
            };
            let key = ApiKey::new(key)?;
            Ok(match ttl {
                Some(ttl) => key.refresh_after(ttl),
                None => key,
            })
        })
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

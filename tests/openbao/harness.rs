//! What a fault or fleet test puts around a `VaultKeySource`: an in-process API that accepts a
//! set of keys and records what it got, the layer, its events (awaited through a channel, not
//! polled), and steady traffic (what drives refreshes: the layer refreshes on a request).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::sync::watch;
use tower::{BoxError, ServiceExt};
use tower_bearer::event::LoadFailure;
use tower_bearer::{BearerAuthLayer, KeyEvent, KeyHandle, KeySource, RotationEvent};

/// The API the layer calls: 200 to an accepted key, 401 to any other.
#[derive(Clone, Default)]
pub struct Api {
    accepted: Arc<RwLock<Vec<String>>>,
    seen: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Api {
    /// Accepts `keys`.
    pub fn new(keys: &[&str]) -> Api {
        let api = Api::default();
        api.accept(keys);
        api
    }

    /// Accepts `keys` and no other from now on (the others are revoked at once).
    pub fn accept(&self, keys: &[&str]) {
        *self.accepted.write().unwrap() = keys.iter().map(|k| k.to_string()).collect();
    }

    /// Every request so far: the key it carried and the status it got.
    pub fn seen(&self) -> Vec<(String, u16)> {
        self.seen.lock().unwrap().clone()
    }

    fn answer(&self, req: &Request<Full<Bytes>>) -> Response<Full<Bytes>> {
        let key = crate::support::bearer(req).unwrap_or_default();
        let ok = self.accepted.read().unwrap().contains(&key);
        let status = if ok { 200 } else { 401 };
        self.seen.lock().unwrap().push((key, status));
        crate::support::respond(status, "{}")
    }
}

/// A request to the API, on loopback (where the layer may send a key over plain http).
pub fn request() -> Request<Full<Bytes>> {
    Request::get("http://127.0.0.1/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The events of a layer, in order, with a channel that moves at each one.
#[derive(Clone)]
pub struct Events {
    list: Arc<Mutex<Vec<KeyEvent>>>,
    count: watch::Sender<usize>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            list: Arc::default(),
            count: watch::Sender::new(0),
        }
    }
}

impl Events {
    /// The hook for `BearerAuthLayer::on_event`.
    pub fn hook(&self) -> impl Fn(&KeyEvent) + Send + Sync + 'static {
        let me = self.clone();
        move |event| {
            let n = {
                let mut list = me.list.lock().unwrap();
                list.push(event.clone());
                list.len()
            };
            me.count.send_replace(n);
        }
    }

    /// The failed loads so far.
    pub fn failures(&self) -> Vec<LoadFailure> {
        let list = self.list.lock().unwrap();
        list.iter()
            .filter_map(|e| match e {
                KeyEvent::LoadFailed(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// The rotations so far.
    pub fn rotations(&self) -> Vec<RotationEvent> {
        let list = self.list.lock().unwrap();
        list.iter()
            .filter_map(|e| match e {
                KeyEvent::Rotated(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits, at most `within`, until `condition` holds of the events (woken by each event).
    pub async fn until(&self, within: Duration, condition: impl Fn(&Events) -> bool) {
        let mut rx = self.count.subscribe();
        let wait = async {
            while !condition(self) {
                rx.changed().await.unwrap();
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("no such events within {within:?}"));
    }
}

/// A client: the layer over `source`, in front of `api`.
pub type Client =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, BoxError>;

/// The layer over `source` in front of `api`, its handle and its events.
pub fn layered(source: impl KeySource, api: &Api) -> (Client, KeyHandle, Events) {
    let events = Events::default();
    let layer = BearerAuthLayer::new(source).on_event(events.hook());
    let handle = layer.handle();
    let api = api.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let response = api.answer(&req);
        async move { Ok::<_, BoxError>(response) }
    });
    let client = tower::ServiceBuilder::new().layer(layer).service(inner);
    (
        tower::util::BoxCloneSyncService::new(client),
        handle,
        events,
    )
}

/// Sends one request; the status, or the layer's error as text.
pub async fn send(client: &Client) -> Result<u16, String> {
    match client.clone().oneshot(request()).await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => Err(e.to_string()),
    }
}

/// Requests sent every `every` until dropped, as a service under load sends them; their
/// outcomes are kept.
pub struct Traffic {
    task: tokio::task::JoinHandle<()>,
    outcomes: Arc<Mutex<Vec<Result<u16, String>>>>,
}

impl Traffic {
    pub fn start(client: &Client, every: Duration) -> Traffic {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (client, sink) = (client.clone(), outcomes.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let outcome = send(&client).await;
                sink.lock().unwrap().push(outcome);
            }
        });
        Traffic { task, outcomes }
    }

    /// The outcomes so far.
    pub fn outcomes(&self) -> Vec<Result<u16, String>> {
        self.outcomes.lock().unwrap().clone()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! A counting proxy in front of an OpenBao server: every request the sources make goes through
//! it to the real server, and it records what the server was asked and what it answered, so a
//! test counts reads *at the server* (a rate-limited or sealed server does not audit-log what
//! it refuses). Plain HTTP/1.1 on a loopback port; bodies are forwarded whole.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

/// One request the server answered (or the proxy could not forward: status 502).
#[derive(Clone, Debug)]
pub struct Hit {
    /// When it arrived, from the proxy's start.
    pub at: Duration,
    pub method: Method,
    /// The API path, without `/v1/`: `kv/data/app`.
    pub path: String,
    pub status: u16,
    /// A digest of the `X-Vault-Token` sent (0 for none): tells instances apart without
    /// keeping tokens.
    pub token: u64,
    /// The `Retry-After` the server sent, if any.
    pub retry_after: Option<String>,
}

/// Called with each request before it is forwarded (the request waits for it).
pub type Hook = Arc<
    dyn Fn(&http::request::Parts) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The proxy; it runs until the test's runtime ends.
#[derive(Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    started: Instant,
    hits: Arc<Mutex<Vec<Hit>>>,
    count: watch::Sender<usize>,
    hook: Arc<Mutex<Option<Hook>>>,
}

/// The digest of a token as [`Hit::token`] holds it.
pub fn token_digest(token: &str) -> u64 {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}

impl Proxy {
    /// A proxy to the server at `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let proxy = Proxy {
            addr: ([127, 0, 0, 1], 0).into(),
            started: Instant::now(),
            hits: Arc::default(),
            count: watch::Sender::new(0),
            hook: Arc::default(),
        };
        let client = crate::support::client::<Full<Bytes>>();
        let me = proxy.clone();
        let addr = crate::support::serve(move |req: Request<hyper::body::Incoming>| {
            let (me, client) = (me.clone(), client.clone());
            async move { me.forward(&client, upstream, req).await }
        })
        .await;
        Proxy { addr, ..proxy }
    }

    async fn forward(
        &self,
        client: &crate::support::HttpClient,
        upstream: SocketAddr,
        req: Request<hyper::body::Incoming>,
    ) -> Response<Full<Bytes>> {
        let at = self.started.elapsed();
        let (mut parts, body) = req.into_parts();
        let hook = self.hook.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(&parts).await;
        }
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().trim_start_matches("/v1/").to_owned();
        let token = parts
            .headers
            .get("x-vault-token")
            .map_or(0, |t| token_digest(t.to_str().unwrap_or("")));
        let target = format!(
            "http://{upstream}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        parts.uri = target.parse().unwrap();
        let method = parts.method.clone();
        let (status, retry_after, response) = match client
            .request(Request::from_parts(parts, Full::new(body)))
            .await
        {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let retry_after = parts
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (
                    parts.status.as_u16(),
                    retry_after,
                    Response::from_parts(parts, Full::new(body)),
                )
            }
            Err(_) => (502, None, crate::support::respond(502, "")),
        };
        let hit = Hit {
            at,
            method,
            path,
            status,
            token,
            retry_after,
        };
        let n = {
            let mut hits = self.hits.lock().unwrap();
            hits.push(hit);
            hits.len()
        };
        self.count.send_replace(n);
        response
    }

    /// `http://127.0.0.1:PORT`, for the source's address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Time since the proxy started, on the clock of [`Hit::at`].
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The `GET`s of `api_path` (e.g. `kv/data/app`) so far.
    pub fn reads(&self, api_path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.method == Method::GET && h.path == api_path)
            .collect()
    }

    /// The requests to `api_path` so far, any method.
    pub fn to(&self, api_path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.path == api_path)
            .collect()
    }

    /// Waits (at most `within`) until the requests so far satisfy `condition`; woken by each
    /// request, no polling.
    pub async fn until(&self, within: Duration, condition: impl Fn(&[Hit]) -> bool) {
        let mut rx = self.count.subscribe();
        let wait = async {
            loop {
                if condition(&self.hits.lock().unwrap()) {
                    return;
                }
                rx.changed().await.unwrap();
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("the proxy did not see it within {within:?}"));
    }

    /// Runs `hook` on every request from now on, before it is forwarded.
    pub fn on_request(&self, hook: Hook) {
        *self.hook.lock().unwrap() = Some(hook);
    }
}

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::rejection::{Rejection, Rejections};
use super::scope::Scope;
use super::service::BearerAuth;
use super::state::Config;
use crate::cache::{KeyCache, KeyHandle};
use crate::rotation::RotationEvent;
use crate::KeyEvent;
use crate::KeySource;

/// Adds `Authorization: Bearer <key>` to every request, with the key from a [`KeySource`].
///
/// The key is loaded on first use and cached; it is refreshed ahead of its refresh hint, reloaded
/// once when the server answers 401 (and the request replayed once with the new key), and the
/// hooks set with [`on_rotate`](BearerAuthLayer::on_rotate) hear of every change.
///
/// Every service this layer makes, and every [`KeyHandle`], share one key cache.
///
/// # Clone
///
/// Clones of the layer share the key cache: the key, its refresh and the single-flight loads.
/// The options are the clone's own: a setter called on a clone (`restrict_to_hosts`,
/// `load_timeout`, `on_rotate`, …) changes that clone and the services and handles it makes
/// afterwards, never the original's options. Hooks watch the key, which is shared: a hook
/// hears every change of it from the moment it is set, whichever clone, service or handle
/// drove the load. Build a new layer for an independent cache.
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::{BearerAuthLayer, EnvKeySource};
///
/// let layer = BearerAuthLayer::new(EnvKeySource::new("AZERION_API_KEY"))
///     .restrict_to_hosts(["api.azerion.ai"])
///     .load_timeout(Duration::from_secs(2))
///     .on_rotate(|event| println!("{event}"));
/// ```
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct BearerAuthLayer {
    cache: Arc<KeyCache>,
    config: Arc<Config>,
}

impl BearerAuthLayer {
    /// A layer whose key comes from `source`.
    pub fn new(source: impl KeySource) -> Self {
        let static_key = source.is_static();
        let layer = BearerAuthLayer {
            cache: KeyCache::new(Box::new(source)),
            config: Arc::new(Config {
                scope: Scope::default(),
                override_existing: false,
                retry_on_unauthorized: true,
                rejections: Rejections::STATUS_401,
                static_key,
                load: Arc::default(),
            }),
        };
        layer.cache.register(&layer.config.load);
        layer
    }

    /// Sends the key only to these hosts; a request for any other host fails with a
    /// [`ScopeError`](crate::ScopeError) naming it, and nothing is sent.
    ///
    /// Hosts match case-insensitively, any port. `*.example.com` matches every subdomain of
    /// `example.com` (not `example.com` itself). A `Host` header must name the same host as
    /// the URI; a request with two `Host` headers is refused. A request in origin form (no
    /// authority in its URI, allowed only with `allow_insecure_http`) is checked against its
    /// one `Host` header; with neither it is refused.
    pub fn restrict_to_hosts<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        hosts: I,
    ) -> Self {
        Arc::make_mut(&mut self.config).scope.restrict_to(hosts);
        self
    }

    /// Allows sending the key without `https://` to hosts that are not loopback.
    ///
    /// Off by default: the key could cross the network in clear text. Only http's own `https`
    /// scheme counts as encrypted (the one connectors choose TLS for: `Scheme::HTTPS`, which a
    /// URI parsed from text gets in any case, `HTTPS://…` too; a scheme built from the text
    /// `HTTPS` is another one); `http`, `ws` and any other scheme go to loopback hosts only
    /// (127.0.0.0/8, `::1`, `localhost`), and a request with neither scheme nor host (origin
    /// form, `/v1/models`) is refused, since nothing says where its connection goes.
    pub fn allow_insecure_http(mut self, yes: bool) -> Self {
        Arc::make_mut(&mut self.config).scope.allow_insecure_http = yes;
        self
    }

    /// Replaces an `Authorization` header the caller set on the request.
    ///
    /// Off by default: a request that carries its own `Authorization` header is sent as it is,
    /// and a 401 to it is not the layer's business (no reload, no replay).
    pub fn override_existing(mut self, yes: bool) -> Self {
        Arc::make_mut(&mut self.config).override_existing = yes;
        self
    }

    /// Replays a request once with the new key after a 401 (on by default).
    ///
    /// Any method is replayed, `POST` included: a 401 says the server did not act on the
    /// request, so sending it again with a valid key cannot do anything twice. (The transient
    /// retry, which cannot know that, retries idempotent requests only.)
    ///
    /// Off, a 401 still reloads the key for later requests, but the 401 goes back to the caller.
    ///
    /// Which requests replay: those whose body is a `Full<Bytes>`, an `Empty<Bytes>`, a
    /// `String`, or a [`ReplayableBody`](crate::ReplayableBody) that sent all it had and stayed
    /// under its cap. Any other body type (a hyper `Incoming`, a boxed stream) cannot be had
    /// again: its 401 goes back to the caller, with a debug-level log saying why, and the
    /// reloaded key serves the next request. Wrap such a body in `ReplayableBody` to replay it.
    pub fn retry_on_unauthorized(mut self, yes: bool) -> Self {
        Arc::make_mut(&mut self.config).retry_on_unauthorized = yes;
        self
    }

    /// Which responses mean "this key was rejected", and so reload the key and replay the
    /// request: [`Rejection::Status401`] alone by default. Replaces the set.
    ///
    /// For gRPC, `GrpcUnauthenticated` (status 16) is read from the response headers, where a
    /// trailers-only response carries it; a status that arrives only in the trailers of a
    /// streamed response is not seen. `Status403` and `GrpcPermissionDenied` are for APIs that
    /// answer a revoked key that way. With the default set, checking a response is one
    /// comparison of its status, as before.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, FileKeySource, Rejection};
    ///
    /// // A tonic client: requests are origin form, the server answers UNAUTHENTICATED.
    /// let layer = BearerAuthLayer::new(FileKeySource::new("/run/secrets/api-key"))
    ///     .origin("https://grpc.example.com")
    ///     .rejected_when([Rejection::Status401, Rejection::GrpcUnauthenticated]);
    /// ```
    pub fn rejected_when<I: IntoIterator<Item = Rejection>>(mut self, signals: I) -> Self {
        Arc::make_mut(&mut self.config).rejections = Rejections::of(signals);
        self
    }

    /// Where requests in origin form (a path alone, `/pkg.Service/Method`, as a tonic
    /// `Channel` sends them) go: `scheme://host[:port]`. The host scope and the cleartext rule
    /// judge them as if they named it: with `https://…` they get the key (if the host is in
    /// scope); with `http://…`, only for a loopback host. Without an origin, such requests
    /// are refused with a [`ScopeError`](crate::ScopeError) (unless
    /// [`allow_insecure_http`](BearerAuthLayer::allow_insecure_http)); with a value that is not
    /// `scheme://host[:port]`, they are refused saying so. Requests with an absolute URI are
    /// judged by it, as before.
    pub fn origin(mut self, uri: impl AsRef<str>) -> Self {
        Arc::make_mut(&mut self.config)
            .scope
            .set_origin(uri.as_ref());
        self
    }

    /// Calls `hook` each time the cached key changes, with fingerprints only.
    ///
    /// Hooks run on the task that loaded the key; keep them quick. A panicking hook is caught
    /// and logged. Several hooks may be set; they run in order, each once per change, and hear
    /// every change of the key this layer's cache holds, whoever drove it.
    ///
    /// A shorthand for [`on_event`](BearerAuthLayer::on_event) that hears
    /// [`KeyEvent::Rotated`] only.
    pub fn on_rotate(self, hook: impl Fn(&RotationEvent) + Send + Sync + 'static) -> Self {
        self.on_event(move |event| {
            if let KeyEvent::Rotated(rotation) = event {
                hook(rotation)
            }
        })
    }

    /// Calls `hook` for everything that happens to the key: a rotation, a failed load (and
    /// whether the old key is still served), a 401 replayed or not replayed (and why), a key
    /// that expired with no new one. See [`KeyEvent`]; every event is safe to log whole.
    ///
    /// Hooks run on the task where the event happened (a load, or the request that got the
    /// 401); keep them quick. A panicking hook is caught and logged. Several hooks may be set;
    /// they run in order, each once per event, and hear every event of the key this layer's
    /// cache holds, whoever drove it.
    ///
    /// ```
    /// use tower_bearer::{BearerAuthLayer, EnvKeySource, KeyEvent};
    ///
    /// let layer = BearerAuthLayer::new(EnvKeySource::new("AZERION_API_KEY"))
    ///     .on_event(|event| match event {
    ///         KeyEvent::LoadFailed(_) | KeyEvent::Expired(_) => eprintln!("{event}"),
    ///         _ => println!("{event}"),
    ///     });
    /// ```
    pub fn on_event(mut self, hook: impl Fn(&KeyEvent) + Send + Sync + 'static) -> Self {
        let config = Arc::make_mut(&mut self.config);
        Arc::make_mut(&mut config.load).hooks.push(Arc::new(hook));
        self.cache.register(&self.config.load);
        self
    }

    /// Names the layer, for logs and (feature `metrics`) the `layer` label of its metrics:
    /// a client with keys for two APIs tells them apart.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let config = Arc::make_mut(&mut self.config);
        Arc::make_mut(&mut config.load).name = Some(Arc::from(name.into()));
        self.cache.register(&self.config.load);
        self
    }

    /// Bounds each load from the source (default 5 s). Requests waiting on a load that times
    /// out fail with a [`KeyError`](crate::KeyError) of kind `Timeout`; a cached key, if any,
    /// stays in use.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        let config = Arc::make_mut(&mut self.config);
        Arc::make_mut(&mut config.load).load_timeout = timeout;
        self.cache.register(&self.config.load);
        self
    }

    /// A handle on the key cache this layer's services share, to rotate by hand or read the
    /// current fingerprint.
    pub fn handle(&self) -> KeyHandle {
        KeyHandle::new(self.cache.clone(), self.config.load.clone())
    }

    /// The key cache and the options: what the adapters for other clients (`grpc`,
    /// `async_openai`) share with the services this layer makes.
    #[cfg(any(feature = "grpc", feature = "async-openai"))]
    pub(crate) fn parts(&self) -> (&Arc<KeyCache>, &Arc<Config>) {
        (&self.cache, &self.config)
    }

    /// Adds `signal` to the rejections, keeping the others ([`rejected_when`] replaces them).
    ///
    /// [`rejected_when`]: BearerAuthLayer::rejected_when
    #[cfg(feature = "grpc")]
    pub(crate) fn also_rejected_when(mut self, signal: Rejection) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.rejections = config.rejections.with(signal);
        self
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth::new(inner, self.cache.clone(), self.config.clone())
    }
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("cache", &self.cache)
            .field("config", &self.config)
            .finish()
    }
}

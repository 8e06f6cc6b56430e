//! What the adapters for clients that are not a plain `Service<Request<B>>` (features `grpc`
//! and `async-openai`) share with [`BearerAuth`](crate::BearerAuth): the layer's key cache and
//! options, and the same decisions, made the same way. The two cold paths here mirror
//! `BearerAuth::call_slow` (which key to send now) and `Sent::into_replay` (whether to replay
//! after a rejection): a change to one is a change to the other.

// Each adapter uses part of this.
#![cfg_attr(not(all(feature = "grpc", feature = "async-openai")), allow(dead_code))]

use std::sync::Arc;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};

use super::layer::BearerAuthLayer;
use super::scope::{LoopbackMemo, ScopeError};
use super::state::Config;
pub(crate) use crate::cache::KeyNow;
use crate::cache::{detached, Current, KeyCache, KeyHandle, LoadFuture};
use crate::KeyError;

/// A layer's key cache and options, for an adapter.
#[derive(Debug)]
pub(crate) struct Adapter {
    cache: Arc<KeyCache>,
    config: Arc<Config>,
}

impl Adapter {
    pub(crate) fn new(layer: &BearerAuthLayer) -> Adapter {
        let (cache, config) = layer.parts();
        Adapter {
            cache: cache.clone(),
            config: config.clone(),
        }
    }

    pub(crate) fn handle(&self) -> KeyHandle {
        KeyHandle::new(self.cache.clone(), self.config.load.clone())
    }

    /// The key for a request now, decided as for the layer's own service.
    pub(crate) fn key_now(&self) -> KeyNow {
        self.cache.key_now(&self.config.load)
    }

    /// The key a load gave, unless it expired meanwhile.
    pub(crate) fn loaded(
        &self,
        loaded: Result<Arc<Current>, KeyError>,
    ) -> Result<Arc<Current>, KeyError> {
        self.cache.usable(loaded, &self.config.load)
    }

    /// Checks where a request goes against the layer's host scope and cleartext rule, from
    /// its URL and `Host` headers.
    pub(crate) fn check_destination(
        &self,
        url: &str,
        headers: &HeaderMap,
    ) -> Result<(), ScopeError> {
        let mut probe = Request::new(());
        // An unparsable URL checks as a request with no host: refused unless cleartext is
        // allowed, and then it cannot leave anyway.
        *probe.uri_mut() = url.parse::<Uri>().unwrap_or_default();
        for host in headers.get_all(HOST) {
            probe.headers_mut().append(HOST, host.clone());
        }
        self.check_scope(&probe)
    }

    pub(crate) fn check_scope<B>(&self, req: &Request<B>) -> Result<(), ScopeError> {
        self.config
            .scope
            .check_with(req, &mut LoopbackMemo::default())
    }

    /// Whether a rejection is handled at all: not for a static key, which has no other to try.
    pub(crate) fn handles_rejections(&self) -> bool {
        !self.config.static_key
    }

    /// Whether a rejected request is sent again (and so needs a service kept to send it).
    pub(crate) fn replays(&self) -> bool {
        !self.config.static_key && self.config.retry_on_unauthorized
    }

    /// Whether a response with this head is a rejection of the key this layer sent. A static
    /// key has no other to try: its rejections are not the layer's business.
    pub(crate) fn is_rejection(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        !self.config.static_key && self.config.rejections.matches_head(status, headers)
    }

    /// The key of `generation` was rejected: reload it (once for every request it was
    /// rejected for), resolving to the key to use now.
    pub(crate) fn reject(&self, generation: u64) -> LoadFuture {
        detached(
            self.cache
                .clone()
                .reject(generation, self.config.load.clone()),
        )
    }

    /// The key to replay with after the reload, decided as for the layer's own service, for a
    /// request the factory can always build again: none when replays are off, or (reported
    /// as a skip) the reload failed, the key expired, or it is the key just rejected.
    pub(crate) fn replay_key(
        &self,
        generation: u64,
        reloaded: Result<Arc<Current>, KeyError>,
    ) -> Option<Arc<Current>> {
        if !self.config.retry_on_unauthorized {
            return None;
        }
        self.cache
            .replay_key(&self.config.load, generation, reloaded, true)
    }

    /// The replay with `current` is about to be sent: counted and reported, or an error if
    /// its key expired while the service was not ready.
    pub(crate) fn replay_now(&self, current: &Current) -> Result<(), KeyError> {
        self.cache.replay_now(current, &self.config.load)
    }

    /// A streamed response's trailers, for a request that carried `sent`: a rejection there
    /// came after the response went back, so nothing is replayed, but the key is reloaded
    /// (shared with every other request it was rejected for) so the next call sends the new
    /// one. Nothing happens when a newer key is already in the cache.
    pub(crate) fn trailers(&self, sent: &HeaderValue, trailers: &HeaderMap) {
        if !self.is_rejection(StatusCode::OK, trailers) {
            return;
        }
        let Some(current) = self.cache.current() else {
            return;
        };
        if current.key.header_value() != sent {
            return; // a newer key, or the caller's own header
        }
        tracing::debug!(
            fingerprint = current.key.fingerprint(),
            "key rejected in a streamed response's trailers; reloading it for the next call"
        );
        // Runs as a task of its own: dropping its outcome does not cancel it. Its rotation is
        // reported as one after a rejection; there is no replay to report.
        drop(self.reject(current.generation));
    }
}

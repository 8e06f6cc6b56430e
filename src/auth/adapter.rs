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
use tokio::time::Instant;

use super::layer::BearerAuthLayer;
use super::scope::{LoopbackMemo, ScopeError};
use super::state::Config;
use crate::cache::{detached, Current, KeyCache, KeyHandle, LoadFuture};
use crate::event::{KeyEvent, Replay, ReplaySkip, SkipReason};
use crate::KeyError;

/// A layer's key cache and options, for an adapter.
#[derive(Debug)]
pub(crate) struct Adapter {
    cache: Arc<KeyCache>,
    config: Arc<Config>,
}

/// The key to send now, or the load to wait for.
pub(crate) enum KeyNow {
    Ready(Arc<Current>),
    Wait(LoadFuture),
    Failed(KeyError),
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

    /// The key for a request now, as `BearerAuth::call_slow` decides it: the first load, a
    /// due refresh (by one request; the others keep the current key), an expired key waiting
    /// for that refresh, or failing at once while its refresh backs off.
    pub(crate) fn key_now(&self) -> KeyNow {
        let cache = &self.cache;
        let settings = &self.config.load;
        let Some(current) = cache.current() else {
            return KeyNow::Wait(detached(cache.clone().load_first(settings.clone())));
        };
        let now = Instant::now();
        let expired = current.is_expired(now);
        if !current.is_due(now) {
            if expired {
                return KeyNow::Failed(cache.expired(&current, settings, now));
            }
            cache.ensure_timer(&current, now);
        } else if let Some(claim) = cache.claim_refresh() {
            return KeyNow::Wait(detached(claim.refresh(settings.clone())));
        } else if expired {
            return KeyNow::Wait(detached(cache.clone().refresh(settings.clone())));
        }
        KeyNow::Ready(current)
    }

    /// The key a load gave, unless it expired meanwhile (a failed refresh gives the old key
    /// back, to be sent only while it lives).
    pub(crate) fn loaded(
        &self,
        loaded: Result<Arc<Current>, KeyError>,
    ) -> Result<Arc<Current>, KeyError> {
        let current = loaded?;
        let now = Instant::now();
        if current.is_expired(now) {
            return Err(self.cache.expired(&current, &self.config.load, now));
        }
        Ok(current)
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

    /// The key to replay with after the reload, as `Sent::into_replay` decides it for a body
    /// that can always be had again: none when replays are off, the reload failed, the key
    /// expired, or it is the key just rejected; each but the first reported as a skip.
    pub(crate) fn replay_key(
        &self,
        generation: u64,
        reloaded: Result<Arc<Current>, KeyError>,
    ) -> Option<Arc<Current>> {
        let current = match reloaded {
            Ok(current) => current,
            Err(err) => {
                tracing::warn!(error = %err, "key reload after a rejection failed; returning the rejection");
                return self.skip(SkipReason::ReloadFailed);
            }
        };
        if !self.config.retry_on_unauthorized {
            return None;
        }
        if current.is_expired(Instant::now()) {
            tracing::debug!("rejection not replayed: the reloaded key has expired");
            return self.skip(SkipReason::KeyExpired);
        }
        if !self.cache.is_new_key(generation, &current) {
            return self.skip(SkipReason::SameKey);
        }
        let fingerprint = current.key.fingerprint();
        tracing::debug!(fingerprint, "replaying after a rejection");
        self.cache.count_replay();
        let replay = Replay {
            fingerprint: fingerprint.to_owned(),
        };
        self.cache
            .emit(&self.config.load, &KeyEvent::Replayed(replay));
        Some(current)
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

    fn skip<T>(&self, reason: SkipReason) -> Option<T> {
        let skip = KeyEvent::ReplaySkipped(ReplaySkip { reason });
        self.cache.emit(&self.config.load, &skip);
        None
    }
}

use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower::BoxError;
use tower_service::Service;

use super::future::{ResponseFuture, Sent};
use super::scope::Scope;
use crate::cache::{Current, KeyCache};
use crate::replay::ReplayCopy;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) scope: Scope,
    pub(crate) override_existing: bool,
    pub(crate) retry_on_unauthorized: bool,
}

/// What one service and its response futures share. One per clone of [`BearerAuth`], so the
/// reference count that every request touches is never contended between clones.
pub(crate) struct Shared<S> {
    pub(crate) cache: Arc<KeyCache>,
    pub(crate) config: Arc<Config>,
    /// A clone of the inner service for replays, taken on the first slow-path call.
    replay_service: Mutex<Option<S>>,
}

impl<S: Clone> Shared<S> {
    pub(crate) fn replay_service(&self) -> Option<S> {
        self.replay_service.lock().ok()?.clone()
    }
}

/// This clone's copy of the current header. Its own allocation, so its reference count is
/// touched by this clone's requests only.
struct LocalKey {
    epoch: u64,
    generation: u64,
    header: Option<HeaderValue>,
    /// Set when no runtime timer marks the key due: check the clock per request.
    due_at: Option<Instant>,
}

impl LocalKey {
    const EMPTY: LocalKey = LocalKey {
        epoch: u64::MAX,
        generation: 0,
        header: None,
        due_at: None,
    };

    #[inline(always)]
    fn usable(&self, epoch: u64) -> Option<&HeaderValue> {
        if self.epoch != epoch {
            return None;
        }
        if let Some(at) = self.due_at {
            if Instant::now() >= at {
                return None;
            }
        }
        self.header.as_ref()
    }

    fn update(&mut self, epoch: u64, current: &Current) {
        if self.generation != current.generation || self.header.is_none() {
            let source = current.key.header_value();
            // A buffer with room to spare becomes a `Bytes` of the plain shared kind at once
            // (one exactly full would be "promotable": each clone would first check its kind,
            // and the first would convert it), so a request's clone is one reference count.
            let mut buf = Vec::with_capacity(source.len() + 1);
            buf.extend_from_slice(source.as_bytes());
            let mut own =
                HeaderValue::from_maybe_shared(Bytes::from(buf)).unwrap_or_else(|_| source.clone());
            own.set_sensitive(true);
            self.header = Some(own);
            self.generation = current.generation;
        }
        self.epoch = epoch;
        self.due_at = if current.needs_clock {
            current.refresh_at
        } else {
            None
        };
    }
}

/// The service made by [`BearerAuthLayer`](crate::BearerAuthLayer).
///
/// `Clone` when `S` is; clones share the layer's key cache.
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Shared<S>>,
    local: LocalKey,
}

impl<S> BearerAuth<S> {
    pub(crate) fn new(inner: S, cache: Arc<KeyCache>, config: Arc<Config>) -> Self {
        BearerAuth {
            inner,
            shared: Arc::new(Shared {
                cache,
                config,
                replay_service: Mutex::new(None),
            }),
            local: LocalKey::EMPTY,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    B: 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let config = &*shared.config;
        if let Err(refused) = config.scope.check(&req) {
            return ResponseFuture::failed(refused.into());
        }
        // `is_empty` is inline; `contains_key` is a call: most requests skip it.
        if !req.headers().is_empty()
            && !config.override_existing
            && req.headers().contains_key(AUTHORIZATION)
        {
            return ResponseFuture::sending(self.inner.call(req), None);
        }
        let epoch = shared.cache.epoch();
        let Some(header) = self.local.usable(epoch) else {
            return self.call_slow(req, epoch);
        };
        // Built in the order the future holds them, each written once, so the request and the
        // replay copy are not moved through temporaries.
        let copy = if config.retry_on_unauthorized {
            ReplayCopy::of(&req)
        } else {
            None
        };
        req.headers_mut().insert(AUTHORIZATION, header.clone());
        let sent = Sent::new(self.shared.clone(), self.local.generation, copy);
        ResponseFuture::sending(self.inner.call(req), Some(sent))
    }
}

impl<S: Clone> BearerAuth<S> {
    fn send<B: 'static>(
        &mut self,
        mut req: Request<B>,
        header: HeaderValue,
        generation: u64,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        let copy = replay_copy(&self.shared.config, &req);
        req.headers_mut().insert(AUTHORIZATION, header);
        let sent = Sent::new(self.shared.clone(), generation, copy);
        ResponseFuture::sending(self.inner.call(req), Some(sent))
    }

    #[cold]
    fn call_slow<B: 'static>(&mut self, req: Request<B>, epoch: u64) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        if let Ok(mut slot) = self.shared.replay_service.lock() {
            if slot.is_none() {
                *slot = Some(self.inner.clone());
            }
        }
        let cache = self.shared.cache.clone();
        match cache.current() {
            Some(current) => {
                if current.is_due(Instant::now()) && cache.claim_refresh() {
                    // This request refreshes; every other one keeps the current key meanwhile.
                    return self.call_after_load(req, Box::pin(cache.refresh()));
                }
                self.local.update(epoch, &current);
                let header = self
                    .local
                    .header
                    .clone()
                    .unwrap_or_else(|| current.key.header_value().clone());
                self.send(req, header, current.generation)
            }
            None => self.call_after_load(req, Box::pin(cache.load_first())),
        }
    }

    fn call_after_load<B: 'static>(
        &mut self,
        req: Request<B>,
        load: crate::cache::LoadFuture,
    ) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        // The inner service was made ready by `poll_ready`; take that one, leave a clone.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::loading(load, ready, req, self.shared.clone())
    }
}

impl<S: Clone> Clone for BearerAuth<S> {
    fn clone(&self) -> Self {
        BearerAuth {
            inner: self.inner.clone(),
            shared: Arc::new(Shared {
                cache: self.shared.cache.clone(),
                config: self.shared.config.clone(),
                replay_service: Mutex::new(None),
            }),
            local: LocalKey::EMPTY,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("cache", &self.shared.cache)
            .field("config", &self.shared.config)
            .finish()
    }
}

/// The copy a 401 replay needs, taken before the header goes on the request.
pub(crate) fn replay_copy<B: 'static>(config: &Config, req: &Request<B>) -> Option<ReplayCopy<B>> {
    if config.retry_on_unauthorized {
        ReplayCopy::of(req)
    } else {
        None
    }
}

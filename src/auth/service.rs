use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower::BoxError;
use tower_service::Service;

use super::future::{send_with_key, ResponseFuture};
use super::scope::LoopbackMemo;
use super::state::{CloneState, Config};
use crate::cache::{alarm_running, Current, KeyCache, KeyNow};

/// This clone's copy of the current header. Once the clone has its own [`CloneState`], its own
/// allocation, so its reference count is touched by this clone's requests only.
#[derive(Clone)]
struct HeaderCopy {
    epoch: u64,
    generation: u64,
    header: Option<HeaderValue>,
    /// What the copy checks against the clock before each request; nothing for most keys.
    clock: Option<ClockCheck>,
}

/// The clock reads a copy of a key needs before each request: none for a key with neither a
/// refresh point nor an expiry (env, static), nor, while the alarm thread runs, for a key with
/// a refresh point only (a file's).
#[derive(Clone, Copy)]
struct ClockCheck {
    /// When the key falls due (its refresh point, or its hard expiry if earlier), read only
    /// when the alarm thread is not running. The epoch moves then: the cache's timer moves it,
    /// but a timer lives on one runtime, which may be gone or no longer driven; the alarm
    /// thread (`cache/alarm.rs`) moves it too, on no runtime at all. Without that thread the
    /// clock bounds how stale a key can get by time, whatever the traffic.
    due_at: Option<Instant>,
    /// The key's hard expiry by the wall clock: the monotonic clock (the alarm's, the timer's)
    /// stands still while the host is suspended, an expiry does not.
    expiry: Option<SystemTime>,
}

impl ClockCheck {
    fn of(current: &Current) -> Option<ClockCheck> {
        let due_at = if alarm_running() {
            None
        } else {
            current.usable_until()
        };
        let expiry = current.key.expiry();
        (due_at.is_some() || expiry.is_some()).then_some(ClockCheck { due_at, expiry })
    }

    /// Whether the key fell due or expired.
    #[inline(never)]
    fn passed(&self) -> bool {
        self.due_at.is_some_and(|at| Instant::now() >= at)
            || self.expiry.is_some_and(|at| SystemTime::now() >= at)
    }
}

impl HeaderCopy {
    const EMPTY: HeaderCopy = HeaderCopy {
        epoch: u64::MAX,
        generation: 0,
        header: None,
        clock: None,
    };

    #[inline(always)]
    fn usable(&self, epoch: u64) -> Option<&HeaderValue> {
        if self.epoch != epoch || self.clock.is_some_and(|clock| clock.passed()) {
            return None;
        }
        self.header.as_ref()
    }

    fn update(&mut self, epoch: u64, current: &Current, own: bool) {
        if !own {
            // A borrowing clone, maybe for one request: the cache's header, by reference count.
            self.header = Some(current.key.header_value().clone());
            self.generation = current.generation;
        } else if self.generation != current.generation || self.header.is_none() {
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
        self.clock = ClockCheck::of(current);
    }
}

/// The service made by [`BearerAuthLayer`](crate::BearerAuthLayer).
///
/// # Clone
///
/// `Clone` when `S` is. Clones share the layer's key cache (the key, its refresh, the single
/// flight of loads) and its options and hooks. Each clone has its own copy of the header and,
/// after its first few requests, its own per-clone state, so long-lived clones on different
/// threads touch no common reference count per request; a clone made for one request
/// (`clone().oneshot(..)`) borrows its parent's and allocates nothing.
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<CloneState<S>>,
    local: HeaderCopy,
    /// The plain-http loopback authority this clone's scope approved last.
    loopback: LoopbackMemo,
    /// Requests left before this clone stops borrowing its parent's [`CloneState`] and header and
    /// makes its own; 0 once it has them. A clone made for one request (`clone().oneshot()`)
    /// so costs no allocation; a long-lived one soon stops sharing reference counts.
    borrowing: u32,
}

/// Requests a clone sends on its parent's [`CloneState`] and header before making its own.
const BORROW_FOR: u32 = 8;

impl<S> BearerAuth<S> {
    pub(crate) fn new(inner: S, cache: Arc<KeyCache>, config: Arc<Config>) -> Self {
        BearerAuth {
            inner,
            shared: Arc::new(CloneState::new(cache, config)),
            local: HeaderCopy::EMPTY,
            loopback: LoopbackMemo::default(),
            borrowing: 0,
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
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
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
        if self.borrowing != 0 {
            self.count_borrowed();
        }
        let shared = &*self.shared;
        let config = &*shared.config;
        // The caller's own header: the layer's key is not involved, so neither is its scope.
        // `is_empty` is inline; `contains_key` is a call: most requests skip it.
        if !req.headers().is_empty()
            && !config.override_existing
            && req.headers().contains_key(AUTHORIZATION)
        {
            return ResponseFuture::sending(self.inner.call(req), None);
        }
        if let Err(refused) = config.scope.check_with(&req, &mut self.loopback) {
            return ResponseFuture::failed(refused.into());
        }
        let epoch = shared.epoch.get();
        let Some(header) = self.local.usable(epoch).cloned() else {
            return self.call_slow(req, epoch);
        };
        send_with_key!(self.inner, &self.shared, req, header, self.local.generation)
    }
}

impl<S: Clone> BearerAuth<S> {
    #[cold]
    fn call_slow<B: 'static>(&mut self, mut req: Request<B>, epoch: u64) -> ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        self.shared.keep_replay_service(&self.inner);
        let cache = self.shared.cache.clone();
        match cache.key_now(&self.shared.config.load) {
            KeyNow::Wait(load) => self.call_after_load(req, load),
            KeyNow::Failed(err) => ResponseFuture::failed(err.into()),
            KeyNow::Ready(current) => {
                self.local.update(epoch, &current, self.borrowing == 0);
                let header = self
                    .local
                    .header
                    .clone()
                    .unwrap_or_else(|| current.key.header_value().clone());
                send_with_key!(self.inner, &self.shared, req, header, current.generation)
            }
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

impl<S> BearerAuth<S> {
    /// One more request on the parent's [`CloneState`]; at the last, this clone makes its own.
    #[cold]
    fn count_borrowed(&mut self) {
        self.borrowing -= 1;
        if self.borrowing == 0 {
            self.shared = Arc::new(CloneState::new(
                self.shared.cache.clone(),
                self.shared.config.clone(),
            ));
            // The next call takes the slow path once: its own header, its own replay service.
            self.local = HeaderCopy::EMPTY;
        }
    }
}

impl<S: Clone> Clone for BearerAuth<S> {
    /// A clone shares the key cache. Cloning allocates nothing: a clone starts on its parent's
    /// state and copy of the header, and makes its own after a few requests, so long-lived
    /// clones on different threads share no reference count.
    fn clone(&self) -> Self {
        let mut local = self.local.clone();
        let cache = &self.shared.cache;
        let epoch = self.shared.epoch.get();
        if local.epoch != epoch || local.header.is_none() {
            // The parent never sent a request (a template, cloned for each one) or its copy is
            // stale: take the cache's key, so the clone's request takes the hot path. The
            // epoch is read first: a key stored meanwhile leaves the copy stale, not wrong.
            // A key that fell due is left to the clone's first request (the slow path): the
            // epoch moved for that very reason, and only the clock tells.
            let current = cache.current().filter(|current| {
                let now = Instant::now();
                !current.is_due(now) && !current.is_expired(now)
            });
            if let Some(current) = current {
                local = HeaderCopy {
                    epoch,
                    generation: current.generation,
                    header: Some(current.key.header_value().clone()),
                    clock: ClockCheck::of(&current),
                };
            }
        }
        // Replays need a service; the parent may never have taken one.
        self.shared.keep_replay_service(&self.inner);
        BearerAuth {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            local,
            loopback: self.loopback,
            borrowing: BORROW_FOR,
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

#[cfg(test)]
mod tests;

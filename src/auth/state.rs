//! What a clone of the service and its response futures share, and the one path by which a
//! request leaves the layer with the key on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::header::AUTHORIZATION;
use http::{Request, Response};

use super::rejection::Rejections;
use super::scope::Scope;
use crate::cache::{detached, Current, Epoch, KeyCache, LoadFuture, LoadSettings};
use crate::event::SkipReason;
use crate::replay::ReplayCopy;
use crate::KeyError;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) scope: Scope,
    pub(crate) override_existing: bool,
    pub(crate) retry_on_unauthorized: bool,
    /// Which responses mean the key was rejected.
    pub(crate) rejections: Rejections,
    /// The source can give no other key ([`KeySource::is_static`](crate::KeySource::is_static)):
    /// a 401 is not the layer's business, and no request is kept for a replay.
    pub(crate) static_key: bool,
    /// Hooks and the load timeout; here, not in the shared cache, so that setting them on a
    /// clone of a layer leaves the original alone.
    pub(crate) load: Arc<LoadSettings>,
}

/// What one clone of [`BearerAuth`](crate::BearerAuth) and its response futures share.
///
/// Invariants, for the state of a clone (this, and `HeaderCopy` and `borrowing` in
/// `service.rs`):
///
/// - One `CloneState` per long-lived clone: every request clones its `Arc` (into [`Sent`]), so
///   clones on different threads must not share one. A fresh clone borrows its parent's for
///   its first `BORROW_FOR` requests (a clone per request then costs no allocation), then makes
///   its own; only `BearerAuth::count_borrowed` replaces it.
/// - `cache` and `config` are the layer's, never changed: a layer setter makes a new `Config`.
/// - `replay_service` is written once, by the clone's first slow path or first `clone()`, under
///   its lock; `has_replay_service` is set after, so a reader that sees it set finds it there.
/// - The clone's `HeaderCopy` is a copy of the cache's header as of the cache's `epoch`: it is
///   used only while the epoch has not moved (the timer and the alarm thread move it when the
///   key falls due) and, for a key with an expiry, while the wall clock says it has not
///   expired. Without the alarm thread, the clock is read for a key with a refresh point too.
///
/// Aligned (and so sized) to two cache lines: the reference count every request of a clone
/// touches never shares a line with another clone's, whatever the allocator puts next to it.
#[repr(align(128))]
pub(crate) struct CloneState<S> {
    pub(crate) cache: Arc<KeyCache>,
    /// The cache's epoch, read by every request: held here, one pointer away like the cache.
    pub(crate) epoch: Arc<Epoch>,
    pub(crate) config: Arc<Config>,
    /// A clone of the inner service for replays, taken on the first slow-path call (or the
    /// first clone).
    replay_service: Mutex<Option<S>>,
    /// `replay_service` is set: no lock to take to check.
    has_replay_service: AtomicBool,
}

impl<S> CloneState<S> {
    pub(super) fn new(cache: Arc<KeyCache>, config: Arc<Config>) -> Self {
        CloneState {
            epoch: cache.epoch_cell(),
            cache,
            config,
            replay_service: Mutex::new(None),
            has_replay_service: AtomicBool::new(false),
        }
    }
}

impl<S: Clone> CloneState<S> {
    pub(crate) fn replay_service(&self) -> Option<S> {
        self.replay_service.lock().ok()?.clone()
    }

    pub(super) fn keep_replay_service(&self, inner: &S) {
        if self.has_replay_service.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut slot) = self.replay_service.lock() {
            if slot.is_none() {
                *slot = Some(inner.clone());
            }
            self.has_replay_service.store(true, Ordering::Release);
        }
    }
}

/// What a sent request needs to handle a 401: which key it carried and, when it can be
/// replayed, a copy of itself. Kept small: it lives in every response future.
pub(crate) struct Sent<S, B> {
    state: Arc<CloneState<S>>,
    generation: u64,
    copy: Option<ReplayCopy<B>>,
    /// The layer's, copied here so that checking a response reads the future, not the config.
    rejections: Rejections,
}

impl<S, B> Sent<S, B> {
    #[inline(always)]
    pub(crate) fn new(
        state: Arc<CloneState<S>>,
        generation: u64,
        copy: Option<ReplayCopy<B>>,
    ) -> Self {
        let rejections = state.config.rejections;
        Sent {
            state,
            generation,
            copy,
            rejections,
        }
    }
}

impl<S, B> Sent<S, B> {
    /// Tells the cache the key this request carried was rejected; resolves to the key to use
    /// now (a new one, or the same when the source has no other).
    pub(super) fn reload(&self) -> LoadFuture {
        let state = &self.state;
        let cache = state.cache.clone();
        detached(cache.reject(self.generation, state.config.load.clone()))
    }
}

impl<S: Clone, B: 'static> Sent<S, B> {
    /// The replay to send after a reload, if there is one: a new key, a body that can be had
    /// again, and a service to send it with.
    pub(super) fn into_replay(
        self,
        reloaded: Result<Arc<Current>, KeyError>,
    ) -> Option<Replay<S, B>> {
        if !self.state.config.retry_on_unauthorized {
            // The reload was for later requests; this one was never to be replayed.
            return None;
        }
        let body_replayable = self.copy.as_ref().is_some_and(ReplayCopy::can_replay);
        let (cache, settings) = (&self.state.cache, &self.state.config.load);
        let current = cache.replay_key(settings, self.generation, reloaded, body_replayable)?;
        let service = self.state.replay_service()?;
        let Some(mut copy) = self.copy.and_then(|copy| copy.into_request()) else {
            tracing::warn!("401 not replayed: the request head did not parse back");
            cache.replay_skipped(settings, SkipReason::CopyUnusable);
            return None;
        };
        // The copy is the request as it was checked, packed and parsed back; checked again
        // before a new key goes on it, so that no packing slip can send a key off scope.
        if let Err(refused) = self.state.config.scope.check(&copy) {
            tracing::warn!(error = %refused, "401 not replayed: the copy is out of scope");
            cache.replay_skipped(settings, SkipReason::CopyUnusable);
            return None;
        }
        copy.headers_mut()
            .insert(AUTHORIZATION, current.key.header_value().clone());
        Some(Replay {
            service,
            req: copy,
            current,
            state: self.state,
        })
    }
}

/// A replay waiting for its service to be ready: sent only if its key is still good then.
pub(crate) struct Replay<S, B> {
    pub(super) service: S,
    req: Request<B>,
    current: Arc<Current>,
    state: Arc<CloneState<S>>,
}

impl<S, B> Replay<S, B> {
    /// The ready service and the request to send with it, counted and reported as replayed;
    /// an error instead if its key expired while the service was not ready.
    pub(super) fn into_parts(self) -> (S, Result<Request<B>, KeyError>, ReplayWatch) {
        let (cache, settings) = (&self.state.cache, &self.state.config.load);
        let watch = ReplayWatch {
            cache: cache.clone(),
            generation: self.current.generation,
            rejections: self.state.config.rejections,
        };
        let req = cache.replay_now(&self.current, settings).map(|()| self.req);
        (self.service, req, watch)
    }
}

/// What a replay in flight tells the cache about its answer: a rejection of the key it was
/// replayed with backs off reloads for that key (see `KeyCache::replay_answered`).
pub(crate) struct ReplayWatch {
    cache: Arc<KeyCache>,
    generation: u64,
    rejections: Rejections,
}

impl ReplayWatch {
    pub(super) fn answered<R>(&self, response: &Response<R>) {
        let rejected = self.rejections.matches(response);
        self.cache.replay_answered(self.generation, rejected);
    }
}

/// Whether `response` is the layer's to handle: a rejection (401 by default; see
/// `BearerAuthLayer::rejected_when`) of the key it sent (not of the caller's own header, for
/// which nothing was kept).
#[inline(always)]
pub(crate) fn is_ours<S, B, R>(response: &Response<R>, sent: &Option<Sent<S, B>>) -> bool {
    sent.as_ref()
        .is_some_and(|sent| sent.rejections.matches(response))
}

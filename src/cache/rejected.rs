//! The replay after a rejection, as the cache sees it: whether there is a key to replay with,
//! the replay counted and reported when it is sent, and replays the server rejected too.
//!
//! Replays the server rejected too. A source that hands out a new key at every load (a token
//! endpoint) never gives "the same key back", so a server that rejects every key (a wrong
//! audience, a revoked client) would turn each request into a reload and a replay. Two replays
//! in a row rejected (with no replay accepted between) start a backoff: until it ends, a
//! rejection of the last key reloads nothing. One alone does not: a second rotation while the
//! request was in flight rejects a replay too, and the next reload is what heals it.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::schedule::{backoff, deadline};
use super::{Current, KeyCache, LoadSettings};
use crate::event::{KeyEvent, Replay, ReplaySkip, SkipReason};
use crate::KeyError;

/// The last rejected replay: the generation of its key, until when reloads for that key wait
/// (once the run is long enough), and how many replays in a row were rejected.
#[derive(Default)]
pub(super) struct RejectedReplays(Mutex<Option<(u64, Option<Instant>, u32)>>);

/// Rejected replays in a row that start the backoff.
const RUN_TO_BACK_OFF: u32 = 2;

impl KeyCache {
    /// The key to replay a request with after the key of `generation` was rejected and
    /// reloaded: none (each reported as a skip) when the reload failed, the request's body
    /// cannot be sent again, the reloaded key has expired, or it is the key just rejected.
    pub(crate) fn replay_key(
        &self,
        settings: &LoadSettings,
        generation: u64,
        reloaded: Result<Arc<Current>, KeyError>,
        body_replayable: bool,
    ) -> Option<Arc<Current>> {
        let skip = |reason| {
            self.replay_skipped(settings, reason);
            None
        };
        let current = match reloaded {
            Ok(current) => current,
            Err(err) => {
                tracing::warn!(error = %err, "key reload after a rejection failed; not replayed");
                return skip(SkipReason::ReloadFailed);
            }
        };
        if !body_replayable {
            tracing::debug!(
                "rejection not replayed: the request body cannot be sent again (a body type \
                 that cannot be copied, or a ReplayableBody past its cap: see ReplayableBody)"
            );
            return skip(SkipReason::BodyNotReplayable);
        }
        if current.is_expired(Instant::now()) {
            tracing::debug!("rejection not replayed: the reloaded key has expired");
            return skip(SkipReason::KeyExpired);
        }
        if !self.is_new_key(generation, &current) {
            // The key that was just rejected: replaying would only be rejected again.
            return skip(SkipReason::SameKey);
        }
        Some(current)
    }

    /// A replay with a key from [`KeyCache::replay_key`] is not sent after all: reported.
    pub(crate) fn replay_skipped(&self, settings: &LoadSettings, reason: SkipReason) {
        self.emit(settings, &KeyEvent::ReplaySkipped(ReplaySkip { reason }));
    }

    /// A replay with `current` is about to be sent (its service is ready): counted and
    /// reported, or, when its key expired while the service was not ready, an error instead.
    pub(crate) fn replay_now(
        &self,
        current: &Current,
        settings: &LoadSettings,
    ) -> Result<(), KeyError> {
        let now = Instant::now();
        if current.is_expired(now) {
            return Err(self.expired(current, settings, now));
        }
        let fingerprint = current.key.fingerprint();
        tracing::debug!(fingerprint, "replaying after 401");
        self.count_replay();
        let replayed = Replay {
            fingerprint: fingerprint.to_owned(),
        };
        self.emit(settings, &KeyEvent::Replayed(replayed));
        Ok(())
    }

    /// The replay sent with the key of `generation` got its answer: `rejected` by the server
    /// again, or not (which ends the run).
    pub(crate) fn replay_answered(&self, generation: u64, rejected: bool) {
        let Ok(mut last) = self.rejected_replays.0.lock() else {
            return;
        };
        if !rejected {
            *last = None;
            return;
        }
        let run = last.map_or(0, |(_, _, run)| run).saturating_add(1);
        let until = match run >= RUN_TO_BACK_OFF {
            true => deadline(Instant::now(), backoff(run - RUN_TO_BACK_OFF)),
            false => None,
        };
        *last = Some((generation, until, run));
        tracing::warn!(
            rejected_in_a_row = run,
            backing_off = until.is_some(),
            "the server rejected the replay with a freshly loaded key too"
        );
    }

    /// Whether a rejection of the key of `generation` must wait for the backoff of a rejected
    /// replay instead of reloading.
    pub(super) fn replay_backoff_holds(&self, generation: u64, now: Instant) -> bool {
        self.rejected_replays
            .0
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|(held, until, _)| held == generation && until.is_some_and(|t| now < t))
    }
}

//! Replays the server rejected too. A source that hands out a new key at every load (a token
//! endpoint) never gives "the same key back", so a server that rejects every key (a wrong
//! audience, a revoked client) would turn each request into a reload and a replay. Two replays
//! in a row rejected (with no replay accepted between) start a backoff: until it ends, a
//! rejection of the last key reloads nothing. One alone does not: a second rotation while the
//! request was in flight rejects a replay too, and the next reload is what heals it.

use std::sync::Mutex;

use tokio::time::Instant;

use super::schedule::{backoff, deadline};
use super::KeyCache;

/// The last rejected replay: the generation of its key, until when reloads for that key wait
/// (once the run is long enough), and how many replays in a row were rejected.
#[derive(Default)]
pub(super) struct RejectedReplays(Mutex<Option<(u64, Option<Instant>, u32)>>);

/// Rejected replays in a row that start the backoff.
const RUN_TO_BACK_OFF: u32 = 2;

impl KeyCache {
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

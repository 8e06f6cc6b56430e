//! The timer that marks a key due at its refresh point and its expiry, and what happens when
//! it cannot run.
//!
//! The timer is a task on the runtime of whoever stored the key, and follows tokio's clock
//! (which tests pause and advance). That runtime may go away (a warm-up runtime, one per test)
//! or stop being driven; so the timer is a help, not the rule: a timer dropped before it fired
//! gives its slot back and moves the epoch, so every service looks again and the next slow
//! path arms a new one on its own runtime; and the alarm thread (`alarm.rs`) moves the epoch
//! at the same points on no runtime at all.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, Weak};

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::KeyCache;

/// The armed timer, if any: its id (so a dropped timer frees only its own slot) and its task.
#[derive(Default)]
pub(super) struct TimerSlot {
    armed: Mutex<Option<(u64, AbortHandle)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl TimerSlot {
    /// Arms a timer that moves `cache`'s epoch at each of `deadlines` (earliest first),
    /// replacing the one armed before (none when there is no runtime here: the alarm thread
    /// still moves it).
    pub(super) fn arm(&self, cache: &Weak<KeyCache>, deadlines: [Option<Instant>; 2]) {
        let handle = deadlines[0].and_then(|_| tokio::runtime::Handle::try_current().ok());
        let armed = handle.map(|handle| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut guard = Guard {
                cache: cache.clone(),
                id,
                fired: false,
            };
            let task = handle.spawn(async move {
                for at in deadlines.into_iter().flatten() {
                    tokio::time::sleep_until(at).await;
                    if let Some(cache) = guard.cache.upgrade() {
                        cache.bump_epoch();
                    }
                }
                guard.fired = true;
                if let Some(cache) = guard.cache.upgrade() {
                    cache.timer.disarm(guard.id);
                }
            });
            (id, task.abort_handle())
        });
        if let Ok(mut slot) = self.armed.lock() {
            if let Some((_, old)) = std::mem::replace(&mut *slot, armed) {
                old.abort();
            }
        }
    }

    /// Whether a timer is armed and has not been dropped.
    pub(super) fn is_armed(&self) -> bool {
        self.armed.lock().map(|slot| slot.is_some()).unwrap_or(true)
    }

    /// Frees the slot if timer `id` still holds it. Returns whether it did.
    fn disarm(&self, id: u64) -> bool {
        let Ok(mut slot) = self.armed.lock() else {
            return false;
        };
        if slot.as_ref().is_some_and(|(armed, _)| *armed == id) {
            *slot = None;
            return true;
        }
        false
    }

    pub(super) fn abort(&mut self) {
        if let Some((_, task)) = self.armed.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Lives in the timer task: dropped without having fired (its runtime shut down), it frees the
/// slot and makes every service look again, so one of them arms a timer on a live runtime.
struct Guard {
    cache: Weak<KeyCache>,
    id: u64,
    fired: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.fired {
            return;
        }
        if let Some(cache) = self.cache.upgrade() {
            if cache.timer.disarm(self.id) {
                cache.bump_epoch();
            }
        }
    }
}

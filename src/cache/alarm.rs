//! The alarm: one thread per process that moves a cache's epoch when its key falls due.
//!
//! Services send their copy of the header while the cache's epoch has not moved, so something
//! must move it at the key's refresh point (or expiry) even with no load in sight. The refresh
//! timer (`timer.rs`) is a task on the runtime that stored the key, and that runtime may be
//! gone, or kept and never driven again (a warm-up runtime in a struct). Reading the clock on
//! every request bounds the staleness whatever the runtimes do, but a clock read is most of
//! what a rotating source costs per request. This thread bounds it by time instead: it
//! depends on no runtime and sleeps until the earliest deadline. It holds each cache's
//! [`Epoch`], an allocation of its own, never the cache: so it never drops a cache, and never
//! runs a source's `Drop` (user code, which may block or panic) on the one thread every cache
//! relies on. The timer stays, for tokio's clock (which tests pause and advance); both moving
//! the epoch at the same point costs one extra slow path.
//!
//! If the thread cannot be started (a target without threads), ever dies, or is not in this
//! process (a child after `fork`, which copies the memory but not the thread: noticed when the
//! child next stores a key), [`running`] says so and services read the clock per request
//! again.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// A cache's epoch: moves whenever its key is replaced, falls due, or a refresh claim is given
/// back; services hold the value they saw. In an allocation of its own, shared with the alarm.
#[derive(Default)]
pub(crate) struct Epoch {
    value: AtomicU64,
    /// Counts the deadlines set: only those set last fire.
    ticket: AtomicU64,
}

impl Epoch {
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    pub(crate) fn bump(&self) {
        self.value.fetch_add(1, Ordering::AcqRel);
    }

    /// Moves the epoch at each of `deadlines`, instead of whatever was asked before; none
    /// cancels. Returns whether the alarm thread runs.
    pub(super) fn alarm_at(self: &Arc<Self>, deadlines: [Option<tokio::time::Instant>; 2]) -> bool {
        let ticket = self.ticket.fetch_add(1, Ordering::AcqRel) + 1;
        let Some(alarm) = alarm() else {
            return false;
        };
        for at in deadlines.into_iter().flatten() {
            alarm.push(Entry {
                at: at.into_std(),
                ticket,
                epoch: self.clone(),
            });
        }
        true
    }

    /// Voids the deadlines set (the cache is gone): the queue sheds them as it grows.
    pub(super) fn cancel_alarm(&self) {
        self.ticket.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether the alarm thread runs: a service may then trust the epoch alone to tell it when its
/// copy of a key with a refresh point went stale.
#[inline]
pub(crate) fn running() -> bool {
    #[cfg(test)]
    if STOPPED_HERE.with(std::cell::Cell::get) {
        return false;
    }
    matches!(ALARM.get(), Some(Some(alarm)) if alarm.alive.load(Ordering::Acquire))
}

#[cfg(test)]
thread_local! {
    /// A test of the clock fallback pretends, on its thread, that the alarm does not run.
    static STOPPED_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static ALARM: OnceLock<Option<&'static Alarm>> = OnceLock::new();

fn alarm() -> Option<&'static Alarm> {
    let alarm = (*ALARM.get_or_init(Alarm::start))?;
    if alarm.pid != std::process::id() {
        alarm.orphaned();
    }
    alarm.alive.load(Ordering::Acquire).then_some(alarm)
}

struct Entry {
    at: Instant,
    ticket: u64,
    epoch: Arc<Epoch>,
}

impl Entry {
    fn is_void(&self) -> bool {
        self.epoch.ticket.load(Ordering::Acquire) != self.ticket
    }
}

// A min-heap on the deadline.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}

struct Alarm {
    queue: Mutex<Queue>,
    wake: Condvar,
    alive: AtomicBool,
    /// The process the thread runs in.
    pid: u32,
}

struct Queue {
    heap: BinaryHeap<Entry>,
    /// Void entries are dropped when the heap grows past this (a cache rotated often with a
    /// far deadline, or dropped, leaves its entries until they fall due otherwise).
    prune_at: usize,
}

const PRUNE_MIN: usize = 64;

impl Alarm {
    fn start() -> Option<&'static Alarm> {
        let alarm: &'static Alarm = Box::leak(Box::new(Alarm {
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                prune_at: PRUNE_MIN,
            }),
            wake: Condvar::new(),
            alive: AtomicBool::new(true),
            pid: std::process::id(),
        }));
        let spawned = std::thread::Builder::new()
            .name("tower-bearer-alarm".into())
            .spawn(move || alarm.run());
        match spawned {
            Ok(_) => Some(alarm),
            Err(err) => {
                tracing::debug!(error = %err, "no alarm thread: services read the clock per request");
                None
            }
        }
    }

    /// In a child process after `fork`: the thread stayed with the parent. Services here read
    /// the clock from now on; every cache queued gets its epoch moved so that theirs look again
    /// (unless the queue was locked when the process forked: then it stays locked).
    #[cold]
    fn orphaned(&self) {
        if self.alive.swap(false, Ordering::AcqRel) {
            if let Ok(mut queue) = self.queue.try_lock() {
                std::mem::take(&mut queue.heap)
                    .into_iter()
                    .for_each(|e| e.epoch.bump());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, entry: Entry) {
        let mut queue = self.lock();
        if queue.heap.len() >= queue.prune_at {
            queue.heap.retain(|e| !e.is_void());
            queue.prune_at = (queue.heap.len() * 2).max(PRUNE_MIN);
        }
        queue.heap.push(entry);
        drop(queue);
        self.wake.notify_one();
    }

    fn run(&'static self) {
        // However this thread ends (it runs no user code; but should it panic), services go
        // back to reading the clock: every epoch it watched moves, so that their services look
        // again and see `running()` false.
        let _dying = Dying(self);
        let mut due = Vec::new();
        loop {
            let mut queue = self.lock();
            let now = Instant::now();
            while queue.heap.peek().is_some_and(|e| e.at <= now) {
                if let Some(entry) = queue.heap.pop() {
                    if !entry.is_void() {
                        due.push(entry.epoch);
                    }
                }
            }
            if !due.is_empty() {
                drop(queue);
                due.drain(..).for_each(|epoch| epoch.bump());
                continue;
            }
            // The guard comes back only to be dropped: the loop takes the lock again.
            match queue
                .heap
                .peek()
                .map(|e| e.at.saturating_duration_since(now))
            {
                Some(wait) => drop(self.wake.wait_timeout(queue, wait)),
                None => drop(self.wake.wait(queue)),
            }
        }
    }
}

struct Dying(&'static Alarm);

impl Drop for Dying {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
        let heap = std::mem::take(&mut self.0.lock().heap);
        heap.into_iter().for_each(|e| e.epoch.bump());
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http::header::AUTHORIZATION;
    use http::{Request, Response};
    use http_body_util::Full;
    use tower::{service_fn, Layer, Service, ServiceExt};

    use super::*;
    use crate::{ApiKey, BearerAuthLayer, KeyFuture, KeySource};

    /// Key `n` on the n-th load, due after 60 s.
    #[derive(Default)]
    struct Rotating(AtomicU64);

    impl KeySource for Rotating {
        fn load(&self) -> KeyFuture<'_> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                Ok(ApiKey::new(format!("sk-alarm-test-key-{n:04}"))?
                    .refresh_after(Duration::from_secs(60)))
            })
        }
    }

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Without the alarm, a service reads the clock per request: a key whose timer lives on a
    /// runtime kept idle still refreshes at its refresh point (tokio's clock, paused here).
    #[test]
    fn without_the_alarm_services_read_the_clock() {
        STOPPED_HERE.with(|stopped| stopped.set(true));
        let layer = BearerAuthLayer::new(Rotating::default());
        let inner = service_fn(|req: Request<Full<Bytes>>| {
            let token = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
            std::future::ready(Ok::<_, Infallible>(Response::new(token)))
        });
        let mut svc = layer.layer(inner);
        let req = || {
            Request::get("https://api.example/v1/x")
                .body(Full::default())
                .unwrap()
        };
        let idle = paused();
        // Two requests: the first loads, the second makes the service's copy of the header.
        for _ in 0..2 {
            let res = idle.block_on(async { svc.ready().await.unwrap().call(req()).await });
            assert!(res.unwrap().body().ends_with("0001"));
        }
        paused().block_on(async {
            tokio::time::advance(Duration::from_secs(61)).await;
            let res = svc.ready().await.unwrap().call(req()).await.unwrap();
            assert!(res.body().ends_with("0002"), "{}", res.body());
        });
        drop(idle);
        STOPPED_HERE.with(|stopped| stopped.set(false));
    }

    /// A deadline set again voids the one before, and so does a cache that goes: the queue
    /// sheds void entries as it grows instead of keeping each until it falls due.
    #[test]
    fn void_entries_do_not_pile_up() {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let kept = Arc::new(Epoch::default());
        assert!(kept.alarm_at([Some(far), None]));
        let first = alarm().unwrap().lock().heap.len();
        for _ in 0..1000 {
            let gone = Arc::new(Epoch::default());
            gone.alarm_at([Some(far), Some(far)]);
            gone.cancel_alarm();
            kept.alarm_at([Some(far), None]);
        }
        // 3000 entries pushed, 1 live (other tests' entries come and go meanwhile).
        let len = alarm().unwrap().lock().heap.len();
        assert!(len < first + 300, "{len} entries queued");
    }

    /// The thread moves the epoch at its deadline; a deadline set again voids the one before.
    #[test]
    fn a_deadline_moves_the_epoch() {
        let epoch = Arc::new(Epoch::default());
        let voided = tokio::time::Instant::now() + Duration::from_millis(5);
        assert!(epoch.alarm_at([Some(voided), None]));
        let soon = tokio::time::Instant::now() + Duration::from_millis(40);
        assert!(epoch.alarm_at([Some(soon), None]));
        let start = Instant::now();
        while epoch.get() == 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "never fired");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(epoch.get(), 1);
    }
}

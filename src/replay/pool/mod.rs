//! Spare boxes for the replay copies of requests in flight.
//!
//! A response future holds its request's replay copy (about 200 bytes) in a box, so that the
//! future itself stays small: each `.await` of a caller moves the whole future, and a copy held
//! inline made every request move it several times (a `StaticKey` layer's future too, which
//! holds no copy but had the room for one). The box comes back to the thread the future ends
//! on, and the next request there takes it: no allocation per request once a thread has sent a
//! few, and no atomic operation (a thread's spares are its own).
//!
//! Futures may end on other threads than the ones that made them: tower's `Buffer` makes them
//! on its worker and hands them to its callers, and a multi-thread runtime moves tasks. The
//! makers would then run dry while the others fill up; so a thread with no room left puts the
//! box in a process-wide overflow, which a thread with none left takes from (a lock, taken only
//! then).
//!
//! Each pooled type has spares of its own ([`Pooled`], declared with `pooled!`): a thread
//! local and an overflow per type, found at compile time, so taking a box is a borrow and a
//! `pop`, with no search by type and no downcast.
//!
//! A box is cleared before it is kept (the copy holds the request's body, user code, dropped
//! then and never while any spares are borrowed or locked). At most [`KEEP`] spares of a type
//! are kept per thread, and [`SHARED_KEEP`] in its overflow; beyond, a box is freed.

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};
use std::thread::LocalKey;

/// Spare boxes kept per thread and type, without a lock: enough for the requests a thread has
/// in flight at once in most clients. More in flight go through the overflow (a lock each),
/// which a thread that gives boxes back without taking any (a caller of tower's `Buffer`) also
/// fills once it has this many.
const KEEP: usize = 32;
/// Spare boxes kept in a type's overflow (about 240 KiB of replay copies at most).
const SHARED_KEEP: usize = 1024;

/// Cleared boxes, ready for a request.
pub(crate) type Boxes<T> = Vec<Box<T>>;

/// A type with spare boxes of its own: this thread's, and the process-wide overflow.
///
/// A kept box keeps its value, cleared: what it held of a request is dropped, but its room (an
/// inline buffer, say) stays, so that the next request writes only what it needs, in place.
pub(crate) trait Pooled: Default + Send + 'static {
    /// Drops what the value holds of a request (user code, maybe), so that nothing of it can be
    /// read back; what is left is as good as `default()`.
    fn clear(&mut self);
    /// This thread's spares.
    fn spares() -> &'static LocalKey<RefCell<Boxes<Self>>>;
    /// The overflow: boxes a thread had no room for, for a thread that has none left.
    fn overflow() -> &'static Mutex<Boxes<Self>>;
}

/// Implements [`Pooled`] for a type, with a thread local and an overflow of its own:
/// `pooled!(Type, |value| clearing of value);`.
macro_rules! pooled {
    ($t:ty, |$value:ident| $clear:expr) => {
        impl $crate::replay::pool::Pooled for $t {
            #[inline(always)]
            fn clear(&mut self) {
                let $value = self;
                $clear
            }

            fn spares() -> &'static ::std::thread::LocalKey<
                ::std::cell::RefCell<$crate::replay::pool::Boxes<$t>>,
            > {
                ::std::thread_local! {
                    static SPARES: ::std::cell::RefCell<$crate::replay::pool::Boxes<$t>> =
                        const { ::std::cell::RefCell::new(::std::vec::Vec::new()) };
                }
                &SPARES
            }

            fn overflow() -> &'static ::std::sync::Mutex<$crate::replay::pool::Boxes<$t>> {
                static OVERFLOW: ::std::sync::Mutex<$crate::replay::pool::Boxes<$t>> =
                    ::std::sync::Mutex::new(::std::vec::Vec::new());
                &OVERFLOW
            }
        }
    };
}
pub(crate) use pooled;

#[cold]
#[inline(never)]
fn take_shared<T: Pooled>() -> Option<Box<T>> {
    T::overflow()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop()
}

/// Keeps `slot` in the overflow if there is room; the box is freed otherwise (after the lock:
/// it is cleared, but nothing is dropped under it).
#[cold]
#[inline(never)]
fn keep_shared<T: Pooled>(slot: Box<T>) {
    let mut shared = T::overflow().lock().unwrap_or_else(PoisonError::into_inner);
    if shared.len() < SHARED_KEEP {
        shared.push(slot);
    }
}

/// A spare box of this thread's, if it has one (and its spares are not borrowed, which no
/// user code can make happen: none runs while they are).
#[inline(always)]
fn take_here<T: Pooled>() -> Option<Box<T>> {
    T::spares()
        .try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
}

/// A `T` in a box that goes back, cleared, to this thread's spares when it is dropped.
pub(crate) struct Recycled<T: Pooled> {
    /// `Some` until drop.
    slot: Option<Box<T>>,
}

impl<T: Pooled> Recycled<T> {
    /// A cleared spare box: this thread's, else one from the overflow, else a new one.
    #[inline(always)]
    pub(crate) fn empty() -> Self {
        let slot = take_here::<T>()
            .or_else(take_shared::<T>)
            .unwrap_or_default();
        Recycled { slot: Some(slot) }
    }

    /// A spare box with what `fill` writes into it.
    #[cfg(test)]
    pub(crate) fn new_with(fill: impl FnOnce(&mut T)) -> Self {
        let mut recycled = Self::empty();
        fill(recycled.get_mut());
        recycled
    }

    pub(crate) fn get(&self) -> &T {
        self.slot
            .as_deref()
            .expect("a Recycled has its box until it is dropped")
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.slot
            .as_deref_mut()
            .expect("a Recycled has its box until it is dropped")
    }
}

impl<T: Pooled> Drop for Recycled<T> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            give_back(slot);
        }
    }
}

/// Clears a box and keeps it among this thread's spares; if they are full, in the overflow; if
/// that is full, or the thread is exiting (its spares are gone), the box is freed. (This
/// thread's spares cannot be borrowed here: no user code runs while they are.)
///
/// One call out of line, where the drop, the clearing and the keeping were three: 26 fewer
/// instructions per request (callgrind); inlined whole into the response future's drop, the
/// keeping counted 35 more.
#[inline(never)]
fn give_back<T: Pooled>(mut slot: Box<T>) {
    // The value first (user code: a body), with nothing borrowed. If that panics, the box is
    // freed with what is left in it, not kept.
    slot.clear();
    let kept = T::spares().try_with(move |spare| match spare.try_borrow_mut() {
        Ok(mut spare) if spare.len() < KEEP => {
            spare.push(slot);
            None
        }
        _ => Some(slot),
    });
    // (Thread exiting: the box went with the closure.)
    if let Ok(Some(slot)) = kept {
        keep_shared(slot);
    }
}

#[cfg(test)]
mod tests;

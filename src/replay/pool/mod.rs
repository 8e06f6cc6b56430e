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
//! A box is emptied before it is kept (the copy holds the request's body, user code, dropped
//! then and never while any spares are borrowed or locked). At most [`KEEP`] spares of each of
//! [`KINDS`] types are kept per thread, and [`SHARED_KEEP`] in the overflow; beyond, a box is
//! freed.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

/// Spare boxes kept per thread and type, without a lock: enough for the requests a thread has
/// in flight at once in most clients. More in flight go through the overflow (a lock each),
/// which a thread that gives boxes back without taking any (a caller of tower's `Buffer`) also
/// fills once it has this many.
const KEEP: usize = 32;
/// Types a thread keeps spares for.
const KINDS: usize = 8;
/// Spare boxes kept in the overflow, of all types (about 240 KiB of replay copies at most).
const SHARED_KEEP: usize = 1024;

/// The overflow: boxes a thread had no room for, for a thread that has none left.
static SHARED: Mutex<Shared> = Mutex::new(Shared {
    kinds: Vec::new(),
    len: 0,
});

struct Shared {
    kinds: Vec<(TypeId, Vec<Box<dyn Any + Send>>)>,
    len: usize,
}

impl Shared {
    #[cold]
    #[inline(never)]
    fn take<T: Send + 'static>() -> Option<Box<Option<T>>> {
        let id = TypeId::of::<Option<T>>();
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, boxes) = shared.kinds.iter_mut().find(|(kind, _)| *kind == id)?;
        let slot = boxes.pop()?;
        shared.len -= 1;
        drop(shared);
        slot.downcast().ok()
    }

    /// Keeps `slot` if there is room; the box is freed otherwise (after the lock: it is empty,
    /// but nothing is dropped under it).
    #[cold]
    #[inline(never)]
    fn keep<T: Send + 'static>(slot: Box<Option<T>>) {
        let id = TypeId::of::<Option<T>>();
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.len >= SHARED_KEEP {
            return;
        }
        let at = match shared.kinds.iter().position(|(kind, _)| *kind == id) {
            Some(at) => at,
            None if shared.kinds.len() < KINDS => {
                shared.kinds.push((id, Vec::new()));
                shared.kinds.len() - 1
            }
            None => return,
        };
        shared.kinds[at].1.push(slot);
        shared.len += 1;
    }
}

thread_local! {
    static SPARE: RefCell<Spare> = const { RefCell::new(Spare { kinds: Vec::new() }) };
}

struct Spare {
    /// Empty boxes (`Box<Option<T>>` holding `None`) by the type they hold.
    kinds: Vec<(TypeId, Vec<Box<dyn Any>>)>,
}

impl Spare {
    #[inline(always)]
    fn take<T: 'static>(&mut self) -> Option<Box<Option<T>>> {
        let id = TypeId::of::<Option<T>>();
        let (_, boxes) = self.kinds.iter_mut().find(|(kind, _)| *kind == id)?;
        boxes.pop()?.downcast().ok()
    }

    /// Keeps `slot` if there is room for it; gives it back otherwise.
    fn keep<T: 'static>(&mut self, slot: Box<Option<T>>) -> Option<Box<Option<T>>> {
        let id = TypeId::of::<Option<T>>();
        let at = match self.kinds.iter().position(|(kind, _)| *kind == id) {
            Some(at) => at,
            None if self.kinds.len() < KINDS => {
                self.kinds.push((id, Vec::new()));
                self.kinds.len() - 1
            }
            None => return Some(slot),
        };
        let boxes = &mut self.kinds[at].1;
        if boxes.len() >= KEEP {
            return Some(slot);
        }
        boxes.push(slot);
        None
    }
}

/// A spare box of this thread's, if it has one (and its spares are not borrowed, which no
/// user code can make happen: none runs while they are).
#[inline(always)]
fn take_here<T: 'static>() -> Option<Box<Option<T>>> {
    SPARE
        .try_with(|spare| spare.try_borrow_mut().ok()?.take::<T>())
        .ok()
        .flatten()
}

/// A `T` in a box that goes back to this thread's spares when it is dropped.
pub(crate) struct Recycled<T: Send + 'static> {
    /// `Some(Some(value))` until [`Recycled::take`] or drop.
    slot: Option<Box<Option<T>>>,
}

impl<T: Send + 'static> Recycled<T> {
    /// An empty spare box: this thread's, else one from the overflow, else a new one.
    #[inline(always)]
    pub(crate) fn empty() -> Self {
        let slot = take_here::<T>()
            .or_else(Shared::take::<T>)
            .unwrap_or_else(|| Box::new(None));
        Recycled { slot: Some(slot) }
    }

    /// A spare box with the value `fill` writes into it.
    #[cfg(test)]
    pub(crate) fn new_with(fill: impl FnOnce(&mut Option<T>)) -> Self {
        let mut recycled = Self::empty();
        if let Some(slot) = recycled.slot.as_deref_mut() {
            fill(slot);
        }
        recycled
    }
}

impl<T: Send + 'static> Recycled<T> {
    /// Puts `value` in the box, where it stays; `None` only after [`Recycled::take`].
    #[inline(always)]
    pub(crate) fn put(&mut self, value: T) -> Option<&mut T> {
        Some(self.slot.as_deref_mut()?.insert(value))
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.slot.as_deref()?.as_ref()
    }

    /// The value, out of its box (which goes back to the spares).
    pub(crate) fn take(mut self) -> Option<T> {
        self.slot.as_deref_mut()?.take()
    }
}

impl<T: Send + 'static> Drop for Recycled<T> {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        // The value first (user code: a body), with nothing borrowed.
        *slot = None;
        keep(slot);
    }
}

/// Keeps an emptied box among this thread's spares; if they are full, in the overflow; if that
/// is full, or the thread is exiting (its spares are gone), the box is freed. (This thread's
/// spares cannot be borrowed here: no user code runs while they are.) Out of line: inlined
/// into the response future's drop it counted 35 more instructions per request (callgrind).
#[inline(never)]
fn keep<T: Send + 'static>(slot: Box<Option<T>>) {
    let kept = SPARE.try_with(move |spare| match spare.try_borrow_mut() {
        Ok(mut spare) => spare.keep(slot),
        Err(_) => Some(slot),
    });
    // (Thread exiting: the box went with the closure.)
    if let Ok(Some(slot)) = kept {
        Shared::keep(slot);
    }
}

#[cfg(test)]
mod tests;

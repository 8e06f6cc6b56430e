//! Spare boxes, kept per thread, for the replay copies of requests in flight.
//!
//! A response future holds its request's replay copy (about 200 bytes) in a box, so that the
//! future itself stays small: each `.await` of a caller moves the whole future, and a copy held
//! inline made every request move it several times (a `StaticKey` layer's future too, which
//! holds no copy but had the room for one). The box comes back to the thread the future ends
//! on, and the next request there takes it: no allocation per request once a thread has sent a
//! few, and no atomic operation (a thread's spares are its own).
//!
//! A box is emptied before it is kept (the copy holds the request's body, user code, dropped
//! then and never while this thread's spares are borrowed). At most [`KEEP`] spares of each of
//! [`KINDS`] body types are kept per thread; beyond, a box is freed.

use std::any::{Any, TypeId};
use std::cell::RefCell;

/// Spare boxes kept per thread and body type: enough for the requests a thread has in flight
/// at once in most clients; more are allocated and freed as needed.
const KEEP: usize = 32;
/// Body types a thread keeps spares for.
const KINDS: usize = 8;

thread_local! {
    static SPARE: RefCell<Spare> = const { RefCell::new(Spare { kinds: Vec::new() }) };
}

struct Spare {
    /// Empty boxes (`Box<Option<T>>` holding `None`) by the type they hold.
    kinds: Vec<(TypeId, Vec<Box<dyn Any>>)>,
}

impl Spare {
    fn take<T: 'static>(&mut self) -> Option<Box<Option<T>>> {
        let id = TypeId::of::<Option<T>>();
        let (_, boxes) = self.kinds.iter_mut().find(|(kind, _)| *kind == id)?;
        boxes.pop()?.downcast().ok()
    }

    fn keep<T: 'static>(&mut self, slot: Box<Option<T>>) {
        let id = TypeId::of::<Option<T>>();
        let at = match self.kinds.iter().position(|(kind, _)| *kind == id) {
            Some(at) => at,
            None if self.kinds.len() < KINDS => {
                self.kinds.push((id, Vec::new()));
                self.kinds.len() - 1
            }
            None => return,
        };
        let boxes = &mut self.kinds[at].1;
        if boxes.len() < KEEP {
            boxes.push(slot);
        }
    }
}

/// A `T` in a box that goes back to this thread's spares when it is dropped.
pub(crate) struct Recycled<T> {
    /// `Some(Some(value))` until [`Recycled::take`] or drop.
    slot: Option<Box<Option<T>>>,
    /// Gives an emptied box back ([`keep`] for this `T`): a pointer, so that neither this type
    /// nor those holding it (the response future) need `T: 'static`, which the spares do.
    give_back: fn(Box<Option<T>>),
}

impl<T: 'static> Recycled<T> {
    /// Puts the value `fill` writes into a spare box of this thread's (a new one if it has
    /// none). `fill` writes into the box, so the value is built where it stays.
    #[inline(always)]
    pub(crate) fn new_with(fill: impl FnOnce(&mut Option<T>)) -> Self {
        let mut slot = SPARE
            .try_with(|spare| spare.try_borrow_mut().ok()?.take::<T>())
            .ok()
            .flatten()
            .unwrap_or_else(|| Box::new(None));
        fill(&mut slot);
        Recycled {
            slot: Some(slot),
            give_back: keep::<T>,
        }
    }
}

impl<T> Recycled<T> {
    pub(crate) fn get(&self) -> Option<&T> {
        self.slot.as_deref()?.as_ref()
    }

    /// The value, out of its box (which goes back to the spares).
    pub(crate) fn take(mut self) -> Option<T> {
        self.slot.as_deref_mut()?.take()
    }
}

impl<T> Drop for Recycled<T> {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        // The value first (user code: a body), with nothing borrowed.
        *slot = None;
        (self.give_back)(slot);
    }
}

/// Keeps an emptied box among this thread's spares, unless the thread is exiting (its spares
/// are gone) or, which cannot happen as no user code runs while they are borrowed, they are
/// borrowed: the box is freed then.
fn keep<T: 'static>(slot: Box<Option<T>>) {
    let _ = SPARE.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            spare.keep(slot);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn spares<T: 'static>() -> usize {
        SPARE.with(|spare| {
            let id = TypeId::of::<Option<T>>();
            let spare = spare.borrow();
            let found = spare.kinds.iter().find(|(kind, _)| *kind == id);
            found.map_or(0, |(_, boxes)| boxes.len())
        })
    }

    #[test]
    fn a_box_is_emptied_kept_and_reused() {
        let value = Rc::new(());
        let first = Recycled::new_with(|slot| *slot = Some(value.clone()));
        let address = first.get().map(|v| v as *const Rc<()>);
        assert_eq!(Rc::strong_count(&value), 2);
        drop(first);
        assert_eq!(Rc::strong_count(&value), 1, "emptied before it is kept");
        assert_eq!(spares::<Rc<()>>(), 1);
        let second = Recycled::new_with(|slot| *slot = Some(value.clone()));
        assert_eq!(
            second.get().map(|v| v as *const Rc<()>),
            address,
            "the same box"
        );
        assert_eq!(spares::<Rc<()>>(), 0);
        assert!(second.take().is_some());
        assert_eq!(spares::<Rc<()>>(), 1, "taken out, the box is kept");
    }

    #[test]
    fn spares_are_bounded_per_type_and_in_types() {
        let many: Vec<_> = (0..KEEP + 10)
            .map(|i| Recycled::new_with(|slot| *slot = Some(i as u32)))
            .collect();
        drop(many);
        assert_eq!(spares::<u32>(), KEEP);
        // Other types each get their own spares, up to `KINDS` types.
        macro_rules! one_of {
            ($($t:ty),*) => {$(drop(Recycled::<$t>::new_with(|slot| *slot = Some(Default::default())));)*};
        }
        one_of!(u8, u16, u64, i8, i16, i32, i64, u128, i128);
        let kinds = SPARE.with(|spare| spare.borrow().kinds.len());
        assert_eq!(kinds, KINDS);
    }

    #[test]
    fn a_box_dropped_on_another_thread_stays_there() {
        let moved = Recycled::new_with(|slot| *slot = Some(7u16));
        std::thread::spawn(move || {
            drop(moved);
            assert_eq!(spares::<u16>(), 1);
        })
        .join()
        .unwrap();
        assert_eq!(spares::<u16>(), 0);
    }
}

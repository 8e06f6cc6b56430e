//! Tests of the spares.

use super::*;
use std::sync::Arc;

/// `pooled!` for `Option<T>` (cleared to `None`), the test types' spares.
macro_rules! pooled_option {
    ($($t:ty),*) => {$(pooled!(Option<$t>, |value| *value = None);)*};
}

pooled_option!(Arc<()>, u32, u16);

fn spares<T: Send + 'static>() -> usize
where
    Option<T>: Pooled,
{
    <Option<T>>::spares().with(|spare| spare.borrow().len())
}

#[test]
fn a_box_is_emptied_kept_and_reused() {
    let value = Arc::new(());
    let first = Recycled::new_with(|slot| *slot = Some(value.clone()));
    let address = first.get().as_ref().map(|v| v as *const Arc<()>);
    assert_eq!(Arc::strong_count(&value), 2);
    drop(first);
    assert_eq!(Arc::strong_count(&value), 1, "emptied before it is kept");
    assert_eq!(spares::<Arc<()>>(), 1);
    let second = Recycled::new_with(|slot| *slot = Some(value.clone()));
    assert_eq!(
        second.get().as_ref().map(|v| v as *const Arc<()>),
        address,
        "the same box"
    );
    assert_eq!(spares::<Arc<()>>(), 0);
    drop(second);
    assert_eq!(spares::<Arc<()>>(), 1, "cleared and kept again");
    assert_eq!(Arc::strong_count(&value), 1);
}

#[test]
fn spares_are_bounded_per_thread_and_in_the_overflow() {
    // A type of this test's own: no other test touches its overflow.
    struct Only(#[allow(dead_code)] usize);
    pooled_option!(Only);
    std::thread::spawn(|| {
        let many: Vec<_> = (0..KEEP + SHARED_KEEP + 10)
            .map(|i| Recycled::new_with(|slot| *slot = Some(Only(i))))
            .collect();
        drop(many);
        assert_eq!(spares::<Only>(), KEEP);
        let shared = || <Option<Only>>::overflow().lock().unwrap().len();
        assert_eq!(
            shared(),
            SHARED_KEEP,
            "the rest up to the cap; beyond, freed"
        );
        // Taken back: this thread's first, then the overflow's.
        let again: Vec<_> = (0..KEEP + 1)
            .map(|i| Recycled::new_with(|slot| *slot = Some(Only(i))))
            .collect();
        assert_eq!(spares::<Only>(), 0);
        assert_eq!(shared(), SHARED_KEEP - 1);
        drop(again);
    })
    .join()
    .unwrap();
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

// ---------------------------------------------------------------------------------------------
// AUDIT ROUND 7 (tests only, added by the outside audit of 1aa98ba; see tests/audit_round7.rs).
// Unit-level attacks on the spares that need private items. All `holds_*`: they pass.
// ---------------------------------------------------------------------------------------------
#[cfg(test)]
mod audit_round7 {
    use super::super::*;
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::mpsc;

    fn spares<T: Send + 'static>() -> usize
    where
        Option<T>: Pooled,
    {
        <Option<T>>::spares().with(|spare| spare.borrow().len())
    }

    /// Runs `f` on a thread of its own: fresh spares, whatever else ran on the test's thread.
    fn fresh(f: impl FnOnce() + Send + 'static) {
        if let Err(panic) = std::thread::spawn(f).join() {
            std::panic::resume_unwind(panic);
        }
    }

    fn not_borrowed<T: Send + 'static>() -> bool
    where
        Option<T>: Pooled,
    {
        <Option<T>>::spares().with(|spare| spare.try_borrow_mut().is_ok())
    }

    /// A box taken from the spares holds `None`: a `fill` that writes nothing (or fails to)
    /// never exposes the previous request's value.
    #[test]
    fn holds_a_reused_box_never_shows_the_previous_value() {
        fresh(|| {
            struct Secret(#[allow(dead_code)] [u8; 64]);
            pooled_option!(Secret);
            drop(Recycled::new_with(|slot| *slot = Some(Secret([7; 64]))));
            assert_eq!(spares::<Secret>(), 1);
            let empty = Recycled::<Option<Secret>>::new_with(|_| {});
            assert_eq!(spares::<Secret>(), 0, "the kept box was taken");
            assert!(empty.get().is_none(), "reused box shows a stale value");
            drop(empty);
            assert_eq!(spares::<Secret>(), 1);
        });
    }

    thread_local! {
        static PANICS: Cell<bool> = const { Cell::new(false) };
    }

    struct PanicOnDrop;
    pooled_option!(PanicOnDrop, String, u64, [u8; 8]);
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            if PANICS.with(Cell::get) {
                panic!("a body's Drop panics");
            }
        }
    }

    /// A value whose `Drop` panics (user code in `*slot = None`): the box is freed, not kept
    /// half-dropped; the spares are not left borrowed and still work.
    #[test]
    fn holds_a_panicking_drop_frees_the_box_and_leaves_the_spares_usable() {
        fresh(|| {
            drop(Recycled::new_with(|slot| *slot = Some(PanicOnDrop)));
            assert_eq!(spares::<PanicOnDrop>(), 1);
            let doomed = Recycled::new_with(|slot| *slot = Some(PanicOnDrop));
            PANICS.with(|p| p.set(true));
            let result = catch_unwind(AssertUnwindSafe(move || drop(doomed)));
            PANICS.with(|p| p.set(false));
            assert!(result.is_err());
            assert!(not_borrowed::<PanicOnDrop>());
            assert_eq!(
                spares::<PanicOnDrop>(),
                0,
                "the box of the panicking drop is freed"
            );
            let again = Recycled::new_with(|slot| *slot = Some(PanicOnDrop));
            assert!(again.get().is_some());
            drop(again);
            assert_eq!(spares::<PanicOnDrop>(), 1);
        });
    }

    /// A value whose `Drop` sends another request (a nested `Recycled` of the same type made
    /// and dropped while the outer one is being emptied): no borrow is held, both boxes kept.
    #[test]
    fn holds_a_drop_that_reenters_the_spares() {
        fresh(|| {
            struct Nested(bool);
            pooled_option!(Nested);
            impl Drop for Nested {
                fn drop(&mut self) {
                    if self.0 {
                        assert!(
                            not_borrowed::<Nested>(),
                            "spares borrowed while user code runs"
                        );
                        let inner = Recycled::new_with(|slot| *slot = Some(Nested(false)));
                        assert!(inner.get().as_ref().is_some_and(|n| !n.0));
                        drop(inner);
                    }
                }
            }
            let outer = Recycled::new_with(|slot| *slot = Some(Nested(true)));
            drop(outer);
            assert_eq!(spares::<Nested>(), 2, "the nested box and the outer one");
            let (a, b) = (
                Recycled::new_with(|slot| *slot = Some(Nested(false))),
                Recycled::new_with(|slot| *slot = Some(Nested(false))),
            );
            let (pa, pb) = (
                a.get().as_ref().unwrap() as *const Nested,
                b.get().as_ref().unwrap() as *const Nested,
            );
            assert_ne!(pa, pb, "one box handed out twice");
        });
    }

    /// `fill` (user code: an extension's `Clone`) panics after the box was taken: what was
    /// written is dropped and the emptied box kept (since `Recycled::empty`, the box is a
    /// `Recycled` from the start), the spares are usable, nothing half-built is kept.
    #[test]
    fn holds_a_panicking_fill_leaves_the_spares_usable() {
        fresh(|| {
            drop(Recycled::new_with(|slot| *slot = Some(String::from("old"))));
            assert_eq!(spares::<String>(), 1);
            let result = catch_unwind(|| {
                Recycled::<Option<String>>::new_with(|slot| {
                    *slot = Some(String::from("half"));
                    panic!("an extension's Clone panics");
                })
            });
            assert!(result.is_err());
            assert!(not_borrowed::<String>());
            assert_eq!(spares::<String>(), 1, "emptied and put back");
            let next = Recycled::new_with(|slot: &mut Option<String>| {
                assert!(slot.is_none(), "the half-written value was kept");
                *slot = Some(String::from("new"));
            });
            assert_eq!(next.get().as_deref(), Some("new"));
        });
    }

    /// A reentrant `fill` (an extension's `Clone` that sends a request of its own): the outer
    /// box is out of the spares while `fill` runs, so the inner request cannot get it.
    #[test]
    fn holds_a_reentrant_fill() {
        fresh(|| {
            let two = (
                Recycled::new_with(|slot| *slot = Some(1u64)),
                Recycled::new_with(|slot| *slot = Some(2u64)),
            );
            drop(two);
            assert_eq!(spares::<u64>(), 2);
            let mut inner_at = None;
            let outer = Recycled::new_with(|slot| {
                assert!(not_borrowed::<u64>());
                let inner = Recycled::new_with(|s| *s = Some(9u64));
                inner_at = inner.get().as_ref().map(|v| v as *const u64 as usize);
                *slot = Some(3u64);
                drop(inner);
            });
            assert_eq!(outer.get().as_ref(), Some(&3u64));
            assert_ne!(
                inner_at,
                outer.get().as_ref().map(|v| v as *const u64 as usize)
            );
            assert_eq!(
                spares::<u64>(),
                1,
                "the inner box went back, the outer is out"
            );
        });
    }

    struct OnDrop(Option<Box<dyn FnOnce()>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }

    thread_local! {
        static EARLY: RefCell<Vec<OnDrop>> = const { RefCell::new(Vec::new()) };
        static LATE: RefCell<Vec<OnDrop>> = const { RefCell::new(Vec::new()) };
    }

    /// Thread exit: a `Recycled` dropped, and one made, from other thread-locals' destructors,
    /// one run before the spares' (registered after them) and one after (registered before).
    /// No panic (which would abort there), no borrow error; a box made after the spares are
    /// gone is a fresh one and works.
    #[test]
    fn holds_recycled_in_thread_local_destructors() {
        let (tx, rx) = mpsc::channel::<(&'static str, Option<u32>, bool)>();
        std::thread::spawn(move || {
            EARLY.with(|e| e.borrow_mut().push(OnDrop(None))); // registered before the spares
            drop(Recycled::new_with(|slot| *slot = Some(0u32))); // the spares registered
            LATE.with(|l| l.borrow_mut().push(OnDrop(None))); // registered after the spares
            for (name, key) in [("early", &EARLY), ("late", &LATE)] {
                let held = Recycled::new_with(|slot| *slot = Some(1u32));
                let tx = tx.clone();
                key.with(|v| {
                    v.borrow_mut().push(OnDrop(Some(Box::new(move || {
                        drop(held);
                        let made = Recycled::new_with(|slot| *slot = Some(2u32));
                        let alive = <Option<u32>>::spares().try_with(|_| ()).is_ok();
                        let _ = tx.send((name, *made.get(), alive));
                        drop(made);
                    }))))
                });
            }
        })
        .join()
        .expect("thread exit with boxes out");
        let mut got: Vec<_> = rx.iter().collect();
        got.sort();
        // Destructors run in reverse order of registration: `early` after the spares' own.
        assert_eq!(got, [("early", Some(2), false), ("late", Some(2), true)]);
    }

    /// Spares are per type: two types whose boxes have the same size and layout never share
    /// one (each type has its own thread local, and `T: 'static` so lifetimes cannot alias types).
    #[test]
    fn holds_spares_are_per_type() {
        fresh(|| {
            drop(Recycled::new_with(|slot| *slot = Some([1u8; 8])));
            drop(Recycled::new_with(|slot| {
                *slot = Some(0x0202_0202_0202_0202u64)
            }));
            let a = Recycled::new_with(|slot: &mut Option<[u8; 8]>| {
                assert!(slot.is_none());
                *slot = Some([3u8; 8]);
            });
            assert_eq!(a.get().as_ref(), Some(&[3u8; 8]));
            assert_eq!(spares::<u64>(), 1, "the u64 box is still there");
        });
    }
}

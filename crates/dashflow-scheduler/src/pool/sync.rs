//! What the park/unpark protocol is built of: the standard library's atomics and lock with
//! crossbeam's parker and backoff, or loom's, so that the protocol in [`super::sleep`] is
//! model-checked (`RUSTFLAGS="--cfg loom" cargo test -p dashflow-scheduler --release --lib
//! loom`). Only the protocol's own state comes from here; the statistics counters stay plain
//! atomics, since the protocol never reads them.

#[cfg(not(loom))]
pub(super) use crossbeam_utils::Backoff;
#[cfg(not(loom))]
pub(super) use crossbeam_utils::sync::{Parker, Unparker};
#[cfg(not(loom))]
pub(super) use std::sync::Mutex;
#[cfg(not(loom))]
pub(super) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub(super) use loom::sync::Mutex;
#[cfg(loom)]
pub(super) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(super) use model::{Backoff, Parker, Unparker};

#[cfg(loom)]
mod model {
    use std::sync::PoisonError;

    use loom::sync::{Arc, Condvar, Mutex};

    /// A permit, as crossbeam's `Parker` keeps one: an unpark before the park is not lost.
    pub(crate) struct Parker {
        unparker: Unparker,
    }

    /// Hands a [`Parker`] its permit.
    #[derive(Clone)]
    pub(crate) struct Unparker(Arc<Permit>);

    struct Permit {
        set: Mutex<bool>,
        changed: Condvar,
    }

    impl Parker {
        pub(crate) fn new() -> Self {
            let permit = Permit { set: Mutex::new(false), changed: Condvar::new() };
            Self { unparker: Unparker(Arc::new(permit)) }
        }

        /// Blocks until the permit is set, then takes it.
        pub(crate) fn park(&self) {
            let permit = &self.unparker.0;
            let mut set = permit.set.lock().unwrap_or_else(PoisonError::into_inner);
            while !*set {
                set = permit.changed.wait(set).unwrap_or_else(PoisonError::into_inner);
            }
            *set = false;
        }

        pub(crate) fn unparker(&self) -> &Unparker {
            &self.unparker
        }
    }

    impl Unparker {
        pub(crate) fn unpark(&self) {
            *self.0.set.lock().unwrap_or_else(PoisonError::into_inner) = true;
            self.0.changed.notify_one();
        }
    }

    /// Spinning only delays a thread on its way to sleep, so the model looks once and moves
    /// on: the protocol must hold with no spin at all, and each spin would multiply the
    /// interleavings to explore.
    pub(crate) struct Backoff;

    impl Backoff {
        pub(crate) fn new() -> Self {
            Self
        }

        pub(crate) fn is_completed(&self) -> bool {
            true
        }

        pub(crate) fn snooze(&self) {}
    }
}

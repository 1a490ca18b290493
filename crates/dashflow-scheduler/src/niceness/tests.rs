#![allow(clippy::unwrap_used, reason = "tests")]

use std::io;

use super::{Unfit, check};

#[test]
fn a_niceness_outside_linux_range_is_refused_before_any_thread_starts() {
    for nice in [-21, 20, i32::MIN, i32::MAX] {
        let expected = if cfg!(target_os = "linux") { Unfit::OutOfRange } else { Unfit::Unsupported };
        assert_eq!(check(nice), Err(expected), "{nice}");
    }
}

#[test]
fn refusals_become_io_errors_of_their_kind() {
    let out_of_range = io::Error::from(Unfit::OutOfRange);
    assert_eq!(out_of_range.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(out_of_range.to_string(), "Linux takes a niceness from -20 to 19");
    assert_eq!(io::Error::from(Unfit::Unsupported).kind(), io::ErrorKind::Unsupported);
}

#[cfg(target_os = "linux")]
mod linux {
    use super::super::{Niceness, check, set, thread_id};

    /// The calling thread's nice value, as the kernel reports it.
    fn own_niceness() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[test]
    fn the_ends_of_linux_range_are_accepted() {
        assert_eq!(check(-20), Ok(()));
        assert_eq!(check(19), Ok(()));
    }

    #[test]
    fn setting_a_niceness_changes_the_calling_thread_alone() {
        let before = own_niceness();
        let (set_to, id) = std::thread::spawn(|| {
            // Lowering priority needs no privilege.
            set(19).unwrap();
            (own_niceness(), thread_id())
        })
        .join()
        .unwrap();
        assert_eq!(set_to, 19);
        assert_ne!(id, thread_id());
        assert_eq!(own_niceness(), before);
    }

    /// The niceness a thread started at `start` takes with `niceness`.
    fn started_at(start: i32, niceness: Niceness) -> i32 {
        std::thread::spawn(move || {
            set(start).unwrap();
            // A thread inherits its starter's niceness.
            std::thread::spawn(move || {
                niceness.apply().unwrap();
                own_niceness()
            })
            .join()
            .unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn nicer_by_steps_adds_to_the_inherited_niceness_up_to_the_end_of_the_range() {
        // Lowering priority needs no privilege; raising it back may.
        let start = own_niceness().max(0);
        assert_eq!(started_at(start, Niceness::NicerBy(0)), start);
        assert_eq!(started_at(start.max(5), Niceness::NicerBy(3)), (start.max(5) + 3).min(19));
        assert_eq!(started_at(start.max(15), Niceness::NicerBy(10)), 19);
        assert_eq!(started_at(start, Niceness::Exactly(19)), 19);
    }
}

use std::time::{Duration, Instant};

use super::{Idle, Wait, Waits};

#[test]
fn pauses_grow_to_the_longest_then_the_thread_sleeps_and_work_starts_over() {
    let start = Instant::now();
    let mut idle = Idle::new(Waits::default());
    let pauses: Vec<Wait> = (0..8).map(|_| idle.next_wait_at(start)).collect();
    let millis = |ms| Wait::Pause(Duration::from_millis(ms));
    assert_eq!(pauses, [millis(1), millis(2), millis(4), millis(8), millis(16), millis(32), millis(32), millis(32)]);
    assert_eq!(idle.next_wait_at(start + Duration::from_secs(1)), Wait::Sleep);
    idle.reset();
    assert_eq!(idle.next_wait_at(start + Duration::from_secs(5)), millis(1));
}

#[test]
fn the_default_schedule_is_the_default_waits() {
    let start = Instant::now();
    let (mut default, mut new) = (Idle::default(), Idle::new(Waits::default()));
    for _ in 0..8 {
        assert_eq!(default.next_wait_at(start), new.next_wait_at(start));
    }
    assert_eq!(default.next_wait_at(start + Duration::from_secs(1)), Wait::Sleep);
}

#[test]
fn a_thread_told_to_sleep_at_once_never_pauses() {
    let waits =
        Waits { first: Duration::from_secs(3600), longest: Duration::from_secs(3600), sleep_after: Duration::ZERO };
    assert_eq!(Idle::new(waits).next_wait_at(Instant::now()), Wait::Sleep);
}

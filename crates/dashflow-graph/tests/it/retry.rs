//! `RetryPolicy`: exponential backoff with a cap and jitter, and which errors retry.

use std::time::Duration;

use dashflow_graph::{NodeError, NodeErrorKind, RetryPolicy};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn error_of(kind: NodeErrorKind) -> NodeError {
    NodeError::msg("boom").with_kind(kind)
}

#[test]
fn without_jitter_the_delay_doubles_from_the_initial_interval_up_to_the_cap() {
    let policy = RetryPolicy::new(10).backoff(ms(100), 2.0, ms(1000)).without_jitter();
    let delays: Vec<Duration> = (1..=7).map(|attempt| policy.delay_after(attempt, 0.9)).collect();
    assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]);
}

#[test]
fn the_default_backoff_starts_at_half_a_second_and_caps_at_128_seconds() {
    let policy = RetryPolicy::default().without_jitter();
    assert_eq!(policy.max_attempts(), 3);
    assert_eq!(policy.delay_after(1, 0.0), ms(500));
    assert_eq!(policy.delay_after(2, 0.0), ms(1000));
    assert_eq!(policy.delay_after(8, 0.0), Duration::from_secs(64));
    assert_eq!(policy.delay_after(9, 0.0), Duration::from_secs(128));
    assert_eq!(policy.delay_after(10, 0.0), Duration::from_secs(128));
}

#[test]
fn the_delay_stays_at_the_cap_for_huge_attempt_numbers() {
    let policy = RetryPolicy::new(3).backoff(ms(100), 3.0, Duration::from_secs(60)).without_jitter();
    for attempt in [40, 1_000, 100_000, u32::MAX] {
        assert_eq!(policy.delay_after(attempt, 0.5), Duration::from_secs(60), "attempt {attempt}");
    }
}

#[test]
fn attempt_zero_waits_the_initial_interval() {
    let policy = RetryPolicy::new(3).backoff(ms(250), 2.0, ms(1000)).without_jitter();
    assert_eq!(policy.delay_after(0, 0.5), ms(250));
}

#[test]
fn a_factor_below_one_or_not_finite_keeps_the_delay_constant() {
    for factor in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY] {
        let policy = RetryPolicy::new(5).backoff(ms(300), factor, ms(10_000)).without_jitter();
        let delays: Vec<Duration> = (1..=4).map(|attempt| policy.delay_after(attempt, 0.5)).collect();
        assert_eq!(delays, [ms(300); 4], "factor {factor}");
    }
}

#[test]
fn an_initial_interval_above_the_cap_is_capped() {
    let policy = RetryPolicy::new(3).backoff(ms(5000), 2.0, ms(1000)).without_jitter();
    assert_eq!(policy.delay_after(1, 0.5), ms(1000));
}

#[test]
fn jitter_maps_the_unit_onto_half_to_one_and_a_half_times_the_interval() {
    let policy = RetryPolicy::new(5).backoff(ms(1000), 2.0, ms(60_000));
    assert_eq!(policy.delay_after(1, 0.0), ms(500));
    assert_eq!(policy.delay_after(1, 0.5), ms(1000));
    assert_eq!(policy.delay_after(1, 1.0), ms(1500));
    assert_eq!(policy.delay_after(2, 0.25), ms(1500));
}

#[test]
fn jitter_keeps_every_delay_within_half_and_one_and_a_half_times_the_interval() {
    let policy = RetryPolicy::new(20).backoff(ms(100), 2.0, ms(5000));
    let exact = policy.clone().without_jitter();
    for attempt in 1..=12 {
        let interval = exact.delay_after(attempt, 0.0);
        let (low, high) = (interval / 2, interval * 3 / 2);
        // Units outside [0, 1] (a buggy random source) are clamped, not extrapolated.
        for step in -4..=24 {
            let unit = f64::from(step) / 20.0;
            let delay = policy.delay_after(attempt, unit);
            assert!(
                (low..=high).contains(&delay),
                "attempt {attempt}, unit {unit}: {delay:?} outside {low:?}..={high:?}"
            );
        }
    }
}

#[test]
fn jitter_at_the_cap_stays_within_half_and_one_and_a_half_times_the_cap() {
    let policy = RetryPolicy::new(20).backoff(ms(100), 2.0, ms(1000));
    assert_eq!(policy.delay_after(15, 0.0), ms(500));
    assert_eq!(policy.delay_after(15, 1.0), ms(1500));
}

#[test]
fn should_retry_stops_at_max_attempts() {
    let policy = RetryPolicy::new(3);
    let error = NodeError::msg("flaky");
    assert!(policy.should_retry(1, &error));
    assert!(policy.should_retry(2, &error));
    assert!(!policy.should_retry(3, &error));
    assert!(!policy.should_retry(4, &error));
}

#[test]
fn zero_max_attempts_means_one_attempt_and_no_retry() {
    let policy = RetryPolicy::new(0);
    assert_eq!(policy.max_attempts(), 1);
    assert!(!policy.should_retry(1, &NodeError::msg("flaky")));
}

#[test]
fn by_default_failures_and_timeouts_retry_but_permanent_errors_and_panics_do_not() {
    let policy = RetryPolicy::new(5);
    assert!(policy.should_retry(1, &error_of(NodeErrorKind::Failed)));
    assert!(policy.should_retry(1, &error_of(NodeErrorKind::Timeout)));
    assert!(!policy.should_retry(1, &error_of(NodeErrorKind::Permanent)));
    assert!(!policy.should_retry(1, &error_of(NodeErrorKind::Panicked)));
    assert!(!policy.should_retry(1, &NodeError::permanent_msg("bad input")));
}

#[test]
fn a_custom_retry_on_predicate_replaces_the_default() {
    let only_timeouts = RetryPolicy::new(5).retry_on(NodeError::is_timeout);
    assert!(only_timeouts.should_retry(1, &error_of(NodeErrorKind::Timeout)));
    assert!(!only_timeouts.should_retry(1, &error_of(NodeErrorKind::Failed)));

    // The predicate may even retry what the default never would; max attempts still applies.
    let everything = RetryPolicy::new(2).retry_on(|_| true);
    assert!(everything.should_retry(1, &error_of(NodeErrorKind::Panicked)));
    assert!(!everything.should_retry(2, &error_of(NodeErrorKind::Panicked)));

    let by_message = RetryPolicy::new(5).retry_on(|error| error.to_string().contains("429"));
    assert!(by_message.should_retry(1, &NodeError::msg("HTTP 429")));
    assert!(!by_message.should_retry(1, &NodeError::msg("HTTP 400")));
}

#[test]
fn a_cloned_policy_keeps_its_predicate() {
    let policy = RetryPolicy::new(5).retry_on(NodeError::is_timeout);
    let copy = policy.clone();
    assert!(!copy.should_retry(1, &error_of(NodeErrorKind::Failed)));
    assert!(copy.should_retry(1, &error_of(NodeErrorKind::Timeout)));
}

#[test]
fn debug_output_shows_the_settings() {
    let debug = format!("{:?}", RetryPolicy::new(4).without_jitter());
    for needle in ["max_attempts: 4", "initial_interval: 500ms", "jitter: false"] {
        assert!(debug.contains(needle), "{debug}");
    }
}

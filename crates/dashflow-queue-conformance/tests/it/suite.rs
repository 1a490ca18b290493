use std::collections::BTreeMap;

use dashflow_queue_conformance::{Capabilities, Capability, cases};

use crate::broken::{Fault, broken};

/// Runs every case against a fresh queue with `fault`; returns the failed cases' paths with
/// their reports.
async fn failures(fault: Fault) -> BTreeMap<String, String> {
    let mut failed = BTreeMap::new();
    for case in cases() {
        if let Err(error) = case.run(broken(fault)).await {
            failed.insert(case.path(), error.report());
        }
    }
    failed
}

/// Asserts that `fault` fails at least the `expected` cases.
async fn assert_fails(fault: Fault, expected: &[&str]) -> BTreeMap<String, String> {
    let failed = failures(fault).await;
    for path in expected {
        assert!(cases().iter().any(|case| case.path() == *path), "`{path}` is not a case of the suite; fix the test");
        assert!(failed.contains_key(*path), "{fault:?} passed `{path}`; it must fail it. Failed: {failed:#?}");
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_wrapper_passes_every_check() {
    let failed = failures(Fault::Honest).await;
    assert!(failed.is_empty(), "the honest wrapper failed: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_fences_fails_the_fence_checks() {
    let failed = assert_fails(
        Fault::IgnoresFences,
        &[
            "fence/a_former_owners_put_is_a_conflict_and_stores_nothing",
            "fence/a_former_owners_pending_write_is_a_conflict_and_stores_nothing",
            "fence/a_lease_writes_only_its_own_thread",
            "fence/a_takeover_during_a_stream_of_puts_lets_no_old_put_land_after_it",
            "fence/a_former_owners_delete_or_copy_of_its_thread_is_a_conflict_and_changes_nothing",
            "fence/operations_beyond_the_leases_thread_are_outside_fence_and_change_nothing",
            "sweep/requeues_the_runs_of_a_worker_whose_lease_expired",
        ],
    )
    .await;
    let report = &failed["fence/a_former_owners_put_is_a_conflict_and_stores_nothing"];
    assert!(report.contains("must be a Conflict"), "unhelpful report: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_held_runs_again_fails_the_exclusivity_checks() {
    let failed = assert_fails(
        Fault::ClaimsHeldRunsAgain,
        &["claim/a_claimed_run_is_not_claimed_again", "claim/concurrent_claimers_never_claim_one_run_twice"],
    )
    .await;
    let report = &failed["claim/a_claimed_run_is_not_claimed_again"];
    assert!(report.contains("claimed a run w1 holds"), "unhelpful report: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_priority_fails_the_priority_check_only() {
    let failed = assert_fails(Fault::IgnoresPriority, &["claim/highest_priority_first"]).await;
    // Stats show what is stored; every other check passes.
    let others: Vec<&String> = failed
        .keys()
        .filter(|path| {
            !["claim/highest_priority_first", "list/stats_count_runs_per_queue_priority_and_state"]
                .contains(&path.as_str())
        })
        .collect();
    assert!(others.is_empty(), "{failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_sweeping_fails_the_sweep_checks() {
    assert_fails(
        Fault::NeverSweeps,
        &[
            "sweep/requeues_the_runs_of_a_worker_whose_lease_expired",
            "sweep/the_last_attempt_fails_and_the_next_pending_run_is_queued",
            "sweep/a_run_asked_to_cancel_is_cancelled",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeueing_runs_asked_to_cancel_fails_the_release_and_give_up_cancel_checks_only() {
    let expected = [
        "release/a_run_asked_to_cancel_is_cancelled_not_queued",
        "give_up/a_run_asked_to_cancel_is_cancelled_with_attempts_left_or_not",
        "wakeups/a_release_or_give_up_of_a_run_asked_to_cancel_says_it_is_done",
    ];
    let failed = assert_fails(Fault::RequeuesRunsAskedToCancel, &expected).await;
    // The cancel, heartbeat and sweep checks see cancel requests as before.
    let others: Vec<&String> = failed.keys().filter(|path| !expected.contains(&path.as_str())).collect();
    assert!(others.is_empty(), "{failed:#?}");
    let report = &failed["release/a_run_asked_to_cancel_is_cancelled_not_queued"];
    assert!(report.contains("expected Cancelled, got Queued"), "unhelpful report: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeping_by_the_lease_alone_fails_the_check_of_the_lone_worker() {
    let failed = assert_fails(
        Fault::SweepsByLeaseAlone,
        &["sweep/a_lone_worker_whose_lease_expired_is_stopped_only_once_another_beats"],
    )
    .await;
    let report = &failed["sweep/a_lone_worker_whose_lease_expired_is_stopped_only_once_another_beats"];
    assert!(report.contains("stopped a lone worker"), "unhelpful report: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_retries_fail_the_retry_checks() {
    assert_fails(
        Fault::LaxRetries,
        &[
            "retry/grants_exactly_the_attempts_asked_for",
            "retry/a_run_that_did_not_fail_is_refused",
            "retry/a_run_a_later_one_followed_is_refused",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lacking_a_declared_part_fails_its_checks_instead_of_passing_them() {
    let needing: Vec<String> = cases().iter().filter(|case| !case.needs().is_empty()).map(|case| case.path()).collect();
    assert!(needing.len() >= 5, "the optional parts have too few checks: {needing:?}");
    let needing: Vec<&str> = needing.iter().map(String::as_str).collect();
    let failed = assert_fails(Fault::LacksOptionalParts, &needing).await;
    assert!(failed["streams/numbered_without_gaps_across_a_takeover"].contains("`streams` is None"));
    assert_eq!(failed.len(), needing.len(), "checks of the required operations failed too: {failed:#?}");
}

#[test]
fn a_missing_capability_makes_its_trials_ignored_with_the_reason() {
    let capabilities = Capabilities::all().without(Capability::Wakeups);
    let trials = dashflow_queue_conformance::trials("partial", capabilities, || async { broken(Fault::Honest) });
    let ignored: Vec<&str> = trials.iter().filter(|trial| trial.has_ignored_flag()).map(|trial| trial.name()).collect();
    assert_eq!(
        ignored,
        [
            "partial/wakeups/a_submit_wakes_for_work",
            "partial/wakeups/a_finish_says_the_run_is_done",
            "partial/wakeups/a_release_or_give_up_of_a_run_asked_to_cancel_says_it_is_done",
            "partial/wakeups/a_sweep_that_ends_a_run_says_it_is_done",
            "partial/streams/wakeups_announce_appends_and_the_runs_end"
        ]
    );
    let lacking = trials.iter().find(|trial| trial.has_ignored_flag()).map(|trial| trial.kind());
    assert_eq!(lacking, Some("lacks wakeups"));
    let none = dashflow_queue_conformance::trials("bare", Capabilities::none(), || async { broken(Fault::Honest) });
    let ignored = none.iter().filter(|trial| trial.has_ignored_flag()).count();
    assert_eq!(ignored, cases().iter().filter(|case| !case.needs().is_empty()).count());
}

#[test]
fn trials_are_named_backend_group_case_and_unique() {
    let trials = dashflow_queue_conformance::trials("mock", Capabilities::all(), || async { broken(Fault::Honest) });
    assert_eq!(trials.len(), cases().len());
    assert!(trials.iter().any(|trial| trial.name() == "mock/claim/highest_priority_first"));
    let mut names: Vec<&str> = trials.iter().map(|trial| trial.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), trials.len(), "two cases share a name");
}

#[test]
fn ignored_trials_name_every_case_and_are_ignored() {
    let trials = dashflow_queue_conformance::ignored_trials("absent");
    assert_eq!(trials.len(), cases().len());
    assert!(trials.iter().all(|trial| trial.has_ignored_flag() && trial.name().starts_with("absent/")));
}

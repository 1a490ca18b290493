//! The checks, one module per group; each is a `pub async fn` over a fresh, empty queue that
//! returns `Ok(())` when the queue keeps the contract.

use futures::FutureExt as _;

use crate::{Capability, Case};

pub mod cancel;
pub mod claim;
pub mod fence;
pub mod finish;
pub mod give_up;
pub mod heartbeat;
pub mod list;
pub mod release;
pub mod retry;
pub mod streams;
pub mod submit;
pub mod sweep;
pub mod wakeups;

/// Names each check `group/name` after its module and function; `[Capability, ...]` before
/// a check names the optional parts it needs.
macro_rules! cases {
    ($($([$($needs:ident),+])? $group:ident :: $name:ident),* $(,)?) => {
        pub(crate) static CASES: &[Case] = &[
            $(Case {
                group: stringify!($group),
                name: stringify!($name),
                needs: &[$($(Capability::$needs),+)?],
                check: |queue| $group::$name(queue).boxed(),
            }),*
        ];
    };
}

cases! {
    submit::a_run_on_a_free_thread_is_queued_as_submitted,
    submit::the_same_run_twice_is_one_run,
    submit::a_busy_thread_rejects_with_thread_busy_naming_the_active_run,
    submit::enqueue_on_a_busy_thread_is_pending,
    submit::an_empty_thread_id_is_invalid,
    submit::a_nul_character_in_an_id_is_invalid,
    claim::marks_the_run_running_under_the_worker_and_the_epoch,
    claim::a_claimed_run_is_not_claimed_again,
    claim::concurrent_claimers_never_claim_one_run_twice,
    claim::highest_priority_first,
    claim::fair_across_tenants_within_a_priority,
    claim::in_submission_order_within_a_tenant,
    claim::only_its_graphs_and_queues_up_to_the_limit,
    claim::an_unknown_or_stopped_worker_claims_nothing,
    claim::pending_runs_are_not_claimed,
    claim::each_claim_of_a_thread_has_a_higher_epoch,
    finish::stores_the_state_checkpoint_and_error,
    finish::promotes_the_oldest_pending_run,
    finish::with_a_lost_lease_is_lease_lost_and_changes_nothing,
    finish::a_state_that_is_not_terminal_is_invalid,
    release::requeues_without_charging_the_attempt_and_bumps_the_epoch,
    release::with_a_lost_lease_is_lease_lost,
    release::a_run_asked_to_cancel_is_cancelled_not_queued,
    give_up::requeues_charging_the_attempt,
    give_up::the_last_attempt_fails_and_promotes_the_next,
    give_up::with_a_lost_lease_is_lease_lost,
    give_up::a_run_asked_to_cancel_is_cancelled_with_attempts_left_or_not,
    cancel::a_queued_run_is_cancelled_at_once,
    cancel::a_pending_run_is_cancelled_and_the_others_keep_their_places,
    cancel::a_running_run_is_asked_through_its_workers_heartbeat,
    cancel::a_finished_run_stays_and_an_unknown_one_is_not_found,
    retry::a_failed_run_is_queued_again_as_its_next_attempt,
    retry::grants_exactly_the_attempts_asked_for,
    retry::a_cancelled_run_is_queued_again,
    retry::a_run_that_did_not_fail_is_refused,
    retry::a_run_a_later_one_followed_is_refused,
    heartbeat::reports_the_runs_the_worker_lost,
    heartbeat::an_unknown_or_stopped_worker_is_not_alive,
    heartbeat::tells_runs_that_ended_under_their_lease_from_lost_ones,
    fence::the_owner_writes_through_its_fenced_checkpointer,
    fence::a_former_owners_put_is_a_conflict_and_stores_nothing,
    fence::a_former_owners_pending_write_is_a_conflict_and_stores_nothing,
    fence::a_former_owners_finish_and_release_are_lease_lost,
    fence::a_lease_writes_only_its_own_thread,
    fence::a_takeover_during_a_stream_of_puts_lets_no_old_put_land_after_it,
    fence::a_former_owners_delete_or_copy_of_its_thread_is_a_conflict_and_changes_nothing,
    fence::operations_beyond_the_leases_thread_are_outside_fence_and_change_nothing,
    sweep::requeues_the_runs_of_a_worker_whose_lease_expired,
    sweep::a_worker_that_beats_keeps_its_runs,
    sweep::the_last_attempt_fails_and_the_next_pending_run_is_queued,
    sweep::a_run_asked_to_cancel_is_cancelled,
    sweep::requeues_the_runs_a_stopped_worker_still_held,
    sweep::a_lone_worker_whose_lease_expired_is_stopped_only_once_another_beats,
    list::get_of_an_unknown_run_is_none,
    list::newest_first_filtered_by_state_thread_and_limit,
    list::stats_count_runs_per_queue_priority_and_state,
    list::workers_are_listed_live_or_stopped,
    [Wakeups] wakeups::a_submit_wakes_for_work,
    [Wakeups] wakeups::a_finish_says_the_run_is_done,
    [Wakeups] wakeups::a_release_or_give_up_of_a_run_asked_to_cancel_says_it_is_done,
    [Wakeups] wakeups::a_sweep_that_ends_a_run_says_it_is_done,
    [Streams] streams::numbered_without_gaps_across_a_takeover,
    [Streams] streams::a_read_after_any_item_returns_exactly_the_items_after_it,
    [Streams] streams::trim_deletes_only_the_streams_of_runs_that_ended,
    [Streams, Wakeups] streams::wakeups_announce_appends_and_the_runs_end,
}

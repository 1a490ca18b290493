//! The checks, one module per group; each is a `pub async fn` over a fresh, empty
//! checkpointer that returns `Ok(())` when the backend keeps the contract.

use futures::FutureExt as _;

use crate::{Capability, Case, TamperCase};

pub mod blob;
pub mod concurrency;
pub mod copy_thread;
pub mod delete_before;
pub mod delete_idle_threads;
pub mod delete_namespace;
pub mod delete_thread;
pub mod ids;
pub mod integrity;
pub mod list;
pub mod list_threads;
pub mod load;
pub mod put;
pub mod put_batch;
pub mod put_writes;
pub mod rewrite_as_snapshot;
pub mod schemas;

/// Names each check `group/name` after its module and function; `[Capability, ...]` before
/// a check names the optional operations it needs.
macro_rules! cases {
    ($($([$($needs:ident),+])? $group:ident :: $name:ident),* $(,)?) => {
        pub(crate) static CASES: &[Case] = &[
            $(Case {
                group: stringify!($group),
                name: stringify!($name),
                needs: &[$($(Capability::$needs),+)?],
                check: |checkpointer| $group::$name(checkpointer).boxed(),
            }),*
        ];
    };
}

cases! {
    put::into_an_empty_thread_expecting_none,
    put::with_the_current_head,
    put::conflict_when_head_moved,
    put::conflict_when_expecting_none_on_a_non_empty_thread,
    put::conflict_when_expecting_a_head_on_an_empty_thread,
    put::conflict_when_the_id_is_already_stored,
    put::namespaces_have_independent_heads,
    put::threads_have_independent_heads,
    put::fork_names_a_past_parent_and_expects_the_head,
    put::head_is_the_last_put_not_the_greatest_id,
    put::stores_every_field,
    put::odd_thread_and_namespace_names_round_trip,
    load::latest_is_the_head,
    load::by_id,
    load::unknown_id_is_none,
    load::unknown_thread_is_none,
    load::id_of_another_namespace_is_none,
    load::chain_from_last_snapshot,
    load::chain_of_a_snapshot_is_the_snapshot_alone,
    load::chain_follows_parent_links_across_a_fork,
    load::chain_ignores_snapshots_of_other_branches,
    load::chain_without_a_snapshot_starts_at_the_root,
    load::pending_writes_come_with_their_checkpoint,
    put_writes::same_task_id_replaces,
    put_writes::order_is_kept,
    put_writes::namespaces_are_separate,
    list::newest_first,
    list::newest_first_across_namespaces,
    list::before,
    list::limit,
    list::metadata_filter,
    list::namespace_filter,
    list::filters_combine_before_the_limit,
    list::unknown_thread_is_empty,
    list::thread_ids_match_exactly,
    delete_thread::removes_everything,
    delete_thread::other_threads_are_untouched,
    delete_thread::unknown_thread_is_a_no_op,
    delete_thread::thread_ids_match_exactly,
    copy_thread::copies_checkpoints_and_writes,
    copy_thread::copy_and_source_are_independent,
    copy_thread::copies_the_head_not_the_greatest_id,
    copy_thread::conflict_when_target_not_empty,
    delete_before::keeps_keep_from_and_newer,
    delete_before::other_namespaces_and_threads_are_untouched,
    delete_before::unknown_thread_deletes_nothing,
    [DeleteNamespace] delete_namespace::removes_one_namespace_and_nothing_else,
    [DeleteNamespace] delete_namespace::unknown_namespace_deletes_nothing,
    put_batch::stores_a_chain_in_order,
    put_batch::stops_at_the_first_conflict_keeping_what_came_before,
    [RewriteAsSnapshot] rewrite_as_snapshot::turns_a_delta_into_a_snapshot_in_place,
    [RewriteAsSnapshot] rewrite_as_snapshot::unknown_checkpoint_is_not_found,
    delete_idle_threads::by_cutoff,
    delete_idle_threads::none_when_all_are_fresh,
    blob::byte_exact,
    blob::empty,
    blob::one_mib,
    blob::pending_write_blobs_round_trip,
    ids::from_different_puts_never_collide,
    concurrency::one_winner_per_expected_head,
    concurrency::one_winner_on_an_empty_thread,
    concurrency::distinct_threads_all_succeed,
    [Schemas] schemas::round_trip_by_fingerprint,
    [Schemas] schemas::first_put_stays,
    [ListThreads] list_threads::newest_first_with_the_head_of_the_root_namespace,
    [ListThreads] list_threads::the_latest_checkpoint_is_the_head_after_a_fork,
    [ListThreads] list_threads::filters_by_prefix_time_and_metadata,
    [ListThreads] list_threads::pages_by_cursor_and_limit,
    [ListThreads, DeleteNamespace] list_threads::deleted_threads_are_not_listed,
}

/// The integrity checks, which change stored bytes through the backend's [`crate::Tamper`].
pub(crate) static TAMPER_CASES: &[TamperCase] = &[
    TamperCase {
        group: "integrity",
        name: "changed_checkpoint_byte_is_corrupt_naming_thread_and_checkpoint",
        check: |checkpointer, tamper| {
            integrity::changed_checkpoint_byte_is_corrupt_naming_thread_and_checkpoint(checkpointer, tamper).boxed()
        },
    },
    TamperCase {
        group: "integrity",
        name: "changed_pending_write_byte_is_corrupt_naming_the_write",
        check: |checkpointer, tamper| {
            integrity::changed_pending_write_byte_is_corrupt_naming_the_write(checkpointer, tamper).boxed()
        },
    },
];

use std::collections::BTreeMap;
use std::sync::Arc;

use dashflow_checkpoint::BlobLocation;
use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_conformance::{Capabilities, Capability, Tamper, cases, tamper_cases};
use dashflow_checkpoint_memory::MemoryCheckpointer;

use crate::broken::{Broken, Fault};

/// Runs every case against a fresh checkpointer with `fault`; returns the failed cases'
/// paths with their reports.
async fn failures(fault: Fault) -> BTreeMap<String, String> {
    let mut failed = BTreeMap::new();
    for case in cases() {
        let checkpointer: Arc<dyn Checkpointer> = Arc::new(Broken::new(fault));
        if let Err(error) = case.run(checkpointer).await {
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
async fn ignoring_the_expected_head_fails_the_conflict_checks() {
    let failed = assert_fails(
        Fault::IgnoresExpectedHead,
        &[
            "put/conflict_when_head_moved",
            "put/conflict_when_expecting_none_on_a_non_empty_thread",
            "put/conflict_when_expecting_a_head_on_an_empty_thread",
            "put/namespaces_have_independent_heads",
            "put/threads_have_independent_heads",
            "put/fork_names_a_past_parent_and_expects_the_head",
            "put/head_is_the_last_put_not_the_greatest_id",
            "copy_thread/copies_the_head_not_the_greatest_id",
        ],
    )
    .await;
    let report = &failed["put/conflict_when_head_moved"];
    assert!(report.contains("succeeded; it must fail with Conflict"), "unhelpful report: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_oldest_first_fails_the_list_checks() {
    assert_fails(
        Fault::ListsOldestFirst,
        &["list/newest_first", "list/newest_first_across_namespaces", "list/before", "list/limit"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_chains_by_id_order_fails_the_fork_checks() {
    assert_fails(
        Fault::ChainsByIdOrder,
        &["load/chain_follows_parent_links_across_a_fork", "load/chain_ignores_snapshots_of_other_branches"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_pending_writes_fails_the_write_checks() {
    assert_fails(
        Fault::DropsPendingWrites,
        &[
            "load/pending_writes_come_with_their_checkpoint",
            "put_writes/same_task_id_replaces",
            "put_writes/order_is_kept",
            "put_writes/namespaces_are_separate",
            "copy_thread/copies_checkpoints_and_writes",
            "blob/pending_write_blobs_round_trip",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_large_blobs_fails_the_blob_checks() {
    let failed =
        assert_fails(Fault::TruncatesLargeBlobs, &["blob/one_mib", "blob/pending_write_blobs_round_trip"]).await;
    assert!(!failed.contains_key("blob/byte_exact"), "a small blob was not truncated, so byte_exact must pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_over_a_non_empty_thread_fails_the_copy_conflict_check() {
    assert_fails(Fault::CopiesOverNonEmptyThreads, &["copy_thread/conflict_when_target_not_empty"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keep_from_too_fails_the_delete_before_check() {
    assert_fails(Fault::DeletesKeepFromToo, &["delete_before/keeps_keep_from_and_newer"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_only_the_kind_fails_the_rewrite_check() {
    assert_fails(Fault::RewritesTheKindOnly, &["rewrite_as_snapshot/turns_a_delta_into_a_snapshot_in_place"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lacking_a_declared_operation_fails_its_checks_instead_of_passing_them() {
    let needing: Vec<String> = cases().iter().filter(|case| !case.needs().is_empty()).map(|case| case.path()).collect();
    assert!(needing.len() >= 11, "the optional operations have too few checks: {needing:?}");
    let needing: Vec<&str> = needing.iter().map(String::as_str).collect();
    let failed = assert_fails(Fault::LacksOptionalOperations, &needing).await;
    let report = &failed["rewrite_as_snapshot/turns_a_delta_into_a_snapshot_in_place"];
    assert!(report.contains("not supported"), "unhelpful report: {report}");
    // Checks of the required operations do not depend on the optional ones.
    assert_eq!(failed.len(), needing.len(), "{failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_threads_oldest_first_fails_the_thread_listing_checks() {
    assert_fails(
        Fault::ListsThreadsOldestFirst,
        &["list_threads/newest_first_with_the_head_of_the_root_namespace", "list_threads/pages_by_cursor_and_limit"],
    )
    .await;
}

#[test]
fn a_missing_capability_makes_its_trials_ignored_with_the_reason() {
    let capabilities = Capabilities::all().without(Capability::DeleteNamespace);
    let trials = dashflow_checkpoint_conformance::trials("partial", capabilities, || async {
        Arc::new(Broken::new(Fault::Honest)) as Arc<dyn Checkpointer>
    });
    let ignored: Vec<&str> = trials.iter().filter(|trial| trial.has_ignored_flag()).map(|trial| trial.name()).collect();
    assert_eq!(
        ignored,
        [
            "partial/delete_namespace/removes_one_namespace_and_nothing_else",
            "partial/delete_namespace/unknown_namespace_deletes_nothing",
            "partial/list_threads/deleted_threads_are_not_listed",
        ]
    );
    let lacking = trials.iter().find(|trial| trial.has_ignored_flag()).map(|trial| trial.kind());
    assert_eq!(lacking, Some("lacks delete_namespace"));
    let none = dashflow_checkpoint_conformance::trials("bare", Capabilities::none(), || async {
        Arc::new(Broken::new(Fault::Honest)) as Arc<dyn Checkpointer>
    });
    let ignored = none.iter().filter(|trial| trial.has_ignored_flag()).count();
    assert_eq!(ignored, cases().iter().filter(|case| !case.needs().is_empty()).count());
}

#[test]
fn trials_are_named_backend_group_case() {
    let trials = dashflow_checkpoint_conformance::trials("mock", Capabilities::all(), || async {
        Arc::new(Broken::new(Fault::Honest)) as Arc<dyn Checkpointer>
    });
    assert_eq!(trials.len(), cases().len());
    assert!(trials.iter().any(|trial| trial.name() == "mock/list/newest_first"));
    assert!(trials.iter().any(|trial| trial.name() == "mock/put/conflict_when_head_moved"));
    let mut names: Vec<&str> = trials.iter().map(|trial| trial.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), trials.len(), "two cases share a name");
}

#[test]
fn ignored_trials_name_every_case_and_are_ignored() {
    let trials = dashflow_checkpoint_conformance::ignored_trials("absent");
    assert_eq!(trials.len(), cases().len() + tamper_cases().len());
    assert!(trials.iter().all(|trial| trial.has_ignored_flag() && trial.name().starts_with("absent/")));
}

/// Changes stored bytes of a [`Broken`] checkpointer through the memory backend's hook.
struct Hook(MemoryCheckpointer);

#[async_trait::async_trait]
impl Tamper for Hook {
    async fn alter_blob(&self, at: &BlobLocation, offset: usize, mask: u8) -> Result<(), String> {
        let (id, write) = (&at.checkpoint_id, at.write_id.as_deref());
        let found = self.0.alter_stored_blob(&at.thread_id, &at.namespace, id, write, |blob| blob[offset] ^= mask);
        if found { Ok(()) } else { Err(format!("no blob stored for {at}")) }
    }
}

/// Runs every integrity case against a fresh checkpointer with `fault`; returns the failed
/// cases' paths with their reports.
async fn integrity_failures(fault: Fault) -> BTreeMap<String, String> {
    let mut failed = BTreeMap::new();
    for case in tamper_cases() {
        let broken = Broken::new(fault);
        let hook: Arc<dyn Tamper> = Arc::new(Hook(broken.hook()));
        if let Err(error) = case.run(Arc::new(broken), hook).await {
            failed.insert(case.path(), error.report());
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_schemas_fails_the_schema_check() {
    assert_fails(Fault::ReplacesSchemas, &["schemas/first_put_stays"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_wrapper_passes_the_integrity_checks() {
    let failed = integrity_failures(Fault::Honest).await;
    assert!(failed.is_empty(), "the honest wrapper failed: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_blobs_as_first_put_fails_the_checkpoint_integrity_check() {
    let failed = integrity_failures(Fault::ServesBlobsAsFirstPut).await;
    let report = failed
        .get("integrity/changed_checkpoint_byte_is_corrupt_naming_thread_and_checkpoint")
        .unwrap_or_else(|| panic!("the integrity check passed a backend that hides changed bytes: {failed:#?}"));
    assert!(report.contains("verified as whole"), "unhelpful report: {report}");
}

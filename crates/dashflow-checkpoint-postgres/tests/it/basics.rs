//! The contract, case by case: round trips, chains, pending writes, list filters, deletion,
//! copies, retention and the errors callers act on.

use dashflow_checkpoint::{
    CheckpointError, CheckpointId, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions, PendingWrite,
};
use serde_json::json;

use crate::support::{committed_head, database, line, noise, record};

#[tokio::test]
async fn blobs_metadata_and_next_nodes_round_trip_exactly() {
    let db = database!("blobs_metadata_and_next_nodes_round_trip_exactly");
    let checkpointer = db.checkpointer().await;
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let blobs = [Vec::new(), every_byte, vec![0u8; 4096], noise(3 << 20, 7)];
    let mut parent: Option<CheckpointRecord> = None;
    let mut stored = Vec::new();
    for (index, blob) in blobs.into_iter().enumerate() {
        let mut next = record("bytes", "", parent.as_ref(), CheckpointKind::Snapshot);
        next.blob = blob;
        next.metadata
            .insert("nested".into(), json!({ "list": [1, 2.5, -3, null, true], "text": "ünïcødé ✓ \"quoted\"" }));
        next.metadata.insert("big".into(), json!(u64::MAX));
        next.metadata.insert("index".into(), json!(index));
        next.next_nodes = vec!["a".into(), "b c".into(), "ünï".into()];
        checkpointer.put(next.clone(), parent.as_ref().map(|parent| &parent.checkpoint_id)).await.unwrap();
        parent = Some(next.clone());
        stored.push(next);
    }
    for record in &stored {
        let loaded = checkpointer.load("bytes", "", Some(&record.checkpoint_id)).await.unwrap().unwrap();
        assert_eq!(loaded.chain, vec![record.clone()]);
    }
    let mut listed = checkpointer.list("bytes", &ListOptions::new()).await.unwrap();
    listed.reverse();
    assert_eq!(listed, stored);
}

#[tokio::test]
async fn load_returns_the_chain_from_the_nearest_snapshot_oldest_first() {
    let db = database!("load_returns_the_chain_from_the_nearest_snapshot_oldest_first");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "chain", "", "SDDSDD").await;

    let head = checkpointer.load("chain", "", None).await.unwrap().unwrap();
    assert_eq!(head.chain, records[3..].to_vec());
    assert_eq!(head.head(), records.last());
    let middle = checkpointer.load("chain", "", Some(&records[2].checkpoint_id)).await.unwrap().unwrap();
    assert_eq!(middle.chain, records[..3].to_vec());
    let snapshot = checkpointer.load("chain", "", Some(&records[3].checkpoint_id)).await.unwrap().unwrap();
    assert_eq!(snapshot.chain, vec![records[3].clone()]);
}

#[tokio::test]
async fn the_head_is_the_last_put_even_when_a_fork_has_a_smaller_id() {
    let db = database!("the_head_is_the_last_put_even_when_a_fork_has_a_smaller_id");
    let checkpointer = db.checkpointer().await;
    // An id made before the line exists sorts before every id of the line.
    let early_id = CheckpointId::new();
    let records = line(&checkpointer, "fork", "", "SDD").await;
    let mut fork = record("fork", "", Some(&records[0]), CheckpointKind::Delta);
    fork.checkpoint_id = early_id;
    checkpointer.put(fork.clone(), Some(&records[2].checkpoint_id)).await.unwrap();

    let head = checkpointer.load("fork", "", None).await.unwrap().unwrap();
    assert_eq!(head.chain, vec![records[0].clone(), fork.clone()]);
    // The next writer must name the fork, not the greatest id.
    let next = record("fork", "", Some(&fork), CheckpointKind::Delta);
    let error = checkpointer.put(next.clone(), Some(&records[2].checkpoint_id)).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    checkpointer.put(next, Some(&fork.checkpoint_id)).await.unwrap();
}

#[tokio::test]
async fn load_of_an_unknown_thread_namespace_or_id_is_none() {
    let db = database!("load_of_an_unknown_thread_namespace_or_id_is_none");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "known", "", "SD").await;
    assert_eq!(checkpointer.load("unknown", "", None).await.unwrap(), None);
    assert_eq!(checkpointer.load("known", "child", None).await.unwrap(), None);
    assert_eq!(checkpointer.load("known", "", Some(&CheckpointId::new())).await.unwrap(), None);
    assert_eq!(checkpointer.load("other", "", Some(&records[0].checkpoint_id)).await.unwrap(), None);
    assert_eq!(checkpointer.load("nul\0thread", "", None).await.unwrap(), None);
}

#[tokio::test]
async fn a_chain_whose_parents_were_pruned_ends_at_the_oldest_record_still_stored() {
    let db = database!("a_chain_whose_parents_were_pruned_ends_at_the_oldest_record_still_stored");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "pruned", "", "SDD").await;
    assert_eq!(checkpointer.delete_before("pruned", "", &records[2].checkpoint_id).await.unwrap(), 2);
    let loaded = checkpointer.load("pruned", "", None).await.unwrap().unwrap();
    assert_eq!(loaded.chain, vec![records[2].clone()]);
}

#[tokio::test]
async fn parent_links_that_form_a_cycle_load_as_corrupt() {
    let db = database!("parent_links_that_form_a_cycle_load_as_corrupt");
    let checkpointer = db.checkpointer().await;
    let mut first = record("cycle", "", None, CheckpointKind::Delta);
    let mut second = record("cycle", "", Some(&first), CheckpointKind::Delta);
    second.parent_id = Some(first.checkpoint_id.clone());
    first.parent_id = Some(second.checkpoint_id.clone());
    checkpointer.put(first.clone(), None).await.unwrap();
    checkpointer.put(second.clone(), Some(&first.checkpoint_id)).await.unwrap();
    let error = checkpointer.load("cycle", "", None).await.unwrap_err();
    assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("cycle"), "{error}");
}

fn write(task: &str, content: &str) -> PendingWrite {
    PendingWrite { task_id: task.into(), node: format!("node-{task}"), blob: content.as_bytes().to_vec() }
}

#[tokio::test]
async fn pending_writes_come_back_in_stored_order_and_a_rewrite_replaces_in_place() {
    let db = database!("pending_writes_come_back_in_stored_order_and_a_rewrite_replaces_in_place");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "writes", "", "SD").await;
    let at = &records[1].checkpoint_id;
    checkpointer.put_writes("writes", "", at, vec![write("b", "b1"), write("a", "a1")]).await.unwrap();
    checkpointer
        .put_writes("writes", "", at, vec![write("c", "c1"), write("b", "b2"), write("c", "c2")])
        .await
        .unwrap();
    checkpointer.put_writes("writes", "", at, Vec::new()).await.unwrap();

    let loaded = checkpointer.load("writes", "", None).await.unwrap().unwrap();
    assert_eq!(loaded.pending_writes, vec![write("b", "b2"), write("a", "a1"), write("c", "c2")]);
    // Writes belong to their checkpoint only.
    let earlier = checkpointer.load("writes", "", Some(&records[0].checkpoint_id)).await.unwrap().unwrap();
    assert!(earlier.pending_writes.is_empty());
}

#[tokio::test]
async fn pending_writes_may_be_stored_before_their_checkpoint() {
    let db = database!("pending_writes_may_be_stored_before_their_checkpoint");
    let checkpointer = db.checkpointer().await;
    let first = record("early", "", None, CheckpointKind::Snapshot);
    checkpointer.put_writes("early", "", &first.checkpoint_id, vec![write("a", "a")]).await.unwrap();
    assert_eq!(checkpointer.load("early", "", None).await.unwrap(), None);
    checkpointer.put(first.clone(), None).await.unwrap();
    assert_eq!(checkpointer.load("early", "", None).await.unwrap().unwrap().pending_writes, vec![write("a", "a")]);
}

#[tokio::test]
async fn list_is_newest_first_and_honours_namespace_before_limit_and_metadata() {
    let db = database!("list_is_newest_first_and_honours_namespace_before_limit_and_metadata");
    let checkpointer = db.checkpointer().await;
    let parent = line(&checkpointer, "listed", "", "SDD").await;
    let child = line(&checkpointer, "listed", "child", "SD").await;
    let _other = line(&checkpointer, "other", "", "SD").await;
    let ids =
        |records: Vec<CheckpointRecord>| records.into_iter().map(|record| record.checkpoint_id).collect::<Vec<_>>();

    let all = ids(checkpointer.list("listed", &ListOptions::new()).await.unwrap());
    let expected = vec![
        child[1].checkpoint_id.clone(),
        child[0].checkpoint_id.clone(),
        parent[2].checkpoint_id.clone(),
        parent[1].checkpoint_id.clone(),
        parent[0].checkpoint_id.clone(),
    ];
    assert_eq!(all, expected);

    let top = ids(checkpointer.list("listed", &ListOptions::new().namespace("")).await.unwrap());
    assert_eq!(top, expected[2..].to_vec());
    let before =
        ids(checkpointer.list("listed", &ListOptions::new().before(child[0].checkpoint_id.clone())).await.unwrap());
    assert_eq!(before, expected[2..].to_vec());
    let limited = ids(checkpointer.list("listed", &ListOptions::new().limit(2)).await.unwrap());
    assert_eq!(limited, expected[..2].to_vec());
    assert!(checkpointer.list("listed", &ListOptions::new().limit(0)).await.unwrap().is_empty());
    let loops = ids(checkpointer.list("listed", &ListOptions::new().metadata("source", "loop")).await.unwrap());
    assert_eq!(loops, vec![expected[0].clone(), expected[2].clone(), expected[3].clone()]);
    let step_one = ids(checkpointer
        .list("listed", &ListOptions::new().namespace("").metadata("source", "loop").metadata("step", 1))
        .await
        .unwrap());
    assert_eq!(step_one, vec![parent[2].checkpoint_id.clone()]);
    assert!(checkpointer.list("unknown", &ListOptions::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_metadata_filter_matches_values_exactly_not_by_containment() {
    let db = database!("a_metadata_filter_matches_values_exactly_not_by_containment");
    let checkpointer = db.checkpointer().await;
    let mut tagged = record("tags", "", None, CheckpointKind::Snapshot);
    tagged.metadata.insert("tags".into(), json!(["a", "b"]));
    tagged.metadata.insert("owner".into(), json!({ "team": "x", "person": "y" }));
    checkpointer.put(tagged.clone(), None).await.unwrap();

    let count = |options: ListOptions| {
        let checkpointer = &checkpointer;
        async move { checkpointer.list("tags", &options).await.unwrap().len() }
    };
    assert_eq!(count(ListOptions::new().metadata("tags", json!(["a", "b"]))).await, 1);
    assert_eq!(count(ListOptions::new().metadata("tags", json!(["a"]))).await, 0);
    assert_eq!(count(ListOptions::new().metadata("owner", json!({ "team": "x" }))).await, 0);
    assert_eq!(count(ListOptions::new().metadata("owner", json!({ "team": "x", "person": "y" }))).await, 1);
    assert_eq!(count(ListOptions::new().metadata("missing", json!(null))).await, 0);
}

#[tokio::test]
async fn delete_thread_removes_every_namespace_and_pending_write_and_nothing_else() {
    let db = database!("delete_thread_removes_every_namespace_and_pending_write_and_nothing_else");
    let checkpointer = db.checkpointer().await;
    let doomed = line(&checkpointer, "doomed", "", "SD").await;
    line(&checkpointer, "doomed", "child", "S").await;
    checkpointer.put_writes("doomed", "", &doomed[1].checkpoint_id, vec![write("a", "a")]).await.unwrap();
    let kept = line(&checkpointer, "kept", "", "SD").await;

    checkpointer.delete_thread("doomed").await.unwrap();
    assert!(checkpointer.list("doomed", &ListOptions::new()).await.unwrap().is_empty());
    assert_eq!(checkpointer.load("doomed", "", None).await.unwrap(), None);
    assert_eq!(checkpointer.load("doomed", "child", None).await.unwrap(), None);
    let mut admin = db.admin().await;
    let writes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dashflow_checkpoint_writes").fetch_one(&mut admin).await.unwrap();
    assert_eq!(writes, 0);
    assert_eq!(checkpointer.load("kept", "", None).await.unwrap().unwrap().chain, kept);

    // The thread starts over from nothing, and deleting it again is no error.
    line(&checkpointer, "doomed", "", "S").await;
    checkpointer.delete_thread("doomed").await.unwrap();
    checkpointer.delete_thread("doomed").await.unwrap();
}

#[tokio::test]
async fn copy_thread_copies_every_checkpoint_and_write_and_the_copy_goes_its_own_way() {
    let db = database!("copy_thread_copies_every_checkpoint_and_write_and_the_copy_goes_its_own_way");
    let checkpointer = db.checkpointer().await;
    let source = line(&checkpointer, "source", "", "SDD").await;
    let child = line(&checkpointer, "source", "child", "S").await;
    checkpointer.put_writes("source", "", &source[2].checkpoint_id, vec![write("t", "w")]).await.unwrap();

    checkpointer.copy_thread("source", "copy").await.unwrap();
    let in_copy = |record: &CheckpointRecord| CheckpointRecord { thread_id: "copy".into(), ..record.clone() };
    let copied = checkpointer.load("copy", "", None).await.unwrap().unwrap();
    assert_eq!(copied.chain, source.iter().map(in_copy).collect::<Vec<_>>());
    assert_eq!(copied.pending_writes, vec![write("t", "w")]);
    assert_eq!(checkpointer.load("copy", "child", None).await.unwrap().unwrap().chain, vec![in_copy(&child[0])]);

    // The copy continues from the same head; the source does not move.
    let next = record("copy", "", Some(&copied.chain[2]), CheckpointKind::Delta);
    checkpointer.put(next.clone(), Some(&source[2].checkpoint_id)).await.unwrap();
    assert_eq!(checkpointer.load("source", "", None).await.unwrap().unwrap().head(), Some(&source[2]));
    assert_eq!(checkpointer.list("copy", &ListOptions::new().namespace("")).await.unwrap().len(), 4);
}

#[tokio::test]
async fn copy_into_a_thread_with_checkpoints_conflicts_and_a_copy_of_nothing_copies_nothing() {
    let db = database!("copy_into_a_thread_with_checkpoints_conflicts_and_a_copy_of_nothing_copies_nothing");
    let checkpointer = db.checkpointer().await;
    line(&checkpointer, "source", "", "S").await;
    let occupied = line(&checkpointer, "occupied", "elsewhere", "S").await;

    match checkpointer.copy_thread("source", "occupied").await.unwrap_err() {
        CheckpointError::Conflict { thread_id, actual, .. } => {
            assert_eq!(thread_id, "occupied");
            assert_eq!(actual, occupied[0].checkpoint_id.to_string());
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(checkpointer.list("occupied", &ListOptions::new()).await.unwrap(), occupied);
    checkpointer.copy_thread("nothing", "target").await.unwrap();
    assert!(checkpointer.list("target", &ListOptions::new()).await.unwrap().is_empty());
    // The target is still empty, so a real copy into it works.
    checkpointer.copy_thread("source", "target").await.unwrap();
    assert_eq!(checkpointer.list("target", &ListOptions::new()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn delete_before_removes_older_checkpoints_of_one_namespace_with_their_writes() {
    let db = database!("delete_before_removes_older_checkpoints_of_one_namespace_with_their_writes");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "pruned", "", "SDDSD").await;
    let child = line(&checkpointer, "pruned", "child", "SD").await;
    checkpointer.put_writes("pruned", "", &records[1].checkpoint_id, vec![write("a", "a")]).await.unwrap();

    let deleted = checkpointer.delete_before("pruned", "", &records[3].checkpoint_id).await.unwrap();
    assert_eq!(deleted, 3);
    let remaining = checkpointer.list("pruned", &ListOptions::new().namespace("")).await.unwrap();
    assert_eq!(remaining, vec![records[4].clone(), records[3].clone()]);
    assert_eq!(checkpointer.load("pruned", "", None).await.unwrap().unwrap().chain, records[3..].to_vec());
    assert_eq!(checkpointer.list("pruned", &ListOptions::new().namespace("child")).await.unwrap().len(), child.len());
    let mut admin = db.admin().await;
    let writes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dashflow_checkpoint_writes").fetch_one(&mut admin).await.unwrap();
    assert_eq!(writes, 0);
    assert_eq!(checkpointer.delete_before("pruned", "", &records[3].checkpoint_id).await.unwrap(), 0);
}

#[tokio::test]
async fn delete_before_never_deletes_the_head_even_when_a_fork_gave_it_a_smaller_id() {
    let db = database!("delete_before_never_deletes_the_head_even_when_a_fork_gave_it_a_smaller_id");
    let checkpointer = db.checkpointer().await;
    let early_id = CheckpointId::new();
    let records = line(&checkpointer, "forked", "", "SD").await;
    let mut fork = record("forked", "", None, CheckpointKind::Snapshot);
    fork.checkpoint_id = early_id;
    checkpointer.put(fork.clone(), Some(&records[1].checkpoint_id)).await.unwrap();
    checkpointer.put_writes("forked", "", &fork.checkpoint_id, vec![write("a", "a")]).await.unwrap();

    assert_eq!(checkpointer.delete_before("forked", "", &records[1].checkpoint_id).await.unwrap(), 1);
    let head = checkpointer.load("forked", "", None).await.unwrap().unwrap();
    assert_eq!(head.chain, vec![fork]);
    assert_eq!(head.pending_writes, vec![write("a", "a")]);
}

#[tokio::test]
async fn delete_idle_threads_removes_only_threads_whose_newest_checkpoint_is_older_than_the_cutoff() {
    let db = database!("delete_idle_threads_removes_only_threads_whose_newest_checkpoint_is_older_than_the_cutoff");
    let checkpointer = db.checkpointer().await;
    let at = |thread: &str, namespace: &str, parent: Option<&CheckpointRecord>, created_at_ms: i64| {
        let mut next = record(thread, namespace, parent, CheckpointKind::Snapshot);
        next.created_at_ms = created_at_ms;
        next
    };
    let old = at("old", "", None, 1_000);
    let old_child = at("old", "child", None, 2_000);
    let mixed = at("mixed", "", None, 1_000);
    let mixed_child = at("mixed", "child", None, 9_000);
    let fresh = at("fresh", "", None, 9_000);
    let fresh_next = at("fresh", "", Some(&fresh), 500);
    for (record, expected) in [
        (&old, None),
        (&old_child, None),
        (&mixed, None),
        (&mixed_child, None),
        (&fresh, None),
        (&fresh_next, Some(&fresh.checkpoint_id)),
    ] {
        checkpointer.put(record.clone(), expected).await.unwrap();
    }

    assert_eq!(checkpointer.delete_idle_threads(5_000).await.unwrap(), vec!["old".to_owned()]);
    assert!(checkpointer.list("old", &ListOptions::new()).await.unwrap().is_empty());
    assert_eq!(checkpointer.list("mixed", &ListOptions::new()).await.unwrap().len(), 2);
    // `fresh`'s newest checkpoint is its first (created at 9 000), not its head.
    assert_eq!(checkpointer.list("fresh", &ListOptions::new()).await.unwrap().len(), 2);
    assert!(checkpointer.delete_idle_threads(5_000).await.unwrap().is_empty());
    let mut all = checkpointer.delete_idle_threads(10_000).await.unwrap();
    all.sort();
    assert_eq!(all, vec!["fresh".to_owned(), "mixed".to_owned()]);
}

#[tokio::test]
async fn a_stale_put_conflicts_with_both_heads_named_and_stores_nothing() {
    let db = database!("a_stale_put_conflicts_with_both_heads_named_and_stores_nothing");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "stale", "", "SD").await;
    let head = records[1].checkpoint_id.to_string();

    let stale = record("stale", "", Some(&records[0]), CheckpointKind::Delta);
    match checkpointer.put(stale.clone(), Some(&records[0].checkpoint_id)).await.unwrap_err() {
        CheckpointError::Conflict { thread_id, namespace, expected, actual } => {
            assert_eq!((thread_id.as_str(), namespace.as_str()), ("stale", ""));
            assert_eq!(expected, records[0].checkpoint_id.to_string());
            assert_eq!(actual, head);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let fresh = record("stale", "", None, CheckpointKind::Snapshot);
    match checkpointer.put(fresh.clone(), None).await.unwrap_err() {
        CheckpointError::Conflict { expected, actual, .. } => {
            assert_eq!((expected.as_str(), actual.as_str()), ("none", head.as_str()))
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let lost = record("empty", "", None, CheckpointKind::Snapshot);
    match checkpointer.put(lost, Some(&records[1].checkpoint_id)).await.unwrap_err() {
        CheckpointError::Conflict { actual, .. } => assert_eq!(actual, "none"),
        other => panic!("expected a conflict, got {other}"),
    }

    assert_eq!(checkpointer.list("stale", &ListOptions::new()).await.unwrap().len(), 2);
    assert_eq!(checkpointer.load("stale", "", Some(&stale.checkpoint_id)).await.unwrap(), None);
    assert_eq!(checkpointer.load("stale", "", Some(&fresh.checkpoint_id)).await.unwrap(), None);
    assert!(checkpointer.list("empty", &ListOptions::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn putting_a_stored_checkpoint_id_again_conflicts_without_moving_the_head() {
    let db = database!("putting_a_stored_checkpoint_id_again_conflicts_without_moving_the_head");
    let checkpointer = db.checkpointer().await;
    let records = line(&checkpointer, "again", "", "SD").await;
    let mut replay = records[0].clone();
    replay.parent_id = Some(records[1].checkpoint_id.clone());
    replay.blob = b"other content".to_vec();
    let error = checkpointer.put(replay, Some(&records[1].checkpoint_id)).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    let mut admin = db.admin().await;
    assert_eq!(committed_head(&mut admin, "again", "").await, Some(records[1].checkpoint_id.to_string()));
    let stored = checkpointer.load("again", "", Some(&records[0].checkpoint_id)).await.unwrap().unwrap();
    assert_eq!(stored.chain, vec![records[0].clone()]);
}

#[tokio::test]
async fn text_postgres_cannot_hold_is_an_encode_error_and_stores_nothing() {
    let db = database!("text_postgres_cannot_hold_is_an_encode_error_and_stores_nothing");
    let checkpointer = db.checkpointer().await;
    let mut cases = Vec::new();
    cases.push(record("nul\0thread", "", None, CheckpointKind::Snapshot));
    cases.push(record("t", "nul\0namespace", None, CheckpointKind::Snapshot));
    let mut node = record("t", "", None, CheckpointKind::Snapshot);
    node.next_nodes.push("nul\0node".into());
    cases.push(node);
    let mut metadata = record("t", "", None, CheckpointKind::Snapshot);
    metadata.metadata.insert("text".into(), json!("nul\0value"));
    cases.push(metadata);
    for case in cases {
        let error = checkpointer.put(case.clone(), None).await.unwrap_err();
        assert!(matches!(error, CheckpointError::Encode { .. }), "{case:?}: {error}");
    }
    assert!(checkpointer.list("t", &ListOptions::new()).await.unwrap().is_empty());
    // The pool is still usable after the server rejected a value.
    line(&checkpointer, "t", "", "SD").await;
}

#[tokio::test]
async fn a_closed_pool_is_unavailable_and_not_retryable() {
    let db = database!("a_closed_pool_is_unavailable_and_not_retryable");
    let checkpointer = db.checkpointer().await;
    checkpointer.pool().close().await;
    let error = checkpointer.list("t", &ListOptions::new()).await.unwrap_err();
    assert!(matches!(error, CheckpointError::Unavailable { retryable: false, .. }), "{error}");
}

#[tokio::test]
async fn a_schema_stored_through_a_pool_is_not_sent_again_by_its_checkpointers() {
    let db = database!("a_schema_stored_through_a_pool_is_not_sent_again_by_its_checkpointers");
    let checkpointer = db.checkpointer().await;
    checkpointer.put_schema(7, b"shape".to_vec()).await.unwrap();
    assert_eq!(checkpointer.get_schema(7).await.unwrap().as_deref(), Some(&b"shape"[..]));

    // A guarded checkpointer derived from it (a worker makes one per run) shares what it
    // stored: with the pool closed, storing the same schema again needs no database, while a
    // new one does.
    let fence = dashflow_checkpoint_postgres::FenceTable::new("no_such_table", "thread_id", "epoch");
    let per_run = checkpointer.guarded(dashflow_checkpoint_postgres::WriteGuard::new(&fence, "t", 1));
    checkpointer.pool().close().await;
    per_run.put_schema(7, b"shape".to_vec()).await.unwrap();
    let error = per_run.put_schema(8, b"other".to_vec()).await.unwrap_err();
    assert!(matches!(error, CheckpointError::Unavailable { .. }), "{error:?}");
}

#[tokio::test]
async fn a_refused_put_in_a_callers_transaction_stores_nothing_and_leaves_it_usable() {
    let db = database!("a_refused_put_in_a_callers_transaction_stores_nothing_and_leaves_it_usable");
    let checkpointer = db.checkpointer().await;
    let first = record("tx", "", None, CheckpointKind::Snapshot);
    let second = record("tx", "", Some(&first), CheckpointKind::Delta);
    let mut tx = checkpointer.pool().begin().await.unwrap();
    dashflow_checkpoint_postgres::PostgresCheckpointer::put_in(&mut tx, &first, None).await.unwrap();
    dashflow_checkpoint_postgres::PostgresCheckpointer::put_in(&mut tx, &second, Some(&first.checkpoint_id))
        .await
        .unwrap();

    // A stale expected head, then an id stored already: both refused, neither aborts.
    let stale = record("tx", "", Some(&first), CheckpointKind::Delta);
    let error = dashflow_checkpoint_postgres::PostgresCheckpointer::put_in(&mut tx, &stale, Some(&first.checkpoint_id))
        .await
        .unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    let mut again = first.clone();
    again.parent_id = Some(second.checkpoint_id.clone());
    let error =
        dashflow_checkpoint_postgres::PostgresCheckpointer::put_in(&mut tx, &again, Some(&second.checkpoint_id))
            .await
            .unwrap_err();
    assert!(error.is_conflict(), "{error:?}");

    let third = record("tx", "", Some(&second), CheckpointKind::Delta);
    dashflow_checkpoint_postgres::PostgresCheckpointer::put_in(&mut tx, &third, Some(&second.checkpoint_id))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let listed = checkpointer.list("tx", &ListOptions::new()).await.unwrap();
    assert_eq!(listed, vec![third.clone(), second, first]);
    let head = checkpointer.load("tx", "", None).await.unwrap().unwrap();
    assert_eq!(head.head(), Some(&third));
}

/// A guarded checkpointer told that its thread has no checkpoint answers the first load of the
/// root namespace without reading (a record stored behind its back is not seen), and reads
/// from then on, or as soon as it wrote.
#[tokio::test]
async fn a_checkpointer_told_its_thread_is_empty_skips_only_the_first_root_load() {
    use dashflow_checkpoint_postgres::__private::assuming_an_empty_thread;
    use dashflow_checkpoint_postgres::{FenceTable, WriteGuard};

    let db = crate::support::database!("a_checkpointer_told_its_thread_is_empty_skips_only_the_first_root_load");
    let checkpointer = db.checkpointer().await;
    let mut admin = db.admin().await;
    sqlx::raw_sql("CREATE TABLE fences (thread_id text PRIMARY KEY, epoch bigint NOT NULL); INSERT INTO fences VALUES ('t', 1), ('u', 1)")
        .execute(&mut admin)
        .await
        .unwrap();
    let fence = FenceTable::new("fences", "thread_id", "epoch");
    let told = assuming_an_empty_thread(checkpointer.guarded(WriteGuard::new(&fence, "t", 1)));
    let behind = crate::support::record("t", "", None, dashflow_checkpoint::CheckpointKind::Snapshot);
    checkpointer.put(behind.clone(), None).await.unwrap();

    assert!(told.load("t", "sub", None).await.unwrap().is_none(), "another namespace is read (and empty)");
    assert!(told.load("t", "", None).await.unwrap().is_none(), "the first root load read the thread");
    let loaded = told.load("t", "", None).await.unwrap().expect("the second load reads");
    assert_eq!(loaded.head(), Some(&behind));

    // A write ends the assumption before any load.
    let writer = assuming_an_empty_thread(checkpointer.guarded(WriteGuard::new(&fence, "u", 1)));
    let first = crate::support::record("u", "", None, dashflow_checkpoint::CheckpointKind::Snapshot);
    writer.put(first.clone(), None).await.unwrap();
    let loaded = writer.load("u", "", None).await.unwrap().expect("a load after a write reads");
    assert_eq!(loaded.head(), Some(&first));
}

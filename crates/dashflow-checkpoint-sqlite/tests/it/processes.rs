//! R13 across connections: two checkpointers on one file, as two processes would have.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ListOptions};
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use tokio::sync::Barrier;

use crate::common::record;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_checkpointers_on_one_file_give_exactly_one_winner_per_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let one = Arc::new(SqliteCheckpointer::open(&path).await.unwrap());
    let two = Arc::new(SqliteCheckpointer::open(&path).await.unwrap());
    let mut head = record("t", None, 20);
    one.put(head.clone(), None).await.unwrap();
    for round in 0..5 {
        let writers = 12;
        let barrier = Arc::new(Barrier::new(writers));
        let candidates: Vec<CheckpointRecord> = (0..writers).map(|_| record("t", Some(&head), 20)).collect();
        let tasks: Vec<_> = candidates
            .iter()
            .enumerate()
            .map(|(index, candidate)| {
                let checkpointer = if index % 2 == 0 { Arc::clone(&one) } else { Arc::clone(&two) };
                let (barrier, candidate, expected) =
                    (Arc::clone(&barrier), candidate.clone(), head.checkpoint_id.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    checkpointer.put(candidate, Some(&expected)).await
                })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
        let winners: Vec<&CheckpointRecord> =
            candidates.iter().zip(&results).filter(|(_, result)| result.is_ok()).map(|(c, _)| c).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(
            results.iter().filter_map(|result| result.as_ref().err()).all(|error| error.is_conflict()),
            "round {round}: every loser gets Conflict: {results:?}"
        );
        head = winners[0].clone();
        for checkpointer in [&one, &two] {
            assert_eq!(checkpointer.load("t", "", None).await.unwrap().unwrap().head(), Some(&head));
        }
    }
    assert_eq!(two.list("t", &ListOptions::new()).await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_second_checkpointer_sees_every_commit_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visible.db");
    let writer = SqliteCheckpointer::open(&path).await.unwrap();
    let reader = SqliteCheckpointer::open(&path).await.unwrap();
    let mut head: Option<CheckpointRecord> = None;
    for _ in 0..20 {
        let next = record("t", head.as_ref(), 64);
        writer.put(next.clone(), head.as_ref().map(|head| &head.checkpoint_id)).await.unwrap();
        assert_eq!(reader.load("t", "", None).await.unwrap().unwrap().head(), Some(&next));
        head = Some(next);
    }
}

//! R13 on PostgreSQL: writers in separate pools (as separate processes or hosts would be)
//! racing on one thread. Exactly one advances each head; the others get `Conflict`; the
//! history never forks.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, CheckpointKind, CheckpointRecord, Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use tokio::sync::Barrier;

use crate::support::{assert_linear, database, record};

/// Puts `next` expecting `expected` once `barrier` lets every racer go.
async fn race(
    checkpointer: PostgresCheckpointer,
    barrier: Arc<Barrier>,
    next: CheckpointRecord,
    expected: Option<CheckpointRecord>,
) -> (CheckpointRecord, Result<(), CheckpointError>) {
    barrier.wait().await;
    let result = checkpointer.put(next.clone(), expected.as_ref().map(|record| &record.checkpoint_id)).await;
    (next, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_for_one_head_advance_it_exactly_once_per_round() {
    let db = database!("two_processes_racing_for_one_head_advance_it_exactly_once_per_round");
    let (one, two) = (db.checkpointer().await, db.checkpointer().await);
    let mut head: Option<CheckpointRecord> = None;
    let mut winners = Vec::new();
    for round in 0..40 {
        let barrier = Arc::new(Barrier::new(2));
        let kind = if round % 5 == 0 { CheckpointKind::Snapshot } else { CheckpointKind::Delta };
        let mine = record("race", "", head.as_ref(), kind);
        let theirs = record("race", "", head.as_ref(), kind);
        let (a, b) = tokio::join!(
            tokio::spawn(race(one.clone(), barrier.clone(), mine, head.clone())),
            tokio::spawn(race(two.clone(), barrier, theirs, head.clone())),
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        let won: Vec<&CheckpointRecord> =
            outcomes.iter().filter(|(_, result)| result.is_ok()).map(|(record, _)| record).collect();
        assert_eq!(won.len(), 1, "round {round}: {:?}", outcomes.iter().map(|(_, result)| result).collect::<Vec<_>>());
        let winner = won[0].clone();
        for (_, result) in &outcomes {
            if let Err(error) = result {
                match error {
                    CheckpointError::Conflict { expected, actual, .. } => {
                        let spelled = head.as_ref().map_or("none".to_owned(), |head| head.checkpoint_id.to_string());
                        assert_eq!(expected, &spelled, "round {round}");
                        assert_eq!(actual, &winner.checkpoint_id.to_string(), "round {round}");
                    }
                    other => panic!("round {round}: the loser got {other}, not a conflict"),
                }
            }
        }
        winners.push(winner.clone());
        head = Some(winner);
    }

    let mut listed = one.list("race", &ListOptions::new()).await.unwrap();
    listed.sort_by_key(|record| record.step);
    assert_eq!(listed, winners);
    let head = head.unwrap();
    assert_linear(&listed, &head.checkpoint_id);
    assert_eq!(two.load("race", "", None).await.unwrap().unwrap().head(), Some(&head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_puts_racing_into_an_empty_thread_create_it_exactly_once() {
    let db = database!("first_puts_racing_into_an_empty_thread_create_it_exactly_once");
    let racers = [db.checkpointer().await, db.checkpointer().await, db.checkpointer().await];
    for round in 0..20 {
        let thread = format!("fresh-{round}");
        let barrier = Arc::new(Barrier::new(racers.len()));
        let tasks = racers.iter().map(|checkpointer| {
            let next = record(&thread, "", None, CheckpointKind::Snapshot);
            tokio::spawn(race(checkpointer.clone(), barrier.clone(), next, None))
        });
        let outcomes: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
        let won: Vec<_> = outcomes.iter().filter(|(_, result)| result.is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}");
        for (_, result) in &outcomes {
            if let Err(error) = result {
                assert!(error.is_conflict(), "round {round}: {error}");
            }
        }
        let listed = racers[0].list(&thread, &ListOptions::new()).await.unwrap();
        assert_eq!(listed, vec![won[0].0.clone()]);
    }
}

/// One writer process: keeps continuing the thread from the head it last saw, reloading the
/// head after each conflict; returns the records it was told it stored.
async fn writer(checkpointer: PostgresCheckpointer, name: usize, puts: usize) -> Vec<CheckpointRecord> {
    let mut stored = Vec::new();
    let mut head = checkpointer.load("shared", "", None).await.unwrap().and_then(|loaded| loaded.head().cloned());
    let mut tries = 0;
    while stored.len() < puts {
        tries += 1;
        assert!(tries < puts * 200, "writer {name} starved");
        let mut next = record("shared", "", head.as_ref(), CheckpointKind::Delta);
        next.metadata.insert("writer".into(), name.into());
        match checkpointer.put(next.clone(), head.as_ref().map(|head| &head.checkpoint_id)).await {
            Ok(()) => {
                stored.push(next.clone());
                head = Some(next);
            }
            Err(CheckpointError::Conflict { .. }) => {
                head = checkpointer.load("shared", "", None).await.unwrap().and_then(|loaded| loaded.head().cloned());
            }
            Err(other) => panic!("writer {name}: {other}"),
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writers_on_one_thread_never_fork_its_history() {
    let db = database!("many_writers_on_one_thread_never_fork_its_history");
    let first = db.checkpointer().await;
    let root = record("shared", "", None, CheckpointKind::Snapshot);
    first.put(root.clone(), None).await.unwrap();
    let mut tasks = Vec::new();
    for name in 0..4 {
        let checkpointer = if name == 0 { first.clone() } else { db.checkpointer().await };
        tasks.push(tokio::spawn(writer(checkpointer, name, 15)));
    }
    let mut acknowledged = vec![root];
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }

    let listed = first.list("shared", &ListOptions::new()).await.unwrap();
    assert_eq!(listed.len(), acknowledged.len(), "every acknowledged put is stored, and nothing else");
    for record in &acknowledged {
        assert!(listed.contains(record), "acknowledged {} is missing or changed", record.checkpoint_id);
    }
    let head = first.load("shared", "", None).await.unwrap().unwrap();
    assert_linear(&listed, &head.head().unwrap().checkpoint_id);
    assert_eq!(head.chain.len(), listed.len(), "the head's chain reaches the root snapshot through every put");
}

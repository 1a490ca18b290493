//! Concurrent writers: one winner per head, no interference between threads.

use std::sync::Arc;

use dashflow_checkpoint::{CheckpointError, CheckpointRecord, Checkpointer, ListOptions};
use tokio::sync::Barrier;

use crate::error::{ensure, ensure_eq};
use crate::fixture::{contract, delta, ensure_chain, line, list, load_some, snapshot};
use crate::{Error, Result};

/// How many writers race in each round.
const WRITERS: usize = 16;

/// Races `candidates`, all expecting `expected`, from separately spawned tasks released
/// together; returns each put's result, in candidate order.
async fn race(
    checkpointer: &Arc<dyn Checkpointer>,
    candidates: Vec<CheckpointRecord>,
    expected: Option<&CheckpointRecord>,
) -> Result<Vec<Result<(), CheckpointError>>> {
    let barrier = Arc::new(Barrier::new(candidates.len()));
    let expected = expected.map(|record| record.checkpoint_id.clone());
    let tasks: Vec<_> = candidates
        .into_iter()
        .map(|candidate| {
            let (checkpointer, barrier, expected) = (Arc::clone(checkpointer), Arc::clone(&barrier), expected.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                checkpointer.put(candidate, expected.as_ref()).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.map_err(|source| Error::Task { source })?);
    }
    Ok(results)
}

/// Checks that exactly one of the raced puts won and every other got a `Conflict`; returns
/// the winner.
fn one_winner(
    candidates: &[CheckpointRecord],
    results: &[Result<(), CheckpointError>],
    round: usize,
) -> Result<CheckpointRecord> {
    let winners: Vec<&CheckpointRecord> =
        candidates.iter().zip(results).filter(|(_, result)| result.is_ok()).map(|(candidate, _)| candidate).collect();
    ensure_eq!(winners.len(), 1, "number of successful puts among {WRITERS} racing on one head (round {round})");
    if let Some(error) = results.iter().filter_map(|result| result.as_ref().err()).find(|error| !error.is_conflict()) {
        return Err(contract(format!("a losing racer got `{error}` instead of Conflict (round {round})")));
    }
    Ok(winners[0].clone())
}

/// Writers racing with the same expected head: exactly one put succeeds, the others get
/// `Conflict`, and the thread holds the winner alone (history never forks silently).
pub async fn one_winner_per_expected_head(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let mut chain = line(cp, "t", "", "S").await?;
    for round in 0..3 {
        let head = chain.last().cloned().ok_or_else(|| contract("the line is empty".to_owned()))?;
        let candidates: Vec<CheckpointRecord> = (0..WRITERS).map(|_| delta("t", "", &head)).collect();
        let results = race(&checkpointer, candidates.clone(), Some(&head)).await?;
        chain.push(one_winner(&candidates, &results, round)?);
    }
    let loaded = load_some(cp, "t", "", None).await?;
    ensure_chain(&loaded, &chain.iter().collect::<Vec<_>>(), "latest after three rounds of racing writers")?;
    let listed = list(cp, "t", &ListOptions::new()).await?;
    ensure_eq!(listed.len(), chain.len(), "number of checkpoints stored after three rounds");
    Ok(())
}

/// Writers racing to start the same new thread (all expecting `None`): exactly one wins.
pub async fn one_winner_on_an_empty_thread(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let candidates: Vec<CheckpointRecord> = (0..WRITERS).map(|_| snapshot("t", "", None)).collect();
    let results = race(&checkpointer, candidates.clone(), None).await?;
    let winner = one_winner(&candidates, &results, 0)?;
    let loaded = load_some(checkpointer.as_ref(), "t", "", None).await?;
    ensure_chain(&loaded, &[&winner], "latest after racing to start a thread")
}

/// Writers on distinct threads never conflict: all their puts succeed.
pub async fn distinct_threads_all_succeed(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (checkpointer, barrier) = (Arc::clone(&checkpointer), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let thread = format!("thread-{writer}");
                line(checkpointer.as_ref(), &thread, "", "SDDDDSDDDD").await
            })
        })
        .collect();
    let mut lines = Vec::with_capacity(WRITERS);
    for task in tasks {
        lines.push(task.await.map_err(|source| Error::Task { source })??);
    }
    for (writer, records) in lines.iter().enumerate() {
        let thread = format!("thread-{writer}");
        let listed = list(checkpointer.as_ref(), &thread, &ListOptions::new()).await?;
        ensure!(
            listed.iter().map(|r| &r.checkpoint_id).eq(records.iter().rev().map(|r| &r.checkpoint_id)),
            "thread `{thread}` does not hold exactly its own ten checkpoints"
        );
    }
    Ok(())
}

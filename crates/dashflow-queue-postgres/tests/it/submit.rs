//! Submits of concurrent callers made in groups: one commit for the group, each submit with
//! its own outcome, a failed group made again one submit at a time.
//!
//! The tests run on the current-thread runtime: every submit is polled once (which hands it to
//! the pool's submitter) before the submitter first runs, so the submits waiting together are
//! exactly the ones the test made.

use dashflow_queue::{Multitask, NewRun, QueueError, Result, RunQueue, RunState};
use dashflow_queue_postgres::PostgresRunQueue;
use sqlx::PgConnection;

use crate::support::{Pending, claim_one, queue, run, together, worker};

fn submit<'a>(queue: &'a PostgresRunQueue, run: &NewRun) -> Pending<'a, Result<RunState>> {
    queue.submit(run.clone())
}

/// How many transactions wrote the runs with these ids, and their start tags in that order.
async fn stored(conn: &mut PgConnection, runs: &[&NewRun]) -> (i64, Vec<i64>) {
    let ids: Vec<&str> = runs.iter().map(|run| run.run_id.as_str()).collect();
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM dashflow_runs WHERE run_id = ANY ($1)")
            .bind(&ids)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let mut tags = Vec::new();
    for id in ids {
        tags.push(
            sqlx::query_scalar("SELECT vtime FROM dashflow_runs WHERE run_id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
        );
    }
    (transactions, tags)
}

#[tokio::test]
async fn submits_of_many_threads_waiting_together_share_one_commit_and_keep_their_order() {
    let test = "submits_of_many_threads_waiting_together_share_one_commit_and_keep_their_order";
    let Some((db, queue)) = queue(test).await else { return };
    let runs: Vec<NewRun> = (0..10).map(|n| run(&format!("t{n}"))).collect();
    let outcomes = together(runs.iter().map(|run| submit(&queue, run)).collect()).await;
    for (n, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.as_ref().ok(), Some(&RunState::Queued), "submit {n}: {outcome:?}");
    }
    let mut admin = db.admin().await;
    let (transactions, tags) = stored(&mut admin, &runs.iter().collect::<Vec<_>>()).await;
    assert_eq!(transactions, 1);
    assert!(tags.windows(2).all(|pair| pair[0] < pair[1]), "start tags out of submission order: {tags:?}");
}

#[tokio::test]
async fn a_group_gives_each_submit_its_own_outcome() {
    let test = "a_group_gives_each_submit_its_own_outcome";
    let Some((_db, queue)) = queue(test).await else { return };
    worker(&queue, "w").await;
    queue.submit(run("busy")).await.unwrap();
    let active = claim_one(&queue, "w").await;
    let again = run("again");
    queue.submit(again.clone()).await.unwrap();

    let fresh = run("fresh");
    let rejected = run("busy");
    let behind = run("busy").multitask(Multitask::Enqueue);
    let outcomes = together(vec![
        submit(&queue, &fresh),
        submit(&queue, &rejected),
        submit(&queue, &again),
        submit(&queue, &behind),
    ])
    .await;

    assert_eq!(outcomes[0].as_ref().ok(), Some(&RunState::Queued));
    match &outcomes[1] {
        Err(QueueError::ThreadBusy { thread_id, active_run }) => {
            assert_eq!(thread_id, "busy");
            assert_eq!(active_run, &active.lease.run_id);
        }
        other => panic!("a submit to a busy thread: {other:?}"),
    }
    assert_eq!(outcomes[2].as_ref().ok(), Some(&RunState::Queued), "the same run submitted again is the one stored");
    assert_eq!(outcomes[3].as_ref().ok(), Some(&RunState::Pending), "an enqueue behind the active run waits");
    assert!(queue.get(&rejected.run_id).await.unwrap().is_none(), "a rejected submit stored its run");
    assert_eq!(queue.get(&behind.run_id).await.unwrap().unwrap().state, RunState::Pending);
}

#[tokio::test]
async fn a_group_whose_statement_fails_makes_each_submit_alone_and_fails_only_the_culprit() {
    let test = "a_group_whose_statement_fails_makes_each_submit_alone_and_fails_only_the_culprit";
    let Some((db, queue)) = queue(test).await else { return };
    let mut admin = db.admin().await;
    // A trigger stands for any failure one run causes inside the shared statement.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.input = 'poison' THEN RAISE EXCEPTION 'poisoned run'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON dashflow_runs
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let mut runs: Vec<NewRun> = (0..5).map(|n| run(&format!("t{n}"))).collect();
    runs[2].input = b"poison".to_vec();
    let outcomes = together(runs.iter().map(|run| submit(&queue, run)).collect()).await;

    assert!(matches!(outcomes[2], Err(QueueError::Unavailable { .. })), "the poisoned submit: {:?}", outcomes[2]);
    assert!(queue.get(&runs[2].run_id).await.unwrap().is_none());
    for n in [0, 1, 3, 4] {
        assert_eq!(outcomes[n].as_ref().ok(), Some(&RunState::Queued), "submit {n}: {:?}", outcomes[n]);
        assert_eq!(queue.get(&runs[n].run_id).await.unwrap().unwrap().state, RunState::Queued);
    }
}

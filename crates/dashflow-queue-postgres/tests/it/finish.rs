//! Finishes of concurrent runs made in groups: one commit for the group, each finish with its
//! own fence check and outcome, the group's notifications sent once it committed, a group the
//! server refuses made again one finish at a time.
//!
//! The tests run on the current-thread runtime (see `support::together`).

use dashflow_queue::{ClaimedRun, Finish, Multitask, QueueError, Result, RunQueue, RunState};
use dashflow_queue_postgres::PostgresRunQueue;
use sqlx::postgres::PgListener;

use crate::support::{Pending, queue, run, running, together, transactions};

fn finish<'a>(queue: &'a PostgresRunQueue, claimed: &'a ClaimedRun, how: Finish) -> Pending<'a, Result<()>> {
    queue.finish(&claimed.lease, how)
}

#[tokio::test]
async fn finishes_of_many_runs_waiting_together_share_one_commit() {
    let test = "finishes_of_many_runs_waiting_together_share_one_commit";
    let Some((db, queue)) = queue(test).await else { return };
    let threads: Vec<String> = (0..8).map(|n| format!("t{n}")).collect();
    let claimed = running(&queue, &threads.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let outcomes = together(
        claimed
            .iter()
            .map(|claimed| finish(&queue, claimed, Finish::new(RunState::Completed, Some("c1".to_owned()))))
            .collect(),
    )
    .await;

    for (n, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.is_ok(), "finish {n}: {outcome:?}");
        let record = queue.get(&claimed[n].lease.run_id).await.unwrap().unwrap();
        assert_eq!((record.state, record.checkpoint_id.as_deref()), (RunState::Completed, Some("c1")));
    }
    let ids: Vec<&str> = claimed.iter().map(|claimed| claimed.lease.run_id.as_str()).collect();
    assert_eq!(transactions(&mut db.admin().await, "dashflow_runs", "run_id", &ids).await, 1);
}

#[tokio::test]
async fn a_group_gives_each_finish_its_own_outcome_and_announces_only_what_ended() {
    let test = "a_group_gives_each_finish_its_own_outcome_and_announces_only_what_ended";
    let Some((db, queue)) = queue(test).await else { return };
    let claimed = running(&queue, &["ends", "lost", "promotes"]).await;
    let mut admin = db.admin().await;
    // Another owner's claim moved the fence of `lost` on.
    sqlx::query("UPDATE dashflow_thread_fences SET epoch = epoch + 1 WHERE thread_id = 'lost'")
        .execute(&mut admin)
        .await
        .unwrap();
    let behind = run("promotes").multitask(Multitask::Enqueue);
    assert_eq!(queue.submit(behind.clone()).await.unwrap(), RunState::Pending);
    let mut listener = PgListener::connect_with(&db.pool().await).await.unwrap();
    listener.listen_all(["dashflow_done", "dashflow_wake"]).await.unwrap();

    let outcomes = together(vec![
        finish(&queue, &claimed[0], Finish::new(RunState::Completed, None)),
        finish(&queue, &claimed[1], Finish::new(RunState::Completed, None)),
        finish(&queue, &claimed[2], Finish::failed("it broke", None)),
    ])
    .await;

    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    match &outcomes[1] {
        Err(QueueError::LeaseLost { run_id, epoch, .. }) => {
            assert_eq!((run_id, *epoch), (&claimed[1].lease.run_id, claimed[1].lease.epoch));
        }
        other => panic!("a finish under a moved fence: {other:?}"),
    }
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert_eq!(queue.get(&claimed[1].lease.run_id).await.unwrap().unwrap().state, RunState::Running);
    let failed = queue.get(&claimed[2].lease.run_id).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.error.as_deref()), (RunState::Failed, Some("it broke")));
    assert_eq!(queue.get(&behind.run_id).await.unwrap().unwrap().state, RunState::Queued, "not promoted");

    // The group's notifications went before its finishes returned: a marker sent now comes
    // after them all.
    let marker = format!("{}-marker", db.schema());
    sqlx::query("SELECT pg_notify('dashflow_done', $1)").bind(&marker).execute(&mut admin).await.unwrap();
    let mine = [claimed[0].lease.run_id.as_str(), claimed[1].lease.run_id.as_str(), claimed[2].lease.run_id.as_str()];
    let mut heard = Vec::new();
    let mut woken = false;
    loop {
        let note = tokio::time::timeout(std::time::Duration::from_secs(30), listener.recv()).await.unwrap().unwrap();
        match note.channel() {
            "dashflow_done" if note.payload() == marker => break,
            "dashflow_done" if mine.contains(&note.payload()) => heard.push(note.payload().to_owned()),
            "dashflow_wake" if note.payload() == db.schema() => woken = true,
            _ => {}
        }
    }
    assert_eq!(heard, [mine[0], mine[2]], "announced: the runs that ended, once each");
    assert!(woken, "a promotion wakes the workers");
}

#[tokio::test]
async fn a_group_the_server_refuses_makes_each_finish_alone_and_fails_only_the_culprit() {
    let test = "a_group_the_server_refuses_makes_each_finish_alone_and_fails_only_the_culprit";
    let Some((db, queue)) = queue(test).await else { return };
    let claimed = running(&queue, &["t0", "t1", "t2", "t3"]).await;
    // A trigger stands for any failure one run causes inside the shared statement.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.error = 'poison' THEN RAISE EXCEPTION 'poisoned finish'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE UPDATE ON dashflow_runs
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut db.admin().await)
    .await
    .unwrap();

    let how = |n: usize| {
        if n == 1 { Finish::failed("poison", None) } else { Finish::new(RunState::Completed, None) }
    };
    let outcomes =
        together(claimed.iter().enumerate().map(|(n, claimed)| finish(&queue, claimed, how(n))).collect()).await;

    assert!(
        matches!(&outcomes[1], Err(QueueError::Unavailable { retryable: false, .. })),
        "the poisoned finish: {:?}",
        outcomes[1]
    );
    assert_eq!(queue.get(&claimed[1].lease.run_id).await.unwrap().unwrap().state, RunState::Running);
    for n in [0, 2, 3] {
        assert!(outcomes[n].is_ok(), "finish {n}: {:?}", outcomes[n]);
        assert_eq!(queue.get(&claimed[n].lease.run_id).await.unwrap().unwrap().state, RunState::Completed);
    }
}

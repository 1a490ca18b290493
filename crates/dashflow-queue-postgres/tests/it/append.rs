//! Appends of concurrent runs' event batches made in groups: one commit for the group, each
//! batch under its own run's fence and numbered in its own stream, a group the server refuses
//! made again one batch at a time.
//!
//! The tests run on the current-thread runtime (see `support::together`).

use std::sync::Arc;

use dashflow_queue::{ClaimedRun, QueueError, Result, RunQueue, RunStreams, StreamEntry};
use serde_json::json;

use crate::support::{Pending, queue, running, together, transactions};

fn entries(steps: &[Option<i64>], tag: &str) -> Vec<StreamEntry> {
    steps.iter().map(|step| StreamEntry::new(*step, json!({ "by": tag, "step": step }))).collect()
}

fn append<'a>(
    streams: &'a Arc<dyn RunStreams>,
    claimed: &'a ClaimedRun,
    batch: &'a [StreamEntry],
) -> Pending<'a, Result<i64>> {
    streams.append(&claimed.lease, 1, batch)
}

#[tokio::test]
async fn appends_of_many_runs_waiting_together_share_one_commit_and_continue_each_stream() {
    let test = "appends_of_many_runs_waiting_together_share_one_commit_and_continue_each_stream";
    let Some((db, queue)) = queue(test).await else { return };
    let streams = queue.streams().unwrap();
    let claimed = running(&queue, &["t0", "t1", "t2", "t3", "t4"]).await;
    // Streams of different lengths before the group.
    for (n, claimed) in claimed.iter().enumerate() {
        let before: Vec<Option<i64>> = (0..n).map(|step| Some(step as i64)).collect();
        streams.append(&claimed.lease, 1, &entries(&before, "alone")).await.unwrap();
    }
    let batches: Vec<Vec<StreamEntry>> =
        (0..claimed.len()).map(|n| entries(&[Some(7), None, Some(8)], &format!("group {n}"))).collect();

    let outcomes =
        together(claimed.iter().zip(&batches).map(|(claimed, batch)| append(&streams, claimed, batch)).collect()).await;

    for (n, claimed) in claimed.iter().enumerate() {
        assert_eq!(outcomes[n].as_ref().ok(), Some(&(n as i64 + 3)), "append {n}: {:?}", outcomes[n]);
        let items = streams.read(&claimed.lease.run_id, 0, 100).await.unwrap();
        let seqs: Vec<i64> = items.iter().map(|item| item.seq).collect();
        assert_eq!(seqs, (1..=n as i64 + 3).collect::<Vec<_>>());
        let grouped: Vec<(Option<i64>, serde_json::Value)> =
            items[n..].iter().map(|item| (item.step, item.payload["by"].clone())).collect();
        let by = json!(format!("group {n}"));
        assert_eq!(grouped, [(Some(7), by.clone()), (None, by.clone()), (Some(8), by)]);
    }
    let ids: Vec<&str> = claimed.iter().map(|claimed| claimed.lease.run_id.as_str()).collect();
    let mut admin = db.admin().await;
    let query = "SELECT count(DISTINCT xmin::text) FROM dashflow_run_events WHERE run_id = ANY ($1) AND payloads::text LIKE '%group%'";
    let grouped: i64 = sqlx::query_scalar(query).bind(&ids).fetch_one(&mut admin).await.unwrap();
    assert_eq!(grouped, 1, "the group's batches took more than one commit");
    assert_eq!(transactions(&mut admin, "dashflow_run_events", "run_id", &ids).await, 5, "four alone, one group");
}

#[tokio::test]
async fn a_batch_under_a_moved_fence_stores_nothing_and_the_rest_of_its_group_lands() {
    let test = "a_batch_under_a_moved_fence_stores_nothing_and_the_rest_of_its_group_lands";
    let Some((db, queue)) = queue(test).await else { return };
    let streams = queue.streams().unwrap();
    let claimed = running(&queue, &["a", "lost", "c"]).await;
    sqlx::query("UPDATE dashflow_thread_fences SET epoch = epoch + 1 WHERE thread_id = 'lost'")
        .execute(&mut db.admin().await)
        .await
        .unwrap();
    let batch = entries(&[Some(1), Some(2)], "w");

    let outcomes = together(claimed.iter().map(|claimed| append(&streams, claimed, &batch)).collect()).await;

    assert_eq!(outcomes[0].as_ref().ok(), Some(&2));
    match &outcomes[1] {
        Err(QueueError::LeaseLost { run_id, .. }) => assert_eq!(run_id, &claimed[1].lease.run_id),
        other => panic!("an append under a moved fence: {other:?}"),
    }
    assert_eq!(outcomes[2].as_ref().ok(), Some(&2));
    assert!(streams.read(&claimed[1].lease.run_id, 0, 10).await.unwrap().is_empty());
    assert_eq!(streams.read(&claimed[2].lease.run_id, 0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_group_the_server_refuses_makes_each_append_alone_and_fails_only_the_culprit() {
    let test = "a_group_the_server_refuses_makes_each_append_alone_and_fails_only_the_culprit";
    let Some((db, queue)) = queue(test).await else { return };
    let streams = queue.streams().unwrap();
    let claimed = running(&queue, &["t0", "t1", "t2"]).await;
    // A trigger stands for any failure one batch causes inside the shared statement.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.payloads::text LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned batch'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON dashflow_run_events
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut db.admin().await)
    .await
    .unwrap();
    let batches = [entries(&[Some(1)], "fine"), entries(&[Some(1)], "poison"), entries(&[Some(1), Some(2)], "fine")];

    let outcomes =
        together(claimed.iter().zip(&batches).map(|(claimed, batch)| append(&streams, claimed, batch)).collect()).await;

    assert_eq!(outcomes[0].as_ref().ok(), Some(&1));
    assert!(matches!(&outcomes[1], Err(QueueError::Unavailable { retryable: false, .. })), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2].as_ref().ok(), Some(&2));
    assert!(streams.read(&claimed[1].lease.run_id, 0, 10).await.unwrap().is_empty());
}

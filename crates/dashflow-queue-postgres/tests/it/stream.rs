//! Run event streams: fenced appends, numbering across takeovers, re-reading, trimming.

use std::time::Duration;

use dashflow_checkpoint_postgres::testing::TestDatabase;
use dashflow_queue::{Finish, QueueError, RunQueue, RunState, StreamEntry, Wake};
use dashflow_queue_postgres::PostgresRunQueue;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::support::{claim_one, queue, run, worker};

fn entries(steps: &[Option<i64>], tag: &str) -> Vec<StreamEntry> {
    steps.iter().map(|step| StreamEntry::new(*step, json!({ "by": tag, "step": step }))).collect()
}

#[tokio::test]
async fn a_takeover_continues_the_stream_and_a_former_owners_append_stores_nothing() {
    let test = "a_takeover_continues_the_stream_and_a_former_owners_append_stores_nothing";
    let Some((_db, queue)) = queue(test).await else { return };
    let streams = queue.streams().expect("the PostgreSQL queue keeps streams");
    worker(&queue, "w1").await;
    worker(&queue, "w2").await;
    let submitted = run("t");
    queue.submit(submitted.clone()).await.unwrap();
    let first = claim_one(&queue, "w1").await;
    assert_eq!(streams.append(&first.lease, 1, &entries(&[None, Some(1), Some(2)], "w1")).await.unwrap(), 3);
    // The run changes owner: released, then claimed by w2 with a higher epoch.
    queue.release(&first.lease, "test").await.unwrap();
    let second = claim_one(&queue, "w2").await;
    assert!(second.lease.epoch > first.lease.epoch);
    match streams.append(&first.lease, 1, &entries(&[Some(3)], "w1 late")).await {
        Err(QueueError::LeaseLost { run_id, .. }) => assert_eq!(run_id, submitted.run_id),
        other => panic!("a former owner's append must be LeaseLost, got {other:?}"),
    }
    assert_eq!(streams.append(&second.lease, 2, &entries(&[Some(2), Some(3), None], "w2")).await.unwrap(), 6);

    let items = streams.read(&submitted.run_id, 0, 100).await.unwrap();
    let seqs: Vec<i64> = items.iter().map(|item| item.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "numbered without gaps across the takeover");
    assert!(items.iter().all(|item| item.payload["by"] != "w1 late"), "the late append stored something");
    let by: Vec<(i32, bool)> = items.iter().map(|item| (item.attempt, item.rerun)).collect();
    // Step 2 was reached by the first attempt: the second attempt's step 2 is a re-run.
    assert_eq!(by, [(1, false), (1, false), (1, false), (2, true), (2, false), (2, false)]);
    assert!(items.windows(2).all(|pair| pair[0].epoch <= pair[1].epoch));

    // Re-reading after item 4 yields exactly the rest.
    let rest = streams.read(&submitted.run_id, 4, 100).await.unwrap();
    assert_eq!(rest, items[4..].to_vec());
    assert_eq!(streams.read(&submitted.run_id, 2, 1).await.unwrap(), items[2..3].to_vec());
}

#[tokio::test]
async fn a_steal_during_a_stream_of_appends_puts_no_old_item_after_a_new_one() {
    let test = "a_steal_during_a_stream_of_appends_puts_no_old_item_after_a_new_one";
    let Some((_db, queue)) = queue(test).await else { return };
    let streams = queue.streams().unwrap();
    worker(&queue, "w1").await;
    worker(&queue, "w2").await;
    let submitted = run("t");
    queue.submit(submitted.clone()).await.unwrap();
    let first = claim_one(&queue, "w1").await;
    let old = {
        let (streams, lease) = (streams.clone(), first.lease.clone());
        tokio::spawn(async move {
            // Appends until the steal refuses one: the steal lands mid-stream.
            let mut stored = 0;
            loop {
                match streams.append(&lease, 1, &entries(&[Some(stored)], "old")).await {
                    Ok(_) => stored += 1,
                    Err(QueueError::LeaseLost { .. }) => return usize::try_from(stored).unwrap(),
                    Err(error) => panic!("{error}"),
                }
            }
        })
    };
    // Let some old appends land, then take the run over mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while streams.read(&submitted.run_id, 0, 10).await.unwrap().len() < 5 {
        assert!(tokio::time::Instant::now() < deadline, "the old owner appended nothing");
        tokio::task::yield_now().await;
    }
    queue.release(&first.lease, "test").await.unwrap();
    let second = claim_one(&queue, "w2").await;
    for n in 0..20 {
        streams.append(&second.lease, 2, &entries(&[Some(n)], "new")).await.unwrap();
    }
    let stored_old = old.await.unwrap();
    let items = streams.read(&submitted.run_id, 0, 1000).await.unwrap();
    assert_eq!(items.len(), stored_old + 20);
    let seqs: Vec<i64> = items.iter().map(|item| item.seq).collect();
    assert_eq!(seqs, (1..=items.len() as i64).collect::<Vec<_>>());
    let first_new = items.iter().position(|item| item.payload["by"] == "new").unwrap();
    assert!(items[first_new..].iter().all(|item| item.payload["by"] == "new"), "an old append landed after a new one");
}

#[tokio::test]
async fn appends_wake_followers_and_ended_runs_streams_are_trimmed() {
    let test = "appends_wake_followers_and_ended_runs_streams_are_trimmed";
    let Some((_db, queue)) = queue(test).await else { return };
    let streams = queue.streams().unwrap();
    worker(&queue, "w").await;
    let (ended, running) = (run("ended"), run("running"));
    queue.submit(ended.clone()).await.unwrap();
    queue.submit(running.clone()).await.unwrap();
    let mut wakeups = streams.wakeups().await.unwrap().expect("PostgreSQL streams wake followers");
    let a = claim_one(&queue, "w").await;
    let b = claim_one(&queue, "w").await;
    streams.append(&a.lease, 1, &entries(&[Some(1)], "a")).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(Wake::Events(run_id)) = wakeups.next().await
                && run_id == a.lease.run_id
            {
                return;
            }
        }
    })
    .await;
    assert!(woke.is_ok(), "no wake-up for the append");
    streams.append(&b.lease, 1, &entries(&[Some(1)], "b")).await.unwrap();
    let done = if a.lease.run_id == ended.run_id { &a } else { &b };
    queue.finish(&done.lease, Finish::new(RunState::Completed, None)).await.unwrap();
    // Kept while within the retention; gone after it; a running run's stream stays.
    assert_eq!(streams.trim(Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(streams.trim(Duration::ZERO).await.unwrap(), 1);
    assert!(streams.read(&ended.run_id, 0, 10).await.unwrap().is_empty());
    assert_eq!(streams.read(&running.run_id, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_follow_from_the_middle_of_an_append_returns_exactly_the_items_after_it() {
    let test = "a_follow_from_the_middle_of_an_append_returns_exactly_the_items_after_it";
    let Some((_db, queue)) = queue(test).await else { return };
    let streams = queue.streams().unwrap();
    worker(&queue, "w").await;
    let submitted = run("t");
    queue.submit(submitted.clone()).await.unwrap();
    let claimed = claim_one(&queue, "w").await;
    let first = [None, Some(0), Some(0), Some(1), Some(1)];
    assert_eq!(streams.append(&claimed.lease, 1, &entries(&first, "a")).await.unwrap(), 5);
    assert_eq!(streams.append(&claimed.lease, 1, &entries(&[Some(2), Some(2), None], "b")).await.unwrap(), 8);
    // One row per append, each holding its items.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dashflow_run_events WHERE run_id = $1")
        .bind(&submitted.run_id)
        .fetch_one(queue.pool())
        .await
        .unwrap();
    assert_eq!(rows, 2);

    let all = streams.read(&submitted.run_id, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|item| item.seq).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    let steps: Vec<Option<i64>> = all.iter().map(|item| item.step).collect();
    assert_eq!(steps, [None, Some(0), Some(0), Some(1), Some(1), Some(2), Some(2), None]);
    assert!(all.iter().all(|item| !item.rerun && item.attempt == 1 && item.epoch == claimed.lease.epoch));
    for (item, step) in all.iter().zip(&steps) {
        assert_eq!(item.payload, json!({ "by": if item.seq <= 5 { "a" } else { "b" }, "step": step }));
    }
    // From any item, inside a row or at its edge, with any limit: exactly the items after it.
    for after in 0..=8 {
        for limit in 1..=9 {
            let read = streams.read(&submitted.run_id, after, limit).await.unwrap();
            let from = usize::try_from(after).unwrap();
            let expected = all[from..all.len().min(from + limit)].to_vec();
            assert_eq!(read, expected, "after {after}, limit {limit}");
        }
    }
    assert!(streams.read(&submitted.run_id, 8, 10).await.unwrap().is_empty());
    assert_eq!(streams.read(&submitted.run_id, -3, 2).await.unwrap(), all[..2].to_vec());
    assert!(streams.read(&submitted.run_id, i64::MAX, usize::MAX).await.unwrap().is_empty());
    // Trimming counts items, not rows.
    queue.finish(&claimed.lease, Finish::new(RunState::Completed, None)).await.unwrap();
    assert_eq!(streams.trim(Duration::ZERO).await.unwrap(), 8);
    assert!(streams.read(&submitted.run_id, 0, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn streams_stored_an_item_a_row_read_the_same_after_the_upgrade_and_go_on() {
    let test = "streams_stored_an_item_a_row_read_the_same_after_the_upgrade_and_go_on";
    let Some(db) = TestDatabase::from_env(test).await else { return };
    let checkpointer = db.checkpointer().await;
    let mut admin = PgConnection::connect_with(&db.connect_options()).await.unwrap();
    // The queue's schema as version 4 left it: a row per item.
    for sql in [
        include_str!("../../migrations/0001_initial.sql"),
        include_str!("../../migrations/0002_round_trips.sql"),
        include_str!("../../migrations/0003_run_events.sql"),
        include_str!("../../migrations/0004_submits_and_notifications.sql"),
    ] {
        sqlx::raw_sql(sql).execute(&mut admin).await.unwrap();
    }
    sqlx::raw_sql(
        "CREATE TABLE dashflow_queue_migrations (
             version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO dashflow_queue_migrations (version, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let submitted = run("t");
    // Two attempts of one run: the second re-ran step 2.
    let old = [
        (1, 1, None, "2026-12-06 10:00:00+00"),
        (1, 1, Some(1), "2026-12-06 10:00:00+00"),
        (1, 1, Some(2), "2026-12-06 10:00:01+00"),
        (2, 2, Some(2), "2026-12-06 10:00:05+00"),
        (2, 2, Some(3), "2026-12-06 10:00:05+00"),
    ];
    for (seq, (epoch, attempt, step, at)) in (1_i64..).zip(old) {
        sqlx::query(
            "INSERT INTO dashflow_run_events (run_id, seq, epoch, attempt, step, at, payload)
             VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7::json)",
        )
        .bind(&submitted.run_id)
        .bind(seq)
        .bind(epoch)
        .bind(attempt)
        .bind(step)
        .bind(at)
        .bind(json!({ "old": seq }).to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    }

    let queue = PostgresRunQueue::new(checkpointer).await.unwrap();
    let version: i64 =
        sqlx::query_scalar("SELECT max(version) FROM dashflow_queue_migrations").fetch_one(&mut admin).await.unwrap();
    assert_eq!(version, PostgresRunQueue::schema_version());
    let streams = queue.streams().unwrap();
    let items = streams.read(&submitted.run_id, 0, 100).await.unwrap();
    let read: Vec<_> = items.iter().map(|item| (item.seq, item.epoch, item.attempt, item.step, item.rerun)).collect();
    assert_eq!(
        read,
        [
            (1, 1, 1, None, false),
            (2, 1, 1, Some(1), false),
            (3, 1, 1, Some(2), false),
            (4, 2, 2, Some(2), true),
            (5, 2, 2, Some(3), false)
        ]
    );
    assert!(items.iter().all(|item| item.payload == json!({ "old": item.seq })));
    assert_eq!(items[0].at_ms, 1_796_551_200_000);
    assert_eq!(streams.read(&submitted.run_id, 3, 1).await.unwrap(), items[3..4].to_vec());

    // The run's next owner appends after the old items, in the new layout.
    worker(&queue, "w").await;
    queue.submit(submitted.clone()).await.unwrap();
    let claimed = claim_one(&queue, "w").await;
    assert_eq!(streams.append(&claimed.lease, 3, &entries(&[Some(3), Some(4)], "new")).await.unwrap(), 7);
    let rest = streams.read(&submitted.run_id, 4, 100).await.unwrap();
    assert_eq!(rest.iter().map(|item| item.seq).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(rest[1].payload, json!({ "by": "new", "step": 3 }));
}

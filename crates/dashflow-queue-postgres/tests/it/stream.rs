//! Run event streams: fenced appends, numbering across takeovers, re-reading, trimming.

use std::time::Duration;

use dashflow_queue::{Finish, QueueError, RunQueue, RunState, StreamEntry, Wake};
use serde_json::json;

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

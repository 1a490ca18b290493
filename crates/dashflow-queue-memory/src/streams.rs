//! Run event streams in memory, appended under the fence like a checkpoint write.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashflow_queue::{Lease, QueueError, Result, RunStreams, StreamEntry, StreamItem, Wake, Wakeups};

use crate::queue::{MemoryWakeups, Shared};

/// One stored item; `rerun` is worked out when read, from the items of earlier epochs.
#[derive(Clone, Debug)]
pub(crate) struct StoredItem {
    epoch: i64,
    attempt: i32,
    step: Option<i64>,
    at_ms: i64,
    payload: serde_json::Value,
}

/// The event streams of a [`MemoryRunQueue`](crate::MemoryRunQueue)'s runs (its `streams()`).
#[derive(Clone)]
pub(crate) struct MemoryRunStreams {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryRunStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRunStreams").finish_non_exhaustive()
    }
}

impl MemoryRunStreams {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl RunStreams for MemoryRunStreams {
    async fn append(&self, lease: &Lease, attempt: i32, entries: &[StreamEntry]) -> Result<i64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let now = self.shared.now();
        let mut state = self.shared.state.lock().await;
        if state.fences.get(&lease.thread_id) != Some(&lease.epoch) {
            return Err(QueueError::LeaseLost {
                run_id: lease.run_id.clone(),
                epoch: lease.epoch,
                why: "the thread's fence epoch moved on: another worker owns the run's stream".into(),
            });
        }
        let items = state.streams.entry(lease.run_id.clone()).or_default();
        items.extend(entries.iter().map(|entry| StoredItem {
            epoch: lease.epoch,
            attempt,
            step: entry.step,
            at_ms: now,
            payload: entry.payload.clone(),
        }));
        let last = i64::try_from(items.len()).unwrap_or(i64::MAX);
        drop(state);
        let _unheard = self.shared.events.send(Wake::Events(lease.run_id.clone()));
        Ok(last)
    }

    async fn read(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<StreamItem>> {
        let state = self.shared.state.lock().await;
        let Some(items) = state.streams.get(run_id) else { return Ok(Vec::new()) };
        // Items are numbered from 1: reading after a negative number reads from the start.
        let skip = usize::try_from(after_seq.max(0)).unwrap_or(usize::MAX);
        Ok((1_i64..)
            .zip(items)
            .skip(skip)
            .take(limit)
            .map(|(seq, item)| {
                // A step an earlier attempt reached is re-run by this one.
                let rerun_through =
                    items.iter().filter(|earlier| earlier.epoch < item.epoch).filter_map(|earlier| earlier.step).max();
                StreamItem {
                    seq,
                    epoch: item.epoch,
                    attempt: item.attempt,
                    step: item.step,
                    rerun: item.step.zip(rerun_through).is_some_and(|(step, through)| step <= through),
                    at_ms: item.at_ms,
                    payload: item.payload.clone(),
                }
            })
            .collect())
    }

    async fn trim(&self, ended_before: Duration) -> Result<u64> {
        let cutoff = self.shared.now().saturating_sub(i64::try_from(ended_before.as_millis()).unwrap_or(i64::MAX));
        let mut state = self.shared.state.lock().await;
        let ended: Vec<String> = state
            .streams
            .keys()
            .filter(|run_id| match state.run_finished_at(run_id) {
                // A stream whose run is gone goes too.
                None => true,
                Some(finished) => finished.is_some_and(|at| at < cutoff),
            })
            .cloned()
            .collect();
        let mut trimmed = 0_u64;
        for run_id in ended {
            let items = state.streams.remove(&run_id).map_or(0, |items| items.len());
            trimmed += u64::try_from(items).unwrap_or(u64::MAX);
        }
        Ok(trimmed)
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>> {
        Ok(Some(Box::new(MemoryWakeups { received: self.shared.events.subscribe() })))
    }
}

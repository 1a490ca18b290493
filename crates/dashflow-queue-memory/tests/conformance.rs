//! The run-queue contract, as `memory/{group}/{case}` trials (`harness = false`), each on a
//! fresh queue whose clock the trial moves instead of waiting.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashflow_queue::RunQueue;
use dashflow_queue_conformance::{Capabilities, TestQueue, Time};
use dashflow_queue_memory::{ManualClock, MemoryRunQueue};

/// Passes time by moving the queue's manual clock.
struct Manual(Arc<ManualClock>);

#[async_trait]
impl Time for Manual {
    async fn pass(&self, by: Duration) {
        self.0.advance(by);
        // Lets tasks the check spawned make progress, as a real wait would.
        tokio::task::yield_now().await;
    }
}

fn main() {
    let trials = dashflow_queue_conformance::trials("memory", Capabilities::all(), || async {
        let clock = Arc::new(ManualClock::starting_now());
        let queue = MemoryRunQueue::builder().clock(clock.clone()).build();
        TestQueue::new(Arc::new(queue) as Arc<dyn RunQueue>, Arc::new(Manual(clock)))
    });
    dashflow_queue_conformance::run(trials).exit();
}

//! The checkpoint contract, as `memory/{group}/{case}` trials (`harness = false`).

use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{BlobLocation, Checkpointer};
use dashflow_checkpoint_conformance::{Capabilities, Tamper};
use dashflow_checkpoint_memory::MemoryCheckpointer;

/// Changes stored bytes through the memory backend's testing hook.
struct Hook(MemoryCheckpointer);

#[async_trait]
impl Tamper for Hook {
    async fn alter_blob(&self, at: &BlobLocation, offset: usize, mask: u8) -> Result<(), String> {
        let mut in_range = false;
        let (id, write) = (&at.checkpoint_id, at.write_id.as_deref());
        let found = self.0.alter_stored_blob(&at.thread_id, &at.namespace, id, write, |blob| {
            if let Some(byte) = blob.get_mut(offset) {
                *byte ^= mask;
                in_range = true;
            }
        });
        match (found, in_range) {
            (true, true) => Ok(()),
            (false, _) => Err(format!("no blob stored for {at}")),
            (true, false) => Err(format!("offset {offset} is past the blob's end")),
        }
    }
}

fn main() {
    let mut trials = dashflow_checkpoint_conformance::trials("memory", Capabilities::all(), || async {
        Arc::new(MemoryCheckpointer::new()) as Arc<dyn Checkpointer>
    });
    trials.extend(dashflow_checkpoint_conformance::integrity_trials("memory", || async {
        let checkpointer = MemoryCheckpointer::new();
        (Arc::new(checkpointer.clone()) as Arc<dyn Checkpointer>, Arc::new(Hook(checkpointer)) as Arc<dyn Tamper>)
    }));
    dashflow_checkpoint_conformance::run(trials).exit();
}

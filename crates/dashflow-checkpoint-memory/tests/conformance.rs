//! The checkpoint contract, as `memory/{group}/{case}` trials (`harness = false`).

use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::{CheckpointId, Checkpointer};
use dashflow_checkpoint_conformance::Tamper;
use dashflow_checkpoint_memory::MemoryCheckpointer;

/// Changes stored bytes through the memory backend's testing hook.
struct Hook(MemoryCheckpointer);

impl Hook {
    fn alter(
        &self,
        thread: &str,
        ns: &str,
        id: &CheckpointId,
        write: Option<&str>,
        offset: usize,
        mask: u8,
    ) -> Result<(), String> {
        let mut in_range = false;
        let found = self.0.alter_stored_blob(thread, ns, id, write, |blob| {
            if let Some(byte) = blob.get_mut(offset) {
                *byte ^= mask;
                in_range = true;
            }
        });
        match (found, in_range) {
            (true, true) => Ok(()),
            (false, _) => Err(format!("no blob stored for checkpoint {id} write {write:?}")),
            (true, false) => Err(format!("offset {offset} is past the blob's end")),
        }
    }
}

#[async_trait]
impl Tamper for Hook {
    async fn alter_checkpoint_blob(
        &self,
        thread: &str,
        ns: &str,
        id: &CheckpointId,
        offset: usize,
        mask: u8,
    ) -> Result<(), String> {
        self.alter(thread, ns, id, None, offset, mask)
    }

    async fn alter_write_blob(
        &self,
        thread: &str,
        ns: &str,
        id: &CheckpointId,
        write_id: &str,
        offset: usize,
        mask: u8,
    ) -> Result<(), String> {
        self.alter(thread, ns, id, Some(write_id), offset, mask)
    }
}

fn main() {
    let mut trials = dashflow_checkpoint_conformance::trials("memory", || async {
        Arc::new(MemoryCheckpointer::new()) as Arc<dyn Checkpointer>
    });
    trials.extend(dashflow_checkpoint_conformance::integrity_trials("memory", || async {
        let checkpointer = MemoryCheckpointer::new();
        (Arc::new(checkpointer.clone()) as Arc<dyn Checkpointer>, Arc::new(Hook(checkpointer)) as Arc<dyn Tamper>)
    }));
    dashflow_checkpoint_conformance::run(trials).exit();
}

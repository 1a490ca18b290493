//! The checkpoint contract, as `memory/{group}/{case}` trials (`harness = false`).

use std::sync::Arc;

use dashflow_checkpoint::Checkpointer;
use dashflow_checkpoint_memory::MemoryCheckpointer;

fn main() {
    let trials = dashflow_checkpoint_conformance::trials("memory", || async {
        Arc::new(MemoryCheckpointer::new()) as Arc<dyn Checkpointer>
    });
    dashflow_checkpoint_conformance::run(trials).exit();
}

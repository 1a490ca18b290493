//! Checkpoint ids: every put keeps its own.

use std::collections::HashSet;
use std::sync::Arc;

use dashflow_checkpoint::{Checkpointer, ListOptions};

use crate::Result;
use crate::error::{ensure, ensure_eq};
use crate::fixture::{line, list};

/// Ids of different puts never collide: many puts, on one thread and across threads, all come
/// back with the ids they were put with, each once.
pub async fn from_different_puts_never_collide(checkpointer: Arc<dyn Checkpointer>) -> Result<()> {
    let cp = checkpointer.as_ref();
    let mut all = HashSet::new();
    for thread in ["t1", "t2", "t3"] {
        let records = line(cp, thread, "", &"SD".repeat(50)).await?;
        let listed = list(cp, thread, &ListOptions::new()).await?;
        ensure_eq!(listed.len(), records.len(), "number of checkpoints listed for thread `{thread}`");
        let put_ids: HashSet<_> = records.iter().map(|record| record.checkpoint_id.clone()).collect();
        let listed_ids: HashSet<_> = listed.iter().map(|record| record.checkpoint_id.clone()).collect();
        ensure_eq!(put_ids.len(), records.len(), "distinct ids among the puts of thread `{thread}`");
        ensure!(put_ids == listed_ids, "the ids listed for thread `{thread}` are not the ids put");
        all.extend(put_ids);
    }
    ensure_eq!(all.len(), 300, "distinct ids across three threads of 100 puts");
    Ok(())
}

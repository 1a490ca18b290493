//! One module per command. Each takes its parsed arguments and writes to `out`.

pub(crate) mod graph;
pub(crate) mod queue;
pub(crate) mod queue_runs;
pub(crate) mod runs_list;
pub(crate) mod runs_nats;
pub(crate) mod runs_show;
pub(crate) mod tail;
pub(crate) mod tail_nats;
pub(crate) mod threads;
pub(crate) mod threads_list;
pub(crate) mod ui;
pub(crate) mod wal;

//! End-to-end tests: the `dashflow` binary against stores the tests fill by running graphs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside #[test] fns report failure by panicking too"
)]

#[cfg(target_os = "linux")]
mod abandoned;
mod common;
mod errors;
mod graph;
mod queue;
mod runs;
mod runs_nats;
mod tail;
mod tail_nats;
mod threads;
mod threads_list;
mod ui;
mod wal;

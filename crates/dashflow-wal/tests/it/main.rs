//! Integration tests of dashflow-wal through its public API, including the reliability cases
//! R6, R7, R8, R10, R11, R12 and R24 of the shared reliability requirements.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside #[test] fns report failure by panicking too"
)]

mod common;
mod compaction;
mod damage;
mod fuzz;
mod hostile_lengths;
mod poison;
mod reading;
mod reconcile;
mod retention;
mod schemas;
mod shared_directory;
mod torn_tail;
mod traces;

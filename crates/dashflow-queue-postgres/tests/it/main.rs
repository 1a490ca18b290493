//! The PostgreSQL run queue against the CI server (`DASHFLOW_TEST_POSTGRES_URL`), each test in
//! a schema of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod append;
mod fence;
mod finish;
mod lease;
mod queue;
mod stream;
mod submit;
mod support;

//! Integration tests of `PostgresCheckpointer` against a real PostgreSQL server.
//!
//! Each test takes a schema of its own through `testing::TestDatabase`: with
//! `DASHFLOW_TEST_POSTGRES_URL` unset a test prints a skip line and passes, unless
//! `DASHFLOW_TEST_POSTGRES_REQUIRED=1` makes that a failure. The server-restart tests
//! (`restart`) run a PostgreSQL server of their own instead (`testing::TestServer`), since
//! the shared one must not be restarted under other tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "tests")]

mod basics;
mod chain;
mod concurrency;
mod faults;
mod group;
mod migrations;
mod restart;
mod support;

//! Integration tests of the work-stealing pool.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod pool;

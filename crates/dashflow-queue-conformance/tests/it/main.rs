//! The suite can fail: deliberately broken wrappers of the memory queue fail the checks that
//! describe what they break, while an honest wrapper passes every check.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod broken;
mod suite;

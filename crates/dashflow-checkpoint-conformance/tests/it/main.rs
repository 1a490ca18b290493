//! The suite can fail: deliberately broken wrappers of the memory backend fail the checks
//! that describe what they break, while an honest wrapper passes every check.

mod broken;
mod suite;

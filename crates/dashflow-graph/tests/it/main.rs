//! Integration tests of dashflow-graph.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod building;
mod command;
mod context;
mod derive;
mod node_error;
mod reducers;
mod retry;
mod route;
mod schema;
mod support;
mod validation;

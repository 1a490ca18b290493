use std::io;

use anyhow::Context as _;

use super::*;

#[test]
fn an_error_is_described_with_its_causes_once_each() {
    let inner = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
    let repeated = anyhow::Error::new(inner).context("error communicating with database: connection refused");
    let error = repeated.context("cannot connect");
    assert_eq!(describe(&error), "cannot connect: error communicating with database: connection refused");
}

#[test]
fn a_closed_pipe_anywhere_in_the_chain_is_a_broken_pipe() {
    let error = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
    assert!(is_broken_pipe(&error));
    assert!(!is_broken_pipe(&anyhow::anyhow!("something else")));
    let result: anyhow::Result<()> = Err(io::Error::from(io::ErrorKind::NotFound)).context("x");
    assert!(!is_broken_pipe(&result.unwrap_err()));
}

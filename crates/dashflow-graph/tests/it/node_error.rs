//! `NodeError`: built from any std error with `?`, classified by kind, printed with its causes.

use std::io;
use std::num::ParseIntError;
use std::sync::Arc;

use dashflow_graph::{NodeError, NodeErrorKind};

#[derive(Debug, thiserror::Error)]
#[error("could not load the config")]
struct LoadError {
    #[source]
    cause: ReadError,
}

#[derive(Debug, thiserror::Error)]
#[error("could not read `settings.toml`")]
struct ReadError {
    #[source]
    cause: io::Error,
}

fn load_error() -> LoadError {
    LoadError { cause: ReadError { cause: io::Error::new(io::ErrorKind::PermissionDenied, "permission denied") } }
}

fn parse(text: &str) -> Result<u32, NodeError> {
    Ok(text.trim().parse::<u32>()?)
}

fn load() -> Result<(), NodeError> {
    Err(load_error())?;
    Ok(())
}

#[test]
fn question_mark_converts_any_std_error_into_an_ordinary_failure() {
    assert_eq!(parse(" 42 ").unwrap(), 42);
    let error = parse("forty-two").unwrap_err();
    assert_eq!(error.kind(), NodeErrorKind::Failed);
    assert_eq!(error.to_string(), "invalid digit found in string");

    let error = load().unwrap_err();
    assert_eq!(error.kind(), NodeErrorKind::Failed);
    assert!(error.downcast_ref::<LoadError>().is_some());
}

#[test]
fn downcast_ref_reaches_the_original_error_and_only_its_type() {
    let error = parse("x").unwrap_err();
    assert!(error.downcast_ref::<ParseIntError>().is_some());
    assert!(error.downcast_ref::<io::Error>().is_none());

    let error = NodeError::new(io::Error::new(io::ErrorKind::TimedOut, "slow upstream"));
    let io_error = error.downcast_ref::<io::Error>().unwrap();
    assert_eq!(io_error.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn alternate_display_prints_the_chain_of_causes() {
    let error = NodeError::from(load_error());
    assert_eq!(error.to_string(), "could not load the config");
    assert_eq!(format!("{error:#}"), "could not load the config: could not read `settings.toml`: permission denied",);
}

#[test]
fn alternate_display_of_an_error_without_causes_is_just_the_error() {
    let error = NodeError::msg("quota exceeded");
    assert_eq!(format!("{error:#}"), "quota exceeded");
}

#[test]
fn as_error_exposes_the_source_chain() {
    let error = NodeError::from(load_error());
    let top = error.as_error();
    assert_eq!(top.to_string(), "could not load the config");
    let cause = top.source().unwrap();
    assert_eq!(cause.to_string(), "could not read `settings.toml`");
    assert!(cause.downcast_ref::<ReadError>().is_some());
}

#[test]
fn msg_makes_an_ordinary_failure_from_any_display() {
    let error = NodeError::msg(format_args!("{} items left", 3));
    assert_eq!(error.to_string(), "3 items left");
    assert_eq!(error.kind(), NodeErrorKind::Failed);
    assert!(!error.is_permanent() && !error.is_timeout() && !error.is_panic());
}

#[test]
fn permanent_and_permanent_msg_are_never_retried_kinds() {
    let error = NodeError::permanent_msg("the document is empty");
    assert_eq!(error.to_string(), "the document is empty");
    assert_eq!(error.kind(), NodeErrorKind::Permanent);
    assert!(error.is_permanent());

    let error = NodeError::permanent(load_error());
    assert!(error.is_permanent());
    assert!(error.downcast_ref::<LoadError>().is_some());
}

#[test]
fn with_kind_reclassifies_and_the_predicates_follow() {
    let base = NodeError::msg("x");
    let timeout = base.clone().with_kind(NodeErrorKind::Timeout);
    assert!(timeout.is_timeout() && !timeout.is_panic() && !timeout.is_permanent());
    let panicked = base.clone().with_kind(NodeErrorKind::Panicked);
    assert!(panicked.is_panic() && !panicked.is_timeout());
    let failed = NodeError::permanent_msg("x").with_kind(NodeErrorKind::Failed);
    assert!(!failed.is_permanent());
    // Reclassifying a clone leaves the original alone.
    assert_eq!(base.kind(), NodeErrorKind::Failed);
}

#[test]
fn clones_share_one_source() {
    let error = NodeError::from(load_error());
    let copy = error.clone();
    assert!(Arc::ptr_eq(&error.into_shared(), &copy.into_shared()));
}

#[test]
fn debug_output_shows_the_kind_and_the_source() {
    let debug = format!("{:?}", NodeError::permanent_msg("bad input"));
    assert!(debug.contains("Permanent"), "{debug}");
    assert!(debug.contains("bad input"), "{debug}");
}

use super::*;

#[test]
fn sqlstates_map_to_what_a_caller_can_do() {
    let cases = [
        ("40001", Class::Transient(Retry::RolledBack)),
        ("40P01", Class::Transient(Retry::RolledBack)),
        ("57P01", Class::Transient(Retry::InDoubt)),
        ("57P02", Class::Transient(Retry::InDoubt)),
        ("57P03", Class::Transient(Retry::InDoubt)),
        ("08006", Class::Transient(Retry::InDoubt)),
        ("08000", Class::Transient(Retry::InDoubt)),
        ("53300", Class::Transient(Retry::RolledBack)),
        ("55P03", Class::Transient(Retry::RolledBack)),
        ("57014", Class::Transient(Retry::RolledBack)),
        ("25006", Class::Transient(Retry::RolledBack)),
        ("22021", Class::Encode),
        ("22P05", Class::Encode),
        ("42P01", Class::Permanent),
        ("42501", Class::Permanent),
        ("23505", Class::Permanent),
    ];
    for (code, class) in cases {
        assert_eq!(classify_sqlstate(code), class, "SQLSTATE {code}");
    }
}

#[test]
fn a_broken_connection_is_in_doubt_but_a_failed_acquire_is_not() {
    let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    assert_eq!(classify_sqlx(&io(), Commit::Possible), Class::Transient(Retry::InDoubt));
    assert_eq!(classify_sqlx(&io(), Commit::Impossible), Class::Transient(Retry::RolledBack));
    assert_eq!(classify_sqlx(&sqlx::Error::PoolTimedOut, Commit::Impossible), Class::Transient(Retry::Later));
    assert_eq!(
        classify_sqlx(&sqlx::Error::Protocol("garbage".into()), Commit::Possible),
        Class::Transient(Retry::InDoubt)
    );
    let in_transaction = Error::Uncommitted { operation: "copy a thread", source: io().into() };
    assert_eq!(in_transaction.retry(), Retry::RolledBack);
    let autocommit = Error::Statement { operation: "put a checkpoint", source: io().into() };
    assert_eq!(autocommit.retry(), Retry::InDoubt);
}

#[test]
fn a_closed_pool_and_bad_configuration_are_permanent() {
    assert_eq!(classify_sqlx(&sqlx::Error::PoolClosed, Commit::Impossible), Class::Permanent);
    assert_eq!(classify_sqlx(&sqlx::Error::Configuration("bad url".into()), Commit::Impossible), Class::Permanent);
}

#[test]
fn decode_failures_are_corrupt() {
    let decode = sqlx::Error::ColumnDecode { index: "blob".into(), source: "not bytes".into() };
    let error = CheckpointError::from(Error::Statement { operation: "load a checkpoint", source: decode.into() });
    assert!(
        matches!(error, CheckpointError::Corrupt { ref detail, .. } if detail.contains("load a checkpoint")),
        "{error:?}"
    );
    let error = CheckpointError::from(Error::Corrupt { detail: "kind `x`".into() });
    assert!(matches!(error, CheckpointError::Corrupt { .. }));
}

#[test]
fn transient_errors_become_retryable_unavailable_and_permanent_ones_do_not() {
    let timed_out = CheckpointError::from(Error::Acquire {
        operation: "list checkpoints",
        source: sqlx::Error::PoolTimedOut.into(),
    });
    assert!(timed_out.is_retryable());
    let closed =
        CheckpointError::from(Error::Acquire { operation: "list checkpoints", source: sqlx::Error::PoolClosed.into() });
    assert!(matches!(closed, CheckpointError::Unavailable { retryable: false, .. }));
    let too_new = CheckpointError::from(Error::SchemaTooNew { found: 9, known: 1 });
    assert!(matches!(too_new, CheckpointError::Unavailable { retryable: false, .. }));
}

#[test]
fn conflicts_keep_their_expected_and_actual_heads() {
    let error = CheckpointError::from(Error::Conflict {
        thread_id: "t".into(),
        namespace: "".into(),
        expected: "none".into(),
        actual: "01J".into(),
    });
    match error {
        CheckpointError::Conflict { thread_id, expected, actual, .. } => {
            assert_eq!((thread_id.as_str(), expected.as_str(), actual.as_str()), ("t", "none", "01J"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn unstorable_text_is_an_encode_error() {
    let error = CheckpointError::from(Error::Nul { what: "the thread id" });
    assert!(matches!(error, CheckpointError::Encode { ref detail } if detail.contains("thread id")), "{error:?}");
}

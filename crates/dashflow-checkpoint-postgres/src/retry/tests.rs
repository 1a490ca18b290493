use std::cell::Cell;
use std::time::Duration;

use super::*;

fn transient(in_doubt: bool) -> Error {
    if in_doubt {
        let source = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        Error::Statement { operation: "test", source: source.into() }
    } else {
        let source = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        Error::Acquire { operation: "test", source: source.into() }
    }
}

fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy { attempts, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(4) }
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_until_the_operation_succeeds() {
    let tries = Cell::new(0);
    let result = quick(5)
        .run("test", Idempotence::Once, |_| {
            tries.set(tries.get() + 1);
            let outcome = if tries.get() < 3 { Err(transient(false)) } else { Ok(tries.get()) };
            async move { outcome }
        })
        .await;
    assert_eq!(result.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_the_configured_number_of_attempts() {
    let tries = Cell::new(0);
    let result: Result<(), Error> = quick(4)
        .run("test", Idempotence::Idempotent, |_| {
            tries.set(tries.get() + 1);
            async { Err(transient(true)) }
        })
        .await;
    assert_eq!(result.unwrap_err().retry(), Retry::InDoubt);
    assert_eq!(tries.get(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_operation_that_may_have_committed_is_retried_only_when_idempotent() {
    let tries = Cell::new(0);
    let result: Result<(), Error> = quick(5)
        .run("test", Idempotence::Once, |_| {
            tries.set(tries.get() + 1);
            async { Err(transient(true)) }
        })
        .await;
    assert!(result.is_err());
    assert_eq!(tries.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pool_timeout_is_returned_at_once_because_the_pool_already_waited() {
    let tries = Cell::new(0);
    let result: Result<(), Error> = quick(5)
        .run("test", Idempotence::Idempotent, |_| {
            tries.set(tries.get() + 1);
            async { Err(Error::Acquire { operation: "test", source: sqlx::Error::PoolTimedOut.into() }) }
        })
        .await;
    assert_eq!(result.unwrap_err().retry(), Retry::Later);
    assert_eq!(tries.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_not_retried() {
    let tries = Cell::new(0);
    let result: Result<(), Error> = quick(5)
        .run("test", Idempotence::Idempotent, |_| {
            tries.set(tries.get() + 1);
            async { Err(Error::SchemaTooNew { found: 2, known: 1 }) }
        })
        .await;
    assert!(result.is_err());
    assert_eq!(tries.get(), 1);
}

#[test]
fn backoff_doubles_up_to_the_cap_and_keeps_at_least_half() {
    let policy =
        RetryPolicy { attempts: 10, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) };
    for _ in 0..100 {
        let first = policy.delay(1);
        assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10), "{first:?}");
        let second = policy.delay(2);
        assert!(second >= Duration::from_millis(10) && second <= Duration::from_millis(20), "{second:?}");
        let late = policy.delay(40);
        assert!(late >= Duration::from_millis(25) && late <= Duration::from_millis(50), "{late:?}");
    }
}

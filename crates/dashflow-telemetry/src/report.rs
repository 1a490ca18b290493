//! Printing an error with its causes.

use std::error::Error as StdError;
use std::fmt;

/// An error and every cause below it on one line, outermost first:
/// `checkpoint storage unavailable (retryable): cannot connect to PostgreSQL at
/// `127.0.0.1:5433`: error communicating with database: Connection refused (os error 111)`.
///
/// Every DashFlow error follows one convention: its own message says what failed and where
/// (path, thread, checkpoint, node), and leaves the cause to [`source`](StdError::source), so
/// a report names each cause once. `anyhow`'s `{:#}` prints the same line.
///
/// ```
/// let error = std::io::Error::other("disk on fire");
/// assert_eq!(dashflow_telemetry::Report(&error).to_string(), "disk on fire");
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

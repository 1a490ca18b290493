//! Listing threads: what [`crate::Checkpointer::list_threads`] takes and returns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CheckpointId, Metadata};

/// One thread, as [`crate::Checkpointer::list_threads`] lists it: its identity, when it last
/// changed, and its latest checkpoint (the head of its root namespace, `""`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ThreadSummary {
    /// The thread.
    pub thread_id: String,
    /// The newest `created_at_ms` of any checkpoint of the thread, subgraph namespaces
    /// included (milliseconds since the Unix epoch): what threads are ordered and filtered by.
    pub updated_at_ms: i64,
    /// The head of the root namespace: the checkpoint a run on the thread continues from.
    pub checkpoint_id: CheckpointId,
    /// The superstep the head was taken after.
    pub step: i64,
    /// The head's metadata.
    pub metadata: Metadata,
    /// How many checkpoints the root namespace holds.
    pub checkpoints: u64,
}

impl ThreadSummary {
    /// A summary with every field given (backends build it from what they store).
    pub fn new(
        thread_id: String,
        updated_at_ms: i64,
        checkpoint_id: CheckpointId,
        step: i64,
        metadata: Metadata,
        checkpoints: u64,
    ) -> Self {
        Self { thread_id, updated_at_ms, checkpoint_id, step, metadata, checkpoints }
    }

    /// The cursor of the page that follows this thread (pass it to
    /// [`ThreadListOptions::after`]).
    pub fn cursor(&self) -> ThreadCursor {
        ThreadCursor { updated_at_ms: self.updated_at_ms, thread_id: self.thread_id.clone() }
    }
}

/// A position in the listing (newest first by `updated_at_ms`, then by thread id,
/// descending): the threads after it are those that sort after the thread it was taken from.
///
/// Written as `{updated_at_ms}:{thread_id}`, so that a command line can pass it on:
///
/// ```
/// use dashflow_checkpoint::ThreadCursor;
///
/// let cursor: ThreadCursor = "1700000000000:ticket:42".parse()?;
/// assert_eq!(cursor.thread_id(), "ticket:42");
/// assert_eq!(cursor.to_string(), "1700000000000:ticket:42");
/// # Ok::<(), dashflow_checkpoint::BadThreadCursor>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThreadCursor {
    updated_at_ms: i64,
    thread_id: String,
}

impl ThreadCursor {
    /// The cursor after a thread updated at `updated_at_ms`.
    pub fn new(updated_at_ms: i64, thread_id: impl Into<String>) -> Self {
        Self { updated_at_ms, thread_id: thread_id.into() }
    }

    /// When the thread the cursor was taken from was updated.
    pub fn updated_at_ms(&self) -> i64 {
        self.updated_at_ms
    }

    /// The thread the cursor was taken from.
    pub fn thread_id(&self) -> &str {
        &self.thread_id
    }

    /// Whether a thread updated at `updated_at_ms` with id `thread_id` comes after the cursor
    /// in the listing's order.
    pub fn precedes(&self, updated_at_ms: i64, thread_id: &str) -> bool {
        (updated_at_ms, thread_id) < (self.updated_at_ms, self.thread_id.as_str())
    }
}

impl fmt::Display for ThreadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.updated_at_ms, self.thread_id)
    }
}

/// A thread cursor that is not `{updated_at_ms}:{thread_id}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a thread cursor: expected `{{updated_at_ms}}:{{thread_id}}`, as a listing prints it")]
pub struct BadThreadCursor {
    input: String,
}

impl FromStr for ThreadCursor {
    type Err = BadThreadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadThreadCursor { input: s.to_owned() };
        let (ms, thread_id) = s.split_once(':').ok_or_else(bad)?;
        let updated_at_ms = ms.parse().map_err(|_| bad())?;
        Ok(Self { updated_at_ms, thread_id: thread_id.to_owned() })
    }
}

/// Which threads [`crate::Checkpointer::list_threads`] returns: filters, and a page of them.
///
/// Threads come newest first (by [`ThreadSummary::updated_at_ms`], ties by thread id,
/// descending). A page ends after `limit` threads; the next one starts
/// [`after`](Self::after) the last thread's [`cursor`](ThreadSummary::cursor). A thread that
/// changes between two pages moves to the front, so a listing taken page by page may miss it
/// or show it twice.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ThreadListOptions {
    /// Only threads whose id starts with this.
    pub prefix: Option<String>,
    /// Only threads updated at or after this (milliseconds since the Unix epoch).
    pub updated_since_ms: Option<i64>,
    /// Only threads updated before this (milliseconds since the Unix epoch).
    pub updated_before_ms: Option<i64>,
    /// Only threads whose latest checkpoint's metadata has all these entries.
    pub metadata: Metadata,
    /// Only threads after this position.
    pub after: Option<ThreadCursor>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl ThreadListOptions {
    /// Every thread, newest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only threads whose id starts with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only threads updated at or after `ms`.
    pub fn updated_since_ms(mut self, ms: i64) -> Self {
        self.updated_since_ms = Some(ms);
        self
    }

    /// Only threads updated before `ms`.
    pub fn updated_before_ms(mut self, ms: i64) -> Self {
        self.updated_before_ms = Some(ms);
        self
    }

    /// Only threads whose latest checkpoint's metadata has `key` = `value`.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Only threads after `cursor` (the next page).
    pub fn after(mut self, cursor: ThreadCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// At most `limit` threads.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `thread` passes every filter and comes after the cursor (not the limit); for
    /// backends that filter in memory.
    pub fn matches(&self, thread: &ThreadSummary) -> bool {
        self.prefix.as_ref().is_none_or(|prefix| thread.thread_id.starts_with(prefix.as_str()))
            && self.updated_since_ms.is_none_or(|since| thread.updated_at_ms >= since)
            && self.updated_before_ms.is_none_or(|before| thread.updated_at_ms < before)
            && self.after.as_ref().is_none_or(|after| after.precedes(thread.updated_at_ms, &thread.thread_id))
            && self.metadata.iter().all(|(key, value)| thread.metadata.get(key) == Some(value))
    }

    /// Sorts `threads` into the listing's order, drops those that do not match and keeps at
    /// most `limit`; for backends that filter in memory.
    pub fn apply(&self, mut threads: Vec<ThreadSummary>) -> Vec<ThreadSummary> {
        threads.retain(|thread| self.matches(thread));
        threads.sort_unstable_by(|a, b| {
            (b.updated_at_ms, b.thread_id.as_str()).cmp(&(a.updated_at_ms, a.thread_id.as_str()))
        });
        threads.truncate(self.limit.unwrap_or(usize::MAX));
        threads
    }
}

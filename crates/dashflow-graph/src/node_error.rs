//! The error a node returns.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// How the executor should treat a [`NodeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeErrorKind {
    /// An ordinary failure; the node's retry policy may retry it.
    Failed,
    /// A failure that retrying cannot fix; never retried.
    Permanent,
    /// The node exceeded its timeout and was cancelled; retried by default.
    Timeout,
    /// The node panicked; never retried by default, since a panic is a bug.
    Panicked,
    /// The node paused the run for a person's input (`NodeContext::interrupt`); not a
    /// failure, never retried. The source is an [`Interrupt`] carrying the value.
    Interrupted,
}

/// The value a node passed to `NodeContext::interrupt`, carried as the source of a
/// [`NodeError`] of kind `Interrupted` until the executor turns it into an interrupted run.
#[derive(Clone, Debug, PartialEq)]
pub struct Interrupt {
    /// What the node asks the person (shown in `RunStatus::Interrupted`).
    pub value: serde_json::Value,
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the node is waiting for input: {}", self.value)
    }
}

impl StdError for Interrupt {}

/// The error type of node functions: any error, plus how to treat it.
///
/// Like `anyhow::Error`, it converts from every `std::error::Error` so that `?` works inside a
/// node, and it deliberately does not implement `std::error::Error` itself (that would make
/// the blanket conversion overlap `From<T> for T`). Use [`NodeError::as_error`] to reach the
/// underlying error. Cloning is cheap: the source is shared.
#[derive(Clone)]
pub struct NodeError {
    source: Arc<dyn StdError + Send + Sync + 'static>,
    kind: NodeErrorKind,
}

#[derive(Debug)]
struct MessageError(String);

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for MessageError {}

impl NodeError {
    /// Wraps `error` as an ordinary, retryable failure.
    pub fn new(error: impl StdError + Send + Sync + 'static) -> Self {
        Self { source: Arc::new(error), kind: NodeErrorKind::Failed }
    }

    /// An ordinary failure described by `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(MessageError(message.to_string()))
    }

    /// Wraps `error` as a failure that must not be retried.
    pub fn permanent(error: impl StdError + Send + Sync + 'static) -> Self {
        Self::new(error).with_kind(NodeErrorKind::Permanent)
    }

    /// A failure described by `message` that must not be retried.
    pub fn permanent_msg(message: impl fmt::Display) -> Self {
        Self::msg(message).with_kind(NodeErrorKind::Permanent)
    }

    /// The same error with another kind.
    pub fn with_kind(mut self, kind: NodeErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// How the executor treats this error.
    pub fn kind(&self) -> NodeErrorKind {
        self.kind
    }

    /// Whether retrying is pointless.
    pub fn is_permanent(&self) -> bool {
        self.kind == NodeErrorKind::Permanent
    }

    /// Whether the node timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == NodeErrorKind::Timeout
    }

    /// The interrupt, when the node paused the run.
    pub fn interrupt(&self) -> Option<&Interrupt> {
        if self.kind == NodeErrorKind::Interrupted { self.downcast_ref::<Interrupt>() } else { None }
    }

    /// Whether the node panicked.
    pub fn is_panic(&self) -> bool {
        self.kind == NodeErrorKind::Panicked
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error, shared.
    pub fn into_shared(self) -> Arc<dyn StdError + Send + Sync + 'static> {
        self.source
    }

    /// The underlying error as `E`, if it is one.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }
}

impl<E> From<E> for NodeError
where
    E: StdError + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        // `{:#}` prints the chain of causes, as anyhow does.
        if f.alternate() {
            let mut cause = self.source.source();
            while let Some(error) = cause {
                write!(f, ": {error}")?;
                cause = error.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeError").field("kind", &self.kind).field("source", &self.source).finish()
    }
}

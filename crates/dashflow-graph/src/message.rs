//! Chat messages, and the trait the `messages` reducer needs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Something the `messages` reducer can append or replace by id.
pub trait MessageLike {
    /// The message's id; messages without one are always appended.
    fn message_id(&self) -> Option<&str>;
}

/// Who wrote a [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model or agent.
    Assistant,
    /// A tool's result.
    Tool,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        })
    }
}

/// A chat message, for conversational state with `#[reduce(messages)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Stable id; a later message with the same id replaces this one.
    pub id: Option<String>,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// The tool or participant name, where the role needs one.
    pub name: Option<String>,
}

impl Message {
    /// A message without id or name.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { id: None, role, content: content.into(), name: None }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A tool-result message from tool `name`.
    pub fn tool(name: impl Into<String>, content: impl Into<String>) -> Self {
        Self { name: Some(name.into()), ..Self::new(Role::Tool, content) }
    }

    /// Sets the id, so later messages can replace this one.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

impl MessageLike for Message {
    fn message_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.role, self.content)
    }
}

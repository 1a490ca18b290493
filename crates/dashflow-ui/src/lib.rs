//! DashFlow's local web viewer: the runs in a write-ahead log, each run's timeline, graph,
//! events and trace, and the threads of a checkpoint store with their checkpoints.
//!
//! Two ways to serve it:
//!
//! - `dashflow ui` (the CLI) serves a [`Viewer`] over a WAL directory and, optionally, a
//!   checkpoint database. It does not know the graphs' state types, so it shows checkpoint
//!   records, and a checkpoint's payload decoded only where its codec is JSON.
//! - `dashflow::ui::serve` (the facade, feature `ui`) serves one for the program's own compiled
//!   graphs, registered as [`UiGraph`]s: states are decoded with their real type, and a
//!   person can resume a paused run, update a thread's state as a node would, and fork a
//!   thread from an older checkpoint.
//!
//! Security: the viewer binds loopback unless [`Bind::new`] is given [`Reach::AllowRemote`] and an
//! access token; requests to a loopback viewer must name a loopback host (no DNS rebinding);
//! requests to a remote one must carry the token. Actions are `POST`s that must carry the
//! viewer's CSRF token. Every page is built with templates that escape every value, and is
//! served with a content security policy that runs only the viewer's own script. The WAL is
//! opened read-only for every page.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dashflow_ui::UiError> {
//! use dashflow_ui::{Bind, Reach, Viewer};
//!
//! let viewer = Viewer::new("/home/me/.dashflow/wal")?;
//! let bind = Bind::new("127.0.0.1:7878".parse().unwrap(), Reach::LoopbackOnly, None)?;
//! let listener = bind.listen().await?;
//! viewer.serve(listener, std::future::pending()).await
//! # }
//! ```

mod diff;
mod layout;
mod pages;
mod server;
mod util;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use dashflow_checkpoint::Checkpointer;
use dashflow_graph::GraphSchema;
use parking_lot::Mutex;
use serde_json::Value;

pub use diff::{Change, diff};
pub use layout::{GraphPicture, draw};
pub use pages::{EVENTS_PAGE, RUNS_PAGE_DEFAULT, RUNS_PAGE_MAX, THREADS_PAGE, TIMELINE_PAGE};

/// What can go wrong starting or running the viewer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// The address is not loopback and remote access was not allowed, or no token was given.
    #[error("{0}")]
    Bind(String),
    /// Listening or serving failed.
    #[error("cannot serve the viewer on {addr}")]
    Io {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The OS's random source failed.
    #[error("cannot draw a random token for the viewer")]
    Random(#[source] getrandom::Error),
}

/// Where to listen, checked: loopback, or another address with remote access allowed and an
/// access token.
#[derive(Clone, Debug)]
pub struct Bind {
    addr: SocketAddr,
    token: Option<String>,
}

/// The least characters of an access token for a remote viewer.
pub const MIN_TOKEN_LEN: usize = 16;

/// Whether the viewer may listen on an address other than loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Loopback addresses only: other processes of this machine.
    LoopbackOnly,
    /// Any address, with an access token (the viewer shows states and can resume runs).
    AllowRemote,
}

impl Bind {
    /// `addr` if it is loopback; otherwise only with [`Reach::AllowRemote`] and a `token` of
    /// at least [`MIN_TOKEN_LEN`] characters, which every request must then carry (`?token=`
    /// once, which sets a cookie, or an `Authorization: Bearer` header). A token given for a
    /// loopback address is required all the same.
    pub fn new(addr: SocketAddr, reach: Reach, token: Option<String>) -> Result<Self, UiError> {
        let token = token.filter(|token| !token.is_empty());
        if let Some(token) = &token
            && token.chars().count() < MIN_TOKEN_LEN
        {
            return Err(UiError::Bind(format!(
                "the access token is {} characters; use at least {MIN_TOKEN_LEN} (a random string)",
                token.chars().count()
            )));
        }
        if addr.ip().is_loopback() {
            return Ok(Self { addr, token });
        }
        if reach == Reach::LoopbackOnly {
            return Err(UiError::Bind(format!(
                "{addr} is not a loopback address: the viewer shows states and can resume runs, so binding \
                 another address needs --allow-remote and an access token (--token or DASHFLOW_UI_TOKEN)"
            )));
        }
        if token.is_none() {
            return Err(UiError::Bind(format!(
                "binding {addr} needs an access token (--token or DASHFLOW_UI_TOKEN) that every request must carry"
            )));
        }
        Ok(Self { addr, token })
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Listens on the address (port 0 picks a free port: see the listener's `local_addr`).
    pub async fn listen(&self) -> Result<Listener, UiError> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| UiError::Io { addr: self.addr.to_string(), source })?;
        let addr = listener.local_addr().map_err(|source| UiError::Io { addr: self.addr.to_string(), source })?;
        Ok(Listener { listener, addr, token: self.token.clone() })
    }
}

/// A bound socket, ready for [`Viewer::serve`].
#[derive(Debug)]
pub struct Listener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: Option<String>,
}

impl Listener {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open in a browser (with the access token, for a remote viewer).
    pub fn url(&self) -> String {
        match &self.token {
            Some(token) => format!("http://{}/?token={}", self.addr, util::encode(token)),
            None => format!("http://{}/", self.addr),
        }
    }
}

/// A graph of the serving program, for the embedded viewer: its states decoded with their
/// real type, and the actions a person can take on its threads.
///
/// `dashflow::ui` implements it for `CompiledGraph<S>`; the viewer needs nothing else of the
/// executor. Values cross as JSON.
#[async_trait]
pub trait UiGraph: Send + Sync {
    /// The graph's name, as its runs record it.
    fn name(&self) -> &str;

    /// Its nodes and edges.
    fn schema(&self) -> &GraphSchema;

    /// Where its threads are; `None` for a graph without checkpoints.
    fn checkpointer(&self) -> Option<Arc<dyn Checkpointer>>;

    /// The state of `thread` at `checkpoint` (its head when `None`), decoded; `Ok(None)` when
    /// the thread has no checkpoint.
    async fn state(&self, thread: &str, checkpoint: Option<&str>) -> Result<Option<StateView>, ActionError>;

    /// Resumes the thread's paused run from its head (a `resume` value when `Some`, a plain
    /// continue when `None`) and waits for it to stop; returns how it stopped.
    async fn resume(&self, thread: &str, value: Option<Value>) -> Result<String, ActionError>;

    /// Applies `update` (the state's update type, as JSON) to the thread as node `as_node`
    /// would; at `checkpoint` when `Some` (a fork: the new checkpoint's parent is that one),
    /// else at the head. Returns the new checkpoint's id.
    async fn update_state(
        &self,
        thread: &str,
        checkpoint: Option<&str>,
        update: Value,
        as_node: Option<&str>,
    ) -> Result<String, ActionError>;
}

/// A decoded state at one checkpoint.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StateView {
    /// The state.
    pub state: Value,
    /// The nodes that run next; empty when the run is done.
    pub next: Vec<String>,
    /// The checkpoint.
    pub checkpoint_id: String,
    /// The step it was taken after.
    pub step: i64,
    /// The interrupts the run is waiting on: node and value.
    pub interrupts: Vec<(String, Value)>,
}

impl StateView {
    /// A view with every field given.
    pub fn new(
        state: Value,
        next: Vec<String>,
        checkpoint_id: String,
        step: i64,
        interrupts: Vec<(String, Value)>,
    ) -> Self {
        Self { state, next, checkpoint_id, step, interrupts }
    }
}

/// A viewer action that failed: the message is shown to the person who asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

/// The viewer: what it reads, and the graphs it can act on.
#[derive(Clone)]
pub struct Viewer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) wal_dir: PathBuf,
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
    pub(crate) graphs: BTreeMap<String, Arc<dyn UiGraph>>,
    /// The last outcome of an action on each thread, shown on its page.
    pub(crate) notes: Mutex<BTreeMap<String, String>>,
    /// Set by `serve` for a remote viewer.
    pub(crate) access_token: Mutex<Option<String>>,
    pub(crate) csrf: String,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("wal_dir", &self.shared.wal_dir)
            .field("graphs", &self.shared.graphs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// A viewer of the WAL in `wal_dir` (`<home>/wal`), with no checkpoints and no graphs.
    /// Fails only when the OS's random source, which gives the CSRF token, does.
    pub fn new(wal_dir: impl AsRef<Path>) -> Result<Self, UiError> {
        Ok(Self::build(wal_dir.as_ref().to_owned(), util::random_token()?))
    }

    fn build(wal_dir: PathBuf, csrf: String) -> Self {
        Self {
            shared: Arc::new(Shared {
                wal_dir,
                checkpointer: None,
                graphs: BTreeMap::new(),
                notes: Mutex::new(BTreeMap::new()),
                access_token: Mutex::new(None),
                csrf,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => f(shared),
            None => {
                let old = &self.shared;
                let mut shared = Shared {
                    wal_dir: old.wal_dir.clone(),
                    checkpointer: old.checkpointer.clone(),
                    graphs: old.graphs.clone(),
                    notes: Mutex::new(old.notes.lock().clone()),
                    access_token: Mutex::new(old.access_token.lock().clone()),
                    csrf: old.csrf.clone(),
                };
                f(&mut shared);
                self.shared = Arc::new(shared);
            }
        }
        self
    }

    /// Shows the threads of this checkpoint store.
    pub fn checkpointer(self, checkpointer: Arc<dyn Checkpointer>) -> Self {
        self.edit(|shared| shared.checkpointer = Some(checkpointer))
    }

    /// Registers a graph: its threads' states are decoded, and can be acted on. The first
    /// registered graph with a checkpointer gives the threads page its store unless
    /// [`Viewer::checkpointer`] named one.
    pub fn graph(self, graph: Arc<dyn UiGraph>) -> Self {
        self.edit(|shared| {
            if shared.checkpointer.is_none() {
                shared.checkpointer = graph.checkpointer();
            }
            shared.graphs.insert(graph.name().to_owned(), graph);
        })
    }

    /// The WAL directory it reads.
    pub fn wal_dir(&self) -> &Path {
        &self.shared.wal_dir
    }

    /// The token every action form carries.
    pub fn csrf_token(&self) -> &str {
        &self.shared.csrf
    }

    /// The HTTP routes, for embedding in a larger axum app (without the access-token and
    /// host checks [`Viewer::serve`] adds).
    pub fn router(&self) -> axum::Router {
        server::router(Arc::clone(&self.shared))
    }

    /// Serves the viewer on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: Listener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), UiError> {
        *self.shared.access_token.lock() = listener.token.clone();
        let app = server::guarded(Arc::clone(&self.shared), listener.addr);
        axum::serve(listener.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| UiError::Io { addr: listener.addr.to_string(), source })
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    #[test]
    fn bind_takes_loopback_always_and_another_address_only_when_allowed_with_a_token() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let other: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let token = || Some("a-token-of-enough-length".to_owned());
        assert!(Bind::new(loopback, Reach::LoopbackOnly, None).is_ok());
        assert_eq!(Bind::new(loopback, Reach::LoopbackOnly, token()).unwrap().token, token());
        let refused = Bind::new(other, Reach::LoopbackOnly, token()).unwrap_err().to_string();
        assert!(refused.contains("--allow-remote"), "{refused}");
        let tokenless = Bind::new(other, Reach::AllowRemote, None).unwrap_err().to_string();
        assert!(tokenless.contains("access token"), "{tokenless}");
        let short = Bind::new(other, Reach::AllowRemote, Some("short".to_owned())).unwrap_err().to_string();
        assert!(short.contains(&MIN_TOKEN_LEN.to_string()), "{short}");
        assert_eq!(Bind::new(other, Reach::AllowRemote, token()).unwrap().addr(), other);
    }
}

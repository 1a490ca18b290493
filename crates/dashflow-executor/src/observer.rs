//! The observers a compiled graph sends its runs' events to.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use dashflow_telemetry::EventCallback;

/// One observer of a compiled graph: a sink every run's events go to, as
/// [`CompiledGraph::observers`](crate::CompiledGraph::observers) lists it.
///
/// A default observer is one the graph got without asking for it (the `dashflow` facade's
/// `compile()` attaches the process's event log and live-run registry this way);
/// [`CompiledGraph::without_default_observers`](crate::CompiledGraph::without_default_observers)
/// removes those and keeps the ones added with `with_callback`.
#[derive(Clone)]
pub struct Observer {
    sink: Arc<dyn EventCallback>,
    default: bool,
}

impl Observer {
    /// An observer the graph's user attached.
    pub(crate) fn chosen(sink: Arc<dyn EventCallback>) -> Self {
        Self { sink, default: false }
    }

    /// An observer the graph got by default.
    pub(crate) fn default_one(sink: Arc<dyn EventCallback>) -> Self {
        Self { sink, default: true }
    }

    /// What the sink is ([`EventCallback::name`]): `live runs`, `event log in /home/…`, a type name.
    pub fn name(&self) -> Cow<'_, str> {
        self.sink.name()
    }

    /// Whether the graph got this observer by default rather than by `with_callback`.
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// The sink itself.
    pub fn sink(&self) -> &Arc<dyn EventCallback> {
        &self.sink
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer").field("name", &self.name()).field("default", &self.default).finish()
    }
}

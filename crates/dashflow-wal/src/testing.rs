//! Event builders for the unit tests.

use std::time::Duration;

use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};

pub(crate) fn root() -> RunIds {
    RunIds::root(RunId::new())
}

pub(crate) fn started(run: RunIds, graph: &str, thread: Option<&str>) -> Event {
    Event::now(run, EventKind::RunStarted { graph: graph.into(), thread_id: thread.map(Into::into), tags: Vec::new() })
}

pub(crate) fn task(run: RunIds, step: u64, node: &str) -> Event {
    Event::now(
        run,
        EventKind::TaskFinished {
            step,
            node: node.into(),
            attempt: 1,
            duration: Duration::from_millis(3),
            error: None,
        },
    )
}

pub(crate) fn finished(run: RunIds, outcome: RunOutcome, steps: u64, error: Option<&str>) -> Event {
    Event::now(
        run,
        EventKind::RunFinished { outcome, steps, duration: Duration::from_millis(40), error: error.map(Into::into) },
    )
}

/// A whole run: start, one task per step, finish.
pub(crate) fn whole_run(run: RunIds, graph: &str, steps: u64) -> Vec<Event> {
    let mut events = vec![started(run, graph, None)];
    events.extend((1..=steps).map(|step| task(run, step, "node")));
    events.push(finished(run, RunOutcome::Completed, steps, None));
    events
}

/// Counts syncs; a storage for checking the fsync policy.
#[derive(Debug, Default)]
pub(crate) struct CountingStorage {
    pub(crate) syncs: std::sync::atomic::AtomicUsize,
    pub(crate) appends: std::sync::atomic::AtomicUsize,
}

impl crate::Storage for CountingStorage {
    fn append(&self, file: &mut std::fs::File, buf: &[u8]) -> std::io::Result<()> {
        self.appends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::io::Write::write_all(file, buf)
    }

    fn sync(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        file.sync_data()
    }
}

impl CountingStorage {
    pub(crate) fn syncs(&self) -> usize {
        self.syncs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A child process, running until it is passed to [`reap`]: `cat` waiting on its input.
#[cfg(target_os = "linux")]
pub(crate) fn spawn_child() -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn `cat`")
}

/// Ends `child` (closing its input lets `cat` exit) and waits for it: its pid then names no
/// process, or a later one.
#[cfg(target_os = "linux")]
pub(crate) fn reap(mut child: std::process::Child) {
    drop(child.stdin.take());
    child.wait().expect("wait for the child");
}

/// The identity of a process that existed and is gone: a child, read while it ran, then
/// ended and reaped.
#[cfg(target_os = "linux")]
pub(crate) fn dead_process() -> crate::ProcessIdentity {
    let child = spawn_child();
    let identity = crate::process::identity_of(child.id()).expect("the running child's identity");
    reap(child);
    identity
}

/// A process identity of fixed size, for tests whose segment layout must not depend on the
/// machine's host name or pid.
pub(crate) fn some_process() -> crate::ProcessIdentity {
    crate::ProcessIdentity {
        pid: 4242,
        start_ticks: 1_000,
        boot_id: "00000000-0000-0000-0000-000000000000".into(),
        pid_namespace: 4_026_531_836,
        host: "test-host".into(),
    }
}

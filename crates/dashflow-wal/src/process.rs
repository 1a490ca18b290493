//! Which process executes a run, and whether that process still exists.
//!
//! A run whose process dies (SIGKILL, a crash, a power loss) never writes its `RunFinished`,
//! so the log alone cannot tell it from a run still in progress. The WAL therefore records,
//! for the runs each batch starts, the identity of the process that appends them: its pid,
//! and what makes a reused pid harmless (the process's start time since boot and the boot's
//! id), the pid namespace the pid belongs to and the host name. A reader on the same machine
//! and in the same pid namespace can then tell whether that very process is still there.
//!
//! Only Linux is supported (procfs). Elsewhere a writer records no identity and a reader
//! never calls a process gone: its runs stay `running`, as before.

/// The operating-system process that executes a run, as the WAL recorded it when the run
/// started.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// When the process started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`):
    /// a later process with the same pid has another start time.
    pub start_ticks: u64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): pids and start times are
    /// only meaningful within one boot.
    pub boot_id: String,
    /// The pid namespace the pid is valid in (the inode of `/proc/<pid>/ns/pid`): a reader in
    /// another namespace (another container) cannot look the process up.
    pub pid_namespace: u64,
    /// The host name (`/proc/sys/kernel/hostname`): tells a reboot of this host from another
    /// host sharing the WAL directory.
    pub host: String,
}

/// Whether a recorded process still exists, as far as this reader can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The very process (same pid and start time, same boot) is still there.
    Alive,
    /// It is certainly gone: no process has its pid, another process has it, it exited and
    /// was not reaped yet, or the host rebooted since.
    Gone,
    /// This reader cannot tell: another host, another pid namespace, a platform without
    /// procfs, or procfs could not be read.
    Unknown,
}

impl ProcessIdentity {
    /// The calling process's identity; `None` where it cannot be known (not Linux, or procfs
    /// unreadable), in which case the WAL records none.
    pub(crate) fn current() -> Option<Self> {
        os::identity_of(std::process::id())
    }

    /// Whether this process still exists, seen from the process `me` (the reader's own
    /// identity, `None` when unknown).
    ///
    /// `Gone` only when that is certain: a process that is alive must never be reported gone,
    /// so every doubt is `Unknown`.
    pub(crate) fn liveness_from(&self, me: Option<&Self>) -> Liveness {
        let Some(me) = me else { return Liveness::Unknown };
        if self == me {
            return Liveness::Alive;
        }
        if self.boot_id != me.boot_id {
            // Every process of an earlier boot of this host is gone; a host sharing the WAL
            // directory (a network file system) is out of sight.
            return if self.host == me.host { Liveness::Gone } else { Liveness::Unknown };
        }
        if self.pid_namespace != me.pid_namespace {
            return Liveness::Unknown;
        }
        os::probe(self.pid, self.start_ticks)
    }
}

#[cfg(target_os = "linux")]
mod os {
    use std::io;

    use super::{Liveness, ProcessIdentity};

    /// What `/proc/<pid>/stat` says about a process.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Stat {
        /// Field 3: `R`, `S`, `D`, `Z` (exited, not reaped), `X` (dead), ...
        pub(super) state: char,
        /// Field 20.
        pub(super) threads: u64,
        /// Field 22: start time in clock ticks since boot.
        pub(super) start_ticks: u64,
    }

    /// Parses the contents of `/proc/<pid>/stat`. The command name (field 2) is in parentheses
    /// and may itself hold spaces and parentheses, so the fields are counted from the last `)`.
    pub(super) fn parse_stat(text: &str) -> Option<Stat> {
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `fields[0]` is field 3.
        let field = |n: usize| fields.get(n - 3).copied();
        Some(Stat {
            state: field(3)?.chars().next()?,
            threads: field(20)?.parse().ok()?,
            start_ticks: field(22)?.parse().ok()?,
        })
    }

    fn read_stat(pid: u32) -> io::Result<Option<Stat>> {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|text| parse_stat(&text))
    }

    fn read_trimmed(path: &str) -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// The namespace id from a link like `pid:[4026531836]`.
    fn pid_namespace(pid: u32) -> Option<u64> {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
    }

    pub(super) fn identity_of(pid: u32) -> Option<ProcessIdentity> {
        let stat = read_stat(pid).ok()??;
        Some(ProcessIdentity {
            pid,
            start_ticks: stat.start_ticks,
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id")?,
            pid_namespace: pid_namespace(pid)?,
            host: read_trimmed("/proc/sys/kernel/hostname")?,
        })
    }

    pub(super) fn probe(pid: u32, start_ticks: u64) -> Liveness {
        match read_stat(pid) {
            Ok(Some(stat)) => liveness_of(&stat, start_ticks),
            Ok(None) => Liveness::Unknown,
            // No such process; ESRCH when it vanished while being read.
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => Liveness::Gone,
            Err(_) => Liveness::Unknown,
        }
    }

    pub(super) fn liveness_of(stat: &Stat, start_ticks: u64) -> Liveness {
        if stat.start_ticks != start_ticks {
            // The pid was reused by a later process.
            return Liveness::Gone;
        }
        // A zombie whose other threads still run is a process whose main thread exited: it
        // is alive. A zombie with one thread has exited and waits to be reaped.
        if matches!(stat.state, 'Z' | 'X') && stat.threads <= 1 {
            return Liveness::Gone;
        }
        Liveness::Alive
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use super::{Liveness, ProcessIdentity};

    pub(super) fn identity_of(_pid: u32) -> Option<ProcessIdentity> {
        None
    }

    pub(super) fn probe(_pid: u32, _start_ticks: u64) -> Liveness {
        Liveness::Unknown
    }
}

/// The identity of another process of this machine (a test's child), read while it runs.
#[cfg(test)]
pub(crate) fn identity_of(pid: u32) -> Option<ProcessIdentity> {
    os::identity_of(pid)
}

#[cfg(test)]
mod tests;

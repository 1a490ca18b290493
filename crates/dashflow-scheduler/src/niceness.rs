//! A thread's niceness on Linux: what the pool's threads ([`PoolBuilder::niceness`]) and the
//! exporters' background threads (`dashflow-otel`, `dashflow-nats`) ask for when told to.
//!
//! Each thread sets its own, since on Linux niceness is per thread. Each caller turns a
//! refusal into its own typed error; this module only says why.
//!
//! [`PoolBuilder::niceness`]: crate::PoolBuilder::niceness

use std::io;
use std::ops::RangeInclusive;

/// The nice values Linux accepts: higher is nicer, that is, a lower priority.
pub const RANGE: RangeInclusive<i32> = -20..=19;

/// Why a niceness cannot be asked for here, found before any thread starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// Not on Linux, where a thread's niceness cannot be set.
    Unsupported,
    /// Outside [`RANGE`].
    OutOfRange,
}

impl From<Unfit> for io::Error {
    fn from(unfit: Unfit) -> Self {
        match unfit {
            Unfit::Unsupported => {
                io::Error::new(io::ErrorKind::Unsupported, "a thread's niceness is set on Linux only")
            }
            Unfit::OutOfRange => io::Error::new(io::ErrorKind::InvalidInput, "Linux takes a niceness from -20 to 19"),
        }
    }
}

/// Whether `nice` can be asked for here, before the thread starts.
pub fn check(nice: i32) -> Result<(), Unfit> {
    if !cfg!(target_os = "linux") {
        return Err(Unfit::Unsupported);
    }
    if !RANGE.contains(&nice) {
        return Err(Unfit::OutOfRange);
    }
    Ok(())
}

/// The niceness a background thread asks for: a value of its own, or some steps nicer than
/// the thread that starts it, whose niceness a new thread inherits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Niceness {
    /// This nice value: see [`check`], and the operating system may refuse it.
    Exactly(i32),
    /// This many steps nicer than inherited, at most 19; never refused (a thread may always
    /// lower its own priority), and nothing at all where a thread's niceness cannot be set.
    NicerBy(u8),
}

/// Why the operating system refused a niceness: the value asked for, and its answer.
#[derive(Debug)]
pub struct Refused {
    /// The nice value asked for.
    pub requested: i32,
    /// The operating system's answer.
    pub source: io::Error,
}

impl Niceness {
    /// What the exporters' threads ask for unless told otherwise: exporting is background
    /// work, which takes the CPU time runs leave rather than competing with them for it.
    pub const BACKGROUND: Self = Self::NicerBy(10);

    /// Sets the calling thread's niceness to this.
    pub fn apply(self) -> Result<(), Refused> {
        match self {
            Self::Exactly(requested) => set(requested).map_err(|source| Refused { requested, source }),
            Self::NicerBy(steps) => nicer_by(steps),
        }
    }
}

#[cfg(target_os = "linux")]
fn nicer_by(steps: u8) -> Result<(), Refused> {
    let own = |source| Refused { requested: i32::from(steps), source };
    let inherited = rustix::process::getpriority_process(Some(rustix::thread::gettid()))
        .map_err(|errno| own(io::Error::from(errno)))?;
    let requested = inherited.saturating_add(i32::from(steps)).min(*RANGE.end());
    if requested == inherited {
        return Ok(());
    }
    set(requested).map_err(|source| Refused { requested, source })
}

#[cfg(not(target_os = "linux"))]
fn nicer_by(_steps: u8) -> Result<(), Refused> {
    Ok(())
}

/// Sets the calling thread's niceness (`setpriority` on its thread id).
#[cfg(target_os = "linux")]
pub fn set(nice: i32) -> io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).map_err(io::Error::from)
}

/// [`check`] refuses a niceness before the thread starts on other platforms.
#[cfg(not(target_os = "linux"))]
pub fn set(_nice: i32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The calling thread's id in the operating system (Linux; 0 elsewhere), for a sink's `Debug`
/// (to find the thread in `top -H` or `/proc`).
#[cfg(target_os = "linux")]
pub fn thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The calling thread's id in the operating system (Linux; 0 elsewhere).
#[cfg(not(target_os = "linux"))]
pub fn thread_id() -> i32 {
    0
}

#[cfg(test)]
mod tests;

//! The publisher's thread's niceness, when one is asked for (`NatsBuilder::niceness`).
//!
//! Publishing events is background work: set above the runs' niceness, the thread takes the CPU time
//! the runs leave when both want it, and a full queue drops events, rather than slowing the runs.

use std::io;

/// The nice values Linux accepts: higher is nicer, that is, a lower priority.
const NICENESS: std::ops::RangeInclusive<i32> = -20..=19;

/// Whether `nice` can be asked for here, before the thread starts.
pub(crate) fn check(nice: i32) -> io::Result<()> {
    if !cfg!(target_os = "linux") {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "a thread's niceness is set on Linux only"));
    }
    if !NICENESS.contains(&nice) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "Linux takes a niceness from -20 to 19"));
    }
    Ok(())
}

/// Sets the calling thread's niceness: on Linux, niceness is per thread.
#[cfg(target_os = "linux")]
pub(crate) fn set(nice: i32) -> io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).map_err(io::Error::from)
}

/// `check` refuses a niceness before the thread starts on other platforms.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set(_nice: i32) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The calling thread's id in the operating system (Linux; 0 elsewhere), for the sink's
/// `Debug` (to find the thread in `top -H` or `/proc`).
#[cfg(target_os = "linux")]
pub(crate) fn thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_id() -> i32 {
    0
}

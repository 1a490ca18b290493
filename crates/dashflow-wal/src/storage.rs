//! The seam between the WAL writer and the file system, for fault injection.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The file operations whose failure the WAL writer must survive: appending bytes and making
/// them durable.
///
/// The WAL calls these for every segment write and sync, so a test (or an embedding that
/// wants to count fsyncs) can wrap [`OsStorage`] and fail or observe them. Everything else
/// (opening, listing, reading) goes straight to `std::fs`.
pub trait Storage: fmt::Debug + Send + Sync + 'static {
    /// Writes all of `buf` at the end of `file` (opened for appending).
    fn append(&self, file: &mut File, buf: &[u8]) -> io::Result<()> {
        file.write_all(buf)
    }

    /// Makes the data written to `file` durable (`fdatasync`).
    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    /// Makes the entries of directory `dir` (a created, renamed or removed segment) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsStorage;

impl Storage for OsStorage {}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a directory as a file; its directory entries are durable with the file.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

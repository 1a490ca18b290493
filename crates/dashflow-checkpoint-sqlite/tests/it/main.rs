//! SQLite-specific behaviour beyond the conformance suite: files, migrations, several
//! connections on one file, a full disk.

mod common;
mod files;
mod full;
mod processes;

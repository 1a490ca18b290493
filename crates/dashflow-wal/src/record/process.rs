//! The binary body of a process record ([`TAG_PROCESS`](super::TAG_PROCESS)): which process
//! executes the runs started in the same batch.
//!
//! Layout, integers as unsigned LEB128 varints, strings and ids as in event records:
//!
//! ```text
//! layout u8          1: the identity below (Linux procfs); a reader skips other layouts
//! pid                varint
//! start_ticks        varint
//! pid_namespace      varint
//! boot_id            string
//! host               string
//! count              varint
//! run_id u128 LE     16 bytes, `count` times
//! ```
//!
//! Like an event body it must be consumed exactly; anything else is a decode error.

use super::ProcessRecord;
use super::binary::{Malformed, Reader, string, varint};
use crate::process::ProcessIdentity;

/// The one layout this version writes and reads.
const LAYOUT_PROCFS: u8 = 1;

/// Bytes of a body besides its run ids, at most: the layout byte, three varints of up to 10
/// bytes, and the two strings with their length prefixes.
pub(super) fn fixed_len(process: &ProcessIdentity) -> usize {
    1 + 3 * 10 + 2 * 10 + process.boot_id.len() + process.host.len()
}

/// Bytes each run id adds to a body.
pub(super) const RUN_LEN: usize = 16;

pub(super) fn encode(record: &ProcessRecord, out: &mut Vec<u8>) {
    let process = &record.process;
    out.push(LAYOUT_PROCFS);
    varint(out, u64::from(process.pid));
    varint(out, process.start_ticks);
    varint(out, process.pid_namespace);
    string(out, &process.boot_id);
    string(out, &process.host);
    varint(out, record.runs.len() as u64);
    for run in &record.runs {
        out.extend_from_slice(&run.to_u128().to_le_bytes());
    }
}

/// Decodes a body written by [`encode`]; `None` for a layout this version does not know.
pub(super) fn decode(body: &[u8]) -> Result<Option<ProcessRecord>, Malformed> {
    let mut r = Reader { rest: body };
    if r.byte()? != LAYOUT_PROCFS {
        return Ok(None);
    }
    let pid = u32::try_from(r.varint()?).map_err(|_| Malformed("pid out of range"))?;
    let start_ticks = r.varint()?;
    let pid_namespace = r.varint()?;
    let boot_id = r.str()?.to_owned();
    let host = r.str()?.to_owned();
    let count = r.varint()?;
    // Each id takes 16 bytes: a count beyond the body is a lie.
    if count.saturating_mul(RUN_LEN as u64) != r.rest.len() as u64 {
        return Err(Malformed("run count does not match the record"));
    }
    let runs = (0..count).map(|_| r.run_id()).collect::<Result<_, _>>()?;
    let process = ProcessIdentity { pid, start_ticks, boot_id, pid_namespace, host };
    Ok(Some(ProcessRecord { process, runs }))
}

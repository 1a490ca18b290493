//! `dashflow wal verify` and `dashflow wal compact`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use dashflow_wal::{VerifyReport, WalError};

use crate::render;
use crate::store;

/// Reads every segment; exit code 1 when any record is damaged or undecodable.
pub(crate) fn verify(home: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let wal = match store::open(home) {
        Ok(wal) => wal,
        // Opening reads the last segment whole; damage there (rather than a torn tail, which
        // opening cuts) stops it. That is a finding of `verify`, not a failure to run it.
        Err(error) => match error.downcast_ref::<WalError>() {
            Some(WalError::Corrupt { segment, offset, damage }) => {
                writeln!(out, "damaged: {} at byte {offset}: {damage}", segment.display())?;
                writeln!(out, "the WAL cannot be opened until this segment is restored or moved away")?;
                return Ok(ExitCode::FAILURE);
            }
            _ => return Err(error),
        },
    };
    let report = wal.verify()?;
    write_report(&report, out)?;
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn write_report(report: &VerifyReport, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "checked {} segment(s), {} record(s), {}",
        report.segments,
        report.records,
        render::bytes(report.bytes)
    )?;
    for damaged in &report.damaged {
        let what = if damaged.torn_tail { "torn tail (cut on the next open)" } else { "damaged" };
        write!(out, "{what}: {} at byte {}: {}", damaged.segment.display(), damaged.offset, damaged.damage)?;
        if damaged.unreadable_bytes > 0 {
            write!(out, " ({} unreadable to the end of the segment)", render::bytes(damaged.unreadable_bytes))?;
        }
        writeln!(out)?;
    }
    for record in &report.undecodable {
        writeln!(
            out,
            "undecodable: {} at byte {}: intact, but written by another DashFlow version",
            record.segment.display(),
            record.offset
        )?;
    }
    if !report.index_up_to_date {
        writeln!(out, "the run index is behind the segments; the next writer catches it up")?;
    }
    if report.is_clean() {
        writeln!(out, "ok: no damage found")?;
    } else {
        let count = report.damaged.len() + report.undecodable.len();
        writeln!(out, "{count} damaged record(s): restore the named segments from a backup or move them away")?;
    }
    Ok(())
}

pub(crate) fn compact(home: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let mut wal = store::open(home)?;
    let report = wal.compact()?;
    if report.segments_before == report.segments_after && report.records_dropped == 0 {
        writeln!(
            out,
            "nothing to compact: {} sealed segment(s), {}",
            report.segments_before,
            render::bytes(report.bytes_before)
        )?;
    } else {
        writeln!(
            out,
            "compacted {} sealed segment(s) into {}: kept {} record(s), dropped {} of runs whose start retention removed; {} -> {}",
            report.segments_before,
            report.segments_after,
            report.records_kept,
            report.records_dropped,
            render::bytes(report.bytes_before),
            render::bytes(report.bytes_after),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `dashflow wal verify`, `dashflow wal repair` and `dashflow wal compact`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use dashflow_wal::{DamagedRange, RepairReport, VerifyReport};

use crate::render;
use crate::store;

/// Reads every segment without changing, creating or removing any file; exit code 1 when
/// anything is damaged or undecodable.
pub(crate) fn verify(home: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let dir = store::existing_wal_dir(home)?;
    let report = dashflow_wal::verify_dir(&dir, &store::config())
        .with_context(|| format!("cannot verify the DashFlow store at {}", dir.display()))?;
    write_report(&report, out)?;
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn write_report(report: &VerifyReport, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "checked {} segment(s), {} intact record(s), {}",
        report.segments,
        report.records,
        render::bytes(report.bytes)
    )?;
    for range in &report.damaged {
        write_range(range, out)?;
    }
    for record in &report.undecodable {
        writeln!(
            out,
            "undecodable: {} at byte {}: intact, but written by another DashFlow version",
            record.segment.display(),
            record.offset
        )?;
    }
    for missing in &report.missing_schemas {
        writeln!(
            out,
            "no graph definition: run {} (graph `{}`), graph record at byte {} of {}: the schema record it names \
             is not intact in that segment",
            missing.run.run_id,
            missing.graph,
            missing.offset,
            missing.segment.display()
        )?;
    }
    if report.index_up_to_date == Some(false) {
        writeln!(out, "the run index is behind the segments; the next writer catches it up")?;
    }
    if report.is_clean() {
        if !report.missing_schemas.is_empty() {
            writeln!(
                out,
                "{} run(s) lost their graph definition to damage set aside earlier; their other events read",
                report.missing_schemas.len()
            )?;
        }
        writeln!(out, "ok: no damage found")?;
        return Ok(());
    }
    if !report.damaged.is_empty() {
        writeln!(
            out,
            "{} damaged range(s), {}: every intact record around them is still read; `dashflow wal repair` \
             sets them aside (copies in {}/) and rewrites the segments",
            report.damaged.len(),
            render::bytes(report.damaged_bytes()),
            dashflow_wal::QUARANTINE_DIR,
        )?;
    }
    if !report.undecodable.is_empty() {
        writeln!(
            out,
            "{} undecodable record(s): read them with the DashFlow version that wrote them",
            report.undecodable.len()
        )?;
    }
    Ok(())
}

/// `damaged: <segment> at byte <offset>: <size>, <records>: <what>`.
fn write_range(range: &DamagedRange, out: &mut dyn Write) -> Result<()> {
    let what = if range.torn_tail { "torn tail (cut by the next writer)" } else { "damaged" };
    let records = match range.records {
        Some(1) => "1 record".to_owned(),
        Some(n) => format!("{n} records"),
        None => "an unknown number of records".to_owned(),
    };
    write!(
        out,
        "{what}: {} at byte {}: {} ({} bytes), {records}: {}",
        range.segment.display(),
        range.offset,
        render::bytes(range.len),
        range.len,
        range.damage
    )?;
    if let Some(copy) = &range.quarantined {
        write!(out, "; kept in {}", copy.display())?;
    }
    writeln!(out)?;
    Ok(())
}

/// Sets every damaged range aside, rewrites the segments without it and rebuilds the index.
pub(crate) fn repair(home: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let mut wal = store::open_for_writing(home)?;
    let report =
        wal.repair().with_context(|| format!("cannot repair the DashFlow store at {}", wal.dir().display()))?;
    write_repair(&report, out)?;
    Ok(ExitCode::SUCCESS)
}

fn write_repair(report: &RepairReport, out: &mut dyn Write) -> Result<()> {
    for range in &report.damaged {
        write_range(range, out)?;
    }
    if report.is_clean() {
        writeln!(out, "nothing to repair: no damage found; {} intact record(s) indexed", report.records)?;
        return Ok(());
    }
    if let Some(seq) = report.new_segment {
        writeln!(out, "started segment {} for new records", dashflow_wal::segment_file_name(seq))?;
    }
    writeln!(
        out,
        "repaired: set {} damaged range(s) aside, rewrote {} segment(s) without {}, rebuilt the index \
         from {} intact record(s)",
        report.damaged.len(),
        report.segments_rewritten,
        render::bytes(report.bytes_removed),
        report.records,
    )?;
    if report.schemas_restored > 0 {
        writeln!(
            out,
            "wrote back {} graph schema record(s) from other segments, so their runs keep their graph definitions",
            report.schemas_restored
        )?;
    }
    Ok(())
}

pub(crate) fn compact(home: Option<&Path>, out: &mut dyn Write) -> Result<ExitCode> {
    let mut wal = store::open_for_writing(home)?;
    let report = wal.compact()?;
    if report.segments_before == report.segments_after
        && report.records_dropped == 0
        && report.damaged_ranges == 0
        && report.schemas_before == report.schemas_after
    {
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
        if report.schemas_before != report.schemas_after {
            writeln!(
                out,
                "graph schemas: {} record(s) where kept runs need them, from {}",
                report.schemas_after, report.schemas_before
            )?;
        }
        if report.damaged_ranges > 0 {
            writeln!(
                out,
                "set {} damaged range(s) aside ({}) in {}/",
                report.damaged_ranges,
                render::bytes(report.damaged_bytes),
                dashflow_wal::QUARANTINE_DIR
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Compaction: rewriting the sealed segments without the records of runs whose start
//! retention removed (and the process records that only named such runs), packed into as few segments as the segment size allows.
//!
//! Schema records are not copied as they are: each output segment gets the schema record of
//! a key just before its first graph record that names the key, so every output holds the
//! schemas its runs need and no others. A schema is taken from any input that holds it
//! intact (a key names one schema), so a graph record whose own segment lost its schema
//! record to damage gets it back when another segment held the same schema.
//!
//! Crash safety: the new segments are written and synced in `compact.tmp/`, then a `PLAN`
//! file naming the input segments is renamed into place; from then on the compaction is
//! committed and [`finish_interrupted`] (run by every open) completes it. Output `i` takes the
//! name of input `i`, so the log keeps its order and stays before the active segment; an input
//! is replaced only while its output is still in `compact.tmp/`, which makes finishing
//! idempotent. Before the `PLAN` exists, an interrupted compaction is simply discarded.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use dashflow_telemetry::EventKind;

use crate::error::{Result, WalError};
use crate::frame;
use crate::record::{Payload, SchemaKey, decode_payload};
use crate::segment::{ReadStep, list_segments, open_reader, segment_path};
use crate::storage::Storage;
use crate::wal::{Check, Wal};

const TMP_DIR: &str = "compact.tmp";
const PLAN: &str = "PLAN";

/// What [`Wal::compact`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// Sealed segments read.
    pub segments_before: u64,
    /// Segments they were rewritten into (equal to `segments_before` when nothing changed).
    pub segments_after: u64,
    /// Records kept, schema records aside.
    pub records_kept: u64,
    /// Records dropped because their run's start is gone, schema records aside.
    pub records_dropped: u64,
    /// Schema records read from the sealed segments.
    pub schemas_before: u64,
    /// Schema records written: one per output segment and schema its kept runs name.
    pub schemas_after: u64,
    /// Bytes of the sealed segments before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
    /// Damaged ranges met in the sealed segments: copied into the quarantine directory
    /// before the rewrite, and left out of it.
    pub damaged_ranges: u64,
    /// Their bytes.
    pub damaged_bytes: u64,
}

/// One output segment being written.
struct Output {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
}

impl Wal {
    /// Rewrites the sealed segments: drops the records of runs whose start retention removed
    /// (the runs the index marks `partial`) and merges small segments. Damaged ranges are
    /// copied into the quarantine directory and left out. The active segment is left alone.
    /// The index is rebuilt afterwards.
    ///
    /// Readers that are in the middle of reading a sealed segment may see it replaced; run
    /// compaction when nobody is reading (the CLI's `wal compact` is such a moment).
    pub fn compact(&mut self) -> Result<CompactReport> {
        self.check_writable("compact")?;
        let _guard = self.lock_dir()?;
        let report = self.prepare_compaction()?;
        if report.segments_after != report.segments_before
            || report.records_dropped > 0
            || report.damaged_ranges > 0
            || report.schemas_after != report.schemas_before
        {
            finish_interrupted(&self.dir, &*self.config.storage)?;
            self.index.clear()?;
            self.catch_up(Check::FromHighWater)?;
        }
        Ok(report)
    }

    /// Writes the compacted segments and commits the plan, but replaces nothing yet. Runs
    /// under the directory lock.
    pub(crate) fn prepare_compaction(&mut self) -> Result<CompactReport> {
        self.catch_up(Check::FromHighWater)?;
        let segments = list_segments(&self.dir)?;
        let Some((_active, sealed)) = segments.split_last() else { return Ok(CompactReport::default()) };
        let mut report = CompactReport {
            segments_before: sealed.len() as u64,
            segments_after: sealed.len() as u64,
            ..CompactReport::default()
        };
        if sealed.is_empty() {
            return Ok(report);
        }
        let tmp = self.dir.join(TMP_DIR);
        remove_dir_if_exists(&tmp)?;
        std::fs::create_dir(&tmp).map_err(|e| WalError::io("create", &tmp, e))?;

        let outputs = self.rewrite(sealed, &tmp, &mut report)?;
        if report.records_dropped == 0
            && report.damaged_ranges == 0
            && outputs.len() == sealed.len()
            && report.schemas_after == report.schemas_before
        {
            // Nothing to gain: keep the segments as they are.
            drop(outputs);
            remove_dir_if_exists(&tmp)?;
            report.bytes_after = report.bytes_before;
            return Ok(report);
        }
        report.segments_after = outputs.len() as u64;
        let storage = &*self.config.storage;
        for output in outputs {
            let file = output.writer.into_inner().map_err(|e| WalError::io("write", &output.path, e.into_error()))?;
            storage.sync(&file).map_err(|e| WalError::io("fsync", &output.path, e))?;
            report.bytes_after += output.len;
        }
        let plan: String = sealed.iter().map(|seq| format!("{seq}\n")).collect();
        let plan = format!("{}\n{plan}", report.segments_after);
        let plan_new = tmp.join("PLAN.new");
        write_durably(&plan_new, plan.as_bytes(), storage)?;
        // The rename commits the compaction.
        std::fs::rename(&plan_new, tmp.join(PLAN)).map_err(|e| WalError::io("rename", &plan_new, e))?;
        storage.sync_dir(&tmp).map_err(|e| WalError::io("fsync", &tmp, e))?;
        Ok(report)
    }

    /// Copies the records to keep from `sealed` into new segments in `tmp`.
    fn rewrite(&self, sealed: &[u64], tmp: &Path, report: &mut CompactReport) -> Result<Vec<Output>> {
        let mut started = HashSet::new();
        let mut outputs: Vec<Output> = Vec::new();
        let mut frame_buf = Vec::new();
        // Every intact schema met so far, framed, by key.
        let mut schemas: HashMap<SchemaKey, Vec<u8>> = HashMap::new();
        // The schemas the last output holds.
        let mut in_output: HashSet<SchemaKey> = HashSet::new();
        for &seq in sealed {
            let path = segment_path(&self.dir, seq);
            let Some((mut reader, len)) = open_reader(&self.dir, seq, 0, self.config.max_record_size)? else {
                return Err(WalError::MissingSegment { segment: path });
            };
            report.bytes_before += len;
            loop {
                let payload = match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                    ReadStep::Record { payload, .. } => payload,
                    ReadStep::End => break,
                    ReadStep::Damaged { offset, len, .. } => {
                        // Kept aside before the segment holding it is replaced.
                        crate::damage::quarantine(&self.dir, seq, offset, len, &*self.config.storage)?;
                        report.damaged_ranges += 1;
                        report.damaged_bytes += len;
                        continue;
                    }
                };
                // Records this version cannot read are kept: never drop what is not understood.
                let mut needs = None;
                let keep = match decode_payload(payload) {
                    Ok(Payload::Schema(record)) => {
                        report.schemas_before += 1;
                        schemas.entry(record.key).or_insert_with(|| {
                            let mut framed = Vec::new();
                            frame::encode(payload, &mut framed);
                            framed
                        });
                        continue;
                    }
                    // A run's graph record comes just before its start: it starts the run.
                    Ok(Payload::Graph(graph)) => {
                        started.insert(graph.run.run_id);
                        needs = Some(graph.key);
                        true
                    }
                    Ok(Payload::Event(event)) => {
                        if matches!(event.kind, EventKind::RunStarted { .. } | EventKind::GraphDefined { .. }) {
                            started.insert(event.run.run_id);
                        }
                        started.contains(&event.run.run_id)
                    }
                    // A run block holds events of one run, its start among them if it has it.
                    Ok(Payload::Events(events)) => match events.first() {
                        Some(first) => {
                            if events.iter().any(|event| matches!(event.kind, EventKind::RunStarted { .. })) {
                                started.insert(first.run.run_id);
                            }
                            started.contains(&first.run.run_id)
                        }
                        None => true,
                    },
                    // It follows its runs' starts: kept while one of them is.
                    Ok(Payload::Process(record)) => record.runs.iter().any(|run| started.contains(run)),
                    Ok(_) | Err(_) => true,
                };
                if !keep {
                    report.records_dropped += 1;
                    continue;
                }
                report.records_kept += 1;
                frame_buf.clear();
                frame::encode(payload, &mut frame_buf);
                // The schema record a graph record needs goes just before it, in its output.
                let schema = needs.and_then(|key| schemas.get(&key).map(|framed| (key, framed)));
                let needed = |in_output: &HashSet<SchemaKey>| schema.filter(|(key, _)| !in_output.contains(key));
                let extra = needed(&in_output).map_or(0, |(_, framed)| framed.len() as u64);
                let frame_len = frame_buf.len() as u64;
                // Never more outputs than inputs: each output takes an input's name.
                let rotate = match outputs.last() {
                    None => true,
                    Some(out) => out.len > 0 && out.len + extra + frame_len > self.config.segment_size,
                };
                if rotate && outputs.len() < sealed.len() {
                    in_output.clear();
                    let out_path = tmp.join(format!("{}.out", outputs.len()));
                    let file = OpenOptions::new()
                        .create_new(true)
                        .write(true)
                        .open(&out_path)
                        .map_err(|e| WalError::io("create", &out_path, e))?;
                    outputs.push(Output { path: out_path, writer: BufWriter::with_capacity(1 << 20, file), len: 0 });
                }
                if let Some(out) = outputs.last_mut() {
                    if let Some((key, framed)) = needed(&in_output) {
                        out.writer.write_all(framed).map_err(|e| WalError::io("write", &out.path, e))?;
                        out.len += framed.len() as u64;
                        in_output.insert(key);
                        report.schemas_after += 1;
                    }
                    out.writer.write_all(&frame_buf).map_err(|e| WalError::io("write", &out.path, e))?;
                    out.len += frame_len;
                }
            }
        }
        Ok(outputs)
    }
}

/// Whether a compaction was interrupted (its work directory exists).
pub(crate) fn is_interrupted(dir: &Path) -> bool {
    dir.join(TMP_DIR).is_dir()
}

/// Completes a committed compaction (one whose `PLAN` exists) or discards an uncommitted one.
/// Returns whether segments were replaced, in which case the index must be rebuilt.
pub(crate) fn finish_interrupted(dir: &Path, storage: &dyn Storage) -> Result<bool> {
    let tmp = dir.join(TMP_DIR);
    if !tmp.is_dir() {
        return Ok(false);
    }
    let plan_path = tmp.join(PLAN);
    let plan = match std::fs::read_to_string(&plan_path) {
        Ok(plan) => plan,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            remove_dir_if_exists(&tmp)?;
            return Ok(false);
        }
        Err(e) => return Err(WalError::io("read", plan_path, e)),
    };
    let bad_plan = || WalError::BadCompactionPlan { path: plan_path.clone() };
    let mut lines = plan.lines();
    let outputs: usize = lines.next().and_then(|n| n.parse().ok()).ok_or_else(bad_plan)?;
    let inputs: Vec<u64> = lines.map(|l| l.parse().map_err(|_| bad_plan())).collect::<Result<_>>()?;

    for (i, &seq) in inputs.iter().enumerate() {
        let target = segment_path(dir, seq);
        let output = tmp.join(format!("{i}.out"));
        if i >= outputs {
            remove_file_if_exists(&target)?;
        } else if output.exists() {
            // Output `i` not moved yet, so `target` (if present) is still the old input.
            remove_file_if_exists(&target)?;
            std::fs::rename(&output, &target).map_err(|e| WalError::io("rename", &output, e))?;
        }
    }
    storage.sync_dir(dir).map_err(|e| WalError::io("fsync", dir, e))?;
    remove_dir_if_exists(&tmp)?;
    Ok(true)
}

fn write_durably(path: &Path, bytes: &[u8], storage: &dyn Storage) -> Result<()> {
    let mut file = File::create(path).map_err(|e| WalError::io("create", path, e))?;
    file.write_all(bytes).map_err(|e| WalError::io("write", path, e))?;
    storage.sync(&file).map_err(|e| WalError::io("fsync", path, e))
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(WalError::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(WalError::io("remove", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;

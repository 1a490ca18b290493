//! Reading trace records back: one run's trace through the index, or every trace in log order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use dashflow_telemetry::RunId;

use super::Wal;
use crate::error::{Result, WalError};
use crate::record::{Payload, decode_payload, is_trace};
use crate::segment::{Position, ReadStep, RecordReader, list_segments, open_reader, segment_path};
use crate::trace::{ExecutionTrace, TraceBuilder};

impl Wal {
    /// The trace of run `run_id`: its trace record, found through the index, or, for a run
    /// logged without one (the process's store writes trace records only next to trace
    /// files), the trace built from the run's events, which hold everything a trace says.
    ///
    /// [`WalError::Corrupt`] when that record is damaged.
    ///
    /// `Ok(None)` when the run has not finished: it is still running, or its process died.
    /// [`WalError::RunNotFound`] when the index does not know the run.
    pub fn trace(&self, run_id: RunId) -> Result<Option<ExecutionTrace>> {
        let run = self.index.get(run_id)?.ok_or(WalError::RunNotFound { run_id })?;
        let Some(at) = run.trace else {
            let mut builder = TraceBuilder::new(run.ids);
            self.run_events(run_id)?.iter().for_each(|event| builder.push(event));
            return Ok(builder.finish());
        };
        let path = segment_path(&self.dir, at.segment);
        let Some((mut reader, _)) = open_reader(&self.dir, at.segment, at.offset, self.config.max_record_size)? else {
            return Err(WalError::MissingSegment { segment: path });
        };
        match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
            ReadStep::Record { offset, payload } => match decode_payload(payload) {
                Ok(Payload::Trace(trace)) if trace.run.run_id == run_id => Ok(Some(*trace)),
                Ok(_) => {
                    tracing::warn!(%run_id, %at, "the WAL index points at a record that is not the run's trace; rebuild the index");
                    Ok(None)
                }
                Err(source) => Err(WalError::Decode { segment: path, offset, source }),
            },
            ReadStep::Damaged { offset, damage, .. } => Err(WalError::Corrupt { segment: path, offset, damage }),
            ReadStep::End => Ok(None),
        }
    }

    /// Every trace record from `from` on ([`Position::START`] for all), in log order, with
    /// its position: the traces of the runs that finished while the WAL was written.
    ///
    /// The iterator reads the segments that exist when it is created, takes no lock, and
    /// stops at a record still being written at the end of the last one. A record that does
    /// not decode is an `Err` item and reading goes on after it; so is damaged bytes' range
    /// ([`WalError::Corrupt`] naming segment and offset), after which reading goes on with
    /// the next intact record.
    ///
    /// ```
    /// use std::time::Duration;
    /// use dashflow_telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
    /// use dashflow_wal::{Position, TraceBuilder, Wal, WalConfig};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut wal = Wal::open(dir.path(), WalConfig::default())?;
    /// let run = RunIds::root(RunId::new());
    /// let events = [
    ///     Event::now(run, EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() }),
    ///     Event::now(run, EventKind::RunFinished {
    ///         outcome: RunOutcome::Completed, steps: 0, duration: Duration::ZERO, error: None,
    ///     }),
    /// ];
    /// wal.append(&events)?;
    /// let mut builder = TraceBuilder::new(run);
    /// events.iter().for_each(|event| builder.push(event));
    /// wal.append_trace(&builder.build())?;
    ///
    /// let traces: Vec<_> = wal.traces(Position::START).collect::<Result<_, _>>()?;
    /// assert_eq!(traces.len(), 1);
    /// assert_eq!(wal.trace(run.run_id)?, Some(traces[0].1.clone()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn traces(&self, from: Position) -> TraceRecords {
        TraceRecords::new(&self.dir, from, self.config.max_record_size)
    }
}

/// The trace records of a WAL directory in log order; see [`Wal::traces`].
#[derive(Debug)]
pub struct TraceRecords {
    dir: PathBuf,
    from: Position,
    max_record_size: u32,
    /// Segments still to read, `None` until listed (on the first `next`).
    segments: Option<VecDeque<u64>>,
    current: Option<Current>,
    done: bool,
}

#[derive(Debug)]
struct Current {
    seq: u64,
    path: PathBuf,
    reader: RecordReader<BufReader<File>>,
    is_last: bool,
}

/// What one read of the current segment came to, once the reader's borrow has ended.
enum Step {
    Trace(Position, Box<ExecutionTrace>),
    Skip,
    SegmentEnd,
    Failed(WalError, bool),
}

impl TraceRecords {
    fn new(dir: &Path, from: Position, max_record_size: u32) -> Self {
        Self { dir: dir.to_owned(), from, max_record_size, segments: None, current: None, done: false }
    }

    fn open_next(&mut self) -> Result<bool> {
        let segments = match &mut self.segments {
            Some(segments) => segments,
            None => {
                let listed = list_segments(&self.dir)?.into_iter().filter(|&seq| seq >= self.from.segment).collect();
                self.segments.insert(listed)
            }
        };
        while let Some(seq) = segments.pop_front() {
            let start = if seq == self.from.segment { self.from.offset } else { 0 };
            // A segment removed by retention since the listing holds nothing to read any more.
            if let Some((reader, _)) = open_reader(&self.dir, seq, start, self.max_record_size)? {
                let path = segment_path(&self.dir, seq);
                self.current = Some(Current { seq, path, reader, is_last: segments.is_empty() });
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Current {
    fn step(&mut self) -> Step {
        let step = match self.reader.next_record() {
            Ok(step) => step,
            Err(e) => return Step::Failed(WalError::io("read", &self.path, e), true),
        };
        match step {
            ReadStep::Record { offset, payload } => {
                if !is_trace(payload) {
                    return Step::Skip;
                }
                match decode_payload(payload) {
                    Ok(Payload::Trace(trace)) => Step::Trace(Position::new(self.seq, offset), trace),
                    Ok(_) => Step::Skip,
                    Err(source) => Step::Failed(WalError::Decode { segment: self.path.clone(), offset, source }, false),
                }
            }
            ReadStep::End => Step::SegmentEnd,
            ReadStep::Damaged { offset, damage, to_end, .. } => {
                if self.is_last && to_end {
                    // A record still being written (or a torn tail the next writer cuts).
                    return Step::SegmentEnd;
                }
                // The reader goes on after the damage: report it and keep reading.
                Step::Failed(WalError::Corrupt { segment: self.path.clone(), offset, damage }, false)
            }
        }
    }
}

impl Iterator for TraceRecords {
    type Item = Result<(Position, ExecutionTrace)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(current) = &mut self.current else {
                match self.open_next() {
                    Ok(true) => continue,
                    Ok(false) => self.done = true,
                    Err(error) => {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
                continue;
            };
            match current.step() {
                Step::Trace(at, trace) => return Some(Ok((at, *trace))),
                Step::Skip => {}
                Step::SegmentEnd => self.current = None,
                Step::Failed(error, fatal) => {
                    self.done = fatal;
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

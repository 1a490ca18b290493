//! Following the WAL as it grows, like `tail -f`, from any process.

use std::path::{Path, PathBuf};

use dashflow_telemetry::Event;

use crate::damage::DamagedRange;
use crate::error::{Result, WalError};
use crate::record::{Read, read_events};
use crate::schemas::{MissingSchema, Resolver};
use crate::segment::{Position, ReadStep, list_segments, open_reader, record_end, segment_path};

/// Reads the records appended to a WAL directory from a position on, as they arrive.
///
/// It takes no lock and never writes: call [`poll`](Self::poll) whenever you want what is new
/// (the CLI's `tail` polls on a timer). A record still being written at the end of the last
/// segment is not returned until it is complete. Trace records are stepped over (read them with
/// [`Wal::traces`](crate::Wal::traces)), and so are process records (the index reads them);
/// records of kinds this version does not know, or cannot decode, are skipped and counted.
/// Damaged bytes are skipped too (the records after them are read) and reported by
/// [`take_damage`](Self::take_damage). A run's `GraphDefined` comes with its graph's schema,
/// read from the schema record of its segment (which may lie before where the follower
/// began); when that record is not intact, the event is left out and reported by
/// [`take_missing_schemas`](Self::take_missing_schemas).
///
/// ```
/// use dashflow_telemetry::{Event, EventKind, RunId, RunIds};
/// use dashflow_wal::{Position, Wal, WalConfig};
///
/// let dir = tempfile::tempdir()?;
/// let mut wal = Wal::open(dir.path(), WalConfig::default())?;
/// let mut follower = wal.follow(Position::START);
/// assert!(follower.poll(100)?.is_empty());
///
/// let run = RunIds::root(RunId::new());
/// wal.append(&[Event::now(run, EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: Vec::new() })])?;
/// assert_eq!(follower.poll(100)?.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    position: Position,
    max_record_size: u32,
    skipped: u64,
    damage: Vec<DamagedRange>,
    schemas: Resolver,
    missing: Vec<MissingSchema>,
}

impl Follower {
    /// Follows the WAL in `dir` from `from`.
    pub fn new(dir: impl AsRef<Path>, from: Position, max_record_size: u32) -> Self {
        Self {
            dir: dir.as_ref().to_owned(),
            position: from,
            max_record_size,
            skipped: 0,
            damage: Vec::new(),
            schemas: Resolver::new(max_record_size),
            missing: Vec::new(),
        }
    }

    /// Where the next record will be read from.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Records skipped because they could not be decoded.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The damaged ranges skipped since the last call, each reported once.
    pub fn take_damage(&mut self) -> Vec<DamagedRange> {
        std::mem::take(&mut self.damage)
    }

    /// The runs' graph definitions left out since the last call because their schema
    /// records are not intact, each reported once.
    pub fn take_missing_schemas(&mut self) -> Vec<MissingSchema> {
        std::mem::take(&mut self.missing)
    }

    /// Returns the events of up to `max` records appended since the last call, with their
    /// records' positions (a run block's events share one; the last block read may take the
    /// count past `max`).
    ///
    /// When retention removed the segment the follower was in, it goes on with the oldest
    /// segment left. Damage is skipped and kept for [`take_damage`](Self::take_damage),
    /// except bytes at the end of the last segment with nothing intact after them: a record
    /// still being written, read again at the next call.
    pub fn poll(&mut self, max: usize) -> Result<Vec<(Position, Event)>> {
        let mut out = Vec::new();
        while out.len() < max {
            // Listed before reading: a segment that had a successor at this moment was sealed
            // (complete) before the read below, so its end is final.
            let segments = list_segments(&self.dir)?;
            let Some(&seq) = segments.iter().find(|&&seq| seq >= self.position.segment) else { break };
            if seq != self.position.segment {
                self.position = Position::new(seq, 0);
            }
            let next = segments.iter().copied().find(|&s| s > seq);
            let Some((mut reader, _)) = open_reader(&self.dir, seq, self.position.offset, self.max_record_size)? else {
                // Removed by retention since the listing: list again.
                continue;
            };
            let path = segment_path(&self.dir, seq);
            self.schemas.enter(seq, self.position.offset);
            loop {
                if out.len() >= max {
                    return Ok(out);
                }
                match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                    ReadStep::Record { offset, payload } => {
                        let end = record_end(offset, payload);
                        match read_events(payload) {
                            // A run block's events share its position.
                            Ok(Read::Events(events)) => {
                                out.extend(events.into_iter().map(|event| (Position::new(seq, offset), event)));
                            }
                            Ok(Read::Graph(graph)) => {
                                let damage = &mut self.damage;
                                let resolved =
                                    self.schemas.resolve(&self.dir, graph, offset, |_, _| Ok(None), &mut |range| {
                                        damage.push(range);
                                    })?;
                                match resolved {
                                    Ok(event) => out.push((Position::new(seq, offset), event)),
                                    Err(missing) => {
                                        tracing::warn!(%missing, "a run's graph definition is lost");
                                        self.missing.push(missing);
                                    }
                                }
                            }
                            Ok(Read::Schema(record)) => self.schemas.learn(record),
                            // Traces are read with `Wal::traces`, process records through the
                            // index; they are not unknown.
                            Ok(Read::Other) => {}
                            Ok(Read::Unknown) | Err(_) => self.skipped += 1,
                        }
                        self.position = Position::new(seq, end);
                    }
                    ReadStep::End => break,
                    ReadStep::Damaged { offset, len, damage, records, to_end } => {
                        if to_end && next.is_none() {
                            // A record still being written (or a torn tail the next writer cuts).
                            return Ok(out);
                        }
                        self.damage.push(DamagedRange::new(path.clone(), (offset, len, damage, records)));
                        self.position = Position::new(seq, offset + len);
                    }
                }
            }
            match next {
                Some(next) => self.position = Position::new(next, 0),
                None => break,
            }
        }
        Ok(out)
    }
}

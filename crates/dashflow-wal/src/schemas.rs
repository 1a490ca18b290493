//! Resolving the schema keys of graph records for readers of events.
//!
//! A run's `GraphDefined` is stored as a graph record naming its schema by key; the schema is
//! in a schema record earlier in the same segment (see the `record::schema` module). A reader
//! learns the schema records it passes while reading a segment in order; a graph record whose
//! key it has not met is resolved from the part of the segment before where the reader began
//! (through the index's note of where the schema record is, when the reader has an index,
//! else by reading that part once). A key the segment does not hold intact is a
//! [`MissingSchema`]: the run's events are read without their `GraphDefined`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashflow_telemetry::{Event, RunIds};

use crate::damage::DamagedRange;
use crate::error::{Result, WalError};
use crate::record::{GraphRecord, Read, SchemaKey, SchemaRecord, is_schema, read_events};
use crate::segment::{ReadStep, open_reader, segment_path};

/// A run's graph definition that could not be read: its graph record names a schema that
/// the record's segment does not hold intact (the schema record is damaged, or `wal repair`
/// set it aside with damage around it). Every other event of the run is read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingSchema {
    /// The segment file of the graph record.
    pub segment: PathBuf,
    /// Byte offset of the graph record.
    pub offset: u64,
    /// The run whose graph definition is lost.
    pub run: RunIds,
    /// The graph's name (the graph record holds it).
    pub graph: String,
}

impl fmt::Display for MissingSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the graph definition of run {} (graph `{}`, record at byte {} of `{}`) is lost: the schema record it \
             names is not intact in that segment",
            self.run.run_id,
            self.graph,
            self.offset,
            self.segment.display()
        )
    }
}

/// One reader's knowledge of the schemas of the segment it reads.
#[derive(Debug)]
pub(crate) struct Resolver {
    max_record_size: u32,
    /// The segment being read.
    segment: Option<u64>,
    /// Schemas met in that segment.
    known: HashMap<SchemaKey, Arc<serde_json::Value>>,
    /// Keys looked for everywhere they could be, and not found.
    missing: HashSet<SchemaKey>,
    /// Where the reader began reading the segment in order: the records before it are read
    /// (once) only when a key is not found otherwise.
    read_from: u64,
    prefix_read: bool,
}

impl Resolver {
    pub(crate) fn new(max_record_size: u32) -> Self {
        Self {
            max_record_size,
            segment: None,
            known: HashMap::new(),
            missing: HashSet::new(),
            read_from: 0,
            prefix_read: true,
        }
    }

    /// The reader goes on in segment `seq` from byte `offset`, in order: a segment other than
    /// the one it read forgets what that one held.
    pub(crate) fn enter(&mut self, seq: u64, offset: u64) {
        if self.segment != Some(seq) {
            self.segment = Some(seq);
            self.known.clear();
            self.missing.clear();
            self.read_from = offset;
            self.prefix_read = offset == 0;
        } else if offset < self.read_from {
            self.read_from = offset;
        }
    }

    /// A schema record the reader passed.
    pub(crate) fn learn(&mut self, record: SchemaRecord) {
        self.missing.remove(&record.key);
        self.known.entry(record.key).or_insert(record.schema);
    }

    /// The `GraphDefined` event of `graph`, the record at `offset` of the segment entered,
    /// or what is missing. `hint` is where the index saw the schema record of the key in this
    /// segment. Damage met on the way is passed to `damage`.
    pub(crate) fn resolve(
        &mut self,
        dir: &Path,
        graph: GraphRecord,
        offset: u64,
        hint: impl FnOnce(u64, SchemaKey) -> Result<Option<u64>>,
        damage: &mut dyn FnMut(DamagedRange),
    ) -> Result<std::result::Result<Event, MissingSchema>> {
        let seq = self.segment.unwrap_or_default();
        let key = graph.key;
        if !self.known.contains_key(&key) && !self.missing.contains(&key) {
            if let Some(at) = hint(seq, key)? {
                self.read_at(dir, seq, at, key)?;
            }
            if !self.known.contains_key(&key) && !self.prefix_read {
                self.prefix_read = true;
                self.read_prefix(dir, seq, damage)?;
            }
            if !self.known.contains_key(&key) {
                self.missing.insert(key);
            }
        }
        Ok(match self.known.get(&key) {
            Some(schema) => Ok(graph.into_event(Arc::clone(schema))),
            None => Err(MissingSchema {
                segment: segment_path(dir, seq),
                offset,
                run: graph.run,
                graph: graph.graph.to_string(),
            }),
        })
    }

    /// Learns the schema record at `at`, if it is one of `key`.
    fn read_at(&mut self, dir: &Path, seq: u64, at: u64, key: SchemaKey) -> Result<()> {
        let Some((mut reader, _)) = open_reader(dir, seq, at, self.max_record_size)? else { return Ok(()) };
        let path = segment_path(dir, seq);
        if let ReadStep::Record { payload, .. } = reader.next_record().map_err(|e| WalError::io("read", &path, e))?
            && let Ok(Read::Schema(record)) = read_events(payload)
            && record.key == key
        {
            self.learn(record);
        }
        Ok(())
    }

    /// Learns every schema record before where the reader began.
    fn read_prefix(&mut self, dir: &Path, seq: u64, damage: &mut dyn FnMut(DamagedRange)) -> Result<()> {
        let Some((mut reader, _)) = open_reader(dir, seq, 0, self.max_record_size)? else { return Ok(()) };
        let path = segment_path(dir, seq);
        loop {
            match reader.next_record().map_err(|e| WalError::io("read", &path, e))? {
                ReadStep::Record { offset, .. } if offset >= self.read_from => break,
                ReadStep::Record { payload, .. } => {
                    // A schema record that does not decode holds no schema.
                    if is_schema(payload)
                        && let Ok(Read::Schema(record)) = read_events(payload)
                    {
                        self.learn(record);
                    }
                }
                ReadStep::Damaged { offset, .. } if offset >= self.read_from => break,
                ReadStep::Damaged { offset, len, damage: what, records, .. } => {
                    damage(DamagedRange::new(path.clone(), (offset, len, what, records)));
                }
                ReadStep::End => break,
            }
        }
        Ok(())
    }
}

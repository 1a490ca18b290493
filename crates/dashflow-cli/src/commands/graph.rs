//! `dashflow graph`: the graph a run used, from the `GraphDefined` event at its start.

use std::io::Write;

use anyhow::{Context, Result, bail};
use dashflow_graph::GraphSchema;
use dashflow_telemetry::EventKind;
use dashflow_wal::Wal;

use crate::cli::{GraphArgs, GraphFormat};
use crate::store;

pub(crate) fn run(wal: &Wal, args: &GraphArgs, out: &mut dyn Write) -> Result<()> {
    let run = store::resolve_run(wal, &args.run)?;
    let run_id = run.ids.run_id;
    let events = wal.run_events(run_id)?;
    let Some(schema) = events.iter().find_map(|event| match &event.kind {
        EventKind::GraphDefined { schema, .. } => Some(schema),
        _ => None,
    }) else {
        if let Some(missing) = wal.missing_schemas().into_iter().find(|missing| missing.run.run_id == run_id) {
            bail!(
                "run {run_id} has no readable graph definition: its graph record at byte {} of `{}` names a \
                 schema that segment does not hold intact (damaged, or set aside by `dashflow wal repair`); \
                 `dashflow wal verify` lists such runs",
                missing.offset,
                missing.segment.display()
            );
        }
        bail!(
            "run {run_id} has no graph definition in the WAL: its start was removed by retention, or it was \
             recorded by a DashFlow version that did not store graphs"
        );
    };
    match args.format {
        GraphFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&**schema)?)?,
        GraphFormat::Mermaid => {
            let schema: GraphSchema = serde_json::from_value((**schema).clone()).with_context(|| {
                format!("the graph definition of run {run_id} cannot be read by this version of the CLI")
            })?;
            write!(out, "{}", schema.to_mermaid())?;
        }
    }
    Ok(())
}

use crate::common::{Home, echo_graph, record_runs, record_runs_with, small_segments, support_graph};

#[test]
fn graph_prints_the_mermaid_of_the_graph_the_run_used() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["graph", &runs.failed.to_string()]);
    assert_eq!(out.ok(), support_graph().schema().to_mermaid());
    assert!(out.stdout.contains("classify -. \"billing\" .-> billing"), "{}", out.stdout);
}

#[test]
fn graph_json_prints_the_schema_nodes_and_edges() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["graph", &runs.echo.to_string(), "--format", "json"]);
    let schema: dashflow::GraphSchema = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(schema.name, "echo");
    assert_eq!(schema.nodes.iter().map(|node| node.name.as_str()).collect::<Vec<_>>(), ["answer"]);
    assert_eq!(schema.edges.len(), 2);
}

#[test]
fn graph_refuses_an_unknown_format() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["graph", &runs.echo.to_string(), "--format", "svg"]);
    assert_eq!(out.code, 2, "{out:#?}");
}

/// The segment and byte range of the schema record `run`'s graph record names, and whether
/// another segment holds that schema too.
fn schema_record_of(home: &Home, run: dashflow::RunId) -> (std::path::PathBuf, std::ops::Range<usize>, bool) {
    use dashflow_wal::__private::{Payload, ReadStep, RecordReader, decode_payload};
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(home.wal_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    // Every record: segment, offset, frame length, payload.
    let mut records = Vec::new();
    for path in &segments {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = RecordReader::new(std::io::Cursor::new(&bytes), 0, bytes.len() as u64, 1 << 24);
        while let ReadStep::Record { offset, payload } = reader.next_record().unwrap() {
            records.push((path.clone(), offset as usize, 8 + payload.len(), decode_payload(payload).unwrap()));
        }
    }
    let (segment, key) = records
        .iter()
        .find_map(|(path, _, _, payload)| match payload {
            Payload::Graph(graph) if graph.run.run_id == run => Some((path.clone(), graph.key)),
            _ => None,
        })
        .expect("the run's graph record");
    let schema_in = |path: &std::path::PathBuf| {
        records.iter().find_map(|(at, offset, len, payload)| match payload {
            Payload::Schema(schema) if schema.key == key && at == path => Some(*offset..*offset + *len),
            _ => None,
        })
    };
    let range = schema_in(&segment).expect("the schema record in the graph record's segment");
    let elsewhere = segments.iter().any(|path| *path != segment && schema_in(path).is_some());
    (segment, range, elsewhere)
}

#[test]
fn graph_of_a_run_whose_schema_record_is_damaged_says_what_was_lost_and_repair_gives_it_back() {
    let home = Home::new();
    let runs = record_runs_with(&home, small_segments());
    // The same graphs again, into later segments: they hold the same schemas.
    record_runs_with(&home, small_segments());
    let (segment, range, elsewhere) = schema_record_of(&home, runs.failed);
    assert!(elsewhere, "another segment holds the support graph's schema too");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[(range.start + range.end) / 2] ^= 0x08;
    std::fs::write(&segment, &bytes).unwrap();

    let out = home.dashflow(&["graph", &runs.failed.to_string()]);
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{out:#?}");
    // The damage and the loss are warned about, then the error says what was lost and where.
    let error = out.stderr.lines().find(|line| line.starts_with("error: ")).unwrap();
    assert!(error.contains("no readable graph definition"), "{error}");
    assert!(error.contains(&segment.display().to_string()), "{error}");
    assert!(out.stderr.contains("warning: skipped damaged bytes in the WAL"), "{out:#?}");
    // Everything else of the run is still read, with a warning naming the loss.
    let show = home.dashflow(&["runs", "show", &runs.failed.to_string()]);
    assert!(show.ok().contains("billing"), "{show:#?}");
    assert!(show.stderr.contains("is lost: the schema record it names is not intact"), "{show:#?}");
    let verify = home.dashflow(&["wal", "verify"]);
    assert_eq!(verify.code, 1, "{verify:#?}");
    assert!(verify.stdout.contains(&format!("no graph definition: run {}", runs.failed)), "{}", verify.stdout);
    // Runs of another graph keep theirs: its schema has a record of its own.
    assert_eq!(home.dashflow(&["graph", &runs.echo.to_string()]).ok(), echo_graph().schema().to_mermaid());

    let repair = home.dashflow(&["wal", "repair"]);
    assert!(repair.ok().contains("wrote back 1 graph schema record(s)"), "{repair:#?}");
    assert_eq!(home.dashflow(&["graph", &runs.failed.to_string()]).ok(), support_graph().schema().to_mermaid());
    assert!(home.dashflow(&["wal", "verify"]).ok().ends_with("ok: no damage found\n"));
}

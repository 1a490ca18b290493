//! The web viewer's runs page over a run index of 100,000 runs (issue 13 sets its budget).
//! `cargo bench -p dashflow-benches --bench ui`; results go in docs/benchmarks.md.
//!
//! The page's query is limited (`dashflow::ui::RUNS_PAGE_MAX`), so its time is bounded by
//! construction; this measures the whole request: opening the WAL read-only, the index query,
//! rendering and HTTP, over loopback.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use dashflow::telemetry::{Event, EventKind, RunId, RunIds, RunOutcome};
use dashflow::ui::{Bind, Viewer};
use dashflow::wal::{Wal, WalConfig};

const RUNS: usize = 100_000;
const BATCH: usize = 5_000;

fn or_panic<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

/// A WAL whose index holds `RUNS` finished runs of three graphs on many threads.
fn fill(dir: &std::path::Path) {
    let mut wal = or_panic(Wal::open(dir, WalConfig::default()), "open the WAL");
    let graphs: [Arc<str>; 3] = [Arc::from("triage"), Arc::from("support"), Arc::from("billing")];
    let start = SystemTime::now() - Duration::from_secs(86_400);
    let mut events = Vec::with_capacity(2 * BATCH);
    for i in 0..RUNS {
        let ids = RunIds::root(RunId::new());
        let at = start + Duration::from_millis(i as u64);
        let thread = Some(Arc::<str>::from(format!("t-{}", i % 5_000)));
        let graph = Arc::clone(&graphs[i % 3]);
        events.push(Event::at(ids, at, EventKind::RunStarted { graph, thread_id: thread, tags: Vec::new() }));
        let outcome = if i % 10 == 0 { RunOutcome::Failed } else { RunOutcome::Completed };
        let finished = EventKind::RunFinished { outcome, steps: 3, duration: Duration::from_millis(5), error: None };
        events.push(Event::at(ids, at + Duration::from_millis(5), finished));
        if events.len() >= 2 * BATCH {
            or_panic(wal.append(&events), "append");
            events.clear();
        }
    }
    or_panic(wal.append(&events), "append");
    or_panic(wal.close(), "close the WAL");
}

fn get(addr: SocketAddr, path: &str) -> usize {
    get_body(addr, path).len()
}

fn get_body(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = or_panic(TcpStream::connect(addr), "connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    or_panic(stream.write_all(request.as_bytes()), "send");
    let mut response = Vec::new();
    or_panic(stream.read_to_end(&mut response), "read");
    assert!(response.starts_with(b"HTTP/1.1 200"), "the page failed: {}", String::from_utf8_lossy(&response));
    response
}

fn runs_page(c: &mut Criterion) {
    let dir = or_panic(tempfile::tempdir(), "temporary directory");
    let wal_dir = dir.path().join("wal");
    fill(&wal_dir);
    let rt = or_panic(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(), "runtime");
    let addr = rt.block_on(async {
        let bind =
            or_panic(Bind::new(SocketAddr::from(([127, 0, 0, 1], 0)), dashflow::ui::Reach::LoopbackOnly, None), "bind");
        let listener = or_panic(bind.listen().await, "listen");
        let addr = listener.local_addr();
        let viewer = or_panic(Viewer::new(&wal_dir), "viewer");
        tokio::spawn(viewer.serve(listener, std::future::pending()));
        addr
    });
    let page = String::from_utf8_lossy(&get_body(addr, "/")).into_owned();
    let rows = page.matches("<tr class=\"run\"").count();
    assert_eq!(rows, dashflow::ui::RUNS_PAGE_DEFAULT, "the page lists a page of the 100,000 runs");
    c.bench_function("ui_runs_page_100k", |b| b.iter(|| get(addr, "/")));
    c.bench_function("ui_runs_page_100k/filtered", |b| b.iter(|| get(addr, "/?status=failed&graph=triage")));
    // Where the page's time goes: opening the WAL read-only, and the index query.
    let config = || WalConfig::default().retention(dashflow::wal::Retention::KEEP_ALL);
    c.bench_function("ui_runs_page_100k/open_read_only", |b| {
        b.iter(|| or_panic(Wal::open_read_only(&wal_dir, config()), "open"))
    });
    let wal = or_panic(Wal::open_read_only(&wal_dir, config()), "open");
    let filter = dashflow::wal::RunFilter::all().limit(dashflow::ui::RUNS_PAGE_DEFAULT);
    c.bench_function("ui_runs_page_100k/list_runs", |b| b.iter(|| or_panic(wal.list_runs(&filter), "list")));
}

criterion_group!(benches, runs_page);
criterion_main!(benches);

//! Criterion benches of workloads B1-B4 (µs per invoke), each with the default observers and
//! with none (`/telemetry_off`); B4 (B1 checkpointed into SQLite) in `Async` durability
//! (`b4_chain100_sqlite`) and in `Sync` (`b4_chain100_sqlite/sync`); B1 and B3 in graph-flow
//! (`/graph_flow`, see `peer/graph_flow.rs`); C1, 1,000 concurrent 10-node runs with the
//! memory checkpointer (`c1_concurrent1000`, µs per 1,000 runs); B1 and B3 with no default
//! observers but one exporter: the OpenTelemetry sink exporting to an exporter that discards
//! the spans (`/otel`: what a run and the sink's thread cost, without a collector), and the
//! NATS sink publishing to the server `DASHFLOW_BENCH_NATS_URL` names (`/nats`; skipped when
//! unset). Run through `cargo xtask bench`.
//!
//! Before timing, this prints what B4 and the large-state workload store, measured in fixed
//! runs on new databases (with the default observers), as lines `cargo xtask bench` reads:
//!
//! ```text
//! metric b4_chain100_sqlite checkpoints_per_invoke 101.0
//! metric b4_chain100_sqlite db_bytes_per_step 150.1
//! ```
#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::fmt::Display;
use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dashflow::{Durability, RunConfig};
use dashflow_benches::durable::{
    LargeStateStorage, Storage, Threads, b4_storage, chain100_checkpointed, large_state_storage, open_sqlite,
};
use dashflow_benches::{
    CONCURRENT_RUNS, Counter, Fanout, Telemetry, chain10_in_memory, chain100, chain100_config, concurrent_runs,
    exporters, fanout16, loop1000, loop1000_config, verify_workloads,
};

#[path = "peer/graph_flow.rs"]
mod graph_flow;

/// B4 invokes of the fixed run that measures database bytes per step.
const B4_STORAGE_INVOKES: u64 = 200;

/// Large-state runs on new threads, whose supersteps are measured.
const LARGE_STATE_THREADS: u64 = 5;

/// Large-state runs continuing a thread, measured whole.
const LARGE_STATE_CONTINUING: u64 = 3;

/// B4 in both durability modes: benchmark id suffix and mode.
const B4_MODES: [(&str, Durability); 2] = [("", Durability::Async), ("/sync", Durability::Sync)];

/// Every workload with the default observers and with none: benchmark id suffix and setting.
const TELEMETRY: [(&str, Telemetry); 2] = [("", Telemetry::Defaults), ("/telemetry_off", Telemetry::Off)];

fn runtime() -> tokio::runtime::Runtime {
    // Two workers, as on the reference machine; B2's branches run on both.
    match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start the tokio runtime: {error}"),
    }
}

fn workloads(c: &mut Criterion) {
    let rt = runtime();
    if let Err(error) = rt.block_on(verify_workloads()) {
        panic!("a workload gives the wrong result, so timing it would mislead: {error}");
    }
    for (suffix, telemetry) in TELEMETRY {
        let app = chain100(telemetry);
        let log = LogKept::start(telemetry);
        c.bench_function(&format!("b1_chain100{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Counter::default(), chain100_config()).await;
                black_box(result.map(|r| r.state.counter))
            })
        });
        log.report("b1_chain100");

        let app = fanout16(telemetry);
        c.bench_function(&format!("b2_fanout16{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Fanout::default(), RunConfig::new()).await;
                black_box(result.map(|r| r.state.total))
            })
        });

        let app = loop1000(telemetry);
        let log = LogKept::start(telemetry);
        c.bench_function(&format!("b3_loop1000{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Counter::default(), loop1000_config()).await;
                black_box(result.map(|r| r.state.counter))
            })
        });
        log.report("b3_loop1000");
    }
}

/// The default observers' event log over one benchmark: what share of the events recorded
/// meanwhile it wrote. The log never blocks a run: a workload that records events faster than
/// its writer thread writes them has the rest dropped and counted, and its time is that of a
/// run whose log keeps only part of its events. `None` without the defaults or the log.
struct LogKept(Option<(std::sync::Arc<dashflow::wal::EventStore>, dashflow::wal::StoreStats)>);

impl LogKept {
    fn start(telemetry: Telemetry) -> Self {
        if telemetry != Telemetry::Defaults {
            return Self(None);
        }
        dashflow::flush_observers();
        let store = or_panic(dashflow::wal::EventStore::global(), "the default event log");
        Self(store.map(|store| {
            let stats = store.stats();
            (store, stats)
        }))
    }

    /// Prints `metric ID log_kept_percent P` once every event recorded is written or dropped.
    fn report(self, id: &str) {
        let Some((store, before)) = self.0 else { return };
        dashflow::flush_observers();
        let after = store.stats();
        let written = after.written.saturating_sub(before.written);
        let dropped = after.dropped.saturating_sub(before.dropped);
        if let Some(percent) = kept_percent(written, dropped) {
            metric(id, "log_kept_percent", percent);
        }
    }
}

/// The share of `written + dropped` events that were written, in percent; `None` for none.
fn kept_percent(written: u64, dropped: u64) -> Option<f64> {
    let recorded = written + dropped;
    (recorded > 0).then(|| written as f64 * 100.0 / recorded as f64)
}

/// B1 and B3 in graph-flow, in the same run as DashFlow's.
fn peer_workloads(c: &mut Criterion) {
    let rt = runtime();
    let chain = graph_flow::chain100();
    let looped = graph_flow::loop1000();
    let counted =
        rt.block_on(async { (graph_flow::invoke(&chain, "n0").await, graph_flow::invoke(&looped, "inc").await) });
    if counted != (100, 1000) {
        panic!("graph-flow's B1 and B3 counted {counted:?}, not (100, 1000): timing them would mislead");
    }
    c.bench_function("b1_chain100/graph_flow", |b| {
        b.to_async(&rt).iter(|| async { black_box(graph_flow::invoke(&chain, "n0").await) })
    });
    c.bench_function("b3_loop1000/graph_flow", |b| {
        b.to_async(&rt).iter(|| async { black_box(graph_flow::invoke(&looped, "inc").await) })
    });
}

/// C1: 1,000 runs at once, each on a new thread of a new memory checkpointer per iteration
/// (so the checkpointer does not grow from one iteration to the next).
fn concurrent_workloads(c: &mut Criterion) {
    let rt = runtime();
    for (suffix, telemetry) in TELEMETRY {
        let threads = Threads::new();
        c.bench_function(&format!("c1_concurrent1000{suffix}"), |b| {
            b.to_async(&rt).iter_batched(
                || chain10_in_memory(telemetry),
                |app| {
                    let threads = &threads;
                    async move { black_box(concurrent_runs(&app, CONCURRENT_RUNS, threads).await) }
                },
                BatchSize::PerIteration,
            )
        });
    }
}

fn durable_workloads(c: &mut Criterion) {
    let rt = runtime();
    // Removed when this function returns, after each bench has dropped its checkpointer.
    let dir = or_panic(tempfile::tempdir(), "cannot create a temporary directory");
    report_storage(&rt, dir.path());
    for (telemetry_suffix, telemetry) in TELEMETRY {
        for (suffix, durability) in B4_MODES {
            bench_b4(
                c,
                &rt,
                dir.path(),
                &format!("b4_chain100_sqlite{suffix}{telemetry_suffix}"),
                telemetry,
                durability,
            );
        }
    }
}

/// Times B4 on a new database, a new thread per invoke.
fn bench_b4(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    id: &str,
    telemetry: Telemetry,
    durability: Durability,
) {
    let checkpointer = or_panic(rt.block_on(open_sqlite(&dir.join(format!("{}.db", id.replace('/', "-"))))), "B4");
    let app = chain100_checkpointed(telemetry, checkpointer);
    let threads = Threads::new();
    c.bench_function(id, |b| {
        b.to_async(rt).iter(|| async {
            let result = app.invoke(Counter::default(), threads.next_config(durability)).await;
            black_box(result.map(|r| r.state.counter))
        })
    });
}

/// Runs the fixed storage measurements on fresh databases and prints their `metric` lines.
fn report_storage(rt: &tokio::runtime::Runtime, dir: &Path) {
    for (suffix, durability) in B4_MODES {
        let id = format!("b4_chain100_sqlite{suffix}");
        let path = dir.join(format!("storage-{}.db", id.replace('/', "-")));
        let storage: Storage = or_panic(rt.block_on(b4_storage(&path, durability, B4_STORAGE_INVOKES)), "B4 storage");
        metric(&id, "checkpoints_per_invoke", storage.checkpoints_per_invoke());
        metric(&id, "db_bytes_per_step", storage.bytes_per_step());
        metric(&id, "fixed_run_us_per_invoke", storage.us_per_invoke());
    }
    let path = dir.join("storage-large_state_sqlite.db");
    let large: LargeStateStorage = or_panic(
        rt.block_on(large_state_storage(&path, LARGE_STATE_THREADS, LARGE_STATE_CONTINUING)),
        "large-state storage",
    );
    let id = "large_state_sqlite";
    metric(id, "state_bytes", large.state_bytes as f64);
    metric(id, "item_bytes", large.item_bytes as f64);
    metric(id, "snapshot_bytes", large.snapshot_bytes as f64);
    metric(id, "steps_measured", large.steps.checkpoints as f64);
    metric(id, "db_bytes_per_step", large.steps.bytes_per_step());
    metric(id, "fixed_run_us_per_invoke", large.steps.us_per_invoke());
    metric(id, "continuing_checkpoints_per_invoke", large.continuing.checkpoints_per_invoke());
    metric(id, "continuing_db_bytes_per_step", large.continuing.bytes_per_step());
}

#[allow(clippy::print_stdout, reason = "`cargo xtask bench` reads these lines from stdout")]
fn metric(id: &str, name: &str, value: f64) {
    println!("metric {id} {name} {value:.1}");
}

fn or_panic<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error}"),
    }
}

/// B1 and B3 with one exporter attached and no default observers: compare with
/// `/telemetry_off`.
fn exporter_workloads(c: &mut Criterion) {
    let rt = runtime();
    let (otel, _otel_guard) = or_panic(exporters::otel_sink(), "the OpenTelemetry sink");
    let mut sinks: Vec<(&str, std::sync::Arc<dyn dashflow::EventCallback>)> = vec![("otel", std::sync::Arc::new(otel))];
    let mut guards = Vec::new();
    match std::env::var("DASHFLOW_BENCH_NATS_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let (nats, guard) = or_panic(exporters::nats_sink(&url), "the NATS sink");
            sinks.push(("nats", std::sync::Arc::new(nats)));
            guards.push(guard);
        }
        _ => skip("b1_chain100/nats and b3_loop1000/nats: DASHFLOW_BENCH_NATS_URL is not set"),
    }
    for (suffix, sink) in sinks {
        let app = chain100(Telemetry::Off).with_shared_callback(std::sync::Arc::clone(&sink));
        c.bench_function(&format!("b1_chain100/{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Counter::default(), chain100_config()).await;
                black_box(result.map(|r| r.state.counter))
            })
        });
        let app = loop1000(Telemetry::Off).with_shared_callback(sink);
        c.bench_function(&format!("b3_loop1000/{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Counter::default(), loop1000_config()).await;
                black_box(result.map(|r| r.state.counter))
            })
        });
    }
}

#[allow(clippy::print_stdout, reason = "`cargo xtask bench` shows what was skipped")]
fn skip(what: &str) {
    println!("skipped {what}");
}

criterion_group!(benches, workloads, peer_workloads, exporter_workloads);
criterion_group! {
    name = concurrent;
    // One iteration is 1,000 runs (tens of milliseconds): 20 samples fit `--quick`'s 2 s.
    config = Criterion::default().sample_size(20);
    targets = concurrent_workloads
}
criterion_group! {
    name = durable;
    // One B4 invoke takes milliseconds: 20 samples (210 invokes) fit `--quick`'s 2 s.
    config = Criterion::default().sample_size(20);
    targets = durable_workloads
}
criterion_main!(benches, concurrent, durable);

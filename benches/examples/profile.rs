//! Runs one workload many times with no measurement harness around it, for profilers:
//!
//! ```text
//! cargo build --release -p dashflow-benches --example profile
//! valgrind --tool=callgrind target/release/examples/profile b3 10
//! perf record -g target/release/examples/profile b1 20000
//! ```
//!
//! Arguments: the workload (`b1`, `b2`, `b3`, `b4` and `b4sync` for B4 in `Async` and
//! `Sync` durability, on a database in a temporary directory, `c1` for rounds of 1,000
//! concurrent runs, or `b2cpu` and `b2cpu_bound` for B2 with branches that compute for
//! `FANOUT_CPU_WORK` without awaiting, as async or as CPU-bound nodes), how many invokes
//! (rounds for `c1`; default 1000), and the observers: `defaults` (the default), `off` (none),
//! `otel` or `nats` (that exporter alone: the OpenTelemetry sink exporting to an exporter that
//! discards the spans, or the NATS sink publishing to `DASHFLOW_BENCH_NATS_URL`), or
//! `defaults+otel` and `defaults+nats` (the exporter after the default observers).
//! `gf1` and `gf3` run B1 and B3 in graph-flow, the peer `cargo xtask bench` compares with
//! (the observers do not apply to them).

use std::sync::Arc;

#[path = "../benches/peer/graph_flow.rs"]
mod graph_flow;

use dashflow::{CompiledGraph, Durability, EventCallback, GraphState, Placement, RunConfig};
use dashflow_benches::durable::{Threads, chain100_checkpointed, open_sqlite};
use dashflow_benches::{
    CONCURRENT_RUNS, Counter, Fanout, Telemetry, chain10_in_memory, chain100, chain100_config, concurrent_runs,
    exporters, fanout16, fanout16_cpu, loop1000, loop1000_config,
};

/// The observers a workload runs with: the default ones or none, and an exporter or none.
struct Observers {
    telemetry: Telemetry,
    exporter: Option<Exporter>,
}

/// An exporter attached after the graph's other observers, with the guard that stops it.
enum Exporter {
    Otel(dashflow::otel::OtelSink, dashflow::otel::OtelGuard),
    Nats(dashflow::nats::NatsSink, dashflow::nats::NatsGuard),
}

impl Observers {
    fn parse(arg: Option<&str>) -> Result<Self, String> {
        let (telemetry, exporter) = match arg.unwrap_or("defaults") {
            "defaults" => (Telemetry::Defaults, None),
            "off" => (Telemetry::Off, None),
            "otel" => (Telemetry::Off, Some("otel")),
            "nats" => (Telemetry::Off, Some("nats")),
            "defaults+otel" => (Telemetry::Defaults, Some("otel")),
            "defaults+nats" => (Telemetry::Defaults, Some("nats")),
            other => {
                return Err(format!(
                    "unknown observers `{other}`: use defaults, off, otel, nats, defaults+otel or defaults+nats"
                ));
            }
        };
        let exporter = match exporter {
            None => None,
            Some("otel") => exporters::otel_sink().map(|(sink, guard)| Some(Exporter::Otel(sink, guard)))?,
            Some(_) => {
                let url = std::env::var("DASHFLOW_BENCH_NATS_URL")
                    .map_err(|_| "the `nats` observers publish to DASHFLOW_BENCH_NATS_URL, which is not set")?;
                exporters::nats_sink(&url).map(|(sink, guard)| Some(Exporter::Nats(sink, guard)))?
            }
        };
        Ok(Self { telemetry, exporter })
    }

    /// `app` with the exporter, if any, after its other observers.
    fn attach<S: GraphState>(&self, app: CompiledGraph<S>) -> CompiledGraph<S> {
        let sink: Arc<dyn EventCallback> = match &self.exporter {
            None => return app,
            Some(Exporter::Otel(sink, _)) => Arc::new(sink.clone()),
            Some(Exporter::Nats(sink, _)) => Arc::new(sink.clone()),
        };
        app.with_shared_callback(sink)
    }

    /// Waits for the exporter to finish what it was handed, and says how it went.
    fn flush(&self) -> Result<(), Box<dyn std::error::Error>> {
        let limit = std::time::Duration::from_secs(60);
        let started = std::time::Instant::now();
        match &self.exporter {
            None => {}
            Some(Exporter::Otel(sink, _)) => {
                sink.flush(limit)?;
                eprintln!("otel flushed in {:?}: {:?}", started.elapsed(), sink.stats());
            }
            Some(Exporter::Nats(sink, _)) => {
                sink.flush(limit)?;
                eprintln!("nats flushed in {:?}: {:?}", started.elapsed(), sink.stats());
            }
        }
        Ok(())
    }

    /// Stops the exporter's thread.
    fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        match self.exporter {
            None => {}
            Some(Exporter::Otel(_, guard)) => guard.shutdown()?,
            Some(Exporter::Nats(_, guard)) => guard.shutdown(std::time::Duration::from_secs(60))?,
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "b1".to_owned());
    let invokes: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1000);
    let observers = Observers::parse(args.next().as_deref())?;
    let telemetry = observers.telemetry;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut started = std::time::Instant::now();
    runtime.block_on(async {
        match workload.as_str() {
            "b1" => {
                let app = observers.attach(chain100(telemetry));
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    app.invoke(Counter::default(), chain100_config()).await?;
                }
            }
            "b2" => {
                let app = observers.attach(fanout16(telemetry));
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    app.invoke(Fanout::default(), RunConfig::new()).await?;
                }
            }
            "b2cpu" | "b2cpu_bound" => {
                let placement = if workload == "b2cpu" { Placement::Async } else { Placement::CpuBound };
                let app = observers.attach(fanout16_cpu(telemetry, placement));
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    app.invoke(Fanout::default(), RunConfig::new()).await?;
                }
            }
            "b3" => {
                let app = observers.attach(loop1000(telemetry));
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    app.invoke(Counter::default(), loop1000_config()).await?;
                }
            }
            "b4" | "b4sync" => {
                let durability = if workload == "b4" { Durability::Async } else { Durability::Sync };
                let dir = tempfile::tempdir()?;
                let app =
                    observers.attach(chain100_checkpointed(telemetry, open_sqlite(&dir.path().join("b4.db")).await?));
                let threads = Threads::new();
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    app.invoke(Counter::default(), threads.next_config(durability)).await?;
                }
            }
            "c1" => {
                let threads = Threads::new();
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    let app = observers.attach(chain10_in_memory(telemetry));
                    concurrent_runs(&app, CONCURRENT_RUNS, &threads).await?;
                }
            }
            "gf1" | "gf3" => {
                let (graph, start, counted) = match workload.as_str() {
                    "gf1" => (graph_flow::chain100(), "n0", 100),
                    _ => (graph_flow::loop1000(), "inc", 1000),
                };
                started = std::time::Instant::now();
                for _ in 0..invokes {
                    let counter = graph_flow::invoke(&graph, start).await;
                    if counter != counted {
                        return Err(format!("graph-flow counted {counter}, not {counted}").into());
                    }
                }
            }
            other => {
                let known = "b1, b2, b2cpu, b2cpu_bound, b3, b4, b4sync, c1, gf1 or gf3";
                return Err(format!("unknown workload `{other}`: use {known}").into());
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    // The invokes alone, without building the graph (and opening the default observers).
    let took = started.elapsed();
    eprintln!("{workload}: {invokes} invokes in {took:?}, {:.1} µs each", took.as_secs_f64() * 1e6 / invokes as f64);
    // What the write-ahead log's writer made of it: how long it still needed, and whether it
    // kept up (dropped events mean it fell behind).
    let started = std::time::Instant::now();
    dashflow::flush_observers();
    if let Some(store) = dashflow::wal::EventStore::global()? {
        eprintln!("flushed in {:?}: {:?}", started.elapsed(), store.stats());
    }
    observers.flush()?;
    // Before the exporter's thread stops, so that its time is counted.
    print_thread_times();
    observers.stop()?;
    Ok(())
}

/// Per thread of this process (Linux, from `/proc`): time on a core, time spent runnable but
/// waiting for one (another thread or process had it), and how often it gave its core up
/// (blocked: a lock, a syscall, a page it waited for) or was made to (preempted). A run whose
/// wall time exceeds its thread's time on a core plus its wait for one spent the rest blocked.
fn print_thread_times() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
    // Name, nanoseconds on a core, nanoseconds waiting for one, blocked, preempted.
    let mut by_name: Vec<(String, [u64; 4])> = Vec::new();
    for task in tasks.flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        // `schedstat`: time on a core and time waiting to run, in nanoseconds, then slices.
        let sched: Vec<u64> = std::fs::read_to_string(task.path().join("schedstat"))
            .map(|text| text.split_whitespace().filter_map(|field| field.parse().ok()).collect())
            .unwrap_or_default();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let switches =
            |key: &str| status.lines().find_map(|line| line.strip_prefix(key)?.trim().parse::<u64>().ok()).unwrap_or(0);
        let counts = [
            sched.first().copied().unwrap_or(0),
            sched.get(1).copied().unwrap_or(0),
            switches("voluntary_ctxt_switches:"),
            switches("nonvoluntary_ctxt_switches:"),
        ];
        let name = comm.trim().to_owned();
        match by_name.iter_mut().find(|(known, _)| *known == name) {
            Some((_, total)) => total.iter_mut().zip(counts).for_each(|(total, count)| *total += count),
            None => by_name.push((name, counts)),
        }
    }
    for (name, [on_cpu, waited, blocked, preempted]) in by_name {
        eprintln!(
            "thread {name}: on a core {} ms, waiting for one {} ms, blocked {blocked} times, preempted {preempted}",
            on_cpu / 1_000_000,
            waited / 1_000_000
        );
    }
}

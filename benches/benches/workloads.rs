//! Criterion benches of workloads B1-B3 (µs per invoke), each with the default observers and
//! with none (`/telemetry_off`). Run through `cargo xtask bench`.
#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dashflow::RunConfig;
use dashflow_benches::{
    Counter, Fanout, Telemetry, chain100, chain100_config, fanout16, loop1000, loop1000_config, verify_workloads,
};

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
    for (suffix, telemetry) in [("", Telemetry::Defaults), ("/telemetry_off", Telemetry::Off)] {
        let app = chain100(telemetry);
        c.bench_function(&format!("b1_chain100{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Counter::default(), chain100_config()).await;
                black_box(result.map(|r| r.state.counter))
            })
        });

        let app = fanout16(telemetry);
        c.bench_function(&format!("b2_fanout16{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Fanout::default(), RunConfig::new()).await;
                black_box(result.map(|r| r.state.total))
            })
        });

        let app = loop1000(telemetry);
        c.bench_function(&format!("b3_loop1000{suffix}"), |b| {
            b.to_async(&rt).iter(|| async {
                let result = app.invoke(Counter::default(), loop1000_config()).await;
                black_box(result.map(|r| r.state.counter))
            })
        });
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);

use super::*;

#[test]
fn b7_costs_are_seeded_heavy_tailed_capped_and_average_the_mean() {
    let costs = pareto_costs_us(B7_TASKS, SEED);
    assert_eq!(costs, pareto_costs_us(B7_TASKS, SEED), "the same seed gives the same tasks");
    assert_ne!(costs, pareto_costs_us(B7_TASKS, SEED + 1));
    assert_eq!(costs.len(), B7_TASKS);
    let cap = MEAN_COST_US * COST_CAP;
    assert!(costs.iter().all(|&cost| cost > 0.0 && cost <= cap), "{costs:?}");
    let sum: f64 = costs.iter().sum();
    // Scaled to the mean before capping: capping can only take some away.
    assert!(sum <= MEAN_COST_US * B7_TASKS as f64 + 1e-6, "sum {sum}");
    assert!(sum >= MEAN_COST_US * B7_TASKS as f64 * 0.5, "sum {sum}");
    assert_eq!(Workload::B7n.costs_us().len(), B7N_OUTER * B7N_INNER, "B7n: 8 subgraphs of 8");
    // Heavy-tailed: the largest task is several times the median one.
    assert!(quantile(&costs, 1.0) > 4.0 * quantile(&costs, 0.5), "{costs:?}");
}

#[test]
fn quantiles_go_by_nearest_rank() {
    let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
    assert_eq!(quantile(&values, 0.5), 50.0);
    assert_eq!(quantile(&values, 0.99), 99.0);
    assert_eq!(quantile(&values, 1.0), 100.0);
    assert_eq!(quantile(&values, 0.0), 1.0);
    assert_eq!(quantile(&[], 0.5), 0.0);
}

#[test]
fn names_round_trip_and_unknown_ones_say_what_is_known() {
    for workload in Workload::ALL {
        assert_eq!(workload.to_string().parse::<Workload>(), Ok(workload));
    }
    for route in Route::ALL {
        assert_eq!(route.to_string().parse::<Route>(), Ok(route));
    }
    for flavor in Flavor::ALL {
        assert_eq!(flavor.to_string().parse::<Flavor>(), Ok(flavor));
    }
    let error = "ws".parse::<Route>().unwrap_err();
    assert!(error.contains("`ws`") && error.contains("spawn_blocking"), "{error}");
}

/// A tiny calibration, so that the bursts below take microseconds.
const FAST: f64 = 1_000.0;

/// Every workload completes every task on every route and runtime: the bench never times a
/// burst that lost tasks.
#[test]
fn every_workload_runs_every_task_on_every_route_and_runtime() {
    for flavor in Flavor::ALL {
        let runtime = flavor.runtime().unwrap();
        for route in Route::ALL {
            for workload in Workload::ALL {
                let app = workload.graph(route);
                runtime
                    .block_on(burst(&app, workload, workload.input(FAST)))
                    .unwrap_or_else(|error| panic!("{flavor}/{route}: {error}"));
            }
        }
    }
}

/// The rayon route polls tasks on rayon's threads with the spawner's runtime entered.
#[test]
fn the_rayon_route_polls_tasks_on_rayon_threads_with_the_runtime_entered() {
    let runtime = Flavor::CurrentThread.runtime().unwrap();
    let index = runtime.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        RayonScheduler.spawn(Box::pin(async move {
            // A tokio timer needs the spawner's runtime.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let _ = tx.send(rayon::current_thread_index());
        }));
        tokio::time::timeout(Duration::from_secs(30), rx).await
    });
    assert!(matches!(index, Ok(Ok(Some(_)))), "{index:?}");
}

#[test]
fn the_ticker_sees_a_runtime_blocked_under_it() {
    let runtime = Flavor::CurrentThread.runtime().unwrap();
    let blocked = Duration::from_millis(20);
    let lateness = runtime.block_on(async {
        let ticker = Ticker::start();
        // Lets the ticker start its first sleep, then blocks the runtime's only thread.
        tokio::task::yield_now().await;
        std::thread::sleep(blocked);
        ticker.stop().await.unwrap()
    });
    // The tick under way could not end before the thread was free again.
    let worst = lateness.iter().max().copied().unwrap_or_default();
    assert!(worst + TICK >= blocked, "{lateness:?}");
}

#[test]
fn thread_counts_and_cpu_time_are_read() {
    let peak = PeakThreads::start().unwrap();
    let before = cpu_time().unwrap();
    black_box(spin(2_000_000));
    assert!(cpu_time().unwrap() > before, "spinning used no CPU time");
    let during = std::thread::spawn(|| threads_now().unwrap()).join().unwrap();
    let peak = peak.stop().unwrap();
    // The sampler and the spawned thread ran besides the test's own.
    assert!(during >= 3, "{during} threads");
    assert!(peak >= 1, "the sampler counted no thread but itself");
}

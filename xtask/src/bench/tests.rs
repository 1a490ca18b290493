use std::collections::BTreeMap;

use super::bencher::{self, Measurement};
use super::cpu::{decide, table as b7_table};
use super::doc::replace_section;
use super::langgraph::{LangGraphResults, parse_report};
use super::metrics::{self, Metrics};
use super::report::{
    b4_comparison_table, b4_table, comparison_table, format_ratio, format_us, large_state_table, targets_table,
    with_thousands,
};
use super::{Options, Suite};

fn flags(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

fn measurement(id: &str, median_ns: f64) -> Measurement {
    Measurement { id: id.to_owned(), median_ns }
}

const CRITERION_OUTPUT: &str = "\
Gnuplot not found, using plotters backend
test b1_chain100 ... bench:       12,345 ns/iter (+/- 678)
test b1_chain100/telemetry_off ... bench:        9,870 ns/iter (+/- 12)

test b3_loop1000 ... bench:      250,001 ns/iter (+/- 9,999)
test result: ok. 0 passed
";

#[test]
fn bencher_lines_are_parsed_and_other_lines_ignored() {
    let measurements = bencher::parse(CRITERION_OUTPUT);
    assert_eq!(
        measurements,
        vec![
            measurement("b1_chain100", 12_345.0),
            measurement("b1_chain100/telemetry_off", 9_870.0),
            measurement("b3_loop1000", 250_001.0),
        ]
    );
    assert_eq!(measurements[1].workload(), "b1_chain100");
}

#[test]
fn targets_table_says_whether_each_target_is_met() {
    let table = targets_table(&bencher::parse(CRITERION_OUTPUT)).render();
    let row =
        |id: &str| table.lines().find(|line| line.starts_with(&format!("| {id} "))).unwrap_or_default().to_owned();
    assert!(row("b1_chain100 ").contains("12.3") && row("b1_chain100 ").contains("yes"), "{table}");
    assert!(row("b1_chain100/telemetry_off").contains("<= 20.0"), "{table}");
    assert!(row("b3_loop1000").contains("250") && row("b3_loop1000").contains("NO"), "{table}");
}

#[test]
fn workloads_without_a_target_show_a_dash() {
    let table = targets_table(&[measurement("b2_fanout16", 30_000.0)]).render();
    assert!(
        table.lines().any(|line| line.starts_with("| b2_fanout16") && line.trim_end().ends_with("| -   |")),
        "{table}"
    );
}

#[test]
fn comparison_puts_langgraph_next_to_each_variant_of_a_workload() {
    let langgraph = LangGraphResults {
        medians_us: BTreeMap::from([("b1_chain100".to_owned(), 39_000.0), ("b2_fanout16".to_owned(), 12_000.0)]),
        metrics: Metrics::default(),
        python_version: "3.11.7".to_owned(),
        langgraph_version: "1.2.24".to_owned(),
    };
    let measurements = [
        measurement("b1_chain100", 20_000.0),
        measurement("b1_chain100/telemetry_off", 10_000.0),
        measurement("b4_chain100_sqlite", 500_000.0),
    ];
    let table = comparison_table(&measurements, &langgraph).render();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("DashFlow µs") && lines[0].contains("LangGraph µs") && lines[0].contains("ratio"));
    assert!(lines[2].contains("39,000") && lines[2].contains("1,950x"), "{table}");
    assert!(lines[3].contains("3,900x"), "{table}");
    assert!(lines[4].trim_end().ends_with("- |"), "{table}");
    assert!(lines[5].starts_with("| b2_fanout16") && lines[5].contains("12,000"), "{table}");
    assert_eq!(lines.len(), 6, "{table}");
}

#[test]
fn numbers_are_formatted_for_people() {
    assert_eq!(with_thousands(0), "0");
    assert_eq!(with_thousands(999), "999");
    assert_eq!(with_thousands(1_000), "1,000");
    assert_eq!(with_thousands(1_234_567), "1,234,567");
    assert_eq!(format_us(0.04), "0.040");
    assert_eq!(format_us(12.34), "12.3");
    assert_eq!(format_us(343_040.6), "343,041");
    assert_eq!(format_ratio(1_949.6), "1,950x");
    assert_eq!(format_ratio(3.21), "3.2x");
}

#[test]
fn langgraph_report_keeps_numeric_medians_and_versions() -> anyhow::Result<()> {
    let stdout = "some warning\n{\"b1_chain100\": 26082.8, \"b3_loop1000\": 343040.6, \
                  \"samples\": {\"b1_chain100\": 56}, \"python\": \"3.11.7\", \"langgraph\": \"1.2.24\"}\n";
    let results = parse_report(stdout)?;
    assert_eq!(results.median_us("b1_chain100"), Some(26_082.8));
    assert_eq!(results.median_us("samples"), None);
    assert_eq!(results.medians_us.len(), 2);
    assert_eq!(results.langgraph_version, "1.2.24");
    Ok(())
}

#[test]
fn the_section_is_replaced_and_the_rest_of_the_document_kept() {
    let document = "# Benchmarks\n\nIntro.\n\n## Latest comparison\n\nold table\n\n## Method\n\nHow.\n";
    let updated = replace_section(document, "## Latest comparison\n\nnew table\n");
    assert_eq!(updated, "# Benchmarks\n\nIntro.\n\n## Latest comparison\n\nnew table\n\n## Method\n\nHow.\n");
}

#[test]
fn the_section_is_appended_when_missing_and_the_file_created_when_empty() {
    let appended = replace_section("# Benchmarks\n\nIntro.\n", "## Latest comparison\n\nt\n");
    assert_eq!(appended, "# Benchmarks\n\nIntro.\n\n## Latest comparison\n\nt\n");
    let created = replace_section("", "## Latest comparison\n\nt\n");
    assert_eq!(created, "# Benchmarks\n\n## Latest comparison\n\nt\n");
}

#[test]
fn subheadings_inside_the_section_are_replaced_with_it() {
    let document = "## Latest comparison\n\n### Details\n\nold\n";
    assert_eq!(replace_section(document, "## Latest comparison\n\nnew\n"), "## Latest comparison\n\nnew\n");
}

#[test]
fn bench_flags_are_parsed() -> anyhow::Result<()> {
    let options = Options::parse(&flags(&["--quick", "--compare", "langgraph", "--write-doc"]))?;
    assert_eq!(options.command_line(), "cargo xtask bench --quick --compare langgraph");
    assert!(options.write_doc);
    assert!(Options::parse(&flags(&["--compare=pydantic"])).is_err());
    assert!(Options::parse(&flags(&["--fast"])).is_err());
    Ok(())
}

#[test]
fn only_runs_one_suite_and_refuses_what_it_would_skip() -> anyhow::Result<()> {
    assert_eq!(Options::parse(&flags(&["--only", "b7", "--quick"]))?.only, Some(Suite::Cpu));
    assert_eq!(Options::parse(&flags(&["--only", "criterion"]))?.only, Some(Suite::Criterion));
    assert_eq!(Options::parse(&flags(&[]))?.only, None);
    let unknown = Options::parse(&flags(&["--only", "b9"])).unwrap_err().to_string();
    assert!(unknown.contains("b9") && unknown.contains("b7"), "{unknown}");
    assert!(Options::parse(&flags(&["--only"])).is_err());
    // The doc section holds both suites' tables: a partial run would drop the other's.
    assert!(Options::parse(&flags(&["--only", "b7", "--write-doc"])).is_err());
    assert!(Options::parse(&flags(&["--only", "b7", "--compare", "langgraph"])).is_err());
    Ok(())
}

#[test]
fn sweeps_take_a_positive_count_and_need_b7() -> anyhow::Result<()> {
    let options = Options::parse(&flags(&["--only", "b7", "--sweeps", "5"]))?;
    assert_eq!(options.sweeps, Some(5));
    assert_eq!(options.command_line(), "cargo xtask bench --sweeps 5");
    assert_eq!(Options::parse(&flags(&[]))?.sweeps, None);
    for bad in ["0", "-1", "many"] {
        let error = Options::parse(&flags(&["--sweeps", bad])).unwrap_err().to_string();
        assert!(error.contains(bad) && error.contains("at least 1"), "{error}");
    }
    assert!(Options::parse(&flags(&["--sweeps"])).is_err());
    assert!(Options::parse(&flags(&["--only", "criterion", "--sweeps", "3"])).is_err());
    Ok(())
}

#[test]
fn rounds_take_a_positive_count_and_need_the_criterion_workloads() -> anyhow::Result<()> {
    let options = Options::parse(&flags(&["--quick", "--rounds", "3"]))?;
    assert_eq!(options.rounds, Some(3));
    assert_eq!(options.command_line(), "cargo xtask bench --quick --rounds 3");
    assert_eq!(Options::parse(&flags(&["--only", "criterion", "--rounds", "2"]))?.rounds, Some(2));
    for bad in ["0", "-1", "many"] {
        let error = Options::parse(&flags(&["--rounds", bad])).unwrap_err().to_string();
        assert!(error.contains(bad) && error.contains("at least 1"), "{error}");
    }
    assert!(Options::parse(&flags(&["--rounds"])).is_err());
    assert!(Options::parse(&flags(&["--only", "b7", "--rounds", "3"])).is_err());
    Ok(())
}

#[test]
fn the_median_of_rounds_takes_each_benchmark_on_its_own_in_first_seen_order() {
    let m = |id: &str, median_ns: f64| bencher::Measurement { id: id.to_owned(), median_ns };
    let rounds = [
        vec![m("b1", 30.0), m("b3", 300.0)],
        vec![m("b1", 90.0), m("b3", 200.0), m("c1", 5.0)],
        vec![m("b3", 400.0), m("b1", 40.0)],
    ];
    // b1: 30, 40, 90; b3: 200, 300, 400; c1 ran in one round only.
    assert_eq!(bencher::median(&rounds), [m("b1", 40.0), m("b3", 300.0), m("c1", 5.0)]);
    assert_eq!(bencher::median(&rounds[..2]), [m("b1", 60.0), m("b3", 250.0), m("c1", 5.0)]);
}

#[test]
fn the_median_of_sweeps_takes_each_figure_on_its_own() {
    let sweep = |efficiency: f64, tick: f64| {
        let mut metrics = Metrics::default();
        metrics.insert("b7/multi_thread/pool", "efficiency", efficiency);
        metrics.insert("b7/multi_thread/pool", "tick_p99_ms", tick);
        metrics
    };
    let mut lone = sweep(0.5, 1.0);
    lone.insert("b7s/multi_thread/pool", "makespan_p50_ms", 40.0);
    // The figures' middles come from different sweeps; a figure one sweep lacks is the
    // median of those that have it.
    let median = Metrics::median(&[sweep(0.95, 9.0), lone, sweep(0.91, 2.0)]);
    assert_eq!(median.get("b7/multi_thread/pool", "efficiency"), Some(0.91));
    assert_eq!(median.get("b7/multi_thread/pool", "tick_p99_ms"), Some(2.0));
    assert_eq!(median.get("b7s/multi_thread/pool", "makespan_p50_ms"), Some(40.0));
    let even = Metrics::median(&[sweep(0.8, 1.0), sweep(0.9, 3.0)]);
    assert_eq!(even.get("b7/multi_thread/pool", "tick_p99_ms"), Some(2.0));
    assert_eq!(Metrics::median(&[]), Metrics::default());
}

/// B7 figures of one run: `cells` lists (workload, runtime, route, figure, value).
fn b7_metrics(cells: &[(&str, &str, &str, &str, f64)]) -> Metrics {
    let mut metrics = Metrics::default();
    metrics.insert("b7", "cores", 2.0);
    for (workload, flavor, route, name, value) in cells {
        metrics.insert(&format!("{workload}/{flavor}/{route}"), name, *value);
    }
    metrics
}

/// A run where the pool meets every condition: efficient, the ticker kept on time where
/// tokio's is late, B7s as fast as the other routes.
fn pool_that_wins() -> Vec<(&'static str, &'static str, &'static str, &'static str, f64)> {
    let mut cells = Vec::new();
    for flavor in ["multi_thread", "current_thread"] {
        for (route, efficiency, tick, makespan) in [
            ("tokio", 0.95, 30.0, 70.0),
            ("spawn_blocking", 0.8, 1.5, 80.0),
            ("rayon", 0.93, 1.1, 68.0),
            ("pool", 0.94, 1.2, 67.0),
        ] {
            cells.extend([
                ("b7", flavor, route, "efficiency", efficiency),
                ("b7", flavor, route, "makespan_p50_ms", makespan),
                ("b7", flavor, route, "tick_p99_ms", tick),
                ("b7", flavor, route, "idle_p99_ms", 1.0),
                ("b7s", flavor, route, "makespan_p50_ms", 30.0),
            ]);
        }
    }
    cells
}

#[test]
fn b7_keeps_the_pool_when_it_meets_every_condition() {
    let decision = decide(&b7_metrics(&pool_that_wins()));
    assert!(decision.keeps_pool(), "{}", decision.render());
    assert!(decision.render().contains("Decision: keep"), "{}", decision.render());
    // The fastest route that keeps the ticker on time; tokio is faster on neither.
    assert_eq!(decision.winners, vec![("multi_thread", Some("pool")), ("current_thread", Some("pool"))]);
}

#[test]
fn b7_drops_the_pool_below_the_efficiency_bar_on_either_runtime() {
    let mut cells = pool_that_wins();
    cells.push(("b7", "current_thread", "pool", "efficiency", 0.85));
    let decision = decide(&b7_metrics(&cells));
    assert!(!decision.keeps_pool());
    let failed: Vec<&str> = decision.checks.iter().filter(|c| c.met != Some(true)).map(|c| c.what.as_str()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("current_thread") && failed[0].contains("0.850"), "{failed:?}");
    assert!(decision.render().contains("does not meet the rule"), "{}", decision.render());
}

#[test]
fn b7_asks_the_pool_to_keep_the_ticker_on_time_only_where_tokio_does_not() {
    // The pool lets the ticker slip to 3x idle: a failure where tokio slips too...
    let mut cells = pool_that_wins();
    cells.push(("b7", "multi_thread", "pool", "tick_p99_ms", 3.0));
    assert!(!decide(&b7_metrics(&cells)).keeps_pool());
    // ...but not where tokio keeps it on time.
    cells.push(("b7", "multi_thread", "tokio", "tick_p99_ms", 1.5));
    let decision = decide(&b7_metrics(&cells));
    assert!(decision.keeps_pool(), "{}", decision.render());
    // The pool is not among the routes that keep the ticker on time there: rayon is the
    // fastest of them, ahead of tokio.
    assert_eq!(decision.winners[0], ("multi_thread", Some("rayon")));
}

#[test]
fn b7_needs_the_pool_no_worse_than_spawn_blocking_and_rayon_on_b7s() {
    let mut cells = pool_that_wins();
    // Within the slack for noise:
    cells.push(("b7s", "multi_thread", "pool", "makespan_p50_ms", 32.0));
    assert!(decide(&b7_metrics(&cells)).keeps_pool());
    // Beyond it:
    cells.push(("b7s", "multi_thread", "pool", "makespan_p50_ms", 40.0));
    let decision = decide(&b7_metrics(&cells));
    assert!(!decision.keeps_pool());
    assert_eq!(decision.checks.iter().filter(|c| c.met == Some(false)).count(), 2, "{}", decision.render());
}

#[test]
fn b7_counts_a_figure_it_lacks_as_unmet() {
    let cells: Vec<_> = pool_that_wins().into_iter().filter(|cell| cell.1 != "current_thread").collect();
    let decision = decide(&b7_metrics(&cells));
    assert!(!decision.keeps_pool());
    assert!(
        decision.checks.iter().any(|c| c.met.is_none() && c.what.contains("not measured")),
        "{}",
        decision.render()
    );
    assert_eq!(decision.winners[1], ("current_thread", None));
}

#[test]
fn b7_table_has_a_row_per_cell_measured() {
    let table = b7_table(&b7_metrics(&pool_that_wins())).map(|table| table.render()).unwrap_or_default();
    assert_eq!(table.lines().filter(|line| line.starts_with("| b7 ")).count(), 8, "{table}");
    assert!(
        table.lines().any(|line| line.contains("current_thread") && line.contains("pool") && line.contains("0.940")),
        "{table}"
    );
    assert!(b7_table(&Metrics::default()).is_none());
}

const B4_OUTPUT: &str = "\
metric b4_chain100_sqlite checkpoints_per_invoke 101.0
metric b4_chain100_sqlite db_bytes_per_step 150.1
metric b4_chain100_sqlite/sync checkpoints_per_invoke 101.0
metric b4_chain100_sqlite/sync db_bytes_per_step 350.0
metric large_state_sqlite state_bytes 1000000.0
metric large_state_sqlite db_bytes_per_step 120.4
metric large_state_sqlite continuing_db_bytes_per_step 10327.2
test b4_chain100_sqlite ... bench:       1,010,000 ns/iter (+/- 5)
test b4_chain100_sqlite/sync ... bench:       10,100,000 ns/iter (+/- 5)
";

fn row<'a>(table: &'a str, id: &str) -> &'a str {
    table.lines().find(|line| line.starts_with(&format!("| {id} "))).unwrap_or_default()
}

#[test]
fn metric_lines_are_parsed_and_other_lines_ignored() {
    let metrics = metrics::parse(B4_OUTPUT);
    assert_eq!(metrics.get("b4_chain100_sqlite", "db_bytes_per_step"), Some(150.1));
    assert_eq!(metrics.get("b4_chain100_sqlite/sync", "checkpoints_per_invoke"), Some(101.0));
    assert_eq!(metrics.get("b4_chain100_sqlite", "ns/iter"), None);
    assert!(metrics.has("large_state_sqlite"));
    for malformed in ["metric a b", "metric a b c d", "metric a b NaN", "metric a b twelve", " metrics a b 1"] {
        assert!(!metrics::parse(malformed).has("a"), "{malformed}");
    }
}

#[test]
fn b4_table_computes_checkpoints_per_second_and_checks_both_targets() {
    let table =
        b4_table(&bencher::parse(B4_OUTPUT), &metrics::parse(B4_OUTPUT)).map(|t| t.render()).unwrap_or_default();
    // 101 checkpoints in 1.01 ms: 100,000/s against >= 50,000; 150 bytes against <= 300.
    let fast = row(&table, "b4_chain100_sqlite");
    assert!(fast.contains("100,000") && fast.contains(">= 50,000") && fast.contains("150"), "{table}");
    assert_eq!(fast.matches("| yes ").count(), 2, "{table}");
    // 101 checkpoints in 10.1 ms: 10,000/s against >= 20,000; 350 bytes against <= 300.
    let slow = row(&table, "b4_chain100_sqlite/sync");
    assert!(slow.contains("10,000") && slow.contains(">= 20,000") && slow.contains("<= 300"), "{table}");
    assert_eq!(slow.matches("| NO ").count(), 2, "{table}");
    assert!(b4_table(&bencher::parse(CRITERION_OUTPUT), &Metrics::default()).is_none());
}

#[test]
fn b4_without_its_metrics_shows_dashes_not_verdicts() {
    let measurements = [measurement("b4_chain100_sqlite", 2_000_000.0)];
    let table = b4_table(&measurements, &Metrics::default()).map(|t| t.render()).unwrap_or_default();
    let line = row(&table, "b4_chain100_sqlite");
    assert!(line.contains("2,000") && !line.contains("yes") && !line.contains("NO"), "{table}");
}

#[test]
fn large_state_table_shows_bytes_per_step_within_and_across_runs() {
    let table = large_state_table(&metrics::parse(B4_OUTPUT)).map(|t| t.render()).unwrap_or_default();
    let line = row(&table, "large_state_sqlite");
    assert!(line.contains("1,000,000") && line.contains("120") && line.contains("10,327"), "{table}");
    assert!(large_state_table(&Metrics::default()).is_none());
}

#[test]
fn b4_comparison_uses_langgraph_figures_of_the_same_durability() {
    let mut langgraph_metrics = Metrics::default();
    langgraph_metrics.insert("b4_chain100_sqlite", "checkpoints_per_invoke", 101.0);
    langgraph_metrics.insert("b4_chain100_sqlite", "db_bytes_per_step", 9_006.0);
    langgraph_metrics.insert("b4_chain100_sqlite/sync", "checkpoints_per_invoke", 101.0);
    langgraph_metrics.insert("b4_chain100_sqlite/sync", "db_bytes_per_step", 3_501.0);
    let langgraph = LangGraphResults {
        medians_us: BTreeMap::from([
            ("b4_chain100_sqlite".to_owned(), 101_000.0),
            ("b4_chain100_sqlite/sync".to_owned(), 202_000.0),
        ]),
        metrics: langgraph_metrics,
        python_version: "3.11.7".to_owned(),
        langgraph_version: "1.2.24".to_owned(),
    };
    let measurements = bencher::parse(B4_OUTPUT);
    let metrics = metrics::parse(B4_OUTPUT);
    let table = b4_comparison_table(&measurements, &metrics, &langgraph).map(|t| t.render()).unwrap_or_default();
    // Async: 100,000/s vs 1,000/s; 150.1 vs 9,006 bytes (60x fewer).
    let fast = row(&table, "b4_chain100_sqlite");
    assert!(fast.contains("100,000") && fast.contains("1,000") && fast.contains("100x"), "{table}");
    assert!(fast.contains("9,006") && fast.contains("60x"), "{table}");
    // Sync is compared with LangGraph's sync run, not its async one: 10,000/s vs 500/s.
    let slow = row(&table, "b4_chain100_sqlite/sync");
    assert!(slow.contains("500") && slow.contains("20x") && slow.contains("3,501") && slow.contains("10x"), "{table}");
    // The time comparison, too, pairs the sync runs.
    let times = comparison_table(&measurements, &langgraph).render();
    assert!(row(&times, "b4_chain100_sqlite/sync").contains("202,000"), "{times}");
    assert_eq!(times.lines().count(), 4, "{times}");
}

#[test]
fn langgraph_report_keeps_its_metrics() -> anyhow::Result<()> {
    let stdout = "{\"b4_chain100_sqlite\": 120000.0, \"metrics\": {\"b4_chain100_sqlite\": \
                  {\"checkpoints_per_invoke\": 101, \"db_bytes_per_step\": 9006.3}}, \
                  \"python\": \"3.11.7\", \"langgraph\": \"1.2.24\"}\n";
    let results = parse_report(stdout)?;
    assert_eq!(results.median_us("b4_chain100_sqlite"), Some(120_000.0));
    assert_eq!(results.medians_us.len(), 1);
    assert_eq!(results.metrics.get("b4_chain100_sqlite", "db_bytes_per_step"), Some(9_006.3));
    Ok(())
}

#[test]
fn b4_without_telemetry_uses_the_figures_and_targets_of_its_durability() {
    let measurements = [
        measurement("b4_chain100_sqlite/telemetry_off", 1_010_000.0),
        measurement("b4_chain100_sqlite/sync/telemetry_off", 10_100_000.0),
    ];
    let metrics = metrics::parse(B4_OUTPUT);
    let table = b4_table(&measurements, &metrics).map(|t| t.render()).unwrap_or_default();
    let fast = row(&table, "b4_chain100_sqlite/telemetry_off");
    assert!(fast.contains("100,000") && fast.contains(">= 50,000") && fast.contains("150"), "{table}");
    let slow = row(&table, "b4_chain100_sqlite/sync/telemetry_off");
    assert!(slow.contains("10,000") && slow.contains(">= 20,000") && slow.contains("350"), "{table}");

    let langgraph = LangGraphResults {
        medians_us: BTreeMap::from([
            ("b4_chain100_sqlite".to_owned(), 101_000.0),
            ("b4_chain100_sqlite/sync".to_owned(), 202_000.0),
        ]),
        metrics: Metrics::default(),
        python_version: "3.11.7".to_owned(),
        langgraph_version: "1.2.24".to_owned(),
    };
    let times = comparison_table(&measurements, &langgraph).render();
    assert!(row(&times, "b4_chain100_sqlite/telemetry_off").contains("101,000"), "{times}");
    assert!(row(&times, "b4_chain100_sqlite/sync/telemetry_off").contains("202,000"), "{times}");
    assert_eq!(times.lines().count(), 4, "{times}");
}

#[test]
fn the_peer_table_compares_defaults_with_off_and_with_graph_flow() {
    let measurements = [
        measurement("b1_chain100", 20_000.0),
        measurement("b1_chain100/telemetry_off", 15_000.0),
        measurement("b1_chain100/graph_flow", 21_000.0),
        measurement("b3_loop1000", 300_000.0),
        measurement("b3_loop1000/telemetry_off", 150_000.0),
        measurement("b3_loop1000/graph_flow", 225_000.0),
    ];
    // The log kept two thirds of B1's events and all of B3's; a run that printed no figure
    // shows a dash.
    let metrics =
        metrics::parse("metric b1_chain100 log_kept_percent 66.4\nmetric b3_loop1000 log_kept_percent 100.0\n");
    let table = super::report::peer_table(&measurements, &metrics).unwrap().render();
    let row =
        |table: &str, id: &str| table.lines().find(|line| line.starts_with(&format!("| {id} "))).unwrap().to_owned();
    let (b1, b3) = (row(&table, "b1_chain100"), row(&table, "b3_loop1000"));
    let b1: Vec<&str> = b1.split('|').map(str::trim).collect();
    assert_eq!(b1[1..9], ["b1_chain100", "20.0", "15.0", "1.33x", "yes", "21.0", "yes", "66%"], "{table}");
    let b3: Vec<&str> = b3.split('|').map(str::trim).collect();
    assert_eq!(b3[1..9], ["b3_loop1000", "300", "150", "2.00x", "NO", "225", "NO", "100%"], "{table}");
    let without = super::report::peer_table(&measurements, &Metrics::default()).unwrap().render();
    let cells: Vec<String> = row(&without, "b1_chain100").split('|').map(|cell| cell.trim().to_owned()).collect();
    assert_eq!(cells[8], "-", "{without}");
    // The peer's figures are not DashFlow's: no rows of their own among the targets.
    assert!(!targets_table(&measurements).render().contains("graph_flow"));
    assert!(super::report::peer_table(&measurements[..2], &metrics).is_none());
}

#[test]
fn the_exporters_table_holds_each_sink_alone_to_the_defaults_budget_over_off() {
    let measurements = [
        measurement("b1_chain100", 30_000.0),
        measurement("b1_chain100/telemetry_off", 20_000.0),
        measurement("b1_chain100/otel", 29_000.0),
        measurement("b1_chain100/nats", 31_000.0),
        measurement("b3_loop1000/telemetry_off", 200_000.0),
        measurement("b3_loop1000/otel", 280_000.0),
    ];
    let table = super::report::exporters_table(&measurements).unwrap().render();
    let cells = |workload: &str, exporter: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("| {workload} ")) && line.contains(&format!(" {exporter} ")))
            .unwrap_or_else(|| panic!("no row for {workload} {exporter}:\n{table}"));
        line.split('|').map(|cell| cell.trim().to_owned()).collect()
    };
    assert_eq!(cells("b1_chain100", "OpenTelemetry")[3..8], ["29.0", "20.0", "1.45x", "yes", "30.0"], "{table}");
    assert_eq!(cells("b1_chain100", "NATS")[5..7], ["1.55x", "NO"], "{table}");
    // Without the defaults' row the budget still applies; a sink not measured has no row.
    assert_eq!(cells("b3_loop1000", "OpenTelemetry")[5..8], ["1.40x", "yes", "-"], "{table}");
    assert!(!table.contains("| b3_loop1000 | NATS"), "{table}");
    assert!(super::report::exporters_table(&measurements[..2]).is_none());
}

#[test]
fn the_concurrent_table_gives_runs_per_second_and_the_ratio_to_off() {
    let measurements =
        [measurement("c1_concurrent1000", 40_000_000.0), measurement("c1_concurrent1000/telemetry_off", 25_000_000.0)];
    let table = super::report::concurrent_table(&measurements).unwrap().render();
    let cells: Vec<&str> = table.lines().nth(2).unwrap().split('|').map(str::trim).collect();
    assert_eq!(cells[1..7], ["c1_concurrent1000", "25,000", "yes", "40,000", "1.60x", "yes"], "{table}");
    assert!(!targets_table(&measurements).render().contains("c1_"));
    assert!(super::report::concurrent_table(&[measurement("b1_chain100", 1.0)]).is_none());
}

#[test]
fn b8_metrics_make_a_table_with_the_goal_verdict() {
    let output = "metric b8_workers1 runs_per_sec 620\nmetric b8_workers1 p50_ms 12.5\n\
                  metric b8_workers1 statements_per_run 17.4\nmetric b8_workers1 wal_bytes_per_run 9876\n\
                  metric b8_workers1 worker_cpu_ms_per_run 0.85\n\
                  metric b8_workers2 runs_per_sec 410\nmetric b8_in_process runs_per_sec 900\n\
                  metric b8_nostream_workers2 runs_per_sec 455\n\
                  metric b8_takeover median_s 4.2\nmetric b8_takeover max_s 6.0\n";
    let table = super::report::b8_table(&metrics::parse(output)).expect("B8 ran").render();
    let row = |label: &str| table.lines().find(|line| line.contains(label)).unwrap_or_default().to_owned();
    assert!(row("1 worker").contains("620") && row("1 worker").contains("yes"), "{table}");
    assert!(row("1 worker").contains("17.4"), "{table}");
    assert!(row("1 worker").contains("9,876") && row("1 worker").contains("0.850"), "{table}");
    assert!(row("no event streams").contains("455"), "{table}");
    assert!(row("2 workers").contains("NO"), "{table}");
    assert!(!table.contains("Async"), "no Async row without its figures: {table}");
    assert!(row("one process").contains("900"), "{table}");
    assert!(table.contains("median 4.2 s, max 6.0 s"), "{table}");
    assert!(super::report::b8_table(&Metrics::default()).is_none());
}

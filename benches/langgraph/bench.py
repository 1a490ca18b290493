"""The LangGraph side of `cargo xtask bench --compare langgraph`.

Builds the workloads of /work/shared/BENCHMARKS.md (B1 chain100, B2 fanout16, B3 loop1000, B4
chain100-sqlite) in LangGraph, times repeated `invoke` calls, and prints one JSON object to
stdout:

    {"b1_chain100": median_us, "b2_fanout16": median_us, "b3_loop1000": median_us,
     "b4_chain100_sqlite": median_us, "b4_chain100_sqlite/sync": median_us,
     "metrics": {"b4_chain100_sqlite": {"checkpoints_per_invoke": 102, "checkpoints_per_s": ...,
                                        "db_bytes_per_step": ...}, ...},
     "samples": {"b1_chain100": n, ...}, "python": "3.11.7", "langgraph": "1.2.24"}

B4 is B1 with LangGraph's SqliteSaver (langgraph-checkpoint-sqlite) on a database file in a
temporary directory, WAL journal and synchronous=NORMAL as DashFlow's SqliteCheckpointer uses,
a new thread per invoke, in `durability="async"` (`b4_chain100_sqlite`) and `"sync"`
(`/sync`). Its database bytes per step are the growth of the database (pages in use, counting
those still in the WAL) over every invoke of the workload, divided by the checkpoints written.

Progress goes to stderr so stdout stays machine-readable. Each workload runs until a time
budget is spent (at least MIN_SAMPLES invokes), so the whole script takes well under a minute
even though one B3 invoke takes about a third of a second.
"""

from __future__ import annotations

import argparse
import itertools
import json
import operator
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Annotated, Any, Callable, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

CHAIN_LENGTH = 100
FANOUT_WIDTH = 16
LOOP_TARGET = 1000
MIN_SAMPLES = 5
MAX_SAMPLES = 500
WARM_UP_INVOKES = 2


class CounterState(TypedDict):
    counter: int


class FanoutState(TypedDict):
    items: Annotated[list[int], operator.add]
    total: int


def add_one(state: CounterState) -> dict[str, int]:
    return {"counter": state["counter"] + 1}


def build_chain100(checkpointer: Any = None) -> Any:
    builder = StateGraph(CounterState)
    names = [f"n{i}" for i in range(CHAIN_LENGTH)]
    for name in names:
        builder.add_node(name, add_one)
    builder.add_edge(START, names[0])
    for before, after in zip(names, names[1:]):
        builder.add_edge(before, after)
    builder.add_edge(names[-1], END)
    return builder.compile(checkpointer=checkpointer)


def append_index(index: int) -> Callable[[FanoutState], dict[str, list[int]]]:
    def branch(_state: FanoutState) -> dict[str, list[int]]:
        return {"items": [index]}

    return branch


def build_fanout16() -> Any:
    builder = StateGraph(FanoutState)
    builder.add_node("split", lambda _state: {})
    branches = [f"branch{i}" for i in range(FANOUT_WIDTH)]
    for index, name in enumerate(branches):
        builder.add_node(name, append_index(index))
        builder.add_edge("split", name)
    builder.add_node("join", lambda state: {"total": sum(state["items"])})
    builder.add_edge(START, "split")
    # A list of sources makes `join` wait for every branch, then run once.
    builder.add_edge(branches, "join")
    builder.add_edge("join", END)
    return builder.compile()


def continue_or_stop(state: CounterState) -> str:
    return "inc" if state["counter"] < LOOP_TARGET else END


def build_loop1000() -> Any:
    builder = StateGraph(CounterState)
    builder.add_node("inc", add_one)
    builder.add_edge(START, "inc")
    builder.add_conditional_edges("inc", continue_or_stop, ["inc", END])
    return builder.compile()


# Each loop iteration is one superstep; the default limit (25) would stop B3 early.
LOOP_CONFIG = {"recursion_limit": LOOP_TARGET * 2}

WORKLOADS: list[tuple[str, Callable[[], Any], dict[str, Any], dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ("b1_chain100", build_chain100, {"counter": 0}, {}, lambda out: out["counter"] == CHAIN_LENGTH),
    (
        "b2_fanout16",
        build_fanout16,
        {"items": [], "total": 0},
        {},
        lambda out: out["total"] == sum(range(FANOUT_WIDTH)) and len(out["items"]) == FANOUT_WIDTH,
    ),
    ("b3_loop1000", build_loop1000, {"counter": 0}, LOOP_CONFIG, lambda out: out["counter"] == LOOP_TARGET),
]


def median_invoke_us(invoke: Callable[[], Any], budget_s: float) -> tuple[float, int]:
    """Times calls of `invoke` until the budget is spent; returns (median µs, samples)."""
    for _ in range(WARM_UP_INVOKES):
        invoke()
    samples_ns: list[int] = []
    deadline = time.perf_counter() + budget_s
    while len(samples_ns) < MAX_SAMPLES and (len(samples_ns) < MIN_SAMPLES or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        invoke()
        samples_ns.append(time.perf_counter_ns() - start)
    return statistics.median(samples_ns) / 1_000, len(samples_ns)


# B4 in each durability mode LangGraph has: benchmark id and mode.
B4_MODES = [("b4_chain100_sqlite", "async"), ("b4_chain100_sqlite/sync", "sync")]


def open_sqlite_saver(path: str) -> tuple[sqlite3.Connection, SqliteSaver]:
    """A SqliteSaver on a new database file, set up as DashFlow's SqliteCheckpointer is: WAL
    journal (SqliteSaver's own choice) and synchronous=NORMAL (sqlite3's default is FULL)."""
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    saver = SqliteSaver(conn)
    saver.setup()
    return conn, saver


def database_bytes(conn: sqlite3.Connection) -> int:
    """Pages in use or free, counting pages still in the WAL."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return pages * page_size


def bench_chain100_sqlite(durability: str, budget_s: float, directory: str) -> tuple[float, int, dict[str, float]]:
    """B4 in one durability mode on a new database; returns (median µs, samples, metrics)."""
    path = os.path.join(directory, f"b4-{durability}.sqlite")
    conn, saver = open_sqlite_saver(path)
    try:
        graph = build_chain100(saver)
        empty_bytes = database_bytes(conn)
        threads = itertools.count()

        def invoke() -> dict[str, Any]:
            # A new thread per invoke, with the same 13-byte ids as DashFlow's bench.
            config = {"configurable": {"thread_id": f"thread-{next(threads):06d}"}, "recursion_limit": CHAIN_LENGTH * 2}
            return graph.invoke({"counter": 0}, config, durability=durability)

        output = invoke()
        if output["counter"] != CHAIN_LENGTH:
            raise RuntimeError(f"B4 ({durability}): wrong result {output!r}")
        median_us, count = median_invoke_us(invoke, budget_s)
        invokes = next(threads)
        (checkpoints,) = conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
        per_invoke = checkpoints / invokes
        metrics = {
            "checkpoints_per_invoke": per_invoke,
            "checkpoints_per_s": round(per_invoke * 1e6 / median_us, 1),
            "db_bytes_per_step": round((database_bytes(conn) - empty_bytes) / checkpoints, 1),
            "invokes": invokes,
        }
        return median_us, count, metrics
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (about 1.5 s per workload)")
    parser.add_argument("--budget-seconds", type=float, default=None, help="time budget per workload")
    args = parser.parse_args()
    budget_s = args.budget_seconds if args.budget_seconds is not None else (1.5 if args.quick else 6.0)

    report: dict[str, Any] = {}
    samples: dict[str, int] = {}
    for name, build, initial, config, is_correct in WORKLOADS:
        graph = build()
        output = graph.invoke(initial, config)
        if not is_correct(output):
            print(f"{name}: wrong result {output!r}", file=sys.stderr)
            return 1
        median_us, count = median_invoke_us(lambda: graph.invoke(initial, config), budget_s)
        report[name] = round(median_us, 1)
        samples[name] = count
        print(f"{name}: {median_us:,.0f} µs median of {count}", file=sys.stderr)

    metrics: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="langgraph-b4-") as directory:
        for name, durability in B4_MODES:
            median_us, count, figures = bench_chain100_sqlite(durability, budget_s, directory)
            report[name] = round(median_us, 1)
            samples[name] = count
            metrics[name] = figures
            print(
                f"{name}: {median_us:,.0f} µs median of {count}, {figures['checkpoints_per_s']:,.0f} checkpoints/s, "
                f"{figures['db_bytes_per_step']:,.0f} database bytes per step",
                file=sys.stderr,
            )

    report["metrics"] = metrics
    report["samples"] = samples
    report["python"] = platform.python_version()
    report["langgraph"] = version("langgraph")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

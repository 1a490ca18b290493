//! The layering rules of the design brief (section 1), one line per crate.

/// Which internal crates a crate may depend on (normal and build dependencies).
#[derive(Debug)]
pub(crate) enum Allowed {
    /// Only these internal crates; an empty list means none at all.
    Only(&'static [&'static str]),
    /// Any internal crate: the facade, the CLI and the non-library packages.
    Everything,
}

/// The layering rule for one crate, or for every crate whose name starts with a prefix.
#[derive(Debug)]
pub(crate) struct Rule {
    /// A crate name, or a prefix ending in `*` (`dashflow-checkpoint-*`). An exact name wins
    /// over a prefix, and a longer prefix over a shorter one.
    pub(crate) pattern: &'static str,
    pub(crate) allowed: Allowed,
    /// Why the rule exists; printed with every violation.
    pub(crate) reason: &'static str,
}

const fn only(pattern: &'static str, allowed: &'static [&'static str], reason: &'static str) -> Rule {
    Rule { pattern, allowed: Allowed::Only(allowed), reason }
}

const fn everything(pattern: &'static str, reason: &'static str) -> Rule {
    Rule { pattern, allowed: Allowed::Everything, reason }
}

const CHECKPOINT: &str = "dashflow-checkpoint";
const DERIVE: &str = "dashflow-derive";
const GRAPH: &str = "dashflow-graph";
const SCHEDULER: &str = "dashflow-scheduler";
const TELEMETRY: &str = "dashflow-telemetry";
const QUEUE: &str = "dashflow-queue";
const EXECUTOR: &str = "dashflow-executor";

/// Adding a crate to the workspace means adding its line here.
pub(crate) const RULES: &[Rule] = &[
    only(CHECKPOINT, &[], "the checkpoint trait crate sits at the bottom of the stack"),
    only(TELEMETRY, &[], "telemetry sits at the bottom of the stack"),
    only(SCHEDULER, &[], "the scheduler sits at the bottom of the stack"),
    only(DERIVE, &[], "the derive macro generates code and depends on nothing of ours"),
    only("dashflow-checkpoint-*", &[CHECKPOINT], "backends never see graph or state types"),
    only("dashflow-checkpoint-conformance", &[CHECKPOINT], "the conformance suite tests the trait alone"),
    only(GRAPH, &[DERIVE, TELEMETRY], "the graph layer knows nothing of running graphs or storing them"),
    only(
        "dashflow-executor",
        &[GRAPH, CHECKPOINT, TELEMETRY, SCHEDULER, DERIVE],
        "the executor never names the WAL or a concrete backend; the facade wires those in",
    ),
    only("dashflow-wal", &[TELEMETRY], "the WAL is an event sink"),
    only(
        "dashflow-otel",
        &[TELEMETRY, SCHEDULER],
        "the OpenTelemetry exporter is an event sink; its thread's niceness is set the way the scheduler's pool sets its threads'",
    ),
    only(
        "dashflow-nats",
        &[TELEMETRY, SCHEDULER],
        "the NATS publisher is an event sink (its consumer reads events back); its thread's niceness is set the way the scheduler's pool sets its threads'",
    ),
    only(QUEUE, &[CHECKPOINT], "the run-queue trait crate knows checkpoints (fenced writers), nothing of graphs"),
    only(
        "dashflow-queue-memory",
        &[QUEUE, CHECKPOINT, "dashflow-checkpoint-memory"],
        "the memory queue fences writes into the memory checkpoint backend, and knows no other engine",
    ),
    only("dashflow-queue-conformance", &[QUEUE, CHECKPOINT], "the queue conformance suite tests the trait alone"),
    only(
        "dashflow-queue-*",
        &[QUEUE, CHECKPOINT, "dashflow-checkpoint-postgres"],
        "a queue backend depends on the queue trait and the checkpoint backend of its own engine, whose writes it fences",
    ),
    only(
        "dashflow-worker",
        &[EXECUTOR, QUEUE, CHECKPOINT, TELEMETRY, GRAPH],
        "the worker drives the executor over the queue trait and never names a backend",
    ),
    only(
        "dashflow-ui",
        &[CHECKPOINT, GRAPH, TELEMETRY, "dashflow-wal"],
        "the viewer reads stores; typed graphs reach it through its UiGraph trait, implemented by the facade",
    ),
    everything("dashflow", "the facade wires the defaults together"),
    everything("dashflow-cli", "the CLI is an application"),
    everything("dashflow-examples", "examples are applications"),
    everything("dashflow-benches", "benchmarks are applications"),
    everything("xtask", "xtask is a tool, not part of the library"),
];

impl Rule {
    /// How specifically the rule names `crate_name`, or `None` when it does not apply.
    fn specificity(&self, crate_name: &str) -> Option<usize> {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => crate_name.starts_with(prefix).then_some(prefix.len()),
            None => (self.pattern == crate_name).then_some(usize::MAX),
        }
    }

    pub(crate) fn allows(&self, dependency: &str) -> bool {
        match self.allowed {
            Allowed::Only(names) => names.contains(&dependency),
            Allowed::Everything => true,
        }
    }

    /// The allowed crates as a sentence fragment for violation messages.
    pub(crate) fn allowed_description(&self) -> String {
        match self.allowed {
            Allowed::Only([]) => "no internal crate".to_owned(),
            Allowed::Only(names) => format!("only {}", names.join(", ")),
            Allowed::Everything => "any internal crate".to_owned(),
        }
    }
}

/// The most specific rule for `crate_name`, if any rule covers it.
pub(crate) fn rule_for<'r>(rules: &'r [Rule], crate_name: &str) -> Option<&'r Rule> {
    rules
        .iter()
        .filter_map(|rule| rule.specificity(crate_name).map(|specificity| (specificity, rule)))
        .max_by_key(|(specificity, _)| *specificity)
        .map(|(_, rule)| rule)
}

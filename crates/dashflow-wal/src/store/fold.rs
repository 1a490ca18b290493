//! How the store keeps a one-task step: by its task's end alone.
//!
//! Every sink hears a step's `SuperstepStarted` and its tasks' `TaskFinished`. In a tight
//! loop of one-task steps the start says nothing the end does not (the step, the node, and
//! with the end's duration, when it began), so the log stores a first attempt's end that
//! directly follows its one-task step's start, in the same hand-over (a run's batch), in
//! place of both. Readers of the log
//! (`runs show`, the traces) take an end without a start as both.

use std::sync::Arc;

use dashflow_telemetry::{EventKind, EventRef, RunId};

/// Drops from `items[from..]` each `SuperstepStarted` of a one-task step that the first
/// attempt's `TaskFinished` of its task directly follows there; `event` reads an item's
/// event (`None` for an item that is not one).
pub(super) fn fold_lone_starts<T>(items: &mut Vec<T>, from: usize, event: impl Fn(&T) -> Option<EventRef<'_>>) {
    // In place, one pass: `kept` items stay, in order, at the front.
    let mut kept = from;
    for index in from..items.len() {
        let folded = items.get(index + 1).is_some_and(|next| match (event(&items[index]), event(next)) {
            (Some(start), Some(end)) => starts_lone_task_of(&start, &end),
            _ => false,
        });
        if !folded {
            items.swap(kept, index);
            kept += 1;
        }
    }
    items.truncate(kept);
}

/// Pushes `events` onto `out` as [`fold_lone_starts`] would leave them, in one pass: a lone
/// step's start is held until the next event shows whether it is folded.
pub(super) fn push_folded<'a, T>(
    out: &mut Vec<T>,
    events: impl Iterator<Item = EventRef<'a>>,
    wrap: impl Fn(EventRef<'a>) -> T,
) {
    let mut held: Option<EventRef<'a>> = None;
    for event in events {
        if let Some(start) = held.take()
            && !starts_lone_task_of(&start, &event)
        {
            out.push(wrap(start));
        }
        if lone_start(&event).is_some() {
            held = Some(event);
        } else {
            out.push(wrap(event));
        }
    }
    out.extend(held.map(wrap));
}

/// Whether `start` is the `SuperstepStarted` of a step of one task that `end` (its first
/// attempt's `TaskFinished`) ends, in the same run.
fn starts_lone_task_of(start: &EventRef<'_>, end: &EventRef<'_>) -> bool {
    match (lone_start(start), first_end(end)) {
        // Names come from one table: the same `Arc` unless an event was built elsewhere.
        (Some((run, step, only)), Some((ended_run, ended, node))) => {
            step == ended && run == ended_run && (Arc::ptr_eq(only, node) || only == node)
        }
        _ => false,
    }
}

/// The run, step and node of a one-task step's start.
fn lone_start<'a>(event: &EventRef<'a>) -> Option<(RunId, u64, &'a Arc<str>)> {
    let (run, step, nodes) = match *event {
        EventRef::StepStarted { run, step, nodes, .. } => (run, step, nodes),
        EventRef::Whole(whole) => match &whole.kind {
            EventKind::SuperstepStarted { step, nodes } => (&whole.run, *step, nodes),
            _ => return None,
        },
        _ => return None,
    };
    match &**nodes {
        [only] => Some((run.run_id, step, only)),
        _ => None,
    }
}

/// The run, step and node of a first attempt's end.
fn first_end<'a>(event: &EventRef<'a>) -> Option<(RunId, u64, &'a Arc<str>)> {
    match *event {
        EventRef::TaskFinished { run, step, node, attempt: 1, .. } => Some((run.run_id, step, node)),
        EventRef::Whole(whole) => match &whole.kind {
            EventKind::TaskFinished { step, node, attempt: 1, .. } => Some((whole.run.run_id, *step, node)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dashflow_telemetry::{Event, RunIds};

    use super::*;

    fn whole(event: &Event) -> Option<EventRef<'_>> {
        Some(EventRef::Whole(event))
    }

    fn start(run: RunIds, step: u64, nodes: &[&str]) -> Event {
        let nodes: Arc<[Arc<str>]> = nodes.iter().map(|node| Arc::from(*node)).collect();
        Event::now(run, EventKind::SuperstepStarted { step, nodes })
    }

    fn end(run: RunIds, step: u64, node: &str, attempt: u32) -> Event {
        let kind = EventKind::TaskFinished { step, node: node.into(), attempt, duration: Duration::ZERO, error: None };
        Event::now(run, kind)
    }

    fn described(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|event| match &event.kind {
                EventKind::SuperstepStarted { step, nodes } => format!("start {step} {}", nodes.join(",")),
                EventKind::TaskFinished { step, node, attempt, .. } => format!("end {step} {node} #{attempt}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_first_attempts_end_right_after_its_lone_steps_start_is_stored_alone() {
        let (run, other) = (RunIds::root(RunId::new()), RunIds::root(RunId::new()));
        let mut events = vec![
            start(run, 1, &["a"]),
            end(run, 1, "a", 1),
            // Not folded: another step, another node, a retry, another run, several tasks,
            // something between.
            start(run, 2, &["a"]),
            end(run, 3, "a", 1),
            start(run, 4, &["a"]),
            end(run, 4, "b", 1),
            start(run, 5, &["a"]),
            end(run, 5, "a", 2),
            start(run, 6, &["a"]),
            end(other, 6, "a", 1),
            start(run, 7, &["a", "b"]),
            end(run, 7, "a", 1),
            start(run, 8, &["a"]),
            start(other, 1, &["a"]),
            end(run, 8, "a", 1),
            start(run, 9, &["a"]),
        ];
        fold_lone_starts(&mut events, 0, whole);
        let expected = [
            "end 1 a #1",
            "start 2 a",
            "end 3 a #1",
            "start 4 a",
            "end 4 b #1",
            "start 5 a",
            "end 5 a #2",
            "start 6 a",
            "end 6 a #1",
            "start 7 a,b",
            "end 7 a #1",
            "start 8 a",
            "start 1 a",
            "end 8 a #1",
            "start 9 a",
        ];
        assert_eq!(described(&events), expected);

        // Only within a hand-over: a start that ends the previous one stays.
        let mut across = vec![start(run, 9, &["a"]), end(run, 9, "a", 1)];
        fold_lone_starts(&mut across, 1, whole);
        assert_eq!(described(&across), ["start 9 a", "end 9 a #1"]);
    }

    #[test]
    fn folding_while_pushing_leaves_what_folding_in_place_leaves() {
        let (run, other) = (RunIds::root(RunId::new()), RunIds::root(RunId::new()));
        let pieces = [
            vec![start(run, 1, &["a"]), end(run, 1, "a", 1)],
            vec![start(run, 2, &["a"]), end(run, 3, "a", 1)],
            vec![start(run, 5, &["a"]), end(run, 5, "a", 2)],
            vec![start(run, 6, &["a"]), end(other, 6, "a", 1)],
            vec![start(run, 7, &["a", "b"]), end(run, 7, "a", 1)],
            vec![start(run, 8, &["a"]), start(run, 9, &["b"]), end(run, 9, "b", 1)],
            vec![start(run, 10, &["a"])],
            vec![end(run, 11, "a", 1)],
        ];
        // Every sequence of up to three pieces.
        for a in 0..pieces.len() {
            for b in 0..pieces.len() {
                for c in 0..pieces.len() {
                    let events: Vec<Event> =
                        [&pieces[a], &pieces[b], &pieces[c]].into_iter().flatten().cloned().collect();
                    let mut in_place = events.clone();
                    fold_lone_starts(&mut in_place, 0, whole);
                    let mut pushed: Vec<Event> = vec![start(other, 99, &["x"])];
                    push_folded(&mut pushed, events.iter().map(EventRef::Whole), |event| event.to_event());
                    assert_eq!(described(&pushed[1..]), described(&in_place), "{:?}", described(&events));
                }
            }
        }
    }
}

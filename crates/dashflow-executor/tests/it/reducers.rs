//! Every reducer through a run whose parallel branches all write the field in one superstep.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::common::Compiled;
use dashflow_executor::RunConfig;
use dashflow_graph::{END, GraphState, Message, NodeError, START, StateGraph};
use serde::{Deserialize, Serialize};

/// A custom reducer: keeps the longer string (the earlier one on a tie), which is associative.
fn keep_longest(acc: &mut String, new: String) {
    if new.len() > acc.len() {
        *acc = new;
    }
}

/// One field per reducer kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Fields {
    #[reduce(append)]
    appended: Vec<String>,
    #[reduce(add)]
    total: i64,
    #[reduce(max)]
    best: u32,
    #[reduce(min)]
    lowest: i32,
    #[reduce(union)]
    tags: BTreeSet<String>,
    #[reduce(merge)]
    scores: BTreeMap<String, u32>,
    #[reduce(messages)]
    messages: Vec<Message>,
    #[reduce(with = keep_longest)]
    longest: String,
}

/// Runs `input` through a graph that fans out from `START` to one node per update, all in the
/// first superstep, and returns the final state.
async fn fan_out(input: Fields, updates: Vec<FieldsUpdate>) -> Fields {
    let names: Vec<String> = (0..updates.len()).map(|index| format!("branch{index}")).collect();
    let mut graph = StateGraph::<Fields>::new();
    for (name, update) in names.iter().zip(updates) {
        graph.add_node(name.as_str(), move |_: Arc<Fields>| {
            let update = update.clone();
            async move { Ok::<_, NodeError>(update) }
        });
        graph.add_edge(name.as_str(), END);
    }
    graph.add_parallel_edges(START, names.iter().map(String::as_str));
    let result = graph.compiled().unwrap().invoke(input, RunConfig::new()).await.unwrap();
    assert_eq!(result.steps, 1, "every branch should run in the first superstep");
    result.state
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

#[tokio::test]
async fn append_keeps_every_branch_items_in_frontier_order_without_repeating_the_input() {
    let input = Fields { appended: strings(&["before"]), ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().appended(strings(&["a1", "a2"])),
            FieldsUpdate::default(),
            FieldsUpdate::default().appended(strings(&["c1"])),
        ],
    )
    .await;

    assert_eq!(state.appended, ["before", "a1", "a2", "c1"]);
}

#[tokio::test]
async fn add_sums_the_increments_of_parallel_branches() {
    let input = Fields { total: 100, ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().total(5_i64),
            FieldsUpdate::default().total(-2_i64),
            FieldsUpdate::default().total(10_i64),
        ],
    )
    .await;

    assert_eq!(state.total, 113);
}

#[tokio::test]
async fn max_keeps_the_largest_value_of_state_and_branches() {
    let input = Fields { best: 7, ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().best(3_u32),
            FieldsUpdate::default().best(42_u32),
            FieldsUpdate::default().best(9_u32),
        ],
    )
    .await;
    assert_eq!(state.best, 42);

    let kept = fan_out(
        Fields { best: 50, ..Fields::default() },
        vec![FieldsUpdate::default().best(3_u32), FieldsUpdate::default().best(42_u32)],
    )
    .await;
    assert_eq!(kept.best, 50);
}

#[tokio::test]
async fn min_keeps_the_smallest_value_of_state_and_branches() {
    let input = Fields { lowest: 0, ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().lowest(4_i32),
            FieldsUpdate::default().lowest(-8_i32),
            FieldsUpdate::default().lowest(-3_i32),
        ],
    )
    .await;
    assert_eq!(state.lowest, -8);

    let kept =
        fan_out(Fields { lowest: -100, ..Fields::default() }, vec![FieldsUpdate::default().lowest(-8_i32)]).await;
    assert_eq!(kept.lowest, -100);
}

#[tokio::test]
async fn union_collects_the_distinct_elements_of_every_branch() {
    let input = Fields { tags: ["old"].map(String::from).into(), ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().tags(["rust", "old"].map(String::from)),
            FieldsUpdate::default().tags(["graph", "rust"].map(String::from)),
        ],
    )
    .await;

    assert_eq!(state.tags, ["graph", "old", "rust"].map(String::from).into());
}

#[tokio::test]
async fn merge_combines_maps_and_the_later_branch_in_frontier_order_wins_a_shared_key() {
    let input = Fields { scores: [("kept".to_owned(), 1), ("shared".to_owned(), 0)].into(), ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().scores([("shared".to_owned(), 10), ("first".to_owned(), 2)]),
            FieldsUpdate::default().scores([("shared".to_owned(), 20), ("second".to_owned(), 3)]),
        ],
    )
    .await;

    let expected: BTreeMap<String, u32> =
        [("first", 2), ("kept", 1), ("second", 3), ("shared", 20)].map(|(k, v)| (k.to_owned(), v)).into();
    assert_eq!(state.scores, expected);
}

#[tokio::test]
async fn messages_replace_by_id_in_place_and_append_new_ones() {
    let input = Fields {
        messages: vec![Message::user("hi").with_id("u1"), Message::assistant("draft").with_id("a1")],
        ..Fields::default()
    };
    let state = fan_out(
        input,
        vec![
            // Edits the draft in place.
            FieldsUpdate::default().messages(vec![Message::assistant("final answer").with_id("a1")]),
            // Appends a new message, and one without id (always appended).
            FieldsUpdate::default()
                .messages(vec![Message::tool("search", "3 results").with_id("t1"), Message::user("thanks")]),
        ],
    )
    .await;

    assert_eq!(
        state.messages,
        [
            Message::user("hi").with_id("u1"),
            Message::assistant("final answer").with_id("a1"),
            Message::tool("search", "3 results").with_id("t1"),
            Message::user("thanks"),
        ]
    );
}

#[tokio::test]
async fn messages_from_two_branches_with_one_new_id_keep_the_later_in_frontier_order() {
    let state = fan_out(
        Fields::default(),
        vec![
            FieldsUpdate::default().messages(vec![Message::assistant("from branch 0").with_id("m")]),
            FieldsUpdate::default().messages(vec![Message::assistant("from branch 1").with_id("m")]),
        ],
    )
    .await;

    assert_eq!(state.messages, [Message::assistant("from branch 1").with_id("m")]);
}

#[tokio::test]
async fn a_custom_with_reducer_folds_every_branch() {
    let input = Fields { longest: "abc".into(), ..Fields::default() };
    let state = fan_out(
        input,
        vec![
            FieldsUpdate::default().longest("ab"),
            FieldsUpdate::default().longest("abcdef"),
            FieldsUpdate::default().longest("abcd"),
        ],
    )
    .await;

    assert_eq!(state.longest, "abcdef");
}

#[tokio::test]
async fn branches_writing_different_reducer_fields_all_take_effect() {
    let state = fan_out(
        Fields::default(),
        vec![
            FieldsUpdate::default().appended(strings(&["x"])).total(1_i64),
            FieldsUpdate::default().best(5_u32).lowest(-1_i32).total(1_i64),
            FieldsUpdate::default().tags(["t"].map(String::from)).longest("long"),
        ],
    )
    .await;

    assert_eq!(state.appended, ["x"]);
    assert_eq!(state.total, 2);
    assert_eq!((state.best, state.lowest), (5, -1));
    assert_eq!(state.tags.len(), 1);
    assert_eq!(state.longest, "long");
}

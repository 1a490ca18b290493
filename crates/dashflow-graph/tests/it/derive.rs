//! Tests of `#[derive(GraphState)]`: what each reducer does through `apply` and `merge`, the
//! generated update's API, the container attributes, and (through trybuild) the compile errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::marker::PhantomData;

use dashflow_graph::{GraphState, MergeableState, Message};
use serde::{Deserialize, Serialize};

/// A custom reducer: keeps the longer string (the earlier one on a tie), which is associative.
fn keep_longest(acc: &mut String, new: String) {
    if new.len() > acc.len() {
        *acc = new;
    }
}

mod reducers {
    /// A custom reducer reached through a module path: multiplies.
    pub(super) fn product(acc: &mut u64, new: u64) {
        *acc *= new;
    }
}

/// One field per reducer kind, including both spellings of `add`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
#[graph_state(update_derive(Debug, PartialEq))]
struct Research {
    topic: String,
    #[reduce(overwrite)]
    status: Option<String>,
    #[reduce(append)]
    findings: Vec<String>,
    #[reduce(add)]
    tokens: u64,
    #[reduce(sum)]
    balance: i64,
    #[reduce(max)]
    best: u32,
    #[reduce(min)]
    earliest: i32,
    #[reduce(union)]
    tags: BTreeSet<String>,
    #[reduce(merge)]
    scores: BTreeMap<String, u32>,
    #[reduce(messages)]
    messages: Vec<Message>,
    #[reduce(with = keep_longest)]
    longest: String,
    #[reduce(with = reducers::product)]
    factor: u64,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

/// A fresh state; `factor` starts at 1, the identity of its reducer.
fn fresh() -> Research {
    Research { factor: 1, ..Research::default() }
}

/// A state with every field already set, including a message the updates can replace.
fn populated() -> Research {
    Research {
        topic: "base".to_owned(),
        status: Some("base".to_owned()),
        findings: strings(&["f0"]),
        tokens: 100,
        balance: 1,
        best: 3,
        earliest: 0,
        tags: BTreeSet::from(["t0".to_owned()]),
        scores: BTreeMap::from([("k".to_owned(), 9)]),
        messages: vec![Message::system("m0").with_id("m"), Message::user("plain")],
        longest: "abcd".to_owned(),
        factor: 3,
    }
}

fn apply_all(mut state: Research, updates: impl IntoIterator<Item = ResearchUpdate>) -> Research {
    for update in updates {
        state.apply(update);
    }
    state
}

fn applied(updates: impl IntoIterator<Item = ResearchUpdate>) -> Research {
    apply_all(fresh(), updates)
}

fn merged(first: ResearchUpdate, rest: impl IntoIterator<Item = ResearchUpdate>) -> ResearchUpdate {
    let mut acc = first;
    for later in rest {
        Research::merge(&mut acc, later);
    }
    acc
}

fn overwrites(update: &ResearchUpdate) -> Vec<&'static str> {
    let mut names = Vec::new();
    Research::for_each_overwrite(update, |name| names.push(name));
    names
}

#[test]
fn overwrite_field_takes_the_latest_value_and_unset_fields_keep_theirs() {
    let state = applied([
        ResearchUpdate::default().topic("rust").status("drafting".to_owned()),
        ResearchUpdate::default().topic("graphs"),
    ]);
    assert_eq!(state.topic, "graphs");
    assert_eq!(state.status.as_deref(), Some("drafting"));
}

#[test]
fn append_field_concatenates_in_apply_order() {
    let state = applied([
        ResearchUpdate::default().findings(strings(&["a", "b"])),
        ResearchUpdate::default(),
        ResearchUpdate::default().findings(strings(&["c"])),
    ]);
    assert_eq!(state.findings, ["a", "b", "c"]);
}

#[test]
fn add_and_sum_fields_accumulate() {
    let state = applied([
        ResearchUpdate::default().tokens(5_u64).balance(-3_i64),
        ResearchUpdate::default().tokens(7_u64).balance(10_i64),
    ]);
    assert_eq!((state.tokens, state.balance), (12, 7));
}

#[test]
fn max_and_min_fields_keep_the_extremes_whatever_the_order() {
    let state = applied([
        ResearchUpdate::default().best(3_u32).earliest(4_i32),
        ResearchUpdate::default().best(9_u32).earliest(-2_i32),
        ResearchUpdate::default().best(5_u32).earliest(1_i32),
    ]);
    assert_eq!((state.best, state.earliest), (9, -2));
}

#[test]
fn union_field_collects_distinct_elements() {
    let state = applied([
        ResearchUpdate::default().tags(BTreeSet::from(["a".to_owned(), "b".to_owned()])),
        ResearchUpdate::default().tags(BTreeSet::from(["b".to_owned(), "c".to_owned()])),
    ]);
    assert_eq!(state.tags, BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()]));
}

#[test]
fn merge_field_inserts_entries_and_the_later_value_of_a_key_wins() {
    let state = applied([
        ResearchUpdate::default().scores(BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 2)])),
        ResearchUpdate::default().scores(BTreeMap::from([("y".to_owned(), 20), ("z".to_owned(), 3)])),
    ]);
    let expected = BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 20), ("z".to_owned(), 3)]);
    assert_eq!(state.scores, expected);
}

#[test]
fn messages_field_replaces_a_message_with_a_known_id_in_place() {
    let state = applied([
        ResearchUpdate::default()
            .messages(vec![Message::user("question").with_id("q"), Message::assistant("draft").with_id("a")]),
        ResearchUpdate::default().messages(vec![Message::assistant("final").with_id("a"), Message::user("thanks")]),
    ]);
    let contents: Vec<&str> = state.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["question", "final", "thanks"]);
}

#[test]
fn with_reducers_are_called_by_plain_and_module_paths() {
    let state = applied([
        ResearchUpdate::default().longest("abc").factor(3_u64),
        ResearchUpdate::default().longest("z").factor(4_u64),
        ResearchUpdate::default().longest("wxyz"),
    ]);
    assert_eq!(state.longest, "wxyz");
    assert_eq!(state.factor, 12);
}

/// Hand-made updates touching every field, with overlaps between them (the same message id,
/// the same map key, a shorter and a longer string) so that merging is not trivially
/// order-independent.
fn sample_updates() -> Vec<ResearchUpdate> {
    vec![
        ResearchUpdate::default(),
        ResearchUpdate::default()
            .topic("one")
            .findings(strings(&["f1"]))
            .tokens(1_u64)
            .best(4_u32)
            .tags(BTreeSet::from(["t1".to_owned()]))
            .messages(vec![Message::user("m1").with_id("m")])
            .longest("ab")
            .factor(2_u64),
        ResearchUpdate::default()
            .status("two".to_owned())
            .findings(strings(&["f2", "f3"]))
            .balance(-5_i64)
            .earliest(-1_i32)
            .scores(BTreeMap::from([("k".to_owned(), 2)]))
            .messages(vec![Message::assistant("m2"), Message::user("m1 edited").with_id("m")]),
        ResearchUpdate::default()
            .topic("three")
            .status(None::<String>)
            .tokens(10_u64)
            .balance(7_i64)
            .best(2_u32)
            .earliest(3_i32)
            .tags(BTreeSet::from(["t1".to_owned(), "t2".to_owned()]))
            .scores(BTreeMap::from([("k".to_owned(), 30), ("j".to_owned(), 1)]))
            .longest("xyz")
            .factor(5_u64),
        ResearchUpdate::default()
            .messages(vec![Message::assistant("m3").with_id("n"), Message::user("m1 again").with_id("m")])
            .longest("q"),
    ]
}

#[test]
fn merging_two_updates_then_applying_equals_applying_both_in_order() {
    let samples = sample_updates();
    for start in [fresh(), populated()] {
        for a in &samples {
            for b in &samples {
                let sequential = apply_all(start.clone(), [a.clone(), b.clone()]);
                let combined = apply_all(start.clone(), [merged(a.clone(), [b.clone()])]);
                assert_eq!(combined, sequential, "merge({a:?}, {b:?}) onto {start:?}");
            }
        }
    }
}

#[test]
fn merging_is_associative() {
    let samples = sample_updates();
    for a in &samples {
        for b in &samples {
            for c in &samples {
                let left = merged(merged(a.clone(), [b.clone()]), [c.clone()]);
                let right = merged(a.clone(), [merged(b.clone(), [c.clone()])]);
                assert_eq!(left, right, "({a:?}, {b:?}, {c:?})");
            }
        }
    }
}

#[test]
fn merge_lets_the_later_overwrite_win_and_folds_reduced_fields() {
    let acc = ResearchUpdate::default().topic("early").findings(strings(&["a"])).best(7_u32);
    let later = ResearchUpdate::default().topic("late").findings(strings(&["b"])).tokens(2_u64);
    let combined = merged(acc, [later]);
    let expected = ResearchUpdate::default().topic("late").findings(strings(&["a", "b"])).best(7_u32).tokens(2_u64);
    assert_eq!(combined, expected);
}

#[test]
fn merge_keeps_an_earlier_overwrite_that_the_later_update_leaves_unset() {
    let combined = merged(ResearchUpdate::default().topic("early"), [ResearchUpdate::default().tokens(1_u64)]);
    assert_eq!(combined, ResearchUpdate::default().topic("early").tokens(1_u64));
}

#[test]
fn for_each_overwrite_reports_the_set_overwrite_fields_only() {
    let update = ResearchUpdate::default()
        .topic("t")
        .status("s".to_owned())
        .findings(strings(&["a"]))
        .tokens(1_u64)
        .longest("l");
    assert_eq!(overwrites(&update), ["topic", "status"]);
    assert_eq!(overwrites(&ResearchUpdate::default().status(None::<String>)), ["status"]);
    assert!(overwrites(&ResearchUpdate::default().findings(strings(&["a"]))).is_empty());
}

#[test]
fn builder_methods_convert_their_argument_with_into() {
    let update = ResearchUpdate::default().topic("from a &str").status("from a String".to_owned()).tokens(3_u8);
    assert_eq!(update.topic.as_deref(), Some("from a &str"));
    assert_eq!(update.status, Some(Some("from a String".to_owned())));
    assert_eq!(update.tokens, Some(3_u64));
    // `Some` itself converts too, and an explicit `None` sets the field to `None`.
    let cleared = ResearchUpdate::default().status(None::<String>);
    assert_eq!(cleared.status, Some(None));
}

#[test]
fn is_empty_is_true_only_until_some_field_is_set() {
    assert!(ResearchUpdate::default().is_empty());
    assert!(!ResearchUpdate::default().factor(1_u64).is_empty());
    assert!(!ResearchUpdate::default().status(None::<String>).is_empty());
}

#[test]
fn update_round_trips_through_serde_json_with_unset_fields_as_null() -> serde_json::Result<()> {
    let update =
        ResearchUpdate::default().topic("t").findings(strings(&["a"])).messages(vec![Message::user("hi").with_id("m")]);
    let json = serde_json::to_value(&update)?;
    // Unset fields are written, not skipped: bincode cannot read a struct with fields missing.
    assert_eq!(json.get("tokens"), Some(&serde_json::Value::Null));
    assert_eq!(json.as_object().map(serde_json::Map::len), Some(12));
    assert_eq!(json["topic"], "t");
    let back: ResearchUpdate = serde_json::from_value(json)?;
    assert_eq!(back, update);
    // A node written in another language may leave unset fields out altogether.
    let sparse: ResearchUpdate = serde_json::from_str(r#"{"best": 3}"#)?;
    assert_eq!(sparse, ResearchUpdate::default().best(3_u32));
    Ok(())
}

/// A whole-state update: each update is the next state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
#[graph_state(whole)]
struct Counter {
    value: u64,
    label: String,
}

#[test]
fn whole_state_updates_replace_the_state_and_report_one_overwrite() {
    let mut state = Counter { value: 1, label: "start".to_owned() };
    state.apply(Counter { value: 2, label: String::new() });
    assert_eq!(state, Counter { value: 2, label: String::new() });

    let mut acc = Counter { value: 3, label: "early".to_owned() };
    Counter::merge(&mut acc, Counter { value: 4, label: "late".to_owned() });
    assert_eq!(acc, Counter { value: 4, label: "late".to_owned() });

    let mut names = Vec::new();
    Counter::for_each_overwrite(&acc, |name| names.push(name));
    assert_eq!(names, ["<whole state>"]);
}

/// A generic state, with reducers over its parameter and a bound in a where clause.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Tally<T>
where
    T: Copy,
{
    #[reduce(add)]
    total: T,
    #[reduce(append)]
    items: Vec<T>,
    #[reduce(max)]
    peak: T,
    last: Option<T>,
    #[reduce(merge)]
    names: BTreeMap<u8, String>,
}

/// Drives any derived state through the trait, as the executor does.
fn fold<S: MergeableState>(state: &mut S, updates: Vec<S::Update>) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut updates = updates.into_iter();
    if let Some(mut acc) = updates.next() {
        for later in updates {
            S::for_each_overwrite(&later, |name| names.push(name));
            S::merge(&mut acc, later);
        }
        state.apply(acc);
    }
    names
}

#[test]
fn generic_state_gets_a_generic_update_and_reducers_over_its_parameter() {
    let mut state: Tally<f64> = Tally::default();
    let names = fold(
        &mut state,
        vec![
            TallyUpdate::default().total(1.5).items(vec![1.5]).peak(1.5).last(1.5),
            TallyUpdate::default()
                .total(2.0_f32)
                .items(vec![2.0])
                .peak(0.5)
                .last(None::<f64>)
                .names(BTreeMap::from([(1, "one".to_owned())])),
        ],
    );
    assert_eq!(state.total, 3.5);
    assert_eq!(state.items, [1.5, 2.0]);
    assert_eq!(state.peak, 1.5);
    assert_eq!(state.last, None);
    assert_eq!(state.names, BTreeMap::from([(1, "one".to_owned())]));
    assert_eq!(names, ["last"]);
}

/// A state whose update is renamed, with no derives beyond the four fixed ones.
#[derive(Clone, Default, Serialize, Deserialize, GraphState)]
#[graph_state(update = "Delta", update_derive())]
struct Renamed {
    #[reduce(add)]
    count: u32,
    /// A raw identifier keeps its name in conflicts.
    r#type: String,
}

#[test]
fn renamed_update_is_generated_under_the_given_name() -> serde_json::Result<()> {
    let mut state = Renamed::default();
    let delta: Delta = Delta::default().count(2_u32).r#type("kind");
    let mut names = Vec::new();
    Renamed::for_each_overwrite(&delta, |name| names.push(name));
    assert_eq!(names, ["type"]);
    assert_eq!(serde_json::to_string(&delta)?, r#"{"count":2,"type":"kind"}"#);
    state.apply(delta);
    assert_eq!((state.count, state.r#type.as_str()), (2, "kind"));
    Ok(())
}

/// Whether a type implements `Debug` or `PartialEq`, decided at compile time: an inherent
/// associated constant shadows the trait's default only where its bound holds.
trait Fallback {
    const DEBUG: bool = false;
    const PARTIAL_EQ: bool = false;
}

struct DebugProbe<T>(PhantomData<T>);
impl<T> Fallback for DebugProbe<T> {}
impl<T: Debug> DebugProbe<T> {
    const DEBUG: bool = true;
}

struct EqProbe<T>(PhantomData<T>);
impl<T> Fallback for EqProbe<T> {}
impl<T: PartialEq> EqProbe<T> {
    const PARTIAL_EQ: bool = true;
}

/// A state with the default derives on its update.
#[derive(Clone, Default, Serialize, Deserialize, GraphState)]
struct Plain {
    value: u8,
}

#[test]
fn update_derive_replaces_the_default_debug() {
    // (implements `Debug`, implements `PartialEq`) of each update.
    let derives = [
        // Default: `Debug` only.
        (DebugProbe::<PlainUpdate>::DEBUG, EqProbe::<PlainUpdate>::PARTIAL_EQ),
        // `update_derive(Debug, PartialEq)`.
        (DebugProbe::<ResearchUpdate>::DEBUG, EqProbe::<ResearchUpdate>::PARTIAL_EQ),
        // `update_derive()`: neither.
        (DebugProbe::<Delta>::DEBUG, EqProbe::<Delta>::PARTIAL_EQ),
        // The probes themselves tell the two apart.
        (DebugProbe::<u8>::DEBUG, EqProbe::<u8>::PARTIAL_EQ),
        (DebugProbe::<EqProbe<u8>>::DEBUG, EqProbe::<EqProbe<u8>>::PARTIAL_EQ),
    ];
    assert_eq!(derives, [(true, false), (true, true), (false, false), (true, true), (false, false)]);

    let mut plain = Plain::default();
    plain.apply(PlainUpdate::default().value(4_u8));
    assert_eq!(plain.value, 4);
}

/// Two fields, so that an unset one has something to be left out next to.
#[derive(Clone, Default, Serialize, Deserialize, GraphState)]
struct Pair<T: Clone + Default + Send + Sync + 'static> {
    left: T,
    #[reduce(append)]
    right: Vec<String>,
}

#[test]
fn an_updates_debug_shows_only_the_fields_it_sets() {
    assert_eq!(format!("{:?}", PlainUpdate::default().value(1_u8)), "PlainUpdate { value: 1 }");
    assert_eq!(format!("{:?}", PlainUpdate::default()), "PlainUpdate");
    let update = PairUpdate::<u8>::default().right(vec!["r".to_owned()]);
    assert_eq!(format!("{update:?}"), r#"PairUpdate { right: ["r"] }"#);
    let update = PairUpdate::<u8>::default().left(3_u8).right(vec![]);
    assert_eq!(format!("{update:?}"), "PairUpdate { left: 3, right: [] }");
    let mut pair = Pair::<u8>::default();
    pair.apply(update);
    assert_eq!(pair.left, 3);
    // `update_derive(Debug, PartialEq)` gets the same `Debug`.
    assert_eq!(format!("{:?}", ResearchUpdate::default()), "ResearchUpdate");
}

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}

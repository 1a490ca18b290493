//! The reducers of `dashflow_graph::reducers`, called directly, and `Message`.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use dashflow_graph::message::MessageLike;
use dashflow_graph::reducers::{add, append, max, merge, messages, min, union};
use dashflow_graph::{Message, Role};

#[test]
fn append_extends_a_vec_and_a_deque_in_order() {
    let mut items = vec![1, 2];
    append(&mut items, vec![3, 4]);
    append(&mut items, Vec::new());
    assert_eq!(items, [1, 2, 3, 4]);

    let mut queue = VecDeque::from([1]);
    append(&mut queue, VecDeque::from([2, 3]));
    assert_eq!(queue, [1, 2, 3]);
}

#[test]
fn add_accumulates_integers_and_floats() {
    let mut tokens = 5_u64;
    add(&mut tokens, 7);
    assert_eq!(tokens, 12);

    let mut balance = 10_i64;
    add(&mut balance, -25);
    assert_eq!(balance, -15);

    let mut cost = 0.25_f64;
    add(&mut cost, 0.5);
    assert!((cost - 0.75).abs() < f64::EPSILON);
}

#[test]
fn max_and_min_keep_the_extremes_whatever_the_order() {
    let (mut high, mut low) = (3_i32, 3_i32);
    for value in [7, -2, 5, 7, 0] {
        max(&mut high, value);
        min(&mut low, value);
    }
    assert_eq!((high, low), (7, -2));

    let mut best = Some(2_u8);
    max(&mut best, None);
    assert_eq!(best, Some(2));
    let mut earliest = Some(2_u8);
    min(&mut earliest, None);
    assert_eq!(earliest, None);
}

#[test]
fn union_inserts_every_new_element_once() {
    let mut tags = BTreeSet::from(["rust", "graphs"]);
    union(&mut tags, BTreeSet::from(["graphs", "async"]));
    assert_eq!(tags, BTreeSet::from(["async", "graphs", "rust"]));

    let mut seen = HashSet::from([1, 2]);
    union(&mut seen, HashSet::from([2, 3]));
    assert_eq!(seen, HashSet::from([1, 2, 3]));
}

#[test]
fn merge_inserts_new_entries_and_the_later_value_wins_for_a_shared_key() {
    let mut scores = BTreeMap::from([("alice", 1), ("bob", 2)]);
    merge(&mut scores, BTreeMap::from([("bob", 20), ("carol", 3)]));
    assert_eq!(scores, BTreeMap::from([("alice", 1), ("bob", 20), ("carol", 3)]));
}

#[test]
fn messages_appends_messages_without_an_id() {
    let mut history = vec![Message::user("hi")];
    messages(&mut history, vec![Message::assistant("hello"), Message::user("hi")]);
    assert_eq!(history, [Message::user("hi"), Message::assistant("hello"), Message::user("hi")]);
}

#[test]
fn messages_replaces_a_message_with_a_known_id_in_place() {
    let mut history =
        vec![Message::system("be brief"), Message::assistant("draft").with_id("a1"), Message::user("thanks")];
    messages(&mut history, vec![Message::assistant("final").with_id("a1"), Message::assistant("new").with_id("a2")]);
    assert_eq!(
        history,
        [
            Message::system("be brief"),
            Message::assistant("final").with_id("a1"),
            Message::user("thanks"),
            Message::assistant("new").with_id("a2"),
        ],
    );
}

#[test]
fn messages_with_one_id_in_one_batch_keep_the_last() {
    let mut history = Vec::new();
    messages(
        &mut history,
        vec![Message::assistant("v1").with_id("a"), Message::user("between"), Message::assistant("v2").with_id("a")],
    );
    assert_eq!(history, [Message::assistant("v2").with_id("a"), Message::user("between")]);
}

#[test]
fn merging_an_update_that_repeats_an_id_agrees_with_applying_it() {
    // One update may carry two versions of a message; a later update then replaces the
    // version that is applied last, so merging first must replace that one too.
    let first = vec![Message::assistant("v1").with_id("a"), Message::assistant("v2").with_id("a")];
    let later = vec![Message::assistant("v3").with_id("a")];

    let mut applied = Vec::new();
    messages(&mut applied, first.clone());
    messages(&mut applied, later.clone());

    let mut merged = first;
    messages(&mut merged, later);
    let mut applied_merged = Vec::new();
    messages(&mut applied_merged, merged);

    assert_eq!(applied, [Message::assistant("v3").with_id("a")]);
    assert_eq!(applied_merged, applied);
}

/// Every list of up to `len` items from `alphabet`.
fn lists<T: Clone>(alphabet: &[T], len: usize) -> Vec<Vec<T>> {
    let mut all = vec![Vec::new()];
    let mut frontier = vec![Vec::new()];
    for _ in 0..len {
        let mut next = Vec::new();
        for list in &frontier {
            for item in alphabet {
                let mut longer: Vec<T> = list.clone();
                longer.push(item.clone());
                next.push(longer);
            }
        }
        all.extend(next.iter().cloned());
        frontier = next;
    }
    all
}

#[test]
fn messages_is_associative_so_parallel_updates_can_be_merged_first() {
    let alphabet = [
        Message::user("x1").with_id("x"),
        Message::user("x2").with_id("x"),
        Message::user("y").with_id("y"),
        Message::user("anonymous"),
    ];
    let all = lists(&alphabet, 2);
    for state in &all {
        for a in &all {
            for b in &all {
                let mut sequential = state.clone();
                messages(&mut sequential, a.clone());
                messages(&mut sequential, b.clone());

                let mut combined = a.clone();
                messages(&mut combined, b.clone());
                let mut merged_first = state.clone();
                messages(&mut merged_first, combined);

                assert_eq!(sequential, merged_first, "state {state:?}, a {a:?}, b {b:?}");
            }
        }
    }
}

/// A message type of the caller's own, to show that `messages` only needs `MessageLike`.
#[derive(Clone, Debug, PartialEq)]
struct Event {
    key: Option<&'static str>,
    body: &'static str,
}

impl MessageLike for Event {
    fn message_id(&self) -> Option<&str> {
        self.key
    }
}

#[test]
fn messages_works_with_any_message_like_type() {
    let event = |key, body| Event { key, body };
    let mut log = vec![event(Some("k"), "old"), event(None, "note")];
    messages(&mut log, vec![event(Some("k"), "new"), event(None, "note")]);
    assert_eq!(log, [event(Some("k"), "new"), event(None, "note"), event(None, "note")]);
}

#[test]
fn message_constructors_set_role_content_and_name() {
    let cases = [
        (Message::system("s"), Role::System, None),
        (Message::user("u"), Role::User, None),
        (Message::assistant("a"), Role::Assistant, None),
        (Message::tool("search", "t"), Role::Tool, Some("search")),
        (Message::new(Role::User, "n"), Role::User, None),
    ];
    for (message, role, name) in cases {
        assert_eq!(message.role, role);
        assert_eq!(message.name.as_deref(), name);
        assert_eq!(message.id, None);
        assert_eq!(message.message_id(), None);
    }
    assert_eq!(Message::tool("search", "3 hits").content, "3 hits");
    let tagged = Message::user("hi").with_id("m1");
    assert_eq!(tagged.id.as_deref(), Some("m1"));
    assert_eq!(tagged.message_id(), Some("m1"));
}

#[test]
fn a_message_displays_as_role_and_content() {
    assert_eq!(Message::user("hello").to_string(), "user: hello");
    assert_eq!(Message::system("be brief").to_string(), "system: be brief");
    assert_eq!(Message::assistant("ok").to_string(), "assistant: ok");
    assert_eq!(Message::tool("calc", "4").to_string(), "tool: 4");
}

#[test]
fn a_message_serializes_with_a_snake_case_role_and_round_trips() {
    let message = Message::tool("calc", "4").with_id("t1");
    let json = serde_json::to_value(&message).unwrap();
    assert_eq!(json, serde_json::json!({ "id": "t1", "role": "tool", "content": "4", "name": "calc" }));
    assert_eq!(serde_json::from_value::<Message>(json).unwrap(), message);
    assert_eq!(serde_json::to_value(Role::Assistant).unwrap(), "assistant");
}

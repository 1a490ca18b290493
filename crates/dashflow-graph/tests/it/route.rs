//! What routers return (`Labels`, `IntoLabels`) and how mappings are written (`MappingEntry`).

use std::borrow::Cow;

use dashflow_graph::route::{IntoLabels, Labels, MappingEntry};
use dashflow_graph::{END, EdgeKind, START};

use crate::support::{Doc, graph_with};

fn labels(labels: &Labels) -> Vec<&str> {
    labels.iter().collect()
}

#[test]
fn one_label_from_a_static_str_a_string_or_a_cow() {
    let borrowed = "next".into_labels();
    assert_eq!(borrowed, Labels::One(Cow::Borrowed("next")));
    assert!(matches!(borrowed, Labels::One(Cow::Borrowed(_))));
    assert_eq!(String::from("next").into_labels(), borrowed);
    assert_eq!(Cow::<'static, str>::Owned("next".to_owned()).into_labels(), borrowed);
    assert_eq!(labels(&borrowed), ["next"]);
}

#[test]
fn several_labels_from_a_vec_or_an_array_keep_their_order() {
    let expected = ["b", "a", "c"];
    assert_eq!(labels(&vec!["b", "a", "c"].into_labels()), expected);
    assert_eq!(labels(&["b", "a", "c"].into_labels()), expected);
    let owned: Vec<String> = expected.iter().map(|&s| s.to_owned()).collect();
    assert_eq!(labels(&owned.into_labels()), expected);
    assert!(labels(&Vec::<&str>::new().into_labels()).is_empty());
}

#[test]
fn labels_convert_into_themselves() {
    let many = Labels::Many(vec!["x".into(), "y".into()]);
    assert_eq!(many.clone().into_labels(), many);
}

#[test]
fn a_pair_maps_a_label_to_a_target() {
    assert_eq!(("done", END).into_entry(), ("done".to_owned(), "__end__".to_owned()));
    assert_eq!((String::from("more"), "write").into_entry(), ("more".to_owned(), "write".to_owned()));
}

#[test]
fn a_bare_name_maps_to_itself() {
    assert_eq!("review".into_entry(), ("review".to_owned(), "review".to_owned()));
    assert_eq!(String::from("review").into_entry(), ("review".to_owned(), "review".to_owned()));
}

#[test]
fn bare_names_in_a_mapping_become_labels_of_the_same_name() {
    let mut graph = graph_with(&["a", "b", "c"]);
    graph
        .add_edge(START, "a")
        .add_conditional_edges("a", |_: &Doc| "b", vec![String::from("b"), String::from("c")])
        .add_edge("b", END)
        .add_edge("c", END);
    let schema = graph.build().unwrap().schema().clone();
    let conditional: Vec<(&str, &str)> = schema
        .edges
        .iter()
        .filter_map(|edge| match &edge.kind {
            EdgeKind::Conditional { label } => Some((label.as_str(), edge.to.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(conditional, [("b", "b"), ("c", "c")]);
}

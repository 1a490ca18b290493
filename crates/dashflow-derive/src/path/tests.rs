use proc_macro_crate::FoundCrate;

use super::resolve;

fn name(name: &str) -> Option<FoundCrate> {
    Some(FoundCrate::Name(name.to_owned()))
}

fn resolved(graph: Option<FoundCrate>, facade: Option<FoundCrate>) -> String {
    resolve(graph, facade).to_string().replace(' ', "")
}

#[test]
fn graph_crate_itself_is_named_through_its_extern_crate_self() {
    assert_eq!(resolved(Some(FoundCrate::Itself), None), "::dashflow_graph");
}

#[test]
fn a_direct_dependency_is_named_as_renamed_even_next_to_the_facade() {
    assert_eq!(resolved(name("dashflow_graph"), None), "::dashflow_graph");
    assert_eq!(resolved(name("graph2"), name("dashflow")), "::graph2");
}

#[test]
fn facade_users_reach_the_graph_crate_through_its_private_module() {
    assert_eq!(resolved(None, name("dashflow")), "::dashflow::__private::graph");
    assert_eq!(resolved(None, name("df")), "::df::__private::graph");
    assert_eq!(resolved(None, Some(FoundCrate::Itself)), "::dashflow::__private::graph");
}

#[test]
fn unusable_or_missing_names_fall_back_to_the_crate_name() {
    assert_eq!(resolved(None, None), "::dashflow_graph");
    assert_eq!(resolved(None, name("not an ident")), "::dashflow_graph");
    assert_eq!(resolved(name("9lives"), name("dashflow")), "::dashflow::__private::graph");
}

//! `#[derive(GraphState)]` for DashFlow (implementation in progress).
use proc_macro::TokenStream;

/// Derives `GraphState` and `MergeableState`.
#[proc_macro_derive(GraphState, attributes(reduce, graph_state))]
pub fn derive_graph_state(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

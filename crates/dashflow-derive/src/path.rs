//! Finding the path under which the deriving crate can name `dashflow_graph`.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

#[cfg(test)]
mod tests;

/// The path of the `dashflow_graph` crate as the deriving crate sees it.
pub(crate) fn graph_crate() -> TokenStream {
    resolve(crate_name("dashflow-graph").ok(), crate_name("dashflow").ok())
}

/// Chooses the path from what the deriving crate's manifest says about the two crates.
///
/// A direct `dashflow-graph` dependency is preferred over the `dashflow` facade: a crate of this
/// workspace may list the facade as a dev-dependency (for its tests) while its library code
/// depends on `dashflow-graph` only, and `proc-macro-crate` cannot tell the two kinds of
/// dependency apart. A user who depends on the facade alone gets `::dashflow::__private::graph`.
fn resolve(graph: Option<FoundCrate>, facade: Option<FoundCrate>) -> TokenStream {
    match graph {
        // Inside dashflow-graph itself, `lib.rs` declares `extern crate self as dashflow_graph`,
        // which (unlike `crate::`) also works in its doctests.
        Some(FoundCrate::Itself) => return quote!(::dashflow_graph),
        Some(FoundCrate::Name(name)) => {
            if let Some(ident) = ident(&name) {
                return quote!(::#ident);
            }
        }
        None => {}
    }
    match facade {
        // Inside the facade this needs `extern crate self as dashflow`; its doctests and
        // integration tests work either way.
        Some(FoundCrate::Itself) => quote!(::dashflow::__private::graph),
        Some(FoundCrate::Name(name)) => match ident(&name) {
            Some(ident) => quote!(::#ident::__private::graph),
            None => quote!(::dashflow_graph),
        },
        // Neither found (e.g. a build without Cargo): the crate's own name is the best guess.
        None => quote!(::dashflow_graph),
    }
}

/// `name` as an identifier, or `None` if it is not one (so that `Ident::new` cannot panic).
fn ident(name: &str) -> Option<Ident> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| Ident::new(name, Span::call_site()))
}

//! `#[derive(GraphState)]` for DashFlow: generates a state's update type and the per-field
//! reducers that fold updates into the state.
//!
//! Users reach the derive through `dashflow` (or `dashflow_graph`), never through this crate.
//! For a struct `State` it generates
//!
//! - `StateUpdate`, with the struct's visibility and generics and one `Option<T>` per field
//!   (`None` leaves the field alone), deriving `Clone`, `Default`, `Serialize`, `Deserialize`
//!   and, unless overridden, `Debug`, which shows only the fields an update sets
//!   (`StateUpdate { findings: ["late"] }`);
//! - on `StateUpdate`, one builder method per field, named after it and taking
//!   `impl Into<T>`, and `is_empty()`;
//! - `impl GraphState for State` (`apply` folds each set field with its reducer) and
//!   `impl MergeableState for State` (`merge` combines two updates as if applied in order;
//!   `for_each_overwrite` names the overwrite fields an update sets, which the executor reports
//!   as conflicts when parallel tasks both set one), with `GraphState::REDUCERS` (each field's
//!   reducer, part of the checkpoint fingerprint: a stored update means something else under
//!   another reducer) and `GraphState::DECLARATION` (the declaration as written, the
//!   fingerprint of a state whose shape cannot be traced).
//!
//! # Example
//!
//! ```ignore
//! // Not compiled here: a proc-macro crate cannot use its own derive, and the traits it
//! // implements live in dashflow-graph, which depends on this crate. dashflow-graph's
//! // integration tests (`tests/it/derive.rs`) compile states like this one.
//! use dashflow::{GraphState, Message};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
//! struct Research {
//!     /// Overwritten by each update that sets it.
//!     topic: String,
//!     #[reduce(append)]
//!     findings: Vec<String>,
//!     #[reduce(add)]
//!     tokens: u64,
//!     #[reduce(messages)]
//!     messages: Vec<Message>,
//! }
//!
//! let mut state = Research::default();
//! state.apply(ResearchUpdate::default().topic("rust").findings(vec!["fast".to_owned()]));
//! state.apply(ResearchUpdate::default().findings(vec!["safe".to_owned()]).tokens(7_u64));
//! assert_eq!(state.findings, ["fast", "safe"]);
//! ```
//!
//! # Attributes
//!
//! On a field, `#[reduce(KIND)]` picks how an update of that field folds into the state; the
//! built-in kinds call the function of the same name in `dashflow_graph::reducers`:
//!
//! | Field attribute              | Field type                  | Folding `new` into `acc`          |
//! |------------------------------|-----------------------------|-----------------------------------|
//! | none, or `#[reduce(overwrite)]` | any                      | `acc = new`; two writers in one step conflict |
//! | `#[reduce(append)]`          | `Vec`, `VecDeque`, `String`, ... | `acc.extend(new)`            |
//! | `#[reduce(add)]`, `#[reduce(sum)]` | `AddAssign` numbers   | `acc += new`                      |
//! | `#[reduce(max)]`             | `PartialOrd`                | keeps the larger                  |
//! | `#[reduce(min)]`             | `PartialOrd`                | keeps the smaller                 |
//! | `#[reduce(union)]`           | `HashSet`, `BTreeSet`, ...  | inserts the new elements          |
//! | `#[reduce(merge)]`           | `HashMap`, `BTreeMap`, ...  | inserts the new entries; new values win |
//! | `#[reduce(messages)]`        | `Vec<M: MessageLike>`       | appends; a message with a known id replaces it in place |
//! | `#[reduce(with = path)]`     | any `T`                     | calls `path(&mut acc, new)`, a `fn(&mut T, T)` |
//!
//! A reducer must be associative: the executor merges the updates of one step before applying
//! them, and relies on that giving the same state as applying them one by one.
//!
//! On the struct, `#[graph_state(...)]` takes
//!
//! | Container attribute                  | Effect                                           |
//! |--------------------------------------|--------------------------------------------------|
//! | `update = "Name"`                    | names the update struct `Name` instead of `{State}Update` |
//! | `update_derive(Debug, PartialEq)`    | the update's derives besides the four it always has; default `Debug`, `update_derive()` for none |
//! | `whole`                              | no update struct: `type Update = Self`, every update replaces the whole state (like `whole_state!`); allows no other attribute |
//!
//! # Generic states
//!
//! A generic state gets an equally generic update. The impls carry where clauses requiring of
//! the concrete types what `GraphState` and the built-in reducers need, so they exist exactly
//! for the parameters that satisfy them. A custom `with` reducer's own bounds are not known to
//! the derive: state them in the struct's where clause, which is copied onto everything.
//!
//! # Paths
//!
//! Generated code names the graph crate as `::dashflow_graph` (or its renamed name) when the
//! deriving crate depends on `dashflow-graph`, and otherwise as `::dashflow::__private::graph` through the
//! facade, so users of either never add a dependency for the derive's sake. Serde is reached
//! through the graph crate's re-export, so deriving needs no `serde` dependency either (the
//! state's own `Serialize`/`Deserialize` derives still do).

mod attr;
mod expand;
mod path;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `GraphState` and `MergeableState` for a struct with named fields, generating its
/// update struct; see the [crate docs](crate) for the attributes.
#[proc_macro_derive(GraphState, attributes(reduce, graph_state))]
pub fn derive_graph_state(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

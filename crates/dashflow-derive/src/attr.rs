//! Parsing of `#[graph_state(...)]` and `#[reduce(...)]` into the model that codegen reads.
//!
//! Every check reports into [`Errors`] instead of returning at the first problem, so a user
//! who got three attributes wrong sees three errors from one build.

use proc_macro2::Span;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, ExprPath, Ident, LitStr, Meta, Path, Token};

/// The reducer kinds, as listed in error messages.
pub(crate) const VALID_KINDS: &str = "`overwrite`, `append`, `add` (alias `sum`), `max`, `min`, \
                                      `union`, `merge`, `messages`, or `with = path::to::reducer`";

/// Accepted spellings of the built-in reducers, each with the function in
/// `dashflow_graph::reducers` that implements it.
const BUILTINS: &[(&str, &str)] = &[
    ("append", "append"),
    ("add", "add"),
    ("sum", "add"),
    ("max", "max"),
    ("min", "min"),
    ("union", "union"),
    ("merge", "merge"),
    ("messages", "messages"),
];

/// Traits the update always derives, so `update_derive(...)` must not list them again.
const ALWAYS_DERIVED: &[&str] = &["Clone", "Default", "Serialize", "Deserialize"];

/// Collects errors so that all of them are reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The container attributes, `#[graph_state(...)]` on the struct.
#[derive(Default)]
pub(crate) struct Container {
    /// `update = "Name"`: the name of the generated update struct.
    pub(crate) update: Option<Ident>,
    /// `update_derive(...)`: derives replacing the default extra list (`Debug`).
    pub(crate) update_derive: Option<Vec<Path>>,
    /// `whole`: the update is the state itself.
    pub(crate) whole: bool,
}

/// How a field folds its update into the state.
pub(crate) enum Reducer {
    /// The update replaces the value.
    Overwrite,
    /// A function of `dashflow_graph::reducers`; `span` is that of the kind as written.
    Builtin { function: &'static str, span: Span },
    /// A user function `fn(&mut T, T)`.
    With(ExprPath),
}

/// A parsed `#[reduce(...)]` attribute.
pub(crate) struct ReduceAttr<'a> {
    pub(crate) reducer: Reducer,
    /// The attribute itself, for errors about it as a whole.
    pub(crate) attr: &'a Attribute,
}

/// Parses the attributes of the struct itself.
pub(crate) fn parse_container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut container = Container::default();
    // Where `whole` and the first other key were written, to reject the two together.
    let mut whole_span = None;
    let mut other_span = None;
    for attr in attrs {
        if attr.path().is_ident("reduce") {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[reduce(...)]` goes on a field; on the struct use `#[graph_state(...)]`",
            ));
            continue;
        }
        if !attr.path().is_ident("graph_state") {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key_span = meta.path.span();
            if meta.path.is_ident("update") {
                if container.update.is_some() {
                    return Err(meta.error("duplicate `update` in `#[graph_state(...)]`"));
                }
                container.update = Some(parse_update_name(meta.value()?)?);
                other_span.get_or_insert(key_span);
            } else if meta.path.is_ident("update_derive") {
                if container.update_derive.is_some() {
                    return Err(meta.error("duplicate `update_derive` in `#[graph_state(...)]`"));
                }
                if !meta.input.peek(syn::token::Paren) {
                    return Err(meta.error(
                        "expected a list of derives: `update_derive(Debug, PartialEq)`, \
                         or `update_derive()` for none",
                    ));
                }
                let content;
                syn::parenthesized!(content in meta.input);
                let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
                for path in &paths {
                    let last = path.segments.last().map(|segment| segment.ident.to_string());
                    if let Some(name) = last.filter(|name| ALWAYS_DERIVED.contains(&name.as_str())) {
                        errors.push(syn::Error::new_spanned(
                            path,
                            format!(
                                "the update always derives `{name}`; `update_derive(...)` lists \
                                 only the extra derives (default: `Debug`)"
                            ),
                        ));
                    }
                }
                container.update_derive = Some(paths.into_iter().collect());
                other_span.get_or_insert(key_span);
            } else if meta.path.is_ident("whole") {
                if container.whole {
                    return Err(meta.error("duplicate `whole` in `#[graph_state(...)]`"));
                }
                container.whole = true;
                whole_span = Some(key_span);
            } else {
                return Err(meta.error(
                    "unknown `graph_state` attribute; expected `update = \"Name\"`, \
                     `update_derive(...)` or `whole`",
                ));
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
    if let (Some(span), Some(_)) = (whole_span, other_span) {
        errors.push(syn::Error::new(
            span,
            "`whole` cannot be combined with other `graph_state` attributes: with `whole` the \
             update is the state type itself, so there is no update struct to name or derive on",
        ));
    }
    container
}

/// Parses the value of `update = ...`, a string (as documented) or a bare identifier.
fn parse_update_name(input: ParseStream<'_>) -> syn::Result<Ident> {
    const EXPECTED: &str = "expected the name of the update struct: `update = \"StateUpdate\"`";
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse::<Ident>().map_err(|_| syn::Error::new(lit.span(), EXPECTED))
    } else {
        input.parse::<Ident>().map_err(|error| syn::Error::new(error.span(), EXPECTED))
    }
}

/// Parses the attributes of one field: its `#[reduce(...)]`, if any.
pub(crate) fn parse_field<'a>(attrs: &'a [Attribute], errors: &mut Errors) -> Option<ReduceAttr<'a>> {
    let mut found: Option<ReduceAttr<'a>> = None;
    for attr in attrs {
        if attr.path().is_ident("graph_state") {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[graph_state(...)]` goes on the struct; on a field use `#[reduce(...)]`",
            ));
            continue;
        }
        if !attr.path().is_ident("reduce") {
            continue;
        }
        let parsed = match &attr.meta {
            Meta::List(list) => list.parse_args_with(parse_reducer),
            Meta::Path(_) | Meta::NameValue(_) => Err(syn::Error::new_spanned(
                attr,
                format!("expected `#[reduce(KIND)]` where KIND is one of {VALID_KINDS}"),
            )),
        };
        match parsed {
            // A well-formed second reducer: name the attribute itself.
            Ok(_) if found.is_some() => {
                errors
                    .push(syn::Error::new_spanned(attr, "duplicate `#[reduce(...)]`: a field has exactly one reducer"));
            }
            Ok(reducer) => found = Some(ReduceAttr { reducer, attr }),
            Err(error) => errors.push(error),
        }
    }
    found
}

/// Parses the inside of `#[reduce(...)]`.
fn parse_reducer(input: ParseStream<'_>) -> syn::Result<Reducer> {
    if input.is_empty() {
        return Err(input.error(format!("expected a reducer kind: one of {VALID_KINDS}")));
    }
    let kind: Ident = input
        .parse()
        .map_err(|error| syn::Error::new(error.span(), format!("expected a reducer kind: one of {VALID_KINDS}")))?;
    let reducer = if kind == "with" {
        parse_with(input, &kind)?
    } else if kind == "overwrite" {
        Reducer::Overwrite
    } else if let Some((_, function)) = BUILTINS.iter().find(|(name, _)| kind == name) {
        Reducer::Builtin { function, span: kind.span() }
    } else {
        return Err(syn::Error::new(
            kind.span(),
            format!("unknown reducer kind `{kind}`; expected one of {VALID_KINDS}"),
        ));
    };
    if !input.is_empty() {
        return Err(input.error("unexpected tokens after the reducer: `#[reduce(...)]` takes exactly one kind"));
    }
    Ok(reducer)
}

/// Parses `= path` after `with`; the path may also be given as a string, as in serde.
fn parse_with(input: ParseStream<'_>, with: &Ident) -> syn::Result<Reducer> {
    const EXPECTED: &str = "expected `with = path::to::reducer`, a function `fn(&mut T, T)`";
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(with.span(), EXPECTED));
    }
    input.parse::<Token![=]>()?;
    let path = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse::<ExprPath>().map_err(|_| syn::Error::new(lit.span(), EXPECTED))?
    } else {
        input.parse::<ExprPath>().map_err(|error| syn::Error::new(error.span(), EXPECTED))?
    };
    Ok(Reducer::With(path))
}

//! Code generation: the update struct, its builder methods and the two trait impls.
//!
//! Generated code names everything by absolute path (`::core::...`, the graph crate's path from
//! [`graph_crate`]) so that it means the same in any user module, and binds its local variables
//! with mixed-site hygiene so that a user reducer path can never be shadowed by them.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, GenericArgument, GenericParam, Generics, Ident, PathArguments, Type,
    Visibility, WherePredicate, parse_quote,
};

use crate::attr::{self, Container, Errors, Reducer};
use crate::path::graph_crate;

/// One field of the state, with what codegen needs to know about it.
struct Field<'a> {
    ident: &'a Ident,
    vis: &'a Visibility,
    ty: &'a Type,
    /// `#[cfg(...)]` attributes, repeated on everything generated for the field.
    cfgs: Vec<&'a Attribute>,
    reducer: Reducer,
}

impl Field<'_> {
    /// The field's name as users write it in strings (`r#type` is reported as `type`).
    fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}

/// Expands `#[derive(GraphState)]` on `input`.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let named = named_fields(input)?;
    let mut errors = Errors::default();
    let container = attr::parse_container(&input.attrs, &mut errors);
    let mut fields = Vec::with_capacity(named.len());
    for field in named {
        let reduce = attr::parse_field(&field.attrs, &mut errors);
        if let (true, Some(reduce)) = (container.whole, &reduce) {
            errors.push(syn::Error::new_spanned(
                reduce.attr,
                "`#[reduce(...)]` has no effect with `#[graph_state(whole)]`, where every update \
                 replaces the whole state; remove one of the two",
            ));
        }
        // Fields of `Fields::Named` always have an identifier.
        let Some(ident) = &field.ident else { continue };
        fields.push(Field {
            ident,
            vis: &field.vis,
            ty: &field.ty,
            cfgs: field.attrs.iter().filter(|attr| attr.path().is_ident("cfg")).collect(),
            reducer: reduce.map_or(Reducer::Overwrite, |reduce| reduce.reducer),
        });
    }
    errors.finish()?;

    let krate = graph_crate();
    let described = describe_state(input, &container, &fields);
    let expanded = if container.whole {
        expand_whole(input, &krate, &described)
    } else {
        expand_fields(input, &container, &fields, &krate, &described)
    };
    Ok(expanded)
}

/// `GraphState::REDUCERS` and `GraphState::DECLARATION`: how each field folds updates (part of
/// the checkpoint fingerprint, since a stored update means something else under another
/// reducer), and the declaration as written (the fingerprint of a state whose shape cannot be
/// traced). Docs and other attributes do not count.
fn describe_state(input: &DeriveInput, container: &attr::Container, fields: &[Field<'_>]) -> TokenStream {
    let mut reducers = Vec::new();
    let mut declaration = format!("{}{}", input.ident, input.generics.to_token_stream());
    for field in fields {
        let reducer = match &field.reducer {
            _ if container.whole => "whole".to_owned(),
            Reducer::Overwrite => "overwrite".to_owned(),
            Reducer::Builtin { function, .. } => (*function).to_owned(),
            Reducer::With(path) => path.to_token_stream().to_string(),
        };
        reducers.push(format!("{}:{reducer}", field.name()));
        declaration.push_str(&format!(";{}:{}:{reducer}", field.name(), field.ty.to_token_stream()));
    }
    let reducers = reducers.join(";");
    quote! {
        const REDUCERS: &'static str = #reducers;
        const DECLARATION: &'static str = #declaration;
    }
}

/// The named fields of `input`, or an error pointing at an input that has none.
fn named_fields(input: &DeriveInput) -> syn::Result<Vec<&syn::Field>> {
    let ident = &input.ident;
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => Ok(fields.named.iter().collect()),
            Fields::Unnamed(fields) => {
                let struct_token = data.struct_token;
                Err(syn::Error::new_spanned(
                    quote!(#struct_token #ident #fields),
                    "`#[derive(GraphState)]` needs a struct with named fields, not a tuple \
                     struct: field names name the update's builder methods and its conflicts",
                ))
            }
            Fields::Unit => {
                let struct_token = data.struct_token;
                Err(syn::Error::new_spanned(
                    quote!(#struct_token #ident),
                    "`#[derive(GraphState)]` needs a struct with named fields; a state without \
                     any is written `struct Name {}`",
                ))
            }
        },
        Data::Enum(data) => {
            let enum_token = data.enum_token;
            Err(syn::Error::new_spanned(
                quote!(#enum_token #ident),
                "`#[derive(GraphState)]` needs a struct with named fields, not an enum; for a \
                 state that nodes replace as a whole, use `dashflow_graph::whole_state!`",
            ))
        }
        Data::Union(data) => {
            let union_token = data.union_token;
            Err(syn::Error::new_spanned(
                quote!(#union_token #ident),
                "`#[derive(GraphState)]` needs a struct with named fields, not a union",
            ))
        }
    }
}

/// The bounds `GraphState` puts on the state and on its update.
fn state_bounds(krate: &TokenStream) -> TokenStream {
    quote! {
        ::core::clone::Clone
            + ::core::marker::Send
            + ::core::marker::Sync
            + #krate::__private::serde::Serialize
            + #krate::__private::serde::de::DeserializeOwned
            + 'static
    }
}

/// `#[graph_state(whole)]`: the update is a whole new state, as with `whole_state!`.
fn expand_whole(input: &DeriveInput, krate: &TokenStream, described: &TokenStream) -> TokenStream {
    let name = &input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let mut generics = input.generics.clone();
    if !generics.params.is_empty() {
        let bounds = state_bounds(krate);
        generics.make_where_clause().predicates.push(parse_quote!(#name #ty_generics: #bounds));
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::GraphState for #name #ty_generics #where_clause {
            type Update = Self;

            #described

            fn apply(&mut self, update: Self::Update) {
                *self = update;
            }
        }

        #[automatically_derived]
        impl #impl_generics #krate::MergeableState for #name #ty_generics #where_clause {
            fn merge(acc: &mut Self::Update, later: Self::Update) {
                *acc = later;
            }

            fn for_each_overwrite(
                _update: &Self::Update,
                mut f: impl ::core::ops::FnMut(&'static str),
            ) {
                f("<whole state>");
            }
        }
    }
}

/// The default mode: an update struct with one `Option` per field.
fn expand_fields(
    input: &DeriveInput,
    container: &Container,
    fields: &[Field<'_>],
    krate: &TokenStream,
    described: &TokenStream,
) -> TokenStream {
    let name = &input.ident;
    let update = container.update.clone().unwrap_or_else(|| format_ident!("{}Update", name));
    let generics = &input.generics;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let update_struct = update_struct(input, container, fields, &update, krate);

    let builders = fields.iter().map(|field| {
        let Field { ident, ty, cfgs, .. } = field;
        let doc = format!("Sets the update of `{}` ({}).", field.name(), describe(&field.reducer));
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #[must_use]
            pub fn #ident(mut self, value: impl ::core::convert::Into<#ty>) -> Self {
                self.#ident = ::core::option::Option::Some(value.into());
                self
            }
        }
    });
    let nones = fields.iter().map(|Field { ident, cfgs, .. }| quote!(#(#cfgs)* #ident: ::core::option::Option::None,));
    let checks =
        fields.iter().map(|Field { ident, cfgs, .. }| quote!(#(#cfgs)* { if self.#ident.is_some() { return false; } }));
    let empty_doc = format!("Whether this update sets no field, so that applying it leaves a [`{name}`] unchanged.");

    let trait_generics = trait_generics(input, fields, &update, krate);
    let (trait_impl_generics, _, trait_where_clause) = trait_generics.split_for_impl();

    // Local names bound by generated code; mixed-site so user paths cannot resolve to them.
    let value = Ident::new("value", Span::mixed_site());
    let acc_value = Ident::new("acc_value", Span::mixed_site());
    let slot = Ident::new("slot", Span::mixed_site());
    let some = quote!(::core::option::Option::Some);

    let applies = fields.iter().map(|field| {
        let Field { ident, cfgs, .. } = field;
        let fold = match reducer_fn(&field.reducer, krate) {
            None => quote!(self.#ident = #value;),
            Some((reducer, span)) => {
                let place = quote!(&mut self.#ident);
                let value = located(&value, span);
                quote_spanned!(span=> #reducer(#place, #value);)
            }
        };
        quote!(#(#cfgs)* { if let #some(#value) = update.#ident { #fold } })
    });
    let merges = fields.iter().map(|field| {
        let Field { ident, cfgs, .. } = field;
        let fold = match reducer_fn(&field.reducer, krate) {
            None => quote!(acc.#ident = #some(#value);),
            Some((reducer, span)) => {
                let (acc_value, value) = (located(&acc_value, span), located(&value, span));
                let call = quote_spanned!(span=> #reducer(#acc_value, #value));
                quote! {
                    match &mut acc.#ident {
                        #some(#acc_value) => #call,
                        #slot => *#slot = #some(#value),
                    }
                }
            }
        };
        quote!(#(#cfgs)* { if let #some(#value) = later.#ident { #fold } })
    });
    let overwrites: Vec<_> = fields
        .iter()
        .filter(|field| matches!(field.reducer, Reducer::Overwrite))
        .map(|field| {
            let Field { ident, cfgs, .. } = field;
            let name = field.name();
            quote!(#(#cfgs)* { if update.#ident.is_some() { f(#name); } })
        })
        .collect();

    // Parameters a body does not read get a leading underscore, to keep user builds
    // warning-free for states without (overwrite) fields.
    let (update_param, acc_param, later_param) = if fields.is_empty() {
        (quote!(_update), quote!(_acc), quote!(_later))
    } else {
        (quote!(update), quote!(acc), quote!(later))
    };
    let (overwrite_update_param, f_param) =
        if overwrites.is_empty() { (quote!(_update), quote!(_f)) } else { (quote!(update), quote!(mut f)) };

    quote! {
        #update_struct

        #[automatically_derived]
        impl #impl_generics ::core::default::Default for #update #ty_generics #where_clause {
            fn default() -> Self {
                Self { #(#nones)* }
            }
        }

        // Builder methods the user did not write must not trip `dead_code` in their crate.
        #[automatically_derived]
        #[allow(dead_code)]
        impl #impl_generics #update #ty_generics #where_clause {
            #(#builders)*

            #[doc = #empty_doc]
            #[must_use]
            pub fn is_empty(&self) -> bool {
                #(#checks)*
                true
            }
        }

        #[automatically_derived]
        impl #trait_impl_generics #krate::GraphState for #name #ty_generics #trait_where_clause {
            type Update = #update #ty_generics;

            #described

            fn apply(&mut self, #update_param: Self::Update) {
                #(#applies)*
            }
        }

        #[automatically_derived]
        impl #trait_impl_generics #krate::MergeableState for #name #ty_generics
            #trait_where_clause
        {
            fn merge(#acc_param: &mut Self::Update, #later_param: Self::Update) {
                #(#merges)*
            }

            fn for_each_overwrite(
                #overwrite_update_param: &Self::Update,
                #f_param: impl ::core::ops::FnMut(&'static str),
            ) {
                #(#overwrites)*
            }
        }
    }
}

/// The update struct's definition.
fn update_struct(
    input: &DeriveInput,
    container: &Container,
    fields: &[Field<'_>],
    update: &Ident,
    krate: &TokenStream,
) -> TokenStream {
    let name = &input.ident;
    let vis = &input.vis;
    let generics = &input.generics;
    let where_clause = &generics.where_clause;
    let serde = quote!(#krate::__private::serde);
    // `#[serde(crate = "...")]` takes the path as a string.
    let serde_crate = serde.to_string();
    // `Debug` is written by hand (below) so that it shows only the fields an update sets.
    let (debug, extra_derives): (Vec<_>, Vec<_>) = match &container.update_derive {
        Some(paths) => paths.iter().partition(|path| path.segments.last().is_some_and(|last| last.ident == "Debug")),
        None => (vec![], vec![]),
    };
    let extra_derives: Vec<TokenStream> = extra_derives.into_iter().map(ToTokens::to_token_stream).collect();
    let wants_debug = container.update_derive.is_none() || !debug.is_empty();
    let doc = format!(
        "A partial update of [`{name}`], as returned by one node; generated by \
         `#[derive(GraphState)]`.\n\nEach field is `None` (unchanged) or the value to fold into \
         the state with that field's reducer. Build one with `{update}::default()` and the \
         methods named after the fields."
    );
    let update_fields = fields.iter().map(|field| {
        let Field { ident, vis, ty, cfgs, .. } = field;
        let doc = format!("Update of `{}`; {}.", field.name(), describe(&field.reducer));
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #vis #ident: ::core::option::Option<#ty>,
        }
    });
    // `Default` is implemented by hand: deriving it would require `T: Default` of every type
    // parameter although an all-`None` update needs none. No `skip_serializing_if`: updates
    // are stored with non-self-describing formats (bincode) too.
    let debug_impl = wants_debug.then(|| update_debug(input, fields, update));
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, #serde::Serialize, #serde::Deserialize, #(#extra_derives),*)]
        #[serde(crate = #serde_crate)]
        #vis struct #update #generics #where_clause {
            #(#update_fields)*
        }

        #debug_impl
    }
}

/// `Debug` of the update that shows only the fields it sets, unwrapped:
/// `TicketUpdate { findings: ["late"] }`, not a list of `None`s.
fn update_debug(input: &DeriveInput, fields: &[Field<'_>], update: &Ident) -> TokenStream {
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let predicates = where_clause.map(|clause| clause.predicates.iter().collect::<Vec<_>>()).unwrap_or_default();
    let bounds = fields.iter().map(|Field { ty, .. }| quote!(#ty: ::core::fmt::Debug));
    let entries = fields.iter().map(|field| {
        let Field { ident, cfgs, .. } = field;
        let name = field.name();
        quote! {
            #(#cfgs)*
            if let ::core::option::Option::Some(value) = &self.#ident {
                out.field(#name, value);
            }
        }
    });
    let update_name = update.to_string();
    quote! {
        impl #impl_generics ::core::fmt::Debug for #update #ty_generics
        where
            #(#predicates,)*
            #(#bounds,)*
        {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                let mut out = f.debug_struct(#update_name);
                #(#entries)*
                out.finish()
            }
        }
    }
}

/// The generics of the trait impls: the struct's, plus for a generic struct the bounds that
/// `GraphState` and the reducers need, so that the impls hold exactly when those do.
fn trait_generics(input: &DeriveInput, fields: &[Field<'_>], update: &Ident, krate: &TokenStream) -> Generics {
    let mut generics = input.generics.clone();
    if generics.params.is_empty() {
        // Without parameters the bounds are fixed facts; leaving them out lets rustc report a
        // missing `Clone` or `Serialize` against the trait rather than a where clause.
        return generics;
    }
    let name = &input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let params = param_names(&input.generics);
    let bounds = state_bounds(krate);
    let mut predicates: Vec<WherePredicate> =
        vec![parse_quote!(#name #ty_generics: #bounds), parse_quote!(#update #ty_generics: #bounds)];
    predicates.extend(
        fields
            .iter()
            .filter(|field| mentions(field.ty.to_token_stream(), &params))
            .filter_map(|field| reducer_bound(field, krate)),
    );
    generics.make_where_clause().predicates.extend(predicates);
    generics
}

/// The names of the type, const and lifetime parameters.
fn param_names(generics: &Generics) -> Vec<Ident> {
    generics
        .params
        .iter()
        .map(|param| match param {
            GenericParam::Type(param) => param.ident.clone(),
            GenericParam::Const(param) => param.ident.clone(),
            GenericParam::Lifetime(param) => param.lifetime.ident.clone(),
        })
        .collect()
}

/// Whether `tokens` contain one of `names`; a cheap over-approximation of "the type depends on
/// a parameter", which at worst adds a bound that holds anyway.
fn mentions(tokens: TokenStream, names: &[Ident]) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => names.contains(&ident),
        TokenTree::Group(group) => mentions(group.stream(), names),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// The bound a built-in reducer needs of a field whose type depends on a parameter, spanned at
/// the reducer kind so that an unmet bound points at the attribute.
fn reducer_bound(field: &Field<'_>, krate: &TokenStream) -> Option<WherePredicate> {
    let Reducer::Builtin { function, span } = &field.reducer else {
        return None;
    };
    let ty = field.ty;
    let bound = match *function {
        "append" | "union" | "merge" => quote_spanned! {*span=>
            #ty: ::core::iter::Extend<<#ty as ::core::iter::IntoIterator>::Item>
                + ::core::iter::IntoIterator
        },
        "add" => quote_spanned!(*span=> #ty: ::core::ops::AddAssign),
        "max" | "min" => quote_spanned!(*span=> #ty: ::core::cmp::PartialOrd),
        "messages" => {
            // `messages` takes a `Vec<M>`; any other type fails at the call with a clear error.
            let item = vec_item(ty)?;
            quote_spanned!(*span=> #item: #krate::message::MessageLike)
        }
        _ => return None,
    };
    Some(parse_quote!(#bound))
}

/// `M` if `ty` is written `Vec<M>` (by any path ending in `Vec`).
fn vec_item(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(item) if args.args.len() == 1 => Some(item),
        _ => None,
    }
}

/// The function that folds the field, or `None` for overwrite, with the span of its name in
/// the attribute: calls get that span, so that type errors point at the attribute rather than at
/// the derive.
fn reducer_fn(reducer: &Reducer, krate: &TokenStream) -> Option<(TokenStream, Span)> {
    match reducer {
        Reducer::Overwrite => None,
        Reducer::Builtin { function, span } => {
            let krate = respan(krate.clone(), *span);
            let function = Ident::new(function, *span);
            Some((quote_spanned!(*span=> #krate::reducers::#function), *span))
        }
        Reducer::With(path) => Some((path.to_token_stream(), path.span())),
    }
}

/// How the field's reducer folds an update, for generated docs ("Update of `x`; {describe}.").
fn describe(reducer: &Reducer) -> String {
    match reducer {
        Reducer::Overwrite => "replaces the current value".to_owned(),
        Reducer::Builtin { function, .. } => format!("applied with the `{function}` reducer"),
        Reducer::With(path) => {
            let leading = if path.path.leading_colon.is_some() { "::" } else { "" };
            let segments: Vec<String> = path.path.segments.iter().map(|segment| segment.ident.to_string()).collect();
            format!("applied with the custom reducer `{leading}{}`", segments.join("::"))
        }
    }
}

/// `ident` with its hygiene but reported at `span`.
fn located(ident: &Ident, span: Span) -> Ident {
    Ident::new(&ident.to_string(), ident.span().located_at(span))
}

/// `tokens` (a path, without groups) reported at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

#![allow(dead_code, reason = "the types here are only traced, never read")]

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

fn schema_of<T: serde::de::DeserializeOwned>() -> Schema {
    Schema::builder().root::<T>().unwrap().finish("")
}

fn fingerprint<T: serde::de::DeserializeOwned>() -> u64 {
    schema_of::<T>().fingerprint()
}

mod v1 {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct State {
        pub(super) items: Vec<Item>,
        pub(super) last: Option<Outcome>,
        pub(super) scores: HashMap<String, u32>,
    }

    #[derive(Deserialize)]
    pub(super) struct Item {
        pub(super) name: String,
        pub(super) tag: String,
    }

    #[derive(Deserialize)]
    pub(super) enum Outcome {
        Done,
        Failed { reason: String },
    }
}

mod swapped {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct State {
        pub(super) items: Vec<Item>,
        pub(super) last: Option<super::v1::Outcome>,
        pub(super) scores: HashMap<String, u32>,
    }

    #[derive(Deserialize)]
    pub(super) struct Item {
        pub(super) tag: String,
        pub(super) name: String,
    }
}

mod variant_changed {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct State {
        pub(super) items: Vec<super::v1::Item>,
        pub(super) last: Option<Outcome>,
        pub(super) scores: HashMap<String, u32>,
    }

    #[derive(Deserialize)]
    pub(super) enum Outcome {
        Done,
        Failed { reason: String, code: u16 },
    }
}

mod map_changed {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct State {
        pub(super) items: Vec<super::v1::Item>,
        pub(super) last: Option<super::v1::Outcome>,
        pub(super) scores: HashMap<String, u64>,
    }
}

mod renamed {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Renamed {
        pub(super) items: Vec<Entry>,
        pub(super) last: Option<super::v1::Outcome>,
        pub(super) scores: HashMap<String, u32>,
    }

    #[derive(Deserialize)]
    pub(super) struct Entry {
        pub(super) name: String,
        pub(super) tag: String,
    }
}

#[test]
fn the_whole_nested_shape_is_traced() {
    let schema = schema_of::<v1::State>();
    let Shape::Named(root) = schema.roots[0] else { panic!("{schema:?}") };
    let TypeShape::Struct(fields) = &schema.types[root] else { panic!("{schema:?}") };
    let described: Vec<String> =
        fields.iter().map(|(name, shape)| format!("{name}: {}", schema.describe(shape))).collect();
    assert_eq!(described, ["items: Vec<Item>", "last: Option<Outcome>", "scores: Map<String, u32>"]);
    let outcome = schema.names.iter().position(|name| name == "Outcome").unwrap();
    let TypeShape::Enum(variants) = &schema.types[outcome] else { panic!("{schema:?}") };
    assert_eq!(variants[0], ("Done".to_owned(), Variant::Unit));
    assert_eq!(variants[1], ("Failed".to_owned(), Variant::Struct(vec![("reason".to_owned(), Shape::Str)])));
}

#[test]
fn a_change_in_a_nested_type_changes_the_fingerprint() {
    let base = fingerprint::<v1::State>();
    assert_eq!(base, fingerprint::<v1::State>(), "tracing is deterministic");
    assert_ne!(base, fingerprint::<swapped::State>(), "fields swapped in a struct inside a Vec");
    assert_ne!(base, fingerprint::<variant_changed::State>(), "a variant changed inside an Option");
    assert_ne!(base, fingerprint::<map_changed::State>(), "a map's value type changed");
}

#[test]
fn renaming_a_type_keeps_the_fingerprint() {
    assert_eq!(fingerprint::<v1::State>(), fingerprint::<renamed::Renamed>());
}

#[test]
fn notes_are_part_of_the_fingerprint() {
    let plain = Schema::builder().root::<v1::State>().unwrap().finish("items:append");
    let other = Schema::builder().root::<v1::State>().unwrap().finish("items:overwrite");
    assert_ne!(plain.fingerprint(), other.fingerprint());
}

#[derive(Deserialize)]
struct Tree {
    label: String,
    children: Vec<Tree>,
    parent: Option<Box<Tree>>,
}

#[derive(Deserialize)]
enum List {
    Cons(u8, Box<List>),
    Nil,
}

#[derive(Deserialize)]
#[allow(dead_code, reason = "only traced")]
enum Expr {
    Add(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Lit(i64),
    Var { name: String },
}

#[test]
fn recursive_types_are_traced_by_reference() {
    let schema = schema_of::<Tree>();
    let Shape::Named(root) = schema.roots[0] else { panic!() };
    assert_eq!(
        schema.types[root],
        TypeShape::Struct(vec![
            ("label".into(), Shape::Str),
            ("children".into(), Shape::Seq(Box::new(Shape::Named(root)))),
            ("parent".into(), Shape::Option(Box::new(Shape::Named(root)))),
        ])
    );
    let schema = schema_of::<List>();
    let Shape::Named(root) = schema.roots[0] else { panic!() };
    let TypeShape::Enum(variants) = &schema.types[root] else { panic!() };
    assert_eq!(variants[0].1, Variant::Tuple(vec![Shape::U8, Shape::Named(root)]));
    assert_eq!(variants[1].1, Variant::Unit);
    let schema = schema_of::<Expr>();
    let TypeShape::Enum(variants) = &schema.types[0] else { panic!() };
    assert_eq!(variants.len(), 4);
    assert_eq!(variants[3].1, Variant::Struct(vec![("name".into(), Shape::Str)]));
}

#[derive(Deserialize)]
struct Endless(#[allow(dead_code, reason = "only traced")] Box<Endless>);

#[test]
fn a_recursion_without_an_end_is_an_error_not_a_stack_overflow() {
    let error = Schema::builder().root::<Endless>().unwrap_err();
    assert!(error.detail.contains("deeper than"), "{error}");
}

#[derive(Deserialize)]
struct Generic<T> {
    #[allow(dead_code, reason = "only traced")]
    value: T,
}

#[derive(Deserialize)]
struct TwoInstances {
    #[allow(dead_code, reason = "only traced")]
    small: Generic<u8>,
    #[allow(dead_code, reason = "only traced")]
    text: Generic<String>,
}

#[test]
fn instances_of_one_generic_type_are_told_apart() {
    let schema = schema_of::<TwoInstances>();
    let Shape::Named(root) = schema.roots[0] else { panic!() };
    let TypeShape::Struct(fields) = &schema.types[root] else { panic!() };
    let described: Vec<String> = fields.iter().map(|(_, shape)| schema.describe(shape)).collect();
    assert_eq!(described, ["Generic<u8>", "Generic<String>"]);
    let (Shape::Named(small), Shape::Named(text)) = (&fields[0].1, &fields[1].1) else { panic!() };
    assert_ne!(schema.types[*small], schema.types[*text]);
}

#[derive(Deserialize)]
struct WithJson {
    #[allow(dead_code, reason = "only traced")]
    data: serde_json::Value,
    #[allow(dead_code, reason = "only traced")]
    extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code, reason = "only traced")]
enum Untagged {
    Number(u64),
    Text(String),
}

#[test]
fn self_describing_values_are_opaque_and_untagged_enums_fail() {
    let schema = schema_of::<WithJson>();
    let TypeShape::Struct(fields) = &schema.types[0] else { panic!() };
    assert_eq!(fields[0].1, Shape::Opaque);
    assert_eq!(fields[1].1, Shape::Map(Box::new(Shape::Str), Box::new(Shape::Opaque)));
    let error = Schema::builder().root::<Untagged>().unwrap_err();
    assert!(error.type_name.contains("Untagged"), "{error}");
}

#[test]
fn several_roots_share_their_types() {
    let schema = Schema::builder().root::<v1::State>().unwrap().root::<Vec<v1::Item>>().unwrap().finish("");
    assert_eq!(schema.roots.len(), 2);
    let item = schema.names.iter().position(|name| name == "Item").unwrap();
    assert_eq!(schema.roots[1], Shape::Seq(Box::new(Shape::Named(item))));
    assert_eq!(schema.names.iter().filter(|name| *name == "Item").count(), 1);
}

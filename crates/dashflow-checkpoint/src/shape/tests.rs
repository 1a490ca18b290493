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

    #[derive(Debug, PartialEq, Deserialize)]
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
    assert!(error.to_string().contains("deeper than"), "{error}");
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
    assert!(matches!(&error, crate::CheckpointError::Untraceable { type_name, .. } if type_name.contains("Untagged")));
}

#[test]
fn several_roots_share_their_types() {
    let schema = Schema::builder().root::<v1::State>().unwrap().root::<Vec<v1::Item>>().unwrap().finish("");
    assert_eq!(schema.roots.len(), 2);
    let item = schema.names.iter().position(|name| name == "Item").unwrap();
    assert_eq!(schema.roots[1], Shape::Seq(Box::new(Shape::Named(item))));
    assert_eq!(schema.names.iter().filter(|name| *name == "Item").count(), 1);
}

mod v2 {
    use std::collections::HashMap;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Deserialize)]
    pub(super) struct State {
        pub(super) items: Vec<Item>,
        pub(super) last: Option<super::v1::Outcome>,
        pub(super) scores: HashMap<String, u32>,
        pub(super) note: Option<String>,
        #[serde(default)]
        pub(super) retries: u32,
    }

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    pub(super) struct Item {
        pub(super) name: String,
        pub(super) urgent: Option<bool>,
        pub(super) tag: String,
        #[serde(default)]
        pub(super) weight: u8,
    }
}

mod v1_out {
    use std::collections::HashMap;

    use serde::Serialize;

    #[derive(Serialize)]
    pub(super) struct State {
        pub(super) items: Vec<Item>,
        pub(super) last: Option<Outcome>,
        pub(super) scores: HashMap<String, u32>,
    }

    #[derive(Serialize)]
    pub(super) struct Item {
        pub(super) name: String,
        pub(super) tag: String,
    }

    #[derive(Serialize)]
    pub(super) enum Outcome {
        #[allow(dead_code, reason = "the variant index matters")]
        Done,
        Failed {
            reason: String,
        },
    }
}

fn v1_value() -> v1_out::State {
    v1_out::State {
        items: vec![
            v1_out::Item { name: "refund".into(), tag: "billing".into() },
            v1_out::Item { name: "reply".into(), tag: "mail".into() },
        ],
        last: Some(v1_out::Outcome::Failed { reason: "card declined".into() }),
        scores: [("urgency".to_owned(), 3)].into_iter().collect(),
    }
}

#[test]
fn a_payload_read_by_its_recorded_shape_fills_added_fields_with_their_defaults() {
    let old = schema_of::<v1::State>();
    for codec in [crate::Codec::Bincode, crate::Codec::Json] {
        let blob = crate::seal(codec, old.fingerprint(), &v1_value()).unwrap();
        let sealed = crate::unseal(&blob).unwrap();
        let value = old.decode_value(0, codec, sealed.payload).unwrap();
        let state: v2::State = serde_json::from_value(value).unwrap();
        assert_eq!(state.items[1], v2::Item { name: "reply".into(), urgent: None, tag: "mail".into(), weight: 0 });
        assert_eq!(state.scores["urgency"], 3);
        assert!(matches!(&state.last, Some(v1::Outcome::Failed { reason }) if reason == "card declined"));
        assert_eq!((state.note, state.retries), (None, 0));
    }
}

#[test]
fn added_fields_are_the_only_compatible_changes() {
    let old = schema_of::<v1::State>();
    let changes = schema_of::<v2::State>().changes_since(&old, 0);
    let described: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        described,
        [
            "field `items[].urgent` was added (an `Option`)",
            "field `items[].weight` was added",
            "field `note` was added (an `Option`)",
            "field `retries` was added",
        ]
    );
    assert!(changes.iter().all(Change::is_compatible));

    let described = |changes: Vec<Change>| changes.iter().map(ToString::to_string).collect::<Vec<_>>();
    let swapped = schema_of::<swapped::State>().changes_since(&old, 0);
    assert_eq!(
        described(swapped),
        ["the fields of `items[]` were reordered: name, tag in the checkpoint, tag, name in the state type"]
    );
    let variant = schema_of::<variant_changed::State>().changes_since(&old, 0);
    assert_eq!(described(variant), ["field `last::Failed.code` was added"]);
    let map = schema_of::<map_changed::State>().changes_since(&old, 0);
    assert_eq!(described(map), ["field `scores<value>`: u32 in the checkpoint, u64 in the state type"]);
    assert!(!map_changed_is_compatible());
}

fn map_changed_is_compatible() -> bool {
    schema_of::<map_changed::State>().changes_since(&schema_of::<v1::State>(), 0).iter().all(Change::is_compatible)
}

#[test]
fn reducer_changes_are_named() {
    let old = Schema::builder().root::<v1::State>().unwrap().finish("items:append;last:overwrite");
    let new = Schema::builder().root::<v1::State>().unwrap().finish("items:overwrite;last:overwrite");
    let changes = new.changes_since(&old, 0);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].to_string(),
        "field `items`: reducer `append` in the checkpoint, `overwrite` in the state type"
    );
    assert!(!changes[0].is_compatible());
}

/// Accepts only strings that look like an RFC 3339 time, as a timestamp type would.
fn rfc3339<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.len() >= 20 && text.ends_with('Z') { Ok(text) } else { Err(serde::de::Error::custom("not a time")) }
}

/// Accepts only JSON text, as the executor's interrupt values are stored.
fn json_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<serde_json::Value, D::Error> {
    let text = String::deserialize(deserializer)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}

#[derive(Deserialize)]
struct Checked {
    #[serde(deserialize_with = "rfc3339")]
    at: String,
    #[serde(deserialize_with = "json_text")]
    payload: serde_json::Value,
    id: [u8; 16],
}

#[test]
fn values_a_deserialize_checks_are_found_by_trying_candidates() {
    let schema = schema_of::<Checked>();
    let TypeShape::Struct(fields) = &schema.types[0] else { panic!("{schema:?}") };
    let shapes: Vec<&Shape> = fields.iter().map(|(_, shape)| shape).collect();
    assert_eq!(shapes[..2], [&Shape::Str, &Shape::Str]);
    assert_eq!(shapes[2], &Shape::Tuple(vec![Shape::U8; 16]));
}

#[derive(Deserialize)]
enum Outer {
    First { items: Vec<Inner> },
    Second(u8),
    Third,
}

#[derive(Deserialize)]
enum Inner {
    A,
    B(String),
}

#[test]
fn enums_nested_in_a_collection_of_a_variant_are_explored_whole() {
    let schema = schema_of::<Outer>();
    let inner = schema.names.iter().position(|name| name == "Inner").unwrap();
    let TypeShape::Enum(variants) = &schema.types[inner] else { panic!() };
    assert_eq!(variants[1].1, Variant::Newtype(Shape::Str));
}

/// Deterministic noise: xorshift64*.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes()[0]
        })
        .collect()
}

#[test]
fn any_payload_with_a_valid_checksum_reads_as_a_value_or_an_error_never_a_panic() {
    let schema = Schema::builder().root::<v1::State>().unwrap().root::<Tree>().unwrap().finish("");
    for seed in 0..3000_u64 {
        let payload = noise(seed, (seed % 97) as usize);
        for codec in [crate::Codec::Bincode, crate::Codec::Json] {
            for root in 0..2 {
                // Either outcome is fine; a panic or a huge allocation is not.
                let _ = schema.decode_value(root, codec, &payload);
            }
        }
        let mut blob = crate::seal(crate::Codec::Bincode, 1, &()).unwrap();
        blob.truncate(14);
        blob.extend_from_slice(&payload);
        let checksum = crc32c::crc32c(&blob);
        blob.extend_from_slice(&checksum.to_le_bytes());
        let _ = crate::open::<(String, Vec<u64>, Option<BTreeMap<String, u8>>)>(&blob, 1);
    }
}

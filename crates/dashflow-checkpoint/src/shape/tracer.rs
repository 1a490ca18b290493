//! The tracing deserializer: it answers every request of a type's `Deserialize` with a
//! placeholder and records what was asked for.
//!
//! Types are told apart by `std::any::type_name` of the value a visitor builds, so generic
//! instances (`Pair<u8>`, `Pair<String>`) and equal names in two modules stay apart. Each pass
//! deserializes the root once: a sequence yields one element, a map one entry, an `Option` is
//! `Some`, and an enum takes a variant not explored yet, so passes repeat until every variant
//! of every reachable enum is known. A type met again inside itself (recursion) is recorded by
//! reference and then built as a plain placeholder value: empty sequences and maps, `None`,
//! and for enums a unit variant when one is known.
//!
//! Placeholders of primitives are zero and empty at first. A `Deserialize` that checks its
//! value (a timestamp parsed from a string, JSON text, a 16-byte id) fails the pass; the last
//! primitive handed out then takes its next candidate (an RFC 3339 time, `null`, a nil UUID,
//! 16 zero bytes, ...) and the pass runs again.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

use super::{Schema, Shape, TypeShape, Variant};
use crate::CheckpointError;

/// Nesting deeper than this fails the trace instead of the stack.
const MAX_DEPTH: usize = 200;

/// Passes over one root before giving up on finding all enum variants.
const MAX_PASSES: usize = 4096;

/// Strings a checking `Deserialize` may accept, tried in turn.
const STRINGS: &[&str] = &[
    "",
    "null",
    "1970-01-01T00:00:00Z",
    "00000000-0000-0000-0000-000000000000",
    "0",
    "a",
    "1970-01-01",
    "00:00:00",
    "http://localhost/",
];

/// Byte buffers a checking `Deserialize` may accept, by length, tried in turn.
const BYTE_LENGTHS: &[usize] = &[0, 16, 32, 8, 4, 12, 20, 64];

/// What is known of a named type.
#[derive(Clone, Debug)]
enum Slot {
    /// A struct-like type: `None` until its first trace finished.
    Plain(Option<TypeShape>),
    /// An enum: each variant's shape once explored.
    Enum(Vec<(&'static str, Option<Variant>)>),
}

/// Traces roots into one [`Schema`].
#[derive(Debug, Default)]
pub struct SchemaBuilder {
    slots: Vec<Slot>,
    names: Vec<String>,
    keys: HashMap<&'static str, usize>,
    roots: Vec<Shape>,
    /// Types being traced in this pass, innermost last.
    stack: Vec<usize>,
    /// Above zero while building a placeholder value whose shape is not recorded.
    value_only: usize,
    /// How deep each enum is nested in placeholder building, to pick ever later variants.
    enum_nesting: HashMap<usize, usize>,
    depth: usize,
    /// Primitives handed out in this pass, and the candidate each ordinal gets.
    leaves: usize,
    choices: HashMap<usize, usize>,
    /// The last primitive handed out and how many candidates it has.
    last_leaf: Option<(usize, usize)>,
}

/// A failed trace, as the deserializer's error.
#[derive(Debug)]
struct Fail(String);

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fail {}

impl de::Error for Fail {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl SchemaBuilder {
    /// Traces `T` as the next root.
    pub fn root<T: DeserializeOwned>(mut self) -> Result<Self, CheckpointError> {
        let failed =
            |detail: String| CheckpointError::Untraceable { type_name: std::any::type_name::<T>().to_owned(), detail };
        let mut progress = self.explored();
        for _ in 0..MAX_PASSES {
            let mut shape = Shape::Unit;
            self.stack.clear();
            self.enum_nesting.clear();
            self.value_only = 0;
            self.depth = 0;
            self.leaves = 0;
            self.last_leaf = None;
            if let Err(fail) = T::deserialize(Tracer { builder: &mut self, out: &mut shape }) {
                // A primitive's value was refused: try its next candidate.
                match self.last_leaf {
                    Some((leaf, candidates)) if self.choices.get(&leaf).copied().unwrap_or(0) + 1 < candidates => {
                        *self.choices.entry(leaf).or_default() += 1;
                        continue;
                    }
                    _ => return Err(failed(fail.0)),
                }
            }
            let incomplete = self.incomplete(&shape);
            if incomplete.is_empty() {
                self.roots.push(shape);
                return Ok(self);
            }
            let explored = self.explored();
            if explored == progress {
                return Err(failed(format!("no pass reaches the variants of {}", incomplete.join(", "))));
            }
            progress = explored;
        }
        Err(failed("too many enum variants to explore".to_owned()))
    }

    /// The schema of every root traced, with `notes` (facts the shapes do not show).
    pub fn finish(self, notes: impl Into<String>) -> Schema {
        let types = self
            .slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Plain(shape) => shape.unwrap_or(TypeShape::Unit),
                Slot::Enum(variants) => TypeShape::Enum(
                    variants
                        .into_iter()
                        .map(|(name, variant)| (name.to_owned(), variant.unwrap_or(Variant::Unit)))
                        .collect(),
                ),
            })
            .collect();
        let mut schema = Schema { types, names: self.names, roots: self.roots, notes: notes.into() };
        schema.canonicalize();
        schema
    }

    /// How many variants and types are known: grows with every pass that learns something.
    fn explored(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Plain(shape) => usize::from(shape.is_some()),
                Slot::Enum(variants) => variants.iter().filter(|(_, variant)| variant.is_some()).count(),
            })
            .sum()
    }

    /// Names of the types reachable from `root` that still miss a variant.
    fn incomplete(&self, root: &Shape) -> Vec<String> {
        let mut missing = Vec::new();
        for index in self.reachable(root) {
            if let Slot::Enum(variants) = &self.slots[index]
                && variants.iter().any(|(_, variant)| variant.is_none())
            {
                missing.push(self.names[index].clone());
            }
        }
        missing
    }

    /// The named types `shape` reaches, itself included.
    fn reachable(&self, shape: &Shape) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut stack = vec![shape.clone()];
        while let Some(shape) = stack.pop() {
            let mut push = |child: &Shape| stack.push(child.clone());
            match &shape {
                Shape::Named(index) => {
                    if seen.insert(*index) {
                        match &self.slots[*index] {
                            Slot::Plain(Some(named)) => named.children(&mut |child| push(child)),
                            Slot::Plain(None) => {}
                            Slot::Enum(variants) => {
                                for (_, variant) in variants {
                                    if let Some(variant) = variant {
                                        TypeShape::Enum(vec![(String::new(), variant.clone())])
                                            .children(&mut |child| push(child));
                                    }
                                }
                            }
                        }
                    }
                }
                other => other.children(&mut |child| push(child)),
            }
        }
        seen
    }

    /// Whether type `index` reaches a type still missing something (so it must be explored
    /// again rather than built as a placeholder).
    fn needs_visit(&self, index: usize) -> bool {
        self.reaches_incomplete(&Shape::Named(index))
    }

    /// Whether `shape` reaches a type still missing something.
    fn reaches_incomplete(&self, shape: &Shape) -> bool {
        self.reachable(shape).into_iter().any(|index| match &self.slots[index] {
            Slot::Plain(shape) => shape.is_none(),
            Slot::Enum(variants) => variants.iter().any(|(_, variant)| variant.is_none()),
        })
    }

    /// The index of the type whose values `V` builds, registering it.
    fn index_of<V>(&mut self, slot: impl FnOnce() -> Slot) -> usize {
        let key = std::any::type_name::<V>();
        if let Some(index) = self.keys.get(key) {
            return *index;
        }
        let index = self.slots.len();
        self.slots.push(slot());
        self.names.push(short_name(key));
        self.keys.insert(key, index);
        index
    }
}

/// `a::b::Ticket<c::Item>` as `Ticket<Item>`.
fn short_name(path: &str) -> String {
    let mut out = String::new();
    let mut segment = String::new();
    for ch in path.chars() {
        match ch {
            ':' => segment.clear(),
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | ';' | '&' => {
                out.push_str(&segment);
                segment.clear();
                out.push(ch);
            }
            other => segment.push(other),
        }
    }
    out.push_str(&segment);
    out
}

/// One value being traced: `out` receives its shape (unless building a placeholder).
struct Tracer<'a> {
    builder: &'a mut SchemaBuilder,
    out: &'a mut Shape,
}

impl Tracer<'_> {
    /// The candidate the next primitive takes, of `candidates`.
    fn leaf(&mut self, candidates: usize) -> usize {
        let builder = &mut *self.builder;
        let ordinal = builder.leaves;
        builder.leaves += 1;
        builder.last_leaf = Some((ordinal, candidates));
        builder.choices.get(&ordinal).copied().unwrap_or(0).min(candidates - 1)
    }

    fn record(&mut self, shape: Shape) {
        if self.builder.value_only == 0 {
            *self.out = shape;
        }
    }

    fn enter(&mut self) -> Result<(), Fail> {
        self.builder.depth += 1;
        if self.builder.depth > MAX_DEPTH {
            return Err(Fail(format!(
                "values nest deeper than {MAX_DEPTH} levels; a recursive type needs a variant, `Option` or \
                 collection that ends it"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.builder.depth -= 1;
    }

    /// Builds a placeholder value of a type whose shape is known or being traced.
    fn placeholder<R>(&mut self, build: impl FnOnce(&mut SchemaBuilder) -> Result<R, Fail>) -> Result<R, Fail> {
        self.builder.value_only += 1;
        let result = build(self.builder);
        self.builder.value_only -= 1;
        result
    }
}

macro_rules! primitive {
    ($($method:ident => $shape:ident, $visit:ident($t:ident => $($value:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Fail> {
            self.record(Shape::$shape);
            let $t = &mut self;
            let _ = &$t;
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Fail;

    primitive! {
        deserialize_bool => Bool, visit_bool(t => t.leaf(2) == 1);
        deserialize_i8 => I8, visit_i8(t => t.leaf(2) as i8);
        deserialize_i16 => I16, visit_i16(t => t.leaf(2) as i16);
        deserialize_i32 => I32, visit_i32(t => t.leaf(2) as i32);
        deserialize_i64 => I64, visit_i64(t => t.leaf(2) as i64);
        deserialize_i128 => I128, visit_i128(t => t.leaf(2) as i128);
        deserialize_u8 => U8, visit_u8(t => t.leaf(2) as u8);
        deserialize_u16 => U16, visit_u16(t => t.leaf(2) as u16);
        deserialize_u32 => U32, visit_u32(t => t.leaf(2) as u32);
        deserialize_u64 => U64, visit_u64(t => t.leaf(2) as u64);
        deserialize_u128 => U128, visit_u128(t => t.leaf(2) as u128);
        deserialize_f32 => F32, visit_f32(t => t.leaf(2) as f32);
        deserialize_f64 => F64, visit_f64(t => t.leaf(2) as f64);
        deserialize_char => Char, visit_char(t => if t.leaf(2) == 0 { 'A' } else { '0' });
        deserialize_str => Str, visit_str(t => STRINGS[t.leaf(STRINGS.len())]);
        deserialize_string => Str, visit_string(t => STRINGS[t.leaf(STRINGS.len())].to_owned());
        deserialize_bytes => Bytes, visit_bytes(t => &vec![0; BYTE_LENGTHS[t.leaf(BYTE_LENGTHS.len())]]);
        deserialize_byte_buf => Bytes, visit_byte_buf(t => vec![0; BYTE_LENGTHS[t.leaf(BYTE_LENGTHS.len())]]);
        deserialize_unit => Unit, visit_unit(t =>);
    }

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Fail> {
        // Only a self-describing format can decode such a value; `serde_json::Value` takes a
        // unit placeholder, untagged enums and flattened fields do not.
        self.record(Shape::Opaque);
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Fail> {
        if self.builder.value_only > 0 {
            return visitor.visit_none();
        }
        self.enter()?;
        let mut inner = Shape::Unit;
        let value = visitor.visit_some(Tracer { builder: self.builder, out: &mut inner })?;
        self.record(Shape::Option(Box::new(inner)));
        self.leave();
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(mut self, _name: &'static str, visitor: V) -> Result<V::Value, Fail> {
        if self.builder.value_only == 0 {
            let index = self.builder.index_of::<V::Value>(|| Slot::Plain(Some(TypeShape::Unit)));
            self.record(Shape::Named(index));
        }
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fail> {
        self.enter()?;
        let value = match self.plain::<V::Value>() {
            Some(index) => {
                self.builder.stack.push(index);
                let mut inner = Shape::Unit;
                let value = visitor.visit_newtype_struct(Tracer { builder: self.builder, out: &mut inner })?;
                self.builder.stack.pop();
                self.builder.slots[index] = Slot::Plain(Some(TypeShape::Newtype(inner)));
                value
            }
            None => {
                self.placeholder(|builder| visitor.visit_newtype_struct(Tracer { builder, out: &mut Shape::Unit }))?
            }
        };
        self.leave();
        Ok(value)
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Fail> {
        if self.builder.value_only > 0 {
            return visitor.visit_seq(Elements { builder: self.builder, outs: Vec::new().into_iter() });
        }
        self.enter()?;
        let mut item = Shape::Unit;
        let value = visitor.visit_seq(Elements { builder: self.builder, outs: vec![&mut item].into_iter() })?;
        self.record(Shape::Seq(Box::new(item)));
        self.leave();
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(mut self, len: usize, visitor: V) -> Result<V::Value, Fail> {
        self.enter()?;
        let mut items = vec![Shape::Unit; len];
        let value = visitor
            .visit_seq(Elements { builder: self.builder, outs: items.iter_mut().collect::<Vec<_>>().into_iter() })?;
        self.record(Shape::Tuple(items));
        self.leave();
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Fail> {
        self.enter()?;
        let value = match self.plain::<V::Value>() {
            Some(index) => {
                self.builder.stack.push(index);
                let mut items = vec![Shape::Unit; len];
                let outs = items.iter_mut().collect::<Vec<_>>().into_iter();
                let value = visitor.visit_seq(Elements { builder: self.builder, outs })?;
                self.builder.stack.pop();
                self.builder.slots[index] = Slot::Plain(Some(TypeShape::Tuple(items)));
                value
            }
            None => self.placeholder(|builder| visitor.visit_seq(Placeholders { builder, len }))?,
        };
        self.leave();
        Ok(value)
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Fail> {
        if self.builder.value_only > 0 {
            return visitor.visit_map(Entry { builder: self.builder, key: None, value: None });
        }
        self.enter()?;
        let (mut key, mut value_shape) = (Shape::Unit, Shape::Unit);
        let value =
            visitor.visit_map(Entry { builder: self.builder, key: Some(&mut key), value: Some(&mut value_shape) })?;
        self.record(Shape::Map(Box::new(key), Box::new(value_shape)));
        self.leave();
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fail> {
        self.enter()?;
        let value = match self.plain::<V::Value>() {
            Some(index) => {
                self.builder.stack.push(index);
                let mut shapes = vec![Shape::Unit; fields.len()];
                let outs = shapes.iter_mut().collect::<Vec<_>>().into_iter();
                let value = visitor.visit_seq(Elements { builder: self.builder, outs })?;
                self.builder.stack.pop();
                let named = fields.iter().map(|field| (*field).to_owned()).zip(shapes).collect();
                self.builder.slots[index] = Slot::Plain(Some(TypeShape::Struct(named)));
                value
            }
            None => self.placeholder(|builder| visitor.visit_seq(Placeholders { builder, len: fields.len() }))?,
        };
        self.leave();
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fail> {
        if variants.is_empty() {
            return Err(Fail("an enum without variants has no values".to_owned()));
        }
        self.enter()?;
        let index = if self.builder.value_only == 0 {
            let index =
                self.builder.index_of::<V::Value>(|| Slot::Enum(variants.iter().map(|name| (*name, None)).collect()));
            self.record(Shape::Named(index));
            Some(index)
        } else {
            self.builder.keys.get(std::any::type_name::<V::Value>()).copied()
        };
        let explore = index.filter(|index| !self.builder.stack.contains(index)).and_then(|index| {
            let Slot::Enum(known) = &self.builder.slots[index] else { return None };
            let unexplored = known.iter().position(|(_, variant)| variant.is_none());
            let onward = || {
                known.iter().position(|(_, variant)| {
                    variant.as_ref().is_some_and(|variant| {
                        let mut reaches = false;
                        TypeShape::Enum(vec![(String::new(), variant.clone())]).children(&mut |child| {
                            reaches |= self.builder.reaches_incomplete(child);
                        });
                        reaches
                    })
                })
            };
            unexplored.or_else(onward).map(|variant| (index, variant))
        });
        let value = match explore {
            Some((index, variant)) if self.builder.value_only == 0 => {
                self.builder.stack.push(index);
                let mut shape = None;
                let value = visitor.visit_enum(Choice {
                    builder: self.builder,
                    variant: u32::try_from(variant).unwrap_or(u32::MAX),
                    out: &mut shape,
                })?;
                self.builder.stack.pop();
                if let (Slot::Enum(known), Some(shape)) = (&mut self.builder.slots[index], shape) {
                    known[variant].1 = Some(shape);
                }
                value
            }
            _ => {
                // A placeholder: a unit variant when one is known, else ever later variants
                // the deeper this enum nests, so recursive enums end.
                let known_unit = index.and_then(|index| match &self.builder.slots[index] {
                    Slot::Enum(known) => known.iter().position(|(_, variant)| matches!(variant, Some(Variant::Unit))),
                    Slot::Plain(_) => None,
                });
                let nesting = index.map_or(0, |index| *self.builder.enum_nesting.get(&index).unwrap_or(&0));
                let variant = known_unit.unwrap_or(nesting.min(variants.len() - 1));
                if let Some(index) = index {
                    *self.builder.enum_nesting.entry(index).or_default() += 1;
                }
                let variant = u32::try_from(variant).unwrap_or(u32::MAX);
                let value = self.placeholder(|builder| visitor.visit_enum(Choice { builder, variant, out: &mut None }));
                if let Some(index) = index {
                    *self.builder.enum_nesting.entry(index).or_default() -= 1;
                }
                value?
            }
        };
        self.leave();
        Ok(value)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Fail> {
        Err(Fail("an identifier outside a struct or enum cannot be traced".to_owned()))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fail> {
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        // The shape of the compact (bincode) encoding, which needs it to be decoded.
        false
    }
}

impl Tracer<'_> {
    /// For a struct-like type: its index when it is to be traced now (recording a reference
    /// to it), or `None` when a placeholder will do (its shape is known and complete, or it
    /// is being traced further out: recursion).
    fn plain<T>(&mut self) -> Option<usize> {
        if self.builder.value_only > 0 {
            return None;
        }
        let index = self.builder.index_of::<T>(|| Slot::Plain(None));
        self.record(Shape::Named(index));
        let traced = matches!(self.builder.slots[index], Slot::Plain(Some(_)));
        if self.builder.stack.contains(&index) || (traced && !self.builder.needs_visit(index)) {
            return None;
        }
        Some(index)
    }
}

/// The elements of a sequence, tuple or struct: one per `outs` entry.
struct Elements<'a, 'b> {
    builder: &'a mut SchemaBuilder,
    outs: std::vec::IntoIter<&'b mut Shape>,
}

impl<'de> SeqAccess<'de> for Elements<'_, '_> {
    type Error = Fail;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Fail> {
        match self.outs.next() {
            Some(out) => seed.deserialize(Tracer { builder: self.builder, out }).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.outs.len())
    }
}

/// `len` placeholder elements whose shapes are not recorded.
struct Placeholders<'a> {
    builder: &'a mut SchemaBuilder,
    len: usize,
}

impl<'de> SeqAccess<'de> for Placeholders<'_> {
    type Error = Fail;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Fail> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(Tracer { builder: self.builder, out: &mut Shape::Unit }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

/// A map of at most one entry, whose key and value shapes go to `key` and `value`.
struct Entry<'a, 'b> {
    builder: &'a mut SchemaBuilder,
    key: Option<&'b mut Shape>,
    value: Option<&'b mut Shape>,
}

impl<'de> MapAccess<'de> for Entry<'_, '_> {
    type Error = Fail;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Fail> {
        match self.key.take() {
            Some(out) => seed.deserialize(Tracer { builder: self.builder, out }).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Fail> {
        match self.value.take() {
            Some(out) => seed.deserialize(Tracer { builder: self.builder, out }),
            None => Err(Fail("a map value was asked for without its key".to_owned())),
        }
    }
}

/// The variant a trace takes, and where its shape goes.
struct Choice<'a, 'b> {
    builder: &'a mut SchemaBuilder,
    variant: u32,
    out: &'b mut Option<Variant>,
}

impl<'de, 'a, 'b> EnumAccess<'de> for Choice<'a, 'b> {
    type Error = Fail;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self), Fail> {
        let tag = seed.deserialize(de::value::U32Deserializer::<Fail>::new(self.variant))?;
        Ok((tag, self))
    }
}

impl<'de> VariantAccess<'de> for Choice<'_, '_> {
    type Error = Fail;

    fn unit_variant(self) -> Result<(), Fail> {
        *self.out = Some(Variant::Unit);
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Fail> {
        let mut inner = Shape::Unit;
        let value = seed.deserialize(Tracer { builder: self.builder, out: &mut inner })?;
        *self.out = Some(Variant::Newtype(inner));
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Fail> {
        let mut items = vec![Shape::Unit; len];
        let outs = items.iter_mut().collect::<Vec<_>>().into_iter();
        let value = visitor.visit_seq(Elements { builder: self.builder, outs })?;
        *self.out = Some(Variant::Tuple(items));
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Fail> {
        let mut shapes = vec![Shape::Unit; fields.len()];
        let outs = shapes.iter_mut().collect::<Vec<_>>().into_iter();
        let value = visitor.visit_seq(Elements { builder: self.builder, outs })?;
        *self.out = Some(Variant::Struct(fields.iter().map(|field| (*field).to_owned()).zip(shapes).collect()));
        Ok(value)
    }
}

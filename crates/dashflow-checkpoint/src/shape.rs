//! The whole shape of a stored type, traced from its serde `Deserialize`, and its fingerprint.
//!
//! A [`Schema`] describes every type reachable from its roots: structs with their fields,
//! enums with their variants, `Option`, sequences, maps, tuples and primitives, nested and
//! recursive types included. It is found by deserializing each root from a tracing
//! deserializer, which answers every request with a placeholder and records what was asked
//! for, so nothing beyond `Deserialize` is needed of the nested types. Its [`Schema::fingerprint`]
//! changes whenever any part of that shape changes (a field renamed, reordered or retyped,
//! anywhere), but not when a type is renamed.
//!
//! Types whose `Deserialize` asks for a self-describing format (`deserialize_any`:
//! `serde_json::Value`, untagged or internally tagged enums, flattened fields) are recorded as
//! [`Shape::Opaque`] where the placeholder satisfies them (`serde_json::Value` does), and fail
//! the trace otherwise ([`crate::CheckpointError::Untraceable`]).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod diff;
mod tracer;
mod value;

pub use diff::{Change, ChangeKind};
pub use tracer::SchemaBuilder;

#[cfg(test)]
mod tests;

/// The shape of one value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Shape {
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string.
    Str,
    /// A byte buffer (`serde_bytes`).
    Bytes,
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence (`Vec`, sets, ...).
    Seq(Box<Shape>),
    /// A map.
    Map(Box<Shape>, Box<Shape>),
    /// A tuple or fixed-size array.
    Tuple(Vec<Shape>),
    /// A named type: an index into [`Schema::types`].
    Named(usize),
    /// A value only a self-describing format can decode (`serde_json::Value`).
    Opaque,
}

/// The shape of a named type (a struct or an enum).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TypeShape {
    /// `struct Name;`
    Unit,
    /// `struct Name(T);`
    Newtype(Shape),
    /// `struct Name(A, B);`
    Tuple(Vec<Shape>),
    /// `struct Name { a: A, b: B }`, fields in order.
    Struct(Vec<(String, Shape)>),
    /// An enum: its variants by index.
    Enum(Vec<(String, Variant)>),
}

/// The shape of an enum variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Variant {
    /// `Name`.
    Unit,
    /// `Name(T)`.
    Newtype(Shape),
    /// `Name(A, B)`.
    Tuple(Vec<Shape>),
    /// `Name { a: A }`.
    Struct(Vec<(String, Shape)>),
}

/// Named types and the shapes of a set of roots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Schema {
    /// The named types, indexed by [`Shape::Named`], in the order a walk from the roots meets
    /// them (so equal shapes give equal schemas).
    pub types: Vec<TypeShape>,
    /// Each named type's Rust name without its module path, for messages.
    pub names: Vec<String>,
    /// The root shapes, in the order they were traced.
    pub roots: Vec<Shape>,
    /// Facts about the roots that their shape does not show but readers rely on (the
    /// reducers of a state's fields), part of the fingerprint.
    pub notes: String,
}

impl Schema {
    /// Starts a schema; add roots with [`SchemaBuilder::root`].
    pub fn builder() -> SchemaBuilder {
        SchemaBuilder::default()
    }

    /// Renumbers the types in the order a depth-first walk from the roots meets them, and
    /// drops types no root reaches, so the same shapes always give the same schema.
    fn canonicalize(&mut self) {
        let mut order: Vec<usize> = Vec::new();
        let mut seen: HashMap<usize, usize> = HashMap::new();
        // Iterative, so deep or recursive types cannot exhaust the stack.
        let mut stack: Vec<&Shape> = self.roots.iter().rev().collect();
        while let Some(shape) = stack.pop() {
            let mut inner: Vec<&Shape> = Vec::new();
            match shape {
                Shape::Named(index) if !seen.contains_key(index) => {
                    seen.insert(*index, order.len());
                    order.push(*index);
                    if let Some(named) = self.types.get(*index) {
                        named.children(&mut |child| inner.push(child));
                    }
                }
                other => other.children(&mut |child| inner.push(child)),
            }
            stack.extend(inner.into_iter().rev());
        }
        let mut types = Vec::with_capacity(order.len());
        let mut names = Vec::with_capacity(order.len());
        for &old in &order {
            let mut shape = self.types[old].clone();
            shape.renumber_all(&|shape: &mut Shape| shape.renumber(&seen));
            types.push(shape);
            names.push(self.names[old].clone());
        }
        for root in &mut self.roots {
            root.renumber(&seen);
        }
        self.types = types;
        self.names = names;
    }

    /// A 64-bit fingerprint of the roots' whole shape and the notes: field and variant names,
    /// their order and every type down to the primitives; not the names of named types. The
    /// same on every build (FNV-1a over a fixed encoding).
    pub fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::default();
        hash.text("dashflow-shape-1");
        hash.number(self.roots.len());
        for root in &self.roots {
            root.hash(&mut hash);
        }
        hash.number(self.types.len());
        for shape in &self.types {
            shape.hash(&mut hash);
        }
        hash.text(&self.notes);
        hash.0
    }

    /// `shape` as a Rust-like type for messages: `Option<u8>`, `Vec<Ticket>`, `(u8, String)`.
    pub fn describe(&self, shape: &Shape) -> String {
        match shape {
            Shape::Unit => "()".into(),
            Shape::Bool => "bool".into(),
            Shape::I8 => "i8".into(),
            Shape::I16 => "i16".into(),
            Shape::I32 => "i32".into(),
            Shape::I64 => "i64".into(),
            Shape::I128 => "i128".into(),
            Shape::U8 => "u8".into(),
            Shape::U16 => "u16".into(),
            Shape::U32 => "u32".into(),
            Shape::U64 => "u64".into(),
            Shape::U128 => "u128".into(),
            Shape::F32 => "f32".into(),
            Shape::F64 => "f64".into(),
            Shape::Char => "char".into(),
            Shape::Str => "String".into(),
            Shape::Bytes => "bytes".into(),
            Shape::Option(inner) => format!("Option<{}>", self.describe(inner)),
            Shape::Seq(inner) => format!("Vec<{}>", self.describe(inner)),
            Shape::Map(key, value) => format!("Map<{}, {}>", self.describe(key), self.describe(value)),
            Shape::Tuple(items) => {
                let items: Vec<String> = items.iter().map(|item| self.describe(item)).collect();
                format!("({})", items.join(", "))
            }
            Shape::Named(index) => self.names.get(*index).cloned().unwrap_or_else(|| format!("type #{index}")),
            Shape::Opaque => "a self-describing value".into(),
        }
    }
}

impl Shape {
    fn children<'a>(&'a self, f: &mut dyn FnMut(&'a Shape)) {
        match self {
            Shape::Option(inner) | Shape::Seq(inner) => f(inner),
            Shape::Map(key, value) => {
                f(key);
                f(value);
            }
            Shape::Tuple(items) => items.iter().for_each(&mut *f),
            _ => {}
        }
    }

    fn renumber(&mut self, map: &HashMap<usize, usize>) {
        match self {
            Shape::Named(index) => *index = map.get(index).copied().unwrap_or(*index),
            Shape::Option(inner) | Shape::Seq(inner) => inner.renumber(map),
            Shape::Map(key, value) => {
                key.renumber(map);
                value.renumber(map);
            }
            Shape::Tuple(items) => items.iter_mut().for_each(|item| item.renumber(map)),
            _ => {}
        }
    }

    fn hash(&self, hash: &mut Fnv) {
        let tag = match self {
            Shape::Unit => 0,
            Shape::Bool => 1,
            Shape::I8 => 2,
            Shape::I16 => 3,
            Shape::I32 => 4,
            Shape::I64 => 5,
            Shape::I128 => 6,
            Shape::U8 => 7,
            Shape::U16 => 8,
            Shape::U32 => 9,
            Shape::U64 => 10,
            Shape::U128 => 11,
            Shape::F32 => 12,
            Shape::F64 => 13,
            Shape::Char => 14,
            Shape::Str => 15,
            Shape::Bytes => 16,
            Shape::Option(_) => 17,
            Shape::Seq(_) => 18,
            Shape::Map(..) => 19,
            Shape::Tuple(_) => 20,
            Shape::Named(_) => 21,
            Shape::Opaque => 22,
        };
        hash.byte(tag);
        match self {
            Shape::Option(inner) | Shape::Seq(inner) => inner.hash(hash),
            Shape::Map(key, value) => {
                key.hash(hash);
                value.hash(hash);
            }
            Shape::Tuple(items) => {
                hash.number(items.len());
                items.iter().for_each(|item| item.hash(hash));
            }
            Shape::Named(index) => hash.number(*index),
            _ => {}
        }
    }
}

impl TypeShape {
    fn children<'a>(&'a self, f: &mut dyn FnMut(&'a Shape)) {
        match self {
            TypeShape::Unit => {}
            TypeShape::Newtype(inner) => f(inner),
            TypeShape::Tuple(items) => items.iter().for_each(&mut *f),
            TypeShape::Struct(fields) => fields.iter().for_each(|(_, shape)| f(shape)),
            TypeShape::Enum(variants) => {
                for (_, variant) in variants {
                    match variant {
                        Variant::Unit => {}
                        Variant::Newtype(inner) => f(inner),
                        Variant::Tuple(items) => items.iter().for_each(&mut *f),
                        Variant::Struct(fields) => fields.iter().for_each(|(_, shape)| f(shape)),
                    }
                }
            }
        }
    }

    fn renumber_all(&mut self, renumber: &dyn Fn(&mut Shape)) {
        let visit = |shapes: &mut dyn Iterator<Item = &mut Shape>| shapes.for_each(renumber);
        match self {
            TypeShape::Unit => {}
            TypeShape::Newtype(inner) => renumber(inner),
            TypeShape::Tuple(items) => visit(&mut items.iter_mut()),
            TypeShape::Struct(fields) => visit(&mut fields.iter_mut().map(|(_, shape)| shape)),
            TypeShape::Enum(variants) => {
                for (_, variant) in variants {
                    match variant {
                        Variant::Unit => {}
                        Variant::Newtype(inner) => renumber(inner),
                        Variant::Tuple(items) => visit(&mut items.iter_mut()),
                        Variant::Struct(fields) => visit(&mut fields.iter_mut().map(|(_, shape)| shape)),
                    }
                }
            }
        }
    }

    fn hash(&self, hash: &mut Fnv) {
        let fields = |hash: &mut Fnv, fields: &[(String, Shape)]| {
            hash.number(fields.len());
            for (name, shape) in fields {
                hash.text(name);
                shape.hash(hash);
            }
        };
        let items = |hash: &mut Fnv, items: &[Shape]| {
            hash.number(items.len());
            items.iter().for_each(|item| item.hash(hash));
        };
        match self {
            TypeShape::Unit => hash.byte(0),
            TypeShape::Newtype(inner) => {
                hash.byte(1);
                inner.hash(hash);
            }
            TypeShape::Tuple(shapes) => {
                hash.byte(2);
                items(hash, shapes);
            }
            TypeShape::Struct(named) => {
                hash.byte(3);
                fields(hash, named);
            }
            TypeShape::Enum(variants) => {
                hash.byte(4);
                hash.number(variants.len());
                for (name, variant) in variants {
                    hash.text(name);
                    match variant {
                        Variant::Unit => hash.byte(0),
                        Variant::Newtype(inner) => {
                            hash.byte(1);
                            inner.hash(hash);
                        }
                        Variant::Tuple(shapes) => {
                            hash.byte(2);
                            items(hash, shapes);
                        }
                        Variant::Struct(named) => {
                            hash.byte(3);
                            fields(hash, named);
                        }
                    }
                }
            }
        }
    }
}

/// FNV-1a, 64 bits: stable across compilers and releases, unlike `std`'s hasher.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn byte(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }

    fn number(&mut self, number: usize) {
        for byte in (number as u64).to_le_bytes() {
            self.byte(byte);
        }
    }

    fn text(&mut self, text: &str) {
        self.number(text.len());
        for byte in text.bytes() {
            self.byte(byte);
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Schema::default().describe(self))
    }
}

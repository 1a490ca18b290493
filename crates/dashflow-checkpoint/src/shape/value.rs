//! Reading a payload by the shape its writer recorded, into a self-describing value tree
//! (`serde_json::Value`) from which a changed type can be deserialized by field name.

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Schema, Shape, TypeShape, Variant};
use crate::{CheckpointError, Codec};

/// Struct variants are read through `struct_variant`, which takes the field count from its
/// field list: blank names of the right count.
const BLANK: [&str; 256] = [""; 256];

impl Schema {
    /// Decodes `payload`, written by `codec` as a value of root `root` of this schema, into a
    /// value tree in which structs are maps by field name, enums are externally tagged and
    /// `None` is null: what serde's derived `Deserialize` reads a changed type from, filling
    /// fields the writer did not have with their defaults. JSON payloads describe themselves
    /// and are parsed as they are.
    pub fn decode_value(&self, root: usize, codec: Codec, payload: &[u8]) -> Result<Value, CheckpointError> {
        let shape =
            self.roots.get(root).ok_or_else(|| CheckpointError::corrupt(format!("the schema has no root {root}")))?;
        match codec {
            Codec::Json => serde_json::from_slice(payload).map_err(|error| CheckpointError::corrupt(error.to_string())),
            Codec::Bincode => {
                let seed = ShapeSeed { schema: self, shape };
                // Lengths read from the payload must not allocate more than a generous multiple
                // of it; bincode's limit is a const generic, so the smallest bucket that holds it.
                let limit = payload.len().saturating_mul(16).saturating_add(4096);
                macro_rules! with_limit {
                    ($($bucket:literal),*) => {
                        $(if limit <= $bucket {
                            let config = bincode::config::standard().with_limit::<$bucket>();
                            return finish(bincode::serde::seed_decode_from_slice(seed, payload, config), payload.len());
                        })*
                    };
                }
                with_limit!(65536, 1048576, 16777216, 268435456, 4294967296);
                Err(CheckpointError::corrupt(format!(
                    "a payload of {} bytes is larger than a checkpoint may be",
                    payload.len()
                )))
            }
        }
    }
}

fn finish(result: Result<(Value, usize), bincode::error::DecodeError>, len: usize) -> Result<Value, CheckpointError> {
    match result {
        Ok((value, read)) if read == len => Ok(value),
        Ok((_, read)) => Err(CheckpointError::corrupt(format!(
            "{} trailing bytes after the value read by its recorded shape",
            len - read
        ))),
        Err(error) => Err(CheckpointError::corrupt(format!("cannot read by its recorded shape: {error}"))),
    }
}

#[derive(Clone, Copy)]
struct ShapeSeed<'a> {
    schema: &'a Schema,
    shape: &'a Shape,
}

impl<'a> ShapeSeed<'a> {
    fn with(self, shape: &'a Shape) -> Self {
        Self { schema: self.schema, shape }
    }
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let seed = self;
        match self.shape {
            Shape::Unit => deserializer.deserialize_unit(Leaf),
            Shape::Bool => deserializer.deserialize_bool(Leaf),
            Shape::I8 => deserializer.deserialize_i8(Leaf),
            Shape::I16 => deserializer.deserialize_i16(Leaf),
            Shape::I32 => deserializer.deserialize_i32(Leaf),
            Shape::I64 => deserializer.deserialize_i64(Leaf),
            Shape::I128 => deserializer.deserialize_i128(Leaf),
            Shape::U8 => deserializer.deserialize_u8(Leaf),
            Shape::U16 => deserializer.deserialize_u16(Leaf),
            Shape::U32 => deserializer.deserialize_u32(Leaf),
            Shape::U64 => deserializer.deserialize_u64(Leaf),
            Shape::U128 => deserializer.deserialize_u128(Leaf),
            Shape::F32 => deserializer.deserialize_f32(Leaf),
            Shape::F64 => deserializer.deserialize_f64(Leaf),
            Shape::Char => deserializer.deserialize_char(Leaf),
            Shape::Str => deserializer.deserialize_string(Leaf),
            Shape::Bytes => deserializer.deserialize_byte_buf(Leaf),
            Shape::Option(inner) => deserializer.deserialize_option(OptionOf(seed.with(inner))),
            Shape::Seq(inner) => deserializer.deserialize_seq(SeqOf(seed.with(inner))),
            Shape::Map(key, value) => deserializer.deserialize_map(MapOf(seed.with(key), seed.with(value))),
            Shape::Tuple(items) => deserializer.deserialize_tuple(items.len(), TupleOf(seed, items)),
            Shape::Opaque => {
                Err(de::Error::custom("a self-describing value (serde_json::Value) cannot be read from a bincode blob"))
            }
            Shape::Named(index) => match seed.schema.types.get(*index) {
                None => Err(de::Error::custom(format!("the schema has no type {index}"))),
                Some(TypeShape::Unit) => deserializer.deserialize_unit(Leaf),
                Some(TypeShape::Newtype(inner)) => seed.with(inner).deserialize(deserializer),
                Some(TypeShape::Tuple(items)) => deserializer.deserialize_tuple(items.len(), TupleOf(seed, items)),
                Some(TypeShape::Struct(fields)) => deserializer.deserialize_tuple(fields.len(), StructOf(seed, fields)),
                Some(TypeShape::Enum(variants)) => deserializer.deserialize_enum("", &[], EnumOf(seed, variants)),
            },
        }
    }
}

/// A primitive as a value.
struct Leaf;

impl<'de> Visitor<'de> for Leaf {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a primitive value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        i64::try_from(v).map(Value::from).map_err(|_| E::custom("an i128 beyond i64 cannot be carried over"))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v).map(Value::from).map_err(|_| E::custom("a u128 beyond u64 cannot be carried over"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a non-finite float cannot be carried over"))
    }

    fn visit_char<E>(self, v: char) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Array(v.iter().map(|byte| Value::from(*byte)).collect()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

struct OptionOf<'a>(ShapeSeed<'a>);

impl<'de> Visitor<'de> for OptionOf<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an option")
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.0.deserialize(deserializer)
    }
}

struct SeqOf<'a>(ShapeSeed<'a>);

impl<'de> Visitor<'de> for SeqOf<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self.0)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
}

struct TupleOf<'a>(ShapeSeed<'a>, &'a [Shape]);

impl<'de> Visitor<'de> for TupleOf<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a tuple of {}", self.1.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(self.1.len());
        for shape in self.1 {
            let item = seq
                .next_element_seed(self.0.with(shape))?
                .ok_or_else(|| de::Error::invalid_length(items.len(), &self))?;
            items.push(item);
        }
        Ok(Value::Array(items))
    }
}

struct StructOf<'a>(ShapeSeed<'a>, &'a [(String, Shape)]);

impl<'de> Visitor<'de> for StructOf<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a struct of {} fields", self.1.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        for (name, shape) in self.1 {
            let value = seq
                .next_element_seed(self.0.with(shape))?
                .ok_or_else(|| de::Error::invalid_length(fields.len(), &self))?;
            fields.insert(name.clone(), value);
        }
        Ok(Value::Object(fields))
    }
}

struct MapOf<'a>(ShapeSeed<'a>, ShapeSeed<'a>);

impl<'de> Visitor<'de> for MapOf<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        while let Some(key) = map.next_key_seed(self.0)? {
            let key = match key {
                Value::String(key) => key,
                Value::Number(key) => key.to_string(),
                Value::Bool(key) => key.to_string(),
                other => {
                    return Err(de::Error::custom(format!("a map key {other} cannot be carried over by name")));
                }
            };
            let value = map.next_value_seed(self.1)?;
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}

struct EnumOf<'a>(ShapeSeed<'a>, &'a [(String, Variant)]);

/// A variant index.
struct Index;

impl<'de> DeserializeSeed<'de> for Index {
    type Value = u32;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<u32, D::Error> {
        deserializer.deserialize_u32(self)
    }
}

impl<'de> Visitor<'de> for Index {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a variant index")
    }

    fn visit_u32<E>(self, v: u32) -> Result<u32, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom("variant index out of range"))
    }
}

impl<'de> Visitor<'de> for EnumOf<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an enum")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (index, variant) = data.variant_seed(Index)?;
        let Some((name, shape)) = usize::try_from(index).ok().and_then(|index| self.1.get(index)) else {
            return Err(de::Error::custom(format!("variant index {index} is not in the recorded enum")));
        };
        let payload = match shape {
            Variant::Unit => {
                variant.unit_variant()?;
                return Ok(Value::String(name.clone()));
            }
            Variant::Newtype(inner) => variant.newtype_variant_seed(self.0.with(inner))?,
            Variant::Tuple(items) => variant.tuple_variant(items.len(), TupleOf(self.0, items))?,
            Variant::Struct(fields) => {
                let names =
                    BLANK.get(..fields.len()).ok_or_else(|| de::Error::custom("too many fields in a variant"))?;
                variant.struct_variant(names, StructOf(self.0, fields))?
            }
        };
        Ok(Value::Object(Map::from_iter([(name.clone(), payload)])))
    }
}

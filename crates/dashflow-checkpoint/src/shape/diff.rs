//! What changed between the shape a checkpoint was written with and the current one.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::{Schema, Shape, TypeShape, Variant};

/// One difference between a stored shape and the current one, at a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// Where: field names joined by `.`, `[]` for a sequence's items, `<key>`/`<value>` for
    /// a map's, `::Variant` for an enum variant; empty for the root.
    pub path: String,
    /// What.
    pub kind: ChangeKind,
}

/// How a shape changed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A field the checkpoint does not have. Readable when the field has a default (an
    /// `Option`, or `#[serde(default)]`); `optional` says whether it is an `Option`.
    Added {
        /// Whether the field is an `Option`.
        optional: bool,
    },
    /// A field the checkpoint has and the state type no longer does.
    Removed,
    /// A value of another type.
    Retyped {
        /// The type in the checkpoint.
        stored: String,
        /// The type in the state type.
        current: String,
    },
    /// An enum variant the state type no longer has.
    VariantRemoved,
    /// Fields both have, in another order. Read by name they would keep their values, but a
    /// state type whose declaration moved fields around may mean another thing by them, so
    /// this is left to a migration.
    Reordered {
        /// The fields in the checkpoint's order.
        stored: Vec<String>,
        /// The same fields in the state type's order.
        current: Vec<String>,
    },
    /// A field folds updates with another reducer.
    Reducer {
        /// The reducer in the checkpoint.
        stored: String,
        /// The reducer in the state type.
        current: String,
    },
}

impl Change {
    /// Whether a checkpoint with this change can still be read: only added fields can.
    pub fn is_compatible(&self) -> bool {
        matches!(self.kind, ChangeKind::Added { .. })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "the state".to_owned() } else { format!("field `{}`", self.path) };
        match &self.kind {
            ChangeKind::Added { optional: true } => write!(f, "{path} was added (an `Option`)"),
            ChangeKind::Added { optional: false } => write!(f, "{path} was added"),
            ChangeKind::Removed => write!(f, "{path} was removed or renamed"),
            ChangeKind::Retyped { stored, current } => {
                write!(f, "{path}: {stored} in the checkpoint, {current} in the state type")
            }
            ChangeKind::VariantRemoved => write!(f, "variant `{}` was removed or renamed", self.path),
            ChangeKind::Reordered { stored, current } => {
                let of = if self.path.is_empty() { "the state".to_owned() } else { format!("`{}`", self.path) };
                write!(
                    f,
                    "the fields of {of} were reordered: {} in the checkpoint, {} in the state type",
                    stored.join(", "),
                    current.join(", ")
                )
            }
            ChangeKind::Reducer { stored, current } => {
                write!(f, "{path}: reducer `{stored}` in the checkpoint, `{current}` in the state type")
            }
        }
    }
}

impl Schema {
    /// What changed from `stored` (root `root` of the schema a checkpoint was written with)
    /// to root `root` of this schema, fields matched by name; and, for the state, the reducers
    /// in the two schemas' notes (`field:reducer;...`).
    pub fn changes_since(&self, stored: &Schema, root: usize) -> Vec<Change> {
        let mut walk = Walk { stored, current: self, changes: Vec::new(), seen: HashSet::new() };
        if let (Some(old), Some(new)) = (stored.roots.get(root), self.roots.get(root)) {
            walk.compare(old, new, String::new());
        }
        let reducers = |notes: &str| -> HashMap<String, String> {
            notes
                .split(';')
                .filter_map(|entry| entry.split_once(':'))
                .map(|(field, reducer)| (field.to_owned(), reducer.to_owned()))
                .collect()
        };
        let (old, new) = (reducers(&stored.notes), reducers(&self.notes));
        let mut fields: Vec<&String> = new.keys().collect();
        fields.sort();
        for field in fields {
            if let Some(stored_reducer) = old.get(field)
                && *stored_reducer != new[field]
            {
                walk.changes.push(Change {
                    path: field.clone(),
                    kind: ChangeKind::Reducer { stored: stored_reducer.clone(), current: new[field].clone() },
                });
            }
        }
        walk.changes
    }
}

struct Walk<'a> {
    stored: &'a Schema,
    current: &'a Schema,
    changes: Vec<Change>,
    /// Pairs of named types compared already: recursion ends there.
    seen: HashSet<(usize, usize)>,
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() { part.to_owned() } else { format!("{path}.{part}") }
}

impl Walk<'_> {
    fn retyped(&mut self, old: &Shape, new: &Shape, path: String) {
        let kind = ChangeKind::Retyped { stored: self.stored.describe(old), current: self.current.describe(new) };
        self.changes.push(Change { path, kind });
    }

    fn compare(&mut self, old: &Shape, new: &Shape, path: String) {
        match (old, new) {
            (Shape::Option(old), Shape::Option(new)) => self.compare(old, new, path),
            // A value that becomes optional reads as `Some`.
            (old, Shape::Option(new)) if !matches!(old, Shape::Option(_)) => self.compare(old, new, path),
            (Shape::Seq(old), Shape::Seq(new)) => self.compare(old, new, format!("{path}[]")),
            (Shape::Map(old_key, old_value), Shape::Map(new_key, new_value)) => {
                self.compare(old_key, new_key, format!("{path}<key>"));
                self.compare(old_value, new_value, format!("{path}<value>"));
            }
            (Shape::Tuple(old_items), Shape::Tuple(new_items)) if old_items.len() == new_items.len() => {
                for (index, (old, new)) in old_items.iter().zip(new_items).enumerate() {
                    self.compare(old, new, join(&path, &index.to_string()));
                }
            }
            (Shape::Named(old_index), Shape::Named(new_index)) => self.named(*old_index, *new_index, old, new, path),
            (old, new) if old == new && !matches!(old, Shape::Named(_) | Shape::Tuple(_)) => {}
            (old, new) => self.retyped(old, new, path),
        }
    }

    fn fields(&mut self, old: &[(String, Shape)], new: &[(String, Shape)], path: &str) {
        for (name, shape) in new {
            match old.iter().find(|(old_name, _)| old_name == name) {
                Some((_, old_shape)) => self.compare(old_shape, shape, join(path, name)),
                None => self.changes.push(Change {
                    path: join(path, name),
                    kind: ChangeKind::Added { optional: matches!(shape, Shape::Option(_)) },
                }),
            }
        }
        for (name, _) in old {
            if !new.iter().any(|(new_name, _)| new_name == name) {
                self.changes.push(Change { path: join(path, name), kind: ChangeKind::Removed });
            }
        }
        let common = |fields: &[(String, Shape)], other: &[(String, Shape)]| -> Vec<String> {
            let names = fields.iter().map(|(name, _)| name);
            names.filter(|name| other.iter().any(|(other_name, _)| other_name == *name)).cloned().collect()
        };
        let (stored, current) = (common(old, new), common(new, old));
        if stored != current {
            self.changes.push(Change { path: path.to_owned(), kind: ChangeKind::Reordered { stored, current } });
        }
    }

    fn named(&mut self, old_index: usize, new_index: usize, old: &Shape, new: &Shape, path: String) {
        if !self.seen.insert((old_index, new_index)) {
            return;
        }
        let (Some(old_type), Some(new_type)) = (self.stored.types.get(old_index), self.current.types.get(new_index))
        else {
            return self.retyped(old, new, path);
        };
        match (old_type, new_type) {
            (TypeShape::Unit, TypeShape::Unit) => {}
            (TypeShape::Newtype(old), TypeShape::Newtype(new)) => self.compare(old, new, path),
            (TypeShape::Tuple(old_items), TypeShape::Tuple(new_items)) if old_items.len() == new_items.len() => {
                for (index, (old, new)) in old_items.iter().zip(new_items).enumerate() {
                    self.compare(old, new, join(&path, &index.to_string()));
                }
            }
            (TypeShape::Struct(old_fields), TypeShape::Struct(new_fields)) => {
                self.fields(old_fields, new_fields, &path)
            }
            (TypeShape::Enum(old_variants), TypeShape::Enum(new_variants)) => {
                for (name, old_variant) in old_variants {
                    let at = format!("{path}::{name}");
                    let Some((_, new_variant)) = new_variants.iter().find(|(new_name, _)| new_name == name) else {
                        self.changes.push(Change { path: at, kind: ChangeKind::VariantRemoved });
                        continue;
                    };
                    match (old_variant, new_variant) {
                        (Variant::Unit, Variant::Unit) => {}
                        (Variant::Newtype(old), Variant::Newtype(new)) => self.compare(old, new, at),
                        (Variant::Tuple(old_items), Variant::Tuple(new_items))
                            if old_items.len() == new_items.len() =>
                        {
                            for (index, (old, new)) in old_items.iter().zip(new_items).enumerate() {
                                self.compare(old, new, join(&at, &index.to_string()));
                            }
                        }
                        (Variant::Struct(old_fields), Variant::Struct(new_fields)) => {
                            self.fields(old_fields, new_fields, &at);
                        }
                        _ => self.changes.push(Change {
                            path: at,
                            kind: ChangeKind::Retyped {
                                stored: "another variant shape".to_owned(),
                                current: "this one".to_owned(),
                            },
                        }),
                    }
                }
            }
            _ => self.retyped(old, new, path),
        }
    }
}

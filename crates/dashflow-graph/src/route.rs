//! What routers return, and how conditional-edge mappings are written.

use std::borrow::Cow;

/// The label (or labels) a conditional edge's router chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    /// One label: the common case, no allocation for `&'static str`.
    One(Cow<'static, str>),
    /// Several labels: every mapped target runs in the next superstep.
    Many(Vec<Cow<'static, str>>),
}

impl Labels {
    /// The labels as a slice-like iterator.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Self::One(label) => (Some(label.as_ref()), &[][..]),
            Self::Many(labels) => (None, labels.as_slice()),
        };
        one.into_iter().chain(many.iter().map(AsRef::as_ref))
    }
}

/// What a conditional edge's router may return: one label or several.
pub trait IntoLabels {
    /// The labels.
    fn into_labels(self) -> Labels;
}

impl IntoLabels for &'static str {
    fn into_labels(self) -> Labels {
        Labels::One(Cow::Borrowed(self))
    }
}

impl IntoLabels for String {
    fn into_labels(self) -> Labels {
        Labels::One(Cow::Owned(self))
    }
}

impl IntoLabels for Cow<'static, str> {
    fn into_labels(self) -> Labels {
        Labels::One(self)
    }
}

impl IntoLabels for Labels {
    fn into_labels(self) -> Labels {
        self
    }
}

impl IntoLabels for Vec<&'static str> {
    fn into_labels(self) -> Labels {
        Labels::Many(self.into_iter().map(Cow::Borrowed).collect())
    }
}

impl IntoLabels for Vec<String> {
    fn into_labels(self) -> Labels {
        Labels::Many(self.into_iter().map(Cow::Owned).collect())
    }
}

impl<const N: usize> IntoLabels for [&'static str; N] {
    fn into_labels(self) -> Labels {
        Labels::Many(self.into_iter().map(Cow::Borrowed).collect())
    }
}

/// One entry of a conditional edge's mapping: `(label, target)`, or a bare node name that is
/// its own label.
pub trait MappingEntry {
    /// `(label, target)`; the target is a node name or `END`.
    fn into_entry(self) -> (String, String);
}

impl<L: Into<String>, T: Into<String>> MappingEntry for (L, T) {
    fn into_entry(self) -> (String, String) {
        (self.0.into(), self.1.into())
    }
}

impl MappingEntry for &str {
    fn into_entry(self) -> (String, String) {
        (self.to_owned(), self.to_owned())
    }
}

impl MappingEntry for String {
    fn into_entry(self) -> (String, String) {
        (self.clone(), self)
    }
}

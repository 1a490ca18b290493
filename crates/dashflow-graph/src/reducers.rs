//! The reducers `#[derive(GraphState)]` names in `#[reduce(...)]`.
//!
//! A reducer is `fn(&mut T, T)`: it folds a new value into the current one. Every reducer here
//! is associative, which is what lets the executor merge the updates of parallel tasks before
//! applying them (see [`MergeableState`](crate::MergeableState)). A custom reducer given with
//! `#[reduce(with = path)]` must be associative too.

use std::ops::AddAssign;

use crate::message::MessageLike;

/// `#[reduce(append)]`: extends a collection (`Vec`, `VecDeque`, `String`, ...) with new items.
pub fn append<C>(acc: &mut C, new: C)
where
    C: Extend<<C as IntoIterator>::Item> + IntoIterator,
{
    acc.extend(new);
}

/// `#[reduce(add)]` (alias `sum`): adds the new value (`+=`).
pub fn add<T: AddAssign>(acc: &mut T, new: T) {
    *acc += new;
}

/// `#[reduce(max)]`: keeps the larger value.
pub fn max<T: PartialOrd>(acc: &mut T, new: T) {
    if new > *acc {
        *acc = new;
    }
}

/// `#[reduce(min)]`: keeps the smaller value.
pub fn min<T: PartialOrd>(acc: &mut T, new: T) {
    if new < *acc {
        *acc = new;
    }
}

/// `#[reduce(union)]`: inserts every new element into a set (`HashSet`, `BTreeSet`, ...).
pub fn union<C>(acc: &mut C, new: C)
where
    C: Extend<<C as IntoIterator>::Item> + IntoIterator,
{
    acc.extend(new);
}

/// `#[reduce(merge)]`: inserts every new entry into a map; a key present in both takes the new
/// value.
pub fn merge<C>(acc: &mut C, new: C)
where
    C: Extend<<C as IntoIterator>::Item> + IntoIterator,
{
    acc.extend(new);
}

/// `#[reduce(messages)]`: appends messages; a message whose id matches one already present
/// replaces it in place, so a node can edit an earlier message by re-sending its id.
pub fn messages<M: MessageLike>(acc: &mut Vec<M>, new: Vec<M>) {
    for message in new {
        let existing = message.message_id().and_then(|id| acc.iter().rposition(|m| m.message_id() == Some(id)));
        match existing {
            Some(index) => acc[index] = message,
            None => acc.push(message),
        }
    }
}

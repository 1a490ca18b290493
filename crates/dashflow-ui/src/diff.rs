//! The difference between two JSON values, as the paths that changed.

use serde_json::Value;

/// One difference: at `path` (`/findings/0/summary`), the value `before` became `after`
/// (`None`: absent on that side).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// A JSON pointer to the changed place; `""` is the whole value.
    pub path: String,
    /// The old value, `None` when added.
    pub before: Option<Value>,
    /// The new value, `None` when removed.
    pub after: Option<Value>,
}

/// Every change from `before` to `after`, descending into objects and arrays so that a change
/// deep inside names its own path; in key order, then array order.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(String::new(), before, after, &mut changes);
    changes
}

fn walk(path: String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(child, x, y, out),
                    (x, y) => out.push(Change { path: child, before: x.cloned(), after: y.cloned() }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for index in 0..a.len().max(b.len()) {
                let child = format!("{path}/{index}");
                match (a.get(index), b.get(index)) {
                    (Some(x), Some(y)) => walk(child, x, y, out),
                    (x, y) => out.push(Change { path: child, before: x.cloned(), after: y.cloned() }),
                }
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(Change { path, before: Some(x.clone()), after: Some(y.clone()) }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_each_changed_path() {
        let before = json!({"a": 1, "b": {"c": [1, 2]}, "gone": true, "same": "x"});
        let after = json!({"a": 2, "b": {"c": [1, 3, 4]}, "new/key": null, "same": "x"});
        let changes = diff(&before, &after);
        let summary: Vec<(String, Option<Value>, Option<Value>)> =
            changes.into_iter().map(|c| (c.path, c.before, c.after)).collect();
        assert_eq!(
            summary,
            vec![
                ("/a".into(), Some(json!(1)), Some(json!(2))),
                ("/b/c/1".into(), Some(json!(2)), Some(json!(3))),
                ("/b/c/2".into(), None, Some(json!(4))),
                ("/gone".into(), Some(json!(true)), None),
                ("/new~1key".into(), None, Some(json!(null))),
            ]
        );
    }

    #[test]
    fn equal_values_have_no_changes_and_a_type_change_is_one() {
        assert!(diff(&json!({"x": [1]}), &json!({"x": [1]})).is_empty());
        assert_eq!(diff(&json!(1), &json!("1")).len(), 1);
    }
}

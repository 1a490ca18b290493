//! The graph as an SVG picture: a layered layout of the schema's nodes (longest path from
//! `START`, back edges drawn as curves on the side), with the path a run took highlighted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dashflow_graph::{EdgeKind, GraphSchema};
use maud::{Markup, html};

const START: &str = "__start__";
const END: &str = "__end__";
const NODE_W: i64 = 150;
const NODE_H: i64 = 34;
const LAYER_H: i64 = 86;
const COLUMN_W: i64 = 180;
const MARGIN: i64 = 30;
/// Characters of a node's name shown in its box; the whole name is its tooltip.
const LABEL_CHARS: usize = 18;

/// What a run did on a graph: the nodes it ran and the edges it took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphPicture {
    /// Nodes that ran (`__start__` and `__end__` included when the run began and finished).
    pub visited: BTreeSet<String>,
    /// Edges taken, as (from, to).
    pub taken: BTreeSet<(String, String)>,
}

struct Placed {
    name: String,
    layer: i64,
    x: i64,
    y: i64,
}

/// The SVG of `schema` with `picture`'s nodes and edges highlighted (classes `taken`). Every
/// name is escaped.
pub fn draw(schema: &GraphSchema, picture: &GraphPicture) -> Markup {
    let mut names: Vec<String> = vec![START.to_owned()];
    names.extend(schema.nodes.iter().map(|node| node.name.clone()));
    names.push(END.to_owned());
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
    let edges: Vec<(usize, usize, Option<String>)> = schema
        .edges
        .iter()
        .filter_map(|edge| {
            let label = match &edge.kind {
                EdgeKind::Conditional { label } => Some(label.clone()),
                EdgeKind::Send => Some("send".to_owned()),
                _ => None,
            };
            Some((*index.get(edge.from.as_str())?, *index.get(edge.to.as_str())?, label))
        })
        .collect();
    let layers = layers(names.len(), &edges);
    let mut by_layer: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (node, layer) in layers.iter().enumerate() {
        by_layer.entry(*layer).or_default().push(node);
    }
    let widest = by_layer.values().map(Vec::len).max().unwrap_or(1) as i64;
    let width = widest * COLUMN_W + 2 * MARGIN + COLUMN_W / 2;
    let height = (by_layer.len() as i64) * LAYER_H + 2 * MARGIN;
    let mut placed: Vec<Option<Placed>> = (0..names.len()).map(|_| None).collect();
    for (row, (layer, nodes)) in by_layer.iter().enumerate() {
        let count = nodes.len() as i64;
        for (column, node) in nodes.iter().enumerate() {
            let x = MARGIN + (widest * COLUMN_W) * (2 * column as i64 + 1) / (2 * count);
            let y = MARGIN + row as i64 * LAYER_H + NODE_H / 2;
            placed[*node] = Some(Placed { name: names[*node].clone(), layer: *layer, x, y });
        }
    }
    let placed: Vec<Placed> = placed.into_iter().flatten().collect();
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" {
            title { "graph " (schema.name) }
            defs {
                marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for (from, to, label) in &edges {
                @let (a, b) = (&placed[*from], &placed[*to]);
                @let taken = picture.taken.contains(&(a.name.clone(), b.name.clone()));
                @let side = a.x.max(b.x) + NODE_W / 2 + 30;
                @let (path, label_x) = if b.layer > a.layer {
                    (format!("M {} {} L {} {}", a.x, a.y + NODE_H / 2, b.x, b.y - NODE_H / 2), (a.x + b.x) / 2 + 6)
                } else {
                    (format!("M {} {} C {side} {} {side} {} {} {}", a.x + NODE_W / 2, a.y, a.y, b.y, b.x + NODE_W / 2, b.y), side - 4)
                };
                g.edge.taken[taken] {
                    path d=(path) marker-end="url(#arrow)" {}
                    @if let Some(label) = label {
                        text.label x=(label_x) y=((a.y + b.y) / 2) { (label) }
                    }
                }
            }
            @for node in &placed {
                @let terminal = node.name == START || node.name == END;
                g.node.taken[picture.visited.contains(&node.name)].terminal[terminal] data-node=(node.name) {
                    title { (node.name) }
                    rect x=(node.x - NODE_W / 2) y=(node.y - NODE_H / 2) width=(NODE_W) height=(NODE_H) rx="8" {}
                    text x=(node.x) y=(node.y + 5) text-anchor="middle" { (short(&node.name)) }
                }
            }
        }
    }
}

fn short(name: &str) -> String {
    match name {
        START => "start".to_owned(),
        END => "end".to_owned(),
        _ if name.chars().count() > LABEL_CHARS => {
            let mut short: String = name.chars().take(LABEL_CHARS - 1).collect();
            short.push('…');
            short
        }
        _ => name.to_owned(),
    }
}

/// Each node's layer: the longest path from `START` (node 0) over the edges that are not back
/// edges of a depth-first walk; `END` (the last node) below everything; unreachable nodes in
/// layer 1.
fn layers(count: usize, edges: &[(usize, usize, Option<String>)]) -> Vec<i64> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (from, to, _) in edges {
        out[*from].push(*to);
    }
    // Depth-first from START without recursion: mark back edges (to a node on the stack).
    let mut state = vec![0u8; count]; // 0 new, 1 on stack, 2 done
    let mut forward: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    state[0] = 1;
    while let Some((node, next)) = stack.pop() {
        if let Some(&child) = out[node].get(next) {
            stack.push((node, next + 1));
            match state[child] {
                0 => {
                    forward[node].push(child);
                    state[child] = 1;
                    stack.push((child, 0));
                }
                2 => forward[node].push(child),
                _ => {}
            }
        } else {
            state[node] = 2;
        }
    }
    // Longest path over the forward edges, in reverse postorder (Kahn's algorithm).
    let mut indegree = vec![0usize; count];
    for children in &forward {
        for child in children {
            indegree[*child] += 1;
        }
    }
    let mut layer = vec![1i64; count];
    layer[0] = 0;
    let mut ready: Vec<usize> = (0..count).filter(|node| indegree[*node] == 0).collect();
    while let Some(node) = ready.pop() {
        for &child in &forward[node] {
            layer[child] = layer[child].max(layer[node] + 1);
            indegree[child] -= 1;
            if indegree[child] == 0 {
                ready.push(child);
            }
        }
    }
    let end = count - 1;
    let deepest = layer.iter().take(end).copied().max().unwrap_or(0);
    layer[end] = deepest + 1;
    layer
}

#[cfg(test)]
mod tests {
    use dashflow_graph::{EdgeSchema, NodeSchema};

    use super::*;

    fn schema(nodes: &[&str], edges: &[(&str, &str)]) -> GraphSchema {
        serde_json::from_value(serde_json::json!({
            "name": "g",
            "nodes": nodes.iter().map(|name| NodeSchema { name: (*name).to_owned(), routes_itself: false, timeout_ms: None, max_attempts: None }).collect::<Vec<_>>(),
            "edges": edges.iter().map(|(from, to)| EdgeSchema { from: (*from).to_owned(), to: (*to).to_owned(), kind: EdgeKind::Direct }).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn layers_follow_the_longest_path_and_loops_go_back() {
        // start -> a -> b -> c -> end, with b -> a a loop and a -> c a shortcut.
        let names = ["a", "b", "c"];
        let graph = schema(&names, &[(START, "a"), ("a", "b"), ("b", "a"), ("a", "c"), ("b", "c"), ("c", END)]);
        let index = |name: &str| match name {
            START => 0,
            END => 4,
            _ => 1 + names.iter().position(|n| *n == name).unwrap(),
        };
        let edges: Vec<(usize, usize, Option<String>)> =
            graph.edges.iter().map(|e| (index(&e.from), index(&e.to), None)).collect();
        assert_eq!(layers(5, &edges), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_taken_path_is_marked_and_names_are_escaped() {
        let graph = schema(&["<script>x</script>", "b"], &[(START, "<script>x</script>"), ("<script>x</script>", END)]);
        let mut picture = GraphPicture::default();
        picture.visited.insert("<script>x</script>".to_owned());
        picture.taken.insert((START.to_owned(), "<script>x</script>".to_owned()));
        let svg = draw(&graph, &picture).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert_eq!(svg.matches("class=\"node taken\"").count(), 1, "{svg}");
        assert_eq!(svg.matches("class=\"edge taken\"").count(), 1, "{svg}");
    }
}

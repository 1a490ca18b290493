//! `Command` and `Send`: what a node returns to route itself.

use dashflow_graph::{Command, END, Goto, Send as SendTask};

use crate::support::Doc;

fn doc(text: &str) -> Doc {
    Doc { text: text.to_owned() }
}

/// Where a command goes, as `node` or `send:node:input`.
fn destinations(command: &Command<Doc>) -> Vec<String> {
    command
        .goto
        .iter()
        .map(|goto| match goto {
            Goto::Node(node) => node.to_string(),
            Goto::Send(send) => format!("send:{}:{}", send.node, send.input.text),
        })
        .collect()
}

#[test]
fn a_new_command_neither_updates_nor_routes() {
    let command = Command::<Doc>::new();
    assert!(command.update.is_none());
    assert!(command.goto.is_empty());
    assert!(Command::<Doc>::default().goto.is_empty());
}

#[test]
fn a_command_collects_its_destinations_in_order() {
    let command = Command::goto("review").and_send(SendTask::new("worker", doc("x"))).and_goto(END);
    assert!(command.update.is_none());
    assert_eq!(destinations(&command), ["review", "send:worker:x", "__end__"]);
    assert_eq!(destinations(&Command::send(SendTask::new("worker", doc("y")))), ["send:worker:y"]);
}

#[test]
fn the_last_update_given_wins() {
    let command = Command::update(doc("first")).with_update(doc("second")).and_goto(END);
    assert_eq!(command.update, Some(doc("second")));
    assert_eq!(destinations(&command), ["__end__"]);
}

#[test]
fn clones_share_send_inputs() {
    let send = SendTask::new("worker", doc("big input"));
    let copy = send.clone();
    assert!(std::sync::Arc::ptr_eq(&send.input, &copy.input));
    let command = Command::<Doc>::send(send).and_goto("next");
    assert_eq!(destinations(&command.clone()), destinations(&command));
}

#[test]
fn debug_output_hides_the_update_and_the_send_input() {
    let command = Command::update(doc("secret")).and_send(SendTask::new("worker", doc("secret")));
    let debug = format!("{command:?}");
    assert!(debug.contains("worker"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
}

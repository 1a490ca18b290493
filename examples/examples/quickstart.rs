//! Support-ticket triage: classify a ticket, run three checks in parallel, draft a reply, let
//! a reviewer send the draft back until it says everything the checks require, then pause for
//! a person to approve the reply before it is sent.
//!
//! ```text
//! cargo run --release --example quickstart                         # triage three sample tickets
//! cargo run --release --example quickstart -- approve T-1001       # send the reply of T-1001
//! cargo run --release --example quickstart -- reject T-1003        # close T-1003 without sending
//! cargo run --release --example quickstart -- history T-1001       # the thread's checkpoints
//! cargo run --release --example quickstart -- ui                   # the web viewer: approve in a browser
//! cargo run --release --example quickstart -- --mermaid            # print the graph as Mermaid
//! ```
//!
//! Following runs from another process, through NATS JetStream (a server with `-js`):
//!
//! ```text
//! cargo run --release --example quickstart -- tail nats://127.0.0.1:4222     # one terminal
//! cargo run --release --example quickstart -- publish nats://127.0.0.1:4222  # another
//! dashflow tail --nats nats://127.0.0.1:4222 --from-start                    # or the CLI
//! ```
//!
//! Every run is checkpointed to SQLite in `.dashflow/quickstart.db`, so a paused ticket can be
//! approved by a later process, a day later.
//!
//! The tools are deterministic local stand-ins (`dashflow_examples::support`): no network, no
//! LLM, the same output every run.
#![allow(clippy::print_stdout, reason = "examples print their results")]

use dashflow::EventKind;
use dashflow::nats::{Follow, NatsConsumer, NatsSink, StartAt};
use dashflow::prelude::*;
use dashflow::ui::ServeGraph;
use dashflow_examples::support::{self, AccountStatus};

/// Drafts the reviewer asks for before giving up and leaving the ticket to a person.
const MAX_DRAFTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Category {
    Billing,
    Account,
    HowTo,
}

impl Category {
    /// Keyword rules; the first that matches wins.
    fn of(text: &str) -> Self {
        let text = text.to_lowercase();
        let mentions = |words: &[&str]| words.iter().any(|word| text.contains(word));
        if mentions(&["charge", "invoice", "refund", "bill"]) {
            Self::Billing
        } else if mentions(&["log in", "login", "password", "locked"]) {
            Self::Account
        } else {
            Self::HowTo
        }
    }
}

/// What one check found. `must_say` is a sentence the reply has to contain.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Finding {
    summary: String,
    must_say: Option<String>,
}

impl Finding {
    fn note(summary: impl Into<String>) -> Self {
        Self { summary: summary.into(), must_say: None }
    }

    fn action(summary: impl Into<String>, must_say: impl Into<String>) -> Self {
        Self { summary: summary.into(), must_say: Some(must_say.into()) }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Ticket {
    id: String,
    customer: String,
    text: String,
    category: Option<Category>,
    /// The parallel checks all append here, so their updates merge without conflict.
    #[reduce(append)]
    findings: Vec<Finding>,
    draft: String,
    #[reduce(add)]
    drafts: u32,
    /// What the reviewer found missing from the latest draft.
    missing: Vec<String>,
    sent: bool,
}

async fn classify(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    Ok(TicketUpdate::default().category(Category::of(&ticket.text)))
}

async fn billing(ticket: Arc<Ticket>, ctx: NodeContext) -> Result<TicketUpdate> {
    let invoices = support::invoices(&ticket.customer).await;
    ctx.emit(json!({ "progress": format!("checking {} invoices", invoices.len()) })).await;
    let finding = match support::duplicate_charge(&invoices) {
        Some(dup) => Finding::action(
            format!("{} is a duplicate charge of {}", dup.id, dup.amount()),
            format!("We have refunded the duplicate charge of {}.", dup.amount()),
        ),
        None => Finding::note(format!("{} invoices, all in order", invoices.len())),
    };
    Ok(TicketUpdate::default().findings(vec![finding]))
}

async fn account(ticket: Arc<Ticket>, ctx: NodeContext) -> Result<TicketUpdate> {
    ctx.emit(json!({ "progress": format!("looking up {}'s account", ticket.customer) })).await;
    let Some(account) = support::account(&ticket.customer).await else {
        // Retrying cannot make an unknown customer known: fail the run with a clear error.
        return Err(NodeError::permanent_msg(format!("no account for `{}`", ticket.customer)));
    };
    let finding = match account.status {
        AccountStatus::Active => Finding::note(format!("{} plan, active", account.plan)),
        AccountStatus::Locked { failed_logins } => Finding::action(
            format!("locked after {failed_logins} failed logins"),
            "We have unlocked your account and emailed you a password reset link.",
        ),
    };
    Ok(TicketUpdate::default().findings(vec![finding]))
}

async fn urgency(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    let score = support::urgency(&ticket.text);
    let finding = if score >= 5 {
        Finding::action(format!("urgency {score}/10"), "Your ticket has top priority with our team.")
    } else {
        Finding::note(format!("urgency {score}/10"))
    };
    Ok(TicketUpdate::default().findings(vec![finding]))
}

/// A stand-in for an LLM call: the first draft sticks to the category's template; each
/// redraft works in what the reviewer found missing.
async fn draft(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    let opening = match ticket.category {
        Some(Category::Billing) => "I'm sorry about the trouble with your bill.",
        Some(Category::Account) => "I'm sorry you can't get into your account.",
        Some(Category::HowTo) | None => {
            "Thanks for asking! Our help centre at help.example.com has a step-by-step guide."
        }
    };
    let mut reply = format!("Hi {},\n\n{opening}", ticket.customer);
    for sentence in &ticket.missing {
        reply.push(' ');
        reply.push_str(sentence);
    }
    reply.push_str(&format!("\n\nBest,\nThe support team ({})", ticket.id));
    Ok(TicketUpdate::default().draft(reply).drafts(1u32))
}

/// The quality gate: every sentence a check requires must appear in the draft.
async fn review(ticket: Arc<Ticket>) -> Result<TicketUpdate> {
    let missing: Vec<String> = ticket
        .findings
        .iter()
        .filter_map(|finding| finding.must_say.clone())
        .filter(|sentence| !ticket.draft.contains(sentence.as_str()))
        .collect();
    Ok(TicketUpdate::default().missing(missing))
}

async fn send(ticket: Arc<Ticket>, ctx: NodeContext) -> Result<TicketUpdate> {
    // A real mailer would get `ctx.idempotency_key()`, so that a retried send mails only once.
    ctx.emit(json!({ "progress": format!("emailing {}", ticket.customer) })).await;
    Ok(TicketUpdate::default().sent(true))
}

fn after_review(ticket: &Ticket) -> &'static str {
    if ticket.missing.is_empty() {
        "approved"
    } else if ticket.drafts < MAX_DRAFTS {
        "redraft"
    } else {
        "give_up"
    }
}

/// Where the quickstart keeps its checkpoints.
const DATABASE: &str = ".dashflow/quickstart.db";

/// Where `quickstart -- ui` serves the viewer (loopback only).
const UI_PORT: u16 = 7878;

async fn triage() -> anyhow::Result<CompiledGraph<Ticket>> {
    triage_at(DATABASE).await
}

/// The triage graph, checkpointed into the SQLite file `database`.
async fn triage_at(database: &str) -> anyhow::Result<CompiledGraph<Ticket>> {
    let mut graph = StateGraph::<Ticket>::named("triage");
    graph
        .add_node("classify", classify)
        .add_node("billing", billing)
        .add_node("account", account)
        .add_node("urgency", urgency)
        .add_node("draft", draft)
        .add_node("review", review)
        .add_node("send", send)
        .add_edge(START, "classify")
        .add_parallel_edges("classify", ["billing", "account", "urgency"])
        .add_join(["billing", "account", "urgency"], "draft")
        .add_edge("draft", "review")
        .add_conditional_edges("review", after_review, [("approved", "send"), ("redraft", "draft"), ("give_up", END)])
        .add_edge("send", END);
    // A person approves every reply: runs pause before `send` until resumed.
    Ok(graph.compile()?.with_checkpointer(SqliteCheckpointer::open(database).await?).interrupt_before(["send"])?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = triage().await?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--mermaid"] => println!("{}", app.to_mermaid()),
        [] => {
            println!("checkpoints: {DATABASE}\n");
            for ticket in sample_tickets() {
                println!("== {} from {}: {:?}", ticket.id, ticket.customer, ticket.text);
                let config = config(&ticket.id);
                show(app.stream(ticket, config)).await?;
            }
        }
        ["publish", url] => {
            // Every event of the triage runs goes to the stream `dashflow-events`, published
            // from the sink's own thread; the guard publishes what is left when `main` ends.
            let (sink, _guard) = NatsSink::builder(*url).start()?;
            publish(&app, &sink).await?;
            println!("published as {}: {:?}", sink.publisher().name, sink.stats());
        }
        ["tail", url] => {
            // Another process (or host): the triage runs' events as they are published.
            let consumer = NatsConsumer::connect(url).await?;
            let mut lines = std::pin::pin!(follow_triage(&consumer).await?);
            println!("following triage runs on {url} (Ctrl-C to stop)");
            while let Some(line) = lines.next().await {
                println!("{}", line?);
            }
        }
        ["approve" | "reject", id] if !waits_for_approval(&app, id).await? => {
            anyhow::bail!("{id} is not waiting for approval: run the quickstart first, or it was decided already");
        }
        ["approve", id] => {
            println!("== {id}: approved");
            show(app.resume_stream(Command::new(), config(id))).await?;
        }
        ["reject", id] => {
            // Record the decision as if `send` ran and sent nothing: the run is then complete.
            app.update_state(&config(id), TicketUpdate::default().sent(false), Some("send")).await?;
            println!("== {id}: rejected, closed without sending");
        }
        ["history", id] => {
            for snapshot in app.get_state_history(&config(id), None).await? {
                let source = snapshot.metadata.get("source").and_then(|s| s.as_str()).unwrap_or("?");
                println!(
                    "  step {:>2} {:<6} next {:?}  {}",
                    snapshot.step, source, snapshot.next, snapshot.checkpoint_id
                );
            }
        }
        ["ui"] => {
            // The viewer for this program's graph: states decoded as `Ticket`, and a person can
            // resume (approve) a paused ticket or update its state from the browser.
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], UI_PORT));
            println!("viewer: http://{addr}/threads (Ctrl-C to stop)");
            dashflow::ui::serve(addr, [app.ui()]).await?;
        }
        _ => anyhow::bail!(
            "usage: quickstart [approve ID | reject ID | history ID | ui | publish NATS_URL | tail NATS_URL | --mermaid]"
        ),
    }
    Ok(())
}

/// Triages the sample tickets with every event also going to `sink`.
async fn publish(app: &CompiledGraph<Ticket>, sink: &NatsSink) -> anyhow::Result<()> {
    let app = app.clone().with_callback(sink.clone());
    for ticket in sample_tickets() {
        println!("== {} from {}: {:?}", ticket.id, ticket.customer, ticket.text);
        let config = config(&ticket.id);
        show(app.stream(ticket, config)).await?;
    }
    Ok(())
}

/// The events of triage runs published to `consumer`'s stream from now on, a line each: the
/// publisher, the run and the event.
async fn follow_triage(
    consumer: &NatsConsumer,
) -> anyhow::Result<impl futures::Stream<Item = anyhow::Result<String>> + use<>> {
    // Started before any publisher: make the stream, so there is something to follow.
    consumer.ensure_stream().await?;
    let events = consumer.follow(Follow::all().graph("triage").start_at(StartAt::New)).await?;
    Ok(events.filter_map(|received| async move {
        match received {
            Err(error) => Some(Err(error.into())),
            Ok(received) => received
                .event()
                .map(|event| Ok(format!("{} {} {:?}", received.publisher.name, received.run.run_id, event.kind))),
        }
    }))
}

/// Whether ticket `id`'s run is paused before `send`.
async fn waits_for_approval(app: &CompiledGraph<Ticket>, id: &str) -> anyhow::Result<bool> {
    let snapshot = app.get_state(&config(id)).await?;
    Ok(snapshot.is_some_and(|snapshot| snapshot.next.iter().any(|node| node == "send")))
}

/// One thread per ticket; streams what nodes change, what they report while they work, and
/// routing decisions with task timings.
fn config(ticket: &str) -> RunConfig {
    let modes = [StreamMode::Updates, StreamMode::Custom, StreamMode::Events];
    RunConfig::thread(ticket).stream_modes(modes)
}

/// Prints a run's progress as it happens, then its outcome.
async fn show(mut events: dashflow::RunStream<Ticket>) -> anyhow::Result<()> {
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::Updates { step, node, update } => println!("  [{step}] {node:<8} {}", describe(&update)),
            StreamEvent::Custom(custom) => {
                let progress = custom.value["progress"].as_str().unwrap_or_default();
                println!("  [{}] {:<8} ... {progress}", custom.step, custom.node);
            }
            StreamEvent::Event(event) => {
                if let EventKind::Routed { step, from, label, target } = event.kind {
                    println!("  [{step}] {from:<8} -> {label} ({target})");
                }
            }
            _ => {}
        }
    }
    let result = events.result().await?;
    report(&result);
    Ok(())
}

/// One line per node update: what changed, not a dump of the update.
fn describe(update: &TicketUpdate) -> String {
    if let Some(Some(category)) = &update.category {
        format!("category: {category:?}")
    } else if let Some(findings) = &update.findings {
        findings.iter().map(|finding| finding.summary.as_str()).collect::<Vec<_>>().join("; ")
    } else if let Some(draft) = &update.draft {
        format!("drafted {} words", draft.split_whitespace().count())
    } else if let Some(missing) = &update.missing {
        match missing.len() {
            0 => "says everything it must".to_owned(),
            1 => "1 required sentence missing".to_owned(),
            n => format!("{n} required sentences missing"),
        }
    } else if update.sent == Some(true) {
        "sent".to_owned()
    } else {
        "no change".to_owned()
    }
}

fn report(result: &ExecutionResult<Ticket>) {
    let ticket = &result.state;
    let waiting = matches!(result.status, RunStatus::Interrupted { .. });
    let outcome = match (waiting, ticket.sent) {
        (true, _) => "waiting for approval",
        (false, true) => "sent",
        (false, false) => "NOT sent: left for a person",
    };
    println!("  reply after {} draft(s), {outcome}:", ticket.drafts);
    for line in ticket.draft.lines() {
        println!("    | {line}");
    }
    // Total time per node, in the order nodes first ran (draft and review may run twice).
    let mut totals: Vec<(&str, u32, std::time::Duration)> = Vec::new();
    for run in &result.nodes {
        let took = run.duration.unwrap_or_default();
        match totals.iter_mut().find(|(node, ..)| *node == run.node) {
            Some((_, runs, total)) => (*runs, *total) = (*runs + 1, *total + took),
            None => totals.push((run.node, 1, took)),
        }
    }
    let timings: Vec<String> = totals
        .iter()
        .map(|(node, runs, total)| match runs {
            1 => format!("{node} {total:.1?}"),
            n => format!("{node} {n}x {total:.1?}"),
        })
        .collect();
    println!("  timings: {}", timings.join(", "));
    println!("  run: {} steps in {:.1?}", result.steps, result.duration);
    if waiting {
        println!("  approve: cargo run --release --example quickstart -- approve {}", ticket.id);
        println!("  reject:  cargo run --release --example quickstart -- reject {}", ticket.id);
    }
    println!();
}

fn sample_tickets() -> Vec<Ticket> {
    [
        ("T-1001", "Dana", "I was charged twice for March! Please refund the duplicate."),
        ("T-1002", "Lee", "How do I export my projects to CSV?"),
        ("T-1003", "Sam", "My account is locked and I can't log in. URGENT, I have a demo within the hour!"),
    ]
    .into_iter()
    .map(|(id, customer, text)| Ticket {
        id: id.into(),
        customer: customer.into(),
        text: text.into(),
        ..Ticket::default()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The machine's NATS server with JetStream, or `None` (printed) when the suite runs
    /// without one; `DASHFLOW_TEST_NATS_REQUIRED=1` makes that a failure.
    fn nats_url(test: &str) -> Option<String> {
        match std::env::var("DASHFLOW_TEST_NATS_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var("DASHFLOW_TEST_NATS_REQUIRED").as_deref() != Ok("1"),
                    "{test}: DASHFLOW_TEST_NATS_REQUIRED=1 but DASHFLOW_TEST_NATS_URL is not set"
                );
                eprintln!("skipped {test}: DASHFLOW_TEST_NATS_URL is not set (set it to a NATS server with JetStream)");
                None
            }
        }
    }

    /// `quickstart -- publish` and `quickstart -- tail`, on a stream of the test's own: the
    /// follower, started first, gets every triage run's events up to its end, each line
    /// naming the publisher.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_sends_every_triage_run_to_a_follower_started_before_it() {
        let test = "publish_sends_every_triage_run_to_a_follower_started_before_it";
        let Some(url) = nats_url(test) else { return };
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("quickstart.db");
        let app = triage_at(database.to_str().unwrap()).await.unwrap();
        let unique = format!("{}{}", std::process::id(), dashflow::RunId::new());
        let (stream, prefix) = (format!("DFQUICK_{unique}"), format!("dfquick.{}", unique.to_lowercase()));
        let consumer = NatsConsumer::connect_to(&url, &stream, &prefix).await.unwrap();
        let mut lines = std::pin::pin!(follow_triage(&consumer).await.unwrap());

        let (sink, guard) = NatsSink::builder(&url).stream(&stream).subject_prefix(&prefix).start().unwrap();
        publish(&app, &sink).await.unwrap();
        sink.flush(Duration::from_secs(30)).unwrap();
        let stats = sink.stats();
        assert!(stats.acknowledged > 0 && stats.dropped == 0 && stats.lost == 0, "{stats:?}");

        // Each sample ticket's run pauses before `send`: its last event is its end.
        let tickets = sample_tickets().len();
        let mut ended = std::collections::BTreeSet::new();
        let mut seen = Vec::new();
        let follow = async {
            while ended.len() < tickets {
                let line = lines.next().await.expect("the follow ended").unwrap();
                let mut words = line.split_whitespace();
                let (publisher, run) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
                assert_eq!(publisher, sink.publisher().name, "{line}");
                if line.contains("RunFinished") {
                    ended.insert(run.to_owned());
                }
                seen.push(line);
            }
        };
        let followed = tokio::time::timeout(Duration::from_secs(30), follow).await;
        assert!(followed.is_ok(), "the follower saw {} runs end in 30 s:\n{}", ended.len(), seen.join("\n"));
        assert!(seen.iter().any(|line| line.contains("RunStarted")), "{}", seen.join("\n"));
        assert!(seen.iter().any(|line| line.contains("\"billing\"")), "{}", seen.join("\n"));

        guard.shutdown(Duration::from_secs(10)).unwrap();
        let client = async_nats::connect(url.as_str()).await.unwrap();
        async_nats::jetstream::new(client).delete_stream(&stream).await.unwrap();
    }
}

//! `dashflow ui`: the binary serves the viewer over a real store, on loopback by default,
//! and refuses other addresses without --allow-remote and a token.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};

use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use dashflow_wal::StoreConfig;

use crate::common::{Home, block_on, command, dashflow, observed, record_runs, support_graph, ticket};

/// A `dashflow ui` child process, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(home: &Home, extra: &[&str]) -> Server {
    let home_arg = home.path().display().to_string();
    let mut args = vec!["--home", home_arg.as_str(), "ui", "--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = command().args(&args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|word| word.starts_with("http://")).expect(&line).to_owned();
    Server { child, url }
}

/// A GET of `path` with `host` as the Host header: status and body.
pub(crate) fn get(url: &str, path: &str, host: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let mut stream = TcpStream::connect(&authority).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", host.unwrap_or(&authority));
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// Every file under `dir` with a hash of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut hasher = DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut hasher);
                files.insert(path.display().to_string(), hasher.finish());
            }
        }
    }
    files
}

#[test]
fn ui_serves_runs_runs_and_threads_on_loopback_and_changes_no_file_of_the_wal() {
    let home = Home::new();
    let runs = record_runs(&home);
    let db = home.path().join("checkpoints.db");
    let store = home.store(StoreConfig::default());
    block_on(async {
        let checkpointer = SqliteCheckpointer::open(&db).await.unwrap();
        let app = observed(support_graph(), &store).with_checkpointer(checkpointer);
        app.invoke(ticket("refund <b>now</b>"), dashflow::RunConfig::thread("t-<script>")).await.unwrap();
    });
    store.flush().unwrap();
    drop(store);
    let before = snapshot(&home.wal_dir());

    let server = serve(&home, &["--db", &db.display().to_string()]);
    assert!(server.url.starts_with("http://127.0.0.1:"), "{}", server.url);

    let (status, page) = get(&server.url, "/", None, &[]);
    assert_eq!(status, 200, "{page}");
    for run in [runs.completed, runs.failed, runs.answered, runs.echo] {
        assert!(page.contains(&run.to_string()), "run {run} missing from the runs page");
    }
    let (status, page) = get(&server.url, "/?status=failed", None, &[]);
    assert_eq!(status, 200);
    assert!(page.contains(&runs.failed.to_string()) && !page.contains(&runs.completed.to_string()), "{page}");

    let (status, page) = get(&server.url, &format!("/runs/{}", runs.failed), None, &[]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("the payment system is down"), "the error is shown in place: {page}");
    assert!(page.contains("<svg class=\"graph\""), "the graph is drawn: {page}");

    let (status, page) = get(&server.url, "/threads", None, &[]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("t-&lt;script&gt;") && !page.contains("t-<script>"), "thread ids are escaped: {page}");
    let (status, page) = get(&server.url, "/threads/t-%3Cscript%3E", None, &[]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("checkpoint"), "{page}");

    // A page of another site that rebinds its name to 127.0.0.1 is refused.
    let (status, _) = get(&server.url, "/", Some("evil.example"), &[]);
    assert_eq!(status, 421);
    drop(server);
    assert_eq!(snapshot(&home.wal_dir()), before, "the viewer changed a file of the WAL");
}

#[test]
fn ui_refuses_another_address_without_allow_remote_and_a_token() {
    let home = Home::new();
    record_runs(&home);
    let err = home.dashflow(&["ui", "--bind", "0.0.0.0:0"]);
    assert!(err.failed().contains("not a loopback address") && err.stderr.contains("--allow-remote"), "{err:#?}");
    let err = home.dashflow(&["ui", "--bind", "0.0.0.0:0", "--allow-remote"]);
    assert!(err.failed().contains("needs an access token"), "{err:#?}");
    let err = home.dashflow(&["ui", "--bind", "0.0.0.0:0", "--allow-remote", "--token", "short"]);
    assert!(err.failed().contains("at least 16"), "{err:#?}");
    let missing = dashflow(&["--home", "/nonexistent/dashflow-ui-test", "ui"]);
    assert!(missing.failed().contains("no DashFlow store at"), "{missing:#?}");
}

#[test]
fn a_remote_viewer_answers_only_requests_with_its_token() {
    let home = Home::new();
    record_runs(&home);
    let token = "0123456789abcdef-token";
    let home_arg = home.path().display().to_string();
    let args = ["--home", home_arg.as_str(), "ui", "--bind", "0.0.0.0:0", "--allow-remote"];
    let mut child = command().args(args).env("DASHFLOW_UI_TOKEN", token).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = Server { child, url: line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned() };
    assert!(server.url.ends_with(&format!("?token={token}")), "the printed URL carries the token: {line}");
    let port = server.url.trim_start_matches("http://0.0.0.0:").split('/').next().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(get(&url, "/", Some("example.org"), &[]).0, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(get(&url, "/", Some("example.org"), &[("Authorization", &bearer)]).0, 200);
    let wrong = "Bearer 0123456789abcdef-wrong";
    assert_eq!(get(&url, "/", Some("example.org"), &[("Authorization", wrong)]).0, 401);
    // The token in the URL is traded for a cookie.
    assert_eq!(get(&url, &format!("/?token={token}"), Some("example.org"), &[]).0, 303);
    let cookie = format!("dashflow_ui_token={token}");
    assert_eq!(get(&url, "/threads", Some("example.org"), &[("Cookie", &cookie)]).0, 200);
}

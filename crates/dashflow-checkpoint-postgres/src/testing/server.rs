//! [`TestServer`]: a PostgreSQL server of the test's own, which it may stop, start and
//! restart without disturbing the shared server that other tests use.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::postgres::PgConnectOptions;

use super::{REQUIRED_VAR, required, say};

/// How long `pg_ctl` waits for the server to come up or go down before it gives up.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Ports tried when the first free one is taken by someone else before the server binds it.
const PORT_TRIES: usize = 3;

/// Settings for a server that only tests use: reachable on loopback TCP only, and without
/// the flushes that make a real server durable (a test's data dies with its directory).
/// Prepared transactions are on because they keep their locks across a restart, which lets
/// a test hold a statement of the code under test in place while the server restarts.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
max_prepared_transactions = 10
";

/// A PostgreSQL cluster in a temporary directory, run with the binaries of the local
/// installation, for tests that must stop or restart the server under the code under test.
///
/// The binaries are found with `pg_config --bindir`, else in `/usr/lib/postgresql/<version>/bin`
/// (Debian and Ubuntu keep them off `PATH`). PostgreSQL refuses to run as root, so when the
/// tests run as root the cluster is created and run as the `postgres` OS user. The server
/// listens on `127.0.0.1` on a free port; its superuser is `postgres` (trust authentication)
/// with the database `postgres`. It runs without fsync, and with `max_prepared_transactions`
/// set, so that a test can hold locks across a restart with `PREPARE TRANSACTION`.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and removes the directory, also
/// when the test panicked. A test process killed outright leaves the server running.
///
/// ```no_run
/// use dashflow_checkpoint_postgres::PostgresCheckpointer;
/// use dashflow_checkpoint_postgres::testing::TestServer;
///
/// # async fn a_test() {
/// let Some(server) = TestServer::create("survives_a_restart").await else { return };
/// let pool = sqlx::PgPool::connect_with(server.connect_options()).await.unwrap();
/// let checkpointer = PostgresCheckpointer::from_pool(pool).await.unwrap();
/// server.restart().await;
/// # let _ = checkpointer;
/// # }
/// ```
#[derive(Debug)]
pub struct TestServer {
    bindir: PathBuf,
    /// Holds the data directory, the socket and the log.
    dir: PathBuf,
    port: u16,
    /// The OS user to run the binaries as, when the tests run as root.
    owner: Option<Owner>,
}

/// An OS user's ids.
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl TestServer {
    /// Creates and starts a cluster, or returns `None` (after a skip line naming `test`) when
    /// this machine cannot run one: no PostgreSQL binaries, running as root without a
    /// `postgres` user, or `initdb` failing.
    ///
    /// # Panics
    ///
    /// When `DASHFLOW_TEST_POSTGRES_REQUIRED=1` and the cluster cannot be created.
    pub async fn create(test: &str) -> Option<Self> {
        let created = tokio::task::spawn_blocking(Self::create_blocking).await;
        match created {
            Ok(Ok(server)) => Some(server),
            Ok(Err(reason)) if !required() => {
                say(&format!("skipped {test}: cannot run a PostgreSQL server of its own: {reason}"));
                None
            }
            Ok(Err(reason)) => panic!("{test}: {REQUIRED_VAR}=1 but a PostgreSQL server cannot be run: {reason}"),
            Err(error) => panic!("{test}: creating a PostgreSQL server failed: {error}"),
        }
    }

    fn create_blocking() -> Result<Self, String> {
        let bindir = find_bindir()?;
        let dir = std::env::temp_dir().join(format!("dashflow-pg-{}", ulid::Ulid::new().to_string().to_lowercase()));
        std::fs::create_dir(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        // From here on, dropping `server` removes the directory (and stops what was started).
        let mut server = Self { bindir, dir, port: 0, owner: None };
        // The new directory's owner is the user the tests run as, without asking libc.
        let me = std::fs::metadata(&server.dir).map_err(|error| error.to_string())?.uid();
        if me == 0 {
            let owner = postgres_user()?;
            std::os::unix::fs::chown(&server.dir, Some(owner.uid), Some(owner.gid))
                .map_err(|error| format!("cannot hand {} to the postgres user: {error}", server.dir.display()))?;
            server.owner = Some(owner);
        }
        server.init()?;
        for _ in 0..PORT_TRIES {
            server.port = free_port()?;
            match server.start_blocking() {
                Ok(()) => return Ok(server),
                // Another process may have bound the port between our probe and the server.
                Err(reason) if reason.contains("could not bind") || reason.contains("already in use") => continue,
                Err(reason) => return Err(reason),
            }
        }
        Err(format!("no free port found in {PORT_TRIES} tries"))
    }

    /// The port the server listens on at `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Options for a connection as the superuser `postgres` to the database `postgres`.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().host("127.0.0.1").port(self.port).username("postgres").database("postgres")
    }

    /// The URL of [`TestServer::connect_options`].
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as an operator would for a restart (`pg_ctl stop -m fast`): open
    /// sessions are terminated (SQLSTATE 57P01) and their transactions rolled back. Returns
    /// once the server is down; until [`TestServer::start`], connecting is refused.
    ///
    /// # Panics
    ///
    /// When the server does not stop.
    pub async fn stop(&self) {
        let command = self.pg_ctl(&["stop", "-m", "fast"]);
        if let Err(reason) = run_blocking(command).await {
            panic!("cannot stop the test PostgreSQL server: {reason}{}", self.log_tail());
        }
    }

    /// Starts the stopped server on the same port, returning once it accepts connections
    /// (`pg_ctl start -w` polls for that).
    ///
    /// # Panics
    ///
    /// When the server does not come up.
    pub async fn start(&self) {
        let command = self.start_command();
        if let Err(reason) = run_blocking(command).await {
            panic!("cannot start the test PostgreSQL server: {reason}{}", self.log_tail());
        }
    }

    /// Freezes the server (SIGSTOP to the postmaster and every process it started), as a
    /// stalled host or a long pause would: connections stay open and statements hang, nothing
    /// is refused. [`TestServer::resume`] thaws it.
    ///
    /// The postmaster stops first and the children are stopped only once it has: a stopped
    /// postmaster forks no backend a scan could miss, and reaps no child, so no child's id
    /// can pass to another process while it is being signalled. Returns once every process
    /// of the server is stopped.
    ///
    /// # Panics
    ///
    /// When the server's processes cannot be found, signalled or seen stopped.
    pub fn pause(&self) {
        let postmaster = self.postmaster();
        signal(&[postmaster.as_str()], "-STOP", true);
        wait_until_stopped(std::slice::from_ref(&postmaster));
        let children = children_of(&postmaster);
        // A child that exited meanwhile is a zombie now, not an error.
        let ids: Vec<&str> = children.iter().map(String::as_str).collect();
        signal(&ids, "-STOP", false);
        wait_until_stopped(&children);
    }

    /// Thaws a server frozen by [`TestServer::pause`]: the children first, while the stopped
    /// postmaster still holds their ids, then the postmaster.
    ///
    /// # Panics
    ///
    /// When the server's processes cannot be found or signalled.
    pub fn resume(&self) {
        let postmaster = self.postmaster();
        let children = children_of(&postmaster);
        let ids: Vec<&str> = children.iter().map(String::as_str).collect();
        signal(&ids, "-CONT", false);
        signal(&[postmaster.as_str()], "-CONT", true);
    }

    /// The postmaster's process id, from its pid file.
    fn postmaster(&self) -> String {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .unwrap_or_else(|error| panic!("the test server has no postmaster.pid: {error}"));
        pid_file.lines().next().unwrap_or_default().trim().to_owned()
    }

    /// [`TestServer::stop`], then [`TestServer::start`]: a restart with a real window in
    /// which the server is down.
    pub async fn restart(&self) {
        self.stop().await;
        self.start().await;
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A command running `program` of the installation, as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        // The tests' working directory may be closed to the server's user.
        command.current_dir(&self.dir);
        if let Some(owner) = self.owner {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command.args(args).arg("-D").arg(self.data()).args(["-w", "-t", PG_CTL_TIMEOUT_SECS]);
        command
    }

    fn start_command(&self) -> Command {
        let mut command = self.pg_ctl(&["start"]);
        command.arg("-l").arg(self.log()).arg("-o").arg(format!("-p {}", self.port));
        command
    }

    fn init(&self) -> Result<(), String> {
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(self.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        run(initdb)?;
        let socket = self.dir.display().to_string();
        if socket.contains('\'') {
            return Err(format!("the temporary directory {socket} has a quote in its name"));
        }
        let settings = format!("{SETTINGS}unix_socket_directories = '{socket}'\n");
        let conf = self.data().join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| std::io::Write::write_all(&mut file, settings.as_bytes()))
            .map_err(|error| format!("cannot write {}: {error}", conf.display()))
    }

    fn start_blocking(&self) -> Result<(), String> {
        run(self.start_command()).map_err(|reason| format!("{reason}{}", self.log_tail()))
    }

    /// The end of the server's log, to explain a failed start or stop.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let mut tail = String::from("\nserver log (end):");
        for line in &lines[lines.len().saturating_sub(20)..] {
            let _ = write!(tail, "\n  {line}");
        }
        tail
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            // Immediate: nothing of the test's data needs to survive.
            if let Err(reason) = run(self.pg_ctl(&["stop", "-m", "immediate"])) {
                say(&format!("could not stop the test PostgreSQL server in {}: {reason}", self.dir.display()));
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            say(&format!("could not remove {}: {error}", self.dir.display()));
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    // Debian and Ubuntu install each major version's server in its own directory, off `PATH`.
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries (initdb, pg_ctl) found through `pg_config --bindir` \
         or in /usr/lib/postgresql/<version>/bin; install the PostgreSQL server"
            .to_owned()
    })
}

/// The `postgres` OS user, from `/etc/passwd`.
fn postgres_user() -> Result<Owner, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some(Owner { uid: uid.parse().ok()?, gid: gid.parse().ok()? }),
                _ => None,
            }
        })
        .ok_or_else(|| {
            "the tests run as root, which PostgreSQL refuses, and there is no `postgres` user to run it as".to_owned()
        })
}

/// A port on `127.0.0.1` that nothing listens on right now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port: {error}"))
}

/// Runs `command` to completion; a failure carries its output.
fn run(mut command: Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|error| format!("cannot run {program}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// [`run`] off the async runtime's worker threads.
async fn run_blocking(command: Command) -> Result<(), String> {
    match tokio::task::spawn_blocking(move || run(command)).await {
        Ok(result) => result,
        Err(error) => Err(format!("the thread running the command failed: {error}")),
    }
}

/// The ids of the processes whose parent is `parent`.
fn children_of(parent: &str) -> Vec<String> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some((_, fields)) = process_stat(&entry.path()) else { continue };
        if fields.get(1).map(String::as_str) == Some(parent) {
            children.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    children
}

/// A process's state letter and the `stat` fields after it, or `None` when it is gone.
fn process_stat(dir: &Path) -> Option<(char, Vec<String>)> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // `pid (comm) state ppid ...`; the command name may hold spaces, so split after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields))
}

/// Sends `signal` to processes `ids`; when `all_must_succeed` is false, ids that are gone
/// are skipped (`kill` still signals the others).
fn signal(ids: &[&str], signal: &str, all_must_succeed: bool) {
    if ids.is_empty() {
        return;
    }
    let status = Command::new("kill").arg(signal).args(ids).stderr(std::process::Stdio::null()).status();
    match status {
        Ok(status) if status.success() || !all_must_succeed => {}
        _ => panic!("cannot send {signal} to the test server's processes {ids:?}"),
    }
}

/// Returns once each of `ids` is stopped, a zombie or gone.
fn wait_until_stopped(ids: &[String]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let running: Vec<&String> = ids
            .iter()
            .filter(|id| {
                process_stat(&Path::new("/proc").join(id))
                    .is_some_and(|(state, _)| !matches!(state, 'T' | 't' | 'Z' | 'X'))
            })
            .collect();
        if running.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            panic!("the test server's processes {running:?} did not stop within 10 s");
        }
        std::thread::yield_now();
    }
}

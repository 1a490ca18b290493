//! The README's way to depend on DashFlow while it is not published: a project outside this
//! workspace names the facade by path, and cargo resolves it (offline, from this workspace's
//! lock file, so the test needs no network).

use std::path::Path;
use std::process::Command;

#[test]
fn a_project_outside_the_workspace_depends_on_the_facade_by_path() {
    let facade = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = facade.ancestors().nth(2).unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    std::fs::write(project.path().join("src/main.rs"), "fn main() {}\n").unwrap();
    let manifest = format!(
        "[package]\nname = \"uses-dashflow\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
         [dependencies]\ndashflow = {{ path = {:?}, features = [\"postgres\"] }}\n\
         serde = {{ version = \"1\", features = [\"derive\"] }}\n\
         tokio = {{ version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }}\n\n[workspace]\n",
        facade.display().to_string(),
    );
    std::fs::write(project.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), project.path().join("Cargo.lock")).unwrap();

    // Only this machine's platform: the lock file also names crates of other targets (wasm's),
    // which a machine that never built for them has not downloaded.
    let version = Command::new("rustc").arg("-vV").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let host = version.lines().find_map(|line| line.strip_prefix("host: ")).expect("rustc -vV names its host");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--offline", "--format-version", "1", "--filter-platform", host])
        .current_dir(project.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages: Vec<&str> =
        metadata["packages"].as_array().unwrap().iter().map(|package| package["name"].as_str().unwrap()).collect();
    for needed in ["dashflow", "dashflow-executor", "dashflow-checkpoint-postgres", "dashflow-checkpoint-sqlite"] {
        assert!(packages.contains(&needed), "{needed} is not resolved: {packages:?}");
    }
}

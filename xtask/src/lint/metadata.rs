//! The workspace packages and their declared dependencies, read from `cargo metadata`.
//!
//! We parse the JSON with serde_json rather than the `cargo_metadata` crate: the check needs
//! three fields, and serde_json is already a workspace dependency.

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::{process, workspace};

/// A workspace member and the dependencies its manifest declares.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone)]
pub(crate) struct Dependency {
    pub(crate) name: String,
    pub(crate) kind: DependencyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DependencyKind {
    Normal,
    Build,
    Dev,
}

impl DependencyKind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            DependencyKind::Normal => "dependency",
            DependencyKind::Build => "build-dependency",
            DependencyKind::Dev => "dev-dependency",
        }
    }
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<RawPackage>,
    workspace_members: Vec<String>,
}

#[derive(Deserialize)]
struct RawPackage {
    id: String,
    name: String,
    dependencies: Vec<RawDependency>,
}

#[derive(Deserialize)]
struct RawDependency {
    /// The package name, even when the manifest renames the dependency.
    name: String,
    /// `null` for normal dependencies, else `"dev"` or `"build"`.
    kind: Option<String>,
}

/// Runs `cargo metadata` for the workspace. `--no-deps` is enough because only the manifests
/// of workspace members matter, and it needs no registry access.
pub(crate) fn workspace_packages() -> Result<Vec<Package>> {
    let json = process::stdout_of(workspace::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    parse(&json)
}

pub(crate) fn parse(json: &str) -> Result<Vec<Package>> {
    let metadata: Metadata = serde_json::from_str(json).context("could not parse `cargo metadata` output")?;
    let members = metadata.workspace_members;
    metadata.packages.into_iter().filter(|package| members.contains(&package.id)).map(Package::try_from).collect()
}

impl TryFrom<RawPackage> for Package {
    type Error = anyhow::Error;

    fn try_from(raw: RawPackage) -> Result<Package> {
        let dependencies = raw
            .dependencies
            .into_iter()
            .map(|dependency| {
                let kind = parse_kind(dependency.kind.as_deref())
                    .with_context(|| format!("in the dependencies of {}", raw.name))?;
                Ok(Dependency { name: dependency.name, kind })
            })
            .collect::<Result<_>>()?;
        Ok(Package { name: raw.name, dependencies })
    }
}

fn parse_kind(kind: Option<&str>) -> Result<DependencyKind> {
    match kind {
        None => Ok(DependencyKind::Normal),
        Some("build") => Ok(DependencyKind::Build),
        Some("dev") => Ok(DependencyKind::Dev),
        Some(other) => anyhow::bail!("unknown dependency kind `{other}`"),
    }
}

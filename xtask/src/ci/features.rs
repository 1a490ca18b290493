//! The `features` step: the facade builds in every feature combination a user can pick:
//! none, each feature alone, and all of them (the loop `cargo hack --each-feature` runs,
//! without installing it).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::{process, workspace};

/// The crate whose features are checked.
pub(crate) const FACADE: &str = "dashflow";

/// One `cargo check` of the facade: only these features (defaults off), or all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Combination {
    Only(Vec<String>),
    All,
}

impl Combination {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["check", "--package", FACADE, "--lib"].map(str::to_owned).to_vec();
        match self {
            Combination::Only(features) => {
                args.push("--no-default-features".to_owned());
                if !features.is_empty() {
                    args.extend(["--features".to_owned(), features.join(",")]);
                }
            }
            Combination::All => args.push("--all-features".to_owned()),
        }
        args
    }
}

/// None, each feature alone (`default` too, which names a set), and all.
pub(crate) fn combinations(features: &[String]) -> Vec<Combination> {
    let mut combinations = vec![Combination::Only(Vec::new())];
    combinations.extend(features.iter().map(|feature| Combination::Only(vec![feature.clone()])));
    combinations.push(Combination::All);
    combinations
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    features: BTreeMap<String, Vec<String>>,
}

/// The facade's features, from `cargo metadata`.
pub(crate) fn facade_features(metadata_json: &str) -> Result<Vec<String>> {
    let metadata: Metadata = serde_json::from_str(metadata_json).context("could not parse `cargo metadata` output")?;
    let facade = metadata
        .packages
        .into_iter()
        .find(|package| package.name == FACADE)
        .with_context(|| format!("`cargo metadata` lists no package `{FACADE}`"))?;
    Ok(facade.features.into_keys().collect())
}

pub(crate) fn run() -> Result<()> {
    let json = process::stdout_of(workspace::cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    for combination in combinations(&facade_features(&json)?) {
        process::run(workspace::cargo().args(combination.args()))?;
    }
    Ok(())
}

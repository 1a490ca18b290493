//! `cargo xtask lint`: checks the crate layering rules (the design brief, section 1) against the
//! dependencies each workspace member declares.
//!
//! Internal crates are the workspace members whose name starts with `dashflow`. Normal and build
//! dependencies must follow the rules in [`rules::RULES`]; dev-dependencies are exempt, so a
//! crate's tests may use anything. Every workspace member needs a rule, so a new crate cannot
//! slip in without someone deciding where it sits.

mod metadata;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Result, bail};

use self::metadata::{DependencyKind, Package};
use self::rules::{RULES, Rule, rule_for};

const INTERNAL_PREFIX: &str = "dashflow";

pub(crate) fn run() -> Result<()> {
    let packages = metadata::workspace_packages()?;
    let violations = check(&packages, RULES);
    if violations.is_empty() {
        println!("layering ok: {} workspace packages follow the rules", packages.len());
        return Ok(());
    }
    for violation in &violations {
        println!("layering violation: {violation}");
    }
    bail!("{} layering violation(s); see xtask/src/lint/rules.rs for the rules", violations.len())
}

/// A broken layering rule.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// `package` depends on an internal crate its rule does not allow.
    Forbidden {
        package: String,
        dependency: String,
        kind: DependencyKind,
        rule_pattern: &'static str,
        allowed: String,
        reason: &'static str,
    },
    /// No rule covers this workspace member.
    NoRule { package: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Forbidden { package, dependency, kind, rule_pattern, allowed, reason } => write!(
                f,
                "{package} has a {} on {dependency}, but the rule for `{rule_pattern}` allows {allowed} ({reason})",
                kind.describe(),
            ),
            Violation::NoRule { package } => write!(
                f,
                "{package} is not covered by any layering rule; add a line for it to RULES in \
                 xtask/src/lint/rules.rs"
            ),
        }
    }
}

/// Every violation of `rules` among the workspace `packages`, in package order.
pub(crate) fn check(packages: &[Package], rules: &[Rule]) -> Vec<Violation> {
    let internal: BTreeSet<&str> =
        packages.iter().map(|package| package.name.as_str()).filter(|name| name.starts_with(INTERNAL_PREFIX)).collect();
    packages.iter().flat_map(|package| check_package(package, &internal, rules)).collect()
}

fn check_package(package: &Package, internal: &BTreeSet<&str>, rules: &[Rule]) -> Vec<Violation> {
    let Some(rule) = rule_for(rules, &package.name) else {
        return vec![Violation::NoRule { package: package.name.clone() }];
    };
    let mut violations: Vec<Violation> = package
        .dependencies
        .iter()
        .filter(|dependency| dependency.kind != DependencyKind::Dev)
        .filter(|dependency| internal.contains(dependency.name.as_str()))
        .filter(|dependency| !rule.allows(&dependency.name))
        .map(|dependency| Violation::Forbidden {
            package: package.name.clone(),
            dependency: dependency.name.clone(),
            kind: dependency.kind,
            rule_pattern: rule.pattern,
            allowed: rule.allowed_description(),
            reason: rule.reason,
        })
        .collect();
    // A dependency declared once per target platform appears once per declaration.
    violations.dedup();
    violations
}

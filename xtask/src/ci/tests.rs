use super::{Options, Step};

fn flags(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

#[test]
fn no_flags_run_every_step_in_order() -> anyhow::Result<()> {
    let options = Options::parse(&[])?;
    assert_eq!(options.steps_to_run(), Step::ALL.to_vec());
    Ok(())
}

#[test]
fn skip_takes_a_comma_separated_list_in_either_spelling() -> anyhow::Result<()> {
    let spaced = Options::parse(&flags(&["--skip", "fmt,clippy"]))?;
    let joined = Options::parse(&flags(&["--skip=fmt,clippy"]))?;
    assert_eq!(spaced, joined);
    assert_eq!(spaced.steps_to_run(), vec![Step::Tidy, Step::Features, Step::Tests, Step::Doc, Step::Lint, Step::Loom]);
    Ok(())
}

#[test]
fn unknown_step_names_are_rejected() {
    let error = Options::parse(&flags(&["--skip", "fmt,lints"])).err();
    assert!(error.is_some_and(|error| error.to_string().contains("unknown ci step `lints`")));
}

#[test]
fn no_nextest_is_a_flag_of_its_own() -> anyhow::Result<()> {
    let options = Options::parse(&flags(&["--no-nextest"]))?;
    assert!(options.no_nextest);
    assert_eq!(options.steps_to_run().len(), Step::ALL.len());
    Ok(())
}

#[test]
fn the_facade_is_checked_with_no_features_each_alone_and_all() -> anyhow::Result<()> {
    use super::features::{Combination, combinations, facade_features};
    let json = r#"{"packages": [
        {"name": "other", "features": {"x": []}},
        {"name": "dashflow", "features": {"default": ["sqlite"], "sqlite": [], "postgres": []}}
    ]}"#;
    let features = facade_features(json)?;
    assert_eq!(features, ["default", "postgres", "sqlite"]);
    let only = |names: &[&str]| Combination::Only(names.iter().map(|name| (*name).to_owned()).collect());
    assert_eq!(
        combinations(&features),
        [only(&[]), only(&["default"]), only(&["postgres"]), only(&["sqlite"]), Combination::All]
    );
    Ok(())
}

use super::*;

#[test]
fn migration_versions_count_up_from_one_to_the_latest() {
    let versions: Vec<i64> = MIGRATIONS.iter().map(|migration| migration.version).collect();
    let expected: Vec<i64> = (1..=LATEST).collect();
    assert_eq!(versions, expected);
}

#[test]
fn every_migration_has_a_name_and_sql() {
    for migration in MIGRATIONS {
        assert!(!migration.name.is_empty(), "migration {} has no name", migration.version);
        assert!(migration.sql.contains("CREATE") || migration.sql.contains("ALTER"), "migration {}", migration.version);
    }
}

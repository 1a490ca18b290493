use std::path::PathBuf;

use super::*;

#[test]
fn postgres_urls_name_postgres_and_everything_else_a_sqlite_file() {
    assert_eq!(Database::parse("postgres://u@h/db"), Database::Postgres("postgres://u@h/db".into()));
    assert_eq!(Database::parse("postgresql://h/db"), Database::Postgres("postgresql://h/db".into()));
    assert_eq!(Database::parse("sqlite:///tmp/a.db"), Database::Sqlite(PathBuf::from("/tmp/a.db")));
    assert_eq!(Database::parse("sqlite:a.db"), Database::Sqlite(PathBuf::from("a.db")));
    assert_eq!(Database::parse(".dashflow/q.db"), Database::Sqlite(PathBuf::from(".dashflow/q.db")));
}

//! The archive's schema, as numbered migrations shipped in the binary and applied in order,
//! each in its own transaction with its number recorded.

/// (number, name, SQL), in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "archive", include_str!("../migrations/0001_archive.sql")),
    (
        2,
        "account_history",
        include_str!("../migrations/0002_account_history.sql"),
    ),
    (
        3,
        "balances",
        include_str!("../migrations/0003_balances.sql"),
    ),
];

/// Applies the migrations the database has not seen; returns how many it applied.
pub(crate) fn migrate(client: &mut postgres::Client) -> Result<usize, postgres::Error> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS aurigraph_migrations (
             number     INTEGER     NOT NULL PRIMARY KEY,
             name       TEXT        NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let mut applied = 0;
    for &(number, name, sql) in MIGRATIONS {
        let mut tx = client.transaction()?;
        // One migrator at a time: a second sink starting at once waits here.
        tx.batch_execute("LOCK TABLE aurigraph_migrations IN EXCLUSIVE MODE")?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM aurigraph_migrations WHERE number = $1",
                &[&number],
            )?
            .is_some();
        if !done {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO aurigraph_migrations (number, name) VALUES ($1, $2)",
                &[&number, &name],
            )?;
            applied += 1;
        }
        tx.commit()?;
    }
    Ok(applied)
}

//! Schema migrations: the numbered SQL files of `schema/<backend>/`, embedded at build time.
//!
//! Each database records the migrations applied to it (number, name, SHA-256 of the SQL). Opening a database whose
//! schema is newer than this binary, or whose applied migrations differ from this binary's files, is refused;
//! each pending migration runs in its own transaction, so a failure leaves the database at the last good version.

use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// One numbered migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its number, from 1.
    pub version: u32,
    /// The file name after the number.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

impl Migration {
    /// Hex SHA-256 of the SQL, recorded when the migration is applied.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// A migration recorded in a database.
#[derive(Clone, Debug)]
pub struct AppliedMigration {
    /// Its number.
    pub version: u32,
    /// The checksum recorded when it was applied.
    pub checksum: String,
}

/// What `migrate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    /// The schema version before.
    pub from_version: u32,
    /// The schema version after.
    pub to_version: u32,
    /// Names of the migrations applied now.
    pub applied: Vec<String>,
}

/// Compares the applied migrations with the known ones; returns those still to apply.
pub fn pending<'a>(
    known: &'a [Migration],
    applied: &[AppliedMigration],
    location: &str,
) -> Result<&'a [Migration], StoreError> {
    let newest_known = known.last().map_or(0, |m| m.version);
    if let Some(newest) = applied.iter().map(|m| m.version).max()
        && newest > newest_known
    {
        return Err(StoreError::Unavailable(format!(
            "{location}: database schema version {newest} is newer than this dossier binary supports \
             ({newest_known}); upgrade dossier"
        )));
    }
    for record in applied {
        let Some(migration) = known.iter().find(|m| m.version == record.version) else {
            return Err(StoreError::Unavailable(format!(
                "{location}: migration {} is recorded but unknown to this binary",
                record.version
            )));
        };
        if migration.checksum() != record.checksum {
            return Err(StoreError::Unavailable(format!(
                "{location}: migration {:04}_{} differs from the one applied to this database",
                migration.version, migration.name
            )));
        }
    }
    let current = applied.len();
    if applied.iter().map(|m| m.version as usize).ne(1..=current) {
        return Err(StoreError::Unavailable(format!("{location}: applied migrations are not numbered 1..{current}")));
    }
    Ok(&known[current..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(known: &[Migration], n: usize) -> Vec<AppliedMigration> {
        known[..n].iter().map(|m| AppliedMigration { version: m.version, checksum: m.checksum() }).collect()
    }

    #[test]
    fn pending_on_fresh_database_returns_all() {
        assert_eq!(pending(SQLITE, &[], "x").expect("ok").len(), SQLITE.len());
        assert_eq!(pending(POSTGRES, &applied(POSTGRES, POSTGRES.len()), "x").expect("ok").len(), 0);
    }

    #[test]
    fn pending_with_newer_schema_returns_error() {
        let mut records = applied(SQLITE, SQLITE.len());
        records.push(AppliedMigration { version: SQLITE.len() as u32 + 1, checksum: String::new() });
        let error = pending(SQLITE, &records, "db.sqlite").expect_err("newer schema");
        assert!(error.to_string().contains("newer than this dossier binary"), "{error}");
    }

    #[test]
    fn pending_with_changed_migration_returns_error() {
        let mut records = applied(SQLITE, 1);
        records[0].checksum = "0".repeat(64);
        assert!(pending(SQLITE, &records, "x").is_err());
    }
}

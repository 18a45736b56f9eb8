//! Control-plane persistence in an embedded SQLite file through `sqlx`.
//!
//! Each record is one row `(name, body)` with the record as JSON, in three tables. The SQL is
//! kept portable (no SQLite-only syntax, `$n` placeholders) so a PostgreSQL pool can follow
//! with the same statements. Writes are single statements, so a crash leaves either the old
//! or the new row.

use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::ApiError;

/// The tables, one per record kind.
#[derive(Clone, Copy, Debug)]
pub enum Table {
    /// Models.
    Models,
    /// Endpoint configs.
    EndpointConfigs,
    /// Endpoints.
    Endpoints,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Models => "models",
            Table::EndpointConfigs => "endpoint_configs",
            Table::Endpoints => "endpoints",
        }
    }
}

/// A handle to the control-plane database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) `<dir>/pier.db`.
    pub async fn open(dir: &Path) -> Result<Self, sqlx::Error> {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        let url = format!("sqlite://{}", dir.join("pier.db").display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        for table in [Table::Models, Table::EndpointConfigs, Table::Endpoints] {
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, body TEXT NOT NULL)",
                table.name()
            ))
            .execute(&pool)
            .await?;
        }
        Ok(Self { pool })
    }

    /// Inserts a new record; `Ok(false)` if the name is taken.
    pub async fn insert<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        record: &T,
    ) -> Result<bool, ApiError> {
        let body = serde_json::to_string(record).map_err(ApiError::internal)?;
        let sql = format!(
            "INSERT INTO {} (name, body) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            table.name()
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(ApiError::internal)?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces an existing record.
    pub async fn update<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        record: &T,
    ) -> Result<(), ApiError> {
        let body = serde_json::to_string(record).map_err(ApiError::internal)?;
        let sql = format!("UPDATE {} SET body = $2 WHERE name = $1", table.name());
        sqlx::query(&sql)
            .bind(name)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(ApiError::internal)?;
        Ok(())
    }

    /// Reads one record.
    pub async fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<T>, ApiError> {
        let sql = format!("SELECT body FROM {} WHERE name = $1", table.name());
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(ApiError::internal)?;
        row.map(|(body,)| serde_json::from_str(&body).map_err(ApiError::internal))
            .transpose()
    }

    /// Reads every record of a table, by name.
    pub async fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, ApiError> {
        let sql = format!("SELECT body FROM {} ORDER BY name", table.name());
        let rows: Vec<(String,)> = sqlx::query_as(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(ApiError::internal)?;
        rows.into_iter()
            .map(|(body,)| serde_json::from_str(&body).map_err(ApiError::internal))
            .collect()
    }

    /// Deletes a record; `Ok(false)` if there was none.
    pub async fn delete(&self, table: Table, name: &str) -> Result<bool, ApiError> {
        let sql = format!("DELETE FROM {} WHERE name = $1", table.name());
        let done = sqlx::query(&sql)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(ApiError::internal)?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes the pool, flushing the write-ahead log.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn insert_get_update_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).await.unwrap();
        assert!(
            db.insert(Table::Models, "a", &serde_json::json!({"x": 1}))
                .await
                .unwrap()
        );
        assert!(
            !db.insert(Table::Models, "a", &serde_json::json!({"x": 2}))
                .await
                .unwrap(),
            "names are unique"
        );
        db.update(Table::Models, "a", &serde_json::json!({"x": 3}))
            .await
            .unwrap();
        db.close().await;

        let db = Db::open(dir.path()).await.unwrap();
        let got: serde_json::Value = db.get(Table::Models, "a").await.unwrap().unwrap();
        assert_eq!(got["x"], 3);
        assert_eq!(
            db.list::<serde_json::Value>(Table::Models)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(db.delete(Table::Models, "a").await.unwrap());
        assert!(
            db.get::<serde_json::Value>(Table::Models, "a")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!db.delete(Table::Models, "a").await.unwrap());
    }
}

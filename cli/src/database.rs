//! `--database-url`, shared by every command that opens the control-plane database
//! (`pier serve`, `pier worker`, `pier transform`).

use std::path::Path;

use clap::Args;

/// Which database holds the control plane and the job queue.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Control-plane and job database: sqlite://PATH, or
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE (also postgresql://, with libpq parameters
    /// such as ?sslmode=require) for several `pier serve` replicas and `pier worker`s on any
    /// machines. Default: SQLite in the data folder (sqlite://DATA_DIR/pier.db).
    #[arg(long, env = "PIER_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    /// The URL to open: the flag's, or SQLite in `data_dir`.
    pub fn url(&self, data_dir: &Path) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| pier_db::Db::default_url(data_dir))
    }

    /// Opens the database (shared: no serve lock).
    pub async fn open(&self, data_dir: &Path) -> anyhow::Result<pier_db::Db> {
        Ok(pier_db::Db::connect(&self.url(data_dir)).await?)
    }
}

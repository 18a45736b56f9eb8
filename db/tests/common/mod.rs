//! Both backends for the tests: a fresh SQLite folder or a fresh PostgreSQL server, and a
//! macro that runs one test body on each.
#![allow(dead_code)]

#[path = "../../../tests/support/postgres.rs"]
pub mod postgres;

use pier_db::Db;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database that lives as long as the fixture.
pub struct Fixture {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub pg: Option<postgres::Postgres>,
    pub url: String,
}

impl Fixture {
    pub fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (pg, url) = match kind {
            Kind::Sqlite => (None, Db::default_url(dir.path())),
            Kind::Postgres => {
                let pg = postgres::Postgres::start();
                let url = pg.url();
                (Some(pg), url)
            }
        };
        Self { kind, dir, pg, url }
    }

    /// Opens (again) the database.
    pub async fn open(&self) -> Db {
        Db::connect(&self.url).await.unwrap()
    }

    pub fn pg(&self) -> &postgres::Postgres {
        self.pg.as_ref().expect("a PostgreSQL fixture")
    }
}

/// `both!(name)` runs `async fn name(kind: Kind)` as two tests, `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Kind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Kind::Postgres).await
            }
        }
    )*};
}

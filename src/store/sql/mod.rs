//! What the SQLite and PostgreSQL stores share: the SQL text, the values bound to it, the rows
//! decoded from it, and the error mapping.
//!
//! Both backends hold the same tables and columns (`migrations/sqlite/`, `migrations/postgres/`),
//! so one text serves both wherever their dialects agree: SQLite reads the `$1` numbered
//! parameters used here as PostgreSQL does. What differs is each backend's [`Backend`] impl
//! (placeholders of the usage batch, the day bucket, sums, the prefix function, how an `INTEGER`
//! column decodes); what only one backend does (PostgreSQL's change counter, its compare-and-swap
//! of sign-in tokens, its advisory lock) stays in that backend. Each backend runs the queries on
//! its own pool through the few calls of [`Backend`]; [`ops`] are the trait's operations both
//! run alike.

pub mod ops;
pub mod queries;
pub mod rows;

use std::future::Future;

use sqlx::database::HasStatementCache;
use sqlx::postgres::PgQueryResult;
use sqlx::query::Query;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{
    Database, Decode, Encode, Executor, IntoArguments, Pool, Postgres, QueryBuilder, Sqlite, Type,
};

use super::StoreError;

/// A Rust type both backends decode a column into (`String`, `&str`, `i64`, `bool`, ...).
pub trait Value<'r>:
    Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

impl<'r, T> Value<'r> for T where
    T: Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

/// A Rust type both backends bind as a parameter.
pub trait Param<'q>:
    Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres> + Send + 'q
{
}

impl<'q, T> Param<'q> for T where
    T: Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres> + Send + 'q
{
}

/// A backend's row, read by column name.
pub trait StoreRow: sqlx::Row {
    fn col<'r, T: Value<'r>>(&'r self, column: &str) -> Result<T, sqlx::Error>;
    /// An `INTEGER` column (`usage.status`): 64 bits in SQLite, 32 in PostgreSQL.
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
}

/// A query of backend `DB` with its arguments.
pub type DbQuery<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// What the two SQL backends do differently, and the bridge that lets the shared code bind
/// values without naming the backend.
pub trait Backend: Plumbing + Database<Row: StoreRow> + HasStatementCache {
    /// Usage rows per `INSERT` (the parameter limit: SQLite 32,766, PostgreSQL 65,535).
    const USAGE_ROWS_PER_STATEMENT: usize;
    /// The UTC day (`YYYY-MM-DD`) of `at_ms`.
    const DAY_BUCKET: &'static str;
    /// The sum of `cost_usd` as a float, 0 over no rows.
    const COST_SUM: &'static str;
    /// A call taking the first characters of `action`, up to their count: `{ACTION_HEAD}n)`.
    const ACTION_HEAD: &'static str;

    /// The `i`-th (from 1) placeholder of the usage batch.
    fn placeholder(i: usize) -> String;
    /// The sum of an integer column that saturates at `i64::MAX` instead of failing.
    fn saturating_sum(column: &str) -> String;

    // The calls whose bodies need the backend named: only then does a [`Param`] prove it
    // encodes there, and do arguments of `'static` shorten to `'b` (a generic
    // `Database::Arguments` is invariant). Each impl takes them from [`backend_bridge!`]; the
    // rest is [`Plumbing`].
    fn bind<'q, T: Param<'q>>(query: DbQuery<'q, Self>, value: T) -> DbQuery<'q, Self>;
    fn push_bind<'a, T: Param<'a>>(query: &mut QueryBuilder<'a, Self>, value: T);
    /// The query a builder of owned values made.
    fn built<'b>(query: &'b mut QueryBuilder<'static, Self>) -> DbQuery<'b, Self>;
}

/// The bodies of [`Backend::bind`], [`Backend::push_bind`] and [`Backend::built`], alike in each
/// backend's impl but not expressible once as a generic (see the trait).
macro_rules! backend_bridge {
    () => {
        fn bind<'q, T: $crate::store::sql::Param<'q>>(
            query: $crate::store::sql::DbQuery<'q, Self>,
            value: T,
        ) -> $crate::store::sql::DbQuery<'q, Self> {
            query.bind(value)
        }

        fn push_bind<'a, T: $crate::store::sql::Param<'a>>(
            query: &mut ::sqlx::QueryBuilder<'a, Self>,
            value: T,
        ) {
            query.push_bind(value);
        }

        fn built<'b>(
            query: &'b mut ::sqlx::QueryBuilder<'static, Self>,
        ) -> $crate::store::sql::DbQuery<'b, Self> {
            query.build()
        }
    };
}
pub(crate) use backend_bridge;

/// A statement's result that says how many rows it changed (each backend's own type has the
/// method, sqlx's [`Database`] does not name it).
pub trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// The calls that run a query, the same for every sqlx database whose pool and connections
/// execute queries: written once, for both backends, by the impl below.
pub trait Plumbing: Database {
    /// Runs a statement on a connection (a transaction); how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        query: DbQuery<'c, Self>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
    /// Runs a statement on a pooled connection; how many rows it changed.
    fn run<'c>(
        pool: &'c Pool<Self>,
        query: DbQuery<'c, Self>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
    fn fetch_all<'c>(
        pool: &'c Pool<Self>,
        query: DbQuery<'c, Self>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;
    fn fetch_optional<'c>(
        pool: &'c Pool<Self>,
        query: DbQuery<'c, Self>,
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'c;
}

impl<DB> Plumbing for DB
where
    DB: Database<QueryResult: RowsAffected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn execute<'c>(
        conn: &'c mut Self::Connection,
        query: DbQuery<'c, Self>,
    ) -> Result<u64, sqlx::Error> {
        Ok(query.execute(conn).await?.rows())
    }

    async fn run<'c>(pool: &'c Pool<Self>, query: DbQuery<'c, Self>) -> Result<u64, sqlx::Error> {
        Ok(query.execute(pool).await?.rows())
    }

    async fn fetch_all<'c>(
        pool: &'c Pool<Self>,
        query: DbQuery<'c, Self>,
    ) -> Result<Vec<Self::Row>, sqlx::Error> {
        query.fetch_all(pool).await
    }

    async fn fetch_optional<'c>(
        pool: &'c Pool<Self>,
        query: DbQuery<'c, Self>,
    ) -> Result<Option<Self::Row>, sqlx::Error> {
        query.fetch_optional(pool).await
    }
}

/// `query.value(v)`: [`Backend::bind`] in a chain.
pub trait BindValue<'q>: Sized {
    fn value<T: Param<'q>>(self, value: T) -> Self;
}

impl<'q, DB: Backend> BindValue<'q> for DbQuery<'q, DB> {
    fn value<T: Param<'q>>(self, value: T) -> Self {
        DB::bind(self, value)
    }
}

pub fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(inner) if inner.is_unique_violation() => {
            StoreError::Conflict(inner.message().to_owned())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// `NotFound(what)` when a statement changed no row.
pub fn affected(rows: u64, what: &str) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound(what.to_owned()))
    } else {
        Ok(())
    }
}

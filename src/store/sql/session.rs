//! A [`Session`] and [`SqlRow`] over an sqlx driver, generated once for each
//! backend: only how a [`Value`] is bound and how a time is read differ.
//!
//! [`Session`]: super::Session
//! [`SqlRow`]: super::SqlRow
//! [`Value`]: super::Value

/// `sqlx_session!(Name, Database, Connection, Row, Arguments, bind, read_time)`:
/// a session (a transaction or a pooled connection) implementing `Session`,
/// and `SqlRow` for the row type. `bind(query, Value) -> query` binds one
/// value; `read_time(row, column)` reads an optional time. A session made
/// with `persistent = false` prepares every statement unnamed (what a
/// transaction pooler such as PgBouncer needs).
macro_rules! sqlx_session {
    ($Session:ident, $Db:ty, $Conn:ty, $Row:ty, $Args:ty, $bind:path, $read_time:path) => {
        pub struct $Session {
            inner: SessionInner,
            persistent: bool,
        }

        enum SessionInner {
            Tx(sqlx::Transaction<'static, $Db>),
            Conn(sqlx::pool::PoolConnection<$Db>),
        }

        impl $Session {
            pub(super) fn tx(t: sqlx::Transaction<'static, $Db>, persistent: bool) -> Self {
                $Session {
                    inner: SessionInner::Tx(t),
                    persistent,
                }
            }

            pub(super) fn pooled(c: sqlx::pool::PoolConnection<$Db>, persistent: bool) -> Self {
                $Session {
                    inner: SessionInner::Conn(c),
                    persistent,
                }
            }

            pub(super) fn conn(&mut self) -> &mut $Conn {
                match &mut self.inner {
                    SessionInner::Tx(t) => t,
                    SessionInner::Conn(c) => c,
                }
            }

            /// Whether statements may be prepared once and kept (named); for
            /// statements a backend builds itself (SQLite has no pooler).
            #[allow(dead_code)]
            pub(super) fn persistent(&self) -> bool {
                self.persistent
            }

            fn query(
                &self,
                sql: &str,
                args: Vec<$crate::store::sql::Value>,
            ) -> sqlx::query::Query<'static, $Db, $Args> {
                args.into_iter()
                    .fold(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), $bind)
                    .persistent(self.persistent)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::sql::Session for $Session {
            type Row = $Row;

            async fn fetch_all(
                &mut self,
                sql: &str,
                args: Vec<$crate::store::sql::Value>,
            ) -> Result<Vec<$Row>, $crate::store::StoreError> {
                self.query(sql, args)
                    .fetch_all(self.conn())
                    .await
                    .map_err(db_err)
            }

            async fn fetch_optional(
                &mut self,
                sql: &str,
                args: Vec<$crate::store::sql::Value>,
            ) -> Result<Option<$Row>, $crate::store::StoreError> {
                self.query(sql, args)
                    .fetch_optional(self.conn())
                    .await
                    .map_err(db_err)
            }

            async fn execute(
                &mut self,
                sql: &str,
                args: Vec<$crate::store::sql::Value>,
            ) -> Result<u64, $crate::store::StoreError> {
                let done = self
                    .query(sql, args)
                    .execute(self.conn())
                    .await
                    .map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn for_each(
                &mut self,
                sql: &str,
                args: Vec<$crate::store::sql::Value>,
                each: &mut (dyn FnMut($Row) -> Result<(), $crate::store::StoreError> + Send),
            ) -> Result<(), $crate::store::StoreError> {
                use futures::TryStreamExt;
                let q = self.query(sql, args);
                let mut rows = q.fetch(self.conn());
                while let Some(row) = rows.try_next().await.map_err(db_err)? {
                    each(row)?;
                }
                Ok(())
            }

            async fn commit(self) -> Result<(), $crate::store::StoreError> {
                match self.inner {
                    SessionInner::Tx(t) => t.commit().await.map_err(db_err),
                    SessionInner::Conn(_) => Ok(()),
                }
            }
        }

        fn get<'r, T>(row: &'r $Row, col: &'static str) -> Result<T, $crate::store::StoreError>
        where
            T: sqlx::Decode<'r, $Db> + sqlx::Type<$Db>,
        {
            sqlx::Row::try_get(row, col).map_err(|e| $crate::store::StoreError::corrupt(col, e))
        }

        impl $crate::store::sql::SqlRow for $Row {
            fn opt_bool(
                &self,
                col: &'static str,
            ) -> Result<Option<bool>, $crate::store::StoreError> {
                get(self, col)
            }
            fn opt_i64(&self, col: &'static str) -> Result<Option<i64>, $crate::store::StoreError> {
                get(self, col)
            }
            fn opt_text(
                &self,
                col: &'static str,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                get(self, col)
            }
            fn opt_bytes(
                &self,
                col: &'static str,
            ) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                get(self, col)
            }
            fn opt_uuid(
                &self,
                col: &'static str,
            ) -> Result<Option<uuid::Uuid>, $crate::store::StoreError> {
                get(self, col)
            }
            fn opt_time(
                &self,
                col: &'static str,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                $read_time(self, col)
            }
            fn opt_json<T: serde::de::DeserializeOwned>(
                &self,
                col: &'static str,
            ) -> Result<Option<T>, $crate::store::StoreError> {
                get::<Option<sqlx::types::Json<T>>>(self, col).map(|v| v.map(|j| j.0))
            }
        }
    };
}

pub(crate) use sqlx_session;

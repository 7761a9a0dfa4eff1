//! Reading: the decision's rate counts and fingerprint, statements prepared once per
//! connection, records by key and pages of them, and the bridge a synchronous read waits on.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::runtime::RuntimeFlavor;
use tokio_postgres::types::ToSql;
use ulid::Ulid;

use super::connection::{db_error, pool_error};
use super::{PgStore, Shared, decode, from_pg, lock, pg_i64};
use crate::store::derived::{MINUTE_MS, window_counts};
use crate::store::paging::PageBudget;
use crate::store::{FingerprintStats, RateKey, StoreError};

/// The rate buckets of a set of keys since the longest window began.
pub(super) struct RateQuery {
    dimensions: Vec<&'static str>,
    values: Vec<String>,
    oldest_minute: u64,
}

impl RateQuery {
    pub(super) fn new(keys: &[RateKey], windows: &[Duration], now_ms: u64) -> RateQuery {
        RateQuery {
            dimensions: keys.iter().map(|key| key.dimension.as_str()).collect(),
            values: keys.iter().map(|key| key.value.clone()).collect(),
            oldest_minute: oldest_minute(windows, now_ms),
        }
    }

    /// Rows of `(key's position from 1, minute, count)`.
    pub(super) async fn rows(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        if self.dimensions.is_empty() {
            return Ok(Vec::new());
        }
        let statement = prepared(
            client,
            "SELECT k.n, b.minute, b.count \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(dimension, value, n) \
             JOIN rate_buckets b ON b.dimension = k.dimension AND b.value = k.value \
             WHERE b.minute >= $3",
        )
        .await?;
        client
            .query(
                &statement,
                &[&self.dimensions, &self.values, &pg_i64(self.oldest_minute)],
            )
            .await
            .map_err(|error| db_error(&error))
    }
}

/// The first minute bucket the longest of `windows` ending at `now_ms` reaches into.
fn oldest_minute(windows: &[Duration], now_ms: u64) -> u64 {
    let longest = windows.iter().max().copied().unwrap_or_default();
    now_ms.saturating_sub(u64::try_from(longest.as_millis()).unwrap_or(u64::MAX)) / MINUTE_MS
}

pub(super) async fn fingerprint_row(
    client: &deadpool_postgres::Client,
    fingerprint: &str,
) -> Result<Option<FingerprintStats>, StoreError> {
    let statement = prepared(
        client,
        "SELECT approved, first_seen_ms, first_decision_id FROM fingerprints \
         WHERE fingerprint = $1",
    )
    .await?;
    let row = client
        .query_opt(&statement, &[&fingerprint])
        .await
        .map_err(|error| db_error(&error))?;
    Ok(row.map(|row| FingerprintStats {
        approved: from_pg(row.get(0)),
        first_seen_ms: from_pg(row.get(1)),
        first_decision_id: row.get(2),
    }))
}

impl Shared {
    /// The counts of `keys` in each window from the database's `rows` (of [`RateQuery`])
    /// and this replica's counts still being committed.
    pub(super) fn counts(
        &self,
        rows: &[tokio_postgres::Row],
        keys: &[RateKey],
        windows: &[Duration],
        now_ms: u64,
    ) -> Vec<Vec<u64>> {
        if keys.is_empty() {
            return Vec::new();
        }
        let oldest_minute = oldest_minute(windows, now_ms);
        let mut buckets: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); keys.len()];
        for row in rows {
            let n: i64 = row.get(0);
            let index = usize::try_from(n - 1).unwrap_or(usize::MAX);
            if let Some(key_buckets) = buckets.get_mut(index) {
                *key_buckets.entry(from_pg(row.get(1))).or_default() += from_pg(row.get(2));
            }
        }
        let uncommitted = lock(&self.uncommitted);
        for ((key, minute), count) in uncommitted.iter() {
            for (index, wanted) in keys.iter().enumerate() {
                if wanted == key && *minute >= oldest_minute {
                    *buckets[index].entry(*minute).or_default() += count;
                }
            }
        }
        drop(uncommitted);
        buckets
            .iter()
            .map(|key_buckets| {
                window_counts(
                    key_buckets
                        .iter()
                        .rev()
                        .map(|(minute, count)| (*minute, *count)),
                    windows,
                    now_ms,
                )
            })
            .collect()
    }
}

/// Rows of `(id, record)` decoded, with each record's size in bytes.
pub(super) fn decoded<T: DeserializeOwned>(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<(String, T, usize)>, StoreError> {
    rows.iter()
        .map(|row| {
            let id: String = row.get(0);
            let text: &str = row.get(1);
            let value = decode(&id, text)?;
            Ok((id, value, text.len()))
        })
        .collect()
}

pub(super) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

pub(super) fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PgStore {
    /// Runs `query` on the store's runtime and waits for it (the synchronous reads). On a
    /// worker of a multi-threaded runtime (the server's), the worker's other tasks move to
    /// another thread while this one waits, so that one decision's round trip to the
    /// database does not hold up every other call on that worker.
    pub(super) fn blocking<T: Send + 'static>(
        &self,
        query: impl FnOnce(Arc<Shared>) -> BoxedQuery<T>,
    ) -> Result<T, StoreError> {
        let query = query(self.shared.clone());
        let wait = || bridge(&self.handle, query);
        match tokio::runtime::Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// One record by its key: `sql` selects `(key, record)`.
    pub(super) fn get_record<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let statement = prepared(&client, sql).await?;
                let row = client
                    .query_opt(&statement, &[&key])
                    .await
                    .map_err(|error| db_error(&error))?;
                match row {
                    Some(row) => decode(&key, row.get::<_, &str>(1)).map(Some),
                    None => Ok(None),
                }
            })
        })
    }

    /// A statement whose result is not needed.
    pub(super) fn execute(&self, sql: &'static str, params: Params) -> Result<(), StoreError> {
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let statement = prepared(&client, sql).await?;
                client
                    .execute(&statement, &refs(&params))
                    .await
                    .map_err(|error| db_error(&error))?;
                Ok(())
            })
        })
    }

    /// A page of `table`'s records, newest first, from below `page_token`.
    pub(super) fn list_newest<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        page_size: usize,
        page_token: Option<Ulid>,
    ) -> Result<(Vec<T>, Option<Ulid>), StoreError> {
        let upper = page_token.unwrap_or(Ulid(u128::MAX)).to_string();
        let limit = pg_i64(PageBudget::entries(page_size) as u64 + 1);
        let sql = format!("SELECT id, record FROM {table} WHERE id < $1 ORDER BY id DESC LIMIT $2");
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let rows = client
                    .query(sql.as_str(), &[&upper, &limit])
                    .await
                    .map_err(|error| db_error(&error))?;
                let mut budget = PageBudget::new(page_size);
                let mut records = Vec::new();
                let mut last: Option<String> = None;
                let mut next = None;
                for (id, record, bytes) in decoded::<T>(&rows)? {
                    if !budget.take(bytes) {
                        next = last
                            .as_deref()
                            .and_then(|last| Ulid::from_string(last).ok());
                        break;
                    }
                    records.push(record);
                    last = Some(id);
                }
                Ok((records, next))
            })
        })
    }
}

/// `sql` prepared once per connection (deadpool keeps the statement with it): a statement
/// run by its text is parsed and described by the server first, a round trip of its own.
pub(super) async fn prepared(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client
        .prepare_cached(sql)
        .await
        .map_err(|error| db_error(&error))
}

/// Runs `future` on `handle` and blocks this thread until it is done. Never called from
/// the store's own runtime.
pub(super) fn bridge<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver
        .recv()
        .map_err(|_| StoreError::Io("the database task stopped".to_owned()))?
}

pub(super) type BoxedQuery<T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

//! The PostgreSQL store: several clientgate replicas on one database behave as one service.
//!
//! Everything the sled store keeps is here, shared: the decision log, tickets, rate buckets,
//! fingerprints, the CIMD cache, approved documents, shadow disagreements and the admin
//! audit trail ([`schema`]). A decision and what it creates are written and committed
//! before its answer, many decisions to one transaction ([`commit`]); rate buckets and
//! fingerprints are counted in that same transaction, so every replica reads the counts of
//! all. What a replica keeps to itself: the registrations it counted whose commit is still
//! under way (added to what it reads, so that concurrent decisions on one replica see each
//! other before their commit), the negative fetch cache, console sessions and metrics.
//!
//! The store runs its own small runtime, on which the connections live: the [`Store`]
//! interface's reads are synchronous (but for [`Store::observation`], the read every
//! decision makes, which is awaited), and a blocking wait for the database must not stall
//! the connections' own tasks.
//! Background jobs (ticket expiry, retention) take a transaction-scoped advisory lock, so
//! that one replica at a time does each; the others skip the pass.

mod commit;
mod connection;
mod jobs;
mod reads;
mod schema;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};
use ulid::Ulid;

use self::commit::Job;
use self::connection::{chain, db_error, describe_target, pool, pool_error, probe};
use self::reads::{Params, RateQuery, bridge, decoded, fingerprint_row, prepared, refs};
use super::derived::MINUTE_MS;
use super::paging::PageBudget;
use super::{
    AdminAction, AdminActionPage, CacheEntry, DecisionPage, DecisionQuery, DecisionRecord,
    Disagreement, DisagreementPage, FingerprintStats, Observation, PruneCutoffs, PruneReport,
    RateKey, Recorded, ResolveError, Store, StoreError, StoreFuture, StoreStats, TicketPage,
    TicketQuery,
};
use crate::metrics::{BATCH_BUCKETS, Histogram, LATENCY_BUCKETS_MICROS};
use crate::step_up::{self, OperatorResolution, StepUpTicket};

pub use self::jobs::{EXPIRY_LOCK, PRUNE_LOCK};
pub use self::schema::SCHEMA_VERSION;

/// Tickets examined per page at most, as on sled.
const SCAN_LIMIT: usize = 10_000;

/// How to reach the database (`[store]` `postgres_*`).
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresSettings {
    /// A libpq connection string or `postgres://` URL.
    pub url: String,
    /// Connections kept open at most.
    pub pool_size: usize,
    /// Every statement is cancelled after this long (the server's `statement_timeout`), and a
    /// connection that cannot be made in this time fails.
    pub statement_timeout: Duration,
    /// With a CA file, the connection is TLS (rustls), and the server's certificate must
    /// chain to it.
    pub ca_file: Option<PathBuf>,
}

pub struct PgStore {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What the store's tasks share.
pub(super) struct Shared {
    pool: Pool,
    /// Registrations counted by this replica whose commit is under way: `(key, minute)`.
    uncommitted: Mutex<HashMap<(RateKey, u64), u64>>,
    serving: watch::Sender<bool>,
    recorded: AtomicU64,
    commits: AtomicU64,
    commit_micros: Histogram,
    commit_batch: Histogram,
}

impl Shared {
    fn count(&self, keys: &[RateKey], minute: u64) {
        let mut uncommitted = lock(&self.uncommitted);
        for key in keys {
            *uncommitted.entry((key.clone(), minute)).or_default() += 1;
        }
    }

    fn uncount(&self, counted: &[(RateKey, u64)]) {
        let mut uncommitted = lock(&self.uncommitted);
        for entry in counted {
            if let Some(count) = uncommitted.get_mut(entry) {
                *count -= 1;
                if *count == 0 {
                    uncommitted.remove(entry);
                }
            }
        }
    }

    fn set_serving(&self, serving: bool) {
        self.serving.send_if_modified(|now| {
            let changed = *now != serving;
            *now = serving;
            changed
        });
    }
}

impl PgStore {
    /// Connects, applies the schema migrations this build has (under a lock shared by every
    /// replica) and starts the commit task. Fails if the database cannot be reached or was
    /// migrated by a newer clientgate.
    pub fn connect(settings: &PostgresSettings) -> Result<PgStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("clientgate-postgres")
            .enable_all()
            .build()
            .map_err(|error| {
                StoreError::Io(format!("cannot start the database runtime: {error}"))
            })?;
        let handle = runtime.handle().clone();
        let migrated = pool(settings).and_then(|pool| {
            let named = describe_target(&settings.url);
            let migrating = pool.clone();
            let applied = bridge(&handle, async move {
                let mut client = migrating.get().await.map_err(|error| StoreError::Open {
                    path: named.clone(),
                    message: chain(&error),
                })?;
                schema::migrate(&mut client, &named).await
            })?;
            Ok((pool, applied))
        });
        // A runtime cannot be dropped where blocking is not allowed (the caller may be async).
        let (pool, migrated) = match migrated {
            Ok(done) => done,
            Err(error) => {
                runtime.shutdown_background();
                return Err(error);
            }
        };
        if !migrated.is_empty() {
            tracing::info!(applied = ?migrated, version = SCHEMA_VERSION, "database schema migrated");
        }
        let shared = Arc::new(Shared {
            pool,
            uncommitted: Mutex::default(),
            serving: watch::Sender::new(true),
            recorded: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_micros: Histogram::new(&LATENCY_BUCKETS_MICROS),
            commit_batch: Histogram::new(&BATCH_BUCKETS),
        });
        let (jobs, receiver) = mpsc::unbounded_channel();
        handle.spawn(commit::run(shared.clone(), receiver));
        handle.spawn(probe(Arc::downgrade(&shared)));
        Ok(PgStore {
            shared,
            jobs,
            handle,
            runtime: Some(runtime),
        })
    }

    /// Applies the migrations and returns those applied (`clientgate migrate`).
    pub fn migrate(settings: &PostgresSettings) -> Result<Vec<i32>, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                StoreError::Io(format!("cannot start the database runtime: {error}"))
            })?;
        let pool = pool(settings)?;
        let named = describe_target(&settings.url);
        runtime.block_on(async move {
            let mut client = pool.get().await.map_err(|error| StoreError::Open {
                path: named.clone(),
                message: chain(&error),
            })?;
            schema::migrate(&mut client, &named).await
        })
    }

    fn send<T: Send + 'static>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> StoreFuture<'static, T> {
        let sent = self.jobs.send(job);
        Box::pin(async move {
            if sent.is_err() {
                return Err(StoreError::Io(
                    "the database commit task stopped".to_owned(),
                ));
            }
            answer
                .await
                .map_err(|_| StoreError::Io("the database commit task stopped".to_owned()))?
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub(super) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Encode {
        what,
        message: error.to_string(),
    })
}

pub(super) fn decode<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        key: key.to_owned(),
        message: error.to_string(),
    })
}

/// Milliseconds and counts as PostgreSQL's `bigint`.
pub(super) fn pg_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_pg(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store for PgStore {
    fn record(
        &self,
        decision: DecisionRecord,
        ticket: Option<StepUpTicket>,
        rate_keys: Vec<RateKey>,
    ) -> StoreFuture<'_, Recorded> {
        let minute = decision.decided_at_ms / MINUTE_MS;
        self.shared.count(&rate_keys, minute);
        let (reply, answer) = oneshot::channel();
        let counted: Vec<(RateKey, u64)> =
            rate_keys.iter().map(|key| (key.clone(), minute)).collect();
        let job = Job::Record {
            decision: Box::new(decision),
            ticket: ticket.map(Box::new),
            rate_keys,
            reply,
        };
        if self.jobs.is_closed() {
            self.shared.uncount(&counted);
        }
        self.send(job, answer)
    }

    fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[Duration],
        now_ms: u64,
    ) -> Result<Vec<Vec<u64>>, StoreError> {
        let query = RateQuery::new(keys, windows, now_ms);
        let rows = self.blocking(|shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                query.rows(&client).await
            })
        })?;
        Ok(self.shared.counts(&rows, keys, windows, now_ms))
    }

    fn fingerprint_stats(&self, fingerprint: &str) -> Result<Option<FingerprintStats>, StoreError> {
        let fingerprint = fingerprint.to_owned();
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                fingerprint_row(&client, &fingerprint).await
            })
        })
    }

    fn observation<'a>(
        &'a self,
        keys: &'a [RateKey],
        windows: &'a [Duration],
        now_ms: u64,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, Observation> {
        // Both reads on one connection, pipelined: one round trip, awaited (not blocked on).
        let query = RateQuery::new(keys, windows, now_ms);
        let fingerprint = fingerprint.to_owned();
        let shared = self.shared.clone();
        let (reply, answer) = oneshot::channel();
        self.handle.spawn(async move {
            let read = async {
                let client = shared.pool.get().await.map_err(pool_error)?;
                tokio::try_join!(query.rows(&client), fingerprint_row(&client, &fingerprint))
            };
            let _ = reply.send(read.await);
        });
        Box::pin(async move {
            let (rows, duplicates) = answer
                .await
                .map_err(|_| StoreError::Io("the database task stopped".to_owned()))??;
            Ok(Observation {
                counts: self.shared.counts(&rows, keys, windows, now_ms),
                duplicates,
            })
        })
    }

    fn get_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        self.get_record(
            "SELECT id, record FROM decisions WHERE id = $1",
            decision_id,
        )
    }

    fn list_decisions(&self, query: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        let entries = PageBudget::entries(query.page_size);
        let lower = Ulid::from_parts(query.since_ms.unwrap_or(0), 0);
        let mut upper = query
            .until_ms
            .map_or(Ulid(u128::MAX), |until| Ulid::from_parts(until, 0));
        if let Some(token) = query.page_token {
            upper = upper.min(token);
        }
        let mut sql = String::from("SELECT id, record FROM decisions WHERE id >= $1 AND id < $2");
        let mut params: Params = vec![Box::new(lower.to_string()), Box::new(upper.to_string())];
        let filters = [
            ("tenant", query.tenant.clone()),
            ("client_id", query.client_id.clone()),
            ("ip", query.ip.clone()),
            ("fingerprint", query.fingerprint.clone()),
            ("decision", query.decision.map(|d| d.as_str().to_owned())),
            (
                "registration_type",
                query.registration_type.map(|t| t.as_str().to_owned()),
            ),
        ];
        for (column, value) in filters {
            if let Some(value) = value {
                params.push(Box::new(value));
                sql.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        params.push(Box::new(pg_i64(entries as u64 + 1)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let page_size = query.page_size;
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let rows = client
                    .query(sql.as_str(), &refs(&params))
                    .await
                    .map_err(|error| db_error(&error))?;
                let mut budget = PageBudget::new(page_size);
                let mut page = DecisionPage::default();
                for (_, record, bytes) in decoded::<DecisionRecord>(&rows)? {
                    if !budget.take(bytes) {
                        let last = page.decisions.last().map(|last| last.decision_id.as_str());
                        page.next_page_token = last.and_then(|last| Ulid::from_string(last).ok());
                        break;
                    }
                    page.decisions.push(record);
                }
                Ok(page)
            })
        })
    }

    fn get_ticket(&self, ticket_id: &str) -> Result<Option<StepUpTicket>, StoreError> {
        self.get_record("SELECT id, record FROM tickets WHERE id = $1", ticket_id)
    }

    fn list_tickets(&self, query: &TicketQuery, now_ms: u64) -> Result<TicketPage, StoreError> {
        let mut sql = String::from("SELECT id, record FROM tickets WHERE true");
        let mut params: Params = Vec::new();
        if let Some(token) = &query.page_token {
            params.push(Box::new(token.clone()));
            sql.push_str(&format!(" AND id < ${}", params.len()));
        }
        if let Some(tenant) = &query.tenant {
            params.push(Box::new(tenant.clone()));
            sql.push_str(&format!(" AND tenant = ${}", params.len()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", SCAN_LIMIT + 1));
        let query = query.clone();
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let rows = client
                    .query(sql.as_str(), &refs(&params))
                    .await
                    .map_err(|error| db_error(&error))?;
                let mut budget = PageBudget::new(query.page_size);
                let mut page = TicketPage::default();
                for (scanned, row) in rows.iter().enumerate() {
                    let id: String = row.get(0);
                    if scanned >= SCAN_LIMIT {
                        page.next_page_token = Some(id);
                        break;
                    }
                    let text: &str = row.get(1);
                    let ticket = step_up::as_of(decode::<StepUpTicket>(&id, text)?, now_ms);
                    if query.state.is_some_and(|state| state != ticket.state) {
                        continue;
                    }
                    if !budget.take(text.len()) {
                        page.next_page_token = page.tickets.last().map(|t| t.ticket_id.clone());
                        break;
                    }
                    page.tickets.push(ticket);
                }
                Ok(page)
            })
        })
    }

    fn resolve_ticket(
        &self,
        ticket_id: &str,
        resolution: OperatorResolution,
    ) -> StoreFuture<'_, Result<(StepUpTicket, bool), ResolveError>> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Resolve {
            ticket_id: ticket_id.to_owned(),
            resolution,
            reply,
        };
        self.send(job, answer)
    }

    fn expire_tickets(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.blocking(move |shared| Box::pin(jobs::expire_tickets(shared, now_ms)))
    }

    fn cached_document(&self, client_id: &str) -> Result<Option<CacheEntry>, StoreError> {
        self.get_record(
            "SELECT client_id, record FROM cimd_cache WHERE client_id = $1",
            client_id,
        )
    }

    fn cache_document(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        let record = encode("cached document", entry)?;
        let client_id = entry.client_id.clone();
        let expires = pg_i64(entry.expires_at_ms);
        self.execute(
            "INSERT INTO cimd_cache (client_id, expires_at_ms, record) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms, \
             record = excluded.record",
            vec![Box::new(client_id), Box::new(expires), Box::new(record)],
        )
    }

    fn evict_document(&self, client_id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM cimd_cache WHERE client_id = $1",
            vec![Box::new(client_id.to_owned())],
        )
    }

    fn approved_document(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (tenant, client_id) = (tenant.to_owned(), client_id.to_owned());
        self.blocking(move |shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let statement = prepared(
                    &client,
                    "SELECT snapshot FROM approved_documents WHERE tenant = $1 AND client_id = $2",
                )
                .await?;
                let row = client
                    .query_opt(&statement, &[&tenant, &client_id])
                    .await
                    .map_err(|error| db_error(&error))?;
                Ok(row.map(|row| row.get(0)))
            })
        })
    }

    fn set_approved_document(
        &self,
        tenant: &str,
        client_id: &str,
        snapshot: &[u8],
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO approved_documents (tenant, client_id, snapshot) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, client_id) DO UPDATE SET snapshot = excluded.snapshot",
            vec![
                Box::new(tenant.to_owned()),
                Box::new(client_id.to_owned()),
                Box::new(snapshot.to_vec()),
            ],
        )
    }

    fn prune(&self, cutoffs: PruneCutoffs) -> Result<PruneReport, StoreError> {
        self.blocking(move |shared| Box::pin(jobs::prune(shared, cutoffs)))
    }

    fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO disagreements (id, record) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            vec![
                Box::new(disagreement.decision_id.clone()),
                Box::new(encode("shadow disagreement", disagreement)?),
            ],
        )
    }

    fn list_disagreements(
        &self,
        page_size: usize,
        page_token: Option<Ulid>,
    ) -> Result<DisagreementPage, StoreError> {
        let (records, next_page_token) =
            self.list_newest("disagreements", page_size, page_token)?;
        Ok(DisagreementPage {
            disagreements: records,
            next_page_token,
        })
    }

    fn record_admin_action(&self, action: AdminAction) -> StoreFuture<'_, ()> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Admin { action, reply }, answer)
    }

    fn list_admin_actions(
        &self,
        page_size: usize,
        page_token: Option<Ulid>,
    ) -> Result<AdminActionPage, StoreError> {
        let (actions, next_page_token) =
            self.list_newest("admin_actions", page_size, page_token)?;
        Ok(AdminActionPage {
            actions,
            next_page_token,
        })
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.blocking(|shared| {
            Box::pin(async move {
                let client = shared.pool.get().await.map_err(pool_error)?;
                let row = client
                    .query_one("SELECT pg_database_size(current_database())", &[])
                    .await
                    .map_err(|error| db_error(&error))?;
                Ok(from_pg(row.get(0)))
            })
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Barrier { reply }, answer)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            decisions_recorded: self.shared.recorded.load(Ordering::Relaxed),
            decisions_shed: 0,
            flushes: self.shared.commits.load(Ordering::Relaxed),
            commit_micros: Some(self.shared.commit_micros.snapshot()),
            commit_batch: Some(self.shared.commit_batch.snapshot()),
        }
    }

    fn serving(&self) -> Option<watch::Receiver<bool>> {
        Some(self.shared.serving.subscribe())
    }
}

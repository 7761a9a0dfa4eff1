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
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::RuntimeFlavor;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use ulid::Ulid;

use self::commit::Job;
use super::derived::{MINUTE_MS, window_counts};
use super::paging::PageBudget;
use super::{
    AdminAction, AdminActionPage, CacheEntry, DecisionPage, DecisionQuery, DecisionRecord,
    Disagreement, DisagreementPage, FingerprintStats, Observation, PruneCutoffs, PruneReport,
    RateKey, Recorded, ResolveError, Store, StoreError, StoreFuture, StoreStats, TicketPage,
    TicketQuery,
};
use crate::metrics::{BATCH_BUCKETS, Histogram, LATENCY_BUCKETS_MICROS};
use crate::step_up::{self, OperatorResolution, StepUpTicket};

pub use self::schema::SCHEMA_VERSION;

/// How often a replica checks that the database answers (health).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Tickets examined per page at most, as on sled.
const SCAN_LIMIT: usize = 10_000;
/// The advisory locks of the background jobs: one replica at a time runs each; a replica
/// that finds one taken skips its pass (another replica is doing it).
pub const EXPIRY_LOCK: i64 = 0x636c_6965_6e74_6702;
pub const PRUNE_LOCK: i64 = 0x636c_6965_6e74_6703;

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

/// The rate buckets of a set of keys since the longest window began.
struct RateQuery {
    dimensions: Vec<&'static str>,
    values: Vec<String>,
    oldest_minute: u64,
}

impl RateQuery {
    fn new(keys: &[RateKey], windows: &[Duration], now_ms: u64) -> RateQuery {
        RateQuery {
            dimensions: keys.iter().map(|key| key.dimension.as_str()).collect(),
            values: keys.iter().map(|key| key.value.clone()).collect(),
            oldest_minute: oldest_minute(windows, now_ms),
        }
    }

    /// Rows of `(key's position from 1, minute, count)`.
    async fn rows(
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

async fn fingerprint_row(
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
    fn counts(
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

    /// Runs `query` on the store's runtime and waits for it (the synchronous reads). On a
    /// worker of a multi-threaded runtime (the server's), the worker's other tasks move to
    /// another thread while this one waits, so that one decision's round trip to the
    /// database does not hold up every other call on that worker.
    fn blocking<T: Send + 'static>(
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

type BoxedQuery<T> = std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Runs `future` on `handle` and blocks this thread until it is done. Never called from
/// the store's own runtime.
fn bridge<T: Send + 'static>(
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

fn pool(settings: &PostgresSettings) -> Result<Pool, StoreError> {
    let named = describe_target(&settings.url);
    let open_error = |message: String| StoreError::Open {
        path: named.clone(),
        message,
    };
    let mut config = tokio_postgres::Config::from_str(&settings.url)
        .map_err(|error| open_error(format!("not a PostgreSQL connection string: {error}")))?;
    let timeout_ms = settings.statement_timeout.as_millis();
    config.options(format!("-c statement_timeout={timeout_ms}"));
    config.connect_timeout(settings.statement_timeout);
    config.application_name("clientgate");
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &settings.ca_file {
        Some(ca_file) => {
            // With a CA, TLS is required: a server (or a man in the middle) that declines
            // it is refused rather than spoken to in the clear.
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls_connector(ca_file).map_err(open_error)?;
            Manager::from_config(config, tls, manager_config)
        }
        None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(settings.statement_timeout))
        .create_timeout(Some(settings.statement_timeout))
        .recycle_timeout(Some(settings.statement_timeout))
        .build()
        .map_err(|error| open_error(error.to_string()))
}

/// TLS to the database with rustls: the server's certificate must chain to `ca_file`.
fn tls_connector(
    ca_file: &std::path::Path,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca_file)
        .map_err(|error| format!("cannot read `{}`: {error}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|error| format!("`{}` is not PEM: {error}", ca_file.display()))?;
        roots
            .add(certificate)
            .map_err(|error| format!("`{}`: {error}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("`{}` holds no certificate", ca_file.display()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The database named without its password, for messages.
fn describe_target(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "postgres database `{}` on {}",
                config.get_dbname().unwrap_or("(default)"),
                if hosts.is_empty() {
                    "localhost".to_owned()
                } else {
                    hosts.join(",")
                }
            )
        }
        Err(_) => "the configured postgres database".to_owned(),
    }
}

/// Says what went wrong, with the server's message when it sent one.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("database: {} ({})", db.message(), db.code().code()),
        None => format!("database: {}", chain(error)),
    }
}

pub(super) fn db_error(error: &tokio_postgres::Error) -> StoreError {
    StoreError::Io(describe(error))
}

fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Io(format!("cannot reach the database: {}", chain(&error)))
}

/// An error and its sources, joined: a TLS failure names the certificate problem.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
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

/// Checks every [`PROBE_EVERY`] that the database answers, for health, until the store is
/// dropped.
async fn probe(shared: Weak<Shared>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let answered = match shared.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        if !answered && *shared.serving.borrow() {
            tracing::warn!("the database does not answer: decisions are UNAVAILABLE until it does");
        }
        if answered && !*shared.serving.borrow() {
            tracing::info!("the database answers again");
        }
        shared.set_serving(answered);
    }
}

/// Rows of `(id, record)` decoded, with each record's size in bytes.
fn decoded<T: DeserializeOwned>(
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

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
        .collect()
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
        self.blocking(move |shared| {
            Box::pin(async move {
                let mut client = shared.pool.get().await.map_err(pool_error)?;
                let transaction = client.transaction().await.map_err(|e| db_error(&e))?;
                if !try_lock(&transaction, EXPIRY_LOCK).await? {
                    return Ok(0);
                }
                let rows = transaction
                    .query(
                        "SELECT id, record FROM tickets WHERE state = 'pending' \
                         AND expires_at_ms <= $1 ORDER BY id FOR UPDATE",
                        &[&pg_i64(now_ms)],
                    )
                    .await
                    .map_err(|e| db_error(&e))?;
                let mut expired = 0;
                for (id, ticket, _) in decoded::<StepUpTicket>(&rows)? {
                    let Some(ticket) = step_up::expire(&ticket, now_ms) else {
                        continue;
                    };
                    transaction
                        .execute(
                            "UPDATE tickets SET state = $2, record = $3 WHERE id = $1",
                            &[
                                &id,
                                &ticket.state.as_str(),
                                &encode("step-up ticket", &ticket)?,
                            ],
                        )
                        .await
                        .map_err(|e| db_error(&e))?;
                    expired += 1;
                }
                transaction.commit().await.map_err(|e| db_error(&e))?;
                Ok(expired)
            })
        })
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
        self.blocking(move |shared| {
            Box::pin(async move {
                let mut client = shared.pool.get().await.map_err(pool_error)?;
                let transaction = client.transaction().await.map_err(|e| db_error(&e))?;
                let mut report = PruneReport::default();
                if !try_lock(&transaction, PRUNE_LOCK).await? {
                    return Ok(report);
                }
                let io = |error: tokio_postgres::Error| db_error(&error);
                let cut = Ulid::from_parts(cutoffs.decisions_ms, 0).to_string();
                report.decisions = transaction
                    .execute("DELETE FROM decisions WHERE id < $1", &[&cut])
                    .await
                    .map_err(io)?;
                transaction
                    .execute("DELETE FROM disagreements WHERE id < $1", &[&cut])
                    .await
                    .map_err(io)?;
                transaction
                    .execute("DELETE FROM admin_actions WHERE id < $1", &[&cut])
                    .await
                    .map_err(io)?;
                // Expired before the cutoff is necessary for a ticket to go; the retention
                // rule decides.
                let rows = transaction
                    .query(
                        "SELECT id, record FROM tickets WHERE expires_at_ms < $1 FOR UPDATE",
                        &[&pg_i64(cutoffs.tickets_ms)],
                    )
                    .await
                    .map_err(io)?;
                let stale: Vec<String> = decoded::<StepUpTicket>(&rows)?
                    .into_iter()
                    .filter(|(_, ticket, _)| !step_up::is_retained(ticket, cutoffs.tickets_ms))
                    .map(|(id, _, _)| id)
                    .collect();
                report.tickets = transaction
                    .execute("DELETE FROM tickets WHERE id = ANY($1)", &[&stale])
                    .await
                    .map_err(io)?;
                report.rate_buckets = transaction
                    .execute(
                        "DELETE FROM rate_buckets WHERE minute < $1",
                        &[&pg_i64(cutoffs.rates_ms / MINUTE_MS)],
                    )
                    .await
                    .map_err(io)?;
                report.fingerprints = transaction
                    .execute(
                        "DELETE FROM fingerprints WHERE first_seen_ms < $1",
                        &[&pg_i64(cutoffs.decisions_ms)],
                    )
                    .await
                    .map_err(io)?;
                report.cached_documents = transaction
                    .execute(
                        "DELETE FROM cimd_cache WHERE expires_at_ms < $1",
                        &[&pg_i64(cutoffs.cimd_cache_ms)],
                    )
                    .await
                    .map_err(io)?;
                transaction.commit().await.map_err(io)?;
                Ok(report)
            })
        })
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

impl PgStore {
    /// One record by its key: `sql` selects `(key, record)`.
    fn get_record<T: DeserializeOwned + Send + 'static>(
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
    fn execute(&self, sql: &'static str, params: Params) -> Result<(), StoreError> {
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
    fn list_newest<T: DeserializeOwned + Send + 'static>(
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

/// Takes a transaction-scoped advisory lock if no other replica holds it.
async fn try_lock(
    transaction: &tokio_postgres::Transaction<'_>,
    key: i64,
) -> Result<bool, StoreError> {
    let row = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .await
        .map_err(|error| db_error(&error))?;
    Ok(row.get(0))
}

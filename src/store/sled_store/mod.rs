//! The embedded sled store: one data directory, one process.
//!
//! The data lives in the current [generation](super::data_dir) of the data directory.
//! A decision is one record written and group-committed before its answer leaves; what is
//! derived from it lives in memory: its list index entries ([`lists`], rebuilt from the
//! decision log at open, never written) and its rate counts and fingerprint statistics
//! ([`Derived`], which reach the disk in batches every [`PERSIST_EVERY`]).
//!
//! Every write holds a read lock on the live generation while it writes (a
//! [`generation::Writer`] cannot be made without it); compaction takes
//! the write lock twice, briefly: to start watching the live generation's writes, and to
//! replay the writes made during its copy and switch generations. So no write is lost to a
//! generation after it was copied. Reads take the live generation as it is when they start.

mod copy;
mod generation;
mod lists;
mod recovering;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use self::copy::OnlineCopy;
use self::generation::{Generation, Writer};
use self::lists::{Listed, Lists};
use super::data_dir::{DataDir, GenerationPath};
use super::derived::{Derived, MINUTE_MS};
use super::{
    Compaction, DecisionPage, DecisionQuery, DecisionRecord, Disagreement, DisagreementPage,
    FingerprintStats, PruneCutoffs, PruneReport, RateDimension, RateKey, Recorded, ResolveError,
    StepUpTicket, Store, StoreError, StoreFuture, StoreStats, TicketPage, TicketQuery,
};
use crate::step_up::OperatorResolution;
use crate::store::{AdminAction, AdminActionPage, CacheEntry};
use crate::vocab::Decision;

pub use self::generation::FORMAT_VERSION;
pub use self::recovering::Recovering;

/// When pruning also compacts, and when low-value decisions are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SledLimits {
    /// The store is compacted once it takes more than this on disk, and more than twice
    /// what it took after its last compaction (so that a store whose live data is large
    /// is not copied at every pass).
    pub above_bytes: u64,
    /// Beyond this size on disk (0: no budget), repeated spec-violation denials of one
    /// fingerprint are sampled: one in [`SHED_SAMPLE`] is recorded, the others counted.
    pub max_size_bytes: u64,
}

impl Default for SledLimits {
    fn default() -> SledLimits {
        SledLimits {
            above_bytes: 256 * 1024 * 1024,
            max_size_bytes: 0,
        }
    }
}

/// Over the size budget, one in this many low-value decisions is still recorded.
pub const SHED_SAMPLE: u64 = 100;
/// A denial counts as repeated once its fingerprint was decided this many times within the
/// last hour.
const REPEATED_WITHIN_HOUR: u64 = 10;

/// How often the derived state (rate buckets, fingerprint records) is written: what a crash
/// can cost of rate counters and fingerprint statistics.
pub const PERSIST_EVERY: Duration = Duration::from_secs(1);

pub struct SledStore {
    dir: DataDir,
    live: Arc<RwLock<Live>>,
    derived: Arc<Derived>,
    /// Bytes on disk as of the last persist pass (the size budget's measure).
    size: Arc<AtomicU64>,
    /// Low-value decisions not recorded because the store was over its budget.
    shed: AtomicU64,
    /// Low-value decisions seen over the budget (every [`SHED_SAMPLE`]th is kept).
    low_value_seen: AtomicU64,
    /// The decision log's list indexes (in memory only).
    lists: Lists,
    limits: SledLimits,
    compacting: Mutex<()>,
    recorded: AtomicU64,
    /// Flushes done by earlier generations.
    earlier_flushes: AtomicU64,
}

struct Live {
    path: GenerationPath,
    generation: Arc<Generation>,
    /// Bytes on disk right after the last compaction (0 before the first).
    compacted_size: u64,
}

impl SledStore {
    /// Opens (or creates) the store in `dir` with the default compaction policy.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, SledLimits::default())
    }

    /// Opens (or creates) the store in `dir`. Must run inside a tokio runtime, which hosts
    /// the group-commit flusher.
    pub fn open_with(dir: &Path, limits: SledLimits) -> Result<SledStore, StoreError> {
        let data = DataDir::lock(dir)?;
        let path = data.live()?;
        let generation = Generation::open(&path.path)?;
        for failure in data.remove_all_but(&path) {
            tracing::warn!(%failure, "could not remove an old store generation");
        }
        let started = Instant::now();
        let lists = Lists::default();
        let listed = generation.rebuild_lists(&lists)?;
        let derived = Arc::new(Derived::default());
        generation.load_derived(&derived, &lists)?;
        if listed > 0 {
            tracing::info!(
                decisions = listed,
                took_ms = started.elapsed().as_millis() as u64,
                "listed the decision log"
            );
        }
        let live = Arc::new(RwLock::new(Live {
            path,
            generation: Arc::new(generation),
            compacted_size: 0,
        }));
        let size = Arc::new(AtomicU64::new(
            live.read()
                .map_or(0, |live| live.generation.size_on_disk().unwrap_or(0)),
        ));
        tokio::spawn(persist_periodically(
            Arc::downgrade(&live),
            derived.clone(),
            size.clone(),
        ));
        Ok(SledStore {
            dir: data,
            live,
            derived,
            size,
            shed: AtomicU64::new(0),
            low_value_seen: AtomicU64::new(0),
            lists,
            limits,
            compacting: Mutex::new(()),
            recorded: AtomicU64::new(0),
            earlier_flushes: AtomicU64::new(0),
        })
    }

    /// Closes the store: resolves once the directory is released and another
    /// [`SledStore::open`] of it can succeed. Writes not yet flushed are flushed first.
    pub async fn close(self) -> Result<(), StoreError> {
        self.persist_derived()?;
        self.reading().commit.durable().await?;
        self.abandon().await
    }

    /// Releases the directory without writing anything more (the store failed): resolves
    /// once another [`SledStore::open`] of it can succeed.
    pub async fn abandon(self) -> Result<(), StoreError> {
        let generation = self.reading();
        let stopped = generation.commit.stopped();
        let db_file = self.writing().path.path.join("db");
        drop(generation);
        drop(self);
        stopped.await;
        tokio::task::spawn_blocking(move || wait_until_unlocked(&db_file))
            .await
            .map_err(|error| StoreError::Io(format!("the close task failed: {error}")))?
    }

    /// The live generation, held so that compaction waits until the caller's writes are
    /// done.
    fn writing(&self) -> RwLockReadGuard<'_, Live> {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live generation as it is now, for reading.
    fn reading(&self) -> Arc<Generation> {
        self.writing().generation.clone()
    }

    /// Rewrites the live data into a fresh generation if the store has grown past the
    /// policy's limit.
    fn compact_if_needed(&self) -> Result<Option<Compaction>, StoreError> {
        let (size, compacted_size) = {
            let live = self.writing();
            (live.generation.size_on_disk()?, live.compacted_size)
        };
        if size <= self.limits.above_bytes || size <= compacted_size.saturating_mul(2) {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Copies the live data into the next generation, switches to it and removes the old
    /// one. Reads and writes go on during the copy; both wait while the subscriptions start
    /// (an instant) and while the writes made meanwhile are replayed into the copy and the
    /// generation is switched (`Compaction::writes_paused`).
    pub fn compact(&self) -> Result<Compaction, StoreError> {
        let _one_at_a_time = self
            .compacting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let started = Instant::now();
        let (old, old_path) = {
            let live = self.writing();
            (live.generation.clone(), live.path.clone())
        };
        let before_bytes = old.size_on_disk()?;
        let next = self.dir.fresh_successor(&old_path)?;
        let mut copy = {
            let _no_writes = self.exclusive();
            OnlineCopy::watch(&old.db, &next.path)?
        };
        copy.copy(&old.db)?;

        let mut live = self.exclusive();
        let paused = Instant::now();
        let (db, replayed) = copy.catch_up()?;
        let generation = Generation::with_db(db, &next.path)?;
        self.dir.switch_to(&next)?;
        let after_bytes = generation.size_on_disk()?;
        self.earlier_flushes
            .fetch_add(old.commit.flushes(), Ordering::Relaxed);
        *live = Live {
            path: next.clone(),
            generation: Arc::new(generation),
            compacted_size: after_bytes,
        };
        drop(live);
        let writes_paused = paused.elapsed();

        for failure in self.dir.remove_all_but(&next) {
            tracing::warn!(%failure, "could not remove an old store generation");
        }
        Ok(Compaction {
            before_bytes,
            after_bytes,
            replayed,
            writes_paused,
            took: started.elapsed(),
        })
    }

    /// The live generation with no write in flight, and none starting until it is dropped.
    fn exclusive(&self) -> RwLockWriteGuard<'_, Live> {
        self.live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The data directory this store uses.
    pub fn dir(&self) -> &Path {
        self.dir.root()
    }

    /// Whether `decision` is not recorded: the store is over its size budget, and the
    /// decision is a denial of a malformed registration whose fingerprint was decided
    /// [`REPEATED_WITHIN_HOUR`] times in the last hour — except one in [`SHED_SAMPLE`]. Never
    /// an approval, a step-up, a ticket's use, or anything that is not a spec violation.
    fn sheds(&self, decision: &DecisionRecord) -> bool {
        let budget = self.limits.max_size_bytes;
        if budget == 0 || self.size.load(Ordering::Relaxed) <= budget {
            return false;
        }
        let low_value = decision.decision == Decision::Deny
            && decision.error.is_some()
            && decision.step_up.is_none()
            && decision.redeemed_ticket.is_none();
        if !low_value {
            return false;
        }
        let key = RateKey {
            dimension: RateDimension::Fingerprint,
            value: decision.fingerprint.clone(),
        };
        let hour = [Duration::from_secs(3600)];
        let seen =
            self.derived
                .rate_counts(std::slice::from_ref(&key), &hour, decision.decided_at_ms);
        if seen[0][0] < REPEATED_WITHIN_HOUR {
            return false;
        }
        !self
            .low_value_seen
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SHED_SAMPLE)
    }

    /// Writes the derived state now (what the periodic task does).
    fn persist_derived(&self) -> Result<(), StoreError> {
        persist(&self.live, &self.derived)
    }
}

/// Writes the derived state every [`PERSIST_EVERY`] until the store is dropped.
async fn persist_periodically(
    live: Weak<RwLock<Live>>,
    derived: Arc<Derived>,
    size: Arc<AtomicU64>,
) {
    let mut every = tokio::time::interval(PERSIST_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(live) = live.upgrade() else {
            return;
        };
        let derived = derived.clone();
        let size = size.clone();
        let persisted = tokio::task::spawn_blocking(move || {
            let persisted = persist(&live, &derived);
            let generation = live
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .generation
                .clone();
            if let Ok(bytes) = generation.size_on_disk() {
                size.store(bytes, Ordering::Relaxed);
            }
            persisted
        })
        .await;
        match persisted {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot write the store's derived state; retrying")
            }
            Err(error) => tracing::warn!(%error, "the store's persist task failed"),
        }
    }
}

/// Writes what changed in `derived`; what cannot be written is kept for the next pass.
fn persist(live: &RwLock<Live>, derived: &Derived) -> Result<(), StoreError> {
    let changes = derived.take_changes();
    let guard = live.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let written = Writer::new(&guard).write_derived(&changes);
    if written.is_err() {
        derived.restore(changes);
    }
    written
}

impl Store for SledStore {
    fn record(
        &self,
        decision: DecisionRecord,
        ticket: Option<StepUpTicket>,
        rate_keys: Vec<RateKey>,
    ) -> StoreFuture<'_, Recorded> {
        Box::pin(async move {
            if self.sheds(&decision) {
                // Not recorded, but counted: a flood over the budget still meets the limits.
                self.derived
                    .add(&rate_keys, decision.decided_at_ms / MINUTE_MS, None);
                self.shed.fetch_add(1, Ordering::Relaxed);
                return Ok(Recorded::Shed);
            }
            let id = generation::parse_id(&decision.decision_id)?;
            let generation = {
                let live = self.writing();
                Writer::new(&live).write(&decision, ticket.as_ref())?;
                live.generation.clone()
            };
            // Counted at once, before the flush, so that concurrent decisions see it; if the
            // flush fails the count stays (the error is on the side of refusing).
            let approval = (decision.decision == Decision::Approve).then_some((
                decision.fingerprint.as_str(),
                decision.decided_at_ms,
                decision.decision_id.as_str(),
            ));
            self.derived
                .add(&rate_keys, decision.decided_at_ms / MINUTE_MS, approval);
            self.lists.add(&Listed {
                id,
                tenant: &decision.tenant,
                ip: decision.ip.as_deref(),
                client_id: decision.client_id.as_deref(),
                fingerprint: &decision.fingerprint,
            });
            generation.commit.durable().await?;
            self.recorded.fetch_add(1, Ordering::Relaxed);
            Ok(Recorded::Kept)
        })
    }

    fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[Duration],
        now_ms: u64,
    ) -> Result<Vec<Vec<u64>>, StoreError> {
        Ok(self.derived.rate_counts(keys, windows, now_ms))
    }

    fn fingerprint_stats(&self, fingerprint: &str) -> Result<Option<FingerprintStats>, StoreError> {
        Ok(self.derived.fingerprint_stats(fingerprint))
    }

    fn get_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        self.reading().get_decision(decision_id)
    }

    fn list_decisions(&self, query: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        self.reading().list_decisions(query, &self.lists)
    }

    fn get_ticket(&self, ticket_id: &str) -> Result<Option<StepUpTicket>, StoreError> {
        self.reading().get_ticket(ticket_id)
    }

    fn list_tickets(&self, query: &TicketQuery, now_ms: u64) -> Result<TicketPage, StoreError> {
        self.reading().list_tickets(query, now_ms)
    }

    fn resolve_ticket(
        &self,
        ticket_id: &str,
        resolution: OperatorResolution,
    ) -> StoreFuture<'_, Result<(StepUpTicket, bool), ResolveError>> {
        let ticket_id = ticket_id.to_owned();
        Box::pin(async move {
            let (outcome, generation) = {
                let live = self.writing();
                let outcome = Writer::new(&live).resolve_ticket(&ticket_id, &resolution)?;
                (outcome, live.generation.clone())
            };
            generation.commit.durable().await?;
            Ok(outcome)
        })
    }

    fn expire_tickets(&self, now_ms: u64) -> Result<usize, StoreError> {
        Writer::new(&self.writing()).expire_tickets(now_ms)
    }

    fn cached_document(&self, client_id: &str) -> Result<Option<CacheEntry>, StoreError> {
        self.reading().cached_document(client_id)
    }

    fn cache_document(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        Writer::new(&self.writing()).cache_document(entry)
    }

    fn evict_document(&self, client_id: &str) -> Result<(), StoreError> {
        Writer::new(&self.writing()).evict_document(client_id)
    }

    fn approved_document(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.reading().approved_document(tenant, client_id)
    }

    fn set_approved_document(
        &self,
        tenant: &str,
        client_id: &str,
        snapshot: &[u8],
    ) -> Result<(), StoreError> {
        Writer::new(&self.writing()).set_approved_document(tenant, client_id, snapshot)
    }

    fn prune(&self, cutoffs: PruneCutoffs) -> Result<PruneReport, StoreError> {
        // The derived state first, so that the pass below deletes what it persisted.
        let (rate_buckets, fingerprints) = self
            .derived
            .prune(cutoffs.rates_ms / MINUTE_MS, cutoffs.decisions_ms);
        self.persist_derived()?;
        let mut report = Writer::new(&self.writing()).prune(cutoffs)?;
        self.lists
            .prune_before(ulid::Ulid::from_parts(cutoffs.decisions_ms, 0));
        report.rate_buckets = report.rate_buckets.max(rate_buckets);
        report.fingerprints = report.fingerprints.max(fingerprints);
        report.compaction = self.compact_if_needed()?;
        Ok(report)
    }

    fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), StoreError> {
        Writer::new(&self.writing()).record_disagreement(disagreement)
    }

    fn list_disagreements(
        &self,
        page_size: usize,
        page_token: Option<ulid::Ulid>,
    ) -> Result<DisagreementPage, StoreError> {
        self.reading().list_disagreements(page_size, page_token)
    }

    fn record_admin_action(&self, action: AdminAction) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let generation = {
                let live = self.writing();
                Writer::new(&live).record_admin_action(&action)?;
                live.generation.clone()
            };
            generation.commit.durable().await
        })
    }

    fn list_admin_actions(
        &self,
        page_size: usize,
        page_token: Option<ulid::Ulid>,
    ) -> Result<AdminActionPage, StoreError> {
        self.reading().list_admin_actions(page_size, page_token)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.reading().size_on_disk()
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.persist_derived()?;
            let generation = self.reading();
            generation.commit.durable().await
        })
    }

    fn stats(&self) -> StoreStats {
        let reading = self.reading();
        let (micros, batch) = reading.commit.timing();
        StoreStats {
            decisions_recorded: self.recorded.load(Ordering::Relaxed),
            decisions_shed: self.shed.load(Ordering::Relaxed),
            flushes: self.earlier_flushes.load(Ordering::Relaxed) + reading.commit.flushes(),
            // The generation in use (a compaction starts a new one).
            commit_micros: Some(micros),
            commit_batch: Some(batch),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_derived;

/// Waits until nothing holds sled's lock on `db_file`: sled's I/O threads can keep the
/// database open a moment after its last handle is dropped. Polls the lock itself rather
/// than guessing how long that takes.
pub(in crate::store) fn wait_until_unlocked(db_file: &Path) -> Result<(), StoreError> {
    const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
    let started = Instant::now();
    loop {
        let file = match std::fs::File::open(db_file) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(StoreError::Io(format!(
                    "cannot open `{}`: {error}",
                    db_file.display()
                )));
            }
        };
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < GIVE_UP_AFTER => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Io(format!(
                    "`{}` is still locked {}s after the store was closed",
                    db_file.display(),
                    GIVE_UP_AFTER.as_secs()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::Io(format!(
                    "cannot lock `{}`: {error}",
                    db_file.display()
                )));
            }
        }
    }
}

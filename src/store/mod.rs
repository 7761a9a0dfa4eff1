//! Durable storage of decisions and step-up tickets, behind one narrow interface
//! ([`Store`]) so that a shared backend can be added for multi-node deployments.
//!
//! The store never decides anything; it records what the engine decided and answers
//! queries about it. A decision (with its ticket), a ticket's resolution and an admin
//! action are acknowledged only once on disk (synced: power-loss durable); what is derived
//! from decisions ([`derived`]: indexes, rate counters, fingerprint statistics) is kept in
//! memory and written in batches; the CIMD cache, shadow disagreements and the expiry
//! scan's updates reach the disk with the next flush.

mod data_dir;
pub mod derived;
pub mod group_commit;
mod paging;
pub use paging::PAGE_BYTE_BUDGET;
mod postgres;
mod record;
mod sled_store;

use std::future::Future;

use crate::step_up::{OperatorResolution, ResolveRefusal, StepUpTicket};
use std::pin::Pin;

pub use postgres::{EXPIRY_LOCK, PRUNE_LOCK, PgStore, PostgresSettings, SCHEMA_VERSION};
pub use record::{
    AdminAction, AdminActionPage, CacheEntry, DecisionPage, DecisionQuery, DecisionRecord,
    Disagreement, DisagreementPage, FingerprintStats, RateDimension, RateKey, ShadowOutcome,
    TicketPage, TicketQuery,
};
pub use sled_store::{FORMAT_VERSION, Recovering, SHED_SAMPLE, SledLimits, SledStore};

/// A boxed future, so that [`Store`] can be used as a trait object.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What [`Store::observation`] reads for a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Per rate key, its count in each window.
    pub counts: Vec<Vec<u64>>,
    pub duplicates: Option<FingerprintStats>,
}

/// Counters that show how the store is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub decisions_recorded: u64,
    /// Low-value decisions not recorded because the store was over its size budget.
    pub decisions_shed: u64,
    /// Disk flushes; concurrent records share one (group commit).
    pub flushes: u64,
    /// How long group commits took (µs), when the store commits in groups.
    pub commit_micros: Option<crate::metrics::HistogramSnapshot>,
    /// How many writes each group commit made durable.
    pub commit_batch: Option<crate::metrics::HistogramSnapshot>,
}

/// What became of a decision given to [`Store::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Durable.
    Kept,
    /// Not kept: the store is over its size budget and the decision is of low value.
    Shed,
}

/// What the decision service needs from storage.
pub trait Store: Send + Sync + 'static {
    /// Records a decision, the step-up ticket it opened if any, the use of the approved
    /// ticket it redeemed if any (`decision.redeemed_ticket`), and one more registration on
    /// each rate counter of `rate_keys`; an approval also counts for its fingerprint.
    /// Resolves only once all of it is durable. Nothing is written, and the answer is
    /// [`StoreError::TicketSpent`], when the redeemed ticket has no use left by then (another
    /// decision took it): the caller decides again. A store over its size budget may shed a
    /// low-value decision (a repeated denial of a malformed registration): it is counted on
    /// the rate counters and in [`StoreStats::decisions_shed`], not kept ([`Recorded::Shed`]).
    fn record(
        &self,
        decision: DecisionRecord,
        ticket: Option<StepUpTicket>,
        rate_keys: Vec<RateKey>,
    ) -> StoreFuture<'_, Recorded>;

    /// For each key, the registrations counted within each window ending at `now_ms`
    /// (sliding over one-minute buckets; the minute a window starts in counts for its part
    /// inside the window, rounded up).
    fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[std::time::Duration],
        now_ms: u64,
    ) -> Result<Vec<Vec<u64>>, StoreError>;

    /// Earlier approvals of registrations with this fingerprint.
    fn fingerprint_stats(&self, fingerprint: &str) -> Result<Option<FingerprintStats>, StoreError>;

    /// What a decision reads before it is made: the [`Store::rate_counts`] of `keys` and the
    /// [`Store::fingerprint_stats`] of `fingerprint`. A store whose reads are round trips
    /// (PostgreSQL) makes both in one and is awaited, not blocked on.
    fn observation<'a>(
        &'a self,
        keys: &'a [RateKey],
        windows: &'a [std::time::Duration],
        now_ms: u64,
        fingerprint: &'a str,
    ) -> StoreFuture<'a, Observation> {
        let read = || {
            Ok(Observation {
                counts: self.rate_counts(keys, windows, now_ms)?,
                duplicates: self.fingerprint_stats(fingerprint)?,
            })
        };
        Box::pin(std::future::ready(read()))
    }

    fn get_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError>;

    /// Decisions matching `query`, newest first, one page at a time.
    fn list_decisions(&self, query: &DecisionQuery) -> Result<DecisionPage, StoreError>;

    fn get_ticket(&self, ticket_id: &str) -> Result<Option<StepUpTicket>, StoreError>;

    /// Tickets matching `query`, newest first. A pending ticket past its expiry is
    /// reported as expired.
    fn list_tickets(&self, query: &TicketQuery, now_ms: u64) -> Result<TicketPage, StoreError>;

    /// Applies an operator's resolution atomically and durably: the ticket afterwards, and
    /// whether this resolution changed it (`false` when it repeats the one the ticket has).
    fn resolve_ticket(
        &self,
        ticket_id: &str,
        resolution: OperatorResolution,
    ) -> StoreFuture<'_, Result<(StepUpTicket, bool), ResolveError>>;

    /// Marks pending tickets past their expiry as expired; returns how many.
    fn expire_tickets(&self, now_ms: u64) -> Result<usize, StoreError>;

    /// The cached CIMD document for `client_id`, if any.
    fn cached_document(&self, client_id: &str) -> Result<Option<CacheEntry>, StoreError>;

    /// Caches a valid document. Not flushed at once: the cache is rebuilt by fetching.
    fn cache_document(&self, entry: &CacheEntry) -> Result<(), StoreError>;

    /// Forgets the cached document for `client_id` (it turned invalid).
    fn evict_document(&self, client_id: &str) -> Result<(), StoreError>;

    /// The watched members (`cimd::changes::snapshot`) of the CIMD document `tenant` last
    /// approved for `client_id`. Kept apart from the cache, which headers, invalid
    /// documents and pruning empty: a change is reported against what was approved.
    fn approved_document(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Remembers `snapshot` as what `tenant` approved for `client_id`. Made durable by the
    /// next commit; never pruned (one small entry per tenant and approved client_id).
    fn set_approved_document(
        &self,
        tenant: &str,
        client_id: &str,
        snapshot: &[u8],
    ) -> Result<(), StoreError>;

    /// Deletes what retention no longer keeps: decisions (with their list index entries and
    /// shadow disagreements), admin actions and
    /// fingerprint records older than `cutoffs.decisions_ms`, resolved or expired tickets
    /// older than `cutoffs.tickets_ms`, rate buckets older than `cutoffs.rates_ms`, cached
    /// documents that expired before `cutoffs.cimd_cache_ms`. Then
    /// gives the freed space back if the store has grown past its limit.
    fn prune(&self, cutoffs: PruneCutoffs) -> Result<PruneReport, StoreError>;

    /// Records a shadow disagreement. Not flushed at once: it is a diagnostic, written
    /// after the decision it belongs to.
    fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), StoreError>;

    /// Disagreements newest first, `page_size` (0: a default) at a time, from below
    /// `page_token`.
    fn list_disagreements(
        &self,
        page_size: usize,
        page_token: Option<ulid::Ulid>,
    ) -> Result<DisagreementPage, StoreError>;

    /// Records an action of the admin audit trail; resolves once it is durable.
    fn record_admin_action(&self, action: AdminAction) -> StoreFuture<'_, ()>;

    /// The admin audit trail newest first, `page_size` (0: a default) at a time, from below
    /// `page_token`.
    fn list_admin_actions(
        &self,
        page_size: usize,
        page_token: Option<ulid::Ulid>,
    ) -> Result<AdminActionPage, StoreError>;

    /// Bytes the store takes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Flushes everything written so far; used at shutdown.
    fn flush(&self) -> StoreFuture<'_, ()>;

    fn stats(&self) -> StoreStats;

    /// Whether the store can serve, as it changes (a store that is always in service has
    /// nothing to say: `None`). Health reports `NOT_SERVING` while it cannot.
    fn serving(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }
}

/// Why the store failed. Messages, not sources, so that one flush failure can be handed
/// to every caller waiting on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at `{path}`: {message}")]
    Open { path: String, message: String },
    #[error(
        "the store at `{path}` has format version `{found}`, and this clientgate reads version \
         `{expected}`; use a clientgate that matches, or point --data at another directory"
    )]
    UnknownFormat {
        path: String,
        found: String,
        expected: String,
    },
    #[error(
        "the database `{database}` has clientgate schema version {found}, and this clientgate \
         knows versions up to {expected}: a newer clientgate migrated it; run that version"
    )]
    NewerSchema {
        database: String,
        found: i32,
        expected: i32,
    },
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The disk is full (or the process's file-size limit was reached): the store is taken
    /// out of service until it can open again.
    #[error("the store's disk is full: {0}")]
    DiskFull(String),
    /// The store is out of service after an I/O failure, and opens again by itself.
    #[error("the store is out of service ({cause}); it reopens once the disk works again")]
    Recovering { cause: String },
    #[error("cannot encode a {what} for the store: {message}")]
    Encode { what: &'static str, message: String },
    #[error("stored record `{key}` is corrupt: {message}")]
    Corrupt { key: String, message: String },
    /// Not a failure of the store: the approved ticket a decision redeems had no use left
    /// when it was recorded. The engine decides again, and never answers this.
    #[error("step-up ticket `{ticket_id}` has no approval left")]
    TicketSpent { ticket_id: String },
}

/// Times (milliseconds since the epoch) before which records are pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneCutoffs {
    pub decisions_ms: u64,
    pub tickets_ms: u64,
    pub rates_ms: u64,
    /// Cached CIMD documents that expired before this are forgotten.
    pub cimd_cache_ms: u64,
}

/// How much one pruning pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub decisions: u64,
    pub tickets: u64,
    pub rate_buckets: u64,
    pub fingerprints: u64,
    pub cached_documents: u64,
    /// Set if the pass also compacted the store.
    pub compaction: Option<Compaction>,
}

/// A compaction: the live data rewritten into a fresh database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// Writes made during the copy and replayed into it.
    pub replayed: u64,
    /// How long writes waited: the replay and the switch.
    pub writes_paused: std::time::Duration,
    pub took: std::time::Duration,
}

/// Why a ticket could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no step-up ticket `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] ResolveRefusal),
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> StoreError {
        match &error {
            sled::Error::Io(io) if no_space(io.kind()) => StoreError::DiskFull(error.to_string()),
            _ => StoreError::Io(error.to_string()),
        }
    }
}

/// Whether an I/O error of this kind means no more can be written: the disk or a quota is
/// full, or the process's file-size limit (`RLIMIT_FSIZE`) was reached.
pub(crate) fn no_space(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind;
    matches!(
        kind,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}

#[cfg(test)]
mod tests;

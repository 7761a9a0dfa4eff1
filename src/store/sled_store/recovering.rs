//! The sled store as the service uses it: one that outlives a full disk (review F-4, F-9).
//!
//! Once one of its writes has failed, sled 0.34 fails every later operation (its "global
//! error"), so a store that met a full disk stayed broken after space returned; and opening
//! a store on a full disk failed, so clientgate would not start. [`Recovering`] takes the
//! store out of service at its first I/O failure, waits for the calls still holding it,
//! releases the data directory and opens it again every [`RETRY_EVERY`] until that succeeds.
//! A store that cannot be opened at start because the disk is full starts out of service the
//! same way. Meanwhile every call fails with [`StoreError::Recovering`] — a decision is
//! `UNAVAILABLE`, never an answer that was not recorded — and [`Store::serving`] says so,
//! which health reports as `NOT_SERVING`.
//!
//! What reopening costs is what a crash costs (ARCHITECTURE.md): nothing acknowledged, the
//! rate counts of the last persist interval, the unflushed cache entries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{SledLimits, SledStore};
use crate::step_up::{OperatorResolution, StepUpTicket};
use crate::store::{
    AdminAction, AdminActionPage, CacheEntry, DecisionPage, DecisionQuery, DecisionRecord,
    Disagreement, DisagreementPage, FingerprintStats, PruneCutoffs, PruneReport, RateKey, Recorded,
    ResolveError, Store, StoreError, StoreFuture, StoreStats, TicketPage, TicketQuery,
};

/// How often a store out of service tries to open again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

pub struct Recovering {
    dir: PathBuf,
    limits: SledLimits,
    state: Arc<RwLock<State>>,
    /// What the stores taken out of service had counted (recorded, shed, flushes).
    earlier: std::sync::Mutex<StoreStats>,
    /// Whether a store is in service, for whoever watches (health).
    serving: Arc<tokio::sync::watch::Sender<bool>>,
}

enum State {
    Open(Arc<SledStore>),
    /// Out of service since `since`, for `cause`.
    Down {
        cause: String,
        since: Instant,
    },
}

impl Recovering {
    /// Opens the store in `dir`. A full disk does not stop the service from starting: the
    /// store starts out of service and opens once space returns. Any other failure to open
    /// (another process has the directory, an unknown format) is returned.
    pub fn open(dir: &Path, limits: SledLimits) -> Result<Recovering, StoreError> {
        let state = match SledStore::open_with(dir, limits) {
            Ok(store) => State::Open(Arc::new(store)),
            Err(error @ StoreError::DiskFull(_)) => {
                tracing::error!(%error, "the store cannot open: the disk is full; decisions are unavailable until it opens");
                State::Down {
                    cause: error.to_string(),
                    since: Instant::now(),
                }
            }
            Err(error) => return Err(error),
        };
        let down = matches!(state, State::Down { .. });
        let recovering = Recovering {
            dir: dir.to_owned(),
            limits,
            state: Arc::new(RwLock::new(state)),
            earlier: std::sync::Mutex::new(StoreStats::default()),
            serving: Arc::new(tokio::sync::watch::Sender::new(!down)),
        };
        if down {
            recovering.start_recovery(None);
        }
        Ok(recovering)
    }

    /// The store in service, or why there is none.
    fn current(&self) -> Result<Arc<SledStore>, StoreError> {
        match &*self.read() {
            State::Open(store) => Ok(store.clone()),
            State::Down { cause, .. } => Err(StoreError::Recovering {
                cause: cause.clone(),
            }),
        }
    }

    /// Runs `operation` on the store in service; an I/O failure takes it out of service.
    fn with<T>(
        &self,
        operation: impl FnOnce(&SledStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let store = self.current()?;
        let result = operation(&store);
        if let Err(error) = &result {
            self.failed(&store, error);
        }
        result
    }

    /// Takes `store` out of service if `error` says its disk failed (and it is still the
    /// one in service: concurrent failures start one recovery).
    fn failed(&self, store: &Arc<SledStore>, error: &StoreError) {
        if !matches!(error, StoreError::Io(_) | StoreError::DiskFull(_)) {
            return;
        }
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let State::Open(current) = &*state else {
            return;
        };
        if !Arc::ptr_eq(current, store) {
            return;
        }
        let old = current.clone();
        let counted = old.stats();
        let mut earlier = self
            .earlier
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        earlier.decisions_recorded += counted.decisions_recorded;
        earlier.decisions_shed += counted.decisions_shed;
        earlier.flushes += counted.flushes;
        drop(earlier);
        tracing::error!(%error, "the store failed; decisions are unavailable until it opens again");
        *state = State::Down {
            cause: error.to_string(),
            since: Instant::now(),
        };
        drop(state);
        self.serving.send_replace(false);
        self.start_recovery(Some(old));
    }

    fn start_recovery(&self, old: Option<Arc<SledStore>>) {
        tokio::spawn(recover(
            self.state.clone(),
            self.serving.clone(),
            self.dir.clone(),
            self.limits,
            old,
        ));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Releases `old` once no call holds it, then opens the directory every [`RETRY_EVERY`]
/// until it opens, and puts the new store in service.
async fn recover(
    state: Arc<RwLock<State>>,
    serving: Arc<tokio::sync::watch::Sender<bool>>,
    dir: PathBuf,
    limits: SledLimits,
    old: Option<Arc<SledStore>>,
) {
    if let Some(mut old) = old {
        let store = loop {
            match Arc::try_unwrap(old) {
                Ok(store) => break store,
                Err(still_held) => {
                    old = still_held;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        if let Err(error) = store.abandon().await {
            tracing::warn!(%error, "the failed store did not release its directory cleanly");
        }
    }
    let mut last_said = None::<String>;
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        let (dir, handle) = (dir.clone(), tokio::runtime::Handle::current());
        let opened = tokio::task::spawn_blocking(move || {
            let _runtime = handle.enter();
            SledStore::open_with(&dir, limits)
        })
        .await;
        match opened {
            Ok(Ok(store)) => {
                let mut state = state
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let State::Down { since, .. } = &*state {
                    tracing::info!(
                        down_ms = since.elapsed().as_millis() as u64,
                        "the store opened again; decisions resume"
                    );
                }
                *state = State::Open(Arc::new(store));
                drop(state);
                serving.send_replace(true);
                return;
            }
            Ok(Err(error)) => {
                let message = error.to_string();
                if last_said.as_deref() != Some(message.as_str()) {
                    tracing::warn!(%error, "the store cannot open yet; retrying every second");
                    last_said = Some(message.clone());
                }
                if let State::Down { cause, .. } = &mut *state
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                {
                    *cause = message;
                }
            }
            Err(error) => tracing::warn!(%error, "the store's open task failed; retrying"),
        }
    }
}

impl Store for Recovering {
    fn record(
        &self,
        decision: DecisionRecord,
        ticket: Option<StepUpTicket>,
        rate_keys: Vec<RateKey>,
    ) -> StoreFuture<'_, Recorded> {
        Box::pin(async move {
            let store = self.current()?;
            let result = store.record(decision, ticket, rate_keys).await;
            if let Err(error) = &result {
                self.failed(&store, error);
            }
            result
        })
    }

    fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[Duration],
        now_ms: u64,
    ) -> Result<Vec<Vec<u64>>, StoreError> {
        self.with(|store| store.rate_counts(keys, windows, now_ms))
    }

    fn fingerprint_stats(&self, fingerprint: &str) -> Result<Option<FingerprintStats>, StoreError> {
        self.with(|store| store.fingerprint_stats(fingerprint))
    }

    fn get_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        self.with(|store| store.get_decision(decision_id))
    }

    fn list_decisions(&self, query: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        self.with(|store| store.list_decisions(query))
    }

    fn get_ticket(&self, ticket_id: &str) -> Result<Option<StepUpTicket>, StoreError> {
        self.with(|store| store.get_ticket(ticket_id))
    }

    fn list_tickets(&self, query: &TicketQuery, now_ms: u64) -> Result<TicketPage, StoreError> {
        self.with(|store| store.list_tickets(query, now_ms))
    }

    fn resolve_ticket(
        &self,
        ticket_id: &str,
        resolution: OperatorResolution,
    ) -> StoreFuture<'_, Result<(StepUpTicket, bool), ResolveError>> {
        let ticket_id = ticket_id.to_owned();
        Box::pin(async move {
            let store = self.current()?;
            let result = store.resolve_ticket(&ticket_id, resolution).await;
            if let Err(error) = &result {
                self.failed(&store, error);
            }
            result
        })
    }

    fn expire_tickets(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.with(|store| store.expire_tickets(now_ms))
    }

    fn cached_document(&self, client_id: &str) -> Result<Option<CacheEntry>, StoreError> {
        self.with(|store| store.cached_document(client_id))
    }

    fn cache_document(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        self.with(|store| store.cache_document(entry))
    }

    fn evict_document(&self, client_id: &str) -> Result<(), StoreError> {
        self.with(|store| store.evict_document(client_id))
    }

    fn approved_document(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|store| store.approved_document(tenant, client_id))
    }

    fn set_approved_document(
        &self,
        tenant: &str,
        client_id: &str,
        snapshot: &[u8],
    ) -> Result<(), StoreError> {
        self.with(|store| store.set_approved_document(tenant, client_id, snapshot))
    }

    fn prune(&self, cutoffs: PruneCutoffs) -> Result<PruneReport, StoreError> {
        self.with(|store| store.prune(cutoffs))
    }

    fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), StoreError> {
        self.with(|store| store.record_disagreement(disagreement))
    }

    fn list_disagreements(
        &self,
        page_size: usize,
        page_token: Option<ulid::Ulid>,
    ) -> Result<DisagreementPage, StoreError> {
        self.with(|store| store.list_disagreements(page_size, page_token))
    }

    fn record_admin_action(&self, action: AdminAction) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let store = self.current()?;
            let result = store.record_admin_action(action).await;
            if let Err(error) = &result {
                self.failed(&store, error);
            }
            result
        })
    }

    fn list_admin_actions(
        &self,
        page_size: usize,
        page_token: Option<ulid::Ulid>,
    ) -> Result<AdminActionPage, StoreError> {
        self.with(|store| store.list_admin_actions(page_size, page_token))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|store| store.size_on_disk())
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let store = self.current()?;
            store.flush().await
        })
    }

    fn stats(&self) -> StoreStats {
        let mut stats = match &*self.read() {
            State::Open(store) => store.stats(),
            State::Down { .. } => StoreStats::default(),
        };
        let earlier = *self
            .earlier
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stats.decisions_recorded += earlier.decisions_recorded;
        stats.decisions_shed += earlier.decisions_shed;
        stats.flushes += earlier.flushes;
        stats
    }

    fn serving(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.serving.subscribe())
    }
}

//! The background work a running clientgate does besides answering: marking expired
//! step-up tickets, and deleting what retention no longer keeps (then compacting). Both
//! run the store's blocking scans on the blocking pool, never on the threads that answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::config::Config;
use crate::store::{PruneCutoffs, Store};
use crate::vocab::millis;

/// How often pending tickets past their expiry are marked expired. Reads already see them
/// as expired; this keeps the stored state and `ListStepUps` filters in step.
const EXPIRY_SCAN_EVERY: Duration = Duration::from_secs(30);

/// Marks pending tickets past their expiry as expired, every [`EXPIRY_SCAN_EVERY`].
pub async fn expire_tickets_periodically(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(EXPIRY_SCAN_EVERY);
    loop {
        every.tick().await;
        let now = millis(SystemTime::now());
        let scan = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.expire_tickets(now)).await
        };
        match scan {
            Ok(Ok(0)) => {}
            Ok(Ok(expired)) => info!(expired, "step-up tickets expired"),
            Ok(Err(error)) => warn!(%error, "cannot expire step-up tickets"),
            Err(error) => warn!(%error, "the ticket expiry task failed"),
        }
    }
}

/// Deletes what retention no longer keeps, every `retention.prune_every`.
pub async fn prune_periodically(store: Arc<dyn Store>, config: Config) {
    let mut every = tokio::time::interval(config.retention.prune_every);
    loop {
        every.tick().await;
        let cutoffs = prune_cutoffs(&config, SystemTime::now());
        let pruning = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.prune(cutoffs)).await
        };
        match pruning {
            Ok(Ok(report)) => {
                if let Some(compaction) = report.compaction {
                    info!(
                        before_bytes = compaction.before_bytes,
                        after_bytes = compaction.after_bytes,
                        replayed = compaction.replayed,
                        writes_paused_ms = compaction.writes_paused.as_millis() as u64,
                        took_ms = compaction.took.as_millis() as u64,
                        "compacted the store"
                    );
                }
                info!(
                    decisions = report.decisions,
                    tickets = report.tickets,
                    rate_buckets = report.rate_buckets,
                    fingerprints = report.fingerprints,
                    cached_documents = report.cached_documents,
                    size_on_disk = store.size_on_disk().unwrap_or(0),
                    "pruned"
                )
            }
            Ok(Err(error)) => warn!(%error, "pruning failed"),
            Err(error) => warn!(%error, "the pruning task failed"),
        }
    }
}

/// What retention keeps at `now`: decisions and tickets for their configured ages, rate
/// buckets for the longest window (and the minute being counted), cached documents until
/// their stale grace ends.
pub fn prune_cutoffs(config: &Config, now: SystemTime) -> PruneCutoffs {
    let before = |age: Duration| millis(now).saturating_sub(age.as_millis() as u64);
    let longest_window = config
        .rates
        .windows
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    PruneCutoffs {
        decisions_ms: before(config.retention.decisions),
        tickets_ms: before(config.retention.tickets),
        rates_ms: before(longest_window + Duration::from_secs(60)),
        // A document past its expiry is still served for as long again as the longest
        // freshness while its server fails transiently (stale last-good); then it goes.
        cimd_cache_ms: before(config.cimd.cache_max),
    }
}

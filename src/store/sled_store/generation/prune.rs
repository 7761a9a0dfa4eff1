//! Retention on a generation: deleting what is past its cutoff.

use ulid::Ulid;

use crate::step_up::{self, StepUpTicket};
use crate::store::{
    CacheEntry, DecisionRecord, FingerprintStats, PruneCutoffs, PruneReport, StoreError,
};

use super::write::Writer;

impl Writer<'_> {
    /// Deletes what is older than `cutoffs`: decisions and disagreements, tickets past the retention rule, rate buckets, fingerprint records.
    pub(in crate::store::sled_store) fn prune(
        &self,
        cutoffs: PruneCutoffs,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        let upper = Ulid::from_parts(cutoffs.decisions_ms, 0).to_bytes();
        let mut batch = Vec::new();
        for entry in self.generation.decisions.range(..upper) {
            let (key, value) = entry?;
            batch.push((key, value));
            if batch.len() == 1000 {
                report.decisions += self.delete_decisions(&batch)?;
                batch.clear();
            }
        }
        report.decisions += self.delete_decisions(&batch)?;
        let mut stale = sled::Batch::default();
        for entry in self.generation.disagreements.range(..upper) {
            stale.remove(entry?.0);
        }
        self.generation.disagreements.apply_batch(stale)?;
        let mut stale = sled::Batch::default();
        for entry in self.generation.admin_audit.range(..upper) {
            stale.remove(entry?.0);
        }
        self.generation.admin_audit.apply_batch(stale)?;

        for entry in self.generation.tickets.iter() {
            let (key, value) = entry?;
            let ticket = match serde_json::from_slice::<StepUpTicket>(&value) {
                Ok(ticket) => ticket,
                Err(error) => {
                    corrupt("step_up_tickets", &key, &error);
                    continue;
                }
            };
            if !step_up::is_retained(&ticket, cutoffs.tickets_ms) {
                self.generation.tickets.remove(key)?;
                report.tickets += 1;
            }
        }

        let oldest_minute = cutoffs.rates_ms / crate::store::derived::MINUTE_MS;
        for entry in self.generation.rates.iter() {
            let (key, _) = entry?;
            let minute = u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap_or([0; 8]));
            if minute < oldest_minute {
                self.generation.rates.remove(key)?;
                report.rate_buckets += 1;
            }
        }

        for entry in self.generation.fingerprints.iter() {
            let (key, value) = entry?;
            let first_seen = match serde_json::from_slice::<FingerprintStats>(&value) {
                Ok(stats) => stats.first_seen_ms,
                Err(error) => {
                    corrupt("fingerprints", &key, &error);
                    continue;
                }
            };
            if first_seen < cutoffs.decisions_ms {
                self.generation.fingerprints.remove(key)?;
                report.fingerprints += 1;
            }
        }
        let mut stale = sled::Batch::default();
        for entry in self.generation.cimd_cache.iter() {
            let (key, value) = entry?;
            match serde_json::from_slice::<CacheEntry>(&value) {
                Ok(cached) if cached.expires_at_ms < cutoffs.cimd_cache_ms => {
                    stale.remove(key);
                    report.cached_documents += 1;
                }
                Ok(_) => {}
                Err(error) => corrupt("cimd_cache", &key, &error),
            }
        }
        self.generation.cimd_cache.apply_batch(stale)?;
        self.generation.db.flush()?;
        Ok(report)
    }

    /// Deletes decisions in one batch (a record that does not decode is left, and said).
    fn delete_decisions(&self, entries: &[(sled::IVec, sled::IVec)]) -> Result<u64, StoreError> {
        let mut decisions = sled::Batch::default();
        let mut deleted = 0;
        for (key, value) in entries {
            if let Err(error) = serde_json::from_slice::<DecisionRecord>(value) {
                corrupt("decisions", key, &error);
                continue;
            }
            decisions.remove(key.clone());
            deleted += 1;
        }
        self.generation.decisions.apply_batch(decisions)?;
        Ok(deleted)
    }
}

/// A scan met a record that does not decode: it is left as it is, for an operator to look
/// at, and said once per pass.
pub(super) fn corrupt(tree: &str, key: &[u8], error: &serde_json::Error) {
    tracing::warn!(
        tree,
        key = %String::from_utf8_lossy(key),
        %error,
        "a stored record does not decode; left as it is"
    );
}

//! Retention on a generation: deleting what is past its cutoff, indexes included.

use ulid::Ulid;

use crate::step_up::{self, StepUpTicket};
use crate::store::{DecisionRecord, FingerprintStats, PruneCutoffs, PruneReport, StoreError};

use super::*;

impl Generation {
    /// Deletes what is older than `cutoffs`: decisions with their index entries and
    /// disagreements, tickets past the retention rule, rate buckets, fingerprint records.
    pub(in crate::store::sled_store) fn prune(
        &self,
        cutoffs: PruneCutoffs,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        let upper = Ulid::from_parts(cutoffs.decisions_ms, 0).to_bytes();
        let mut batch = Vec::new();
        for entry in self.decisions.range(..upper) {
            let (key, value) = entry?;
            batch.push((key, value));
            if batch.len() == 1000 {
                report.decisions += self.delete_decisions(&batch)?;
                batch.clear();
            }
        }
        report.decisions += self.delete_decisions(&batch)?;
        let mut stale = sled::Batch::default();
        for entry in self.disagreements.range(..upper) {
            stale.remove(entry?.0);
        }
        self.disagreements.apply_batch(stale)?;
        let mut stale = sled::Batch::default();
        for entry in self.admin_audit.range(..upper) {
            stale.remove(entry?.0);
        }
        self.admin_audit.apply_batch(stale)?;

        for entry in self.tickets.iter() {
            let (key, value) = entry?;
            let Ok(ticket) = serde_json::from_slice::<StepUpTicket>(&value) else {
                continue;
            };
            if !step_up::is_retained(&ticket, cutoffs.tickets_ms) {
                self.tickets.remove(key)?;
                report.tickets += 1;
            }
        }

        let oldest_minute = cutoffs.rates_ms / 60_000;
        for entry in self.rates.iter() {
            let (key, _) = entry?;
            let minute = u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap_or([0; 8]));
            if minute < oldest_minute {
                self.rates.remove(key)?;
                report.rate_buckets += 1;
            }
        }

        for entry in self.fingerprints.iter() {
            let (key, value) = entry?;
            let first_seen = serde_json::from_slice::<FingerprintStats>(&value)
                .map_or(0, |stats| stats.first_seen_ms);
            if first_seen < cutoffs.decisions_ms {
                self.fingerprints.remove(key)?;
                report.fingerprints += 1;
            }
        }
        self.db.flush()?;
        Ok(report)
    }

    /// Deletes decisions and their index entries in one batch per tree.
    fn delete_decisions(&self, entries: &[(sled::IVec, sled::IVec)]) -> Result<u64, StoreError> {
        let mut decisions = sled::Batch::default();
        let mut by_tenant = sled::Batch::default();
        let mut by_ip = sled::Batch::default();
        let mut by_client = sled::Batch::default();
        let mut by_fingerprint = sled::Batch::default();
        for (key, value) in entries {
            decisions.remove(key.clone());
            let Ok(record) = serde_json::from_slice::<DecisionRecord>(value) else {
                continue;
            };
            let id = id_of_index_key(key);
            by_tenant.remove(index_key(&record.tenant, id));
            if let Some(ip) = &record.ip {
                by_ip.remove(index_key(ip, id));
            }
            if let Some(client_id) = &record.client_id {
                by_client.remove(index_key(client_id, id));
            }
            by_fingerprint.remove(index_key(&record.fingerprint, id));
        }
        // Index entries first: a crash between the batches can only leave a decision without
        // index entries (still listed unfiltered, pruned next pass); listing skips index
        // entries whose decision is gone in any case.
        self.by_tenant.apply_batch(by_tenant)?;
        self.by_ip.apply_batch(by_ip)?;
        self.by_client.apply_batch(by_client)?;
        self.by_fingerprint.apply_batch(by_fingerprint)?;
        self.decisions.apply_batch(decisions)?;
        Ok(entries.len() as u64)
    }
}

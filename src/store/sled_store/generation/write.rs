//! Writes to a generation's trees: a decision with everything it creates in one
//! transaction, ticket transitions, disagreements and cached documents.

use std::sync::RwLockReadGuard;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::step_up::{self, OperatorResolution, StepUpTicket};
use crate::store::derived::Changes;
use crate::store::sled_store::Live;
use crate::store::{AdminAction, CacheEntry};
use crate::store::{DecisionRecord, Disagreement, ResolveError, StoreError};

use super::{Generation, encode, rate_bucket_key};

/// Write access to the live generation. Made only from a read guard of the live generation,
/// so that no write can happen while compaction holds the write lock (between watching the
/// generation and switching away from it, a write without the guard would be lost).
pub(in crate::store::sled_store) struct Writer<'a> {
    pub(in crate::store::sled_store::generation) generation: &'a Generation,
}

impl<'a> Writer<'a> {
    pub(in crate::store::sled_store) fn new(live: &'a RwLockReadGuard<'_, Live>) -> Writer<'a> {
        Writer {
            generation: &live.generation,
        }
    }
}

impl Writer<'_> {
    /// Writes a decision record: one insert, or — when it opens a ticket or redeems one —
    /// one transaction over the decisions and the tickets. What is derived from it is
    /// written later, in batches (rate counters and fingerprint statistics,
    /// [`Writer::write_derived`]), or never (its list index entries, rebuilt at open).
    pub(in crate::store::sled_store) fn write(
        &self,
        decision: &DecisionRecord,
        ticket: Option<&StepUpTicket>,
    ) -> Result<(), StoreError> {
        let store = self.generation;
        let key = super::parse_id(&decision.decision_id)?.to_bytes();
        let value = encode("decision", decision)?;
        if ticket.is_none() && decision.redeemed_ticket.is_none() {
            store.decisions.insert(key, value)?;
            return Ok(());
        }
        let ticket_value = ticket
            .map(|ticket| {
                encode("step-up ticket", ticket).map(|json| (ticket.ticket_id.clone(), json))
            })
            .transpose()?;
        let result: Result<(), TransactionError<StoreError>> = (&store.decisions, &store.tickets)
            .transaction(|(decisions, tickets)| {
                decisions.insert(&key, value.as_slice())?;
                if let Some((ticket_id, json)) = &ticket_value {
                    tickets.insert(ticket_id.as_bytes(), json.as_slice())?;
                }
                if let Some(ticket_id) = &decision.redeemed_ticket {
                    let spent = || {
                        ConflictableTransactionError::Abort(StoreError::TicketSpent {
                            ticket_id: ticket_id.clone(),
                        })
                    };
                    let bytes = tickets.get(ticket_id.as_bytes())?.ok_or_else(spent)?;
                    let ticket: StepUpTicket = serde_json::from_slice(&bytes).map_err(|error| {
                        ConflictableTransactionError::Abort(StoreError::Corrupt {
                            key: format!("step_up_tickets/{ticket_id}"),
                            message: error.to_string(),
                        })
                    })?;
                    let redeemed = ticket
                        .redeemed(&decision.decision_id, decision.decided_at_ms)
                        .ok_or_else(spent)?;
                    let json = encode("step-up ticket", &redeemed)
                        .map_err(ConflictableTransactionError::Abort)?;
                    tickets.insert(ticket_id.as_bytes(), json)?;
                }
                Ok::<(), ConflictableTransactionError<StoreError>>(())
            });
        result.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => StoreError::from(error),
        })
    }

    /// Writes what changed in the derived state (absolute values).
    pub(in crate::store::sled_store) fn write_derived(
        &self,
        changes: &Changes,
    ) -> Result<(), StoreError> {
        let store = self.generation;
        let mut rates = sled::Batch::default();
        for (key, minute, count) in &changes.rate_buckets {
            rates.insert(rate_bucket_key(key, *minute), &count.to_be_bytes());
        }
        store.rates.apply_batch(rates)?;
        let mut fingerprints = sled::Batch::default();
        for (print, stats) in &changes.fingerprints {
            fingerprints.insert(print.as_bytes(), encode("fingerprint record", stats)?);
        }
        store.fingerprints.apply_batch(fingerprints)?;
        Ok(())
    }

    /// Applies an operator's resolution to a ticket atomically.
    pub(in crate::store::sled_store) fn resolve_ticket(
        &self,
        ticket_id: &str,
        resolution: &OperatorResolution,
    ) -> Result<Result<(StepUpTicket, bool), ResolveError>, StoreError> {
        let ticket_id = ticket_id.to_owned();
        let outcome = self.generation.tickets.transaction(|tickets| {
            let Some(bytes) = tickets.get(ticket_id.as_bytes())? else {
                return Ok(Err(ResolveError::NotFound(ticket_id.clone())));
            };
            let ticket: StepUpTicket = serde_json::from_slice(&bytes).map_err(|error| {
                ConflictableTransactionError::Abort(StoreError::Corrupt {
                    key: ticket_id.clone(),
                    message: error.to_string(),
                })
            })?;
            match step_up::resolve(ticket, resolution) {
                Ok((ticket, changed)) => {
                    if changed {
                        let json = encode("step-up ticket", &ticket)
                            .map_err(ConflictableTransactionError::Abort)?;
                        tickets.insert(ticket_id.as_bytes(), json)?;
                    }
                    Ok(Ok((ticket, changed)))
                }
                Err(refusal) => Ok(Err(ResolveError::Refused(refusal))),
            }
        });
        outcome.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => StoreError::from(error),
        })
    }

    pub(in crate::store::sled_store) fn expire_tickets(
        &self,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut expired = 0;
        for entry in self.generation.tickets.iter() {
            let (key, value) = entry?;
            let ticket = match serde_json::from_slice::<StepUpTicket>(&value) {
                Ok(ticket) => ticket,
                Err(error) => {
                    super::prune::corrupt("step_up_tickets", &key, &error);
                    continue;
                }
            };
            if let Some(ticket) = step_up::expire(&ticket, now_ms) {
                let json = encode("step-up ticket", &ticket)?;
                // Only if nobody resolved it meanwhile.
                if self
                    .generation
                    .tickets
                    .compare_and_swap(&key, Some(&value), Some(json))?
                    .is_ok()
                {
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }

    pub(in crate::store::sled_store) fn record_admin_action(
        &self,
        action: &AdminAction,
    ) -> Result<(), StoreError> {
        let id = super::parse_id(&action.action_id)?;
        let json = encode("admin action", action)?;
        self.generation.admin_audit.insert(id.to_bytes(), json)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn record_disagreement(
        &self,
        disagreement: &Disagreement,
    ) -> Result<(), StoreError> {
        let id = super::parse_id(&disagreement.decision_id)?;
        let json = encode("shadow disagreement", disagreement)?;
        self.generation.disagreements.insert(id.to_bytes(), json)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn cache_document(
        &self,
        entry: &CacheEntry,
    ) -> Result<(), StoreError> {
        let json = encode("cached document", entry)?;
        self.generation
            .cimd_cache
            .insert(entry.client_id.as_bytes(), json)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn evict_document(
        &self,
        client_id: &str,
    ) -> Result<(), StoreError> {
        self.generation.cimd_cache.remove(client_id.as_bytes())?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn set_approved_document(
        &self,
        tenant: &str,
        client_id: &str,
        snapshot: &[u8],
    ) -> Result<(), StoreError> {
        let key = super::approved_document_key(tenant, client_id);
        self.generation.approved_documents.insert(key, snapshot)?;
        Ok(())
    }
}

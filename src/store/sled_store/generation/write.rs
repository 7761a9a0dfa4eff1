//! Writes to a generation's trees: a decision with everything it creates in one
//! transaction, ticket transitions, disagreements and cached documents.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::step_up::{self, OperatorResolution, StepUpTicket};
use crate::store::{AdminAction, CacheEntry};
use crate::store::{
    DecisionRecord, Disagreement, FingerprintStats, RateKey, ResolveError, StoreError,
};
use crate::vocab::Decision;

use super::{Generation, decode_count, encode, index_key, parse_id, rate_bucket_key};

impl Generation {
    pub(in crate::store::sled_store) fn write(
        &self,
        decision: &DecisionRecord,
        ticket: Option<&StepUpTicket>,
        rate_keys: &[RateKey],
    ) -> Result<(), StoreError> {
        let id = parse_id(&decision.decision_id)?;
        let key = id.to_bytes();
        let value = encode("decision", decision)?;
        let ticket_value = ticket
            .map(|ticket| {
                encode("step-up ticket", ticket).map(|json| (ticket.ticket_id.clone(), json))
            })
            .transpose()?;
        let trees = (
            &self.decisions,
            &self.by_tenant,
            &self.by_ip,
            &self.by_client,
            &self.by_fingerprint,
            &self.tickets,
            &self.rates,
            &self.fingerprints,
        );
        let minute = decision.decided_at_ms / 60_000;
        let approved = decision.decision == Decision::Approve;
        let result: Result<(), TransactionError<StoreError>> = trees.transaction(
            |(
                decisions,
                by_tenant,
                by_ip,
                by_client,
                by_fingerprint,
                tickets,
                rates,
                fingerprints,
            )| {
                decisions.insert(&key, value.as_slice())?;
                by_tenant.insert(index_key(&decision.tenant, id), &[])?;
                if let Some(ip) = &decision.ip {
                    by_ip.insert(index_key(ip, id), &[])?;
                }
                if let Some(client_id) = &decision.client_id {
                    by_client.insert(index_key(client_id, id), &[])?;
                }
                by_fingerprint.insert(index_key(&decision.fingerprint, id), &[])?;
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
                for key in rate_keys {
                    let bucket = rate_bucket_key(key, minute);
                    let count = rates.get(&bucket)?.map_or(0, |bytes| decode_count(&bytes));
                    rates.insert(bucket, &(count + 1).to_be_bytes())?;
                }
                if approved {
                    let print = decision.fingerprint.as_bytes();
                    let stats = match fingerprints.get(print)? {
                        // A record that does not decode is an error, never reset: it would
                        // silently forget the earlier approvals `duplicate_of` names.
                        Some(bytes) => {
                            let mut stats: FingerprintStats = serde_json::from_slice(&bytes)
                                .map_err(|error| {
                                    ConflictableTransactionError::Abort(StoreError::Corrupt {
                                        key: format!("fingerprints/{}", decision.fingerprint),
                                        message: error.to_string(),
                                    })
                                })?;
                            stats.approved += 1;
                            stats
                        }
                        None => FingerprintStats {
                            approved: 1,
                            first_seen_ms: decision.decided_at_ms,
                            first_decision_id: decision.decision_id.clone(),
                        },
                    };
                    let json = encode("fingerprint record", &stats)
                        .map_err(ConflictableTransactionError::Abort)?;
                    fingerprints.insert(print, json)?;
                }
                Ok::<(), ConflictableTransactionError<StoreError>>(())
            },
        );
        result.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => StoreError::from(error),
        })
    }

    /// Applies an operator's resolution to a ticket atomically.
    pub(in crate::store::sled_store) fn resolve_ticket(
        &self,
        ticket_id: &str,
        resolution: &OperatorResolution,
    ) -> Result<Result<StepUpTicket, ResolveError>, StoreError> {
        let ticket_id = ticket_id.to_owned();
        let outcome = self.tickets.transaction(|tickets| {
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
                    Ok(Ok(ticket))
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
        for entry in self.tickets.iter() {
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
        let id = parse_id(&action.action_id)?;
        let json = encode("admin action", action)?;
        self.admin_audit.insert(id.to_bytes(), json)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn record_disagreement(
        &self,
        disagreement: &Disagreement,
    ) -> Result<(), StoreError> {
        let id = parse_id(&disagreement.decision_id)?;
        let json = encode("shadow disagreement", disagreement)?;
        self.disagreements.insert(id.to_bytes(), json)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn cache_document(
        &self,
        entry: &CacheEntry,
    ) -> Result<(), StoreError> {
        let json = encode("cached document", entry)?;
        self.cimd_cache.insert(entry.client_id.as_bytes(), json)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn evict_document(
        &self,
        client_id: &str,
    ) -> Result<(), StoreError> {
        self.cimd_cache.remove(client_id.as_bytes())?;
        Ok(())
    }
}

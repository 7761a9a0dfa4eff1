//! Reads of a generation's trees: the decision log and its filters and pages, rate counts,
//! fingerprints, tickets, disagreements and cached documents.

use ulid::Ulid;

use crate::step_up::{self, StepUpTicket};
use crate::store::{AdminAction, AdminActionPage, CacheEntry};
use crate::store::{
    DecisionPage, DecisionQuery, DecisionRecord, Disagreement, DisagreementPage, StoreError,
    TicketPage, TicketQuery,
};

use super::*;
use crate::store::sled_store::lists::{Field, Lists};

/// The store's reads on this generation's trees.
impl Generation {
    pub(in crate::store::sled_store) fn get_decision(
        &self,
        decision_id: &str,
    ) -> Result<Option<DecisionRecord>, StoreError> {
        match Ulid::from_string(decision_id) {
            Ok(id) => self.read_decision(id),
            Err(_) => Ok(None),
        }
    }

    pub(in crate::store::sled_store) fn list_decisions(
        &self,
        query: &DecisionQuery,
        lists: &Lists,
    ) -> Result<DecisionPage, StoreError> {
        let mut budget = PageBudget::new(query.page_size);
        let lower = Ulid::from_parts(query.since_ms.unwrap_or(0), 0);
        let mut upper = query
            .until_ms
            .map_or(Ulid(u128::MAX), |until| Ulid::from_parts(until, 0));
        if let Some(token) = query.page_token {
            upper = upper.min(token);
        }
        // The shortest list that the query names.
        let listed = [
            (Field::ClientId, &query.client_id),
            (Field::Fingerprint, &query.fingerprint),
            (Field::Ip, &query.ip),
            (Field::Tenant, &query.tenant),
        ]
        .into_iter()
        .filter_map(|(field, value)| value.as_deref().map(|value| (field, value)))
        .min_by_key(|(field, value)| lists.count(*field, value));
        let ids: Box<dyn Iterator<Item = Result<Ulid, StoreError>>> = match listed {
            Some((field, value)) => Box::new(
                lists
                    .newest(field, value, lower, upper, SCAN_LIMIT + 1)
                    .into_iter()
                    .map(Ok),
            ),
            None => Box::new(
                self.decisions
                    .range(lower.to_bytes()..upper.to_bytes())
                    .rev()
                    .map(|entry| {
                        entry
                            .map(|(key, _)| id_of_key(&key))
                            .map_err(StoreError::from)
                    }),
            ),
        };
        let mut page = DecisionPage::default();
        for (scanned, id) in ids.enumerate() {
            let id = id?;
            if scanned >= SCAN_LIMIT {
                page.next_page_token = Some(id);
                break;
            }
            let Some((record, bytes)) = self.read_decision_sized(id)? else {
                continue;
            };
            if !matches(query, &record) {
                continue;
            }
            if !budget.take(bytes) {
                // One more matches: the next page starts above it.
                let last = page.decisions.last().map(|last| last.decision_id.as_str());
                page.next_page_token = last.and_then(|last| Ulid::from_string(last).ok());
                break;
            }
            page.decisions.push(record);
        }
        Ok(page)
    }

    pub(in crate::store::sled_store) fn get_ticket(
        &self,
        ticket_id: &str,
    ) -> Result<Option<StepUpTicket>, StoreError> {
        read_json(&self.tickets, ticket_id.as_bytes(), || ticket_id.to_owned())
    }

    pub(in crate::store::sled_store) fn list_tickets(
        &self,
        query: &TicketQuery,
        now_ms: u64,
    ) -> Result<TicketPage, StoreError> {
        let mut budget = PageBudget::new(query.page_size);
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            match &query.page_token {
                Some(token) => Box::new(self.tickets.range(..token.as_bytes().to_vec()).rev()),
                None => Box::new(self.tickets.iter().rev()),
            };
        let mut page = TicketPage::default();
        for (scanned, entry) in entries.enumerate() {
            let (key, value) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if scanned >= SCAN_LIMIT {
                page.next_page_token = Some(key);
                break;
            }
            let ticket: StepUpTicket =
                serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                    key: key.clone(),
                    message: error.to_string(),
                })?;
            let ticket = step_up::as_of(ticket, now_ms);
            let wanted = query.tenant.as_ref().is_none_or(|t| *t == ticket.tenant)
                && query.state.is_none_or(|s| s == ticket.state);
            if !wanted {
                continue;
            }
            if !budget.take(value.len()) {
                page.next_page_token = page.tickets.last().map(|t| t.ticket_id.clone());
                break;
            }
            page.tickets.push(ticket);
        }
        Ok(page)
    }

    pub(in crate::store::sled_store) fn list_disagreements(
        &self,
        page_size: usize,
        page_token: Option<Ulid>,
    ) -> Result<DisagreementPage, StoreError> {
        let mut budget = PageBudget::new(page_size);
        let upper = page_token.unwrap_or(Ulid(u128::MAX)).to_bytes();
        let mut page = DisagreementPage::default();
        for entry in self.disagreements.range(..upper).rev() {
            let (key, value) = entry?;
            let id = id_of_key(&key);
            if !budget.take(value.len()) {
                page.next_page_token = page
                    .disagreements
                    .last()
                    .and_then(|last| Ulid::from_string(&last.decision_id).ok());
                break;
            }
            let disagreement: Disagreement =
                serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                    key: id.to_string(),
                    message: error.to_string(),
                })?;
            page.disagreements.push(disagreement);
        }
        Ok(page)
    }

    pub(in crate::store::sled_store) fn list_admin_actions(
        &self,
        page_size: usize,
        page_token: Option<Ulid>,
    ) -> Result<AdminActionPage, StoreError> {
        let mut budget = PageBudget::new(page_size);
        let upper = page_token.unwrap_or(Ulid(u128::MAX)).to_bytes();
        let mut page = AdminActionPage::default();
        for entry in self.admin_audit.range(..upper).rev() {
            let (key, value) = entry?;
            let id = id_of_key(&key);
            if !budget.take(value.len()) {
                page.next_page_token = Some(
                    page.actions
                        .last()
                        .and_then(|last| Ulid::from_string(&last.action_id).ok())
                        .unwrap_or(id),
                );
                break;
            }
            let action: AdminAction =
                serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                    key: format!("admin_audit/{id}"),
                    message: error.to_string(),
                })?;
            page.actions.push(action);
        }
        Ok(page)
    }

    pub(in crate::store::sled_store) fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    pub(in crate::store::sled_store) fn cached_document(
        &self,
        client_id: &str,
    ) -> Result<Option<CacheEntry>, StoreError> {
        read_json(&self.cimd_cache, client_id.as_bytes(), || {
            client_id.to_owned()
        })
    }

    pub(in crate::store::sled_store) fn approved_document(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = super::approved_document_key(tenant, client_id);
        Ok(self
            .approved_documents
            .get(key)?
            .map(|value| value.to_vec()))
    }
}

//! One generation of the sled store: a complete sled database and the code that reads and
//! writes its trees.
//!
//! Trees: `decisions` (ULID → JSON record) with the indexes `by_tenant`, `by_ip`,
//! `by_client` and `by_fingerprint` (`<value> 0x00 <ULID>` → empty); `step_up_tickets`
//! (ticket id → JSON); `rates` (`<dimension><value> 0x00 <minute>` → count);
//! `fingerprints` (fingerprint → earlier approvals); `cimd_cache` (client_id → JSON);
//! `shadow_disagreements` (decision ULID → JSON);
//! `meta` (`format_version`). A decision and its index entries and
//! ticket are written in one transaction.

use std::path::Path;
use std::time::Duration;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use ulid::Ulid;

use crate::step_up::{self, OperatorResolution, StepUpTicket};
use crate::store::CacheEntry;
use crate::store::group_commit::GroupCommit;
use crate::store::{
    DecisionPage, DecisionQuery, DecisionRecord, Disagreement, DisagreementPage, FingerprintStats,
    PruneCutoffs, PruneReport, RateKey, ResolveError, StoreError, TicketPage, TicketQuery,
};
use crate::vocab::Decision;

/// The layout version this build reads and writes.
pub const FORMAT_VERSION: &str = "1";
const FORMAT_KEY: &[u8] = b"format_version";
/// Index entries examined per page at most; a page that hits it ends early with a token.
const SCAN_LIMIT: usize = 10_000;
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;

pub(super) struct Generation {
    pub(super) db: sled::Db,
    decisions: sled::Tree,
    by_tenant: sled::Tree,
    by_ip: sled::Tree,
    by_client: sled::Tree,
    by_fingerprint: sled::Tree,
    tickets: sled::Tree,
    rates: sled::Tree,
    fingerprints: sled::Tree,
    cimd_cache: sled::Tree,
    disagreements: sled::Tree,
    pub(super) commit: GroupCommit,
}

impl Generation {
    /// Opens (or creates) the generation in `dir`. Must run inside a tokio runtime, which
    /// hosts the group-commit flusher.
    pub(super) fn open(dir: &Path) -> Result<Generation, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|error| open_error(dir, error))?;
        Generation::with_db(db, dir)
    }

    /// A generation over the open database `db` at `dir`.
    pub(super) fn with_db(db: sled::Db, dir: &Path) -> Result<Generation, StoreError> {
        let path = dir.display().to_string();
        let tree = |name: &str| db.open_tree(name).map_err(|error| open_error(dir, error));
        let store = Generation {
            decisions: tree("decisions")?,
            by_tenant: tree("by_tenant")?,
            by_ip: tree("by_ip")?,
            by_client: tree("by_client")?,
            by_fingerprint: tree("by_fingerprint")?,
            tickets: tree("step_up_tickets")?,
            rates: tree("rates")?,
            fingerprints: tree("fingerprints")?,
            cimd_cache: tree("cimd_cache")?,
            disagreements: tree("shadow_disagreements")?,
            commit: GroupCommit::start(db.clone()),
            db,
        };
        store.check_format(&path)?;
        Ok(store)
    }

    /// A new store gets the current format version; an existing one must have it.
    fn check_format(&self, path: &str) -> Result<(), StoreError> {
        let meta = self.db.open_tree("meta")?;
        match meta.get(FORMAT_KEY)? {
            Some(found) if found.as_ref() == FORMAT_VERSION.as_bytes() => Ok(()),
            Some(found) => Err(StoreError::UnknownFormat {
                path: path.to_owned(),
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: FORMAT_VERSION.to_owned(),
            }),
            None if self.decisions.is_empty() && self.tickets.is_empty() => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            None => Err(StoreError::UnknownFormat {
                path: path.to_owned(),
                found: "none".to_owned(),
                expected: FORMAT_VERSION.to_owned(),
            }),
        }
    }

    pub(super) fn write(
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

    fn read_decision(&self, id: Ulid) -> Result<Option<DecisionRecord>, StoreError> {
        read_json(&self.decisions, &id.to_bytes(), || id.to_string())
    }
}

fn open_error(dir: &Path, error: sled::Error) -> StoreError {
    StoreError::Open {
        path: dir.display().to_string(),
        message: match &error {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                "another process has it open (one clientgate per data directory)".to_owned()
            }
            other => other.to_string(),
        },
    }
}

/// The stored JSON of `value`, a `what` (named in the error if it cannot be encoded).
fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Encode {
        what,
        message: error.to_string(),
    })
}

/// Reads and decodes one JSON value; `name` names the key in a corruption error.
fn read_json<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    name: impl FnOnce() -> String,
) -> Result<Option<T>, StoreError> {
    let Some(bytes) = tree.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| StoreError::Corrupt {
            key: name(),
            message: error.to_string(),
        })
}

/// The store's operations on this generation's trees. Writes are not yet durable when
/// they return: [`Generation::commit`] makes them so.
impl Generation {
    pub(super) fn get_decision(
        &self,
        decision_id: &str,
    ) -> Result<Option<DecisionRecord>, StoreError> {
        match Ulid::from_string(decision_id) {
            Ok(id) => self.read_decision(id),
            Err(_) => Ok(None),
        }
    }

    pub(super) fn list_decisions(&self, query: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        let page_size = match query.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let lower = Ulid::from_parts(query.since_ms.unwrap_or(0), 0);
        let mut upper = query
            .until_ms
            .map_or(Ulid(u128::MAX), |until| Ulid::from_parts(until, 0));
        if let Some(token) = query.page_token {
            upper = upper.min(token);
        }
        // The most selective index that the query names.
        let indexed = [
            (&self.by_client, &query.client_id),
            (&self.by_fingerprint, &query.fingerprint),
            (&self.by_ip, &query.ip),
            (&self.by_tenant, &query.tenant),
        ]
        .into_iter()
        .find_map(|(tree, value)| value.as_ref().map(|value| (tree, value)));
        let ids: Box<dyn Iterator<Item = sled::Result<Ulid>>> = match indexed {
            Some((tree, value)) => Box::new(
                tree.range(index_key(value, lower)..index_key(value, upper))
                    .rev()
                    .map(|entry| entry.map(|(key, _)| id_of_index_key(&key))),
            ),
            None => Box::new(
                self.decisions
                    .range(lower.to_bytes()..upper.to_bytes())
                    .rev()
                    .map(|entry| entry.map(|(key, _)| id_of_index_key(&key))),
            ),
        };
        let mut page = DecisionPage::default();
        for (scanned, id) in ids.enumerate() {
            let id = id?;
            if scanned >= SCAN_LIMIT {
                page.next_page_token = Some(id);
                break;
            }
            let Some(record) = self.read_decision(id)? else {
                continue;
            };
            if !matches(query, &record) {
                continue;
            }
            if page.decisions.len() == page_size {
                // One more matches: the next page starts above it.
                let last = page.decisions.last().map(|last| last.decision_id.as_str());
                page.next_page_token = last.and_then(|last| Ulid::from_string(last).ok());
                break;
            }
            page.decisions.push(record);
        }
        Ok(page)
    }

    pub(super) fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[Duration],
        now_ms: u64,
    ) -> Result<Vec<Vec<u64>>, StoreError> {
        let now_minute = now_ms / 60_000;
        let longest = windows
            .iter()
            .map(|w| w.as_secs().div_ceil(60))
            .max()
            .unwrap_or(0);
        keys.iter()
            .map(|key| {
                // Minute buckets newest first, for the longest window; shorter windows are
                // prefixes of it.
                let from = now_minute.saturating_sub(longest.saturating_sub(1));
                let mut buckets: Vec<(u64, u64)> = Vec::new();
                for entry in self
                    .rates
                    .range(rate_bucket_key(key, from)..=rate_bucket_key(key, now_minute))
                {
                    let (bucket, count) = entry?;
                    let minute =
                        u64::from_be_bytes(bucket[bucket.len() - 8..].try_into().unwrap_or([0; 8]));
                    buckets.push((minute, decode_count(&count)));
                }
                Ok(windows
                    .iter()
                    .map(|window| {
                        let minutes = window.as_secs().div_ceil(60).max(1);
                        let oldest = now_minute.saturating_sub(minutes - 1);
                        buckets
                            .iter()
                            .filter(|(minute, _)| *minute >= oldest)
                            .map(|(_, count)| count)
                            .sum()
                    })
                    .collect())
            })
            .collect()
    }

    pub(super) fn fingerprint_stats(
        &self,
        fingerprint: &str,
    ) -> Result<Option<FingerprintStats>, StoreError> {
        read_json(&self.fingerprints, fingerprint.as_bytes(), || {
            fingerprint.to_owned()
        })
    }

    pub(super) fn get_ticket(&self, ticket_id: &str) -> Result<Option<StepUpTicket>, StoreError> {
        read_json(&self.tickets, ticket_id.as_bytes(), || ticket_id.to_owned())
    }

    pub(super) fn list_tickets(
        &self,
        query: &TicketQuery,
        now_ms: u64,
    ) -> Result<TicketPage, StoreError> {
        let page_size = match query.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
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
            let mut ticket: StepUpTicket =
                serde_json::from_slice(&value).map_err(|error| StoreError::Corrupt {
                    key: key.clone(),
                    message: error.to_string(),
                })?;
            ticket.state = step_up::effective_state(&ticket, now_ms);
            let wanted = query.tenant.as_ref().is_none_or(|t| *t == ticket.tenant)
                && query.state.is_none_or(|s| s == ticket.state);
            if !wanted {
                continue;
            }
            if page.tickets.len() == page_size {
                page.next_page_token = page.tickets.last().map(|t| t.ticket_id.clone());
                break;
            }
            page.tickets.push(ticket);
        }
        Ok(page)
    }

    pub(super) fn resolve_ticket(
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

    pub(super) fn expire_tickets(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut expired = 0;
        for entry in self.tickets.iter() {
            let (key, value) = entry?;
            let Ok(ticket) = serde_json::from_slice::<StepUpTicket>(&value) else {
                continue;
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

    pub(super) fn prune(&self, cutoffs: PruneCutoffs) -> Result<PruneReport, StoreError> {
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

    pub(super) fn record_disagreement(
        &self,
        disagreement: &Disagreement,
    ) -> Result<(), StoreError> {
        let id = parse_id(&disagreement.decision_id)?;
        let json = encode("shadow disagreement", disagreement)?;
        self.disagreements.insert(id.to_bytes(), json)?;
        Ok(())
    }

    pub(super) fn list_disagreements(
        &self,
        page_size: usize,
        page_token: Option<Ulid>,
    ) -> Result<DisagreementPage, StoreError> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let upper = page_token.unwrap_or(Ulid(u128::MAX)).to_bytes();
        let mut page = DisagreementPage::default();
        for entry in self.disagreements.range(..upper).rev() {
            let (key, value) = entry?;
            let id = id_of_index_key(&key);
            if page.disagreements.len() == page_size {
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

    pub(super) fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    pub(super) fn cached_document(
        &self,
        client_id: &str,
    ) -> Result<Option<CacheEntry>, StoreError> {
        read_json(&self.cimd_cache, client_id.as_bytes(), || {
            client_id.to_owned()
        })
    }

    pub(super) fn cache_document(&self, entry: &CacheEntry) -> Result<(), StoreError> {
        let json = encode("cached document", entry)?;
        self.cimd_cache.insert(entry.client_id.as_bytes(), json)?;
        Ok(())
    }

    pub(super) fn evict_document(&self, client_id: &str) -> Result<(), StoreError> {
        self.cimd_cache.remove(client_id.as_bytes())?;
        Ok(())
    }
}

fn matches(query: &DecisionQuery, record: &DecisionRecord) -> bool {
    let equal = |filter: &Option<String>, value: Option<&str>| {
        filter.as_deref().is_none_or(|filter| Some(filter) == value)
    };
    equal(&query.tenant, Some(&record.tenant))
        && equal(&query.client_id, record.client_id.as_deref())
        && equal(&query.ip, record.ip.as_deref())
        && equal(&query.fingerprint, Some(&record.fingerprint))
        && query
            .decision
            .is_none_or(|decision| decision == record.decision)
}

fn parse_id(text: &str) -> Result<Ulid, StoreError> {
    Ulid::from_string(text).map_err(|error| StoreError::Corrupt {
        key: text.to_owned(),
        message: format!("not a ULID: {error}"),
    })
}

/// `<value> 0x00 <ULID bytes>`: index values never contain NUL (tenant names, IPs,
/// fingerprints and client_id URLs are checked before they get here).
fn index_key(value: &str, id: Ulid) -> Vec<u8> {
    let mut key = Vec::with_capacity(value.len() + 17);
    key.extend_from_slice(value.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_bytes());
    key
}

/// `<dimension tag> <value> 0x00 <minute, 8 bytes big-endian>`.
fn rate_bucket_key(key: &RateKey, minute: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.value.len() + 10);
    bytes.push(key.dimension.tag());
    bytes.extend_from_slice(key.value.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&minute.to_be_bytes());
    bytes
}

fn decode_count(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The ULID at the end of an index key, or the whole key of the `decisions` tree.
fn id_of_index_key(key: &[u8]) -> Ulid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&key[key.len() - 16..]);
    Ulid::from_bytes(bytes)
}

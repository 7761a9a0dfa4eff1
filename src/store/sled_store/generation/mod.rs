//! One generation of the sled store: a complete sled database and the code that reads and
//! writes its trees.
//!
//! Trees: `decisions` (ULID → JSON record) with the indexes `by_tenant`, `by_ip`,
//! `by_client` and `by_fingerprint` (`<value> 0x00 <ULID>` → empty); `step_up_tickets`
//! (ticket id → JSON); `rates` (`<dimension><value> 0x00 <minute>` → count);
//! `fingerprints` (fingerprint → earlier approvals); `cimd_cache` (client_id → JSON);
//! `shadow_disagreements` (decision ULID → JSON); `admin_audit` (action ULID → JSON);
//! `meta` (`format_version`). A decision and its index entries and
//! ticket are written in one transaction.
//!
//! `write.rs` writes, `read.rs` reads, `prune.rs` deletes what retention no longer keeps.

mod prune;
mod read;
mod write;

use std::path::Path;

use ulid::Ulid;

use crate::store::group_commit::GroupCommit;
use crate::store::{DecisionQuery, DecisionRecord, RateKey, StoreError};

/// The layout version this build reads and writes.
pub const FORMAT_VERSION: &str = "1";
const FORMAT_KEY: &[u8] = b"format_version";
/// Index entries examined per page at most; a page that hits it ends early with a token.
const SCAN_LIMIT: usize = 10_000;
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;
/// Stored bytes one page holds at most besides its count (F-3): a page of large records
/// ends early, with a token for the rest. A page always holds at least one entry.
pub const PAGE_BYTE_BUDGET: usize = 1024 * 1024;

/// What is left of one page: entries and bytes.
struct PageBudget {
    entries: usize,
    taken: usize,
    bytes: usize,
}

impl PageBudget {
    /// A page of `page_size` entries (0: the default; at most the maximum).
    fn new(page_size: usize) -> PageBudget {
        PageBudget {
            entries: match page_size {
                0 => DEFAULT_PAGE_SIZE,
                size => size.min(MAX_PAGE_SIZE),
            },
            taken: 0,
            bytes: 0,
        }
    }

    /// Takes an entry of `bytes` stored bytes if it still fits; `false` ends the page.
    fn take(&mut self, bytes: usize) -> bool {
        let fits = self.taken < self.entries
            && (self.taken == 0 || self.bytes.saturating_add(bytes) <= PAGE_BYTE_BUDGET);
        if fits {
            self.taken += 1;
            self.bytes = self.bytes.saturating_add(bytes);
        }
        fits
    }
}

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
    admin_audit: sled::Tree,
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
            admin_audit: tree("admin_audit")?,
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
}

impl Generation {
    /// One decision by its ULID.
    fn read_decision(&self, id: Ulid) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.read_decision_sized(id)?.map(|(record, _)| record))
    }

    /// A decision and the bytes it takes in the store.
    fn read_decision_sized(&self, id: Ulid) -> Result<Option<(DecisionRecord, usize)>, StoreError> {
        let Some(bytes) = self.decisions.get(id.to_bytes())? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt {
            key: id.to_string(),
            message: error.to_string(),
        })?;
        Ok(Some((record, bytes.len())))
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
